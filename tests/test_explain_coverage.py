"""`gpudoctor explain` answers every error text gpudoctor itself knows: each error rule of the pasted reader
(doctor/pasted/observe.py), each error kind of doctor/explain.py, each error message a check quotes in its
summary, messages or docstring, and each error line of the pasted corpus. A real answer is an entry with its
causes in order and, for at least one cause, the registered checks that settle it (not the 'does not recognise'
fallback)."""

from __future__ import annotations

import glob
import os
import re

import pytest

from doctor.explain import KB, explain_json, find_errors
from doctor.facts.logsearch import top_level_alternatives
from doctor.pasted.observe import _RULES, clean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# observe kinds that are proof of a fact, not an error (the IOMMU is active; a framebuffer sits on a BAR)
NOT_ERRORS = {"iommu.proof", "gpu.fb_on_bar"}

# one line per alternative of each error rule, worded as the source prints it (QEMU, libvirt, Linux, Proxmox)
RULE_SAMPLES = {
    "iommu.missing": [
        "qemu-system-x86_64: -device vfio-pci,host=08:00.0: vfio 0000:08:00.0: no iommu_group found: Invalid argument",
        "AMD-Vi: IOMMU not found",
        "[    0.123456] DMAR: No IOMMU detected",
        "error: unsupported configuration: host doesn't support passthrough of host PCI devices",
        "vfio-pci: probe of 0000:01:00.0 failed with error -22",
        "[   10.1] vfio-pci 0001:01:00.0: probe with driver vfio-pci failed with error -22",
    ],
    "vfio.group_not_viable": ["vfio 0000:01:00.0: group 1 is not viable"],
    "iommu.no_interrupt_remapping": [
        "vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param \"allow_unsafe_interrupts\" "
        "to enable VFIO IOMMU support on this platform"],
    "gpu.bar_reserve": ["vfio-pci 0000:01:00.0: BAR 1: can't reserve [mem 0xc0000000-0xcfffffff 64bit pref]"],
    "kvm.disabled_by_bios": [
        "kvm: disabled by bios", "x86/cpu: VMX (outside TXT) disabled by BIOS", "kvm_amd: SVM disabled (by BIOS) in MSR_VM_CR",
        "KVM (vmx) is disabled by your BIOS", "kvm_intel: VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL"],
    "kvm.no_hardware": [
        "kvm: no hardware support", "kvm_intel: VMX not supported by CPU 0", "kvm_amd: SVM not supported by CPU 0",
        "Your CPU does not support KVM extensions"],
    "kvm.unavailable": [
        "Could not access KVM kernel module: No such file or directory", "qemu-system-x86_64: failed to initialize kvm: No such file or directory",
        "KVM virtualisation configured, but not available. Either disable in VM configuration or enable in BIOS.",
        "/dev/kvm does not exist"],
    "gpu.rom_unreadable": ["[  5.1] vfio-pci 0000:01:00.0: Invalid PCI ROM header signature: expecting 0xaa55, got 0x0000",
                           "qemu-system-x86_64: vfio-pci: Cannot read device rom at 0000:00:02.0"],
}

# backticked texts in checks/*.py that are not error messages (commands, arguments, code, lines that prove a fact)
NOT_ERROR_QUOTES = {
    "`Adding to iommu group`", "`DMAR-IR: Enabled IRQ remapping`", "`AMD-Vi: Interrupt remapping enabled`",
    "`BAR 1: assigned to efifb`", "`blacklisting initcall sysfb_init`", "`(pdev->class >> 8) == PCI_CLASS_DISPLAY_VGA`",
    # fragments of messages quoted in full beside them (`BAR 0: can't reserve`, `AMD-Vi: Unknown option - 'on'`,
    # `cat: rom: Input/output error`)
    "`can't reserve`", "`Unknown option - 'on'`", "`Input/output error`",
}
_QUOTE = re.compile(r"`[^`\s][^`\n]{10,}[^`\s]`")
# a quote with an error word is a message; commands and arguments are not
_ERRORISH = re.compile(r"error|fail|cannot|can't|can not|not viable|busy|denied|disabled|unable|refused|rejected|not found"
                       r"|unknown|no iommu|doesn't support|not permitted|invalid|not supported", re.I)
_PLACEHOLDERS = ((r"\{gpu\.address\}|ADDR|\.\.\.(?=:)", "0000:01:00.0"), (r"\{gpu\.iommu_group\}|\bN\b", "1"),
                 (r"\[mem \.\.\.\]", "[mem 0xc0000000-0xcfffffff 64bit pref]"), (r"Failed to mmap \.\.\. BAR", "Failed to mmap 0000:01:00.0 BAR 1"),
                 (r"\bdevices/\.\.\.", "devices/0000:01:00.0/config"), (r"Device \.\.\.", "Device 0000:01:00.0"))


def _instantiate(q: str) -> str:
    s = q.strip("`")
    for rx, val in _PLACEHOLDERS:
        s = re.sub(rx, val, s)
    return s


def quoted_errors() -> list[tuple[str, str]]:
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "checks", "*.py"))):
        for q in dict.fromkeys(_QUOTE.findall(open(path, encoding="utf-8").read())):
            if q in NOT_ERROR_QUOTES or not _ERRORISH.search(q) or "=" in q or q.startswith(("`gpudoctor", "`-device")):
                continue
            out.append((os.path.basename(path), _instantiate(q)))
    return out


def corpus_error_lines() -> list[tuple[str, str]]:
    """Every line of a fixtures/pasted input that an error rule of the pasted reader matches."""
    out: list[tuple[str, str]] = []
    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "pasted", "*", "input", "*"))):
        for n, raw in enumerate(open(path, encoding="utf-8", errors="replace").read().split("\n"), 1):
            msg = clean(raw)
            if any(rx.search(msg) for kind, rx in _RULES if kind not in NOT_ERRORS):
                out.append((f"{os.path.relpath(path, ROOT)}:{n}", msg))
    return out


def assert_real_entry(text: str) -> list[str]:
    doc = explain_json(text)
    assert doc["recognised"], f"explain does not recognise {text!r}"
    errors = doc["errors"]
    assert isinstance(errors, list) and errors
    for e in errors:
        assert e["causes"] and e["commands"], e["id"]
        if e["id"] != "iommu.rmrr":
            assert any(c["checks"] for c in e["causes"]), f"{e['id']}: no cause names a registered check"
    return [e["id"] for e in errors]


def test_every_error_rule_alternative_has_a_sample_that_matches_it() -> None:
    for kind, rx in _RULES:
        if kind in NOT_ERRORS:
            continue
        samples = RULE_SAMPLES[kind]
        for s in samples:
            assert rx.search(s), (kind, s)
        for alt in top_level_alternatives(rx.pattern):
            one = re.compile(alt, re.I)
            assert any(one.search(s) for s in samples), f"{kind}: no sample for the alternative {alt!r}"
    assert set(RULE_SAMPLES) == {k for k, _ in _RULES if k not in NOT_ERRORS}


@pytest.mark.parametrize("kind, text", [(k, t) for k, ts in RULE_SAMPLES.items() for t in ts])
def test_explain_answers_every_error_the_pasted_reader_recognises(kind: str, text: str) -> None:
    ids = assert_real_entry(text)
    if kind in {e.id for e in KB}:
        assert kind in ids, (kind, ids)


@pytest.mark.parametrize("error_id", [e.id for e in KB])
def test_every_explain_kind_has_causes_in_order_and_checks_that_settle_them(error_id: str) -> None:
    e = next(k for k in KB if k.id == error_id)
    assert len(e.causes) >= 1 and e.commands
    assert len({c.text for c in e.causes}) == len(e.causes)  # distinct causes, the list's order is the ranking
    if error_id != "iommu.rmrr":  # a platform RMRR shows only in the kernel log: no check reads it (its command does)
        assert any(c.checks for c in e.causes)


def test_every_error_quoted_by_a_check_is_explained() -> None:
    quotes = quoted_errors()
    # the collection itself must find the quotes the checks are known to carry
    texts = [t for _, t in quotes]
    for must in ("vfio 0000:01:00.0: group 1 is not viable", "Key was rejected by service", "Unknown PCI header type '127'",
                 "vfio-pci: Cannot read device rom at 0000:01:00.0", "Failed to set iommu for container: Operation not permitted"):
        assert must in texts, (must, texts)
    missing = []
    for where, text in quotes:
        if not find_errors(text):
            missing.append(f"{where}: {text}")
    assert not missing, missing
    for _, text in quotes:
        assert_real_entry(text)


def test_every_error_line_of_the_pasted_corpus_is_explained() -> None:
    lines = corpus_error_lines()
    assert len(lines) >= 30, len(lines)
    missing = [f"{where}: {text[:120]}" for where, text in lines if not find_errors(text)]
    assert not missing, missing


@pytest.mark.parametrize("text, first_id, first_check", [
    ("qemu-system-x86_64: vfio_region_write(0000:01:00.0:region1+0x1234, 0x0,8) failed: Device or resource busy",
     "vfio.bar_reserve", "gpu.framebuffer_free"),
    ("vfio_bar_write(0000:01:00.0:BAR1+0x0, 0x0,4) failed: Device or resource busy", "vfio.bar_reserve", "gpu.framebuffer_free"),
    ("qemu-system-x86_64: vfio-pci: Cannot read device rom at 0000:00:02.0", "gpu.rom_unreadable", "gpu.rom_readable"),
    ("vfio 0000:00:02.0: failed to open /dev/vfio/1: No such file or directory", "vfio.no_group_node", "vfio.group_viable"),
    ("vfio 0000:02:00.1: group 3 used in multiple address spaces", "vfio.multiple_address_spaces", "gpu.group_isolated"),
    ("vfio_iommu_type1_attach_group: No interrupt remapping support.", "iommu.no_interrupt_remapping", "iommu.interrupt_remapping"),
    ("qemu: vfio 0000:01:00.0: failed to setup container for group 1: Failed to set iommu for container: Operation not permitted",
     "vfio.container", "iommu.active"),
    ("Failed to set iommu for container: Operation not permitted", "iommu.no_interrupt_remapping", "iommu.interrupt_remapping"),
    ("error: Failed to start domain 'win10'\nerror: Device 0000:0a:00.0 not found: could not access "
     "/sys/bus/pci/devices/0000:0a:00.0/config: No such file or directory", "vfio.no_such_device", "config.no_drift"),
    ("cat: /sys/bus/pci/devices/0000:01:00.0/rom: Input/output error", "gpu.rom_unreadable", "gpu.rom_readable"),
    ("modprobe: ERROR: could not insert 'vendor_reset': Key was rejected by service", "boot.unsigned_module", "boot.secure_boot_modules"),
])
def test_the_issue_s_texts_get_their_entry_with_the_first_cause_first(text: str, first_id: str, first_check: str) -> None:
    doc = explain_json(text)
    errors = doc["errors"]
    assert isinstance(errors, list) and errors and errors[0]["id"] == first_id, errors
    assert first_check in errors[0]["causes"][0]["checks"]
    assert "vfio.device_busy" not in [e["id"] for e in errors]
    if first_id == "vfio.container":  # the EPERM of vfio_iommu_type1 is the missing interrupt remapping: both entries
        assert "iommu.no_interrupt_remapping" in [e["id"] for e in errors]
