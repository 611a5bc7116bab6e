"""Snapshots: recording a host so that it replays like a live one. The layout (manifest.json and a
root/ mirror tree) and the hosts that replay it (`SnapshotHost`, `DirHost`) are in doctor/snaphost.py,
re-exported here; what is captured is declared in doctor/collect.py."""

from __future__ import annotations

import datetime as _dt
import errno
import fnmatch
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable

from doctor import __version__, datarecord
from doctor.collect import COMMANDS, SPECS, Spec
from doctor.datarecord import field
from doctor.errors import NotCaptured, SnapshotError
from doctor.host import Host, LiveHost, has_magic, resolve_links, split_path
from doctor.redact import Redactor
from doctor.redact_host import learn_host, redact_file
from doctor.snaphost import FORMAT, MAX_FILE, VERSION, DirHost, SnapshotHost, _covers, open_snapshot

__all__ = ["FORMAT", "MAX_FILE", "VERSION", "DirHost", "SnapshotHost", "_covers", "open_snapshot", "record"]

# ---------------------------------------------------------------------------
# recording


@datarecord.record
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
