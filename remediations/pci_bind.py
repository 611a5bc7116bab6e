"""Bind now: every endpoint of the GPU's group that is not on vfio-pci goes
there through driver_override (never new_id, which also grabs every other
device with the same id, such as a second identical card the host uses)."""

from __future__ import annotations

from checks.common import VIABLE_DRIVERS, endpoints
from doctor.facts import Facts, PciDevice
from doctor.plan import NOW, Action, Bind, LoadModule


def plan_bind(facts: Facts, gpu: PciDevice, checks: tuple[str, ...], force: bool = False) -> tuple[list[Action], str | None]:
    members = facts.group_members(gpu)
    if members is None:
        return [], f"{gpu.address} has no IOMMU group: enable the IOMMU first (nothing can be bound)"
    others = [m for m in members if m.slot != gpu.slot and not m.is_bridge]
    if others:
        return [], (
            f"group {gpu.iommu_group} also holds " + ", ".join(f"{m.address} ({m.name or m.ident}, {m.driver or 'no driver'})" for m in others)
            + ": binding them would take them from the host; nothing is bound (see gpu.group_isolated)"
        )
    eps = endpoints(facts, gpu)
    blocking = [d for d in eps if d.driver is not None and d.driver not in VIABLE_DRIVERS]
    hazards = [d for d in blocking if d.boot_vga or d.base_class in (0x01, 0x02)]
    if hazards and not force:
        return [], (
            "refusing without --force: " + ", ".join(
                f"{d.address} is {'the boot display' if d.boot_vga else 'a storage controller' if d.base_class == 1 else 'a network controller'}"
                for d in hazards) + " the host may be using"
        )
    acts: list[Action] = []
    mods = None
    try:
        mods = facts.modules()
    except Exception:  # noqa: BLE001
        pass
    if mods is None or not mods.present("vfio_pci"):
        acts.append(LoadModule(checks, "vfio-pci must be loaded to bind to it", NOW, module="vfio-pci"))
    for d in blocking:
        acts.append(Bind(checks, f"{d.address} [{d.class_hex}] {d.ident} blocks the group on {d.driver}", NOW, unbinds=True,
                         address=d.address, previous_driver=d.driver, previous_override=d.driver_override))
    return acts, None
