"""Snapshots: a recorded host that replays like a live one.

Layout (a folder, or the same packed as .tar.gz):

    manifest.json   format, version, provenance, redaction flag, captured
                    patterns, directory listings, presence-only paths and the
                    index of commands (argv, exit code, found, output)
    root/           mirror tree of the files read; symlinks kept as links

`SnapshotHost` answers only what the recording covered: a covered path that is
not in the tree is absent (FileNotFoundError); anything else raises
NotCaptured. Symlinks are resolved inside the mirror, never by the OS, so a
hostile snapshot cannot make us read outside it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fnmatch
import functools
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from doctor import __version__
from doctor.archive import open_source
from doctor.collect import COMMANDS, SPECS, Spec
from doctor.errors import NotCaptured, SnapshotError
from doctor.host import CommandResult, Host, LiveHost, has_magic, resolve_links, split_path
from doctor.mirror import FolderTree, Tree
from doctor.model import SourceInfo
from doctor.redact import Redactor
from doctor.redact_host import learn_host, redact_file

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


# ---------------------------------------------------------------------------
# recording


@dataclass
class _Recorder:
    host: Host
    out: str
    redactor: Redactor
    captured: list[str] = field(default_factory=list)
    listed: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return os.path.join(self.out, "root")

    def _mkdirs(self, logical: str) -> None:
        os.makedirs(self.root + logical, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        if path in self.listed:
            return self.listed[path]
        names = self.host.listdir(path)
        self.listed[path] = names
        real = self.host.realpath(path)
        if real != path:
            self.listed[real] = names
        self.mirror_path(path, leaf=False)
        return names

    def glob(self, pattern: str) -> list[str]:
        """Like Host.glob, recording every listing it needs."""
        parts = split_path(pattern)
        cands = [""]
        for part in parts:
            nxt: list[str] = []
            for base in cands:
                if has_magic(part):
                    d = base or "/"
                    try:
                        if not self.host.is_dir(d):
                            continue
                        names = self.listdir(d)
                    except OSError:
                        continue
                    nxt.extend(f"{base}/{n}" for n in names if fnmatch.fnmatchcase(n, part))
                else:
                    nxt.append(f"{base}/{part}")
            cands = nxt
        return [c for c in cands if self.host.exists(c)]

    def mirror_path(self, path: str, leaf: bool = True) -> None:
        """Copy `path` into the mirror, recreating every symlink on the way (the same walk as
        Host.realpath: host.resolve_links, told to record each link it meets)."""

        def is_link(cand: str) -> bool:
            if not self.host.is_link(cand):
                return False
            dst = self.root + cand
            if not os.path.lexists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(self.host.readlink(cand), dst)
            return True

        try:
            # a leaf link such as `driver` is kept as a link; its target need not be copied
            real = resolve_links(path, is_link, self.host.readlink, follow_last=not leaf)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return
            raise
        if leaf and is_link(real):  # resolve_links leaves the last component alone: record it here
            return
        if self.host.is_dir(real):
            self._mkdirs(real)
        else:
            self._mkdirs(os.path.dirname(real))
            if leaf:
                self._copy_file(real, path)

    def _copy_file(self, real: str, logical: str) -> None:
        if real in self.done:
            return
        self.done.add(real)
        try:
            st = os.stat(real) if isinstance(self.host, LiveHost) else None
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.present[logical] = "special file"
            return
        try:
            data = self.host.read_bytes(logical)  # the host resolves links; a recorded host covers logical paths
        except PermissionError:
            self.unreadable[logical] = "permission denied"
            return
        except OSError as e:
            self.unreadable[logical] = e.strerror or str(e)
            return
        if len(data) > MAX_FILE:
            self.unreadable[logical] = f"larger than {MAX_FILE} bytes, not recorded"
            return
        self.files[real] = (logical, data)  # written by write_files, once every secret is learned

    def write_files(self) -> None:
        """Learn from every file first, then write each one redacted: one real value, one fake,
        whichever file names it first."""
        red = self.redactor
        red.learn_all(d.decode("utf-8", "replace") for _, d in self.files.values())
        for real, (logical, raw) in self.files.items():
            data = redact_file(red, logical, raw)
            if data is None:
                self.unreadable[logical] = "not recorded: a binary file this gpudoctor cannot redact"
                continue
            dst = self.root + real
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)

    def record_spec(self, spec: Spec) -> None:
        """Record one spec. A host that did not capture part of it (a snapshot recorded again)
        leaves the pattern out of `captured`: what was not captured stays not captured."""
        try:
            self._record_spec(spec)
        except NotCaptured:
            self.captured = [p for p in self.captured if p != spec.pattern]

    def _record_spec(self, spec: Spec) -> None:
        pat = spec.pattern
        self.captured.append(pat)
        if spec.kind == "list":
            try:
                if self.host.is_dir(pat):
                    self.listdir(pat)
            except PermissionError:
                self.unreadable[pat] = "permission denied"
            except OSError:
                pass
            return
        try:
            matches = self.glob(pat) if has_magic(pat) else ([pat] if self.host.exists(pat) else [])
        except PermissionError:
            self.unreadable[pat] = "permission denied"
            return
        for m in matches:
            if spec.kind == "exists":
                self.present[m] = "present"
                continue
            try:
                self.mirror_path(m)
            except PermissionError:
                self.unreadable[m] = "permission denied"
            except OSError as e:
                self.unreadable[m] = e.strerror or str(e)


def _redact_paths(rec: _Recorder) -> None:
    """File names carry secrets too (BLS entries are named <machine-id>-<kver>.conf): rename
    them in the mirror, in link targets and in the manifest's listings, so a redacted snapshot
    reads as one consistent host."""
    r = rec.redactor.path
    for d, dirs, files in os.walk(rec.root, topdown=False):
        for n in dirs + files:
            src = os.path.join(d, n)
            if os.path.islink(src):
                t = os.readlink(src)
                if r(t) != t:
                    os.unlink(src)
                    os.symlink(r(t), src)
            if r(n) != n:
                os.rename(src, os.path.join(d, r(n)))
    rec.listed = {r(k): [r(n) for n in v] for k, v in rec.listed.items()}
    rec.present = {r(k): v for k, v in rec.present.items()}
    rec.unreadable = {r(k): v for k, v in rec.unreadable.items()}


def _anonymous(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    """Members owned by nobody in particular: the recording user's name is not the host's data."""
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _release(host: Host) -> str | None:
    try:
        return host.read_text("/proc/sys/kernel/osrelease").strip() or None
    except OSError:
        return None


def record(
    out: str,
    host: Host | None = None,
    redact: bool = True,
    provenance: str = "",
    specs: Iterable[Spec] = SPECS,
    commands: Iterable[tuple[str, ...]] = COMMANDS,
) -> dict[str, object]:
    """Record `host` (default: the live one) into `out` (folder or .tar.gz)."""
    host = host or LiveHost()
    tarball = out.endswith((".tar.gz", ".tgz"))
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise SnapshotError(f"{out!r} already exists; choose a new path (nothing was overwritten)")
    work_parent = tempfile.mkdtemp(prefix="gpudoctor-record-", dir=os.path.dirname(os.path.abspath(out)) or None)
    try:
        work = os.path.join(work_parent, "snapshot")
        os.makedirs(os.path.join(work, "root"))
        redactor = Redactor(enabled=redact)
        learn_host(redactor, host)  # hostname, machine id, users, serials, MACs: known before anything is written
        rec = _Recorder(host, work, redactor)
        rel = _release(host)
        for spec in specs:
            if "{release}" in spec.pattern:
                if rel is None:
                    continue
                spec = Spec(spec.kind, spec.pattern.replace("{release}", rel))
            rec.record_spec(spec)
        ran = [host.run(argv, timeout=15) for argv in commands]
        redactor.learn_all(t for r in ran for t in (r.stdout, r.stderr))
        rec.write_files()
        if redact:
            _redact_paths(rec)
        cmds = []
        for r in ran:
            d = r.to_dict()
            d["stdout"] = redactor.text(r.stdout)
            d["stderr"] = redactor.text(r.stderr)
            cmds.append(d)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "gpudoctor_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "redacted": redact,
            "redactions": redactor.replacements,
            "provenance": redactor.text(provenance),
            "captured": rec.captured,
            "listed": rec.listed,
            "present": rec.present,
            "unreadable": rec.unreadable,
            "commands": cmds,
        }
        with open(os.path.join(work, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
        if tarball:
            tmp_tar = os.path.join(work_parent, "snapshot.tar.gz")
            with tarfile.open(tmp_tar, "w:gz") as tf:
                tf.add(work, arcname="snapshot", filter=_anonymous)
            os.replace(tmp_tar, out)
        else:
            if os.path.isdir(out):
                os.rmdir(out)
            os.replace(work, out)
        return {"path": out, "files": sum(len(fs) for _, _, fs in os.walk(out)) if not tarball else None,
                "redactions": redactor.replacements}
    finally:
        shutil.rmtree(work_parent, ignore_errors=True)
