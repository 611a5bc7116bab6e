"""A throwaway sshd on 127.0.0.1 for the --hosts proof (tests/test_hosts_ansible.py) and
benchmarks/bench_hosts.py: its own host key, a key-only login for the current user with its own
authorized key, all in a temporary folder; `sshd -D` in the background, killed by stop()."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sshd() -> str:
    for p in ("/usr/sbin/sshd", "/usr/bin/sshd", shutil.which("sshd") or ""):
        if p and os.access(p, os.X_OK):
            return p
    raise RuntimeError("sshd not found: apt-get install openssh-server (scripts/setup.sh does it as root)")


@dataclass
class Sshd:
    folder: str
    port: int
    user: str
    client_key: str
    proc: subprocess.Popen[bytes]

    def inventory_line(self, alias: str, port: int | None = None) -> str:
        return f"{alias} ansible_host=127.0.0.1 ansible_port={port or self.port}"

    def inventory(self, aliases: list[str], dead: list[str] = ()) -> str:  # type: ignore[assignment]
        lines = ["[gpu]", *(self.inventory_line(a) for a in aliases)]
        for d in dead:
            lines.append(self.inventory_line(d, free_port()))
        ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o BatchMode=yes"
        lines += ["", "[all:vars]", f"ansible_user={self.user}", f"ansible_ssh_private_key_file={self.client_key}",
                  f"ansible_ssh_common_args='{ssh_args}'", "ansible_python_interpreter=/usr/bin/python3"]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sshd(folder: str) -> Sshd:
    sshd = _sshd()
    user = pwd.getpwuid(os.getuid()).pw_name
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(folder, name)],
                       check=True, stdin=subprocess.DEVNULL)
    shutil.copy(os.path.join(folder, "client_key.pub"), os.path.join(folder, "authorized_keys"))
    os.chmod(os.path.join(folder, "authorized_keys"), 0o600)
    if os.getuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    last = ""
    for _ in range(5):  # the port could be taken between free_port() and sshd's bind
        port = free_port()
        cfg = os.path.join(folder, "sshd_config")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder}/host_key", f"PidFile {folder}/sshd.pid",
                f"AuthorizedKeysFile {folder}/authorized_keys", "PubkeyAuthentication yes",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "UsePAM no", "StrictModes no", f"AllowUsers {user}", "Subsystem sftp internal-sftp", "LogLevel ERROR",
            ]) + "\n")
        subprocess.run([sshd, "-t", "-f", cfg], check=True, capture_output=True)
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", cfg], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(folder, "sshd.log"), "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return Sshd(folder, port, user, os.path.join(folder, "client_key"), proc)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        last = open(os.path.join(folder, "sshd.log"), encoding="utf-8", errors="replace").read()[-300:]
    raise RuntimeError(f"sshd did not start on 127.0.0.1: {last}")
