"""Snapshots replay faithfully; what was not recorded is 'not captured', never absent."""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest

from doctor.errors import NotCaptured, SnapshotError
from doctor.facts import HostFacts
from doctor.host import CommandResult, LiveHost
from doctor.runner import run_checks
from doctor.snapshot import DirHost, SnapshotHost, record


def statuses(host) -> list[tuple[str, str | None, str]]:  # type: ignore[no-untyped-def]
    rep = run_checks(HostFacts(host), host.source_info())
    return [(sr.result.check_id, sr.subject, sr.result.status.value) for sr in rep.results]


def make_tree(tmp_path) -> DirHost:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-13-amd64\n")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nflags\t\t: fpu vmx\n")
    dev = root / "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"
    dev.mkdir(parents=True)
    (dev / "class").write_text("0x030000\n")
    (dev / "vendor").write_text("0x10de\n")
    (dev / "device").write_text("0x1e84\n")
    (dev / "boot_vga").write_text("0\n")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0", root / "sys/bus/pci/devices/0000:01:00.0")
    (root / "sys/bus/pci/drivers/vfio-pci").mkdir(parents=True)
    os.symlink("../../../../bus/pci/drivers/vfio-pci", dev / "driver")
    g = root / "sys/kernel/iommu_groups/7/devices"
    g.mkdir(parents=True)
    os.symlink("../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0", g / "0000:01:00.0")
    os.symlink("../../../../kernel/iommu_groups/7", dev / "iommu_group")
    cmds = {("dmesg",): CommandResult(("dmesg",), 0, "[0.1] DMAR: IOMMU enabled\n", "")}
    return DirHost(str(root), cmds)


def test_snapshot_replays_the_same_verdicts_as_its_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = make_tree(tmp_path)
    out = str(tmp_path / "snap")
    record(out, src)
    snap = SnapshotHost(out)
    assert statuses(snap) == statuses(src)
    f = HostFacts(snap)
    d = f.pci_devices()["0000:01:00.0"]
    assert (d.driver, d.iommu_group, d.ident) == ("vfio-pci", "7", "10de:1e84")
    assert f.iommu_groups() == {"7": ("0000:01:00.0",)}


def test_links_are_kept_as_links(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "snap"
    record(str(out), make_tree(tmp_path))
    assert os.path.islink(out / "root/sys/bus/pci/devices/0000:01:00.0")
    assert os.readlink(out / "root/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/driver") == "../../../../bus/pci/drivers/vfio-pci"


def test_live_host_record_and_replay_agree() -> None:
    live = LiveHost()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "live.tar.gz")
        record(out, live)
        snap = SnapshotHost(out)
        try:
            assert statuses(snap) == statuses(live)
        finally:
            snap.close()


def test_uncaptured_path_raises_not_captured_and_covered_absent_is_absent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "snap")
    record(out, make_tree(tmp_path))
    snap = SnapshotHost(out)
    with pytest.raises(NotCaptured):
        snap.read_text("/etc/shadow")
    with pytest.raises(NotCaptured):
        snap.run(["uname", "-a"])
    with pytest.raises(FileNotFoundError):
        snap.read_text("/etc/default/grub")  # covered, and not on that host
    assert snap.exists("/etc/default/grub") is False


def test_tarball_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = make_tree(tmp_path)
    out = str(tmp_path / "s.tar.gz")
    record(out, src)
    assert tarfile.is_tarfile(out)
    snap = SnapshotHost(out)
    assert statuses(snap) == statuses(src)
    snap.close()


def test_record_refuses_to_overwrite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SnapshotError, match="already exists"):
        record(str(out), make_tree(tmp_path))
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-manifest", "no manifest.json"),
        ("garbage-manifest", "not valid JSON"),
        ("wrong-format", "not a gpudoctor-snapshot manifest"),
        ("future-version", "format version"),
        ("bad-commands", "malformed"),
    ],
)
def test_damaged_snapshot_is_a_clear_error(tmp_path, damage, message) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "snap"
    record(str(out), make_tree(tmp_path))
    m = out / "manifest.json"
    data = json.loads(m.read_text())
    if damage == "no-manifest":
        m.unlink()
    elif damage == "garbage-manifest":
        m.write_bytes(b"\x00\xff{{{")
    elif damage == "wrong-format":
        m.write_text(json.dumps({"format": "x"}))
    elif damage == "future-version":
        data["version"] = 99
        m.write_text(json.dumps(data))
    elif damage == "bad-commands":
        data["commands"] = [{"no-argv": 1}]
        m.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match=message):
        SnapshotHost(str(out))


def test_corrupt_and_hostile_tarballs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "s.tar.gz"
    record(str(src), make_tree(tmp_path))
    trunc = tmp_path / "trunc.tar.gz"
    trunc.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
    with pytest.raises(SnapshotError):
        SnapshotHost(str(trunc))
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "p.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(payload, arcname="../escape.txt")
    with pytest.raises(SnapshotError, match="outside"):
        SnapshotHost(str(evil))
    assert not (tmp_path.parent / "escape.txt").exists()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(SnapshotError):
        SnapshotHost(str(junk))


def test_symlink_cannot_escape_the_snapshot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "snap"
    record(str(out), make_tree(tmp_path))
    # plant a link to the real /etc/hostname in place of /proc/cmdline
    target = out / "root/proc/cmdline"
    target.unlink()
    os.symlink("/etc/passwd", target)
    snap = SnapshotHost(str(out))
    with pytest.raises(FileNotFoundError):
        snap.read_text("/proc/cmdline")  # resolved inside the mirror: root/etc/passwd does not exist


def test_missing_file_in_snapshot_gives_unknown_not_a_wrong_verdict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "snap"
    record(str(out), make_tree(tmp_path))
    m = json.loads((out / "manifest.json").read_text())
    m["captured"] = [p for p in m["captured"] if p != "/proc/cmdline"]
    (out / "manifest.json").write_text(json.dumps(m))
    shutil.rmtree(out / "root/proc/sys", ignore_errors=True)
    rep = run_checks(HostFacts(SnapshotHost(str(out))), SnapshotHost(str(out)).source_info())
    by = {sr.result.check_id: sr.result for sr in rep.results}
    assert by["cmdline.iommu_enabled"].status.value == "unknown"
    assert "not captured" in by["cmdline.iommu_enabled"].summary


def test_binary_junk_in_sysfs_skips_the_device_without_crashing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = make_tree(tmp_path)
    dev = tmp_path / "root/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"
    (dev / "class").write_bytes(b"\xff\xfe\x00garbage")
    (dev / "vendor").write_bytes(os.urandom(16))
    rep = run_checks(HostFacts(h), h.source_info())
    assert all(sr.result.status.value != "error" for sr in rep.results)
