"""The lab's own failure modes: clear LabErrors, and QEMU never outlives its owner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import (
    Lab,
    LabBootError,
    LabCommandTimeout,
    LabError,
    LabGuestDied,
    LabGuestHung,
    LabSetupError,
)
from lab.vm import sweep_stale_workdirs

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
SCENARIO = "intel-unbound"


def _gone(pid: int, within: float = 10.0) -> bool:
    """True once *pid* no longer exists (or is a zombie nobody reaped yet)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


def test_missing_kernel_cache_says_run_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUDOCTOR_LAB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(LabSetupError, match=r"lab/setup\.sh"):
        Lab.boot(SCENARIO, timeout=5)


def test_missing_qemu_says_run_setup(monkeypatch):
    monkeypatch.setenv("GPUDOCTOR_LAB_QEMU", "qemu-system-x86_64-not-installed")
    with pytest.raises(LabSetupError, match=r"not found.*lab/setup\.sh"):
        Lab.boot(SCENARIO, timeout=5)


def test_unknown_scenario():
    with pytest.raises(LabError, match="unknown scenario"):
        Lab.boot("no-such-scenario")


def test_guest_that_never_boots_reports_console_tail(lab_ready):
    """The first stage hangs on purpose (lab.hang): LabBootError with the console's tail."""
    t0 = time.monotonic()
    with pytest.raises(LabBootError) as ei:
        Lab.boot(SCENARIO, timeout=25, hang=True)
    msg = str(ei.value)
    assert "did not boot within 25s" in msg, msg
    tail = msg.split("--- console tail:", 1)[1]
    # The kernel's own log lines are in the tail; on an idle machine the kernel also got as far
    # as the first stage, which says it hangs on purpose (under heavy load it may not in 25 s).
    assert re.search(r"^\[\s*\d+\.\d+\] ", tail, re.M) or "LAB: stage1" in tail, msg
    if "LAB: stage1" in tail:
        assert "hanging on purpose" in tail, msg
    assert time.monotonic() - t0 < 60


def test_stalled_boot_is_booted_again_and_said(lab_ready):
    """The first boot's first stage hangs (hang="once"): its console goes silent, the boot counts as
    stalled after `stall` seconds, QEMU is killed and a second boot, from scratch, comes up."""
    from lab.proc import BOOT_STALLS

    before = len(BOOT_STALLS)
    t0 = time.monotonic()
    with Lab.boot(SCENARIO, timeout=180, hang="once", stall=8, setup=False) as g:
        assert g.stalled_before and "console silent for" in g.stalled_before, g.stalled_before
        assert "hanging on purpose" not in g.console_log.read_text(errors="replace")  # a fresh boot
        assert g.run(["true"], timeout=30).rc == 0
    assert len(BOOT_STALLS) == before + 1 and BOOT_STALLS[-1].startswith(f"{SCENARIO}: boot stalled")
    print(f"{BOOT_STALLS[-1]} [{time.monotonic() - t0:.1f}s]")
    with pytest.raises(LabError, match="hang="):
        Lab.boot(SCENARIO, hang="twice")


def test_qemu_that_cannot_start_reports_its_error(lab_ready, monkeypatch):
    # lab.scenarios.Scenario is a dataclass (the lab is not on the start-up path)
    from dataclasses import replace

    from lab import SCENARIOS

    broken = replace(SCENARIOS[SCENARIO], qemu_devices=["-device", "no-such-device"])
    with pytest.raises(
        LabBootError, match=r"QEMU exited with rc=1 before the guest came up(.|\n)*no-such-device"
    ):
        Lab.boot(broken, timeout=30)


def test_command_timeout_hang_and_interrupt(lab_ready):
    """One boot: a command past its timeout, an agent that stops answering, then ^C."""
    pid = None
    with pytest.raises(KeyboardInterrupt):
        with Lab.boot(SCENARIO, timeout=120, setup=False) as g:
            pid = g.qemu_pid
            # A command that overruns its timeout is killed in the guest; the guest stays usable.
            t0 = time.monotonic()
            with pytest.raises(LabCommandTimeout, match=r"past its 2s timeout(.|\n)*sleep 300") as ei:
                g.run("echo started; sleep 300", timeout=2)
            assert time.monotonic() - t0 < 30
            assert ei.value.result.timed_out and "started" in ei.value.result.stdout
            r = g.run(["sleep", "300"], timeout=1, timeout_ok=True)
            assert r.timed_out
            assert g.run(["echo", "still here"]).stdout == "still here\n"
            # The agent itself freezes: the host gives up after timeout + grace.
            g.hang_grace = 3
            agent = g.ready["pid"]
            with pytest.raises(LabGuestHung, match="no answer from the guest"):
                g.run(["kill", "-STOP", str(agent)], timeout=2)
            with pytest.raises(LabError, match="unusable"):
                g.run(["true"])
            assert g.alive
            raise KeyboardInterrupt
    assert pid and _gone(pid), "QEMU survived a KeyboardInterrupt in the with block"


def test_qemu_killed_mid_command(lab_ready):
    with Lab.boot(SCENARIO, timeout=120, setup=False) as g:
        pid = g.qemu_pid
        threading.Timer(2.0, os.kill, (pid, signal.SIGKILL)).start()
        t0 = time.monotonic()
        with pytest.raises(LabGuestDied, match=r"QEMU exited \(rc=-9\) while running sleep 60"):
            g.run(["sleep", "60"], timeout=90)
        assert time.monotonic() - t0 < 30
        with pytest.raises(LabGuestDied):
            g.run(["true"])
    assert _gone(pid)


def test_qemu_dies_with_its_owner_even_on_sigkill(lab_ready):
    """python -m lab boot ... is SIGKILLed: no atexit runs, PR_SET_PDEATHSIG still kills QEMU."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen(
        [sys.executable, "-m", "lab", "boot", SCENARIO, "--no-setup", "--", "sleep 300"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    qemu_pid = None
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "qemu pid" in line:
                qemu_pid = int(line.split("qemu pid ")[1].split(",")[0])
                break
        assert qemu_pid, "".join(lines)
        assert not _gone(qemu_pid, within=0.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert _gone(qemu_pid, within=10), f"QEMU {qemu_pid} outlived its SIGKILLed owner"
    finally:
        if p.poll() is None:
            p.kill()
        if qemu_pid and not _gone(qemu_pid, within=0):
            os.kill(qemu_pid, signal.SIGKILL)
        sweep_stale_workdirs()  # the killed owner left its work folder behind
