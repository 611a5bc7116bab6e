"""Every output (`--html`, `check --json -o`, `record -o`) goes through doctor.output.write_output:
beside the target, then renamed; devices, FIFOs, sockets, folders and every symlink are refused with
exit 2 and one line; a failure (no folder, read-only, no space) leaves neither a partial target nor a
temporary file."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import time
from typing import Any

import pytest

from doctor import output
from doctor.errors import BadInput
from doctor.output import write_output

ROOT = os.path.join(os.path.dirname(__file__), "..")
SNAP = os.path.join(ROOT, "fixtures", "dev-machine")


def gd(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT)}
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, check=False,
                          timeout=60, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def one_line_error(p: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("gpudoctor: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# -- write_output itself


def test_a_new_file_is_written_whole_and_nothing_else_is_left(tmp_path: Any) -> None:
    t = tmp_path / "r.json"
    write_output(str(t), b"{}\n")
    assert t.read_bytes() == b"{}\n" and os.listdir(tmp_path) == ["r.json"]


def test_an_existing_regular_file_is_replaced_and_keeps_its_mode(tmp_path: Any) -> None:
    t = tmp_path / "r.json"
    t.write_bytes(b"old")
    os.chmod(t, 0o600)
    ino = os.stat(t).st_ino
    write_output(str(t), b"new")
    assert t.read_bytes() == b"new" and stat.S_IMODE(os.stat(t).st_mode) == 0o600
    assert os.stat(t).st_ino != ino  # renamed over, not written through
    assert os.listdir(tmp_path) == ["r.json"]


def test_replace_false_never_overwrites(tmp_path: Any) -> None:
    t = tmp_path / "s.tar.gz"
    t.write_bytes(b"mine")
    with pytest.raises(BadInput, match="already exists"):
        write_output(str(t), b"x", "record -o", replace=False)
    assert t.read_bytes() == b"mine" and os.listdir(tmp_path) == ["s.tar.gz"]


def special_targets(tmp_path: Any) -> dict[str, tuple[str, str]]:
    """name -> (path, what the refusal says)."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    sock_path = str(tmp_path / "sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    s.close()
    real = tmp_path / "real.html"
    real.write_bytes(b"keep me")
    os.symlink(str(real), str(tmp_path / "link-to-file"))
    os.symlink("/dev/null", str(tmp_path / "link-to-dev"))
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "dangling"))
    os.mkdir(tmp_path / "folder")
    return {
        "char device": ("/dev/full", "character device"),
        "fifo": (fifo, "FIFO"),
        "socket": (sock_path, "socket"),
        "link to a file": (str(tmp_path / "link-to-file"), "symbolic link"),
        "link to a device": (str(tmp_path / "link-to-dev"), "symbolic link"),
        "dangling link": (str(tmp_path / "dangling"), "symbolic link"),
        "/dev/stdout": ("/dev/stdout", "symbolic link"),
        "folder": (str(tmp_path / "folder"), "is a folder"),
    }


def kinds(paths: list[str]) -> list[tuple[int, str | None, bytes | None]]:
    out = []
    for p in paths:
        st = os.lstat(p)
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
        data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
        out.append((stat.S_IFMT(st.st_mode), link, data))
    return out


def test_special_targets_are_refused_and_left_as_they_were(tmp_path: Any) -> None:
    targets = special_targets(tmp_path)
    paths = [p for p, _ in targets.values()] + [str(tmp_path / "real.html")]
    before = kinds(paths)
    for name, (path, says) in targets.items():
        with pytest.raises(BadInput, match=says):
            write_output(path, b"<html>", "--html")
        assert kinds(paths) == before, name
    assert sorted(os.listdir(tmp_path)) == ["dangling", "fifo", "folder", "link-to-dev", "link-to-file", "real.html", "sock"]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_a_failing_write_leaves_no_partial_target_and_no_temp_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                                    err: int) -> None:
    """ENOSPC as /dev/full used to give it: the first write goes half through, the next fails."""
    fresh, old = tmp_path / "new.html", tmp_path / "old.html"
    old.write_bytes(b"the previous report")
    real_write = os.write
    calls = []

    def write(fd: int, data: Any) -> int:
        calls.append(len(data))
        if len(calls) % 2 == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "write", write)
    for t in (fresh, old):
        with pytest.raises(BadInput) as ei:
            write_output(str(t), b"x" * 100_000, "--html")
        assert str(t) in str(ei.value) and os.strerror(err) in str(ei.value) and "\n" not in str(ei.value)
    assert calls and sorted(os.listdir(tmp_path)) == ["old.html"]
    assert old.read_bytes() == b"the previous report"


def test_a_target_swapped_for_a_fifo_while_writing_is_not_replaced(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is judged again just before the rename."""
    t = str(tmp_path / "r.html")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if not os.path.lexists(t):
            os.mkfifo(t)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(BadInput, match="FIFO"):
        write_output(t, b"<html>", "--html")
    assert stat.S_ISFIFO(os.lstat(t).st_mode) and os.listdir(tmp_path) == ["r.html"]


def test_dash_is_standard_output_as_bytes(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    write_output("-", b"\x1f\x8b\x00binary")
    assert capfdbinary.readouterr().out == b"\x1f\x8b\x00binary"


# -- through the CLI: exit 2 and one line, never 3


def test_check_html_dev_full_leaves_the_device_alone() -> None:
    before = os.lstat("/dev/full")
    p = gd("check", "--snapshot", SNAP, "--html", "/dev/full")
    one_line_error(p, "--html /dev/full", "character device")
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_no_output_option_writes_through_a_special_target(tmp_path: Any) -> None:
    targets = special_targets(tmp_path)
    paths = [p for p, _ in targets.values()] + [str(tmp_path / "real.html")]
    before = kinds(paths)
    for name, (path, says) in targets.items():
        for argv in (["check", "--snapshot", SNAP, "--html", path], ["check", "--snapshot", SNAP, "--json", "-o", path],
                     ["record", "-o", path]):
            if argv[0] == "record" and name == "folder":
                continue  # an empty folder is where `record -o FOLDER` may write its snapshot
            t0 = time.monotonic()
            p = gd(*argv)
            assert time.monotonic() - t0 < 30, (name, argv)  # a FIFO never blocks
            line = one_line_error(p, path)
            assert says in line, (name, argv, line)
            assert p.stdout == b"", (name, argv)
            assert kinds(paths) == before, (name, argv)


@pytest.mark.parametrize("opt", [["--html"], ["--json", "-o"], ["record-tar"], ["record-folder"]])
def test_bad_output_paths_are_exit_2_with_one_line(tmp_path: Any, opt: list[str]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    name = "out.tar.gz" if opt == ["record-tar"] else "snap" if opt == ["record-folder"] else "out"
    bad = {"a file as folder": (str(plain / name), "Not a directory")}
    if opt == ["--html"]:  # --html creates its folder (the default reports/ must be made)
        made = tmp_path / "no" / "such" / name
        assert gd("check", "--snapshot", SNAP, "--html", str(made)).returncode == 1 and made.is_file()
    else:
        bad["missing folder"] = (str(tmp_path / "no" / name), "does not exist")
    if os.geteuid() != 0:
        bad["read-only folder"] = (str(ro / name), "Permission denied")
    for _why, (path, says) in bad.items():
        argv = ["record", "-o", path] if opt[0].startswith("record") else ["check", "--snapshot", SNAP, *opt, path]
        one_line_error(gd(*argv), path, says)
    assert not os.listdir(ro)


def test_a_read_only_folder_is_exit_2_even_as_root(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Root writes into a 0500 folder; a read-only mount is what stops it: EROFS at the O_EXCL open."""
    from doctor.cli import main

    real_open = os.open

    def ro_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    for argv in (["check", "--snapshot", SNAP, "--json", "-o", str(tmp_path / "r.json")],
                 ["check", "--snapshot", SNAP, "--html", str(tmp_path / "r.html")],
                 ["record", "-o", str(tmp_path / "s.tar.gz")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Read-only file system" in err and str(tmp_path) in err, err
    assert os.listdir(tmp_path) == []


def test_record_to_standard_output_is_the_archive_and_nothing_else(tmp_path: Any) -> None:
    p = gd("record", "-o", "-")
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout), mode="r:gz") as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("snapshot/manifest.json"))  # type: ignore[arg-type]
    assert "snapshot/root" in names and manifest["format"] == "gpudoctor-snapshot"
    assert b"snapshot written to standard output" in p.stderr
    snap = tmp_path / "piped.tar.gz"
    snap.write_bytes(p.stdout)
    c = gd("check", "--snapshot", str(snap), "--json")
    assert c.returncode in (0, 1, 3) and json.loads(c.stdout)["format"] == "gpudoctor.check"


def test_record_never_overwrites_a_file(tmp_path: Any) -> None:
    t = tmp_path / "s.tar.gz"
    t.write_bytes(b"mine")
    one_line_error(gd("record", "-o", str(t)), "already exists")
    assert t.read_bytes() == b"mine" and os.listdir(tmp_path) == ["s.tar.gz"]


def test_check_json_to_a_file_keeps_the_table_on_stdout(tmp_path: Any) -> None:
    t = tmp_path / "r.json"
    p = gd("check", "--snapshot", SNAP, "--json", "-o", str(t))
    assert p.returncode == 1, p.stderr
    doc = json.loads(t.read_bytes())
    assert doc["format"] == "gpudoctor.check" and doc["summary"]["exit_code"] == 1
    assert b"iommu.active" in p.stdout and not p.stdout.lstrip().startswith(b"{")
    assert f"JSON document written to {t}".encode() in p.stderr
    q = gd("check", "--snapshot", SNAP, "--json", "-o", "-")  # "-": standard output, pure JSON, no table
    assert q.returncode == 1 and json.loads(q.stdout)["format"] == "gpudoctor.check" and q.stderr == b""


def test_html_to_standard_output_replaces_the_table() -> None:
    p = gd("check", "--snapshot", SNAP, "--html", "-")
    assert p.returncode == 1, p.stderr
    assert p.stdout.startswith(b"<!DOCTYPE html>") and p.stdout.rstrip().endswith(b"</html>")


@pytest.mark.parametrize("argv, says", [
    (["--html", "-", "--json"], "both want standard output"),
    (["-o", "x.json"], "goes with --json"),
])
def test_conflicting_output_options_are_exit_2(argv: list[str], says: str) -> None:
    one_line_error(gd("check", "--snapshot", SNAP, *argv), says)


def test_from_pasted_json_to_a_file(tmp_path: Any) -> None:
    t = tmp_path / "p.json"
    p = gd("check", "--from", os.path.join(ROOT, "fixtures/pasted/gh-kubevirt-4226/input"), "--json", "-o", str(t))
    assert p.returncode in (0, 1), p.stderr
    assert json.loads(t.read_bytes())["format"] == "gpudoctor.check"
    one_line_error(gd("check", "--from", os.path.join(ROOT, "fixtures/pasted/gh-kubevirt-4226/input"), "--html", "/dev/full"),
                   "character device")


def test_output_module_names_every_refused_kind() -> None:
    assert output.refusal("/dev/null", "x") and "character device" in str(output.refusal("/dev/null", "x"))
    assert output.refusal("/nonexistent-gpudoctor-target", "x") is None


@pytest.mark.parametrize("argv", [["record", "-o", "-"], ["check", "--snapshot", SNAP, "--json"],
                                  ["check", "--snapshot", SNAP, "--html", "-"]])
def test_a_closed_or_full_standard_output_is_exit_2(argv: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT)}
    cmd = [sys.executable, "-m", "doctor.cli", *argv]
    with open("/dev/full", "wb") as full:
        p = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, check=False, timeout=60, env=env)
    assert p.returncode == 2 and b"No space left on device" in p.stderr and b"Traceback" not in p.stderr, p.stderr
    closed = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *cmd], stderr=subprocess.PIPE, check=False, timeout=60, env=env)
    assert closed.returncode == 2 and b"standard output is closed" in closed.stderr, closed.stderr
