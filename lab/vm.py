"""Booting a scenario in QEMU (TCG) and talking to the agent inside."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from . import cache as _cache
from .errors import (
    LabBootError,
    LabBootStalled,
    LabCommandTimeout,
    LabError,
    LabGuestDied,
    LabGuestHung,
    LabSetupError,
)
from .proc import BOOT_STALL, BOOT_STALLS, StallWatch, kill_group, start_qemu
from .scenarios import Scenario
from .scenarios import get as get_scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
GUEST_SHARE = "/run/gpudoctor-lab"  # where the writable share is mounted in the guest
# Extra seconds the host waits past a command's own timeout before calling the guest hung.
HANG_GRACE = float(os.environ.get("GPUDOCTOR_LAB_HANG_GRACE", "20"))

_live: weakref.WeakSet[Guest] = weakref.WeakSet()
_live_lock = threading.Lock()


def _kill_all() -> None:
    for g in list(_live):
        g._kill()


atexit.register(_kill_all)


def _log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


@dataclass
class Result:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"$ {shlex.join(self.argv)}\n[rc={self.rc}{' TIMED OUT' if self.timed_out else ''} "
            f"{self.duration:.1f}s]\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-20000:].decode("utf-8", "replace")
    except OSError:
        return "(no console log)"
    return "\n".join(data.splitlines()[-lines:])


def qemu_binary() -> str:
    return os.environ.get("GPUDOCTOR_LAB_QEMU", "qemu-system-x86_64")


OVMF_DIR = Path(os.environ.get("GPUDOCTOR_LAB_OVMF", "/usr/share/OVMF"))
OVMF_CODE = "OVMF_CODE_4M.fd"
OVMF_VARS = "OVMF_VARS_4M.fd"


def firmware_args(scenario: Scenario, workdir: Path) -> list[str]:
    """QEMU's firmware arguments: nothing for SeaBIOS; OVMF's code (read-only) and a writable
    per-boot copy of its variable store (made by the caller: ``prepare_firmware``)."""
    if scenario.firmware == "bios":
        return []
    if scenario.firmware != "ovmf":
        raise LabError(f"{scenario.name}: unknown firmware {scenario.firmware!r} (bios or ovmf)")
    return [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_DIR / OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={workdir / OVMF_VARS}",
    ]  # fmt: skip


def prepare_firmware(scenario: Scenario, workdir: Path) -> None:
    if scenario.firmware != "ovmf":
        return
    for name in (OVMF_CODE, OVMF_VARS):
        if not (OVMF_DIR / name).is_file():
            raise LabSetupError(f"{OVMF_DIR / name} not found (package ovmf); {_cache.SETUP_HINT}")
    shutil.copyfile(OVMF_DIR / OVMF_VARS, workdir / OVMF_VARS)


NIC_SLOT = "0x0b"  # the NIC's slot on the root bus (00:0b.0)


def nic_args(ssh_port: int | None) -> list[str]:
    """No network at all, or (ssh_port) one e1000e NIC on QEMU's user networking, isolated from
    the host's networks (restrict=on), whose only way in is the guest's port 22 forwarded from
    127.0.0.1:ssh_port on the host (lab/guest_ssh.py starts an sshd there)."""
    if ssh_port is None:
        return ["-nic", "none"]
    if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 1 <= ssh_port <= 65535:
        raise LabError(f"ssh_port {ssh_port!r}: not a TCP port (1-65535)")
    return [
        "-netdev", f"user,id=lan0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        # a fixed slot on the root bus, clear of the scenarios' root ports and card
        "-device", f"e1000e,netdev=lan0,addr={NIC_SLOT}",
    ]  # fmt: skip


def qemu_command(
    scenario: Scenario,
    kernel: _cache.Kernel,
    initrd: Path,
    workdir: Path,
    extra_append: str = "",
    ssh_port: int | None = None,
) -> list[str]:
    # no_timer_check: on a loaded host a TCG guest can miss the IO-APIC timer test at boot and
    # panic (`timer doesn't work through Interrupt-remapped IO-APIC`); it says nothing about
    # what the lab tests, so the test is skipped (as cloud images do for slow virtual timers).
    append = f"console=ttyS0 panic=-1 no_timer_check {scenario.append} {extra_append}".strip()
    return [
        qemu_binary(),
        "-machine", "q35,kernel-irqchip=split",
        "-accel", "tcg",
        "-m", "2048",
        "-smp", "2",
        "-display", "none",
        "-no-reboot",
        *nic_args(ssh_port),
        # std: the host's own boot display at 00:01.0 (-device VGA alone would drop it)
        "-vga", scenario.vga,
        *firmware_args(scenario, workdir),
        "-monitor", "none",
        "-serial", f"file:{workdir / 'console.log'}",
        *scenario.qemu_devices,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={workdir / 'share'},mount_tag=labshare,security_model=none,multidevs=remap",
        "-kernel", str(kernel.vmlinuz),
        "-initrd", str(initrd),
        "-append", append,
    ]  # fmt: skip


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_workdirs() -> None:
    """Remove work folders left by owners that were killed (no atexit ran) and whose QEMU is gone."""
    for d in Path(tempfile.gettempdir()).glob("gpudoctor-lab-*"):
        try:
            owner = int((d / "owner.pid").read_text())
            qemu = int((d / "qemu.pid").read_text()) if (d / "qemu.pid").exists() else 0
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not _pid_alive(owner) and not (qemu and _pid_alive(qemu)):
            shutil.rmtree(d, ignore_errors=True)


class Lab:
    """Entry point: ``with Lab.boot("intel-partial") as guest: guest.run([...])``."""

    @staticmethod
    def check_setup(cache: Path | None = None) -> _cache.Kernel:
        if not shutil.which(qemu_binary()):
            raise LabSetupError(f"{qemu_binary()} not found in PATH; {_cache.SETUP_HINT}")
        return _cache.load_kernel(cache)

    @staticmethod
    def boot(
        scenario: str | Scenario,
        timeout: float = 120,
        *,
        cache: Path | None = None,
        setup: bool = True,
        extra_append: str = "",
        hang: bool | str = False,
        ssh_port: int | None = None,
        stall: float | None = None,
    ) -> Guest:
        """ssh_port: give the guest a NIC on QEMU's user networking with its port 22 forwarded
        from 127.0.0.1:ssh_port (nic_args); lab.guest_ssh.start_sshd then serves it.

        A boot whose console stays silent for `stall` seconds (BOOT_STALL) after the kernel began
        to print is killed and booted once more, with the full timeout and no stall limit; the
        second boot's failure is the one raised. hang=True: the first stage hangs on purpose (never
        booted again); hang="once": only the first boot hangs (the fault tests' stalled boot)."""
        sc = get_scenario(scenario) if isinstance(scenario, str) else scenario
        if hang not in (True, False, "once"):
            raise LabError(f"hang={hang!r}: True, False or 'once'")
        kernel = Lab.check_setup(cache)
        sweep_stale_workdirs()
        initrd = _cache.build_initramfs(kernel, cache)
        limit = BOOT_STALL if stall is None else stall
        g = Guest(sc, kernel, initrd, extra_append=extra_append, hang=bool(hang), ssh_port=ssh_port)
        try:
            try:
                g._start(timeout, stall=None if hang is True else limit)
            except LabBootStalled as e:
                g.close()
                BOOT_STALLS.append(f"{sc.name}: {e.summary}; booted again")
                _log(f"{sc.name}: {e.summary}; booting it again")
                g = Guest(sc, kernel, initrd, extra_append=extra_append, ssh_port=ssh_port)
                g.stalled_before = e.summary
                g._start(timeout, stall=None)
            if setup:
                g.setup_scenario()
        except BaseException:
            g.close()
            raise
        return g


class Guest:
    def __init__(
        self,
        scenario: Scenario,
        kernel: _cache.Kernel,
        initrd: Path,
        extra_append: str = "",
        hang: bool = False,
        ssh_port: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.ssh_port = ssh_port
        self.kernel = kernel
        self.initrd = initrd
        self.extra_append = extra_append
        self.hang = hang
        self.workdir = Path(tempfile.mkdtemp(prefix=f"gpudoctor-lab-{scenario.name}-"))
        self.share = self.workdir / "share"
        self.share.mkdir()
        (self.share / "jobs").mkdir()
        (self.share / "results").mkdir()
        (self.share / "files").mkdir()
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.proc: subprocess.Popen | None = None
        self.boot_time: float | None = None
        self.ready: dict = {}
        self.setup_output: str = ""
        self._ids = itertools.count(1)
        self._broken: str | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.hang_grace = HANG_GRACE
        self.stalled_before: str | None = None  # why an earlier boot of this guest was given up

    # ------------------------------------------------------------------ lifecycle

    def _start(self, timeout: float, stall: float | None = None) -> None:
        env = {
            "LAB_PYTHON": sys.executable,
            "LAB_AGENT": str(Path(__file__).resolve().parent / "agent.py"),
            "LAB_MODDIR": str(self.kernel.moddir),
            "LAB_KVER": self.kernel.kver,
            "LAB_HOSTNAME": f"lab-{self.scenario.name}",
            "LAB_HANG": "1" if self.hang else "",
            # paths the guest must see although they lie under a folder it mounts a tmpfs on
            # (a checkout under /tmp, as CI may clone it): re-exposed from the overlay
            "LAB_KEEP": ":".join(sorted({str(REPO_ROOT), str(self.kernel.moddir), os.path.dirname(sys.executable),
                                         os.path.realpath(os.path.dirname(sys.executable))})),
        }
        (self.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
        (self.share / "boot.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
        prepare_firmware(self.scenario, self.workdir)
        cmd = qemu_command(self.scenario, self.kernel, self.initrd, self.workdir, self.extra_append, self.ssh_port)
        (self.workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
        t0 = time.monotonic()
        self.proc = start_qemu(cmd, self.qemu_log)
        with _live_lock:
            _live.add(self)
        (self.workdir / "qemu.pid").write_text(f"{self.proc.pid}\n")
        ready = self.share / "ready.json"
        deadline = t0 + timeout
        watch = StallWatch(stall, t0)
        while True:
            if ready.exists():
                try:
                    self.ready = json.loads(ready.read_text())
                    break
                except ValueError:
                    pass
            rc = self.proc.poll()
            if rc is not None:
                raise LabBootError(
                    f"{self.scenario.name}: QEMU exited with rc={rc} before the guest came up.\n"
                    f"qemu: {_tail(self.qemu_log, 10)}\n--- console tail:\n{_tail(self.console_log)}"
                )
            now = time.monotonic()
            if now > deadline:
                self._kill()
                raise LabBootError(
                    f"{self.scenario.name}: guest did not boot within {timeout:.0f}s (QEMU killed).\n"
                    f"--- console tail:\n{_tail(self.console_log)}"
                )
            try:
                grown = self.console_log.stat().st_size
            except OSError:
                grown = 0
            if watch.stalled(grown, now):
                self._kill()
                raise watch.error(self.scenario.name, now, f", {now - t0:.0f}s into the boot", _tail(self.console_log, 1).strip())
            time.sleep(0.05)
        self.boot_time = time.monotonic() - t0
        _log(
            f"{self.scenario.name}: guest up in {self.boot_time:.1f}s "
            f"(kernel {self.kernel.kver}, guest uptime {self.ready.get('uptime', 0):.1f}s, "
            f"qemu pid {self.proc.pid}, workdir {self.workdir})"
        )

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def qemu_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _kill(self) -> None:
        kill_group(self.proc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._kill()
        with _live_lock:
            _live.discard(self)
        if os.environ.get("GPUDOCTOR_LAB_KEEP"):
            _log(f"{self.scenario.name}: keeping {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def console(self) -> str:
        try:
            return self.console_log.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ commands

    def _died(self, what: str) -> LabGuestDied:
        rc = self.proc.poll() if self.proc else None
        self._broken = f"QEMU exited (rc={rc})"
        return LabGuestDied(
            f"{self.scenario.name}: QEMU exited (rc={rc}) while {what}.\n"
            f"--- console tail:\n{_tail(self.console_log)}"
        )

    def run(
        self,
        argv: list[str] | str,
        timeout: float = 60,
        *,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        check: bool = False,
        timeout_ok: bool = False,
        keep_children: bool = False,
    ) -> Result:
        """Run *argv* in the guest chroot (a string runs through ``sh -c``)."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        argv = [str(a) for a in argv]
        with self._lock:
            if self._closed:
                raise LabError(f"{self.scenario.name}: guest already closed")
            if self._broken:
                raise LabGuestDied(f"{self.scenario.name}: guest unusable: {self._broken}")
            if not self.alive:
                raise self._died(f"about to run {shlex.join(argv)}")
            jid = f"{next(self._ids):05d}"
            job = {
                "argv": argv,
                "timeout": timeout,
                "input": input,
                "env": env or {},
                "cwd": cwd,
                "keep_children": keep_children,
            }
            tmp = self.share / "jobs" / f".{jid}.tmp"
            tmp.write_text(json.dumps(job))
            tmp.rename(self.share / "jobs" / f"{jid}.json")
            res = self.share / "results"
            done = res / f"{jid}.json"
            t0 = time.monotonic()
            deadline = t0 + timeout + self.hang_grace
            meta = None
            while True:
                if done.exists():
                    try:
                        meta = json.loads(done.read_text())
                        break
                    except ValueError:
                        pass
                if not self.alive:
                    raise self._died(f"running {shlex.join(argv)}")
                if time.monotonic() > deadline:
                    self._broken = f"agent stopped answering during {shlex.join(argv)}"
                    raise LabGuestHung(
                        f"{self.scenario.name}: no answer from the guest {timeout + self.hang_grace:.0f}s after "
                        f"starting {shlex.join(argv)} (its own timeout was {timeout:.0f}s); the guest "
                        f"hangs.\n--- partial stdout:\n{self._read(res / f'{jid}.out')[-2000:]}"
                        f"\n--- console tail:\n{_tail(self.console_log)}"
                    )
                time.sleep(0.03)
            r = Result(
                argv=argv,
                rc=meta.get("rc", -1) if meta.get("rc") is not None else -1,
                stdout=self._read(res / f"{jid}.out"),
                stderr=self._read(res / f"{jid}.err"),
                duration=meta.get("duration", time.monotonic() - t0),
                timed_out=bool(meta.get("timed_out")),
            )
            if meta.get("error"):
                r.stderr += f"\n[lab agent] {meta['error']}\n"
            for suffix in (".out", ".err", ".json"):
                (res / f"{jid}{suffix}").unlink(missing_ok=True)
        if r.timed_out and not timeout_ok:
            raise LabCommandTimeout(
                f"{self.scenario.name}: command ran past its {timeout:.0f}s timeout in the guest and was "
                f"killed: {shlex.join(argv)}\n--- stdout:\n{r.stdout[-2000:]}\n--- stderr:\n{r.stderr[-2000:]}",
                result=r,
            )
        if check and r.rc != 0:
            raise LabError(f"{self.scenario.name}: command failed:\n{r}")
        return r

    @staticmethod
    def _read(p: Path) -> str:
        try:
            return p.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ files

    def host_path(self, guest_path: str) -> Path:
        """Host path of a file under the guest's share (``/run/gpudoctor-lab/...``)."""
        if not guest_path.startswith(GUEST_SHARE + "/"):
            raise LabError(f"{guest_path} is not under the share {GUEST_SHARE}")
        return self.share / guest_path[len(GUEST_SHARE) + 1 :]

    def share_path(self, name: str) -> tuple[str, Path]:
        """(guest path, host path) of a fresh name under the share's files/ folder."""
        return f"{GUEST_SHARE}/files/{name}", self.share / "files" / name

    def read_bytes(self, path: str, timeout: float = 30) -> bytes:
        if path.startswith(GUEST_SHARE + "/"):
            return self.host_path(path).read_bytes()
        gpath, hpath = self.share_path(f"read-{next(self._ids)}")
        r = self.run(["cp", "--", path, gpath], timeout=timeout)
        if r.rc != 0:
            raise LabError(f"cannot read {path} in the guest: {r.stderr.strip()}")
        data = hpath.read_bytes()
        hpath.unlink(missing_ok=True)
        return data

    def read_file(self, path: str, timeout: float = 30) -> str:
        return self.read_bytes(path, timeout).decode("utf-8", "replace")

    def write_file(self, path: str, data: str | bytes, timeout: float = 30) -> None:
        gpath, hpath = self.share_path(f"write-{next(self._ids)}")
        hpath.write_bytes(data.encode() if isinstance(data, str) else data)
        self.run(["cp", "--", gpath, path], timeout=timeout, check=True)
        hpath.unlink(missing_ok=True)

    # ------------------------------------------------------------------ scenario helpers

    def setup_scenario(self, timeout: float = 60) -> None:
        """Apply the scenario's sysctls and vfio-pci bindings (driver_override/unbind/drivers_probe)."""
        lines = ["set -e"]
        for k, v in self.scenario.sysctl.items():
            lines.append(f"echo {shlex.quote(v)} > /proc/sys/{k.replace('.', '/')}")
        lines += self._bind_lines(self.scenario.bind_vfio)
        if len(lines) == 1:
            return
        t0 = time.monotonic()
        r = self.run("\n".join(lines), timeout=timeout)
        drivers = self.drivers()
        wrong = {a: drivers.get(a) for a in self.scenario.bind_vfio if drivers.get(a) != "vfio-pci"}
        if r.rc != 0 or wrong:
            raise LabError(f"{self.scenario.name}: scenario setup failed (not on vfio-pci: {wrong}):\n{r}")
        self.setup_output = r.output
        _log(f"{self.scenario.name}: setup done in {time.monotonic() - t0:.1f}s; drivers {drivers}")

    @staticmethod
    def _bind_lines(addrs: list[str]) -> list[str]:
        lines = []
        for a in addrs:
            d = f"/sys/bus/pci/devices/{a}"
            lines += [
                f"echo vfio-pci > {d}/driver_override",
                f"if [ -e {d}/driver ]; then echo {a} > {d}/driver/unbind; fi",
                f"echo {a} > /sys/bus/pci/drivers_probe",
            ]
        return lines

    def bind_vfio(self, addrs: list[str], timeout: float = 60) -> Result:
        """Bind devices to vfio-pci at runtime (driver_override, unbind, drivers_probe), as the
        scenarios' setup does; LabError unless every one ends up on vfio-pci."""
        r = self.run("\n".join(["set -e", *self._bind_lines(addrs)]), timeout=timeout)
        drivers = self.drivers()
        wrong = {a: drivers.get(a) for a in addrs if drivers.get(a) != "vfio-pci"}
        if r.rc != 0 or wrong:
            raise LabError(f"{self.scenario.name}: binding to vfio-pci failed (not on vfio-pci: {wrong}):\n{r}")
        return r

    def drivers(self) -> dict[str, str | None]:
        """PCI address -> bound driver name (None if unbound), for every device in the guest."""
        r = self.run(
            "for d in /sys/bus/pci/devices/*; do "
            'printf "%s %s\\n" "${d##*/}" "$(basename "$(readlink "$d/driver")" 2>/dev/null)"; done',
            timeout=30,
            check=True,
        )
        out: dict[str, str | None] = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if parts:
                out[parts[0]] = parts[1] if len(parts) > 1 and parts[1] != "." else None
        return out

    def iommu_groups(self) -> dict[str, list[str]]:
        """IOMMU group number -> sorted device addresses, from /sys/kernel/iommu_groups."""
        r = self.run(
            'for g in /sys/kernel/iommu_groups/*; do [ -d "$g" ] || continue; '
            'for d in "$g"/devices/*; do echo "${g##*/} ${d##*/}"; done; done',
            timeout=30,
            check=True,
        )
        groups: dict[str, list[str]] = {}
        for line in r.stdout.split("\n"):
            if line.strip():
                g, d = line.split()
                groups.setdefault(g, []).append(d)
        return {g: sorted(v) for g, v in groups.items()}

    def group_of(self, addr: str) -> str | None:
        for g, devs in self.iommu_groups().items():
            if addr in devs:
                return g
        return None

    def doctor_path(self) -> str:
        env = os.environ.get("GPUDOCTOR_LAB_DOCTOR")
        if env:
            return env
        for c in (Path(sys.executable).parent / "gpudoctor", REPO_ROOT / ".venv" / "bin" / "gpudoctor"):
            if c.exists():
                return str(c)
        w = shutil.which("gpudoctor")
        if w:
            return w
        raise LabError(
            f"gpudoctor executable not found (looked next to {sys.executable} and in {REPO_ROOT}/.venv); "
            "install the project (pip install -e .) or set GPUDOCTOR_LAB_DOCTOR"
        )

    def gpudoctor(self, args: list[str], timeout: float = 300, **kw) -> Result:
        """Run the doctor in the guest the way the scenario wants it run (e.g. without CAP_SYSLOG)."""
        return self.run([*self.scenario.doctor_prefix, self.doctor_path(), *args], timeout=timeout, **kw)

    def try_qemu_vfio(
        self, host: str | None = None, timeout: float = 90, *, firmware_s: float = 0, device_opts: str = ""
    ) -> Result:
        """Start QEMU inside the guest with ``-device vfio-pci,host=...`` (stopped with -S), ask its
        monitor for ``info pci`` and quit. rc 0 and the device in the output: QEMU got past vfio.
        Otherwise QEMU's own error (e.g. "group N is not viable") is in the result's output.

        firmware_s > 0: let the nested guest's SeaBIOS run (no -S) until it has probed the card's
        option ROM (QEMU's trace event ``vfio_pci_load_rom``, printed with the ROM region's size) or
        firmware_s seconds have passed, then ``info pci`` and quit: QEMU loads a vfio device's ROM
        only when the guest reads it (`vfio-pci: Cannot read device rom at ...` then).
        device_opts: appended to the -device option (e.g. ",rombar=0")."""
        host = host or self.scenario.card
        argv = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "64", "-nodefaults",
            "-display", "none", "-serial", "none", "-monitor", "stdio",
            *([] if firmware_s else ["-S"]),
            "-device", f"vfio-pci,host={host},id=hostdev0{device_opts}",
        ]  # fmt: skip
        if not firmware_s:
            return self.run(argv, timeout=timeout, input="info pci\nquit\n")
        argv += ["-trace", "vfio_pci_load_rom"]
        ticks = max(1, int(firmware_s * 5))
        wait = (
            f"i=0; while [ $i -lt {ticks} ]; do "
            'grep -q "vfio_pci_load_rom Device" "$out" && { sleep 1; break; }; '
            'grep -q "^qemu-system-x86_64: -device" "$out" && break; '  # QEMU refused the device: nothing to wait for
            "sleep 0.2; i=$((i+1)); done"
        )
        script = (
            f"out=$(mktemp); {{ {wait}; printf 'info pci\\nquit\\n'; }} | {shlex.join(argv)} >\"$out\" 2>&1; rc=$?; "
            'cat "$out"; rm -f "$out"; exit $rc'
        )
        return self.run(script, timeout=timeout)

    # ------------------------------------------------------------------ libvirt (inside the guest)

    def start_libvirt(self, timeout: float = 120) -> Result:
        """Start virtlogd and libvirtd in the guest (idempotent): ``namespaces = []`` in qemu.conf
        (no mount namespace over the 9p/overlay root); /run is already a tmpfs."""
        script = (
            "set -e; grep -q '^namespaces = \\[\\]' /etc/libvirt/qemu.conf || "
            "printf 'namespaces = []\\n' >> /etc/libvirt/qemu.conf; "
            "mkdir -p /var/log/libvirt/qemu /var/lib/libvirt; "
            "pgrep -x virtlogd >/dev/null || virtlogd -d; pgrep -x libvirtd >/dev/null || libvirtd -d; "
            "for i in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.3; done; "
            "echo 'libvirtd does not answer' >&2; exit 1"
        )
        r = self.run(script, timeout=timeout, keep_children=True)
        if r.rc != 0:
            raise LabError(f"{self.scenario.name}: cannot start libvirtd in the guest:\n{r}")
        return r

    def libvirt_start_domain(self, name: str, hostdevs: list[str], timeout: float = 180) -> Result:
        """Define and start a type='qemu' q35 domain with managed PCI hostdevs (e.g. ["0000:01:00.0"]).
        The result holds virsh's output: libvirt's (and QEMU's) error when it does not start."""
        devs = []
        for a in hostdevs:
            dom, bus, rest = a.split(":")
            slot, fn = rest.split(".")
            devs.append(
                "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
                f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"
                "</source></hostdev>"
            )
        xml = (
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
            "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
            + "".join(devs)
            + "<video><model type='none'/></video><memballoon model='none'/></devices></domain>"
        )
        self.write_file(f"/tmp/lab-domain-{name}.xml", xml)
        v = "virsh -c qemu:///system"
        return self.run(
            f"{v} define /tmp/lab-domain-{name}.xml >/dev/null && {v} start {name}",
            timeout=timeout,
            keep_children=True,
        )

    def libvirt_destroy_domain(self, name: str, timeout: float = 120) -> Result:
        v = "virsh -c qemu:///system"
        return self.run(
            f"{v} destroy {name} 2>/dev/null; {v} undefine {name}", timeout=timeout, keep_children=True
        )
