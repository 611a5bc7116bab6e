"""--junit PATH: valid against a JUnit XML schema (tests/data/junit.xsd), one testsuite per host,
one testcase per result, each status mapped as CI dashboards expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from doctor.cli import main
from doctor.fleet import HostOutcome
from doctor.junit import junit_xml

REPO = Path(__file__).resolve().parent.parent
PARTIAL = str(REPO / "fixtures" / "lab-intel-partial")
DEV = str(REPO / "fixtures" / "dev-machine")
SCHEMA = etree.XMLSchema(etree.parse(str(REPO / "tests" / "data" / "junit.xsd")))


def validate(data: bytes) -> etree._Element:
    root = etree.fromstring(data)
    SCHEMA.assertValid(root)
    return root


def fleet_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str], *snaps: str) -> tuple[etree._Element, dict]:  # type: ignore[type-arg]
    out = tmp_path / "junit.xml"
    main(["check", "--snapshot", *snaps, "--json", "--junit", str(out)])
    return validate(out.read_bytes()), json.loads(capsys.readouterr().out)


def test_schema_rejects_what_dashboards_would_reject() -> None:
    """The schema can fail: a testcase without classname, or with two outcomes, is refused."""
    bad1 = b'<testsuites><testsuite name="a" hostname="h" tests="1" failures="0" errors="0" skipped="0" time="0">' \
           b'<testcase name="x"/></testsuite></testsuites>'
    bad2 = b'<testsuites><testsuite name="a" hostname="h" tests="1" failures="1" errors="1" skipped="0" time="0">' \
           b'<testcase name="x" classname="c"><failure/><error/></testcase></testsuite></testsuites>'
    bad3 = b'<testsuites><testsuite name="a" hostname="h" tests="-1" failures="0" errors="0" skipped="0" time="0"/></testsuites>'
    for bad in (bad1, bad2, bad3):
        assert not SCHEMA.validate(etree.fromstring(bad))


def test_one_testsuite_per_host_one_testcase_per_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, doc = fleet_junit(tmp_path, capsys, PARTIAL, DEV)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [PARTIAL, DEV]
    for s, h in zip(suites, doc["hosts"], strict=True):
        results = h["check"]["results"]
        cases = s.findall("testcase")
        assert len(cases) == len(results) == int(s.get("tests"))
        assert s.get("hostname") == h["check"]["host"]["hostname"]  # the checked host's redacted name
        assert int(s.get("failures")) == sum(r["status"] == "fail" for r in results)
        assert int(s.get("errors")) == sum(r["status"] == "error" for r in results)
        assert int(s.get("skipped")) == sum(r["status"] in ("unknown", "not_applicable") for r in results)
        for tc, r in zip(cases, results, strict=True):
            assert tc.get("classname") == r["id"].split(".")[0]
            assert tc.get("name") == r["id"] + (f"[{r['subject']}]" if r["subject"] else "")
            kids = [k.tag for k in tc]
            expected = {"pass": [], "warn": ["system-out"], "fail": ["failure"], "error": ["error"],
                        "unknown": ["skipped"], "not_applicable": ["skipped"]}[r["status"]]
            assert kids == expected, (r["id"], r["status"], kids)
    assert int(root.get("tests")) == sum(len(s.findall("testcase")) for s in suites)


def test_failure_carries_evidence_and_fix_warn_and_skip_carry_their_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, doc = fleet_junit(tmp_path, capsys, PARTIAL, DEV)
    results = {r["id"] + (f"[{r['subject']}]" if r["subject"] else ""): r for r in doc["hosts"][0]["check"]["results"]}
    suite = root.findall("testsuite")[0]
    viable = next(tc for tc in suite if tc.get("name", "").startswith("vfio.group_viable"))
    r = results[viable.get("name")]
    fail = viable.find("failure")
    assert fail.get("message") == r["summary"]
    assert "evidence:" in fail.text and r["evidence"][0]["value"] in fail.text
    assert f"fix: {r['remedy']['text']}" in fail.text
    warn = next(tc for tc in suite if tc.get("name") == "cmdline.iommu_passthrough")
    assert warn.find("system-out").text.startswith("WARN: " + results["cmdline.iommu_passthrough"]["summary"])
    skipped = [tc for tc in suite if tc.find("skipped") is not None]
    assert skipped and all(tc.find("skipped").get("message").split(":")[0] in ("UNKNOWN", "N/A") for tc in skipped)


def test_unreachable_host_and_error_results_are_errors_never_dropped() -> None:
    doc = {"host": {"hostname": "host-1"}, "source": {"location": "x"}, "results": [
        {"id": "gpu.reset_capable", "subject": "0000:01:00.0", "title": "t", "status": "error",
         "summary": "internal error in this check: KeyError: 'x'", "messages": ["Traceback \x1b[31m"], "evidence": [],
         "remedy": None, "duration_s": 0.1}]}
    data = junit_xml([HostOutcome("web1", "error", "", doc),
                      HostOutcome("gpu7", "unreachable", "ssh: connect to host 127.0.0.1 port 9: Connection refused")])
    root = validate(data)
    s1, s2 = root.findall("testsuite")
    assert s1.find("testcase/error").get("type") == "ERROR" and "\x1b" not in s1.find("testcase/error").text
    assert (s2.get("name"), s2.get("errors"), s2.find("testcase").get("name")) == ("gpu7", "1", "host.reachable")
    assert "Connection refused" in s2.find("testcase/error").get("message")


def test_single_host_check_writes_one_testsuite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "one.xml"
    assert main(["check", "--snapshot", PARTIAL, "--junit", str(out)]) == 1
    root = validate(out.read_bytes())
    assert [s.get("name") for s in root.findall("testsuite")] == [PARTIAL]
    assert "JUnit XML written" in capsys.readouterr().err


def test_junit_never_written_through_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main(["check", "--snapshot", PARTIAL, "--junit", str(fifo)]) == 2
    assert "is a FIFO" in capsys.readouterr().err
