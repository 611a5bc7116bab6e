"""The CLI boundary: exit codes scripts can trust, clear errors, a pinned JSON contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def gd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False, timeout=60)


def test_live_check_runs_on_this_machine_without_crashing() -> None:
    p = gd("check", "--json")
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)
    assert not [r for r in doc["results"] if r["status"] == "error"]
    assert "Traceback" not in p.stderr


def test_terminal_output_is_readable_without_colour() -> None:
    p = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", os.path.join(FIX, "dev-machine")],
                       capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}, check=False)
    assert p.returncode == 1
    assert "\x1b[" not in p.stdout
    assert "✗ FAIL" in p.stdout and "iommu.active" in p.stdout
    assert "failed" in p.stdout.splitlines()[-1]


# version 1, minor 1 (issue 17): `minor`, `causes`, summary `headline`/`causes` and result `follows_from` added
JSON_KEYS = {"format", "version", "minor", "gpudoctor", "source", "host", "redacted", "gpus", "summary", "causes", "results"}
RESULT_KEYS = {"id", "subject", "title", "status", "summary", "messages", "evidence", "remedy", "duration_s", "follows_from"}
SUMMARY_KEYS = {"pass", "warn", "fail", "not_applicable", "unknown", "error", "exit_code", "duration_s", "headline", "causes"}
CAUSE_KEYS = {"id", "subject", "status", "kind", "summary", "fix", "explains"}


def test_json_contract() -> None:
    p = gd("check", "--snapshot", os.path.join(FIX, "device-h100-vm"), "--json")
    doc = json.loads(p.stdout)
    assert set(doc) == JSON_KEYS
    assert (doc["format"], doc["version"], doc["minor"]) == ("gpudoctor.check", 1, 1)
    assert set(doc["summary"]) == SUMMARY_KEYS
    names = {r["id"] + (f"[{r['subject']}]" if r["subject"] else "") for r in doc["results"]}
    for c in doc["causes"]:
        assert set(c) == CAUSE_KEYS
        assert set(c["explains"]) <= names
    assert doc["causes"][0]["id"] == "firmware.iommu_table" and "iommu.active" in doc["causes"][0]["explains"]
    assert doc["summary"]["exit_code"] == p.returncode == 1
    for r in doc["results"]:
        assert set(r) == RESULT_KEYS
        assert r["status"] in {"pass", "warn", "fail", "not_applicable", "unknown", "error"}
        for e in r["evidence"]:
            assert set(e) == {"source", "value"}
        if r["remedy"] is not None:
            assert set(r["remedy"]) == {"text", "steps", "fix_id", "params"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["check", "--gpu", "0000:99:00.0", "--snapshot", "fixtures/device-h100-vm"], "no such PCI device"),
        (["check", "--gpu", "not-an-address"], "not a PCI address"),
        (["check", "--gpu", "01:00.9"], "not a PCI address"),
        (["check", "--snapshot", "/nonexistent/snap"], "does not exist"),
        (["check", "--snapshot", "/etc/hostname"], "neither a snapshot folder nor"),
        (["check", "--only", "no.such_check"], "unknown check id"),
        (["record", "-o", "fixtures/dev-machine"], "already exists"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(args: list[str], needle: str) -> None:
    p = subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                       cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr
    assert "Traceback" not in p.stderr


def test_usage_errors_are_exit_2() -> None:
    assert gd().returncode == 2
    assert gd("check", "--bogus").returncode == 2


def test_short_gpu_address_is_accepted() -> None:
    p = gd("check", "--snapshot", os.path.join(FIX, "device-h100-vm"), "--gpu", "00:06.0", "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["gpus"] == ["0000:00:06.0"]


def test_record_then_check_snapshot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "me.tar.gz"
    p = gd("record", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size < 200_000
    live = json.loads(gd("check", "--json").stdout)
    snap = json.loads(gd("check", "--snapshot", str(out), "--json").stdout)
    assert [(r["id"], r["status"]) for r in live["results"]] == [(r["id"], r["status"]) for r in snap["results"]]


def test_list_names_every_check() -> None:
    p = gd("list")
    assert p.returncode == 0
    for cid in ("cpu.virtualization", "iommu.active", "vfio.group_viable", "vfio.binding_persistent"):
        assert cid in p.stdout
