"""Replay every fixture under fixtures/ and hold the doctor to its expected verdicts.

Each `fixtures/<name>/expected.json` is `{"gpu": ADDR or null, "verdicts": {check id: status}}`.
Fixtures are replayed from a copy without empty folders, which is what a git checkout
holds (git keeps no empty directories), so a fixture that only works in the folder it
was recorded into fails here too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from doctor.facts import HostFacts
from doctor.model import PciBind, Result, Status, VfioIds
from doctor.registry import load_checks
from doctor.runner import Report, run_checks
from doctor.snapshot import SnapshotHost

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
EXPECTED_FILES = sorted(FIXTURES.glob("*/expected.json"))
IDS_LINE = "options vfio-pci ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9"

# Doctor bugs these fixtures expose; the expected verdict stays the correct one.
EMPTY_DIR_BUG = (
    "doctor bug: SnapshotHost.is_dir('/sys/kernel') raises NotCaptured when the only thing recorded under "
    "/sys/kernel is the empty, listed /sys/kernel/iommu_groups (git drops the empty folder), so "
    "HostFacts.iommu_groups() is unknown instead of {} on every host without an IOMMU"
)
KNOWN_VERDICT_BUGS: dict[tuple[str, str], str] = {
    # (fixed: empty folders lost by git, EMPTY_DIR_BUG above; and lab-intel-iommu-amd-cpu's
    # cmdline.iommu_enabled, now decided by the DMAR table, not the AMD CPU: issue 13 point 3)
}


def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _prune_empty_dirs(top: Path) -> None:
    for d, _, _ in os.walk(top, topdown=False):
        if Path(d) != top and not os.listdir(d):
            os.rmdir(d)


def checkout_copy(src: Path, dst: Path) -> Path:
    """Copy a fixture as a git checkout would hold it: symlinks kept, no empty folders."""
    shutil.copytree(src, dst, symlinks=True)
    _prune_empty_dirs(dst / "root")
    return dst


def run_snapshot(path: Path) -> Report:
    host = SnapshotHost(str(path))
    try:
        return run_checks(HostFacts(host), host.source_info())
    finally:
        host.close()


def by_check(report: Report, gpu: str | None) -> dict[str, Result]:
    """One result per check id: host-wide ones, and per-GPU ones about `gpu`."""
    out: dict[str, Result] = {}
    for sr in report.results:
        if sr.subject is None or sr.subject == gpu:
            out[sr.result.check_id] = sr.result
    return out


def _mentions_not_captured(res: Result) -> bool:
    return "not captured" in json.dumps(res.to_dict())


@pytest.fixture(scope="session")
def replay(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("fixtures")

    @cache
    def get(name: str) -> tuple[Report, dict[str, Any], Path]:
        copy = checkout_copy(FIXTURES / name, base / name)
        return run_snapshot(copy), _load(FIXTURES / name / "expected.json"), copy

    return get


def _verdict_params() -> list[Any]:
    params = []
    for path in EXPECTED_FILES:
        name = path.parent.name
        for check_id, status in _load(path)["verdicts"].items():
            marks = []
            if (name, check_id) in KNOWN_VERDICT_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_VERDICT_BUGS[(name, check_id)]))
            params.append(pytest.param(name, check_id, status, id=f"{name}:{check_id}", marks=marks))
    return params


def test_fixtures_exist() -> None:
    names = {p.parent.name for p in EXPECTED_FILES}
    assert {"seed-before", "seed-partial", "seed-bound"} <= names


@pytest.mark.parametrize("name", [p.parent.name for p in EXPECTED_FILES])
def test_expected_names_every_check(name: str) -> None:
    """A fixture states a verdict for every registered check, and only for those."""
    expected = _load(FIXTURES / name / "expected.json")
    ids = set(load_checks())
    given = set(expected["verdicts"])
    assert given == ids, f"missing: {sorted(ids - given)}; unknown: {sorted(given - ids)}"
    assert all(s in {st.value for st in Status} for s in expected["verdicts"].values())
    assert (FIXTURES / name / "PROVENANCE.md").is_file()


@pytest.mark.parametrize("name", [p.parent.name for p in EXPECTED_FILES])
def test_gpu_selection(replay, name: str) -> None:  # type: ignore[no-untyped-def]
    report, expected, _ = replay(name)
    gpus = [g.address for g in report.gpus]
    if expected["gpu"] is None:
        assert gpus == []
    else:
        assert expected["gpu"] in gpus


@pytest.mark.parametrize(("name", "check_id", "status"), _verdict_params())
def test_verdict(replay, name: str, check_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    report, expected, _ = replay(name)
    results = by_check(report, expected["gpu"])
    assert check_id in results, f"{check_id} did not run on {name}"
    res = results[check_id]
    assert res.status != Status.ERROR, f"{check_id} crashed: {res.summary} {res.messages}"
    assert not _mentions_not_captured(res), (
        f"{name} does not cover what {check_id} reads: {res.summary} {res.messages}"
    )
    assert res.status.value == status, f"{name} {check_id}: {res.status.value} ({res.summary})"


def test_cli_replays_partial(replay) -> None:  # type: ignore[no-untyped-def]
    """The real CLI path, once: `python -m doctor.cli check --snapshot ... --json`."""
    _, expected, copy = replay("seed-partial")
    p = subprocess.run(
        [sys.executable, "-m", "doctor.cli", "check", "--snapshot", str(copy), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert p.returncode == 1, p.stderr  # checks failed (group not viable): exit 1, not 3
    doc = json.loads(p.stdout)
    assert doc["gpus"] == [expected["gpu"]]
    got = {r["id"]: r["status"] for r in doc["results"] if r["subject"] in (None, expected["gpu"])}
    assert got == expected["verdicts"]
    assert doc["host"]["kernel"] == "5.0.0-27-generic"
    assert "RECONSTRUCTED" in doc["host"]["provenance"]


# ---------------------------------------------------------------------------
# what the seed fixtures must say, beyond the verdict


def test_partial_names_the_blocking_functions(replay) -> None:  # type: ignore[no-untyped-def]
    report, _, _ = replay("seed-partial")
    res = by_check(report, "0000:01:00.0")["vfio.group_viable"]
    assert res.status == Status.FAIL
    assert "0000:01:00.2" in res.summary and "0000:01:00.3" in res.summary
    assert "0000:01:00.0 " not in res.summary and "0000:01:00.1" not in res.summary
    assert "group 1" in res.summary  # the notes' QEMU error: `group 1 is not viable`
    assert res.remedy is not None
    assert res.remedy.params == PciBind(("0000:01:00.2", "0000:01:00.3"))
    assert res.remedy.params.items() == (("devices", "0000:01:00.2,0000:01:00.3"),)


def test_partial_ids_line(replay) -> None:  # type: ignore[no-untyped-def]
    report, _, _ = replay("seed-partial")
    results = by_check(report, "0000:01:00.0")
    ids = results["vfio.ids_configured"]
    assert any(e.source == "/etc/modprobe.d/vfio.conf:1" and e.value == IDS_LINE for e in ids.evidence)
    persist = results["vfio.binding_persistent"]
    assert persist.remedy is not None
    assert f"echo '{IDS_LINE}' | sudo tee /etc/modprobe.d/vfio.conf" in persist.remedy.steps
    # the race the notes lost, named with the drivers that won it
    early = results["vfio.early_load"]
    assert "xhci_hcd (0000:01:00.2)" in early.summary and "i2c_nvidia_gpu (0000:01:00.3)" in early.summary


def test_before_ids_remedy_is_the_notes_line(replay) -> None:  # type: ignore[no-untyped-def]
    report, _, _ = replay("seed-before")
    res = by_check(report, "0000:01:00.0")["vfio.ids_configured"]
    assert res.remedy is not None
    assert IDS_LINE in [ln.strip() for ln in res.remedy.text.splitlines()]
    assert res.remedy.params == VfioIds(("10de:1e84", "10de:10f8", "10de:1ad8", "10de:1ad9"))
    assert res.remedy.params.items() == (("ids", "10de:1e84,10de:10f8,10de:1ad8,10de:1ad9"),)


def test_before_grub_step_keeps_cmdline_linux_default_apart(replay) -> None:  # type: ignore[no-untyped-def]
    report, _, _ = replay("seed-before")
    res = by_check(report, None)["cmdline.iommu_enabled"]
    assert res.remedy is not None
    steps = [s for s in res.remedy.steps if "GRUB_CMDLINE_LINUX" in s]
    assert steps == ['edit /etc/default/grub: GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"']


def test_bound_reboot_loses_the_usb_function_too(replay) -> None:  # type: ignore[no-untyped-def]
    report, _, _ = replay("seed-bound")
    res = by_check(report, "0000:01:00.0")["vfio.binding_persistent"]
    assert res.status == Status.WARN
    for addr in ("0000:01:00.0", "0000:01:00.1", "0000:01:00.2", "0000:01:00.3"):
        assert addr in res.summary


@cache
def _build_seed_module():  # type: ignore[no-untyped-def]
    name = "gpudoctor_fixtures_build_seed"
    spec = importlib.util.spec_from_file_location(name, FIXTURES / "build_seed.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("state", ["partial", "bound"])
def test_seed_log_keeps_the_notes_lines_verbatim(state: str) -> None:
    bs = _build_seed_module()
    m = _load(FIXTURES / f"seed-{state}" / "manifest.json")
    log = next(c["stdout"] for c in m["commands"] if c["argv"] == ["dmesg"])
    for line in (bs.NOTES_DMAR + bs.NOTES_VFIO).splitlines():
        assert line + "\n" in log, line


def _fixture_files(top: Path) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    for d, _, files in os.walk(top):
        for f in files:
            p = Path(d) / f
            rel = str(p.relative_to(top))
            out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else p.read_bytes()
    return out


@pytest.mark.parametrize("name", ["seed-before", "seed-partial", "seed-bound"])
def test_seed_is_redacted(name: str) -> None:
    """The planted hostname and the NIC's MAC were replaced by the recording."""
    bs = _build_seed_module()
    m = _load(FIXTURES / name / "manifest.json")
    assert m["redacted"] is True
    for rel, data in _fixture_files(FIXTURES / name).items():
        if isinstance(data, bytes):
            text = data.decode("utf-8", "replace")
            for planted in (bs.HOSTNAME, bs.NIC_MAC):
                assert planted not in text, f"{planted!r} survived redaction in {rel}"


def test_seed_root_uuid_is_redacted() -> None:
    bs = _build_seed_module()
    for rel, data in _fixture_files(FIXTURES / "seed-partial").items():
        if isinstance(data, bytes):
            assert bs.ROOT_UUID not in data.decode("utf-8", "replace"), f"root UUID survived redaction in {rel}"


def test_seed_fixtures_match_build_script(tmp_path: Path) -> None:
    """The committed seed-* folders are what fixtures/build_seed.py writes."""
    bs = _build_seed_module()
    for state in bs.STATES:
        built = Path(bs.build(str(tmp_path), state))
        committed = FIXTURES / built.name
        a, b = _fixture_files(built), _fixture_files(committed)
        for files in (a, b):
            man = json.loads(files.pop("manifest.json"))
            man.pop("created")
            files["manifest.json"] = json.dumps(man, sort_keys=True).encode()
        assert sorted(a) == sorted(b), f"{built.name}: file lists differ; rerun fixtures/build_seed.py"
        diff = [k for k in a if a[k] != b[k]]
        assert not diff, f"{built.name}: stale files {diff[:5]}; rerun fixtures/build_seed.py"


# ---------------------------------------------------------------------------
# a fixture missing something says "unknown", never a wrong verdict


def _edit_manifest(copy: Path, fn) -> None:  # type: ignore[no-untyped-def]
    mp = copy / "manifest.json"
    m = _load(mp)
    fn(m)
    mp.write_text(json.dumps(m), encoding="utf-8")


def _degraded(tmp_path: Path, remove_file: str | None, uncapture: str | None = None,
              drop_command: tuple[str, ...] | None = None, unlist: str | None = None) -> dict[str, Result]:
    copy = checkout_copy(FIXTURES / "seed-partial", tmp_path / "seed-partial")
    if remove_file:
        (copy / "root" / remove_file.lstrip("/")).unlink()

    def edit(m: dict[str, Any]) -> None:
        if uncapture:
            m["captured"] = [p for p in m["captured"] if p != uncapture]
        if drop_command:
            m["commands"] = [c for c in m["commands"] if tuple(c["argv"]) != drop_command]
        if unlist:
            m["listed"].pop(unlist)
            m["captured"] = [p for p in m["captured"] if p != unlist]

    _edit_manifest(copy, edit)
    report = run_snapshot(copy)
    assert not [r for r in report.results if r.result.status == Status.ERROR]
    return by_check(report, "0000:01:00.0")


PARTIAL = _load(FIXTURES / "seed-partial" / "expected.json")["verdicts"]


def _assert_unknown_only(results: dict[str, Result], unknown: set[str], why: str) -> None:
    for cid, res in results.items():
        if cid in unknown:
            assert res.status == Status.UNKNOWN, f"{cid}: {res.status.value} ({res.summary})"
            assert why in res.summary + " ".join(res.messages), res.summary
        else:
            assert res.status.value == PARTIAL[cid], f"{cid}: {res.status.value} ({res.summary})"


def test_uncaptured_cmdline_is_unknown(tmp_path: Path) -> None:
    """/proc/cmdline deleted and no longer a captured pattern: not captured, so unknown."""
    results = _degraded(tmp_path, "/proc/cmdline", uncapture="/proc/cmdline")
    _assert_unknown_only(results, {"cmdline.iommu_enabled", "cmdline.iommu_passthrough", "cmdline.iommu_args_meaningful"},
                         "not captured")


def test_missing_cmdline_is_unknown(tmp_path: Path) -> None:
    """/proc/cmdline captured but absent: the fact is unknown (it does not exist), not 'no arguments'."""
    results = _degraded(tmp_path, "/proc/cmdline")
    _assert_unknown_only(results, {"cmdline.iommu_enabled", "cmdline.iommu_passthrough", "cmdline.iommu_args_meaningful"},
                         "does not exist")


def test_uncaptured_dmesg_falls_back_to_sysfs(tmp_path: Path) -> None:
    """No kernel log: iommu.active decides from sysfs and says so; every verdict holds."""
    results = _degraded(tmp_path, None, drop_command=("dmesg",))
    # interrupt remapping is seen in the log or /proc/interrupts; this reconstructed host has only the log
    _assert_unknown_only(results, {"iommu.interrupt_remapping"}, "/proc/interrupts")
    assert any("decided from sysfs" in m for m in results["iommu.active"].messages)


def test_uncaptured_pci_listing_is_unknown(tmp_path: Path) -> None:
    """Without the PCI device listing nothing about the GPU can be said."""
    copy_results = _degraded(tmp_path, None, unlist="/sys/bus/pci/devices")
    for cid in ("gpu.candidate", "gpu.group_isolated", "vfio.ids_configured", "vfio.early_load",
                "vfio.group_viable", "vfio.binding_persistent"):
        res = copy_results[cid]
        assert res.status == Status.UNKNOWN, f"{cid}: {res.status.value} ({res.summary})"
    for cid in ("cpu.virtualization", "firmware.iommu_table", "cmdline.iommu_enabled", "iommu.active"):
        assert copy_results[cid].status.value == PARTIAL[cid]


@pytest.mark.parametrize("name", [p.parent.name for p in EXPECTED_FILES])
def test_every_remedy_is_of_a_family_the_fix_table_pairs_with_its_check(replay, name: str) -> None:  # type: ignore[no-untyped-def]
    """doctor.registry.FIXES is the one pairing: a remedy whose typed parameters name another family
    would be dropped by the fixer, so no check may give one (on any fixture)."""
    from doctor.registry import FIXES

    report, _, _ = replay(name)
    for sr in report.results:
        rem = sr.result.remedy
        if rem is not None and rem.params is not None and rem.params.family:
            assert rem.params.family in FIXES.get(sr.result.check_id, ()), (sr.result.check_id, rem.params)
