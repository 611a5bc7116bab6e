"""Machine.boot's stalled-boot retry, driven by a stand-in for QEMU (a real process writing a real
serial file): the first power-on prints a kernel line and goes silent, the second reaches the runner,
finishes an empty job and powers off. The direct-kernel guests' retry is proven on real boots
(tests/lab/test_lab_faults.py)."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest

from lab.disk import Machine
from lab.errors import LabBootError
from lab.proc import BOOT_STALLS

FAKE_QEMU = r'''#!{python}
import json, os, sys, time
argv = sys.argv[1:]
serial = next(a for a in argv if a.startswith("file:"))[5:]
share = next(a for a in argv if "mount_tag=labshare" in a).split("path=", 1)[1].split(",", 1)[0]
count = os.path.join(os.path.dirname(share), "powered-on")
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
with open(serial, "w") as con:
    con.write("[    1.824479] sched_clock: Marking stable (1853958945, -30583780)\n"); con.flush()
    if n <= {stalls}:
        time.sleep(3600)  # the TCG guest that stopped for good
    job = json.load(open(os.path.join(share, "job.json")))
    os.rename(os.path.join(share, "job.json"), os.path.join(share, "job.taken.json"))
    out = os.path.join(share, "results", str(job["boot"]))
    os.makedirs(out, exist_ok=True)
    con.write("GPUDOCTOR-LAB READY boot=%d uptime=2.0\n" % job["boot"]); con.flush()
    open(os.path.join(out, "done.json"), "w").write("{{}}")
    con.write("GPUDOCTOR-LAB DONE uptime=2.1\n")
'''


@pytest.fixture(autouse=True)
def _stand_in_stalls_stay_out_of_the_summary():  # type: ignore[no-untyped-def]
    """The lab summary's "lab boot stalls" lists real guests: the stand-in's lines are taken back."""
    before = len(BOOT_STALLS)
    yield
    del BOOT_STALLS[before:]


def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stalls: int) -> None:
    exe = tmp_path / "qemu-system-x86_64"
    exe.write_text(FAKE_QEMU.format(python=sys.executable, stalls=stalls))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("GPUDOCTOR_LAB_QEMU", str(exe))


def test_a_stalled_power_on_is_killed_and_the_boot_runs_once_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_qemu(tmp_path, monkeypatch, stalls=1)
    before = len(BOOT_STALLS)
    t0 = time.monotonic()
    with Machine(Path("/nonexistent.raw"), name="stall", overlay=False) as m:
        b = m.boot([], stall=1.5, truth=False, boot_timeout=30)
        assert (m.workdir / "powered-on").read_text() == "2"
        assert b.index == 1 and m.boots == [b]  # one boot in the record, not two
        assert "READY boot=1" in b.console
    assert time.monotonic() - t0 < 20
    assert len(BOOT_STALLS) == before + 1
    assert BOOT_STALLS[-1].startswith("stall boot 1: boot stalled") and "sched_clock: Marking stable" in BOOT_STALLS[-1]


def test_a_second_stall_is_waited_out_and_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_qemu(tmp_path, monkeypatch, stalls=2)
    with Machine(Path("/nonexistent.raw"), name="stall2", overlay=False) as m:
        with pytest.raises(LabBootError, match="did not reach the lab runner within 4s"):
            m.boot([], stall=1.5, truth=False, boot_timeout=4)
        assert (m.workdir / "powered-on").read_text() == "2"
