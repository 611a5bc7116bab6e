"""An sshd inside a lab guest, reachable from the host only at 127.0.0.1:<port> through QEMU's
user networking (a guest booted with ``Lab.boot(..., ssh_port=PORT)``; lab.vm.nic_args).

The guest runs the host's own userland, so its sshd is the host's binary with a configuration,
host key and authorized key of this run's own, kept on the guest's share: key-only login as root
(the lab agent's user), nothing else. ``SshKeys`` makes the client key the host side logs in with."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError, LabSetupError
from .vm import GUEST_SHARE, Guest

GUEST_ADDR = "10.0.2.15/24"  # QEMU user networking's first guest address
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd")


@dataclass(frozen=True)
class SshKeys:
    folder: Path
    host_key: Path  # the guests' sshd host key (one for all guests of a run)
    client_key: Path  # the private key the host logs in with
    authorized: Path  # client_key.pub


def make_keys(folder: Path) -> SshKeys:
    """A fresh host key and client key pair in *folder* (ed25519, no passphrase)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        try:
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gpudoctor-lab-{name}",
                            "-f", str(folder / name)], check=True, stdin=subprocess.DEVNULL, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise LabSetupError(f"ssh-keygen failed ({e}); install openssh-client") from e
    return SshKeys(folder, folder / "host_key", folder / "client_key", folder / "client_key.pub")


def sshd_binary() -> str:
    for p in SSHD_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    raise LabSetupError("sshd not found on this machine (the guest runs its userland): apt-get install openssh-server")


def sshd_config(share_dir: str) -> str:
    """The guest sshd's configuration; *share_dir* is where its keys lie in the guest."""
    return "\n".join([
        "Port 22", "ListenAddress 0.0.0.0", f"HostKey {share_dir}/host_key", f"PidFile {share_dir}/sshd.pid",
        f"AuthorizedKeysFile {share_dir}/authorized_keys", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "AllowUsers root", "UsePAM no",
        "StrictModes no", "UseDNS no", "Subsystem sftp internal-sftp", "LogLevel ERROR",
    ]) + "\n"  # fmt: skip


def start_sshd(guest: Guest, keys: SshKeys, timeout: float = 120) -> None:
    """Bring the guest's NIC up (10.0.2.15, QEMU's user network) and start sshd on its port 22;
    returns once the host's 127.0.0.1:<ssh_port> answers with an SSH banner. LabError otherwise."""
    if guest.ssh_port is None:
        raise LabError(f"{guest.scenario.name}: booted without ssh_port, it has no network")
    sshd = sshd_binary()
    host_dir = guest.share / "files" / "ssh"
    host_dir.mkdir(exist_ok=True)
    for src, name in ((keys.host_key, "host_key"), (keys.authorized, "authorized_keys")):
        (host_dir / name).write_bytes(src.read_bytes())
        os.chmod(host_dir / name, 0o600)
    gdir = f"{GUEST_SHARE}/files/ssh"
    (host_dir / "sshd_config").write_text(sshd_config(gdir))
    script = "\n".join([
        "set -e",
        "nic=''; for d in /sys/class/net/*; do n=${d##*/}; [ \"$n\" = lo ] || { nic=$n; break; }; done",
        "[ -n \"$nic\" ] || { echo 'no network interface in the guest' >&2; exit 1; }",
        "ip link set lo up", "ip link set \"$nic\" up", f"ip addr add {GUEST_ADDR} dev \"$nic\"",
        "mkdir -p -m 0755 /run/sshd",
        f"{shlex.quote(sshd)} -t -f {gdir}/sshd_config",
        f"{shlex.quote(sshd)} -f {gdir}/sshd_config -E {gdir}/sshd.log",
    ])  # fmt: skip
    r = guest.run(script, timeout=timeout, keep_children=True)
    if r.rc != 0:
        raise LabError(f"{guest.scenario.name}: cannot start sshd in the guest:\n{r}")
    wait_for_banner(guest.ssh_port, timeout, guest.scenario.name)


def wait_for_banner(port: int, timeout: float, what: str) -> None:
    """Until 127.0.0.1:port sends an SSH banner (QEMU accepts forwarded connections before the
    guest listens, so a connect alone proves nothing)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.settimeout(10)
                banner = s.recv(64)
            if banner.startswith(b"SSH-"):
                return
            last = f"answer {banner[:20]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    raise LabError(f"{what}: no SSH banner at 127.0.0.1:{port} within {timeout:.0f}s ({last})")
