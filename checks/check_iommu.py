"""The IOMMU at work in the running kernel: active, groups present, interrupt remapping."""

from __future__ import annotations

import re

from checks.common import (
    cmdline_edit_steps,
    iommu_on,
    observed,
    observed_evidence,
    try_fact,
    unknown_verdict,
    vendor_of,
)
from doctor.checkapi import Context, check
from doctor.facts import Facts
from doctor.model import CmdlineEdit, Evidence, Remedy, Status, Verdict, verdict

INTEL_ON = re.compile(r"DMAR: IOMMU enabled|Intel\(R\) Virtualization Technology for Directed I/O")
AMD_ON = re.compile(r"AMD-Vi: (Found IOMMU|Interrupt remapping enabled|IOMMU performance counters|Lazy IO/TLB)|AMD-Vi:.*(Extended features|Found IOMMU)")
IOMMU_OFF = re.compile(r"DMAR: IOMMU disabled|AMD-Vi: AMD IOMMUv2 functionality not available|No IOMMU found|IOMMU not enabled|AMD-Vi: Unknown option|DMAR: Disable")


@check("iommu.active", "IOMMU active in the running kernel")
def iommu_active(ctx: Context) -> Verdict:
    """The kernel log shows DMAR/AMD-Vi coming up and /sys/class/iommu has units;
    if the log is unreadable, sysfs decides and the report says so."""
    facts = ctx.facts
    vendor = vendor_of(facts)
    cls = try_fact(facts.iommu_class)
    groups = try_fact(facts.iommu_groups)
    seen = _seen_iommu(facts, cls, groups)
    if seen is not None:
        return seen
    if cls is None and groups is None:
        facts.iommu_class()  # raises: neither sysfs view is known, so the verdict is unknown
    ev = [Evidence(facts.where("iommu_class", "/sys/class/iommu"), "unknown" if cls is None else " ".join(cls) if cls else "(empty)")]
    if groups is not None:
        ev.append(Evidence(facts.where("iommu_groups", "/sys/kernel/iommu_groups"), f"{len(groups)} groups"))
    msgs: list[str] = []
    log = try_fact(facts.kernel_log)
    on_lines: list[str] = []
    off_lines: list[str] = []
    if log is None:
        from doctor.errors import FactUnknown

        try:
            facts.kernel_log()
        except FactUnknown as e:
            msgs.append(f"kernel log not readable ({e.reason}); decided from sysfs")
        except Exception:  # noqa: BLE001
            msgs.append("kernel log not readable; decided from sysfs")
        ev.append(Evidence("kernel log", "not readable"))
    else:
        on_lines = log.grep(INTEL_ON if vendor == "intel" else AMD_ON if vendor == "amd" else re.compile(f"{INTEL_ON.pattern}|{AMD_ON.pattern}"))
        off_lines = log.grep(IOMMU_OFF)
        for ln in (on_lines[:3] + off_lines[:3]):
            ev.append(Evidence(log.source, ln.strip()))
        if not on_lines and not off_lines:
            ev.append(Evidence(log.source, "no DMAR / AMD-Vi lines (the log may have rotated)"))
    active = bool(cls) or bool(groups)
    if active:
        units = cls or ()
        kind = "VT-d (DMAR)" if any(c.startswith("dmar") for c in units) else "AMD-Vi" if any(c.startswith("ivhd") for c in units) else "IOMMU"
        return verdict(Status.PASS, f"{kind} active: {len(units) if cls is not None else 'unknown number of'} unit(s), "
                       f"{len(groups or {})} groups", ev, msgs)
    if cls is None or groups is None:
        which = "/sys/class/iommu" if cls is None else "/sys/kernel/iommu_groups"
        return verdict(Status.UNKNOWN, f"unknown: {which} is not known and the other view shows no IOMMU", ev,
                       msgs + [f"to settle it, collect: ls {which}"])
    hint = "Check the firmware setting (firmware.iommu_table) and the command line (cmdline.iommu_enabled)."
    return verdict(
        Status.FAIL,
        "no IOMMU active: /sys/class/iommu is empty" + (" although the log mentions it" if on_lines else ""),
        ev,
        msgs,
        Remedy(hint),
    )


def _seen_iommu(facts: Facts, cls: tuple[str, ...] | None, groups: dict[str, tuple[str, ...]] | None) -> Verdict | None:
    """What the errors and lines a source saw (a paste) settle: an error that only a missing IOMMU prints
    fails the check; a line that only an active IOMMU prints passes it where sysfs is not known."""
    missing = observed(facts, "iommu.missing")
    proof = observed(facts, "iommu.proof")
    hint = Remedy("Check the firmware setting (firmware.iommu_table) and the command line (cmdline.iommu_enabled).")
    if missing and (proof or cls or groups):
        return verdict(Status.WARN, "the evidence disagrees: an error says no IOMMU, other lines show it active (taken at different times?)",
                       observed_evidence(missing) + observed_evidence(proof, 2),
                       ["A device outside every IOMMU group (a bus the IOMMU does not cover) also gives this; collect: "
                        "find /sys/kernel/iommu_groups/ -type l"], hint)
    if missing:
        return verdict(Status.FAIL, f"no IOMMU: {missing[0].text[:160]}", observed_evidence(missing),
                       ["The error itself settles it: QEMU / libvirt / the kernel found no IOMMU group for the device."], hint)
    if proof and not cls and not groups and (cls is None or groups is None):
        return verdict(Status.PASS, f"IOMMU active: {proof[0].detail or 'shown by'} {proof[0].text[:160]}", observed_evidence(proof),
                       ["Only an active IOMMU prints this line (or binds a device to vfio-pci); the number of units is not shown."])
    return None


@check("iommu.groups_present", "IOMMU groups exist")
def iommu_groups_present(ctx: Context) -> Verdict:
    """/sys/kernel/iommu_groups holds groups (what vfio hands to QEMU)."""
    groups = try_fact(ctx.facts.iommu_groups)
    if groups is None:
        named = [o for o in observed(ctx.facts, "iommu.proof") if o.group]
        if not named:
            ctx.facts.iommu_groups()  # raises: unknown
        nums = sorted({o.group for o in named if o.group}, key=int)
        return verdict(Status.PASS, f"IOMMU group(s) {', '.join(nums[:8])}{' ...' if len(nums) > 8 else ''} named in the evidence",
                       observed_evidence(named), ["The evidence names these groups; it does not list them all (or their members)."])
    where = ctx.facts.where("iommu_groups", "/sys/kernel/iommu_groups")
    if groups:
        sizes = sorted(len(v) for v in groups.values())
        return verdict(
            Status.PASS,
            f"{len(groups)} IOMMU groups",
            [Evidence(where, f"{len(groups)} groups, largest has {sizes[-1]} device(s)")],
        )
    return verdict(
        Status.FAIL,
        "no IOMMU groups under /sys/kernel/iommu_groups",
        [Evidence(where, "(empty or absent)")],
        ["Without groups vfio cannot hand any device to a VM (QEMU: `No IOMMU detected` / libvirt: `host doesn't support passthrough of host PCI devices`)."],
        Remedy("Enable the IOMMU: see firmware.iommu_table and cmdline.iommu_enabled."),
    )


# ---------------------------------------------------------------------------
# 3. interrupt remapping

# Kernel log lines: drivers/iommu/intel/irq_remapping.c ("DMAR-IR: Enabled IRQ remapping in %s mode"),
# drivers/iommu/amd/init.c ("AMD-Vi: Interrupt remapping enabled").
IR_ON = re.compile(r"DMAR-IR: Enabled IRQ remapping|AMD-Vi: Interrupt remapping enabled")
IR_OFF = re.compile(
    r"DMAR-IR: (?:.*[Dd]isabl|Failed to enable|Not enabling)|Not enabling interrupt remapping|"
    r"IRQ remapping was enabled on .* but we are not in kernel mode|AMD-Vi: Interrupt remapping disabled|"
    r"x2apic: IRQ remapping doesn't support X2APIC mode"
)
# drivers/vfio/vfio_iommu_type1.c, vfio_iommu_type1_attach_group()
VFIO_NO_IR = re.compile(r"No interrupt remapping support")


def _unsafe_configured(facts: Facts) -> list[Evidence]:
    ev = []
    for ln in try_fact(facts.modprobe_config) or ():
        if ln.command == "options" and ln.module == "vfio_iommu_type1" and re.search(r"\ballow_unsafe_interrupts=(1|Y|y)\b", ln.rest):
            ev.append(Evidence(ln.where, ln.text))
    c = try_fact(facts.cmdline)
    if c is not None and c.last("vfio_iommu_type1.allow_unsafe_interrupts") in ("1", "Y", "y"):
        ev.append(Evidence(c.source, "vfio_iommu_type1.allow_unsafe_interrupts=" + str(c.last("vfio_iommu_type1.allow_unsafe_interrupts"))))
    return ev


@check("iommu.interrupt_remapping", "Interrupt remapping is on (vfio accepts the group)")
def iommu_interrupt_remapping(ctx: Context) -> Verdict:
    """`DMAR-IR: Enabled IRQ remapping` / `AMD-Vi: Interrupt remapping enabled`, or IR- interrupt
    chips in /proc/interrupts. Without it, and without allow_unsafe_interrupts, vfio_iommu_type1
    refuses the group and QEMU fails with `Failed to set iommu for container: Operation not permitted`."""
    facts = ctx.facts
    seen_refused = observed(facts, "iommu.no_interrupt_remapping")
    active = iommu_on(facts)
    if active is False and not seen_refused:
        return verdict(Status.NOT_APPLICABLE, "no IOMMU active (see iommu.active): nothing to remap interrupts")
    ev: list[Evidence] = []
    msgs: list[str] = []
    chips = try_fact(facts.interrupt_chips)
    ir_chips = sorted(c for c in chips or () if c.startswith("IR-"))
    plain = sorted(c for c in chips or () if c.startswith(("IO-APIC", "PCI-MSI")))
    if chips is not None:
        ev.append(Evidence("/proc/interrupts", "remapped chips: " + (", ".join(ir_chips[:4]) or "none")
                           + ("; plain: " + ", ".join(plain[:4]) if plain else "")))
    log = try_fact(facts.kernel_log)
    on = off = refused = []
    if log is not None:
        on, off, refused = log.grep(IR_ON), log.grep(IR_OFF), log.grep(VFIO_NO_IR)
        for ln in (on + off + refused)[:5]:
            ev.append(Evidence(log.source, ln.strip()))
    if seen_refused:
        refused = refused or [o.text for o in seen_refused]
        ev += observed_evidence(seen_refused)
    c = try_fact(facts.cmdline)
    cmd_off = c is not None and (c.last("intremap") == "off" or c.has("nointremap"))
    if cmd_off and c is not None:
        ev.append(Evidence(c.source, "intremap=off" if c.last("intremap") == "off" else "nointremap"))
    unsafe_now = try_fact(facts.vfio_allow_unsafe_interrupts)
    unsafe_cfg = _unsafe_configured(facts)
    if unsafe_now is not None:
        ev.append(Evidence("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y" if unsafe_now else "N"))
    ev += unsafe_cfg
    enabled = bool(ir_chips) or bool(on)
    disabled = bool(off) or bool(refused) or cmd_off or (chips is not None and not ir_chips and bool(plain))
    if enabled and not refused:
        if unsafe_now or unsafe_cfg:
            msgs.append("allow_unsafe_interrupts is set but not needed here: remapping is on. Remove it.")
        how = "kernel log" if on else "/proc/interrupts (IR- chips)"
        return verdict(Status.PASS, f"interrupt remapping enabled ({how})", ev, msgs)
    if not disabled:
        return unknown_verdict("unknown: neither the kernel log nor /proc/interrupts shows whether interrupts are remapped",
                        "sudo dmesg | grep -E 'DMAR-IR|AMD-Vi: Interrupt remapping'; grep -m3 IR- /proc/interrupts", ev, msgs)
    vendor = vendor_of(facts)
    setting = {"intel": "VT-d (and x2APIC / 'Interrupt Remapping' where the firmware lists it)",
               "amd": "IOMMU (AMD-Vi) and 'Interrupt Remapping' / x2APIC"}.get(vendor, "the IOMMU's interrupt remapping")
    steps: list[str] = []
    if cmd_off:
        steps += cmdline_edit_steps(facts, [], ["intremap=off", "nointremap"])
    steps.append(f"firmware setup: enable {setting}")
    steps.append("# last resort, unsafe (a guest can then forge interrupts to the host): "
                 "echo 'options vfio_iommu_type1 allow_unsafe_interrupts=1' | sudo tee /etc/modprobe.d/vfio-unsafe.conf")
    remedy = Remedy("Turn interrupt remapping on (firmware setting; nothing on the command line may disable it).",
                    tuple(steps), CmdlineEdit(remove=tuple(a for a in ("intremap=off", "nointremap") if c is not None and a in c.raw.split()))
                    if cmd_off else None)
    if unsafe_now or (unsafe_now is None and unsafe_cfg):
        return verdict(Status.WARN, "no interrupt remapping: vfio accepts the group only because allow_unsafe_interrupts is set",
                       ev, msgs + ["A guest with the device can then send interrupts the host did not allow (MSI injection)."], remedy)
    msgs += [
        "vfio_iommu_type1 will refuse the group: the kernel logs `No interrupt remapping support.  Use the module param "
        "\"allow_unsafe_interrupts\" to enable VFIO IOMMU support on this platform`",
        "and QEMU fails with `vfio ...: failed to setup container for group N: Failed to set iommu for container: Operation not permitted`.",
    ]
    if refused:
        msgs.insert(0, "This already happened on this host (see the kernel log evidence).")
    why = "intremap=off on the command line" if cmd_off else "the kernel log says so" if off else "no IR- interrupt chips in /proc/interrupts"
    return verdict(Status.FAIL, f"interrupt remapping is off ({why}): vfio will refuse the GPU's group", ev, msgs, remedy)
