"""Fixes that need a reboot, proven across real reboots of a real Debian 12 disk image.

Each scenario boots the cached BIOS/GRUB image (lab/disk.py) in QEMU (TCG), with an Intel IOMMU
and a three-function card at 01:00.0-2, and runs gpudoctor from this checkout inside it:

  boot 1  observe (check --json) -> fix --all --apply --yes --json -> reboot
  boot 2  observe: check passes, the card is on vfio-pci from the initramfs -> undo -> reboot
  boot 3  observe: the first boot's command line, drivers and files are back

The Intel host also has a second display with the card's VGA id (1234:1111 at 00:02.0, the
host's own screen): an ids= line would take it too, so fix binds the card by address from an
initramfs-tools init-top script, and the host keeps its display. The AMD host's first fix is
cut short by killing QEMU during update-initramfs; a second fix completes it.

Every boot is a real power cycle through SeaBIOS, GRUB and the image's initramfs-tools
initramfs. Assertions are made on gpudoctor's JSON and on ground truth the lab's runner reads in
the guest itself (/proc/cmdline, driver links, IOMMU groups, the kernel log, file hashes).

Nothing here skips: when the image is not built (or cannot be), the tests fail and say how to
build it (sudo bash lab/setup_disk.sh).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.disk import (  # noqa: E402
    AMD_PLATFORM,
    DISK_CARD,
    DISK_CARD_DEVICES,
    DISK_CARD_FUNCTIONS,
    FIX_FILES,
    Machine,
    Step,
    build_image,
    disk_cache,
    gpudoctor_sh,
    load_image,
    signal_when_running,
    vfio_before_root,
)
from lab.errors import LabError, LabSetupError  # noqa: E402

# `lab` too: the reboot scenarios are lab tests, so `pytest -m "not lab"` (the quick suite) never
# collects them into a run that would build or boot the disk image.
pytestmark = [pytest.mark.reboot, pytest.mark.lab]

GPU = DISK_CARD
CHECK = Step("check", gpudoctor_sh(f"check --json --gpu {GPU} --no-redact"), timeout=300, stop_on_error=False)
# What "check passes" means here. cpu.virtualization and kvm.available cannot pass under TCG with
# an Intel CPU (no VMX, no /dev/kvm), so they are not part of the verdict; no other check may fail.
UNPASSABLE_UNDER_TCG = ("cpu.virtualization", "kvm.available")
MUST_PASS_AFTER_FIX = [
    "cmdline.iommu_enabled",
    "iommu.active",
    "iommu.groups_present",
    "vfio.ids_configured",
    "vfio.early_load",
    "vfio.group_viable",
]
# The host's own display, with the card's VGA id (an identical device that stays with the host).
TWIN = "0000:00:02.0"
TWIN_DISPLAY = ["-device", "VGA,bus=pcie.0,addr=02.0"]
OVERRIDE_SCRIPT = "/etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override"
_cycle_log: list[str] = []


def _say(request, msg: str) -> None:
    _cycle_log.append(msg)
    pm = request.config.pluginmanager
    tr, capman = pm.getplugin("terminalreporter"), pm.getplugin("capturemanager")
    if tr is None:
        print(f"[reboot] {msg}", file=sys.stderr)
        return
    if capman is not None:  # fixtures run under output capture: print past it, now
        with capman.global_and_fixture_disabled():
            tr.write_line(f"[reboot] {msg}")
    else:
        tr.write_line(f"[reboot] {msg}")


def _fail(e: Exception) -> None:
    hint = "" if "setup_disk.sh" in str(e) else "\n(build the image with: sudo bash lab/setup_disk.sh)"
    pytest.fail(f"{type(e).__name__}: {e}{hint}", pytrace=False)


def _image(firmware: str = "bios"):
    """The cached image. Missing: fail and say how to build it, or build it here when
    GPUDOCTOR_LAB_BUILD=1 (needs root and Debian's archive; a few minutes)."""
    try:
        return load_image(firmware=firmware)
    except LabSetupError as e:
        if os.environ.get("GPUDOCTOR_LAB_BUILD") != "1":
            _fail(e)
    try:
        return build_image(firmware=firmware)
    except LabError as e:
        _fail(e)


def _prepared(request, name: str, grub_cmdline: str, platform: list[str] | None = None) -> tuple[Path, str]:
    """A cached overlay whose GRUB_CMDLINE_LINUX is *grub_cmdline*, grub.cfg regenerated, and
    powered off cleanly: the scenario's host as its owner left it. Returns (path, format)."""
    img = _image()
    if grub_cmdline == "":
        return img.path, "raw"  # the base image already has an empty GRUB_CMDLINE_LINUX
    prep_dir = disk_cache() / "prep"
    prep_dir.mkdir(parents=True, exist_ok=True)
    dest = prep_dir / f"{name}-{img.key}.qcow2"
    if dest.exists():
        return dest, "qcow2"
    t0 = time.monotonic()
    sed = f"sed -i 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX=\"{grub_cmdline}\"/' /etc/default/grub"
    kw = {"platform": platform} if platform else {}
    with Machine(img.path, name=f"prep-{name}", **kw) as m:
        m.boot([Step("grub-default", sed), Step("update-grub", "update-grub", timeout=300)], truth=False).check()
        m.save_disk(dest)
    _say(request, f"{name}: prepared image cached in {time.monotonic() - t0:.0f}s ({dest})")
    return dest, "qcow2"


def _report(step) -> dict:
    try:
        doc = json.loads(step.stdout)
    except ValueError:
        pytest.fail(f"gpudoctor did not print JSON:\n{step}", pytrace=False)
    return doc


def _statuses(report: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in report["results"]:
        key = r["id"] + (f"[{r['subject']}]" if r.get("subject") else "")
        out[key] = r["status"]
        out.setdefault(r["id"], r["status"])
    return out


def _status(report: dict, check_id: str) -> str:
    st = [r["status"] for r in report["results"] if r["id"] == check_id]
    assert st, f"{check_id} not in the report: {[r['id'] for r in report['results']]}"
    # a per-GPU check may appear once per GPU: the worst one counts
    for s in ("error", "fail", "unknown", "warn", "not_applicable", "pass"):
        if s in st:
            return s
    return st[0]


def _card_drivers(truth: dict) -> dict[str, str | None]:
    return {a: truth["drivers"].get(a) for a in DISK_CARD_FUNCTIONS}


def _group_of(truth: dict, addr: str) -> str | None:
    for g, devs in truth["iommu_groups"].items():
        if addr in devs:
            return g
    return None


# --------------------------------------------------------------------------- the IOMMU-off scenario


@pytest.fixture(scope="module")
def iommu_off(request):
    """intel_iommu=off in GRUB_CMDLINE_LINUX -> fix -> reboot -> undo -> reboot."""
    try:
        disk, fmt = _prepared(request, "intel-grub-iommu-off", "intel_iommu=off")
        t_all = time.monotonic()
        with Machine(disk, name="intel-grub-iommu-off", backing_format=fmt, devices=TWIN_DISPLAY + DISK_CARD_DEVICES) as m:
            b1 = m.boot([
                CHECK,
                Step("plan", gpudoctor_sh(f"fix --all --json --gpu {GPU}"), timeout=300, stop_on_error=False),
                Step("fix", gpudoctor_sh(f"fix --all --apply --yes --json --gpu {GPU}"), timeout=900, stop_on_error=False),
            ], then="reboot")
            b2 = m.boot([
                CHECK,
                Step("undo", gpudoctor_sh("undo"), timeout=900, stop_on_error=False),
            ], then="reboot")
            b3 = m.boot([CHECK])
        fix_s = b1.step("fix").duration
        # observe (check) -> fix -> reboot -> observe, from the first check's start to the
        # second check's end, read off the console markers (power-off and power-on included)
        cycle = b1.total_s - b1.at("STEP 0 START") + b2.at("STEP 0 END")
        undo_cycle = b2.total_s - b2.at("STEP 1 START") + b3.at("STEP 0 END")
        _say(request, f"intel-grub-iommu-off: {b1.summary()}")
        _say(request, f"intel-grub-iommu-off: {b2.summary()}")
        _say(request, f"intel-grub-iommu-off: {b3.summary()}")
        _say(request, f"intel-grub-iommu-off: observe->fix({fix_s:.0f}s)->reboot->observe cycle {cycle:.0f}s; "
                      f"undo->reboot->observe {undo_cycle:.0f}s; whole scenario {time.monotonic() - t_all:.0f}s")
    except LabError as e:
        _fail(e)
    return b1, b2, b3


# --------------------------------------------------------------------------- shared assertions
# (test_reboot_uefi.py makes the same ones on systemd-boot)


def assert_iommu_off_fails(b1, arg: str = "intel_iommu=off") -> dict:
    """The first boot: *arg* on /proc/cmdline, no IOMMU groups, and check says so (exit != 0)."""
    assert arg in b1.truth["cmdline"].split(), b1.truth["cmdline"]
    assert b1.truth["iommu_groups"] == {}, b1.truth["iommu_groups"]
    rep = _report(b1.step("check"))
    assert _status(rep, "cmdline.iommu_enabled") == "fail", _statuses(rep)
    assert _status(rep, "iommu.active") == "fail", _statuses(rep)
    assert b1.step("check").rc != 0
    return rep


def assert_applied_pending(fix) -> dict:
    """fix --apply --json: applied; the command line is pending a reboot (never "fixed now");
    nothing but the checks TCG cannot pass is still failing."""
    doc = _report(fix)
    assert doc["applied"] is True, f"fix was not applied:\n{fix}"
    outs = {o["check_id"]: o["outcome"] for o in doc["outcomes"]}
    assert outs.get("cmdline.iommu_enabled") == "pending reboot", (doc["outcomes"], str(fix))
    assert "still failing" not in {o["outcome"] for o in doc["outcomes"] if o["check_id"] not in UNPASSABLE_UNDER_TCG}, doc["outcomes"]
    return doc


def assert_passes_after_reboot(b2, arg: str = "intel_iommu=off", also: tuple[str, ...] = ()) -> None:
    """After the reboot: *arg* gone from /proc/cmdline, IOMMU groups, every must-pass check
    (and *also*) passes, nothing else fails."""
    assert arg not in b2.truth["cmdline"].split(), b2.truth["cmdline"]
    assert b2.truth["iommu_groups"], f"no IOMMU groups after the fix; cmdline {b2.truth['cmdline']}"
    rep = _report(b2.step("check"))
    st = _statuses(rep)
    bad = {c: _status(rep, c) for c in [*MUST_PASS_AFTER_FIX, *also] if _status(rep, c) != "pass"}
    assert not bad, f"after the fix and a reboot these do not pass: {bad}\nall: {st}"
    others = {k: v for k, v in st.items() if v in ("fail", "error") and not k.startswith(UNPASSABLE_UNDER_TCG)}
    assert not others, f"other checks fail after the fix: {others}"


def assert_card_on_vfio_before_root(b2) -> None:
    t = b2.truth
    assert _card_drivers(t) == {a: "vfio-pci" for a in DISK_CARD_FUNCTIONS}, _card_drivers(t)
    groups = {_group_of(t, a) for a in DISK_CARD_FUNCTIONS}
    assert len(groups) == 1 and None not in groups, t["iommu_groups"]
    ok, why = vfio_before_root(t["dmesg"])
    assert ok, f"vfio-pci did not claim the card before the root filesystem was mounted: {why}"


def test_iommu_off_first_boot_fails(iommu_off):
    assert_iommu_off_fails(iommu_off[0])


def test_iommu_off_fix_reports_pending_reboot(iommu_off):
    b1, _, _ = iommu_off
    plan = _report(b1.step("plan"))
    files = [a["describe"] for a in plan["actions"] if a["kind"] == "file"]
    argvs = [a["describe"] for a in plan["actions"] if a["kind"] == "command"]
    assert "edit /etc/default/grub" in files, [a["describe"] for a in plan["actions"]]
    assert any("update-grub" in a for a in argvs), argvs
    # the host's identical display: no ids= line, the card by address from the initramfs
    assert f"create {OVERRIDE_SCRIPT}" in files and "create /etc/modprobe.d/vfio.conf" not in files, files
    assert any(TWIN in n["why"] for n in plan["not_fixable"]), plan["not_fixable"]
    assert_applied_pending(b1.step("fix"))


def test_iommu_off_after_reboot_check_passes(iommu_off):
    # Removing intel_iommu=off is enough on Debian 12's kernel (VT-d on by default); the doctor
    # may or may not add intel_iommu=on. The IOMMU must be on either way.
    assert_passes_after_reboot(iommu_off[1])


def test_iommu_off_after_reboot_card_on_vfio_from_initramfs(iommu_off):
    t = iommu_off[1].truth
    assert_card_on_vfio_before_root(iommu_off[1])
    assert t["drivers"].get(TWIN) == "bochs-drm", f"the host's identical display lost its driver: {t['drivers'].get(TWIN)}"


def assert_undone(b1, b2, b3, files: list[str], skip_words: int = 0) -> None:
    """b2 ran `undo`; b3 (after a reboot) has b1's command line (less its first *skip_words*
    words: systemd-boot's initrd= path), drivers, IOMMU state and files, byte for byte."""
    undo = b2.step("undo")
    assert undo.rc == 0, str(undo)
    c1, c3 = b1.truth["cmdline"], b3.truth["cmdline"]
    assert c3.split()[skip_words:] == c1.split()[skip_words:], (c1, c3)
    assert b3.truth["drivers"] == b1.truth["drivers"], (b1.truth["drivers"], b3.truth["drivers"])
    diff = {p: (b1.truth["files"].get(p), b3.truth["files"].get(p)) for p in files
            if b1.truth["files"].get(p) != b3.truth["files"].get(p)}
    assert not diff, f"not byte-identical after undo + reboot (sha256 first boot, after undo): {diff}"
    assert b3.truth["iommu_groups"] == {}, b3.truth["iommu_groups"]
    rep = _report(b3.step("check"))
    assert _status(rep, "cmdline.iommu_enabled") == "fail", _statuses(rep)


def test_iommu_off_undo_restores_first_boot(iommu_off):
    assert_undone(*iommu_off, FIX_FILES)


def test_iommu_off_every_boot_clean(iommu_off):
    for b in iommu_off:
        assert b.truth.get("failed_units", "") == "", f"boot {b.index}: failed units: {b.truth['failed_units']}"


# --------------------------------------------------------------------------- negative control


@pytest.fixture(scope="module")
def no_iommu_arg(request):
    """No IOMMU argument at all: Debian 12's kernel (CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y)
    turns VT-d on by itself, so the command-line check passes and fix touches no bootloader."""
    try:
        disk, fmt = _prepared(request, "intel-grub-default", "")
        with Machine(disk, name="intel-grub-default", backing_format=fmt) as m:
            b1 = m.boot([
                CHECK,
                Step("plan", gpudoctor_sh(f"fix --all --json --gpu {GPU}"), timeout=300, stop_on_error=False),
            ])
        _say(request, f"intel-grub-default: {b1.summary()}")
    except LabError as e:
        _fail(e)
    return b1


def test_no_iommu_arg_cmdline_passes(no_iommu_arg):
    b = no_iommu_arg
    cmd = b.truth["cmdline"].split()
    assert not [c for c in cmd if c.startswith(("intel_iommu=", "iommu="))], b.truth["cmdline"]
    assert b.truth["iommu_groups"], "Debian 12's kernel should enable VT-d without an argument"
    assert _group_of(b.truth, GPU) is not None
    rep = _report(b.step("check"))
    assert _status(rep, "cmdline.iommu_enabled") == "pass", _statuses(rep)
    assert _status(rep, "iommu.active") == "pass", _statuses(rep)
    plan = _report(b.step("plan"))
    for_cmdline = [a["describe"] for a in plan["actions"] if "cmdline.iommu_enabled" in a["checks"]]
    assert not for_cmdline, f"the plan answers a passing cmdline.iommu_enabled with: {for_cmdline}"


def test_no_iommu_arg_fix_plans_no_bootloader_change(no_iommu_arg):
    plan = _report(no_iommu_arg.step("plan"))
    boot = [(a["describe"], a["checks"]) for a in plan["actions"] if "grub" in a["describe"]]
    assert not boot, f"fix --all changes the bootloader although the IOMMU is on (action, checks): {boot}"


# --------------------------------------------------------------------------- AMD


KILL_AFTER = 12.0  # seconds into mkinitramfs (it takes ~50 s here): mid-build, the old image still in place


@pytest.fixture(scope="module")
def amd_iommu_off(request):
    """AMD CPU and AMD-Vi with amd_iommu=off in GRUB_CMDLINE_LINUX. The first fix loses its power
    (QEMU SIGKILLed) while update-initramfs runs; the host must still boot, and a second fix
    completes it -> reboot -> check passes. (One scenario proves both the AMD cycle and the
    interrupted fix: a separate one would cost the lab three more boots.)"""
    try:
        disk, fmt = _prepared(request, "amd-grub-iommu-off", "amd_iommu=off", AMD_PLATFORM)
        # cache=writeback: the guest's flushes reach the disk image, as on real hardware
        with Machine(disk, name="amd-grub-iommu-off", backing_format=fmt, platform=AMD_PLATFORM, cache="writeback") as m:
            b0 = m.boot([
                CHECK,
                Step("fix", signal_when_running("mkinitramfs", "KILLME mkinitramfs")
                     + gpudoctor_sh(f"fix --all --apply --yes --json --gpu {GPU}"), timeout=900, stop_on_error=False),
            ], then="reboot", kill_on="KILLME mkinitramfs", kill_after=KILL_AFTER)
            b1 = m.boot([
                CHECK,
                Step("journal", gpudoctor_sh("undo --list"), timeout=120, stop_on_error=False),
                Step("fix", gpudoctor_sh(f"fix --all --apply --yes --json --gpu {GPU}"), timeout=900, stop_on_error=False),
            ], then="reboot")
            b2 = m.boot([CHECK, Step("journal", gpudoctor_sh("undo --list"), timeout=120, stop_on_error=False)])
        for b in (b0, b1, b2):
            _say(request, f"amd-grub-iommu-off: {b.summary()}")
        _say(request, f"amd-grub-iommu-off: killed {KILL_AFTER:.0f}s into mkinitramfs; boot after the kill: runner up "
                      f"{b1.ready_s:.0f}s; second fix {b1.step('fix').duration:.0f}s; observe->fix->reboot->observe cycle "
                      f"{b1.total_s - b1.at('STEP 0 START') + b2.at('STEP 0 END'):.0f}s")
    except LabError as e:
        _fail(e)
    return b0, b1, b2


def test_amd_fix_killed_during_update_initramfs_still_boots(amd_iommu_off):
    b0, b1, b2 = amd_iommu_off
    assert b0.killed, f"QEMU was not killed during mkinitramfs: {b0.summary()}\n{b0.console[-3000:]}"
    assert not b0.step("fix").ran, "the fix finished before the kill: nothing was interrupted"
    # it booted again (b1 exists, its runner ran), on the old command line and the old initramfs
    assert "amd_iommu=off" in b1.truth["cmdline"].split(), b1.truth["cmdline"]
    assert b1.truth.get("failed_units", "") == "", b1.truth["failed_units"]
    rep = _report(b1.step("check"))
    # the files were written before the kill, the image was not rebuilt: the doctor must say so
    assert _status(rep, "boot.initramfs_current") == "fail", _statuses(rep)
    assert "applying" in b1.step("journal").stdout, str(b1.step("journal"))
    fix = b1.step("fix")
    assert "cut short" in fix.stderr, str(fix)
    doc = _report(fix)
    argvs = [a["describe"] for a in doc["actions"] if a["kind"] == "command"]
    assert any("update-initramfs" in a for a in argvs), argvs
    journal = b2.step("journal").stdout
    assert "cut short, completed by" in journal and "applying" not in journal, journal


def test_amd_iommu_off_fix_then_reboot(amd_iommu_off):
    _, b1, b2 = amd_iommu_off
    assert_iommu_off_fails(b1, "amd_iommu=off")
    doc = _report(b1.step("fix"))
    assert doc["applied"] is True, str(b1.step("fix"))
    assert "amd_iommu=off" not in b2.truth["cmdline"].split(), b2.truth["cmdline"]
    rep2 = _report(b2.step("check"))
    bad = {c: _status(rep2, c) for c in MUST_PASS_AFTER_FIX if _status(rep2, c) != "pass"}
    assert not bad, f"after the fix and a reboot these do not pass: {bad}\nall: {_statuses(rep2)}"
    assert_card_on_vfio_before_root(b2)
