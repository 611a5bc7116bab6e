"""The one seam to the machine: a read-only Host.

Checks and facts read a machine only through a Host: `read_bytes`, `read_text`,
`exists`, `is_dir`, `listdir`, `readlink`, `glob`, `realpath` and `run(argv)`.
There are no write methods, so a check cannot change anything. Backends:
`LiveHost` (the running system) and `SnapshotHost` (a recorded folder or
tarball, in doctor.snapshot). Missing files raise FileNotFoundError, unreadable
ones PermissionError; a snapshot asked for something it did not record raises
NotCaptured, never FileNotFoundError.
"""

from __future__ import annotations

import abc
import errno
import fnmatch
import os
from collections.abc import Callable

from doctor.datarecord import record
from doctor.errors import NotCaptured
from doctor.model import SourceInfo

MAX_READ = 64 * 1024 * 1024
MAX_OUTPUT = 32 * 1024 * 1024


@record(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int | None
    stdout: str
    stderr: str
    found: bool = True
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.found and not self.timed_out and self.rc == 0

    def describe(self) -> str:
        cmd = " ".join(self.argv)
        if not self.found:
            return f"`{cmd}`: command not found"
        if self.timed_out:
            return f"`{cmd}`: timed out"
        if self.rc != 0:
            err = self.stderr.strip().splitlines()
            return f"`{cmd}` exited {self.rc}" + (f": {err[-1]}" if err else "")
        return f"`{cmd}` succeeded"

    def to_dict(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "rc": self.rc,
            "found": self.found,
            "timed_out": self.timed_out,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def split_path(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"host paths are absolute: {path!r}")
    return [p for p in path.split("/") if p and p != "."]


def resolve_links(path: str, is_link: Callable[[str], bool], readlink: Callable[[str], str],
                  follow_last: bool = True) -> str:
    """Resolve every symlink of an absolute path, component by component, within one
    namespace (a host, or a folder standing for a host's `/`); absolute targets restart at
    that namespace's root, never the OS's. Returns the resolved absolute path."""
    parts = split_path(path)
    cur: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        cand = "/" + "/".join(cur + [p])
        if (parts or follow_last) and is_link(cand):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = readlink(cand)
            if target.startswith("/"):
                cur = []
            parts = [t for t in target.split("/") if t and t != "."] + parts
        else:
            cur.append(p)
    return "/" + "/".join(cur)


class Host(abc.ABC):
    """Read-only access to one machine's files and commands."""

    # -- primitives each backend provides ----------------------------------
    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def is_dir(self, path: str) -> bool: ...

    @abc.abstractmethod
    def is_link(self, path: str) -> bool: ...

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def readlink(self, path: str) -> str: ...

    @abc.abstractmethod
    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 10.0) -> CommandResult: ...

    @abc.abstractmethod
    def source_info(self) -> SourceInfo: ...

    # -- derived ------------------------------------------------------------
    def dmesg(self) -> CommandResult:
        """The kernel's log as `dmesg` prints it (a backend may read it without running `dmesg`)."""
        return self.run(["dmesg"], timeout=10)

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def read_text_or_none(self, path: str) -> str | None:
        """The text of a file, or None where the file does not exist.

        PermissionError and NotCaptured propagate: unreadable is not absent.
        """
        try:
            return self.read_text(path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Expand `*`, `?` and `[...]` in path components, sorted; no `**`."""
        parts = split_path(pattern)
        candidates = [""]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: list[str] = []
            for base in candidates:
                if has_magic(part):
                    d = base or "/"
                    try:
                        if not self.is_dir(d):
                            continue
                        names = self.listdir(d)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    nxt.extend(f"{base}/{n}" for n in names if fnmatch.fnmatchcase(n, part))
                else:
                    nxt.append(f"{base}/{part}")
            candidates = nxt
            if not last:
                candidates = [c for c in candidates if self._is_dir_quiet(c)]
        return sorted(c for c in candidates if self.exists(c))

    def _is_dir_quiet(self, path: str) -> bool:
        try:
            return self.is_dir(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return False

    def realpath(self, path: str) -> str:
        """Resolve symlinks the way the kernel would, inside this host."""
        return resolve_links(path, self.is_link, self.readlink)

    def link_name(self, path: str) -> str | None:
        """Basename of a symlink's target (e.g. a `driver` link), None if no link."""
        try:
            return os.path.basename(self.readlink(path).rstrip("/"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.EINVAL:  # not a link
                return None
            raise


class LiveHost(Host):
    """The running system, read through `/`; commands run by argv with a timeout."""

    def __init__(self) -> None:
        self._env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C",
            "LANG": "C",
        }

    def read_option_rom(self, address: str) -> bytes:
        """Read the device's option ROM through sysfs: write 1, read, write 0 (doctor.optionrom). The one
        place gpudoctor writes to a device file outside `fix`, and only on request (check --read-rom)."""
        from doctor.optionrom import read_live

        return read_live(self, address)

    def read_bytes(self, path: str) -> bytes:
        split_path(path)
        # Read in chunks: sysctl files allocate a kernel buffer of the size asked for.
        chunks: list[bytes] = []
        total = 0
        with open(path, "rb", buffering=0) as f:
            while total < MAX_READ:
                chunk = f.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        return b"".join(chunks)[:MAX_READ]

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_link(self, path: str) -> bool:
        return os.path.islink(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def dmesg(self) -> CommandResult:
        """The kernel's log read from /dev/kmsg, the device `dmesg` itself reads, formatted as `dmesg`
        prints it; `dmesg` runs only where /dev/kmsg cannot be read. Not spawning it saves about a third
        of `check`'s CPU time beyond Python's own start (benchmarks/bench_startup.py)."""
        text = read_kmsg()
        if text is None:
            return super().dmesg()
        return CommandResult(("dmesg",), 0, text, "")

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 10.0) -> CommandResult:
        import subprocess

        argv = tuple(argv)
        try:
            p = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=self._env,
                check=False,
            )
        except FileNotFoundError:
            return CommandResult(argv, None, "", "", found=False)
        except PermissionError as e:
            return CommandResult(argv, None, "", str(e), found=False)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else ""
            return CommandResult(argv, None, out, "", timed_out=True)
        return CommandResult(
            argv,
            p.returncode,
            p.stdout[:MAX_OUTPUT].decode("utf-8", "replace"),
            p.stderr[:MAX_OUTPUT].decode("utf-8", "replace"),
        )

    def source_info(self) -> SourceInfo:
        return SourceInfo("live", "/")


def read_kmsg(path: str = "/dev/kmsg", limit: int = MAX_OUTPUT) -> str | None:
    """Every record in the kernel's ring buffer, as `dmesg` prints it (`[    1.234567] text`), read
    without blocking; None where the device cannot be opened or read (dmesg_restrict, no such device,
    a kernel without printk). A record is `prio,seq,usec,flags[,...];text` (Documentation/ABI/testing/
    dev-kmsg); the text escapes unprintable bytes as \\xNN, which are decoded as `dmesg` does; the
    dictionary lines that follow a record (` KEY=value`) are not part of the log."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    out: list[str] = []
    size = 0
    try:
        while size < limit:
            try:
                rec = os.read(fd, 16384)
            except BlockingIOError:
                break  # the end of the buffer
            except OSError as e:
                if e.errno == errno.EPIPE:  # a record was overwritten while reading: go on with the next
                    continue
                if out:
                    break
                return None
            if not rec:
                break
            size += len(rec)
            line = kmsg_line(rec)
            if line is not None:
                out.append(line)
    finally:
        os.close(fd)
    return "\n".join(out) + "\n" if out else ""


def kmsg_line(rec: bytes) -> str | None:
    """One /dev/kmsg record as `dmesg` prints it; None for what is not a record."""
    head, sep, body = rec.partition(b";")
    fields = head.split(b",")
    if not sep or len(fields) < 4 or not (fields[0].isdigit() and fields[1].isdigit() and fields[2].isdigit()):
        return None
    usec = int(fields[2])
    text = body.split(b"\n", 1)[0]
    if b"\\x" in text:
        text = _unescape(text)
    stamp = f"[{usec // 1000000:5d}.{usec % 1000000:06d}] "
    line = text.decode("utf-8", "replace").rstrip("\n")
    return stamp + line.replace("\n", "\n" + " " * len(stamp))  # dmesg indents a record's further lines


def _unescape(text: bytes) -> bytes:
    parts = text.split(b"\\x")
    buf = bytearray(parts[0])
    for p in parts[1:]:
        if len(p) >= 2 and all(c in b"0123456789abcdefABCDEF" for c in p[:2]):
            buf.append(int(p[:2], 16))
            buf += p[2:]
        else:
            buf += b"\\x" + p
    return bytes(buf)


__all__ = ["CommandResult", "Host", "LiveHost", "NotCaptured", "has_magic", "split_path"]
