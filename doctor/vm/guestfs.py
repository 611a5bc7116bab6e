"""A guest image read (and, for the guest_getty fix, written) offline through libguestfs's own
tools by argv: `guestfish --ro` for a check, a `guestfish --listen` session for a fix.

Why argv and not python3-guestfs: that binding is a Debian package only (no wheel on PyPI), so a
venv would need --system-site-packages, which lets every other system package leak into it. The
tools come in the same Debian package family (libguestfs-tools), and by argv they go through the
Host seam (a snapshot or a test folder answers the same command) and through System.run for writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from doctor.datarecord import record
from doctor.host import CommandResult

UNIT = "serial-getty@ttyS0.service"
WANTS = "/etc/systemd/system/getty.target.wants"
LINK = f"{WANTS}/{UNIT}"
TEMPLATES = ("/lib/systemd/system/serial-getty@.service", "/usr/lib/systemd/system/serial-getty@.service")
MASK = f"/etc/systemd/system/{UNIT}"
FILES = ("/etc/default/grub", "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/etc/kernel/cmdline")
MARK = "@@gpudoctor@@"
ENV_VARS = ("LIBGUESTFS_BACKEND", "LIBGUESTFS_BACKEND_SETTINGS", "LIBGUESTFS_MEMSIZE", "SUPERMIN_KERNEL",
            "SUPERMIN_MODULES", "SUPERMIN_KERNEL_VERSION", "LIBGUESTFS_CACHEDIR", "TMPDIR")
TIMEOUT = 600.0


def env_prefix() -> tuple[str, ...]:
    """`env VAR=...` for the libguestfs settings of this process (LiveHost runs commands in a clean environment)."""
    pairs = tuple(f"{k}={os.environ[k]}" for k in ENV_VARS if os.environ.get(k))
    return ("env", *pairs) if pairs else ()


def read_argv(image: str, fmt: str, prefix: tuple[str, ...] = ()) -> tuple[str, ...]:
    """One appliance start: every fact guest.serial_getty needs, each section after a marker.
    `-cmd` ignores that command's error (a missing file), `exists`/`is-*` never fail."""
    cmds: list[list[str]] = []

    def section(name: str, *c: list[str]) -> None:
        cmds.append(["echo", f"{MARK}{name}"])
        cmds.extend(c)

    section("link", ["is-symlink", LINK], ["-readlink", LINK])
    section("mask", ["is-symlink", MASK], ["-readlink", MASK])
    section("wants", ["is-dir", WANTS])
    for i, t in enumerate(TEMPLATES):
        section(f"template{i}", ["exists", t])
    for i, f in enumerate(FILES):
        section(f"file{i}", ["is-file", f], ["-cat", f])
    section("bls", ["-glob", "cat", "/boot/loader/entries/*.conf"])
    section("end")
    argv: list[str] = [*prefix, "guestfish", "--ro", f"--format={fmt}", "-a", image, "-i", "--"]
    for n, c in enumerate(cmds):
        if n:
            argv.append(":")
        argv.extend(c)
    return tuple(argv)


@record(frozen=True)
class GuestView:
    link: str | None  # where getty.target.wants/serial-getty@ttyS0.service points (None: no link)
    masked: bool
    wants_dir: bool
    template: bool
    files: dict[str, str]  # path -> text, for the files that exist
    bls: str  # every /boot/loader/entries/*.conf, concatenated


def parse_read(stdout: str) -> GuestView:
    """ValueError where the output is not what read_argv's script prints (a marker forged by a file's content)."""
    parts = re.split(rf"^{re.escape(MARK)}(\w+)\n", stdout, flags=re.M)
    names = parts[1::2]
    want = ["link", "mask", "wants", "template0", "template1", *(f"file{i}" for i in range(len(FILES))), "bls", "end"]
    if names != want:
        raise ValueError(f"unexpected guestfish output (sections {names[:12]})")
    sec = dict(zip(names, parts[2::2], strict=True))

    def boolean(s: str) -> tuple[bool, str]:
        first, _, rest = s.partition("\n")
        if first not in ("true", "false"):
            raise ValueError(f"unexpected guestfish answer {first[:40]!r}")
        return first == "true", rest

    is_link, rest = boolean(sec["link"])
    link = rest.strip() if is_link else None
    masked_link, rest = boolean(sec["mask"])
    files: dict[str, str] = {}
    for i, f in enumerate(FILES):
        there, text = boolean(sec[f"file{i}"])
        if there:
            files[f] = text
    return GuestView(link, masked_link and rest.strip() == "/dev/null", boolean(sec["wants"])[0],
                     boolean(sec["template0"])[0] or boolean(sec["template1"])[0], files, sec["bls"])


Runner = Callable[[tuple[str, ...], float], CommandResult]


class GuestfsError(Exception):
    pass


class Session:
    """A `guestfish --listen` appliance: one start, many commands (the fix decides between them)."""

    def __init__(self, run: Runner, image: str, fmt: str, rw: bool, prefix: tuple[str, ...] = ()) -> None:
        self.run, self.prefix = run, prefix
        # The daemon guestfish forks closes its stdout but keeps stderr: captured, that pipe would never
        # reach EOF (the reason `eval "$(guestfish --listen)"` works and a captured run hangs). So its
        # stderr goes to /dev/null, by argv (no shell string is built from the image's name).
        listen = (*prefix, "guestfish", "--listen", "--rw" if rw else "--ro", f"--format={fmt}", "-a", image, "-i")
        r = run(("sh", "-c", 'exec "$@" 2>/dev/null', "sh", *listen), TIMEOUT)
        m = re.search(r"GUESTFISH_PID=(\d+)", r.stdout)
        if not r.ok or m is None:
            raise GuestfsError(f"cannot open {image} with libguestfs: {r.describe()} (to see why: LIBGUESTFS_DEBUG=1 "
                               f"{' '.join(listen)})")
        self.pid = m.group(1)

    def cmd(self, *args: str) -> CommandResult:
        return self.run((*self.prefix, "guestfish", f"--remote={self.pid}", "--", *args), TIMEOUT)

    def must(self, *args: str) -> str:
        r = self.cmd(*args)
        if not r.ok:
            raise GuestfsError(f"guestfish {' '.join(args)}: {r.describe()}")
        return r.stdout

    def flag(self, *args: str) -> bool:
        return self.must(*args).strip() == "true"

    def close(self) -> None:
        """Unmount, sync and stop the appliance (the writes are on the image once this returns)."""
        self.cmd("umount-all")
        self.cmd("exit")


def sniff_format(path: str) -> str:
    """raw or qcow2, from the image's own header; a qcow2 with a backing file is refused (it would
    make libguestfs open another file named inside an untrusted image)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"QFI\xfb":
        if int.from_bytes(head[8:16], "big") != 0:
            raise ValueError(f"{path}: a qcow2 image with a backing file: give the backing chain's top with care, "
                             "or convert it (qemu-img convert -O qcow2)")
        return "qcow2"
    return "raw"
