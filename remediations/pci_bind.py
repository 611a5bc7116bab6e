"""Bind now: every endpoint of the GPU's group that is not on vfio-pci goes
there through driver_override (never new_id, which also grabs every other
device with the same id, such as a second identical card the host uses)."""

from __future__ import annotations

from checks.common import VIABLE_DRIVERS, endpoints, mount_controllers, route_nics
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts import Facts, PciDevice
from doctor.plan import NOW, Action, Bind, LoadModule


def plan_bind(facts: Facts, gpu: PciDevice, checks: tuple[str, ...], force: bool = False) -> tuple[list[Action], str | None]:
    members = facts.group_members(gpu)
    if members is None:
        return [], f"{gpu.address} has no IOMMU group: enable the IOMMU first (nothing can be bound)"
    others = [m for m in members if m.slot != gpu.slot and not m.is_bridge]
    if others:
        runs_on = [why for _, sure, why in _hazards(facts, others) if sure]
        return [], (
            f"group {gpu.iommu_group} also holds " + ", ".join(f"{m.address} ({m.name or m.ident}, {m.driver or 'no driver'})" for m in others)
            + ": binding them would take them from the host" + (" (" + "; ".join(runs_on) + ")" if runs_on else "")
            + "; nothing is bound (see gpu.group_isolated, gpu.group_safe)"
        )
    eps = endpoints(facts, gpu)
    blocking = [d for d in eps if d.driver is not None and d.driver not in VIABLE_DRIVERS]
    hazards = _hazards(facts, blocking)
    # what the host runs on right now is never taken, not even with --force
    certain = [h for h in hazards if h[1]]
    if certain:
        return [], "refusing: " + "; ".join(why for _, _, why in certain) + " (see gpu.group_safe)"
    if hazards and not force:
        return [], "refusing without --force: " + "; ".join(why for _, _, why in hazards)
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


def _hazards(facts: Facts, devs: list[PciDevice]) -> list[tuple[PciDevice, bool, str]]:
    """(device, certain, why) for each device the host may be running on. Certain: it holds a
    mounted filesystem or carries the default route (gpu.group_safe's analysis, through
    partitions, device-mapper, bridges and bonds). Possible: the boot display, or a storage or
    network controller whose use could not be read."""
    out: list[tuple[PciDevice, bool, str]] = []
    try:
        mounts: dict[str, list[str]] | None = mount_controllers(facts)
    except (FactUnknown, NotCaptured):
        mounts = None
    try:
        routes: dict[str, list[str]] | None = route_nics(facts)
    except (FactUnknown, NotCaptured):
        routes = None
    for d in devs:
        if mounts and d.address in mounts:
            out.append((d, True, f"{d.address} holds mounted filesystems: {', '.join(mounts[d.address][:3])}"))
        elif routes and d.address in routes:
            out.append((d, True, f"{d.address} carries the default route ({', '.join(routes[d.address])})"))
        elif d.boot_vga:
            out.append((d, False, f"{d.address} is the boot display the host may be using"))
        elif d.base_class == 0x01 and mounts is None:
            out.append((d, False, f"{d.address} is a storage controller and the mounts could not be read"))
        elif d.base_class == 0x02 and routes is None:
            out.append((d, False, f"{d.address} is a network controller and the routes could not be read"))
    return out
