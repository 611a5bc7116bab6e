"""Bind now: every function of the GPU's passthrough unit that is not on
vfio-pci goes there through driver_override (never new_id, which also grabs every other
device with the same id, such as a second identical card the host uses)."""

from __future__ import annotations

from doctor.facts import Facts, PciDevice
from doctor.passthrough import VIABLE_DRIVERS, passthrough_unit, refusal
from doctor.plan import NOW, Action, Bind, LoadModule


def plan_bind(facts: Facts, gpu: PciDevice, checks: tuple[str, ...], force: bool = False) -> tuple[list[Action], str | None]:
    members = facts.group_members(gpu)
    if members is None:
        return [], f"{gpu.address} has no IOMMU group: enable the IOMMU first (nothing can be bound)"
    why = refusal(facts, gpu, force, runtime=True)
    if why:
        return [], why + " (see gpu.group_isolated, gpu.group_safe)"
    unit = passthrough_unit(facts, gpu)
    blocking = [d for d in unit.functions if d.driver is not None and d.driver not in VIABLE_DRIVERS]
    # QEMU opens every function it is given through vfio-pci: one with no driver (or on pci-stub) keeps the
    # group viable but fails with `error getting device from group N: No such device`, so it is bound too
    idle = [d for d in unit.functions if d not in blocking and d.driver != "vfio-pci"] if blocking else []
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
    for d in idle:
        acts.append(Bind(checks, f"{d.address} [{d.class_hex}] {d.ident} is on {d.driver or 'no driver'}: QEMU needs it on vfio-pci",
                         NOW, unbinds=d.driver is not None, address=d.address, previous_driver=d.driver,
                         previous_override=d.driver_override))
    return acts, None
