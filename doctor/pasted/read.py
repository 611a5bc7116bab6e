"""Bounded reading of pasted inputs: sizes, line lengths, encodings, binary data refused."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from doctor.errors import BadInput

MAX_FILE_BYTES = 8 * 1024 * 1024  # per file: head 6 MiB + tail 2 MiB beyond this
_HEAD = 6 * 1024 * 1024
_TAIL = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_LINE = 4096
MAX_FILES = 500


@dataclass(frozen=True)
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


def read_input(path: str) -> InputText:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size > MAX_FILE_BYTES:
                head = f.read(_HEAD)
                f.seek(max(size - _TAIL, _HEAD))
                tail = f.read(_TAIL)
                cut = [f"{size} bytes: only the first {_HEAD} and the last {_TAIL} bytes were read"]
                data = head.rsplit(b"\n", 1)[0] + b"\n" + tail.split(b"\n", 1)[-1]
            else:
                data = f.read(MAX_FILE_BYTES + 1)
                cut = []
    except FileNotFoundError as e:
        raise BadInput(f"--from {path}: no such file or folder") from e
    except IsADirectoryError as e:
        raise BadInput(f"--from {path}: is a folder") from e
    except PermissionError as e:
        raise BadInput(f"--from {path}: not readable (permission denied)") from e
    except OSError as e:
        raise BadInput(f"--from {path}: cannot be read ({e.strerror or e})") from e
    if not data.strip():
        return InputText(path, "", tuple(cut), "empty file")
    if looks_binary(data):
        return InputText(path, "", tuple(cut), "binary data (NUL or control bytes), not pasted text: skipped")
    text, notes = decode_bytes(data)
    if not text.endswith("\n"):
        notes.append("last line has no newline (cut off?)")
    long_lines = 0
    if any(len(ln) > MAX_LINE for ln in text.split("\n")):
        out = []
        for ln in text.split("\n"):
            if len(ln) > MAX_LINE:
                long_lines += 1
                ln = ln[:MAX_LINE]
            out.append(ln)
        text = "\n".join(out)
        notes.append(f"{long_lines} line(s) longer than {MAX_LINE} characters were cut")
    return InputText(path, text, tuple(cut + notes))


def expand_paths(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for d, dirs, files in os.walk(p):
                dirs[:] = sorted(x for x in dirs if not x.startswith("."))
                for n in sorted(files):
                    if n.startswith("."):
                        continue
                    fp = os.path.join(d, n)
                    if os.path.isfile(fp):
                        found.append(fp)
            if not found:
                raise BadInput(f"--from {p}: the folder holds no files")
            out.extend(found)
        elif os.path.exists(p):
            if not os.path.isfile(p):
                raise BadInput(f"--from {p}: not a regular file")
            out.append(p)
        else:
            raise BadInput(f"--from {p}: no such file or folder")
        if len(out) > MAX_FILES:
            raise BadInput(f"--from: more than {MAX_FILES} files; point it at the pasted outputs only")
    return out

