"""`check --snapshot A B C --html PATH` (and --hosts, tests/test_hosts_ansible.py): one report with a
section per host. Parsed, not grepped: each host's section holds its own verdicts; a host never
judged has a section that says why; names are escaped; the page runs no script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import html as lhtml

from doctor.cli import main

FIX = Path(__file__).resolve().parent.parent / "fixtures"
PARTIAL = str(FIX / "lab-intel-partial")  # fails vfio.group_viable: 01:00.2 and 01:00.3 on their drivers
DEV = str(FIX / "dev-machine")  # no IOMMU: fails firmware.iommu_table
SHARED = str(FIX / "lab-intel-shared-group")  # the card shares its group with a NIC at 02:00.0


def sections(page: lhtml.HtmlElement) -> dict[str, lhtml.HtmlElement]:
    """host name -> its section (the h2's text up to the state)."""
    out = {}
    for sec in page.xpath("//section[@class='gd-host-section']"):
        name = sec.find("h2").text_content().rsplit(" — ", 1)[0]
        out[name] = sec
    return out


def test_one_report_a_section_per_host_with_its_own_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fleet.html"
    assert main(["check", "--snapshot", PARTIAL, DEV, SHARED, "--html", str(out)]) == 1
    cap = capsys.readouterr()
    assert "fleet: 3 hosts" in cap.out  # the table still goes to the terminal
    assert f"HTML report written to {out}" in cap.err
    page = lhtml.fromstring(out.read_bytes())
    assert not page.xpath("//script") and not page.xpath("//@*[starts-with(name(), 'on')]")
    secs = sections(page)
    assert list(secs) == [PARTIAL, DEV, SHARED]
    part, dev, shared = (secs[n].text_content() for n in (PARTIAL, DEV, SHARED))
    assert "vfio.group_viable" in part and "01:00.2" in part and "01:00.3" in part
    assert "no ACPI" in dev and "firmware.iommu_table" in dev
    assert "FAIL" in secs[PARTIAL].find("h2").text_content()
    # the summary groups by cause and links each host to its own section
    ids = {n: s.get("id") for n, s in secs.items()}
    rows = {r.xpath("td[2]/b")[0].text: r for r in page.xpath("//table[tr/th='Hosts']/tr[td]")}
    assert [a.get("href") for a in rows["firmware.iommu_table"].xpath(".//a")] == [f"#{ids[DEV]}"]
    assert f"#{ids[PARTIAL]}" in [a.get("href") for a in rows["vfio.group_viable"].xpath(".//a")]
    assert "02:00.0" in shared and "02:00.0" not in part  # each section is its own host's


def test_a_bad_snapshot_has_a_section_saying_why_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    out = tmp_path / "r.html"
    assert main(["check", "--snapshot", PARTIAL, str(bad), "--html", str(out)]) == 2
    capsys.readouterr()
    secs = sections(lhtml.fromstring(out.read_bytes()))
    assert "bad snapshot" in secs[str(bad)].text_content() and "ERROR" in secs[str(bad)].find("h2").text_content()


def test_names_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = Path(shutil.copytree(DEV, tmp_path / "<img src=x onerror=alert(1)>", symlinks=True))
    out = tmp_path / "r.html"
    main(["check", "--snapshot", PARTIAL, str(odd), "--html", str(out)])
    capsys.readouterr()
    text = out.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert str(odd) in sections(lhtml.fromstring(text.encode()))


def test_html_to_standard_output_replaces_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--snapshot", PARTIAL, DEV, "--html", "-"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and "fleet: 2 hosts" in out and "╭" not in out
    assert list(sections(lhtml.fromstring(out.encode()))) == [PARTIAL, DEV]


def test_a_bad_html_path_is_refused_before_any_host_is_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir").mkdir()
    assert main(["check", "--snapshot", PARTIAL, DEV, "--html", str(tmp_path / "dir")]) == 2
    cap = capsys.readouterr()
    assert "--html" in cap.err and "fleet:" not in cap.out
