"""The reboot proof of test_reboot.py on UEFI: OVMF -> systemd-boot -> initramfs-tools -> systemd.

The cached UEFI image (lab/disk.py, ``build --firmware uefi``): GPT, an EFI System Partition at
/boot/efi, systemd-boot installed with ``bootctl install --no-variables``, the loader entry
written by ``kernel-install`` from /etc/kernel/cmdline. Same machine and card as the BIOS lab
(an Intel IOMMU, a three-function card at 01:00.0-2), booted with OVMF through pflash:

  prep    (cached) intel_iommu=off appended to /etc/kernel/cmdline, kernel-install add
  boot 1  observe (check --json) -> fix --all --apply --yes --json -> reboot
  boot 2  observe: check passes, /proc/cmdline lacks intel_iommu=off, the card is on vfio-pci
          from the initramfs
  with GPUDOCTOR_LAB_UEFI_UNDO=1, boot 2 goes on: undo -> reboot
  boot 3  observe: /etc/kernel/cmdline and the loader entry are byte-identical to boot 1

The undo cycle is opt-in because it costs as much as the fix (update-initramfs and
kernel-install again, then a boot): the BIOS lab proves undo on every run, this file keeps the
UEFI scenario to one fix cycle. Without it, test_sdboot_undo_restores_first_boot says it was not
run (a skip with that reason, in pytest -ra's summary).

Without the UEFI image the tests fail and say how to build it (sudo bash lab/setup_disk.sh, or
python -m lab.disk build --firmware uefi).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lab.disk import Machine, Step, disk_cache, gpudoctor_sh
from lab.errors import LabError
from tests.lab.test_reboot import (
    CHECK,
    FIX_FILES,
    GPU,
    _fail,
    _image,
    _report,
    _say,
    assert_applied_pending,
    assert_card_on_vfio_before_root,
    assert_iommu_off_fails,
    assert_passes_after_reboot,
    assert_undone,
)

pytestmark = [pytest.mark.reboot, pytest.mark.lab]

SCENARIO = "uefi-intel-sdboot-iommu-off"
KERNEL_CMDLINE = "/etc/kernel/cmdline"
UNDO = os.environ.get("GPUDOCTOR_LAB_UEFI_UNDO") == "1"


def _entry_files(meta: dict) -> list[str]:
    """What systemd-boot reads at the next boot: /etc/kernel/cmdline and the loader entry."""
    return [KERNEL_CMDLINE, meta["loader_entry"]]


def _prepared(request) -> tuple[Path, str, dict]:
    """A cached overlay whose /etc/kernel/cmdline ends in intel_iommu=off and whose loader entry
    was rewritten by kernel-install (as the host's owner would), powered off cleanly."""
    img = _image("uefi")
    kver = img.meta["kver"]
    prep_dir = disk_cache() / "prep"
    prep_dir.mkdir(parents=True, exist_ok=True)
    dest = prep_dir / f"{SCENARIO}-{img.key}.qcow2"
    if dest.exists():
        return dest, "qcow2", img.meta
    t0 = time.monotonic()
    with Machine(img.path, name=f"prep-{SCENARIO}", firmware="uefi") as m:
        m.boot([
            Step("cmdline", f"sed -i 's/$/ intel_iommu=off/' {KERNEL_CMDLINE} && cat {KERNEL_CMDLINE}"),
            Step("kernel-install", f"kernel-install add {kver} /boot/vmlinuz-{kver} /boot/initrd.img-{kver}", timeout=300),
            Step("entry", f"grep -q 'intel_iommu=off' {img.meta['loader_entry']}"),
        ], truth=False).check()
        m.save_disk(dest)
    _say(request, f"{SCENARIO}: prepared image cached in {time.monotonic() - t0:.0f}s ({dest})")
    return dest, "qcow2", img.meta


@pytest.fixture(scope="module")
def sdboot_iommu_off(request):
    """intel_iommu=off in /etc/kernel/cmdline -> fix -> reboot (-> undo -> reboot)."""
    try:
        disk, fmt, meta = _prepared(request)
        files = FIX_FILES + _entry_files(meta)
        t_all = time.monotonic()
        with Machine(disk, name=SCENARIO, backing_format=fmt, firmware="uefi") as m:
            b1 = m.boot([
                CHECK,
                Step("plan", gpudoctor_sh(f"fix --all --json --gpu {GPU}"), timeout=300, stop_on_error=False),
                Step("fix", gpudoctor_sh(f"fix --all --apply --yes --json --gpu {GPU}"), timeout=900, stop_on_error=False),
            ], then="reboot", files=files)
            undo = [Step("undo", gpudoctor_sh("undo"), timeout=900, stop_on_error=False)] if UNDO else []
            b2 = m.boot([CHECK, *undo], then="reboot" if UNDO else "poweroff", files=files)
            b3 = m.boot([CHECK], files=files) if UNDO else None
        fix_s = b1.step("fix").duration
        # observe (check) -> fix -> reboot -> observe, power-off and power-on included
        cycle = b1.total_s - b1.at("STEP 0 START") + b2.at("STEP 0 END")
        undo_cycle = f"; undo->reboot->observe {b2.total_s - b2.at('STEP 1 START') + b3.at('STEP 0 END'):.0f}s" if b3 else ""
        for b in (b1, b2, b3):
            if b is not None:
                _say(request, f"{SCENARIO}: {b.summary()}")
        _say(request, f"{SCENARIO}: observe->fix({fix_s:.0f}s)->reboot->observe cycle {cycle:.0f}s{undo_cycle}; "
                      f"whole scenario {time.monotonic() - t_all:.0f}s")
    except LabError as e:
        _fail(e)
    return b1, b2, b3, meta


def test_sdboot_first_boot_fails(sdboot_iommu_off):
    b1, _, _, _ = sdboot_iommu_off
    rep = assert_iommu_off_fails(b1)
    # the advice names this host's bootloader: /etc/kernel/cmdline and kernel-install, no GRUB
    steps = [s for r in rep["results"] if r["id"] == "cmdline.iommu_enabled" for s in (r["remedy"] or {}).get("steps", [])]
    assert steps and steps[0] == f"edit {KERNEL_CMDLINE}: remove intel_iommu=off", steps
    assert any("kernel-install add" in s for s in steps) and not any("grub" in s for s in steps), steps


def test_sdboot_fix_edits_kernel_cmdline_and_reports_pending_reboot(sdboot_iommu_off):
    b1, _, _, _ = sdboot_iommu_off
    plan = _report(b1.step("plan"))
    files = [a["describe"] for a in plan["actions"] if a["kind"] == "file"]
    argvs = [a["describe"] for a in plan["actions"] if a["kind"] == "command"]
    assert f"edit {KERNEL_CMDLINE}" in files, [a["describe"] for a in plan["actions"]]
    assert not [f for f in files if "grub" in f], files
    assert any("kernel-install" in a for a in argvs), argvs
    assert_applied_pending(b1.step("fix"))


def test_sdboot_after_reboot_check_passes(sdboot_iommu_off):
    b1, b2, _, meta = sdboot_iommu_off
    assert b2.truth["files"][KERNEL_CMDLINE] != b1.truth["files"][KERNEL_CMDLINE]
    assert b2.truth["files"][meta["loader_entry"]] != b1.truth["files"][meta["loader_entry"]]
    assert_passes_after_reboot(b2, also=("boot.config_in_effect",))


def test_sdboot_after_reboot_card_on_vfio_from_initramfs(sdboot_iommu_off):
    assert_card_on_vfio_before_root(sdboot_iommu_off[1])


def test_sdboot_undo_restores_first_boot(sdboot_iommu_off):
    b1, b2, b3, meta = sdboot_iommu_off
    if b3 is None:
        pytest.skip("the undo -> reboot cycle was not run (it doubles the scenario's time): GPUDOCTOR_LAB_UEFI_UNDO=1")
    assert_undone(b1, b2, b3, FIX_FILES + _entry_files(meta), skip_words=1)


def test_sdboot_every_boot_clean(sdboot_iommu_off):
    for b in [b for b in sdboot_iommu_off[:3] if b is not None]:
        assert b.truth.get("failed_units", "") == "", f"boot {b.index}: failed units: {b.truth['failed_units']}"
