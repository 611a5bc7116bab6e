"""Many snapshots in one process: `check --snapshot A B C ...` (tables per host, a fleet summary
grouped by failing check, the versioned gpudoctor.fleet document, exit codes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from doctor.cli import main

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "fixtures"
PARTIAL = str(FIX / "lab-intel-partial")  # fails vfio.group_viable (a function left on its driver)
DEV = str(FIX / "dev-machine")  # a VM without an IOMMU: fails firmware.iommu_table
SHARED = str(FIX / "lab-intel-shared-group")


def pack(src: str, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname="snapshot")
    return str(dest)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["check", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


FLEET_KEYS = {"format", "version", "gpudoctor", "redacted", "summary", "causes", "hosts"}
FLEET_SUMMARY_KEYS = {"hosts", "pass", "fail", "error", "unreachable", "exit_code", "duration_s"}


def test_fleet_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "--snapshot", PARTIAL, DEV, SHARED)
    assert set(doc) == FLEET_KEYS
    assert (doc["format"], doc["version"]) == ("gpudoctor.fleet", 1)
    assert set(doc["summary"]) == FLEET_SUMMARY_KEYS
    assert doc["summary"]["exit_code"] == code == 1
    assert doc["summary"]["hosts"] == 3 and doc["summary"]["fail"] == 3
    for h in doc["hosts"]:
        assert set(h) == {"name", "state", "reason", "check"}
        assert h["state"] in {"pass", "fail", "error", "unreachable"}
        assert (h["check"]["format"], h["check"]["version"]) == ("gpudoctor.check", 1)
    for c in doc["causes"]:
        assert set(c) == {"id", "title", "status", "hosts"}
    assert [h["name"] for h in doc["hosts"]] == [PARTIAL, DEV, SHARED]


def test_causes_group_hosts_by_the_check_that_fails_on_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dev2 = shutil.copytree(DEV, tmp_path / "dev-copy", symlinks=True)
    _, doc = run_json(capsys, "--snapshot", PARTIAL, DEV, str(dev2))
    causes = {c["id"]: c for c in doc["causes"]}
    assert causes["firmware.iommu_table"]["hosts"] == [DEV, str(dev2)]
    assert causes["vfio.group_viable"]["hosts"] == [PARTIAL]
    # most hosts first among failures
    assert len(doc["causes"][0]["hosts"]) == max(len(c["hosts"]) for c in doc["causes"])


def test_each_hosts_verdicts_equal_a_single_check_of_it(capsys: pytest.CaptureFixture[str]) -> None:
    _, fleet = run_json(capsys, "--snapshot", PARTIAL, DEV, SHARED)
    for h in fleet["hosts"]:
        code, single = run_json(capsys, "--snapshot", h["name"])
        assert single["format"] == "gpudoctor.check"  # one snapshot: today's document, unchanged
        got = [(r["id"], r["subject"], r["status"], r["summary"]) for r in h["check"]["results"]]
        assert got == [(r["id"], r["subject"], r["status"], r["summary"]) for r in single["results"]]
        assert h["state"] == {0: "pass", 1: "fail"}.get(code, "error")


def test_archives_and_globs_expanded_by_the_tool(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for i in range(3):
        pack(PARTIAL, tmp_path / f"h{i}.tar.gz")
    code, doc = run_json(capsys, "--snapshot", str(tmp_path / "*.tar.gz"))
    assert [h["name"] for h in doc["hosts"]] == [str(tmp_path / f"h{i}.tar.gz") for i in range(3)]
    assert code == 1 and doc["causes"][0]["hosts"] == [h["name"] for h in doc["hosts"]]


def test_a_glob_that_matches_one_snapshot_is_still_a_fleet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pack(PARTIAL, tmp_path / "only.tar.gz")
    _, doc = run_json(capsys, "--snapshot", str(tmp_path / "*.tar.gz"))
    assert doc["format"] == "gpudoctor.fleet"


def test_bad_snapshot_is_named_exit_2_and_the_others_still_judged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    code = main(["check", "--snapshot", PARTIAL, str(bad), DEV, "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert str(bad) in err and err.count("\n") == 1
    doc = json.loads(out)
    states = {h["name"]: h["state"] for h in doc["hosts"]}
    assert states == {PARTIAL: "fail", str(bad): "error", DEV: "fail"}


def test_a_glob_without_match_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check", "--snapshot", PARTIAL, str(tmp_path / "none*")]) == 2
    assert "no file or folder matches" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--html", "-", "--json"], "both want standard output"),
    (["--nfd", "x.features"], "--nfd describes one node"),
    (["--only", "no.such"], "unknown check id"),
    (["--keep", "d"], "--keep works only with --hosts"),
])
def test_fleet_options_that_make_no_sense_are_exit_2(capsys: pytest.CaptureFixture[str], extra: list[str], needle: str) -> None:
    assert main(["check", "--snapshot", PARTIAL, DEV, *extra]) == 2
    assert needle in capsys.readouterr().err


def test_terminal_shows_a_table_per_host_and_the_grouped_summary() -> None:
    p = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", PARTIAL, DEV],
                       capture_output=True, text=True, check=False, cwd=REPO,
                       env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"})
    assert p.returncode == 1, p.stderr
    out = p.stdout
    assert out.count("gpudoctor 0.") == 2  # each host's own header line
    assert out.index(PARTIAL) < out.index(DEV) < out.index("fleet: 2 hosts")
    summary = out[out.index("fleet: 2 hosts"):]
    assert f"FAIL vfio.group_viable (Every device in the GPU's group is on vfio-pci): 1 host: {PARTIAL}" in summary
    assert f"FAIL firmware.iommu_table (Firmware exposes an IOMMU (ACPI DMAR / IVRS)): 1 host: {DEV}" in summary
    assert "0 passed, 2 failed" in summary and "exit 1" in summary


def test_one_snapshot_keeps_todays_behaviour(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "--snapshot", PARTIAL)
    assert code == 1 and doc["format"] == "gpudoctor.check" and doc["source"]["location"] == PARTIAL


def test_fleet_causes_are_root_causes_not_what_follows_from_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Issue 17: the fleet summary counts what doctor.causes calls a cause; on hosts without a
    firmware IOMMU, cmdline.iommu_enabled, iommu.active and iommu.groups_present follow from it."""
    dev2 = shutil.copytree(DEV, tmp_path / "dev-copy", symlinks=True)
    _, doc = run_json(capsys, "--snapshot", DEV, str(dev2))
    ids = {c["id"] for c in doc["causes"]}
    assert "firmware.iommu_table" in ids
    assert not ids & {"cmdline.iommu_enabled", "iommu.active", "iommu.groups_present"}, ids
    followers = {r["id"] for h in doc["hosts"] for r in h["check"]["results"] if r.get("follows_from")}
    assert "iommu.active" in followers
