"""Every file gpudoctor writes for the user (`--html`, `check --json -o`, `record -o`) goes through
`write_output`: a temporary file beside the target (same folder, O_EXCL, fsync), then a rename.

The target is judged with lstat before anything is written and again just before the rename:
- `-` is standard output, written as bytes (what a pipe or an Ansible module reads);
- a missing name or an existing regular file is fine (the file is replaced whole, keeping its mode);
- any symlink is refused, even one to a regular file: writing through a link is how `/dev/stdout`,
  `/dev/full` or a file elsewhere gets hit, and replacing the link itself would surprise whoever made
  it; give the real path (or `-` for standard output);
- a folder, a device, a FIFO or a socket is refused: nothing is opened, so a FIFO cannot block and a
  device node is never replaced.
Every refusal and every failure (missing or read-only folder, permission denied, no space left) is a
`BadInput` (exit 2) of one line naming the path and the reason, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from doctor.errors import BadInput

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


class OutputError(BadInput):
    """An output path that cannot (or must not) be written."""


def refusal(path: str, what: str) -> str | None:
    """Why `path` must not be written (None: it is absent or a regular file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return e.strerror or str(e)
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        return None
    name = _KINDS.get(kind, "not a regular file")
    if kind == stat.S_IFLNK:
        return f"is {name} (to {os.readlink(path)!r}); outputs never go through a link: give the real path, or - for standard output"
    if kind == stat.S_IFDIR:
        return f"is {name}; give a file name inside it"
    return f"is {name}; give a regular file name, or - for standard output"


def check_target(path: str, what: str = "output") -> str:
    """Refuse a bad target before any work is done; return the absolute path (or "-")."""
    if path == "-":
        return path
    if not path:
        raise OutputError(f"{what}: an empty path")
    target = os.path.abspath(path)
    why = refusal(target, what)
    if why:
        raise OutputError(f"{what} {path}: {why}")
    parent = os.path.dirname(target)
    try:
        pst = os.stat(parent)
    except FileNotFoundError:
        raise OutputError(f"{what} {path}: the folder {parent} does not exist") from None
    except OSError as e:
        raise OutputError(f"{what} {path}: the folder {parent}: {e.strerror or e}") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise OutputError(f"{what} {path}: {parent} is not a folder")
    return target


def write_output(path: str, data: bytes, what: str = "output", replace: bool = True) -> None:
    """Write `data` to `path` ("-": standard output) atomically; see the module docstring.

    `replace=False` refuses an existing target (record never overwrites a snapshot): the temporary
    file is then hard-linked to the name, which fails if the name exists, however late it appeared.
    """
    if path == "-":
        _write_stdout(data, what)
        return
    target = check_target(path, what)
    if not replace and os.path.lexists(target):
        raise OutputError(f"{what} {path}: already exists; choose a new path (nothing was overwritten)")
    parent = os.path.dirname(target)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.{os.urandom(4).hex()}.tmp")
    made = False
    try:
        try:
            mode = stat.S_IMODE(os.lstat(target).st_mode)
        except FileNotFoundError:
            mode = None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        made = True
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if mode is not None:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        why = refusal(target, what)  # it may have changed while we wrote
        if why:
            raise OutputError(f"{what} {path}: {why}")
        if replace:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
        made = False
        _fsync_dir(parent)
    except OutputError:
        _drop(tmp, made)
        raise
    except OSError as e:
        _drop(tmp, made)
        if e.errno == errno.EEXIST and not replace:
            raise OutputError(f"{what} {path}: already exists; choose a new path (nothing was overwritten)") from None
        raise OutputError(f"{what} {path}: cannot write in {parent}: {e.strerror or e}") from None
    except BaseException:
        _drop(tmp, made)
        raise


def _write_stdout(data: bytes, what: str) -> None:
    """Standard output as bytes; closed or full is exit 2 (a reader that went away is BrokenPipeError,
    which the CLI answers as a pipe should)."""
    if sys.stdout is None:
        raise OutputError(f"{what} -: standard output is closed")
    try:
        out = getattr(sys.stdout, "buffer", None)
        if out is None:  # a text stream stands in for standard output (an embedding program, a test)
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()
            return
        out.write(data)
        out.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise OutputError(f"{what} -: cannot write to standard output: {reason}") from None


def _link_new(tmp: str, target: str) -> None:
    """Give `tmp` the name `target` only if that name is free (EEXIST otherwise)."""
    try:
        os.link(tmp, target)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(target):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "exists", target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _drop(tmp: str, made: bool) -> None:
    if made:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_dir(d: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
