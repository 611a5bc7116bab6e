"""GPUs and the isolation of their IOMMU group."""

from __future__ import annotations

from checks.common import driver_text, pci_evidence, pci_where
from doctor.errors import FactUnknown
from doctor.model import Evidence, Remedy, Status, Verdict, verdict
from doctor.passthrough import passthrough_unit
from doctor.registry import Context, check


@check("gpu.candidate", "A GPU that can be handed to a guest")
def gpu_candidate(ctx: Context) -> Verdict:
    """Every display-class device (0300 VGA, 0302 3D, 0380 display), its functions,
    group, driver and boot_vga; the chosen one should not be the host's boot display."""
    facts = ctx.facts
    gpus = facts.gpus()
    if not gpus:
        devs = facts.pci_devices()
        unlisted = facts.unlisted_devices()
        if unlisted is not None:
            raise unlisted
        return verdict(
            Status.FAIL,
            f"no GPU: none of the {len(devs)} PCI devices is display-class (0300, 0302, 0380)",
            [Evidence("/sys/bus/pci/devices", f"{len(devs)} devices, no class 03xx")],
            remedy=Remedy("Install a GPU (or check that it is seated and powered); nothing to pass through yet."),
        )
    ev: list[Evidence] = []
    for g in gpus:
        funcs = facts.slot_functions(g)
        bv = {True: "boot display", False: "not the boot display", None: "boot_vga unknown"}[g.boot_vga]
        grp = f"IOMMU group {g.iommu_group}" if g.iommu_group is not None else "no IOMMU group"
        ev.append(pci_evidence(g))
        ev.append(Evidence(pci_where(g), f"{bv}; {grp}; {len(funcs)} function(s): "
                           + ", ".join(f"{f.address} [{f.class_hex}] {f.ident} ({driver_text(f)})" for f in funcs)))
    chosen = ctx.gpu
    if chosen is None:
        return verdict(Status.FAIL, "no GPU selected", ev)
    if chosen.boot_vga is None and chosen.class_code >> 8 == 0x0300:  # VGA class: sysfs has boot_vga, the source did not show it
        raise FactUnknown(f"whether {chosen.address} is the boot display", "not in the evidence",
                          "grep . /sys/bus/pci/devices/*/boot_vga")
    if chosen.boot_vga:
        return verdict(
            Status.WARN,
            f"{chosen.address} is the host's boot display: the host loses its console when it is handed over",
            ev,
            ["Passing the boot GPU works on many hosts but needs care: framebuffer/console release, and another way to reach the host."],
            Remedy("Prefer a second GPU for the guest, or make sure you can reach the host over the network before binding the boot display."),
        )
    others = [g.address for g in gpus if g.slot != chosen.slot]
    extra = f" ({len(others)} other GPU(s) stay with the host)" if others else ""
    return verdict(Status.PASS, f"{chosen.address} {chosen.name or chosen.ident} is a passthrough candidate{extra}", ev)


@check("gpu.group_isolated", "GPU's IOMMU group holds only the GPU's own functions", per_gpu=True)
def gpu_group_isolated(ctx: Context) -> Verdict:
    """Bridges excepted, every device in the GPU's group is a function of the GPU's card: its
    passthrough unit (doctor.passthrough: same slot, the GPU's vendor, display/audio/USB-C
    classes). On an APU the SoC's PSP, USB and audio functions share the slot but are not the GPU's."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    members = facts.group_members(gpu)
    if members is None:
        return verdict(Status.NOT_APPLICABLE, f"{gpu.address} has no IOMMU group (IOMMU not active: see iommu.active)",
                       [pci_evidence(gpu)])
    ev = [Evidence(facts.where("iommu_groups", f"/sys/kernel/iommu_groups/{gpu.iommu_group}/devices"), ", ".join(m.address for m in members))]
    ev += [pci_evidence(m) for m in members]
    unit = passthrough_unit(facts, gpu)
    if unit.groups_unknown is not None:
        raise unit.groups_unknown
    others = list(unit.intruders)
    if not others:
        return verdict(Status.PASS, f"group {gpu.iommu_group} holds only {gpu.slot}'s {len(unit.functions)} function(s)"
                       + (" and bridges" if unit.bridges else ""), ev)
    names = unit.describe_intruders()
    return verdict(
        Status.FAIL,
        f"group {gpu.iommu_group} also holds {len(others)} unrelated device(s): {names}",
        ev,
        [
            "Everything in a group goes to the guest together: these devices would have to leave the host too.",
            "No automatic fix: the group is decided by the hardware topology and ACS support.",
        ],
        Remedy(
            "Move the GPU to another slot (one wired to the CPU's own root port usually has its own group), "
            "or use a board/firmware with ACS on that port. The pcie_acs_override kernel patch only hides the "
            "problem: devices can still talk to each other behind the IOMMU's back.",
            ("# list groups: for d in /sys/kernel/iommu_groups/*/devices/*; do echo \"$(basename $(dirname $(dirname $d))) $(lspci -nns ${d##*/})\"; done",),
        ),
    )
