"""The HTML report: self-contained, complete, escaped, redacted; and the pytest plugin."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from doctor import __version__
from doctor.errors import BadInput
from doctor.facts import Facts, HostSummary, PciDevice
from doctor.htmlreport import write_html
from doctor.model import CmdlineEdit, Evidence, Remedy, Result, SourceInfo, Status
from doctor.runner import Report, SubjectResult

ROOT = os.path.join(os.path.dirname(__file__), "..")
FIX = os.path.join(ROOT, "fixtures")

SECRETS = {
    "hostname": "secret-box",
    "mac": "3c:7c:3f:12:34:56",
    "ip": "10.20.30.40",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "serial": "ABC123XYZ",
}
XSS = "<script>alert(1)</script>"


class HandFacts(Facts):
    def summary(self) -> HostSummary:
        return HostSummary(kernel="6.8.0-test", distro="Testix 1", cpu="Test CPU 9000",
                           hostname=SECRETS["hostname"] + ".example.org")


GPU = PciDevice("0000:01:00.0", 0x030000, "10de", "1e84", name="NVIDIA TU104 [GeForce RTX 2070 SUPER]")


def hand_report() -> Report:
    s = SECRETS
    r = [
        Result("cpu.virtualization", "CPU virtualization", Status.PASS, "vmx present",
               evidence=(Evidence("/proc/cpuinfo", "flags: vmx"),)),
        Result("cmdline.iommu_passthrough", "iommu=pt", Status.WARN, "iommu=pt not set",
               messages=("advice only",)),
        Result("iommu.active", "IOMMU active", Status.FAIL, "no IOMMU on <b>this</b> host",
               messages=(f"seen on {s['hostname']} at {s['ip']}",),
               evidence=(Evidence("dmesg", XSS), Evidence("ip link", f"link/ether {s['mac']}"),
                         Evidence("/sys/class/dmi/id/product_uuid", s["uuid"]),
                         Evidence("dmidecode", f"Serial Number: {s['serial']}")),
               remedy=Remedy("Add intel_iommu=on", ("sudo editor /etc/default/grub", "sudo update-grub && reboot"),
                             CmdlineEdit(add=("intel_iommu=on",)))),
        Result("vfio.group_viable", "group viable", Status.NOT_APPLICABLE, "no GPU to pass through"),
        Result("vfio.early_load", "early load", Status.UNKNOWN, "unknown: initramfs tool not captured"),
        Result("vfio.ids_configured", "ids", Status.ERROR, "internal error in this check: KeyError: 'x'",
               messages=("Traceback line",)),
    ]
    results = [SubjectResult(x, GPU.address if x.check_id.startswith("vfio.") else None) for x in r]
    return Report(results, SourceInfo("snapshot", "x"), HandFacts(), [GPU], 0.01)


def blob(text: str) -> dict[str, Any]:
    """pytest-html's data: JSON in an HTML attribute; this is what its JS renders."""
    m = re.search(r'data-jsonblob="([^"]*)"', text)
    assert m, "no data container in the report"
    return json.loads(html.unescape(m.group(1)))


def rendered(tmp_path: Any, report: Report, redact: bool = True) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "out" / "report.html"
    write_html(report, str(out), redact=redact)
    text = out.read_text(encoding="utf-8")
    return text, blob(text)


def assert_self_contained(text: str) -> None:
    assert not re.search(r"<link[^>]+href=", text)
    assert not re.search(r"<script[^>]+src=", text)
    assert "assets/" not in text


def test_live_host_report_is_one_self_contained_file_with_every_check(tmp_path: Any, monkeypatch: Any) -> None:
    from doctor.facts import HostFacts
    from doctor.host import LiveHost
    from doctor.registry import load_checks
    from doctor.runner import run_checks

    monkeypatch.chdir(tmp_path)
    host = LiveHost()
    report = run_checks(HostFacts(host), host.source_info())
    text, data = rendered(tmp_path, report)
    assert_self_contained(text)
    # nothing but the report is left behind: no .pytest_cache, no assets, no temp file
    found = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, ds, fs in os.walk(tmp_path) for f in fs + ds)
    assert found == ["out", os.path.join("out", "report.html")]
    assert data["title"] == "gpudoctor report"
    for cid in load_checks():
        assert any(t == cid or t.startswith(cid + "[") for t in data["tests"]), cid
    assert len(data["tests"]) == len(report.results)
    env = data["environment"]
    assert env["gpudoctor"] == __version__ and env["source"] == "live"
    assert {"kernel", "distribution", "cpu", "gpus"} <= set(env)
    assert not {"Platform", "Python", "Packages", "Plugins", "JAVA_HOME"} & set(env)


def test_every_status_maps_to_an_outcome_and_shows_its_word(tmp_path: Any) -> None:
    text, data = rendered(tmp_path, hand_report())
    assert_self_contained(text)
    want = {
        "cpu.virtualization": ("Passed", "PASS"),
        "cmdline.iommu_passthrough": ("Passed", "WARN"),
        "iommu.active": ("Failed", "FAIL"),
        "vfio.group_viable[0000:01:00.0]": ("Skipped", "N/A"),
        "vfio.early_load[0000:01:00.0]": ("Skipped", "UNKNOWN"),
        "vfio.ids_configured[0000:01:00.0]": ("Error", "ERROR"),
    }
    assert set(data["tests"]) == set(want)
    for nodeid, (outcome, word) in want.items():
        (row,) = data["tests"][nodeid]
        assert row["result"] == outcome, nodeid
        cells = "".join(row["resultsTableRow"])
        assert f">{html.escape(word)}</td>" in cells, nodeid
        assert f'<td class="col-checkid">{nodeid.split("[")[0]}</td>' in cells
        assert row["extras"] and row["extras"][0]["format_type"] == "html"  # the detail block
    head = re.findall(r"<th[^>]*>([^<]*)</th>", text)
    assert {"Status", "Check id", "Summary"} <= set(head)
    assert "1 passed, 1 failed, 1 warnings, 1 errors, 1 unknown, 1 not applicable" in text


def test_evidence_messages_and_fix_are_escaped_never_raw(tmp_path: Any) -> None:
    text, data = rendered(tmp_path, hand_report())
    assert XSS not in text and "<b>this</b>" not in text
    (row,) = data["tests"]["iommu.active"]
    detail = row["extras"][0]["content"]
    cells = "".join(row["resultsTableRow"])
    # what the page's JS inserts as HTML holds the escaped text only
    assert html.escape(XSS) in detail and XSS not in detail
    assert "no IOMMU on &lt;b&gt;this&lt;/b&gt; host" in cells and "<b>this</b>" not in cells
    assert "<pre>sudo editor /etc/default/grub\nsudo update-grub &amp;&amp; reboot</pre>" in detail
    assert "<td>dmesg</td>" in detail and "kernel_cmdline" in detail


def test_environment_table_is_the_host_table(tmp_path: Any) -> None:
    _, data = rendered(tmp_path, hand_report())
    env = data["environment"]
    assert env["source"] == "snapshot (x)"
    assert env["kernel"] == "6.8.0-test" and env["distribution"] == "Testix 1" and env["cpu"] == "Test CPU 9000"
    assert env["gpus"] == "0000:01:00.0 NVIDIA TU104 [GeForce RTX 2070 SUPER]"
    assert env["hostname"] == "host-1" and env["redacted"] == "yes"
    assert not {"Platform", "Python", "Packages", "Plugins"} & set(env)


def test_planted_secrets_never_reach_the_report(tmp_path: Any) -> None:
    text, _ = rendered(tmp_path, hand_report())
    for kind, secret in SECRETS.items():
        assert secret not in text, kind
    for fake in ("host-1", "192.0.2.1", "02:00:00:00:00:01", "00000000-0000-4000-8000-000000000001", "SERIAL-0001"):
        assert fake in text, fake


def test_no_redact_keeps_the_values(tmp_path: Any) -> None:
    text, data = rendered(tmp_path, hand_report(), redact=False)
    for secret in SECRETS.values():
        assert secret in text
    assert data["environment"]["redacted"].startswith("NO")


def test_pytest_environment_of_the_caller_is_untouched(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "--this-option-does-not-exist")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    rendered(tmp_path, hand_report())
    assert os.environ["PYTEST_ADDOPTS"] == "--this-option-does-not-exist"
    assert "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in os.environ


def test_existing_report_is_replaced_whole(tmp_path: Any) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    write_html(hand_report(), str(out))
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["r.html"]


@pytest.mark.parametrize("path", ["/etc/hostname/x.html", "/proc/version/sub/r.html"])
def test_unwritable_location_is_bad_input(path: str) -> None:
    with pytest.raises(BadInput, match="--html"):
        write_html(hand_report(), path)


def test_a_folder_as_path_is_bad_input(tmp_path: Any) -> None:
    with pytest.raises(BadInput, match="is a folder"):
        write_html(hand_report(), str(tmp_path))


# -- the CLI


def gd(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT)}
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True,
                          check=False, timeout=60, cwd=cwd, env=env)


def test_cli_html_with_json_keeps_stdout_pure_json(tmp_path: Any) -> None:
    out = tmp_path / "deep" / "r.html"
    p = gd("check", "--html", str(out), "--json", cwd=str(tmp_path))
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)  # nothing of pytest's mixed in
    assert doc["format"] == "gpudoctor.check"
    assert out.is_file() and "gpudoctor report" in out.read_text(encoding="utf-8")
    assert "HTML report written" in p.stderr and "Traceback" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["deep"] and os.listdir(out.parent) == ["r.html"]


def test_cli_html_snapshot_report(tmp_path: Any) -> None:
    out = tmp_path / "r.html"
    p = gd("check", "--snapshot", os.path.join(FIX, "dev-machine"), "--html", str(out), cwd=str(tmp_path))
    assert p.returncode == 1, p.stderr
    data = blob(out.read_text(encoding="utf-8"))
    assert data["environment"]["source"].startswith("snapshot")
    assert data["tests"]["iommu.active"][0]["result"] == "Failed"


def test_cli_html_unwritable_path_exits_2_with_a_message(tmp_path: Any) -> None:
    p = gd("check", "--html", "/etc/hostname/x.html", cwd=str(tmp_path))
    assert p.returncode == 2
    assert "gpudoctor: error: --html /etc/hostname/x.html" in p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


# -- the pytest plugin


def run_pytest(tmp_path: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.path.abspath(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
         "-p", "doctor.plugin", "-rA", *args, str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120, cwd=str(tmp_path), env=env,
    )


def test_plugin_runs_the_checks_as_pytest_items(tmp_path: Any) -> None:
    p = run_pytest(tmp_path, "--gpudoctor-snapshot", os.path.join(FIX, "dev-machine"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED iommu.active - FAIL: iommu.active" in p.stdout
    assert "PASSED kvm.available" in p.stdout
    assert re.search(r"\d+ failed, \d+ passed", p.stdout)


def test_plugin_is_inert_without_its_options(tmp_path: Any) -> None:
    p = run_pytest(tmp_path)
    assert p.returncode == 5, p.stdout + p.stderr  # no tests collected
    assert "collected 0 items" in p.stdout
