"""Undo tells the truth: the process is killed at every step of a fix (intent saved, nothing
written; written, outcome not saved; during a regeneration; outcome saved), then `undo` must put
every byte back and report exactly what it did: a file is judged by its bytes on disk, a
regeneration whose intent was saved is run again, and nothing it did not do is called undone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from doctor.host import CommandResult
from doctor.journal import Journal, undo
from doctor.plan import Bind, Command, FileEdit, LoadModule
from doctor.system import RootedSystem
from tests.test_fix import copy_fixture, plan_for, tree_digest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(REPO, "fixtures")
VFIO = b"options vfio-pci ids=10de:1e84,10de:10f8\n"

# A representative plan: an edit of /etc/default/grub, a new /etc/modprobe.d/vfio.conf, update-grub.
APPLY = r"""
import sys
from doctor.plan import Command, FileEdit, NEXT_BOOT, Plan
from doctor.journal import Journal, apply_plan
from doctor.system import RootedSystem
root = sys.argv[1]
old = open(root + "/etc/default/grub", "rb").read()
new = old.replace(b'GRUB_CMDLINE_LINUX=""', b'GRUB_CMDLINE_LINUX="intel_iommu=on"')
vfio = VFIO
plan = Plan([
    FileEdit(("cmdline.iommu_enabled",), "turn the IOMMU on", NEXT_BOOT, boot_path=True, path="/etc/default/grub", old=old, new=new),
    FileEdit(("vfio.ids_configured",), "bind the card at boot", NEXT_BOOT, path="/etc/modprobe.d/vfio.conf", old=None, new=vfio),
    Command(("cmdline.iommu_enabled",), "regenerate grub.cfg", NEXT_BOOT, boot_path=True, argv=("update-grub",), undo_argv=("update-grub",)),
])
sysm = RootedSystem(root)
apply_plan(plan, sysm, Journal(sysm))
""".replace("VFIO", repr(VFIO))

STEPS = [(0, "before"), (0, "during"), (0, "after"), (0, "done"), (1, "before"), (1, "during"), (1, "after"), (1, "done"),
         (2, "before"), (2, "during"), (2, "after"), (2, "done")]
TEMP_LEFT = "undone: removed {tmp}, the temporary file a kill left; {path} was {what}"


def run_apply(root: str, at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("GPUDOCTOR_TEST_CRASH_AFTER", None)
    if at:
        env["GPUDOCTOR_TEST_CRASH_AT"] = at
    return subprocess.run([sys.executable, "-c", APPLY, root], capture_output=True, text=True, check=False, env=env,
                          cwd=REPO, timeout=60)


def expected(index: int, phase: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """The lines undo must print after a kill at (index, phase), and the commands it must run."""
    lines: list[str] = []
    cut = phase != "done"
    grub, vfio = "/etc/default/grub", "/etc/modprobe.d/vfio.conf"
    if index == 1 and phase == "before":
        lines.append(f"nothing to undo: {vfio} was never created (cut short before the write)")
    elif index == 1 and phase == "during":
        lines.append(TEMP_LEFT.format(tmp="/etc/modprobe.d/.vfio.conf.gpudoctor-tmp", path=vfio, what="never created"))
    elif index >= 1:
        lines.append(f"undone: removed {vfio}" + (" (the write had landed; its outcome was not recorded)"
                                                   if index == 1 and phase == "after" else ""))
    if index == 0 and phase == "before":
        lines.append(f"nothing to undo: {grub} was never written: its old content is on disk (cut short before the write)")
    elif index == 0 and phase == "during":
        lines.append(TEMP_LEFT.format(tmp="/etc/default/.grub.gpudoctor-tmp", path=grub,
                                      what="never written: its old content is on disk"))
    else:
        lines.append(f"undone: restored the old {grub}" + (" (the write had landed; its outcome was not recorded)"
                                                           if index == 0 and phase == "after" else ""))
    ran: list[tuple[str, ...]] = []
    if index == 2:
        lines.append("regenerated from the restored files: update-grub"
                     + (" (it had been cut short: it may or may not have run)" if cut else ""))
        ran.append(("update-grub",))
    return lines, ran


@pytest.mark.parametrize("index, phase", STEPS)
def test_a_kill_at_any_step_is_undone_byte_for_byte_and_reported_as_it_was(tmp_path: Any, index: int, phase: str) -> None:
    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    p = run_apply(root, f"{index}:{phase}")
    assert p.returncode == 137, (p.stdout, p.stderr)
    doc = Journal.list(RootedSystem(root))[-1]
    states = [e["state"] for e in doc["entries"]]
    assert doc["state"] == "applying"
    assert states == ["done"] * index + ["done" if phase == "done" else "started"] + ["planned"] * (2 - index)
    if phase == "before" and index < 2:  # the intent holds the old bytes' hash and what will be written
        rec = doc["entries"][index]["record"]
        assert {"old", "old_sha", "new_sha"} <= set(rec)
    grub_now = open(os.path.join(root, "etc/default/grub"), "rb").read()
    assert (b"intel_iommu=on" in grub_now) == (index > 0 or phase in ("after", "done"))  # the kill struck where it says
    if phase == "during" and index < 2:  # the temporary file is written, the rename has not happened
        assert os.path.exists(os.path.join(root, ("etc/default/.grub" if index == 0 else "etc/modprobe.d/.vfio.conf") + ".gpudoctor-tmp"))
    sysm = RootedSystem(root)
    fix_id, log = undo(sysm)
    want_lines, want_ran = expected(index, phase)
    assert log == want_lines
    assert sysm.ran == want_ran  # it ran update-grub exactly when it says so
    assert tree_digest(root) == before, f"not restored after a kill at {index}:{phase}"
    after = json.load(open(Journal(sysm, fix_id).path))
    assert after["state"] == "undone"
    # the journal keeps, per action, the line undo printed; what never started stays planned
    assert sorted(e["undo"] for e in after["entries"] if e["state"] == "undone") == sorted(want_lines)
    assert [e["state"] for e in after["entries"]] == ["undone"] * (index + 1) + ["planned"] * (2 - index)


def test_a_finished_fix_is_undone_with_one_line_per_action(tmp_path: Any) -> None:
    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    assert run_apply(root, None).returncode == 0
    sysm = RootedSystem(root)
    _, log = undo(sysm)
    assert log == expected(2, "done")[0] and sysm.ran == [("update-grub",)]
    assert tree_digest(root) == before


def test_a_regeneration_that_fails_on_undo_is_reported_failed_and_retried(tmp_path: Any) -> None:
    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    assert run_apply(root, "2:during").returncode == 137
    bad = RootedSystem(root, responses={("update-grub",): CommandResult(("update-grub",), 1, "", "grub-mkconfig: error")})
    fix_id, log = undo(bad)
    assert log[-1].startswith("FAILED to undo: run update-grub") and not any(ln.startswith("regenerated") for ln in log)
    assert Journal.load(bad, fix_id).doc["state"] == "undo incomplete"
    assert tree_digest(root) == before  # the files are back; grub.cfg still needs its regeneration
    good = RootedSystem(root)
    _, log2 = undo(good, fix_id)
    assert log2 == ["regenerated from the restored files: update-grub (it had been cut short: it may or may not have run)"]
    assert good.ran == [("update-grub",)] and Journal.load(good, fix_id).doc["state"] == "undone"


def test_a_journal_without_intent_from_an_older_gpudoctor_is_judged_on_disk(tmp_path: Any) -> None:
    """An older gpudoctor saved `started` with an empty record before writing: the old bytes are the plan's."""
    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    assert run_apply(root, "1:after").returncode == 137
    sysm = RootedSystem(root)
    j = Journal.load(sysm, Journal.list(sysm)[-1]["id"])
    j.doc["entries"][1]["record"] = {}
    j.save()
    _, log = undo(sysm)
    assert log[0] == "undone: removed /etc/modprobe.d/vfio.conf (the write had landed; its outcome was not recorded)"
    assert tree_digest(root) == before


def gd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GPUDOCTOR_TEST_")}
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                          env={**base, **(env or {})}, stdin=subprocess.DEVNULL, timeout=120, cwd=REPO)


def cli_expected(actions: list[Any], index: int, phase: str) -> list[str]:
    """What `gpudoctor undo` must print after a kill at (index, phase) of the seed-partial plan."""
    lines, regen = [], []
    for k in reversed(range(index + 1)):
        a, cut = actions[k], k == index and phase != "done"
        if isinstance(a, Command) and a.regenerates:
            regen.append(k)
        elif isinstance(a, FileEdit):
            if cut and phase == "during":
                d, name = os.path.split(a.path)
                lines.append(TEMP_LEFT.format(tmp=f"{d}/.{name}.gpudoctor-tmp", path=a.path,
                                              what="never written: its old content is on disk"))
            elif cut and phase == "before":
                lines.append(f"nothing to undo: {a.path} was never written: its old content is on disk (cut short before the write)")
            else:
                lines.append(f"undone: restored the old {a.path}" + (" (the write had landed; its outcome was not recorded)" if cut else ""))
        elif isinstance(a, Bind):
            lines.append(f"undone: cleared driver_override, gave {a.address} back to {a.previous_driver}" + (" (it had been cut short)" if cut else ""))
        elif isinstance(a, LoadModule):
            lines.append(f"left as is: module {a.module} stays loaded (harmless; undo does not unload it)")
    for k in sorted(regen):
        lines.append(f"regenerated from the restored files: {' '.join(actions[k].argv)}"
                     + (" (it had been cut short: it may or may not have run)" if k == index and phase != "done" else ""))
    return lines


def test_cli_undo_after_a_kill_at_every_step_of_a_real_plan(tmp_path: Any) -> None:
    """seed-partial's own plan (vfio.conf, initramfs modules, update-initramfs, grub, update-grub,
    two binds) killed inside every action; `gpudoctor undo` restores and prints exactly what it did."""
    _, plan = plan_for(os.path.join(FIX, "seed-partial"))
    assert {type(a) for a in plan.actions} >= {FileEdit, Command, Bind}
    for i, a in enumerate(plan.actions):
        for phase in ("before", "after") if isinstance(a, Bind) else ("before", "during", "after"):
            base = tmp_path / f"{i}-{phase}"
            snap = copy_fixture(base, "seed-partial")
            root = os.path.join(snap, "root")
            before = tree_digest(root)
            p = gd("fix", "--all", "--advice", "--apply", "--yes", "--root", root, env={"GPUDOCTOR_TEST_CRASH_AT": f"{i}:{phase}"})
            assert p.returncode == 137, (i, phase, p.stdout, p.stderr)
            u = gd("undo", "--root", root)
            assert u.returncode == 0, (i, phase, u.stdout, u.stderr)
            fix_id = Journal.list(RootedSystem(root))[-1]["id"]
            assert u.stdout.splitlines() == [*cli_expected(plan.actions, i, phase), f"fix {fix_id} undone"], (i, phase)
            assert tree_digest(root) == before, f"not restored after a kill at {i}:{phase}"
            shutil.rmtree(base)


def test_a_rollback_that_fails_part_way_says_so_and_undo_finishes_it(tmp_path: Any) -> None:
    """A failed apply is rolled back; where a step of that rollback fails, the journal says
    `rollback incomplete` (not `rolled back`), the CLI says what was and was not done, and `undo`
    reverses only what is left."""
    from doctor.fixcli import _rolled_back
    from doctor.journal import apply_plan as apply
    from doctor.plan import NEXT_BOOT, ApplyError, Plan

    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    add, rm = ("kernelstub", "-a", "iommu=pt"), ("kernelstub", "-d", "iommu=pt")
    regen = ("update-initramfs", "-u")
    plan = Plan([
        FileEdit(("vfio.ids_configured",), "ids", NEXT_BOOT, path="/etc/modprobe.d/vfio.conf", old=None, new=VFIO),
        Command(("cmdline.iommu_pt",), "pt", NEXT_BOOT, boot_path=True, argv=add, undo_argv=rm),
        Command(("vfio.early_load",), "initramfs", NEXT_BOOT, boot_path=True, argv=regen, undo_argv=regen),
    ])
    failing = {regen: CommandResult(regen, 1, "", "mkinitramfs: failed"), rm: CommandResult(rm, 1, "", "kernelstub: locked")}
    sysm = RootedSystem(root, responses=failing)
    j = Journal(sysm)
    with pytest.raises(ApplyError, match="mkinitramfs: failed"):
        apply(plan, sysm, j)
    assert sysm.ran == [add, regen, rm, regen]
    assert j.rollback_log[0] == "FAILED to undo: run kernelstub -a iommu=pt: `kernelstub -d iommu=pt` exited 1: kernelstub: locked"
    assert j.rollback_log[1] == "undone: removed /etc/modprobe.d/vfio.conf"
    assert j.rollback_log[2].startswith("nothing to undo: update-initramfs -u had failed during the fix (exit 1)")
    assert Journal.load(sysm, j.fix_id).doc["state"] == "rollback incomplete"
    said = _rolled_back(j)
    assert "NOT every change was rolled back" in said and f"gpudoctor undo {j.fix_id}" in said
    assert "every change was rolled back" not in said.replace("NOT every change was rolled back", "")
    good = RootedSystem(root)
    _, log = undo(good)
    assert log == ["undone: ran kernelstub -d iommu=pt (the inverse of kernelstub -a iommu=pt)"] and good.ran == [rm]
    assert Journal.load(good, j.fix_id).doc["state"] == "undone"
    assert tree_digest(root) == before
