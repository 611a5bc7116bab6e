"""Issue 13 point 5: one boot strategy per host; the steps a check prints and the argv a fix runs
are the same commands, on every distribution fixture."""

from __future__ import annotations

import os
import shlex

import pytest

from doctor.bootstrategy import EARLY_MODULES, boot_strategy
from doctor.fixer import build_plan
from doctor.plan import Command, FileEdit
from doctor.runner import run_checks
from doctor.snapshot import open_snapshot

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
HOSTS = sorted(d for d in os.listdir(FIX) if d.startswith(("distro-", "seed-")) and os.path.exists(os.path.join(FIX, d, "manifest.json")))
# the tools a boot strategy runs: regenerating the bootloader's configuration, rebuilding the initramfs
TOOLS = ("update-grub", "grub-mkconfig", "grub2-mkconfig", "kernel-install", "bootctl", "update-initramfs", "dracut", "mkinitcpio")


def _run(name: str):  # type: ignore[no-untyped-def]
    from doctor.facts import HostFacts

    host = open_snapshot(os.path.join(FIX, name))
    facts = HostFacts(host)
    rep = run_checks(facts, host.source_info())
    return host, facts, rep


@pytest.mark.parametrize("name", HOSTS)
def test_printed_steps_are_the_argv_the_fix_runs(name: str) -> None:
    host, facts, rep = _run(name)
    plan = build_plan(rep, host, advice=True)
    ran = {"sudo " + shlex.join(a.argv) for a in plan.actions if isinstance(a, Command) and a.argv[0] in TOOLS}
    printed = {st for sr in rep.results if sr.result.remedy for st in sr.result.remedy.steps
               if st.startswith("sudo ") and st.split()[1] in TOOLS}
    # every command the fix runs is one a check printed, and every such printed command is run
    # by the fix where the fix acts on that check
    assert ran <= printed, (name, ran - printed)
    answered = {c for a in plan.actions for c in a.checks}
    printed_for_fixed = {st for sr in rep.results if sr.result.remedy and sr.result.check_id in answered
                         for st in sr.result.remedy.steps if st.startswith("sudo ") and st.split()[1] in TOOLS}
    assert printed_for_fixed <= ran, (name, printed_for_fixed - ran)


@pytest.mark.parametrize("name", HOSTS)
def test_early_load_prints_the_modules_and_files_the_fix_writes(name: str) -> None:
    host, facts, rep = _run(name)
    strat = boot_strategy(facts)
    plan = build_plan(rep, host, advice=True)
    steps = " ".join(strat.early_load_steps())
    for a in plan.actions:
        if isinstance(a, FileEdit) and a.path in ("/etc/initramfs-tools/modules", "/etc/dracut.conf.d/10-gpudoctor-vfio.conf",
                                                  "/etc/modules-load.d/vfio-pci.conf", "/etc/mkinitcpio.conf"):
            assert a.path in steps, (name, a.path, steps)
            if a.path != "/etc/modules-load.d/vfio-pci.conf":
                assert all(m in a.new.decode() for m in EARLY_MODULES)
                assert " ".join(EARLY_MODULES) in steps


def test_the_ids_step_keeps_the_softdeps_another_step_appends(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """seed-before printed a truncating `tee` for the ids line that erased the softdeps vfio.early_load appends."""
    import subprocess

    host, facts, rep = _run("seed-before")
    ids = next(sr.result for sr in rep.results if sr.result.check_id == "vfio.ids_configured")
    early = next(sr.result for sr in rep.results if sr.result.check_id == "vfio.early_load")
    conf = tmp_path / "vfio.conf"
    cmds = [st for st in early.remedy.steps + ids.remedy.steps if "/etc/modprobe.d/vfio.conf" in st]  # type: ignore[union-attr]
    for st in cmds:  # early_load's softdeps first, then the ids line: nothing may be lost
        sh = st.replace("sudo ", "").replace("/etc/modprobe.d/vfio.conf", str(conf))
        subprocess.run(["sh", "-c", sh], check=True, capture_output=True)
    text = conf.read_text()
    assert "softdep nouveau pre: vfio-pci" in text and text.count("options vfio-pci ids=") == 1, text
