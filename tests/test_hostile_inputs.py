"""Snapshots and pasted folders are hostile data: crafted archives and folders end in exit 2
with one line naming what was wrong, never write anything, never read the machine they run
on, never hang. CI runs this file under Debian's own /usr/bin/python3 too (scripts/test.sh),
which has no tarfile.data_filter: that is where an extraction escape was real."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doctor import archive
from doctor.cli import main
from doctor.errors import NotCaptured
from doctor.snapshot import DirHost, SnapshotHost

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "fixtures", "dev-machine")
SYSTEM = ("/proc/", "/sys/", "/etc/", "/dev/", "/boot/", "/root/", "/var/", "/run/", "/lib/modules")
RECORDED_CMDLINE = b"BOOT_IMAGE=/vmlinuz-6.1.0-recorded root=/dev/sda1 ro intel_iommu=on\n"
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if event == "open" and _opened is not None and isinstance(args[0], str) and args[0].startswith(SYSTEM):
        _opened.append(args[0])


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def guard(tmp_path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """No test may hang (SIGALRM after 20 s), write outside tmp_path (a sentinel beside it,
    the folder around it and a private temp folder are compared), or open a path of this
    machine (audit hook)."""
    global _opened
    sentinel = tmp_path.parent / f"{tmp_path.name}-sentinel.txt"
    sentinel.write_text("mine\n")
    private_tmp = tmp_path.parent / f"{tmp_path.name}-tmp"
    private_tmp.mkdir()
    before_parent = around(tmp_path)
    old_tempdir, tempfile.tempdir = tempfile.tempdir, str(private_tmp)

    def stop(*_: object) -> None:
        raise TimeoutError("hostile input made gpudoctor hang")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(20)
    _opened = []
    try:
        yield
        assert _opened == [], f"read the machine it runs on: {_opened[:5]}"
    finally:
        _opened = None
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        tempfile.tempdir = old_tempdir
    assert sentinel.read_text() == "mine\n"
    assert around(tmp_path) == before_parent
    assert os.listdir(private_tmp) == []
    sentinel.unlink()
    private_tmp.rmdir()


def around(tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    """What lies beside tmp_path (pytest's own `...current` links left out)."""
    return sorted(n for n in os.listdir(tmp_path.parent) if not n.endswith("current"))


# -- building archives -------------------------------------------------------------------------


def base_members(drop: tuple[str, ...] = ()) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """fixtures/dev-machine as archive members under snapshot/, leaving out `drop` (and what is
    below), with a /proc/cmdline unlike this machine's."""
    out: list[tuple[tarfile.TarInfo, bytes | None]] = [(dirm("snapshot"), None)]
    for d, dirs, files in os.walk(BASE):
        dirs.sort()
        for n in sorted(dirs) + sorted(files):
            p = os.path.join(d, n)
            name = "snapshot/" + os.path.relpath(p, BASE)
            if any(name == x or name.startswith(x + "/") for x in drop):
                continue
            if os.path.islink(p):
                out.append((sym(name, os.readlink(p)), None))
            elif os.path.isdir(p):
                out.append((dirm(name), None))
            elif name == "snapshot/root/proc/cmdline":  # dev-machine was recorded on a machine like this one
                out.append(reg(name, RECORDED_CMDLINE))
            else:
                with open(p, "rb") as f:
                    out.append(reg(name, f.read()))
    return out


def dirm(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti


def sym(name: str, target: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti


def reg(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), mode
    return ti, data


def special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.devmajor, ti.devminor = kind, link, 1, 5
    return ti


def pack(path, members, mode: str = "w:gz") -> str:  # type: ignore[no-untyped-def]
    """Write the archive; "@OUT" in names and link targets becomes the folder around the
    archive's folder: where a reader that extracts would escape to, and the guard looks."""
    out = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti, data = m if isinstance(m, tuple) else (m, None)
            ti = copy.copy(ti)
            ti.name, ti.linkname = ti.name.replace("@OUT", out), ti.linkname.replace("@OUT", out)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return str(path)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, argv: list[str], *words: str) -> str:  # type: ignore[no-untyped-def]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2, (rc, err[-500:])
    assert out == ""
    line = err.strip()
    assert line.startswith("gpudoctor: error: ") and "\n" not in line, err
    for w in words:
        assert w in line, line
    return line


with open("/proc/cmdline") as _f:
    _CMDLINE = _f.read().strip()[:40]


def machine_cmdline() -> str:
    """The start of this machine's /proc/cmdline (read once, before any test runs)."""
    return _CMDLINE


# -- archives ----------------------------------------------------------------------------------


def test_the_base_archive_replays(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The crafted archives below differ from a good one only in what each test plants."""
    snap = pack(tmp_path / "ok.tar.gz", base_members())
    rc, out, err = run_cli(capsys, "check", "--snapshot", snap, "--json")
    assert rc in (0, 1), err
    assert json.loads(out)["results"]


@pytest.mark.parametrize("planted, words", [
    ([sym("snapshot/root/lnk", "@OUT"), reg("snapshot/root/lnk/cron.d/evil", b"* * * * * root sh\n")],
     ["snapshot/root/lnk/cron.d/evil", "goes through the symlink member", "'snapshot/root/lnk'"]),
    ([sym("snapshot/root/x", "../../.."), dirm("snapshot/root/x/y")], ["goes through the symlink member"]),
    ([reg("snapshot/root/f", b"x"), reg("snapshot/root/f/g", b"y")], ["goes through the file member"]),
    ([reg("@OUT/abs-escape", b"x")], ["points outside"]),
    ([reg("snapshot/../../escape", b"x")], ["points outside"]),
    ([special("snapshot/root/hard", tarfile.LNKTYPE, "@OUT/sentinel")], ["hard link"]),
    ([special("snapshot/root/dev/zero", tarfile.CHRTYPE)], ["is a device"]),
    ([special("snapshot/root/dev/sda", tarfile.BLKTYPE)], ["is a device"]),
    ([special("snapshot/root/fifo", tarfile.FIFOTYPE)], ["is a FIFO"]),
    ([reg("snapshot/root/dup", b"one"), reg("snapshot/root/dup", b"two")], ["conflicting duplicate"]),
    ([dirm("snapshot/root/d2"), sym("snapshot/root/d2", "@OUT")], ["conflicting duplicate"]),
])
def test_crafted_members_are_refused_and_nothing_is_written(tmp_path, capsys, planted, words) -> None:  # type: ignore[no-untyped-def]
    snap = pack(tmp_path / "evil.tar.gz", base_members() + planted)
    refused(capsys, ["check", "--snapshot", snap], *words)
    refused(capsys, ["fix", "--all", "--snapshot", snap], *words)
    assert os.listdir(tmp_path) == ["evil.tar.gz"]


@pytest.mark.parametrize("drop, planted, words", [
    ("snapshot/root", sym("snapshot/root", "/"), ["root/ is a symbolic link"]),
    ("snapshot/manifest.json", sym("snapshot/manifest.json", "/etc/passwd"), ["manifest.json is a symbolic link"]),
    ("snapshot/root", reg("snapshot/root", b"not a folder"), ["has no root/ folder"]),
])
def test_root_and_manifest_must_be_real(tmp_path, capsys, drop, planted, words) -> None:  # type: ignore[no-untyped-def]
    snap = pack(tmp_path / "evil.tar.gz", base_members(drop=(drop,)) + [planted])
    line = refused(capsys, ["check", "--snapshot", snap, "--json"], *words)
    assert machine_cmdline() not in line


def test_a_symlinked_top_folder_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    snap = pack(tmp_path / "evil.tar.gz", [sym("snapshot", "/")])
    refused(capsys, ["check", "--snapshot", snap], "top folder", "symlink member")


def test_absolute_links_resolve_inside_the_mirror_not_on_this_machine(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Links to /proc/cmdline, /etc and / inside root/ lead to the mirror's own paths: the
    run reports the recorded host (or unknown), never this machine's files."""
    planted = [sym("snapshot/root/proc/cmdline", "/../../../../proc/self/../cmdline-elsewhere"),
               sym("snapshot/root/etc", "/"), sym("snapshot/root/boot", "../../../../../../boot")]
    snap = pack(tmp_path / "links.tar.gz", base_members(drop=("snapshot/root/proc/cmdline", "snapshot/root/etc",
                                                                "snapshot/root/boot")) + planted)
    rc, out, err = run_cli(capsys, "check", "--snapshot", snap, "--json")
    assert rc in (0, 1), err
    assert machine_cmdline() not in out
    statuses = {r["id"]: r["status"] for r in json.loads(out)["results"]}
    assert "error" not in statuses.values()


def test_link_loops_are_unknown_not_a_crash(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    planted = [sym("snapshot/root/proc/cmdline", "cmdline"), sym("snapshot/root/sys/kernel/iommu_groups", "/sys/kernel/x"),
               sym("snapshot/root/sys/kernel/x", "iommu_groups")]
    snap = pack(tmp_path / "loop.tar.gz", base_members(drop=("snapshot/root/proc/cmdline",
                                                               "snapshot/root/sys/kernel/iommu_groups")) + planted)
    rc, out, err = run_cli(capsys, "check", "--snapshot", snap, "--json")
    assert rc in (0, 1), err
    results = json.loads(out)["results"]
    assert all(r["status"] != "error" for r in results), [r for r in results if r["status"] == "error"]


# -- caps --------------------------------------------------------------------------------------


def test_a_huge_member_is_refused_before_it_is_read(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    big = tarfile.TarInfo("snapshot/root/huge")
    big.size = 10 * 1024**3  # declared, never written: refused at its header
    path = tmp_path / "huge.tar"
    with open(path, "wb") as f:
        f.write(big.tobuf(tarfile.PAX_FORMAT))
    refused(capsys, ["check", "--snapshot", str(path)], "snapshot/root/huge", "cap on the size of one file")


def test_a_sparse_member_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ti = tarfile.TarInfo("snapshot/root/GNUSparseFile.0/sparse")
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "snapshot/root/sparse",
                      "GNU.sparse.realsize": str(8 * 1024**3)}
    data = b"1\n0\n512\n".ljust(512, b"\0") + b"x" * 512
    snap = pack(tmp_path / "sparse.tar.gz", base_members() + [reg_ti(ti, data)])
    refused(capsys, ["check", "--snapshot", snap], "sparse")


def reg_ti(ti: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    ti.size = len(data)
    return ti, data


def test_a_gzip_bomb_stops_at_the_total_cap(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A 20 KiB archive of members within the one-file cap that unpacks past the total cap (both
    caps scaled down 32x to keep this quick: the same code path as 64 and 256 MiB)."""
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 8 * 1024**2)
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 2 * 1024**2)
    path = tmp_path / "bomb.tar.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for i in range(8):
            ti = tarfile.TarInfo(f"snapshot/root/zero{i}")
            ti.size = 2 * 1024**2
            f.write(z.compress(ti.tobuf(tarfile.PAX_FORMAT)))
            f.write(z.compress(bytes(ti.size)))
        f.write(z.flush())
    assert os.path.getsize(path) < 40_000
    refused(capsys, ["check", "--snapshot", str(path)], "cap on total uncompressed size")


def test_zeros_after_the_end_count_toward_the_cap(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 4 * 1024**2)
    path = tmp_path / "tail.tar.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for _ in range(8):
            f.write(z.compress(bytes(1024**2)))
        f.write(z.flush())
    refused(capsys, ["check", "--snapshot", str(path)], "cap on total uncompressed size")


def test_a_hundred_thousand_members_stop_at_the_member_cap(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ti = tarfile.TarInfo("snapshot/root/000000")
    ti.type = tarfile.DIRTYPE
    head = bytearray(ti.tobuf(tarfile.USTAR_FORMAT))
    head[148:156] = b" " * 8
    base = sum(head) - sum(b"000000")
    blocks = []
    for i in range(100_000):  # one header per member, its name and checksum patched (tobuf is slow)
        name = b"%06d" % i
        head[14:20] = name
        head[148:156] = b"%06o\0 " % (base + sum(name))
        blocks.append(bytes(head))
    path = tmp_path / "many.tar"
    path.write_bytes(b"".join(blocks) + bytes(1024))
    with tarfile.open(path) as tf:  # the headers are what tarfile itself reads back
        assert tf.next().name == "snapshot/root/000000"  # type: ignore[union-attr]
    refused(capsys, ["check", "--snapshot", str(path)], "cap on member count")


def test_very_deep_and_very_long_names_are_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    deep = pack(tmp_path / "deep.tar.gz", [dirm("snapshot/root/" + "/".join(["d"] * 100))])
    refused(capsys, ["check", "--snapshot", deep], "cap on path depth")
    long = pack(tmp_path / "long.tar.gz", [reg("snapshot/root/" + "n" * 5000, b"x")])
    refused(capsys, ["check", "--snapshot", long], "cap on path length")


def test_a_big_input_file_is_refused_at_once(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "zero.bin"
    with open(path, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB of zeros without the disk
    refused(capsys, ["check", "--snapshot", str(path)], "cap on archive size")
    small = tmp_path / "zero-small.bin"
    small.write_bytes(bytes(1024**2))
    refused(capsys, ["check", "--snapshot", str(small)], "no manifest.json")


@pytest.mark.parametrize("damage", ["truncated", "junk-after-gzip-header", "manifest-not-json", "deep-json"])
def test_damaged_archives_are_one_line(tmp_path, capsys, damage) -> None:  # type: ignore[no-untyped-def]
    good = pack(tmp_path / "good.tar.gz", base_members())
    raw = open(good, "rb").read()
    bad = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) * 2 // 3])
    elif damage == "junk-after-gzip-header":
        bad.write_bytes(raw[:10] + os.urandom(4000))
    else:
        text = b"[" * 100_000 if damage == "deep-json" else b"\xff{{"
        pack(bad, base_members(drop=("snapshot/manifest.json",)) + [reg("snapshot/manifest.json", text)])
    refused(capsys, ["check", "--snapshot", str(bad)])


# -- special files and folders ------------------------------------------------------------------


def test_devices_fifos_and_sockets_are_refused_unopened(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(capsys, ["check", "--snapshot", str(fifo)], "is a FIFO", "refused without reading it")
    refused(capsys, ["check", "--snapshot", "/dev/zero"], "character device")
    refused(capsys, ["fix", "--all", "--snapshot", "/dev/zero"], "character device")
    refused(capsys, ["check", "--from", str(fifo)], "a FIFO, not a regular file")
    refused(capsys, ["check", "--from", "/dev/zero"], "character device")
    import socket

    s = socket.socket(socket.AF_UNIX)
    sock = os.path.join(tempfile.mkdtemp(dir=tmp_path), "s")  # AF_UNIX paths are short
    try:
        s.bind(sock)
        refused(capsys, ["check", "--snapshot", sock], "socket")
    finally:
        s.close()


def folder_snapshot(tmp_path) -> str:  # type: ignore[no-untyped-def]
    import shutil

    out = tmp_path / "snap"
    shutil.copytree(BASE, out, symlinks=True)
    return str(out)


@pytest.mark.parametrize("plant, words", [
    ("fifo", ["is a FIFO", "root/proc/cmdline"]),
    ("root-link", ["root/ is a symbolic link"]),
    ("manifest-link", ["manifest.json is a symbolic link"]),
    ("deep", ["nested deeper", "cap on path depth"]),
])
def test_snapshot_folders_are_checked_whole(tmp_path, capsys, plant, words) -> None:  # type: ignore[no-untyped-def]
    snap = folder_snapshot(tmp_path)
    if plant == "fifo":
        os.unlink(os.path.join(snap, "root/proc/cmdline"))
        os.mkfifo(os.path.join(snap, "root/proc/cmdline"))
    elif plant == "root-link":
        os.rename(os.path.join(snap, "root"), os.path.join(snap, "old"))
        os.symlink("/", os.path.join(snap, "root"))
    elif plant == "manifest-link":
        os.rename(os.path.join(snap, "manifest.json"), os.path.join(snap, "real.json"))
        os.symlink("real.json", os.path.join(snap, "manifest.json"))
    else:
        os.makedirs(os.path.join(snap, "root", *["d"] * 70))
    refused(capsys, ["check", "--snapshot", snap], *words)


def test_links_in_a_snapshot_folder_stay_inside_it(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    snap = folder_snapshot(tmp_path)
    os.unlink(os.path.join(snap, "root/proc/cmdline"))
    os.symlink("/proc/cmdline", os.path.join(snap, "root/proc/cmdline"))  # a loop inside the mirror
    os.symlink("/", os.path.join(snap, "root/etc/escape"))
    h = SnapshotHost(snap)
    with pytest.raises(NotCaptured, match="loop"):
        h.read_text("/proc/cmdline")
    rc, out, err = run_cli(capsys, "check", "--snapshot", snap, "--json")
    assert rc in (0, 1), err
    assert machine_cmdline() not in out


def test_dir_host_never_follows_a_link_out_nor_opens_a_fifo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    os.symlink("/proc/cmdline", root / "proc/cmdline")
    os.symlink("../../../../../../../proc", root / "etc")
    os.mkfifo(root / "proc/fifo")
    (root / "proc/real").write_text("ok\n")
    h = DirHost(str(root))
    with pytest.raises(OSError):
        h.read_text("/proc/cmdline")  # resolves to itself inside the folder
    with pytest.raises(FileNotFoundError):
        h.read_text("/etc/hostname")  # root/etc -> (clamped at the folder) root/proc
    with pytest.raises(PermissionError, match="not read"):
        h.read_text("/proc/fifo")
    assert h.read_text("/etc/real") == "ok\n" and h.is_link("/etc") and h.listdir("/etc") == ["cmdline", "fifo", "real"]


def test_check_from_a_folder_never_follows_its_links(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("00:02.0 VGA compatible controller [0300]: SECRET-MARKER [8086:3e92]\n")
    pasted = tmp_path / "pasted"
    pasted.mkdir()
    with open(os.path.join(REPO, "fixtures", "pasted", "gh-64kram-vga-passthrough-15", "input", "iommu-groups.txt"), "rb") as f:
        (pasted / "groups.txt").write_bytes(f.read())
    os.symlink("/etc/shadow", pasted / "shadow")
    os.symlink(outside / "secret.txt", pasted / "lspci-more.txt")
    os.symlink(outside, pasted / "more")
    os.mkfifo(pasted / "fifo.txt")
    rc, out, err = run_cli(capsys, "check", "--from", str(pasted), "--json")
    assert rc in (0, 1), err
    assert "SECRET-MARKER" not in out and "root:" not in out
    text = json.dumps(json.loads(out))
    assert "shadow: a symbolic link (to '/etc/shadow'): not followed" in text
    assert "fifo.txt: a FIFO: not read" in text
    only_links = tmp_path / "links"
    only_links.mkdir()
    os.symlink("/etc/shadow", only_links / "shadow")
    refused(capsys, ["check", "--from", str(only_links)], "not followed")


# -- fuzz --------------------------------------------------------------------------------------

NAMES = ["snapshot/root/proc", "snapshot/root/proc/cmdline", "snapshot/root/sys", "snapshot/root/sys/bus/pci/devices",
         "snapshot/root/sys/kernel/iommu_groups", "snapshot/root/etc", "snapshot/root/etc/default/grub",
         "snapshot/root/etc/modprobe.d", "snapshot/root/boot", "snapshot/root", "snapshot/manifest.json",
         "snapshot/root/sys/bus/pci/devices/0000:01:00.0", "snapshot/root/lib/modules"]
# Absolute targets are the mirror's own paths; any that a broken reader would write through on the
# real machine are pseudo-filesystems (/proc, /sys) or the sandbox @OUT, never /etc or /: this
# suite must stay harmless even against an implementation that extracts (as the old one did).
TARGETS = ["@OUT", "@OUT/sentinel", "..", "../..", "../../..", ".", "/proc", "/proc/cmdline", "cmdline", "/sys",
           "/sys/bus", "/sys/bus/pci/devices", "/sys/kernel/iommu_groups", "a/b/c"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TARGETS), st.sampled_from(["link", "file", "dir"]),
                          st.booleans()), min_size=1, max_size=5))
def test_fuzzed_link_archives_never_crash_nor_write_outside(plants) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="hostile-") as d:
        members = []
        for name, target, kind, under in plants:
            name = name + "/x" if under else name
            members.append(sym(name, target) if kind == "link" else dirm(name) if kind == "dir" else
                           reg(name, target.encode() + b"\n"))
        drop = tuple(n for n, _, _, u in plants if not u)
        snap = pack(os.path.join(d, "f.tar.gz"), base_members(drop=drop) + members)
        import contextlib

        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(["check", "--snapshot", snap, "--json"])
        assert rc in (0, 1, 2), err.getvalue()
        if rc == 2:
            assert err.getvalue().startswith("gpudoctor: error: ") and err.getvalue().count("\n") == 1
        else:
            results = json.loads(out.getvalue())["results"]
            assert all(r["status"] != "error" for r in results), [r for r in results if r["status"] == "error"]
            assert machine_cmdline() not in out.getvalue()
        assert os.listdir(d) == ["f.tar.gz"]


_BASE_TAR: list[bytes] = []


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_archive_bytes_end_in_a_verdict_or_one_line(mutations) -> None:  # type: ignore[no-untyped-def]
    """Random bytes changed in a plain tar (where they hit headers: names, sizes, types, pax
    records): tarfile's own surprises end as exit 2 with one line, never a traceback (exit 3)."""
    import contextlib

    with tempfile.TemporaryDirectory(prefix="hostile-") as d:
        if not _BASE_TAR:
            _BASE_TAR.append(open(pack(os.path.join(d, "b.tar"), base_members(), mode="w"), "rb").read())
        raw = bytearray(_BASE_TAR[0])
        for off, val in mutations:
            raw[off % len(raw)] = val
        path = os.path.join(d, "m.tar")
        with open(path, "wb") as f:
            f.write(raw)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(["check", "--snapshot", path, "--json", "--only", "cmdline.iommu_enabled"])  # the archive is the point
        assert rc in (0, 1, 2), err.getvalue()
        if rc == 2:
            assert err.getvalue().startswith("gpudoctor: error: ") and err.getvalue().count("\n") == 1, err.getvalue()
        assert sorted(os.listdir(d)) == (["b.tar", "m.tar"] if "b.tar" in os.listdir(d) else ["m.tar"])
