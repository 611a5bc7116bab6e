"""CPU virtualization (VT-x / AMD-V): the first step of the notes."""

from __future__ import annotations

from checks.common import observed, observed_evidence, try_fact
from doctor.checkapi import Context, check
from doctor.errors import FactUnknown
from doctor.model import Evidence, Remedy, Status, Verdict, verdict


@check("cpu.virtualization", "CPU virtualization (VT-x / AMD-V) available")
def cpu_virtualization(ctx: Context) -> Verdict:
    """The CPU exposes vmx (Intel) or svm (AMD); vendor from vendor_id, not guessed."""
    bios = observed(ctx.facts, "kvm.disabled_by_bios")
    shown = try_fact(ctx.facts.cpu)
    if bios and not (shown and {"vmx", "svm"} & shown.flags):  # flags shown: the CPU has it; kvm.available carries the error
        return verdict(Status.FAIL, "CPU virtualization is disabled in the firmware (the kernel said so)", observed_evidence(bios),
                       ["The CPU has VT-x / AMD-V but the firmware leaves it off (or locked off), so KVM cannot load."],
                       Remedy("Enable 'Intel Virtualization Technology' (VT-x) or 'SVM Mode' in the firmware setup, then "
                              "power-cycle; if the setting is absent, a firmware update may be needed.",
                              ("reboot into firmware setup and enable VT-x / SVM",)))
    nohw = observed(ctx.facts, "kvm.no_hardware")
    if nohw and try_fact(ctx.facts.cpu) is None:
        return verdict(Status.FAIL, "no CPU virtualization (the kernel or QEMU said so)", observed_evidence(nohw),
                       ["Either the CPU has no VT-x / AMD-V or the firmware hides it; collect: grep -m1 -oE 'vmx|svm' /proc/cpuinfo"],
                       Remedy("Enable VT-x / SVM in the firmware setup (if the CPU has it), then power-cycle."))
    cpu = ctx.facts.cpu()
    src = ctx.facts.where("cpu", "/proc/cpuinfo")
    if not cpu.flags:  # a source that shows the vendor only (a paste's kernel log or lsmod)
        raise FactUnknown(f"CPU flags (vendor {cpu.vendor}: {cpu.model_name})", "not in the evidence",
                          "grep -m1 -E 'vendor_id|flags' /proc/cpuinfo")
    ev = [Evidence(src, f"vendor_id: {cpu.vendor}"), Evidence(src, f"model name: {cpu.model_name}")]
    need = "vmx" if cpu.is_intel else "svm" if cpu.is_amd else None
    if need is None:
        has = [f for f in ("vmx", "svm") if f in cpu.flags]
        if has:
            ev.append(Evidence(src, f"flags: {has[0]} present"))
            return verdict(Status.PASS, f"{cpu.vendor} CPU with {has[0]}", ev)
        return verdict(Status.UNKNOWN, f"unrecognised CPU vendor {cpu.vendor!r}; no vmx/svm flag", ev)
    name = "Intel VT-x" if need == "vmx" else "AMD-V (SVM)"
    if need in cpu.flags:
        ev.append(Evidence(src, f"flags: {need} present"))
        return verdict(Status.PASS, f"{name} available ({need} flag)", ev)
    ev.append(Evidence(src, f"flags: {need} absent"))
    kvm = try_fact(ctx.facts.kvm_device)
    if kvm is None:
        # without the flag, /dev/kvm decides between "KVM usable all the same" (WARN) and "not available" (FAIL)
        return verdict(Status.UNKNOWN, f"no {need} flag in /proc/cpuinfo; whether /dev/kvm works is not known", ev,
                       ["to settle it, collect: ls -l /dev/kvm"])
    if kvm:
        # /dev/kvm works (a hypervisor that hides the flag, PVM, ...): KVM is usable; whether a device can be
        # handed to a VM is a separate statement, made by the IOMMU checks (firmware.iommu_table, iommu.active)
        ev.append(Evidence(ctx.facts.where("kvm_device", "/dev/kvm"), "present"))
        return verdict(
            Status.WARN,
            f"no {need} flag in /proc/cpuinfo, but /dev/kvm is present: KVM is usable here",
            ev,
            ["KVM-usable and VFIO-possible are separate statements: device passthrough also needs an IOMMU "
             "(see firmware.iommu_table and iommu.active)."]
            + (["This host is a VM guest whose hypervisor hides the flag (or provides KVM another way, e.g. PVM); "
                "guests run, possibly slower than with nested virtualization."] if "hypervisor" in cpu.flags else []),
        )
    msgs = []
    if "hypervisor" in cpu.flags:
        ev.append(Evidence(src, "flags: hypervisor present (this host is itself a virtual machine)"))
        msgs.append("This host is a VM guest: its hypervisor does not pass nested virtualization through.")
        remedy = Remedy(
            f"Enable nested virtualization on the hypervisor that runs this host (e.g. `-cpu host` with "
            f"kvm_{'intel' if need == 'vmx' else 'amd'} nested=1 there), or run gpudoctor on the bare-metal host."
        )
    else:
        remedy = Remedy(
            f"Enable {name} in the firmware setup (often 'Intel Virtualization Technology' or 'SVM Mode'), then power-cycle.",
            (f"reboot into firmware setup and enable {name}",),
        )
    return verdict(Status.FAIL, f"{name} not available: no {need} flag in /proc/cpuinfo", ev, msgs, remedy)
