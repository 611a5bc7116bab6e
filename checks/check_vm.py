"""What a passthrough guest needs from the host: all of its RAM pinned (VFIO maps it for DMA)."""

from __future__ import annotations

from checks.common import try_fact
from doctor.model import Evidence, Remedy, Status, Verdict, verdict
from doctor.registry import Context, check


def _gib(kib: int) -> str:
    return f"{kib / 1024 / 1024:.1f} GiB"


@check("vm.memory_pinnable", "Guest RAM can be locked for VFIO (libvirt domains with host devices)")
def vm_memory_pinnable(ctx: Context) -> Verdict:
    """VFIO pins every page of the guest: a `<hard_limit>` below the guest's memory, too few free
    hugepages for a hugepage-backed guest, or less RAM than the guest asks for, end in
    `VFIO_MAP_DMA failed: Cannot allocate memory` / `RLIMIT_MEMLOCK` errors at start."""
    facts = ctx.facts
    doms = [d for d in facts.libvirt_domains() if d.hostdevs]
    if not doms:
        return verdict(
            Status.NOT_APPLICABLE,
            "no libvirt domain with a PCI host device",
            [Evidence("/etc/libvirt/qemu", "no <hostdev type='pci'> in any domain")],
            ["For a plain QEMU run, the user's locked-memory limit (`ulimit -l`) must cover the guest's RAM; "
             "libvirt raises it by itself for domains with host devices."],
        )
    mi = try_fact(facts.meminfo)
    ev: list[Evidence] = []
    fails: list[str] = []
    warns: list[str] = []
    for d in doms:
        mem = d.memory_kib
        ev.append(Evidence(d.file, f"{d.name}: memory {_gib(mem) if mem else 'unknown'}, {d.hostdevs} host device(s)"
                           + (", hugepages" if d.hugepages else "") + (f", hard_limit {_gib(d.hard_limit_kib)}" if d.hard_limit_kib else "")))
        if mem is None:
            warns.append(f"{d.name}: memory size not readable from its definition")
            continue
        if d.hard_limit_kib is not None and d.hard_limit_kib < mem:
            fails.append(f"{d.name}: <hard_limit> {_gib(d.hard_limit_kib)} is below its memory {_gib(mem)}: libvirt sets "
                         "QEMU's locked-memory limit to it and VFIO cannot pin the guest (`VFIO_MAP_DMA failed: Cannot allocate memory`)")
        if mi is None:
            continue
        if d.hugepages:
            size = mi.get("Hugepagesize", 0)
            free = mi.get("HugePages_Free", 0) * size
            ev.append(Evidence("/proc/meminfo", f"HugePages_Free {mi.get('HugePages_Free', 0)} x {size} kB"))
            if free < mem:
                fails.append(f"{d.name}: hugepage-backed but only {_gib(free)} of {size // 1024} MiB hugepages are free for {_gib(mem)}")
        elif mi.get("MemTotal", 0) and mi["MemTotal"] < mem:
            fails.append(f"{d.name}: asks for {_gib(mem)}, the host has {_gib(mi['MemTotal'])}")
        elif mi.get("MemAvailable", 0) and mi["MemAvailable"] < mem:
            warns.append(f"{d.name}: {_gib(mem)} to pin, {_gib(mi['MemAvailable'])} available now")
    if fails:
        return verdict(Status.FAIL, "; ".join(fails), ev, warns,
                       Remedy("Raise or drop <memtune><hard_limit>, reserve enough hugepages "
                              "(vm.nr_hugepages / hugepages= on the command line), or give the guest less memory.",
                              ("sudo virsh edit DOMAIN",)))
    if warns:
        return verdict(Status.WARN, "; ".join(warns), ev,
                       ["VFIO pins all guest RAM at start: the host cannot swap or reclaim it."])
    if mi is None:
        return verdict(Status.UNKNOWN, "unknown: host memory not known (hard limits are fine)", ev,
                       ["to settle it, collect: cat /proc/meminfo"])
    return verdict(Status.PASS, f"{len(doms)} domain(s) with host devices fit in memory and their limits", ev)
