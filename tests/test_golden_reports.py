"""Golden tests of whole rendered reports (issue 17): the plain terminal text, the JSON document and
the HTML a browser shows without JavaScript, for three recorded hosts. A change in any output shows
as a diff here; regenerate on purpose with GPUDOCTOR_UPDATE_GOLDEN=1 and read the diff.

The Chromium tests open the real report in a real headless browser with JavaScript disabled (a
profile preference: `--blink-settings=scriptEnabled=false` also stops headless Chromium from dumping
or capturing anything) and assert that every failing check's summary and fix are in what it shows."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from doctor.datarecord import replace
from doctor.facts import HostFacts
from doctor.htmlparts import summary_html
from doctor.htmlreport import write_html
from doctor.model import Status
from doctor.render import dumps_json
from doctor.runner import Report, SubjectResult, run_checks
from doctor.snapshot import SnapshotHost
from doctor.textout import render, report_lines

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = ["dev-machine", "device-h100-vm", "seed-before"]
UPDATE = bool(os.environ.get("GPUDOCTOR_UPDATE_GOLDEN"))


def replay(name: str, monkeypatch: pytest.MonkeyPatch) -> Report:
    monkeypatch.chdir(REPO)
    host = SnapshotHost(os.path.join("fixtures", name))
    try:
        rep = run_checks(HostFacts(host), host.source_info())
    finally:
        host.close()
    rep.results = [SubjectResult(replace(sr.result, duration_s=0.0), sr.subject) for sr in rep.results]
    rep.duration_s = 0.0
    return rep


def golden(path: Path, text: str) -> None:
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden file {path.name}: run with GPUDOCTOR_UPDATE_GOLDEN=1 and review it")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed: rerun with GPUDOCTOR_UPDATE_GOLDEN=1 and read the diff"


@pytest.mark.parametrize("name", FIXTURES)
def test_terminal_text_is_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = render(report_lines(replay(name, monkeypatch)), width=None, colour=False)
    assert "\x1b[" not in text
    golden(GOLDEN / f"{name}.txt", text)


@pytest.mark.parametrize("name", FIXTURES)
def test_json_is_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = dumps_json(replay(name, monkeypatch))
    doc = json.loads(text)
    explained = {n for c in doc["causes"] for n in c["explains"]}
    for r in doc["results"]:  # a downstream result names its cause, and is never a cause itself
        nm = r["id"] + (f"[{r['subject']}]" if r["subject"] else "")
        assert bool(r["follows_from"]) == (nm in explained), nm
    golden(GOLDEN / f"{name}.json", text)


@pytest.mark.parametrize("name", FIXTURES)
def test_html_without_javascript_is_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = summary_html(replay(name, monkeypatch)).replace("><", ">\n<")
    golden(GOLDEN / f"{name}.html", text + "\n")


def test_headline_names_the_firmware_cause_and_counts_what_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    text = render(report_lines(replay("device-h100-vm", monkeypatch)), width=None, colour=False)
    lines = text.splitlines()
    assert lines[3].startswith("This host cannot pass a GPU through: this VM guest has no virtual IOMMU (1 cause of 3); "
                               "8 checks follow from it.")
    assert "1. ✗ FAIL firmware.iommu_table" in text and "intel_iommu=on" not in lines[3]


def test_columns_wraps_between_words_and_never_inside_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = report_lines(replay("seed-before", monkeypatch))
    text = render(lines, width=60, colour=False)
    steps = [ln.text.strip() for ln in lines if not ln.wrap]
    for s in steps:
        assert s in text  # each command whole, on one line
    words = {w for ln in lines for w in ln.text.split()}
    for out in text.splitlines():
        for w in out.split():
            assert w in words, w  # no word was cut in two


# --- a real browser, JavaScript off -------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    (profile / "Default").mkdir(parents=True, exist_ok=True)
    # JavaScript off for every page this profile opens (content setting 2 = block)
    (profile / "Default" / "Preferences").write_text(json.dumps({"profile": {"default_content_setting_values": {"javascript": 2}}}))
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=180, check=False)


def test_chromium_without_javascript_shows_every_failing_check_and_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CHROMIUM is not None, "chromium is not installed (scripts/test.sh installs it): a browser test never skips"
    rep = replay("device-h100-vm", monkeypatch)
    page = tmp_path / "report.html"
    write_html(rep, str(page))
    # the page is self-contained: nothing to fetch
    src = page.read_text(encoding="utf-8")
    assert not re.search(r"<(link|script)[^>]+(href|src)=", src)
    probe = tmp_path / "probe.html"
    probe.write_text('<p>x</p><script>document.write("<p>JS-RAN</p>")</script>')
    dom = chromium(["--dump-dom", probe.as_uri()], tmp_path / "p0").stdout
    assert "<p>x</p>" in dom and "JS-RAN" not in dom.replace('"<p>JS-RAN</p>"', "")  # JavaScript really is off
    dom = chromium(["--dump-dom", page.as_uri()], tmp_path / "p1").stdout
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    text = re.sub(r"\s+", " ", text)
    failing = [sr.result for sr in rep.results if sr.result.status is Status.FAIL]
    assert len(failing) >= 5
    for res in failing:
        assert re.sub(r"\s+", " ", res.summary) in text, res.check_id
        assert res.remedy is not None
        assert re.sub(r"\s+", " ", res.remedy.text) in text, res.check_id
    # pytest's words live only in its filter boxes and run count, which our stylesheet hides
    shown = re.sub(r'<div class="filters">.*?</div>|<p class="run-count">.*?</p>|<(script|style)\b.*?</\1>|data-jsonblob="[^"]*"', "", dom, flags=re.S)
    assert 'div class="filters"' in dom and "p.run-count, p.filter, .controls .filters" in src
    for word in ("Expected failures", "Unexpected passes", "Reruns", "Skipped", "tests took"):
        assert word not in shown, word
    shot = tmp_path / "report.png"
    p = chromium(["--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()], tmp_path / "p2")
    assert shot.is_file() and shot.stat().st_size > 50_000, p.stderr[-2000:]
    if os.environ.get("GPUDOCTOR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["GPUDOCTOR_KEEP_SCREENSHOT"])
