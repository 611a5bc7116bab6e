"""Forecasts: the failures that come after the usual steps, before QEMU or the guest hits them.

Each check here predicts what the kernel, QEMU or the guest will do later from what the host
shows now. A certain failure is a fail; one that depends on the device or the guest is a
warning that says so. Sources of each rule are cited next to it (kernel sources, real threads).
"""

from __future__ import annotations

import re

from checks.common import (
    boot_overrides,
    cmdline_edit_steps,
    driver_text,
    endpoints,
    identical_devices,
    ids_config,
    initramfs_update_command,
    mount_controllers,
    override_evidence,
    pci_evidence,
    pci_where,
    regen_commands,
    route_nics,
    try_fact,
    unit_functions,
    unknown_driver,
)
from doctor.errors import FactUnknown, NotCaptured, OptionRomUnreadable
from doctor.facts import (
    GRUB_CFGS,
    Cmdline,
    Facts,
    IomemRange,
    PciDevice,
    parse_modprobe,
    parse_option_rom,
    parse_pcie_flr,
)
from doctor.model import Evidence, Remedy, Severity, Status, Verdict, verdict
from doctor.passthrough import iommu_vendor
from doctor.registry import Context, check

# ---------------------------------------------------------------------------
# shared helpers


def _vendor(facts: Facts) -> str:
    """The IOMMU's vendor: the firmware table first, the CPU only as a fallback (doctor.passthrough)."""
    return iommu_vendor(facts).vendor


def _kernel_version(facts: Facts) -> tuple[int, int] | None:
    rel = try_fact(facts.kernel_release)
    m = re.match(r"^(\d+)\.(\d+)", rel or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _iommu_active(facts: Facts) -> bool | None:
    groups = try_fact(facts.iommu_groups)
    cls = try_fact(facts.iommu_class)
    if groups is None and cls is None:
        return None
    return bool(groups) or bool(cls)


def _unknown(summary: str, settle: str, ev: list[Evidence] | None = None, msgs: list[str] | None = None) -> Verdict:
    return verdict(Status.UNKNOWN, summary, ev or [], (msgs or []) + [f"to settle it, collect: {settle}"])


def _configured_ids(facts: Facts) -> dict[str, list[str]]:
    """vendor:device -> where it is configured for vfio-pci (modprobe.d, now, next boot)."""
    cfg = ids_config(facts)
    out: dict[str, list[str]] = {}
    for ln in cfg.lines:
        for tok in ln.rest.split():
            if tok.startswith("ids="):
                for part in tok[4:].split(","):
                    f = part.strip().lower().split(":")
                    if len(f) >= 2:
                        out.setdefault(f"{f[0]}:{f[1]}", []).append(ln.where)
    for i in cfg.cmdline_now:
        out.setdefault(i, []).append("/proc/cmdline")
    for i in cfg.cmdline_next or ():
        out.setdefault(i, []).append("next boot command line")
    return {k: sorted(set(v)) for k, v in out.items()}


def _override_steps(devs: list[PciDevice]) -> list[str]:
    addrs = " ".join(d.address for d in devs)
    return [
        "# now (lost at reboot):",
        *[f"echo vfio-pci | sudo tee /sys/bus/pci/devices/{d.address}/driver_override" for d in devs],
        *[f"[ -e /sys/bus/pci/devices/{d.address}/driver ] && echo {d.address} | sudo tee /sys/bus/pci/devices/{d.address}/driver/unbind"
          for d in devs],
        *[f"echo {d.address} | sudo tee /sys/bus/pci/drivers_probe" for d in devs],
        "# at every boot, before udev loads any driver (`gpudoctor fix` writes this for initramfs-tools):",
        f"printf '#!/bin/sh\\n[ \"$1\" = prereqs ] && exit 0\\nfor d in {addrs}; do echo vfio-pci > /sys/bus/pci/devices/$d/driver_override; done\\n"
        "modprobe vfio-pci\\n' | sudo tee /etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override",
        "sudo chmod +x /etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override && sudo update-initramfs -u",
        "# dracut / mkinitcpio: the same loop in a script run from `install vfio-pci ...` (modprobe.d), included in the image "
        "(dracut: install_items+=; mkinitcpio: FILES=())",
    ]


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
    active = _iommu_active(facts)
    if active is False:
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
        return _unknown("unknown: neither the kernel log nor /proc/interrupts shows whether interrupts are remapped",
                        "sudo dmesg | grep -E 'DMAR-IR|AMD-Vi: Interrupt remapping'; grep -m3 IR- /proc/interrupts", ev, msgs)
    vendor = _vendor(facts)
    setting = {"intel": "VT-d (and x2APIC / 'Interrupt Remapping' where the firmware lists it)",
               "amd": "IOMMU (AMD-Vi) and 'Interrupt Remapping' / x2APIC"}.get(vendor, "the IOMMU's interrupt remapping")
    steps: list[str] = []
    if cmd_off:
        steps += cmdline_edit_steps(facts, [], ["intremap=off", "nointremap"])
    steps.append(f"firmware setup: enable {setting}")
    steps.append("# last resort, unsafe (a guest can then forge interrupts to the host): "
                 "echo 'options vfio_iommu_type1 allow_unsafe_interrupts=1' | sudo tee /etc/modprobe.d/vfio-unsafe.conf")
    remedy = Remedy("Turn interrupt remapping on (firmware setting; nothing on the command line may disable it).",
                    tuple(steps), "kernel_cmdline" if cmd_off else "")
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


# ---------------------------------------------------------------------------
# 6. identical cards


@check("vfio.ids_unique_to_card", "vfio-pci ids match only the GPU's own functions", fix="pci_bind", per_gpu=True)
def vfio_ids_unique_to_card(ctx: Context) -> Verdict:
    """Another device with the same vendor:device that stays with the host is also taken by
    `ids=` (modprobe.d or vfio-pci.ids=): the kernel binds every matching device. There the
    only way is per device: driver_override."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    eps = unit_functions(facts, gpu)
    twins = identical_devices(facts, eps)
    unlisted = facts.unlisted_devices()
    if not twins and unlisted is not None:
        raise unlisted
    if not twins:
        return verdict(Status.PASS, f"no other device on this host has the id of {gpu.address}'s function(s): "
                       + ",".join(sorted({d.ident for d in eps})), [pci_evidence(d) for d in eps])
    conf = _configured_ids(facts)
    ev = [pci_evidence(d) for d in eps]
    for ident, ts in twins.items():
        ev += [Evidence(pci_where(t), f"same id {ident}: {t.label()}") for t in ts]
    for ident in twins:
        for where in conf.get(ident, []):
            ev.append(Evidence(where, f"vfio-pci ids include {ident}"))
    grabbed = [(i, t) for i, ts in twins.items() if i in conf for t in ts]
    staying = [(i, t) for i, t in grabbed if t.driver != "vfio-pci" and t.driver_override != "vfio-pci"]
    unseen = [t for _, t in grabbed if not t.driver_known and t.driver_override != "vfio-pci"]
    if unseen and not [t for _, t in staying if t.driver_known]:
        raise unknown_driver(unseen[0])  # taken from the host (FAIL) or already a guest's (WARN): its driver decides
    names = "; ".join(f"{t.address} ({driver_text(t)})" for _, t in (staying or grabbed))
    remedy = Remedy(
        "Remove these ids from the vfio-pci ids (modprobe.d and vfio-pci.ids=) and bind the GPU's functions per device "
        "with driver_override, by address.", tuple(_override_steps(eps)), "pci_bind",
        (("devices", ",".join(d.address for d in eps)), ("remove_ids", ",".join(sorted({i for i, _ in grabbed} or twins)))),
    )
    if staying:
        return verdict(
            Status.FAIL,
            f"the configured vfio-pci ids also take {names}, which stays with the host",
            ev,
            ["`ids=` matches by vendor:device: at boot vfio-pci claims every device with that id, so the host loses "
             + ", ".join(t.address for _, t in staying) + " too.",
             "Use driver_override by PCI address for the guest's card instead (no ids= for these ids)."],
            remedy,
        )
    if grabbed:
        return verdict(Status.WARN, f"ids= also takes {names} (already on vfio-pci: intended for a guest too?)", ev,
                       ["If that device should stay with the host, bind per device (driver_override) instead."], remedy)
    ov = boot_overrides(facts)
    if all(d.address in ov for d in eps):
        ev += override_evidence(ov, eps)
        return verdict(Status.PASS, f"no ids=: {gpu.slot}'s functions go to vfio-pci by address at boot, so "
                       + ", ".join(t.address for ts in twins.values() for t in ts) + " stays with the host", ev)
    remedy = Remedy(remedy.text, remedy.steps, "vfio_conf", remedy.params)
    return verdict(
        Status.WARN,
        ", ".join(f"{t.address} ({driver_text(t)})" for ts in twins.values() for t in ts) + " has the same id as "
        f"{gpu.slot}'s functions: do not use ids= here",
        ev,
        ["An `options vfio-pci ids=` line (the usual advice, and vfio.ids_configured's remedy) would take that device too."],
        remedy,
    )


# ---------------------------------------------------------------------------
# 4. group safety

_ACS_LOG = re.compile(r"ACS overrides? enabled|pcie_acs_override", re.IGNORECASE)


def _plan_devices(facts: Facts, gpu: PciDevice) -> tuple[list[PciDevice], list[str]]:
    """The GPU's group endpoints plus every group a configured ids= would bind."""
    devs = facts.pci_devices()
    plan = {d.address: d for d in endpoints(facts, gpu)}
    notes = []
    conf = _configured_ids(facts)
    for d in devs.values():
        if d.ident in conf and d.address not in plan and not d.is_bridge:
            for m in endpoints(facts, d):
                if m.address not in plan:
                    plan[m.address] = m
            notes.append(f"{d.address} ({d.ident}) is bound too by the configured ids; its group is included")
    return sorted(plan.values(), key=lambda d: d.address), notes


@check("gpu.group_safe", "Handing over the GPU's group leaves the host its disks, network and display", per_gpu=True)
def gpu_group_safe(ctx: Context) -> Verdict:
    """The group (and any group the configured ids would bind) holds no controller of a mounted
    filesystem, no NIC of the default route, not the host's only display; `pcie_acs_override`
    means the groups shown are not real isolation."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    if facts.group_members(gpu) is None:  # FactUnknown where the source does not show the group
        return verdict(Status.NOT_APPLICABLE, f"{gpu.address} has no IOMMU group (IOMMU not active: see iommu.active)", [pci_evidence(gpu)])
    plan, notes = _plan_devices(facts, gpu)
    addrs = {d.address for d in plan}
    ev = [pci_evidence(d) for d in plan]
    msgs = list(notes)
    fails: list[str] = []
    warns: list[str] = []
    foreign = [d for d in plan if d.slot != gpu.slot]
    unknown: list[str] = []
    try:
        for addr, fs in mount_controllers(facts).items():
            if addr in addrs:
                fails.append(f"{addr} holds mounted filesystems: {', '.join(fs[:4])}")
                ev.append(Evidence("/proc/self/mounts", f"{addr}: {', '.join(fs[:4])}"))
    except (FactUnknown, NotCaptured) as e:
        unknown.append(f"mounted filesystems ({e})")
    try:
        for addr, via in route_nics(facts).items():
            if addr in addrs:
                fails.append(f"{addr} carries the default route ({', '.join(via)})")
                ev.append(Evidence("/proc/net/route", f"default route via {', '.join(via)} on {addr}"))
    except (FactUnknown, NotCaptured) as e:
        unknown.append(f"default route ({e})")
    displays = [d for d in facts.pci_devices().values() if d.is_display]
    left = [d for d in displays if d.address not in addrs]
    if displays and not left:
        warns.append("it holds the host's only display: the host keeps no console on a screen")
    c = try_fact(facts.cmdline)
    log = try_fact(facts.kernel_log)
    acs = []
    if c is not None and c.has("pcie_acs_override"):
        acs.append(Evidence(c.source, "pcie_acs_override=" + str(c.last("pcie_acs_override"))))
    if log is not None:
        acs += [Evidence(log.source, ln.strip()) for ln in log.grep(_ACS_LOG)[:2]]
    if acs:
        ev += acs
        warns.append("pcie_acs_override is in effect: the groups shown are not real isolation (devices can still reach "
                     "each other behind the IOMMU's back)")
    remedy = Remedy(
        "Do not hand these devices over: move the GPU to a slot with its own group (a CPU root port), or the disk/NIC "
        "to another controller; keep a second display or remote access for the host.",
        ("# list groups: for d in /sys/kernel/iommu_groups/*/devices/*; do echo \"$(basename $(dirname $(dirname $d))) $(lspci -nns ${d##*/})\"; done",),
    )
    if fails:
        return verdict(Status.FAIL, "handing over the group takes from the host: " + "; ".join(fails), ev,
                       msgs + warns + ["Binding vfio-pci to a controller under a mounted filesystem pulls the disk from under "
                                       "it (I/O errors, data loss); the default-route NIC takes the host off the network."], remedy)
    if unknown and foreign:
        return _unknown(f"unknown: could not check {', '.join(unknown)} for {', '.join(d.address for d in foreign)}",
                        "cat /proc/self/mounts /proc/net/route; ls -l /sys/class/block /sys/class/net", ev, msgs + warns)
    if unknown:
        msgs.append("not checked: " + "; ".join(unknown) + " (the group holds only the GPU's own functions)")
    if warns:
        return verdict(Status.WARN, "; ".join(warns), ev, msgs,
                       Remedy("Keep another way into the host (second GPU, serial console, SSH); with pcie_acs_override "
                              "know that isolation is not enforced.", ("sudo systemctl enable --now ssh",)))
    return verdict(Status.PASS, f"group {gpu.iommu_group}: no mounted disk, default-route NIC or only display among "
                   f"{len(plan)} device(s)", ev, msgs)


# ---------------------------------------------------------------------------
# 2. configuration in effect

_BUILTIN_CONFIG = {
    "vfio_pci": "CONFIG_VFIO_PCI", "vfio": "CONFIG_VFIO", "vfio_iommu_type1": "CONFIG_VFIO_IOMMU_TYPE1",
    "vfio_pci_core": "CONFIG_VFIO_PCI_CORE", "kvm": "CONFIG_KVM", "kvm_intel": "CONFIG_KVM_INTEL", "kvm_amd": "CONFIG_KVM_AMD",
}  # fmt: skip
# systemd.machine_id: kernel-install (systemd >= 250) appends it to every BLS entry it writes,
# /etc/kernel/cmdline never has it
_IGNORED_ARGS = {"BOOT_IMAGE", "root", "ro", "rw", "initrd", "rootflags", "rootfstype", "systemd.machine_id"}


def _relevant(key: str) -> bool:
    k = key.replace("-", "_")
    return k.startswith(("vfio", "intel_iommu", "amd_iommu", "iommu", "pcie_acs", "video", "initcall_blacklist",
                         "modprobe.blacklist", "module_blacklist", "rd.driver", "kvm", "intremap", "hugepage",
                         "default_hugepagesz", "isolcpus", "pci"))


def _builtin(facts: Facts, module: str) -> tuple[bool | None, str]:
    mods = try_fact(facts.modules)
    b = mods.is_builtin(module) if mods else None
    if b:
        return True, "modules.builtin"
    cfg = try_fact(facts.kernel_config)
    key = _BUILTIN_CONFIG.get(module)
    if cfg is not None and key:
        if cfg.get(key) == "y":
            return True, f"{key}=y"
        if cfg.get(key) in ("m", "n"):
            return False, f"{key}={cfg.get(key)}"
    return b, "modules.builtin" if b is not None else ""


def _arg_set(c: Cmdline) -> set[str]:
    # grub.cfg lines carry grub variables ($vt_handoff on Ubuntu) that /etc/default/grub never has
    return {str(a) for a in c.args if a.key not in _IGNORED_ARGS and not a.key.startswith("$")}


def _effective_next(facts: Facts) -> tuple[Cmdline | None, str, str]:
    """(what the bootloader will really use, where from, the configured source) for the next boot."""
    boot = try_fact(facts.boot_config)
    if boot is None:
        return None, "", ""
    if boot.kind == "grub" and boot.generated is not None:
        return boot.generated, f"{boot.generated_source} (default entry)", boot.cmdline.source if boot.cmdline else ""
    if boot.kind in ("grub", "systemd-boot"):
        entries = try_fact(facts.boot_entries) or ()
        rel = try_fact(facts.kernel_release) or ""
        pick = [e for e in entries if rel and (e.version == rel or rel in e.path)] or list(entries)
        if pick:
            from doctor.facts import parse_cmdline

            e = sorted(pick, key=lambda e: e.path)[-1]
            return parse_cmdline(e.options, e.path), e.path, boot.cmdline.source if boot.cmdline else ""
    return None, "", boot.cmdline.source if boot.cmdline else ""


@check("boot.config_in_effect", "The vfio configuration written is the one the next boot uses", fix="kernel_cmdline")
def boot_config_in_effect(ctx: Context) -> Verdict:
    """Options for a built-in module (modules.builtin, CONFIG_...=y) in modprobe.d are never read;
    the next boot's command line is what the bootloader really uses (the generated grub.cfg
    default entry, BLS entries), not only what /etc/default/grub or /etc/kernel/cmdline says."""
    facts = ctx.facts
    ev: list[Evidence] = []
    msgs: list[str] = []
    fails: list[str] = []
    warns: list[str] = []
    steps: list[str] = []
    params: dict[str, str] = {}
    # built-in modules with options in modprobe.d
    for ln in try_fact(facts.modprobe_config) or ():
        if ln.command != "options" or ln.module not in _BUILTIN_CONFIG:
            continue
        b, how = _builtin(facts, ln.module)
        if b:
            args = " ".join(f"{ln.module.replace('_', '-') if ln.module == 'vfio_pci' else ln.module}.{o}" for o in ln.rest.split())
            ev += [Evidence(ln.where, ln.text), Evidence(how, f"{ln.module} is built into the kernel")]
            fails.append(f"{ln.where}: `{ln.text}` is never read ({ln.module} is built in, {how})")
            steps += [f"# {ln.where}: move to the kernel command line:"] + cmdline_edit_steps(facts, args.split(), [])[:-1]
    # what the bootloader really uses
    boot = try_fact(facts.boot_config)
    eff, eff_src, conf_src = _effective_next(facts)
    if boot is not None and boot.cmdline is not None and eff is not None:
        conf = _arg_set(boot.cmdline)
        real = _arg_set(eff)
        ev.append(Evidence(boot.cmdline.source, boot.cmdline.raw or "(no arguments)"))
        ev.append(Evidence(eff_src, eff.raw or "(no arguments)"))
        missing = sorted(conf - real)
        stale = sorted(real - conf)
        if missing or stale:
            rel_diff = [a for a in missing + stale if _relevant(a.split("=", 1)[0])]
            what = (f"{conf_src} was edited but {eff_src} was not regenerated: "
                    + (f"the next boot lacks {' '.join(missing)}" if missing else "")
                    + ("; " if missing and stale else "")
                    + (f"it still has {' '.join(stale)}" if stale else ""))
            (fails if rel_diff else warns).append(what)
            params["regenerate"] = "1"
            steps += regen_commands(facts) or ["sudo grubby --update-kernel=ALL --args=\"" + " ".join(missing) + "\""]
    elif boot is not None and boot.kind == "grub" and eff is None:
        msgs.append("the generated grub.cfg was not readable or has no linux line: the next boot's real command line is unknown")
    live = try_fact(facts.cmdline)
    if live is not None and eff is not None:
        pend = sorted(a for a in _arg_set(eff) ^ _arg_set(live) if _relevant(a.split("=", 1)[0]))
        if pend:
            msgs.append(f"reboot pending: the next boot changes {' '.join(pend)} against /proc/cmdline")
    remedy = Remedy("Make the written configuration the one in effect.", tuple(dict.fromkeys(steps)), "kernel_cmdline",
                    tuple(sorted(params.items()))) if steps else None
    if fails:
        return verdict(Status.FAIL, "; ".join(fails), ev, msgs + warns, remedy)
    if warns:
        return verdict(Status.WARN, "; ".join(warns), ev, msgs, remedy)
    if boot is None and not ev:
        return _unknown("unknown: no bootloader configuration found", "ls /etc/default/grub /boot/grub*/grub.cfg /boot/loader/entries", ev, msgs)
    if eff is None and boot is not None and boot.kind == "grub" and boot.generated_unknown:
        return _unknown(f"unknown: the generated grub.cfg could not be read ({boot.generated_unknown})",
                        "sudo cat " + " ".join(GRUB_CFGS), ev, msgs)
    if eff is None and boot is not None and boot.kind in ("grub", "systemd-boot") and try_fact(facts.boot_entries) is None:
        facts.boot_entries()  # the boot loader entries are unknown, not absent
    if eff is None:
        return verdict(Status.PASS if not msgs else Status.WARN,
                       "no options for built-in modules; the bootloader's generated entries were not found to compare"
                       if boot is not None else "no options for built-in modules in modprobe.d", ev, msgs)
    return verdict(Status.PASS, f"the next boot uses what is configured ({eff_src})", ev, msgs)


@check("boot.initramfs_current", "The initramfs holds vfio-pci and the current vfio configuration", fix="early_load")
def boot_initramfs_current(ctx: Context) -> Verdict:
    """Where vfio-pci is a module loaded from the initramfs, the current image (early-microcode
    cpio, then gzip/xz/zstd/lz4) has vfio-pci and the same modprobe.d vfio files as /etc."""
    facts = ctx.facts
    el = try_fact(facts.early_load)
    mp_known = try_fact(facts.modprobe_config)
    mp = mp_known or ()
    vfio_lines = [ln for ln in mp if ln.module == "vfio_pci" or re.search(r"\bvfio[-_]pci\b", ln.rest)]
    wants_initramfs = el is not None and any(re.search(r"\bvfio[-_]pci\b", ln.text) for ln in el.initramfs)
    if not vfio_lines and not wants_initramfs:
        # "none" only from reads that succeeded: an unknown configuration raises its FactUnknown
        if mp_known is None:
            facts.modprobe_config()
        if el is None:
            facts.early_load()
        return verdict(Status.NOT_APPLICABLE, "no vfio-pci configuration that the initramfs would carry")
    b, how = _builtin(facts, "vfio_pci")
    img = facts.initramfs()
    ev = [Evidence(img.path, " + ".join(img.segments) + f"; {len(img.names)} paths read")]
    cmd = initramfs_update_command(facts)
    remedy = Remedy("Rebuild the initramfs so it carries vfio-pci and the current configuration.", (cmd,), "early_load")
    probs: list[str] = []
    if not b and wants_initramfs and img.undecoded is None and not img.has_module("vfio_pci"):
        probs.append("the initramfs configuration asks for vfio-pci but the image does not contain vfio-pci.ko")
    files = sorted({ln.file for ln in vfio_lines})
    for f in files:
        live = [ln.text for ln in mp if ln.file == f]
        inside = img.file(f.lstrip("/")) or img.file("usr/" + f.lstrip("/"))
        if inside is None:
            if img.undecoded is None and (img.has_module("vfio_pci") or wants_initramfs):
                probs.append(f"{f} is not in the image: vfio-pci loads from the initramfs without its ids/softdeps")
            continue
        ev.append(Evidence(f"{img.path}:{f.lstrip('/')}", inside.decode("utf-8", "replace").strip()[:200]))
        if [ln.text for ln in parse_modprobe(inside.decode("utf-8", "replace"), f)] != live:
            probs.append(f"{f} in the image differs from /etc (the image is older than the configuration)")
    # per-device binding scripts (initramfs-tools scripts/init-top): in the image, as written
    for o in {o.file: o for o in boot_overrides(facts).values() if o.kind == "initramfs"}.values():
        inner = o.file.removeprefix("/etc/initramfs-tools/")
        inside = img.file(inner)
        if img.undecoded is not None:
            continue
        if inside is None:
            probs.append(f"{o.file} is not in the image: the card is not bound by address at the next boot")
        elif inside.decode("utf-8", "replace") != o.text:
            probs.append(f"{o.file} in the image differs from /etc (the image is older than the configuration)")
        else:
            ev.append(Evidence(f"{img.path}:{inner}", "present"))
    if probs:
        return verdict(Status.FAIL, "; ".join(probs), ev, [f"vfio-pci: {how or 'module'}"], remedy)
    if img.undecoded:
        return _unknown(f"unknown: {img.path} is {img.undecoded}-compressed and this Python has no {img.undecoded} decoder",
                        f"lsinitramfs {img.path} | grep -E 'vfio|modprobe.d'", ev)
    return verdict(Status.PASS, f"{img.path} carries vfio-pci" + (" and the current modprobe.d vfio files" if files else ""), ev)


# ---------------------------------------------------------------------------
# 1. boot framebuffer in the GPU's memory

# Names of firmware framebuffers in /proc/iomem: sysfb's "BOOTFB" resource (x86 sysfb_simplefb.c),
# and the drivers that request it (efifb, vesafb, simplefb, simpledrm).
FB_NAMES = ("bootfb", "efifb", "vesafb", "simplefb", "simpledrm", "simple-framebuffer", "vesa-framebuffer")


def _fb_ranges(iomem: tuple[IomemRange, ...], bars: list) -> list[IomemRange]:  # type: ignore[type-arg]
    return [r for r in iomem if r.name.lower().split(".")[0] in FB_NAMES and any(r.overlaps(b.start, b.end) for b in bars)]


def _evicts_on_bind(facts: Facts, gpu: PciDevice) -> tuple[bool | None, str]:
    """Whether binding vfio-pci removes a firmware framebuffer from the GPU's BARs.

    Since Linux 6.0, vfio_pci_core_register_device() -> vfio_pci_vga_init() calls
    aperture_remove_conflicting_pci_devices() ("vfio/pci: Remove console drivers", Alex
    Williamson, commit d173780620792c725506b0f3c5ec52c7fbac1db0; in linux-next from
    next-20220628 next to "drm: Implement DRM aperture helpers under video/", merged for 6.0;
    Debian's 6.1.0 vfio-pci-core.ko imports the symbol). Proven in the lab
    (tests/lab/test_lab_forecast.py, intel-efifb-on-card): on Debian's 6.1, `c0000000-c03e7fff :
    efifb` in the card's BAR 0 vanishes from /proc/iomem when vfio-pci binds ("Console: switching
    to colour dummy device"), no `can't reserve`, QEMU maps the BARs. Only for VGA-class devices: vfio_pci_is_vga() is
    `(pdev->class >> 8) == PCI_CLASS_DISPLAY_VGA` (0x0300). A 3D (0302) or display (0380)
    controller keeps its framebuffer, which is why simpledrm still blocks such GPUs on 6.18
    (siderolabs/talos#14356: `BAR 0: can't reserve`)."""
    v = _kernel_version(facts)
    if v is None:
        return None, "kernel version unknown"
    if v < (6, 0):
        return False, f"kernel {v[0]}.{v[1]} < 6.0: vfio-pci does not remove console drivers"
    if gpu.class_code >> 8 != 0x0300:
        return False, f"class {gpu.class_hex} is not VGA (0300): vfio-pci only evicts framebuffers from VGA-class devices"
    return True, f"kernel {v[0]}.{v[1]} >= 6.0 and class 0300: vfio-pci evicts firmware framebuffers when it binds"


def _fb_remedy(names: set[str], facts: Facts) -> tuple[str, list[str]]:
    args = []
    if names & {"bootfb", "simpledrm", "simplefb", "simple-framebuffer"}:
        args.append("initcall_blacklist=sysfb_init")
    if "efifb" in names:
        args.append("video=efifb:off")
    if "vesafb" in names or "vesa-framebuffer" in names:
        args.append("video=vesafb:off")
    return " ".join(args), cmdline_edit_steps(facts, args, [])


@check("gpu.framebuffer_free", "No boot framebuffer or console sits in the GPU's memory", fix="kernel_cmdline", per_gpu=True)
def gpu_framebuffer_free(ctx: Context) -> Verdict:
    """A /proc/iomem range named BOOTFB, efifb, vesafb, simplefb or simpledrm inside one of the
    GPU's BARs makes vfio-pci's BAR reservation fail (`BAR 0: can't reserve [mem ...]`, QEMU
    `Failed to mmap ... BAR`), unless this kernel evicts it on bind (6.0+, VGA class only)."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    bars = [b for b in facts.pci_bars(gpu.address) if b.is_mem and b.index < 6]
    ev = [pci_evidence(gpu)] + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/resource", str(b)) for b in bars]
    cons = try_fact(facts.consoles)
    fb_console = cons is not None and any(b and "frame buffer" in n for _, n, b in cons.vtconsoles)
    if cons is not None:
        ev += [Evidence("/proc/fb", ln) for ln in cons.framebuffers[:4]]
    iomem = facts.iomem()
    hits = _fb_ranges(iomem, bars)
    ev += [Evidence("/proc/iomem", str(r)) for r in hits]
    if not hits:
        drmfb = cons is not None and gpu.driver and any(gpu.driver in ln for ln in cons.framebuffers)
        if drmfb and fb_console:
            return verdict(
                Status.WARN,
                f"the console is drawn on {gpu.driver}'s framebuffer on this GPU: it must be released before the driver unbinds",
                ev,
                ["Depends on the driver: most release it on unbind; where one does not, the unbind hangs or the host's console dies."],
                Remedy("Release the console before unbinding the native driver.",
                       ("for v in /sys/class/vtconsole/vtcon*; do grep -q 'frame buffer' $v/name && echo 0 | sudo tee $v/bind; done",)),
            )
        return verdict(Status.PASS, f"no firmware framebuffer in {gpu.address}'s BARs", ev)
    names = {r.name.lower().split(".")[0] for r in hits}
    evicts, why = _evicts_on_bind(facts, gpu)
    args, steps = _fb_remedy(names, facts)
    remedy = Remedy(f"Keep the firmware framebuffer off the GPU: add {args} to the kernel command line and reboot "
                    "(or boot the host on another display).", tuple(steps), "kernel_cmdline", (("add", args),))
    where = ", ".join(f"{r.name} at {r.start:#x}-{r.end:#x}" for r in hits)
    if gpu.driver == "vfio-pci":
        return verdict(Status.FAIL, f"{where} still sits in {gpu.address}'s BAR while it is on vfio-pci: QEMU cannot reserve it",
                       ev, [why, "The kernel will log `vfio-pci ...: BAR N: can't reserve [mem ...]` and QEMU `Failed to mmap ... BAR`."], remedy)
    if evicts:
        return verdict(Status.PASS, f"{where} in {gpu.address}'s BAR; this kernel removes it when vfio-pci binds", ev,
                       [why, "The host loses that console when vfio-pci binds."])
    if evicts is None:
        return verdict(Status.WARN, f"{where} in {gpu.address}'s BAR; whether this kernel evicts it on bind is unknown ({why})", ev,
                       [], remedy)
    return verdict(Status.FAIL, f"{where} sits in {gpu.address}'s BAR and stays there when vfio-pci binds", ev,
                   [why, "vfio-pci will log `BAR N: can't reserve [mem ...]` and QEMU `Failed to mmap ... BAR` / the guest driver fails."],
                   remedy)


# ---------------------------------------------------------------------------
# 5. reset

# gnif/vendor-reset src/device-db.h: AMD Polaris 10/11/12, Vega 10/20, Navi 10/12/14, Arcturus.
VENDOR_RESET_IDS = frozenset(
    "67c0 67c1 67c2 67c4 67c7 67d0 67df 67c8 67c9 67ca 67cc 67cf 6fdf "  # Polaris 10
    "67e0 67e3 67e8 67eb 67ef 67ff 67e1 67e7 67e9 "  # Polaris 11
    "6980 6981 6985 6986 6987 6995 6997 699f "  # Polaris 12
    "6860 6861 6862 6863 6864 6867 6868 6869 686a 686b 686c 686d 686e 686f 687f "  # Vega 10
    "66a0 66a1 66a2 66a3 66a4 66a7 66af "  # Vega 20
    "7310 7312 7318 7319 731a 731b 731e 731f 1681 "  # Navi 10
    "7340 7341 7347 734f 7360 7362 738c".split()  # Navi 14, Navi 12, Arcturus
)


@check("gpu.reset_capable", "The GPU can be reset between guest runs", severity=Severity.ADVICE, per_gpu=True)
def gpu_reset_capable(ctx: Context) -> Verdict:
    """reset_method (5.15+), FLR in the PCI Express capability, ids known to need vendor-reset
    (AMD Polaris, Vega, Navi 10/12/14) with vendor_reset loaded and `device_specific` selected."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    ev = [pci_evidence(gpu)]
    rm = facts.reset_method(gpu.address)
    ev.append(Evidence(f"/sys/bus/pci/devices/{gpu.address}/reset_method", " ".join(rm) if rm else "(absent)" if rm is None else "(empty)"))
    cfg = try_fact(lambda: facts.pci_config(gpu.address))
    flr = parse_pcie_flr(cfg) if cfg is not None else None
    if cfg is not None:
        if len(cfg) > 0x0E and cfg[0x0E] in (0x7F, 0xFF) and cfg[:4] == b"\xff\xff\xff\xff":
            return verdict(Status.FAIL, f"{gpu.address}'s config space reads all ones: the device is not responding",
                           ev + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/config", "ff ff ff ff ...")],
                           ["This is what QEMU reports as `Unknown PCI header type '127'`: a reset left the device dead. Power-cycle the host."])
        ev.append(Evidence(f"/sys/bus/pci/devices/{gpu.address}/config",
                           "PCIe DevCap: FLReset+" if flr else "PCIe DevCap: FLReset-" if flr is False else f"{len(cfg)} bytes (capabilities not readable)"))
    msgs: list[str] = []
    if gpu.vendor == "1002" and gpu.device in VENDOR_RESET_IDS:
        mods = try_fact(facts.modules)
        loaded = mods is not None and mods.present("vendor_reset")
        selected = rm is None or (bool(rm) and rm[0] == "device_specific")
        ev.append(Evidence("/proc/modules", "vendor_reset loaded" if loaded else "vendor_reset not loaded"))
        if loaded and selected:
            return verdict(Status.PASS, f"{gpu.ident} needs vendor-reset: loaded" + (" and device_specific selected" if rm else ""), ev)
        steps = ["# install gnif/vendor-reset (dkms), then:", "echo vendor-reset | sudo tee /etc/modules-load.d/vendor-reset.conf"]
        if rm is not None:
            steps.append(f"echo device_specific | sudo tee /sys/bus/pci/devices/{gpu.address}/reset_method  # at every boot: vendor-reset's udev rule")
        return verdict(
            Status.WARN,
            f"{gpu.ident} (AMD Polaris/Vega/Navi 1x) does not reset without vendor-reset"
            + ("" if not loaded else "; loaded but device_specific is not selected in reset_method"),
            ev,
            ["After the first guest shutdown the card stays dirty: the next start fails with `vfio: Cannot reset device` or "
             "QEMU `Unknown PCI header type '127'` (the card answers all ones), and the host may need a power cycle.",
             "Whether this bites depends on the card and the guest driver (a warning, not a certainty)."],
            Remedy("Use vendor-reset for this card (and on 5.15+ select its method).", tuple(steps)),
        )
    if rm:
        if "flr" in rm:
            return verdict(Status.PASS, f"reset by {rm[0]} (FLR available)", ev)
        devs = try_fact(facts.pci_devices) or {}
        bus = gpu.address.rsplit(":", 1)[0]
        others = [d for d in devs.values() if d.address.rsplit(":", 1)[0] == bus and d.slot != gpu.slot]
        if "bus" in rm and not others:
            return verdict(Status.PASS, f"reset by {' then '.join(rm)}: no FLR, but the GPU is alone on its bus (secondary bus reset)", ev)
        msgs.append("A bus reset resets everything on the bus: vfio can do it only when it owns all of it "
                    "(`vfio: Cannot reset device ..., depends on group N which is not owned`).")
        return verdict(Status.WARN, f"no FLR; reset only by {' '.join(rm)}" + (f", shared with {', '.join(d.address for d in others)}" if others else ""),
                       ev, msgs)
    if rm is not None:  # present and empty
        return verdict(Status.WARN, "the kernel has no reset method for this GPU", ev,
                       ["QEMU logs `vfio: Cannot reset device ..., no available reset mechanism`; the guest then sees "
                        "the card as the last guest left it (depends on the card and its guest driver)."])
    if flr:
        return verdict(Status.PASS, "FLR supported (PCI Express capability)", ev)
    if flr is False:
        return verdict(Status.WARN, "no FLR in the PCI Express capability: only a bus reset can reset this GPU", ev,
                       ["Depends on the topology: a bus reset needs every device on the bus in the guest."])
    return _unknown("unknown: no reset_method attribute (kernel < 5.15) and the PCIe capability was not readable",
                    f"sudo lspci -vvv -s {gpu.address} | grep -i flreset", ev)


# ---------------------------------------------------------------------------
# 9. drift


@check("config.no_drift", "vfio ids and libvirt host devices still match this host's devices")
def config_no_drift(ctx: Context) -> Verdict:
    """Ids in vfio.conf or on the command line, and PCI addresses of <hostdev> in
    /etc/libvirt/qemu/*.xml, that no longer match any device on this host."""
    facts = ctx.facts
    devs = facts.pci_devices()
    idents = {d.ident for d in devs.values()}
    ev: list[Evidence] = []
    stale_ids = []
    for ident, where in sorted(_configured_ids(facts).items()):
        if ident not in idents:
            stale_ids.append(f"{ident} ({', '.join(where)})")
            ev += [Evidence(w, f"vfio-pci id {ident}: no such device on this host") for w in where]
    msgs = []
    stale_hd = []
    hds = try_fact(facts.libvirt_hostdevs)
    if hds is None:
        msgs.append("libvirt domain definitions not readable (run as root to check /etc/libvirt/qemu/*.xml)")
    else:
        for h in hds:
            if h.address not in devs:
                stale_hd.append(f"domain {h.domain}: {h.address}")
                ev.append(Evidence(h.file, f"<hostdev> {h.address}: no such device on this host"))
            else:
                ev.append(Evidence(h.file, f"<hostdev> {h.address}: {devs[h.address].label()}"))
    if stale_hd:
        return verdict(Status.FAIL, "libvirt domains point at devices this host no longer has: " + "; ".join(stale_hd)
                       + (f"; stale vfio ids {', '.join(stale_ids)}" if stale_ids else ""), ev,
                       msgs + ["libvirt will refuse to start them: `Device ... not found: could not access /sys/bus/pci/devices/...`."],
                       Remedy("Edit each domain's <hostdev> to the card's current address (or remove it).",
                              tuple(f"sudo virsh edit {h.split(':', 1)[0].removeprefix('domain ')}" for h in stale_hd)))
    if stale_ids:
        return verdict(Status.WARN, "vfio-pci ids that match no device here: " + "; ".join(stale_ids), ev, msgs,
                       Remedy("Remove the stale ids (a typo, or a card that was replaced)."))
    if hds is None:
        return verdict(Status.UNKNOWN, "vfio ids match this host; libvirt domains not readable", ev, msgs)
    return verdict(Status.PASS, f"every configured vfio id and {len(hds)} libvirt host device(s) match this host", ev, msgs)


# ---------------------------------------------------------------------------
# 8. Secure Boot and lockdown


def _oot_modules(facts: Facts, gpu: PciDevice | None) -> list[str]:
    need = []
    if gpu is not None and gpu.vendor == "1002" and gpu.device in VENDOR_RESET_IDS:
        need.append("vendor_reset")
    for d in (try_fact(facts.pci_devices) or {}).values():
        if d.is_display and (d.driver == "nvidia" or "nvidia" in d.kernel_modules) and "nvidia" not in need:
            need.append("nvidia")
    return need


@check("boot.secure_boot_modules", "Out-of-tree modules the plan needs can load (Secure Boot, lockdown)", severity=Severity.ADVICE)
def boot_secure_boot_modules(ctx: Context) -> Verdict:
    """With Secure Boot on, lockdown, or module.sig_enforce, unsigned modules (vendor-reset,
    nvidia) are refused: `Loading of unsigned module is rejected` / `Key was rejected by service`."""
    facts = ctx.facts
    need = _oot_modules(facts, ctx.gpu)
    if not need:
        return verdict(Status.NOT_APPLICABLE, "the plan needs no out-of-tree module (vendor-reset, nvidia)")
    sec = facts.security()
    ev = [Evidence(s, v) for s, v in sec.sources]
    strict = bool(sec.secure_boot) or sec.lockdown in ("integrity", "confidentiality") or bool(sec.sig_enforce)
    mods = try_fact(facts.modules)
    loaded = [m for m in need if mods is not None and mods.present(m)]
    if not strict:
        return verdict(Status.PASS, f"no Secure Boot, lockdown or signature enforcement: {', '.join(need)} can load", ev)
    why = ", ".join(x for x in ("Secure Boot on" if sec.secure_boot else "", f"lockdown={sec.lockdown}" if sec.lockdown not in (None, "none") else "",
                                "module.sig_enforce=Y" if sec.sig_enforce else "") if x)
    missing = [m for m in need if m not in loaded]
    if not missing:
        return verdict(Status.PASS, f"{why}, and {', '.join(loaded)} is loaded (so its signature is trusted)", ev)
    return verdict(
        Status.WARN, f"{why}: unsigned {', '.join(missing)} will be refused", ev,
        ["modprobe then fails with `Key was rejected by service` (the kernel logs `Loading of unsigned module is rejected`).",
         "Depends on how the module was built: a DKMS build signed with an enrolled MOK loads."],
        Remedy("Sign the module with a Machine Owner Key and enroll it (or turn Secure Boot off).",
               ("sudo mokutil --import /var/lib/dkms/mok.pub  # DKMS's key; reboot and confirm in MokManager",)),
    )


# ---------------------------------------------------------------------------
# 10. option ROM

# drivers/pci/rom.c (pci_get_rom_size): what the kernel says about a ROM it will not map
ROM_COMPLAINT = r".*(Invalid PCI ROM header signature|No more image in the PCI ROM)"


@check("gpu.rom_readable", "The GPU's option ROM is present and valid", severity=Severity.ADVICE, per_gpu=True)
def gpu_rom_readable(ctx: Context) -> Verdict:
    """The ROM BAR exists; its image starts 0x55AA, has a PCI data structure and an EFI image.
    The image comes from a dump (`check --rom FILE`) or, on request, from sysfs `rom`
    (`check --read-rom`: writing 1 to it first changes the device's state, so never by default).

    A ROM the kernel will not map (drivers/pci/rom.c: `Invalid PCI ROM header signature`, the
    sysfs read fails with EIO) is also what vfio-pci hands QEMU: the ROM region's size is 0 and
    QEMU says `vfio-pci: Cannot read device rom at ADDR` when the guest's firmware probes it
    (hw/vfio/pci.c vfio_pci_load_rom), then goes on without a ROM. Advice: the VM starts; a UEFI
    guest just gets no boot screen from the card until its own driver loads."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    bars = facts.pci_bars(gpu.address)
    rom = [b for b in bars if b.index == 6]
    ev = [pci_evidence(gpu)] + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/resource", str(b)) for b in rom]
    remedy = Remedy(
        "If the guest shows no picture before its driver loads: hide the ROM (`rombar=0`, libvirt <rom bar='off'/>) or give "
        "QEMU a known-good dump (`romfile=/usr/share/vgabios/gpu.rom`, libvirt <rom file='...'/>).",
        (f"sudo gpudoctor check --read-rom --gpu {gpu.address} --only gpu.rom_readable",
         f"# or dump it yourself: sudo sh -c 'cd /sys/bus/pci/devices/{gpu.address} && echo 1 > rom && cat rom > /tmp/{gpu.address}.rom; echo 0 > rom'",
         f"# and check the dump: gpudoctor check --rom /tmp/{gpu.address}.rom --gpu {gpu.address} --only gpu.rom_readable"),
    )
    fix_unreadable = Remedy(
        f"Hide the card's ROM from the guest (`-device vfio-pci,host={gpu.address},rombar=0`, libvirt <rom bar='off'/>) or give "
        "QEMU a good dump of this card's ROM (`romfile=/path/to/gpu.rom`, libvirt <rom file='/path/to/gpu.rom'/>), e.g. one "
        "read while another GPU was the boot display, or the vendor's image for this exact board.",
    )
    if not rom:
        return verdict(Status.WARN, f"{gpu.address} exposes no ROM BAR: a UEFI guest gets no GOP driver from the card", ev,
                       ["Depends on the guest: its own driver still works; only the boot screen needs the ROM."], remedy)
    shadow = [b for b in rom if b.start == 0xC0000]
    shadow_note = ([f"The kernel shows {gpu.address}'s ROM as the shadow copy at 0xc0000 (it is the boot display): after UEFI "
                    "firmware (no CSM) that region holds no option ROM image."] if shadow else [])
    source = "sysfs `rom`"
    try:
        data: bytes = ctx.facts.option_rom(gpu.address)
        dumps = getattr(ctx.facts, "rom_dumps", {})
        if gpu.address in dumps:
            source = f"the dump {dumps[gpu.address][0]}"
    except OptionRomUnreadable as e:
        klog = list(e.kernel_lines) or _rom_kernel_lines(facts, gpu.address)
        ev += [Evidence(e.source, e.reason)] + [Evidence("kernel log", ln) for ln in klog]
        return verdict(Status.WARN, f"{gpu.address}'s ROM cannot be read ({e.reason}): QEMU will say "
                       f"`vfio-pci: Cannot read device rom at {gpu.address}` and the guest gets no ROM from the card", ev,
                       [*(f"the kernel: {ln}" for ln in klog), *shadow_note,
                        "QEMU still starts (advice, not a blocker): a UEFI guest shows no boot screen on this card until its own "
                        "driver loads, and a guest driver that needs the ROM fails."],
                       fix_unreadable)
    except (FactUnknown, NotCaptured) as e:
        reason = e.reason if isinstance(e, FactUnknown) else str(e)
        if reason.startswith("not read"):
            return verdict(Status.UNKNOWN, "ROM not read: reading it changes the device's state (writing 1 to sysfs `rom`)", ev,
                           ["Opt in with `gpudoctor check --read-rom` (root), or check a dump with `--rom FILE`.",
                            "Many GPUs (NVIDIA especially) return a ROM whose image the guest then rejects; `rombar=0` or a `romfile` fixes that."],
                           remedy)
        return verdict(Status.UNKNOWN, f"ROM not read: {reason}", ev, [], remedy)
    ev.append(Evidence(source, f"{len(data)} bytes" + (f", starts {data[:2].hex(' ')}" if data else "")))
    if not data:
        klog = _rom_kernel_lines(facts, gpu.address)
        ev += [Evidence("kernel log", ln) for ln in klog]
        return verdict(Status.WARN, f"the ROM from {source} is empty: the kernel could not map it, QEMU will say "
                       f"`vfio-pci: Cannot read device rom at {gpu.address}`", ev,
                       [*(f"the kernel: {ln}" for ln in klog), *shadow_note,
                        "An empty dump is what `cat rom` leaves when the read fails with `Input/output error`."],
                       fix_unreadable)
    try:
        images = parse_option_rom(data)
    except ValueError as e:
        return verdict(Status.WARN, f"the ROM from {source} is not valid: {e}", ev,
                       [*shadow_note, "The guest's firmware rejects this image: no boot screen from the card until the guest's driver loads."],
                       fix_unreadable)
    if "EFI" not in images:
        return verdict(Status.WARN, f"ROM images: {', '.join(images)}; no EFI image (a UEFI guest gets no boot screen)", ev, [], remedy)
    return verdict(Status.PASS, f"ROM valid: {', '.join(images)}", ev)


def _rom_kernel_lines(facts: Facts, address: str) -> list[str]:
    """drivers/pci/rom.c's complaints about this device's ROM in the kernel log."""
    log = try_fact(facts.kernel_log)
    return log.grep(re.escape(address) + ROM_COMPLAINT)[-3:] if log is not None else []


# ---------------------------------------------------------------------------
# 11. command-line advice that does not do what it says


@check("cmdline.iommu_args_meaningful", "IOMMU arguments do what they are meant to", severity=Severity.ADVICE, fix="kernel_cmdline")
def cmdline_iommu_args_meaningful(ctx: Context) -> Verdict:
    """`iommu=pt` does not turn the IOMMU on (on Intel with the build default off it needs
    intel_iommu=on); `amd_iommu=on` is not an AMD option (`AMD-Vi: Unknown option`);
    intel_iommu=on is not needed where CONFIG_INTEL_IOMMU_DEFAULT_ON=y."""
    facts = ctx.facts
    c = facts.cmdline()
    vendor = _vendor(facts)
    ev = [Evidence(c.source, c.raw or "(empty)")]
    pt_alone = c.last("iommu") == "pt" and "on" not in c.option_values("intel_iommu")
    if vendor not in ("intel", "amd") and (pt_alone or "on" in c.option_values("amd_iommu")):
        raise FactUnknown("the IOMMU's vendor (what these arguments do depends on it)", "not in the evidence",
                          "ls /sys/firmware/acpi/tables; grep -m1 vendor_id /proc/cpuinfo")
    if vendor == "intel":
        from checks.check_iommu import _build_default_on, _iommu_active

        default_on, cfg_ev = _build_default_on(facts)
        if cfg_ev is not None:
            ev.append(cfg_ev)
        opts = c.option_values("intel_iommu")
        pt_alone = c.last("iommu") == "pt" and "on" not in opts
        if pt_alone and default_on is None:
            active = _iommu_active(facts)
            if active is None:
                return verdict(Status.UNKNOWN, "unknown: iommu=pt without intel_iommu=on, and the kernel's build default is unknown",
                               ev, ["to settle it, collect: grep INTEL_IOMMU_DEFAULT_ON /boot/config-$(uname -r)"])
            default_on = active
        if pt_alone and not default_on:
            return verdict(Status.WARN, "iommu=pt without intel_iommu=on: iommu=pt does not turn the Intel IOMMU on", ev,
                           ["iommu=pt only sets identity mapping for host devices once an IOMMU is on."],
                           Remedy("Add intel_iommu=on.", tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], []))))
        if "on" in opts and default_on:
            return verdict(Status.PASS, "intel_iommu=on is harmless but not needed: this kernel's build default is on", ev,
                           [cfg_ev.value if cfg_ev else "the IOMMU is on by the kernel's build default"])
    if vendor == "amd" and "on" in c.option_values("amd_iommu"):
        log = try_fact(facts.kernel_log)
        ev += [Evidence(log.source, ln.strip()) for ln in (log.grep(r"AMD-Vi: Unknown option") if log else [])[:2]]
        return verdict(Status.WARN, "amd_iommu=on is not an AMD option (the kernel logs `AMD-Vi: Unknown option - 'on'`); "
                       "AMD-Vi is on by default", ev, [],
                       Remedy("Remove amd_iommu=on.", tuple(cmdline_edit_steps(facts, [], ["amd_iommu=on"]))))
    return verdict(Status.PASS, "no IOMMU argument that does something other than intended", ev)
