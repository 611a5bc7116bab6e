"""The hosts that replay a snapshot (doctor/snapshot.py records them).

Layout (a folder, or the same packed as .tar.gz):

    manifest.json   format, version, provenance, redaction flag, captured
                    patterns, directory listings, presence-only paths and the
                    index of commands (argv, exit code, found, output)
    root/           mirror tree of the files read; symlinks kept as links

`SnapshotHost` answers only what the recording covered: a covered path that is
not in the tree is absent (FileNotFoundError); anything else raises
NotCaptured. Symlinks are resolved inside the mirror, never by the OS, so a
hostile snapshot cannot make us read outside it. `DirHost` is a plain folder
read as a host (to build fixtures).
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import json
import os
from typing import Any

from doctor.archive import open_source
from doctor.errors import NotCaptured, SnapshotError
from doctor.host import CommandResult, Host, split_path
from doctor.mirror import FolderTree, Tree
from doctor.model import SourceInfo

FORMAT = "gpudoctor-snapshot"
VERSION = 1
MAX_FILE = 8 * 1024 * 1024


@functools.lru_cache(maxsize=4096)
def _pattern_parts(pattern: str) -> tuple[str, ...]:
    return tuple(split_path(pattern))


def _covers(pattern: str, path: str) -> bool:
    pp = _pattern_parts(pattern)
    cp = split_path(path)
    if pp and pp[-1] == "**":
        base = pp[:-1]
        return len(cp) >= len(base) and all(fnmatch.fnmatchcase(c, p) for c, p in zip(cp, base, strict=False))
    return len(pp) == len(cp) and all(fnmatch.fnmatchcase(c, p) for c, p in zip(cp, pp, strict=True))


class _Coverage:
    """Whether a path is covered by any of a snapshot's captured patterns, remembered per path.
    Shared by every snapshot that captured the same patterns (one recorder version records the
    same ones): judging many snapshots matches each path against the patterns once."""

    MAX_MEMO = 65536  # paths remembered (a hostile snapshot's lookups cannot grow it without bound)

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.memo: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        hit = self.memo.get(path)
        if hit is None:
            hit = any(_covers(p, path) for p in self.patterns)  # a relative path raises, as always
            if len(self.memo) < self.MAX_MEMO:
                self.memo[path] = hit
        return hit


@functools.lru_cache(maxsize=16)
def _coverage(patterns: tuple[str, ...]) -> _Coverage:
    return _Coverage(patterns)


class DirHost(Host):
    """A host whose root is a plain folder, with canned command outputs.

    Everything is "captured": a path missing from the folder is absent. Used to
    build fixtures by hand (write a fake root, then `record(out, DirHost(...))`)
    and in tests; symlinks resolve inside the folder (a FolderTree: never by the
    OS), special files are never opened and reads are bounded.
    """

    def __init__(self, root: str, commands: dict[tuple[str, ...], CommandResult] | None = None,
                 location: str = "") -> None:
        if not os.path.isdir(root):
            raise SnapshotError(f"{root!r} is not a folder")
        self.root = os.path.abspath(root)
        self.tree = FolderTree(self.root)
        self.commands = dict(commands or {})
        self.location = location or root

    def read_bytes(self, path: str) -> bytes:
        return _read(self.tree, self.tree.resolve(path), path)

    def exists(self, path: str) -> bool:
        return self.tree.kind(self.tree.resolve(path, follow_last=False)) is not None

    def is_dir(self, path: str) -> bool:
        return self.tree.kind(self.tree.resolve(path)) == "dir"

    def is_link(self, path: str) -> bool:
        return self.tree.kind(self.tree.resolve(path, follow_last=False)) == "link"

    def listdir(self, path: str) -> list[str]:
        r = self.tree.resolve(path)
        if self.tree.kind(r) != "dir":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return self.tree.names(r)

    def readlink(self, path: str) -> str:
        r = self.tree.resolve(path, follow_last=False)
        try:
            return self.tree.readlink(r)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 10.0) -> CommandResult:
        key = tuple(argv)
        if key in self.commands:
            return self.commands[key]
        return CommandResult(key, None, "", "", found=False)

    def source_info(self) -> SourceInfo:
        return SourceInfo("folder", self.location)


def _read(tree: Tree, real: str, path: str) -> bytes:
    """The bytes of the resolved path `real` (asked for as `path`)."""
    k = tree.kind(real)
    if k == "file":
        return tree.read(real)
    if k == "dir":
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    if k == "other":
        raise PermissionError(errno.EACCES, "a special file (FIFO, device or socket): not read", path)
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)


class SnapshotHost(Host):
    """A recorded host, read from a folder or an archive (.tar.gz, also .tar, .tar.bz2,
    .tar.xz) into memory at open (doctor.archive.open_source), as data: links resolve
    inside that mirror, never by the OS; special files and oversized inputs are refused."""

    def __init__(self, path: str) -> None:
        self.path = path
        tree = open_source(path)
        m = _manifest(path, tree)
        if m.get("version") != VERSION:
            raise SnapshotError(
                f"{path!r}: snapshot format version {m.get('version')!r}, this gpudoctor reads version {VERSION}"
            )
        try:
            self.manifest = m
            self.captured = [str(p) for p in m.get("captured", [])]
            self.listed: dict[str, list[str]] = {str(k): [str(x) for x in v] for k, v in m.get("listed", {}).items()}
            self.present: dict[str, str] = {str(k): str(v) for k, v in m.get("present", {}).items()}
            self.unreadable: dict[str, str] = {str(k): str(v) for k, v in m.get("unreadable", {}).items()}
            self.commands: dict[tuple[str, ...], CommandResult] = {}
            for c in m.get("commands", []):
                argv = tuple(str(a) for a in c["argv"])
                self.commands[argv] = CommandResult(
                    argv,
                    c.get("rc"),
                    str(c.get("stdout", "")),
                    str(c.get("stderr", "")),
                    bool(c.get("found", True)),
                    bool(c.get("timed_out", False)),
                )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise SnapshotError(f"{path!r}: manifest.json is malformed ({e!r})") from e
        rk = tree.kind("/root")
        if rk == "link":
            raise SnapshotError(f"{path!r}: root/ is a symbolic link, not a folder: refused")
        if rk != "dir":
            raise SnapshotError(f"{path!r} has no root/ folder")
        self.tree: Tree = tree.sub("root")
        # Git keeps no empty folders: every folder above a recorded path exists.
        self._dirs: set[str] = set(self.listed)
        for p in list(self.listed) + list(self.present) + list(self.unreadable):
            parts = p.strip("/").split("/")
            for i in range(1, len(parts)):
                self._dirs.add("/" + "/".join(parts[:i]))

    # -- coverage ------------------------------------------------------------
    @property
    def captured(self) -> list[str]:
        return self._captured

    @captured.setter
    def captured(self, patterns: list[str]) -> None:
        self._captured = patterns
        self._coverage = _coverage(tuple(patterns))

    def covered(self, path: str) -> bool:
        if tuple(self._captured) != self._coverage.patterns:  # changed in place since it was set
            self._coverage = _coverage(tuple(self._captured))
        return self._coverage(path)

    def _resolve(self, path: str, follow_last: bool = True) -> str:
        """Resolve symlinks within the mirror tree; returns a logical path. A loop of links
        (more than 40) is something this snapshot cannot answer: NotCaptured, never a crash."""
        try:
            return self.tree.resolve(path, follow_last)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise NotCaptured(f"{path} (its symbolic links in the snapshot loop)") from e
            raise

    def _absent_or_uncaptured(self, path: str, what: str) -> OSError:
        if self.covered(path) or self._listed_absent(path):
            return FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        raise NotCaptured(f"{what} {path}")

    def _listed_absent(self, path: str) -> bool:
        parent, name = os.path.split(path.rstrip("/"))
        names = self.listed.get(parent)
        return names is not None and name not in names

    # -- Host ----------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        if path in self.unreadable:
            raise PermissionError(errno.EACCES, self.unreadable[path], path)
        if path in self.present:
            raise NotCaptured(f"content of {path} (only its presence was recorded)")
        if not self.covered(path):
            raise NotCaptured(f"file {path}")
        try:
            return _read(self.tree, self._resolve(path), path)
        except IsADirectoryError as e:
            # a crafted snapshot can put a folder (or a link to one) where a host has a file:
            # no content was captured there, so the facts it feeds are unknown, never a crash
            raise NotCaptured(f"content of {path} (the snapshot holds a folder there, not a file)") from e

    def exists(self, path: str) -> bool:
        if path in self.present or path in self.unreadable or path in self._dirs:
            return True
        if self.tree.kind(self._resolve(path, follow_last=False)) is not None:
            return True
        if self.covered(path) or self._listed_absent(path):
            return False
        raise NotCaptured(f"whether {path} exists")

    def is_dir(self, path: str) -> bool:
        if path in self._dirs:
            return True
        r = self._resolve(path)
        k = self.tree.kind(r)
        if r in self._dirs or k == "dir":
            return True
        if k is not None or path in self.present:
            return False
        if self.covered(path) or self._listed_absent(path):
            return False
        raise NotCaptured(f"whether {path} is a directory")

    def is_link(self, path: str) -> bool:
        k = self.tree.kind(self._resolve(path, follow_last=False))
        if k == "link":
            return True
        if k is not None or path in self._dirs or path in self.present:
            return False
        if self.covered(path) or self._listed_absent(path):
            return False
        raise NotCaptured(f"whether {path} is a link")

    def listdir(self, path: str) -> list[str]:
        names = self.listed.get(path)
        if names is None:
            names = self.listed.get(self._resolve(path))
        if names is not None:
            return sorted(names)
        raise self._absent_or_uncaptured(path, "directory listing of")

    def readlink(self, path: str) -> str:
        r = self._resolve(path, follow_last=False)
        k = self.tree.kind(r)
        if k == "link":
            return self.tree.readlink(r)
        if k is not None:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        raise self._absent_or_uncaptured(path, "link")

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 10.0) -> CommandResult:
        key = tuple(argv)
        if key not in self.commands:
            raise NotCaptured(f"output of `{' '.join(key)}`")
        return self.commands[key]

    def source_info(self) -> SourceInfo:
        m = self.manifest
        return SourceInfo(
            "snapshot",
            self.path,
            {
                "recorded": str(m.get("created", "unknown")),
                "recorded_by": f"gpudoctor {m.get('gpudoctor_version', '?')}",
                "redacted": "yes" if m.get("redacted") else "no",
                "provenance": str(m.get("provenance", "")),
            },
        )

    def close(self) -> None:
        """Nothing to clean up: nothing is extracted to disk."""


def _manifest(path: str, tree: Tree) -> dict[str, Any]:
    k = tree.kind("/manifest.json")
    if k == "link":
        raise SnapshotError(f"{path!r}: manifest.json is a symbolic link, not a file: refused")
    if k is None:
        raise SnapshotError(f"{path!r} has no manifest.json: not a gpudoctor snapshot")
    if k != "file":
        raise SnapshotError(f"{path!r}: manifest.json is not a regular file")
    try:
        m = json.loads(tree.read("/manifest.json").decode("utf-8"))
    except OSError as e:
        raise SnapshotError(f"{path!r}: manifest.json cannot be read ({e.strerror or e})") from e
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise SnapshotError(f"{path!r}: manifest.json is not valid JSON ({str(e)[:200]!r})") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise SnapshotError(f"{path!r}: manifest.json is not a {FORMAT} manifest")
    return m


def open_snapshot(path: str) -> SnapshotHost:
    return SnapshotHost(path)
