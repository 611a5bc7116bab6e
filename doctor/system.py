"""The write side, kept apart from the read-only Host: only `gpudoctor fix`
and `undo` get a System. `LiveSystem` changes this machine; `RootedSystem`
changes a folder (a copy of a snapshot's root) and records commands instead of
running them, so remediations are tested without touching the test machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from doctor.datarecord import field, record
from doctor.host import CommandResult, Host, LiveHost


@record(frozen=True)
class FileState:
    data: bytes | None  # None: the file did not exist
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


class System:
    """Writes to a machine. Paths are absolute paths on that machine."""

    live = False
    # a test hook, to kill the process "during" a step: called while a command runs (RootedSystem)
    # and while a file is written (its temporary file complete, not yet renamed)
    during: Callable[[], None] | None = None

    def real(self, path: str) -> str:
        raise NotImplementedError

    def host(self) -> Host:
        raise NotImplementedError

    def state_dir(self) -> str:
        return self.real(os.environ.get("GPUDOCTOR_STATE_DIR", "/var/lib/gpudoctor"))

    def file_state(self, path: str) -> FileState:
        real = self.real(path)
        try:
            st = os.stat(real)
            with open(real, "rb") as f:
                return FileState(f.read(), st.st_mode & 0o7777, st.st_uid, st.st_gid)
        except FileNotFoundError:
            return FileState(None)

    def write_atomic(self, path: str, data: bytes, mode: int = 0o644, uid: int | None = None, gid: int | None = None) -> None:
        """Temporary file in the same folder, fsync, rename: never a half-written file. The temporary
        file has one fixed name per target (`temp_path`), so one a kill left behind is known: the
        next write replaces it and `undo` removes it."""
        real = self.real(path)
        d = os.path.dirname(real)
        os.makedirs(d, exist_ok=True)
        tmp = self.real(temp_path(path))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # left by a kill: ours, by its name
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            if uid is not None and gid is not None and os.geteuid() == 0:
                os.chown(tmp, uid, gid)
            if self.during is not None:
                self.during()
            os.replace(tmp, real)
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def restore(self, path: str, state: FileState) -> None:
        if state.data is None:
            real = self.real(path)
            if os.path.lexists(real):
                os.unlink(real)
        else:
            self.write_atomic(path, state.data, state.mode, state.uid, state.gid)

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 600) -> CommandResult:
        raise NotImplementedError

    def write_sysfs(self, path: str, text: str) -> None:
        raise NotImplementedError


class LiveSystem(System):
    live = True

    def real(self, path: str) -> str:
        return path

    def host(self) -> Host:
        return LiveHost()

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 600) -> CommandResult:
        return LiveHost().run(argv, timeout=timeout)

    def write_sysfs(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)


@record
class RootedSystem(System):
    """A folder standing for a machine's `/`; commands are recorded, not run.

    `responses` maps an argv to the CommandResult to pretend; the default is
    success. `sysfs` records sysfs writes in order.
    """

    root: str
    snapshot: str | None = None  # the snapshot folder whose root/ this is, for re-checks
    responses: dict[tuple[str, ...], CommandResult] = field(default_factory=dict)
    ran: list[tuple[str, ...]] = field(default_factory=list)
    sysfs: list[tuple[str, str]] = field(default_factory=list)

    def real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def host(self) -> Host:
        if self.snapshot:
            from doctor.snaphost import SnapshotHost

            return SnapshotHost(self.snapshot)
        from doctor.snaphost import DirHost

        return DirHost(self.root)

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 600) -> CommandResult:
        key = tuple(argv)
        self.ran.append(key)
        if self.during is not None:
            self.during()
        return self.responses.get(key, CommandResult(key, 0, "", ""))

    def write_sysfs(self, path: str, text: str) -> None:
        self.sysfs.append((path, text))


def temp_path(path: str) -> str:
    """The temporary file `write_atomic` writes before renaming it to `path` (same folder, hidden;
    no `.conf`/`.cfg` suffix, so modprobe and grub never read it)."""
    d, name = os.path.split(path)
    return os.path.join(d, f".{name}.gpudoctor-tmp")


def run_sh_print_var(files: list[str], var: str) -> str | None:
    """Source `files` with /bin/sh, in order, and return $var (None if sh failed)."""
    script = "".join(f'. "{f}" || exit 3\n' for f in files) + f'printf "%s" "${{{var}}}"'
    try:
        p = subprocess.run(["sh", "-c", script], capture_output=True, timeout=10, check=False,
                           env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.decode("utf-8", "replace")
