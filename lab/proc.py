"""QEMU processes of the lab (direct-kernel guests and disk machines): started in their own
session so that one signal reaches every process QEMU forks, and killed with their owner."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path

from .errors import LabBootStalled

# Seconds a console may stay silent, once the guest has printed, before its boot counts as
# stalled. A TCG guest can stop for good in the middle of the kernel's late init (seen once in
# CI: the console stopped at "sched_clock: Marking stable", 1.8 s into a boot that takes 30 s);
# Lab.boot and Machine.boot then boot it once more, from scratch, and say so (BOOT_STALLS, which
# the lab's pytest summary prints).
BOOT_STALL = float(os.environ.get("GPUDOCTOR_LAB_BOOT_STALL", "90"))
# One line per stalled boot that was booted again, for the session's summary.
BOOT_STALLS: list[str] = []


class StallWatch:
    """A boot's console, watched for a stall: it has printed, then not grown for `limit` seconds (None: never)."""

    def __init__(self, limit: float | None, t0: float) -> None:
        self.limit, self.t0 = limit, t0
        self.size, self.grew = 0, t0

    def stalled(self, size: int, now: float) -> bool:
        """Note the console's size at `now`; True once it has printed and then stayed that size past the limit."""
        if size != self.size:
            self.size, self.grew = size, now
            return False
        return self.limit is not None and size > 0 and now - self.grew > self.limit

    def error(self, who: str, now: float, when: str, last: str) -> LabBootStalled:
        silent = now - self.grew
        return LabBootStalled(f"{who}: the console stayed silent for {silent:.0f}s{when} (QEMU killed); its last line: {last!r}",
                              summary=f"boot stalled {now - self.t0:.0f}s in, console silent for {silent:.0f}s after {last!r}")


def _die_with_parent() -> None:
    # QEMU dies with us even if we are SIGKILLed (PR_SET_PDEATHSIG = 1). PDEATHSIG fires when the
    # *thread* that started it exits: start QEMU from a thread that outlives it.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def start_qemu(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start *cmd* with stdout and stderr to *log*, in its own session, dying with this process."""
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)


def kill_group(p: subprocess.Popen | None) -> None:
    """SIGKILL *p*'s whole process group (or *p* alone where that is refused) and reap it."""
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            p.kill()
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
