"""KVM: the device node and the modules behind it."""

from __future__ import annotations

from checks.common import observed, observed_evidence, try_fact
from doctor.checkapi import Context, check
from doctor.model import Evidence, Remedy, Status, Verdict, verdict


@check("kvm.available", "KVM device and modules present")
def kvm_available(ctx: Context) -> Verdict:
    """/dev/kvm exists and the kvm module (with kvm_intel or kvm_amd) is loaded."""
    facts = ctx.facts
    seen = observed(facts, "kvm.disabled_by_bios", "kvm.no_hardware", "kvm.unavailable")
    if seen and not try_fact(facts.kvm_device):
        bios = any(o.kind == "kvm.disabled_by_bios" for o in seen)
        return verdict(Status.FAIL, "KVM is not available: " + ("the firmware leaves CPU virtualization off" if bios else seen[0].text[:160]),
                       observed_evidence(seen),
                       ["The pasted error settles it (see cpu.virtualization for the CPU side)."],
                       Remedy("Enable VT-x / SVM in the firmware setup, power-cycle, then load kvm_intel or kvm_amd.",
                              ("sudo modprobe kvm_intel  # or kvm_amd", "ls -l /dev/kvm")))
    novendor = observed(facts, "kvm.vendor_module_missing")
    if novendor and not try_fact(facts.kvm_device):
        return verdict(Status.FAIL, "KVM is not available: kvm is loaded but neither kvm_intel nor kvm_amd (the vendor module did not load)",
                       observed_evidence(novendor),
                       ["Most likely CPU virtualization is off in the firmware (kvm_intel / kvm_amd refuse to load and log "
                        "`kvm: disabled by bios` or `VMX (outside TXT) disabled by BIOS`); otherwise the CPU lacks VT-x / SVM or "
                        "the module failed for another reason.",
                        "to settle it, collect: dmesg | grep -i kvm; grep -m1 -oE 'vmx|svm' /proc/cpuinfo"],
                       Remedy("Enable VT-x / SVM in the firmware setup, power-cycle, then load kvm_intel or kvm_amd.",
                              ("sudo modprobe kvm_intel  # or kvm_amd; its error names the cause", "dmesg | grep -i kvm")))
    dev = facts.kvm_device()
    cpu = try_fact(facts.cpu)
    mods = try_fact(facts.modules)
    ev = [Evidence(facts.where("kvm_device", "/dev/kvm"), "present" if dev else "absent")]
    vendor_mod = "kvm_intel" if cpu and cpu.is_intel else "kvm_amd" if cpu and cpu.is_amd else None
    mods_src = facts.where("modules", "/proc/modules")
    if mods is not None:
        for m in ("kvm", vendor_mod):
            if m:
                state = "loaded" if m in mods.loaded else "built in" if mods.is_builtin(m) else "in /sys/module" if m in mods.sysfs else "not loaded"
                ev.append(Evidence(mods_src, f"{m}: {state}"))
        if not mods.modular:
            ev.append(Evidence(mods_src, "absent: this kernel has no loadable module support"))
    if dev:
        return verdict(Status.PASS, "/dev/kvm present", ev)
    steps = (f"sudo modprobe {vendor_mod}",) if vendor_mod else ("sudo modprobe kvm_intel  # or kvm_amd",)
    return verdict(
        Status.FAIL,
        "/dev/kvm is missing: KVM is not available",
        ev,
        remedy=Remedy("Load the KVM module for this CPU; if it fails, CPU virtualization is off in firmware.", steps),
    )
