"""Bounded reading of pasted inputs: by descriptor, only regular files (a folder walked with
O_NOFOLLOW), sizes, line lengths, encodings, binary data refused."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator

from doctor.datarecord import record
from doctor.errors import BadInput
from doctor.mirror import Entry, NotRegular, describe_mode, open_regular, read_fd, walk

MAX_FILE_BYTES = 8 * 1024 * 1024  # per file: head 6 MiB + tail 2 MiB beyond this
_HEAD = 6 * 1024 * 1024
_TAIL = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_LINE = 4096
MAX_FILES = 500


@record(frozen=True)
class InputText:
    path: str
    text: str
    notes: tuple[str, ...] = ()
    error: str = ""  # set when the file could not be used at all


def decode_bytes(data: bytes) -> tuple[str, list[str]]:
    """Text of pasted bytes; notes say what was odd (never raises)."""
    notes: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), ["UTF-16 text"]
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # mixed encodings: decode line by line, latin-1 where UTF-8 fails
        parts = []
        bad = 0
        for ln in data.split(b"\n"):
            try:
                parts.append(ln.decode("utf-8"))
            except UnicodeDecodeError:
                bad += 1
                parts.append(ln.decode("latin-1"))
        text = "\n".join(parts)
        notes.append(f"{bad} line(s) not UTF-8, read as Latin-1")
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text, notes


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def looks_binary(data: bytes) -> bool:
    sample = data[:65536]
    if not sample:
        return False
    if b"\x00" in sample and sample[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return True
    ctrl = sum(1 for b in sample if b < 9 or 13 < b < 32 and b != 27)
    return ctrl / len(sample) > 0.05


def read_input(path: str, dir_fd: int | None = None, shown: str = "") -> InputText:
    """One pasted file: a path named on the command line (the user's own link is followed), or
    a name in the folder dir_fd (never followed). Only a regular file is opened, reads are
    bounded."""
    shown = shown or path
    try:
        fd = open_regular(path, dir_fd=dir_fd, follow=dir_fd is None)
    except FileNotFoundError as e:
        raise BadInput(f"--from {shown}: no such file or folder") from e
    except IsADirectoryError as e:
        raise BadInput(f"--from {shown}: is a folder") from e
    except NotRegular as e:
        raise BadInput(f"--from {shown}: {e.what}, not a regular file: not read") from e
    except PermissionError as e:
        raise BadInput(f"--from {shown}: not readable (permission denied)") from e
    except OSError as e:
        raise BadInput(f"--from {shown}: cannot be read ({e.strerror or e})") from e
    try:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            head = read_fd(fd, _HEAD - 1)
            os.lseek(fd, max(size - _TAIL, _HEAD), os.SEEK_SET)
            tail = read_fd(fd, _TAIL - 1)
            cut = [f"{size} bytes: only the first {_HEAD} and the last {_TAIL} bytes were read"]
            data = head.rsplit(b"\n", 1)[0] + b"\n" + tail.split(b"\n", 1)[-1]
        else:
            data = read_fd(fd, MAX_FILE_BYTES)
            cut = []
    except OSError as e:
        raise BadInput(f"--from {shown}: cannot be read ({e.strerror or e})") from e
    finally:
        os.close(fd)
    return _input_text(shown, data, cut)


def _input_text(path: str, data: bytes, cut: list[str]) -> InputText:
    if not data.strip():
        return InputText(path, "", tuple(cut), "empty file")
    if looks_binary(data):
        return InputText(path, "", tuple(cut), "binary data (NUL or control bytes), not pasted text: skipped")
    text, notes = decode_bytes(data)
    if not text.endswith("\n"):
        notes.append("last line has no newline (cut off?)")
    long_lines = 0
    if max(map(len, text.split("\n"))) > MAX_LINE:
        out = []
        for ln in text.split("\n"):
            if len(ln) > MAX_LINE:
                long_lines += 1
                ln = ln[:MAX_LINE]
            out.append(ln)
        text = "\n".join(out)
        notes.append(f"{long_lines} line(s) longer than {MAX_LINE} characters were cut")
    return InputText(path, text, tuple(cut + notes))


@record(frozen=True)
class Found:
    """One input to read: `read()` opens it (only while its folder is being walked), or
    `skip` says why it is listed and not read (a link inside a folder, a FIFO)."""

    path: str
    read: Callable[[], InputText] | None
    skip: str = ""


def expand_paths(paths: Iterable[str]) -> Iterator[Found]:
    """The files named, and every file inside the folders named (dot names left out). A
    folder is walked by descriptor: a link inside it is listed and never followed, a FIFO,
    device or socket is listed and never opened."""
    count = 0
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError as e:
            raise BadInput(f"--from {p}: no such file or folder") from e
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        if not stat.S_ISDIR(st.st_mode):
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"--from {p}: {describe_mode(st.st_mode)}, not a regular file: not read")
            count += 1
            yield Found(p, lambda p=p: read_input(p))  # type: ignore[misc]
            continue
        try:
            top = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        found = 0
        try:
            for ent in walk(top, skip=lambda n: n.startswith("."), max_depth=32):
                shown = os.path.join(p, *ent.parts)
                mode = ent.st.st_mode
                if stat.S_ISDIR(mode):
                    continue
                found += 1
                count += 1
                if count > MAX_FILES:
                    raise BadInput(f"--from: more than {MAX_FILES} files; point it at the pasted outputs only")
                if stat.S_ISREG(mode):
                    yield Found(shown, lambda n=ent.name, d=ent.dir_fd, s=shown: read_input(n, d, s))  # type: ignore[misc]
                elif stat.S_ISLNK(mode):
                    yield Found(shown, None, f"{describe_mode(mode)} (to {_link(ent)!r}): not followed")
                else:
                    yield Found(shown, None, f"{describe_mode(mode)}: not read")
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        finally:
            os.close(top)
        if not found:
            raise BadInput(f"--from {p}: the folder holds no files")


def _link(ent: Entry) -> str:
    try:
        return os.readlink(ent.name, dir_fd=ent.dir_fd)[:200]
    except OSError:
        return "?"
