"""Validation of what `gpudoctor vm ...` is given (shared by its subcommands): a clear one-line
error naming the bad argument (BadInput, exit 2), never a traceback."""

from __future__ import annotations

import os
import re
import stat

from doctor.errors import BadInput

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadInput(f"NAME {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def regular_file(opt: str, path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as e:
        raise BadInput(f"{opt} {path}: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{opt} {path}: not a regular file")
    return os.path.abspath(path)
