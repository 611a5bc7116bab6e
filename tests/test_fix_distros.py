"""gpudoctor fix on copies of the distro-* hosts (never on the machine running the tests).

One recorded host per bootloader / initramfs family (fixtures/build_distro.py): the dry-run
plan equals fixtures/<name>/golden/plan.txt (regenerate with GPUDOCTOR_UPDATE_GOLDEN=1 after
reviewing the diff), the essentials of each family are asserted one by one, and each plan is
applied to a copy with RootedSystem, checked, undone, and every byte must be back.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from doctor.facts import HostFacts
from doctor.fixer import build_plan, render_plan_text
from doctor.journal import Journal, apply_plan, undo
from doctor.plan import Bind, Command, FileEdit, Plan
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost
from doctor.system import RootedSystem, run_sh_print_var
from tests.test_fix import tree_digest

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(REPO, "fixtures")
DISTROS = ["distro-debian-grub", "distro-fedora-bls", "distro-arch-grub", "distro-systemd-boot", "distro-popos-kernelstub"]
TRAILER = "\nDry run: nothing was changed. Apply with: gpudoctor fix --all --apply --yes\n"



def copy_fixture(tmp_path, name: str) -> str:  # type: ignore[no-untyped-def]
    dst = str(tmp_path / name)
    shutil.copytree(os.path.join(FIX, name), dst, symlinks=True)
    return dst


def plan_for(snap: str) -> Plan:
    """The plan `gpudoctor fix --all --snapshot` makes."""
    h = SnapshotHost(snap)
    rep = run_checks(HostFacts(h), h.source_info())
    return build_plan(rep, h, advice=True)  # iommu=pt exercises every bootloader family


def cli_plan(snap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doctor.cli", "fix", "--all", "--advice", "--snapshot", snap], capture_output=True,
                          text=True, check=False, cwd=REPO, stdin=subprocess.DEVNULL, timeout=120)


def golden_path(name: str) -> str:
    return os.path.join(FIX, name, "golden", "plan.txt")


def check_golden(name: str, got: str) -> None:
    path = golden_path(name)
    if os.environ.get("GPUDOCTOR_UPDATE_GOLDEN") == "1":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(got)
    with open(path, encoding="utf-8") as f:
        want = f.read()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), got.splitlines(keepends=True),
                                            f"golden/{name}/plan.txt", "now"))
        pytest.fail(f"the {name} plan changed:\n{diff}\nreview it, then regenerate with: "
                    f"GPUDOCTOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_fix_distros.py -k golden")


@pytest.mark.parametrize("name", DISTROS)
def test_golden_dry_run_plan(name: str) -> None:
    p = cli_plan(os.path.join(FIX, name))
    assert p.returncode == 0, p.stderr
    check_golden(name, p.stdout)
    # the CLI prints exactly the plan the fixer makes, then the dry-run line
    assert p.stdout == render_plan_text(plan_for(os.path.join(FIX, name))) + "\n" + TRAILER


def _argvs(plan: Plan) -> list[tuple[str, ...]]:
    return [a.argv for a in plan.actions if isinstance(a, Command)]


def _edit(plan: Plan, path: str) -> FileEdit:
    eds = [a for a in plan.actions if isinstance(a, FileEdit) and a.path == path]
    assert len(eds) == 1, [getattr(a, "path", None) for a in plan.actions]
    return eds[0]


def _everything(plan: Plan) -> str:
    return json.dumps(plan.to_dict())


# --- the essentials of each family -------------------------------------------


def test_fedora_uses_grubby_and_dracut_and_never_amd_iommu_on() -> None:
    plan = plan_for(os.path.join(FIX, "distro-fedora-bls"))
    argvs = _argvs(plan)
    assert ("grubby", "--update-kernel=ALL", "--args=iommu=pt") in argvs
    assert ("dracut", "-f", "--kver", "6.5.6-300.fc39.x86_64") in argvs
    assert not any(a[0] in ("update-grub", "grub-mkconfig", "grub2-mkconfig", "update-initramfs") for a in argvs)
    assert "amd_iommu=on" not in _everything(plan) and "intel_iommu" not in _everything(plan)
    assert not any(isinstance(a, FileEdit) and a.path.startswith("/etc/default/grub") for a in plan.actions)
    dr = _edit(plan, "/etc/dracut.conf.d/10-gpudoctor-vfio.conf")
    assert dr.old is None and b'force_drivers+=" vfio vfio_iommu_type1 vfio_pci "' in dr.new
    assert [b.address for b in plan.actions if isinstance(b, Bind)] == ["0000:05:00.1"]


def test_arch_uses_grub_mkconfig_and_mkinitcpio_keeping_the_other_modules() -> None:
    plan = plan_for(os.path.join(FIX, "distro-arch-grub"))
    argvs = _argvs(plan)
    assert ("grub-mkconfig", "-o", "/boot/grub/grub.cfg") in argvs and ("mkinitcpio", "-P") in argvs
    assert not any(a[0] in ("update-grub", "grub2-mkconfig", "grubby", "dracut", "update-initramfs") for a in argvs)
    mk = _edit(plan, "/etc/mkinitcpio.conf")
    old_lines = (mk.old or b"").decode().splitlines()
    new_lines = mk.new.decode().splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert changed == [("MODULES=(i915)", "MODULES=(vfio vfio_iommu_type1 vfio_pci i915)")]
    grub = _edit(plan, "/etc/default/grub")
    assert '+GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"' in grub.preview()
    assert "amd_iommu" not in _everything(plan)


def test_systemd_boot_edits_kernel_cmdline_and_runs_kernel_install() -> None:
    plan = plan_for(os.path.join(FIX, "distro-systemd-boot"))
    kc = _edit(plan, "/etc/kernel/cmdline")
    assert kc.new.decode().split() == (kc.old or b"").decode().split() + ["iommu=pt"]
    ki = [a for a in _argvs(plan) if a[0] == "kernel-install"]
    assert ki == [("kernel-install", "add", "6.1.0-56-amd64", "/boot/vmlinuz-6.1.0-56-amd64")]
    assert not any(a[0] in ("update-grub", "grub-mkconfig", "grubby", "kernelstub", "bootctl") for a in _argvs(plan))
    assert ("update-initramfs", "-u", "-k", "6.1.0-56-amd64") in _argvs(plan)
    assert "amd_iommu=on" not in _everything(plan)


def test_popos_uses_kernelstub() -> None:
    plan = plan_for(os.path.join(FIX, "distro-popos-kernelstub"))
    ks = [a for a in plan.actions if isinstance(a, Command) and a.argv[0] == "kernelstub"]
    assert [(a.argv, a.undo_argv) for a in ks] == [(("kernelstub", "-a", "iommu=pt"), ("kernelstub", "-d", "iommu=pt"))]
    assert not any(isinstance(a, FileEdit) and "kernelstub" in a.path for a in plan.actions)
    assert ("update-initramfs", "-u", "-k", "6.6.10-76060610-generic") in _argvs(plan)
    assert "amd_iommu=on" not in _everything(plan)


def test_debian12_plans_no_intel_iommu_on_and_puts_iommu_pt_in_the_last_assignment() -> None:
    plan = plan_for(os.path.join(FIX, "distro-debian-grub"))
    assert "intel_iommu" not in _everything(plan)  # CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y: on by default
    dropin = _edit(plan, "/etc/default/grub.d/10_cloud_disable_net.ifnames.cfg")
    assert '+GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX net.ifnames=0 iommu=pt"' in dropin.preview()
    assert not any(isinstance(a, FileEdit) and a.path == "/etc/default/grub" for a in plan.actions)
    assert dropin.shell_check is not None
    assert dropin.shell_check[0] == ("/etc/default/grub", "/etc/default/grub.d/10_cloud_disable_net.ifnames.cfg")
    assert ("update-grub",) in _argvs(plan) and ("update-initramfs", "-u", "-k", "6.1.0-56-amd64") in _argvs(plan)


# --- apply on a copy, check the files, undo: every byte back -------------------

APPLIED: dict[str, Any] = {
    "distro-debian-grub": {"sh": (("/etc/default/grub", "/etc/default/grub.d/10_cloud_disable_net.ifnames.cfg"),
                                  " net.ifnames=0 iommu=pt"),
                           "ran": [("update-initramfs", "-u", "-k", "6.1.0-56-amd64"), ("update-grub",)]},
    "distro-fedora-bls": {"ran": [("dracut", "-f", "--kver", "6.5.6-300.fc39.x86_64"),
                                  ("grubby", "--update-kernel=ALL", "--args=iommu=pt")]},
    "distro-arch-grub": {"sh": (("/etc/default/grub",), "intel_iommu=on iommu=pt"), "bash_modules": "vfio vfio_iommu_type1 vfio_pci i915",
                         "ran": [("mkinitcpio", "-P"), ("grub-mkconfig", "-o", "/boot/grub/grub.cfg")]},
    "distro-systemd-boot": {"cmdline": "root=UUID={uuid} ro quiet iommu=pt",
                            "ran": [("update-initramfs", "-u", "-k", "6.1.0-56-amd64")]},
    "distro-popos-kernelstub": {"ran": [("update-initramfs", "-u", "-k", "6.6.10-76060610-generic"), ("kernelstub", "-a", "iommu=pt")]},
}


@pytest.mark.parametrize("name", DISTROS)
def test_apply_on_a_copy_then_undo_puts_every_byte_back(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, name)
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    sysm = RootedSystem(root, snapshot=snap)
    plan = plan_for(snap)
    gpu_audio = next(a for a in plan.actions if isinstance(a, Bind)).address
    apply_plan(plan, sysm, Journal(sysm))
    assert tree_digest(root) != before
    want = APPLIED[name]
    for argv in want["ran"]:
        assert argv in sysm.ran, (argv, sysm.ran)
    # the files now say what the plan meant
    vfio = open(os.path.join(root, "etc/modprobe.d/vfio.conf")).read()
    assert "options vfio-pci ids=" in vfio and "softdep snd_hda_intel pre: vfio-pci" in vfio
    assert "vfio_pci" in open(os.path.join(root, "etc/modules-load.d/vfio-pci.conf")).read().split()
    if "sh" in want:
        files, value = want["sh"]
        assert run_sh_print_var([os.path.join(root, f.lstrip("/")) for f in files], "GRUB_CMDLINE_LINUX") == value
    if "bash_modules" in want:
        conf = os.path.join(root, "etc/mkinitcpio.conf")
        p = subprocess.run(["bash", "-c", f'source "{conf}" && echo "${{MODULES[*]}}|${{HOOKS[*]}}"'],
                           capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
        modules, hooks = p.stdout.strip().split("|")
        assert modules == want["bash_modules"] and "modconf" in hooks.split()
    if "cmdline" in want:
        got = open(os.path.join(root, "etc/kernel/cmdline")).read()
        assert got.split()[1:] == want["cmdline"].split()[1:] and got.endswith("\n")
    assert (f"/sys/bus/pci/devices/{gpu_audio}/driver_override", "vfio-pci") in sysm.sysfs
    # undo: every byte back, and the audio function back on its driver
    undo(sysm)
    assert tree_digest(root) == before
    assert ("/sys/bus/pci/drivers/snd_hda_intel/bind", gpu_audio) in sysm.sysfs


class _Watching(RootedSystem):
    """Records, for each command, the files the regeneration reads at that moment."""

    watch: tuple[str, ...] = ()
    seen: list[tuple[tuple[str, ...], dict[str, bytes | None]]]

    def run(self, argv, timeout: float = 600):  # type: ignore[no-untyped-def, override]
        self.seen.append((tuple(argv), {p: self.file_state(p).data for p in self.watch}))
        return super().run(argv, timeout)


@pytest.mark.parametrize("name", ["distro-arch-grub", "distro-debian-grub", "distro-fedora-bls", "distro-popos-kernelstub"])
def test_undo_regenerates_from_the_restored_files(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    """When undo re-runs update-grub / mkinitcpio -P / dracut -f / update-initramfs (a command whose undo is
    itself), the files they read are the old ones again: they regenerate from the restored configuration."""
    snap = copy_fixture(tmp_path, name)
    root = os.path.join(snap, "root")
    plan = plan_for(snap)
    edits = {a.path: a.old for a in plan.actions if isinstance(a, FileEdit)}
    sysm = _Watching(root, snapshot=snap)
    sysm.watch = tuple(edits)
    sysm.seen = []
    apply_plan(plan, sysm, Journal(sysm))
    n = len(sysm.seen)
    undo(sysm)
    regenerations = {a.argv for a in plan.actions if isinstance(a, Command) and a.undo_argv == a.argv}
    regen = [(argv, files) for argv, files in sysm.seen[n:] if argv in regenerations]
    assert {argv for argv, _ in regen} == regenerations, sysm.seen[n:]
    for argv, files in regen:
        stale = [p for p, data in files.items() if data != edits[p]]
        assert not stale, f"undo ran `{' '.join(argv)}` while {stale} still held the fix's edit"


def test_distro_fixtures_match_build_script(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The committed distro-* folders are what fixtures/build_distro.py writes (golden/ and PROVENANCE.md aside)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpudoctor_fixtures_build_distro", os.path.join(FIX, "build_distro.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)

    def files(top: str) -> dict[str, bytes | str]:
        out: dict[str, bytes | str] = {}
        for d, _, fs in os.walk(top):
            for f in fs:
                p = os.path.join(d, f)
                rel = os.path.relpath(p, top)
                if rel.startswith("golden") or rel == "PROVENANCE.md":
                    continue
                out[rel] = ("-> " + os.readlink(p)) if os.path.islink(p) else open(p, "rb").read()
        return out

    for name in DISTROS:
        built, committed = files(mod.build(str(tmp_path), name)), files(os.path.join(FIX, name))
        assert sorted(built) == sorted(committed), f"{name}: file lists differ; rerun fixtures/build_distro.py"
        stale = [k for k in built if built[k] != committed[k]]
        assert not stale, f"{name}: stale files {stale[:5]}; rerun fixtures/build_distro.py"


def test_bls_host_after_grubby_reads_the_entries_not_etc_default_grub(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On a BLS host the next boot's arguments are each entry's `options`: after the planned
    grubby command, iommu=pt is pending a reboot and nothing says 'not regenerated'."""
    import glob as _glob
    import shutil as _shutil

    from doctor.facts import HostFacts as _HF
    from doctor.runner import run_checks as _run
    from doctor.snapshot import SnapshotHost as _SH

    snap = tmp_path / "fedora"
    _shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "fixtures", "distro-fedora-bls"), snap, symlinks=True)
    for p in _glob.glob(str(snap / "root/boot/loader/entries/*.conf")):
        text = open(p).read()
        open(p, "w").write("".join(ln.rstrip("\n") + " iommu=pt\n" if ln.startswith("options") else ln
                                   for ln in text.splitlines(keepends=True)))
    h = _SH(str(snap))
    by = {sr.result.check_id: sr.result for sr in _run(_HF(h), h.source_info()).results}
    assert by["cmdline.iommu_passthrough"].status.value == "warn"
    assert "reboot pending" in by["cmdline.iommu_passthrough"].summary
    assert by["boot.config_in_effect"].status.value == "pass", by["boot.config_in_effect"].summary
