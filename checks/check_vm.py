"""libvirt domains with a GPU: memory locking, the hostdevs, the machine, KVM hidden, wedged VMs, what the
guest sees."""

from __future__ import annotations

from checks.common import try_fact
from doctor.checkapi import Context, check
from doctor.model import Evidence, Remedy, Severity, Status, Verdict, VmCleanup, verdict
from doctor.vm.domains import STATUS, inventory
from doctor.vm.domxml import VmDomain
from doctor.vm.guestsees import judge_guest_pci
from doctor.vm.judge import RANK, Finding, judge_cover, judge_hidden, judge_q35, judge_wedged


def _gib(kib: int) -> str:
    return f"{kib / 1024 / 1024:.1f} GiB"


@check("vm.memory_pinnable", "Guest RAM can be locked for VFIO (libvirt domains with host devices)")
def vm_memory_pinnable(ctx: Context) -> Verdict:
    """VFIO pins every page of the guest: a `<hard_limit>` below the guest's memory, too few free
    hugepages for a hugepage-backed guest, or less RAM than the guest asks for, end in
    `VFIO_MAP_DMA failed: Cannot allocate memory` / `RLIMIT_MEMLOCK` errors at start."""
    facts = ctx.facts
    doms = [d for d in facts.libvirt_domains() if d.hostdevs and _asked(ctx, d.name)]
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


def _asked(ctx: Context, name: str) -> bool:
    """check --vm NAME: only that domain is judged."""
    want = ctx.options.get("vm")
    return want is None or name == want


def _with_hostdevs(ctx: Context) -> list[VmDomain]:
    return [d for d in inventory(ctx.facts).domains if d.hostdevs and _asked(ctx, d.name)]


def _none(ctx: Context) -> Verdict:
    want = ctx.options.get("vm")
    if want is not None:
        return verdict(Status.NOT_APPLICABLE, f"domain {want} has no PCI host device",
                       [Evidence("/etc/libvirt/qemu", f"no <hostdev type='pci'> in {want}")])
    return verdict(Status.NOT_APPLICABLE, "no libvirt domain with a PCI host device",
                   [Evidence("/etc/libvirt/qemu", "no <hostdev type='pci'> in any domain")])


def _combine(per: list[tuple[VmDomain, list[Finding]]], ok: str, remedy: Remedy | None = None) -> Verdict:
    ev = [Evidence(d.file, f"{d.name}: {msg}") for d, fs in per for _, msg in fs]
    worst = max((st for _, fs in per for st, _ in fs), key=lambda s: RANK[s], default=Status.PASS)
    bad = [f"{d.name}: {msg}" for d, fs in per for st, msg in fs if st == worst]
    if worst in (Status.PASS, Status.NOT_APPLICABLE):
        return verdict(worst, ok, ev)
    return verdict(worst, "; ".join(bad), ev, [], remedy)


# --- the checks

@check("vm.hostdevs_cover_unit", "Each VM with a GPU gets the whole card, nothing else, at addresses on this host")
def vm_hostdevs_cover_unit(ctx: Context) -> Verdict:
    """Every function of the card (its slot's functions) is a <hostdev> of the domain, no other
    function of that slot, every source address exists here, and the guest sees one multifunction card."""
    doms = _with_hostdevs(ctx)
    if not doms:
        return _none(ctx)
    return _combine([(d, judge_cover(ctx.facts, d)) for d in doms], f"{len(doms)} domain(s) take whole cards",
                    Remedy("Recreate the domain from this host's devices.", ("gpudoctor vm create NAME --gpu ADDR",)))


@check("vm.machine_q35", "VMs with a GPU use the q35 (PCIe) machine", severity=Severity.ADVICE)
def vm_machine_q35(ctx: Context) -> Verdict:
    """i440fx has no PCIe: the card's link capability is meaningless to the guest's driver."""
    doms = _with_hostdevs(ctx)
    if not doms:
        return _none(ctx)
    return _combine([(d, judge_q35(d)) for d in doms], "every domain with a host device is q35")


@check("vm.kvm_hidden", "KVM is hidden where the card's driver refuses a VM", severity=Severity.ADVICE)
def vm_kvm_hidden(ctx: Context) -> Verdict:
    """NVIDIA GeForce/Quadro drivers before R465 stop with Code 43 in a VM they recognise as KVM."""
    doms = _with_hostdevs(ctx)
    if not doms:
        return _none(ctx)
    return _combine([(d, judge_hidden(ctx.facts, d)) for d in doms], "no card here needs KVM hidden, or it is hidden")


@check("vm.not_wedged", "No VM with a GPU is paused on error or left behind by a dead QEMU")
def vm_not_wedged(ctx: Context) -> Verdict:
    """A domain paused on an error, crashed, or whose QEMU died keeps its host devices: the card
    cannot go back to the host or to another VM until it is destroyed and undefined."""
    inv = inventory(ctx.facts)
    doms = [d for d in inv.domains if d.hostdevs and _asked(ctx, d.name)]
    if not doms:
        return _none(ctx)
    if not inv.status_known:
        return verdict(Status.UNKNOWN, f"unknown: {STATUS} could not be read", [Evidence(STATUS, "not readable")],
                       [f"to settle it, collect: sudo ls {STATUS}; virsh list --all"])
    per = [(d, judge_wedged(ctx.facts, d)) for d in doms]
    names = [d.name for d, fs in per if any(s == Status.FAIL for s, _ in fs)]
    return _combine(per, "no wedged domain", Remedy(
        "Destroy and undefine it; gpudoctor deletes only the volumes it created.",
        tuple(f"sudo gpudoctor vm cleanup {n} --apply --yes" for n in names), VmCleanup(tuple(names))))


@check("vm.guest_sees_gpu", "A running VM's guest sees each passed-through function with programmed BARs")
def vm_guest_sees_gpu(ctx: Context) -> Verdict:
    """QEMU's own view of the guest's PCI bus (`query-pci` through libvirt's qemu-monitor-command):
    each hostdev is there, under the alias libvirt gave it, with BARs the guest's firmware assigned."""
    inv = inventory(ctx.facts)
    doms = [d for d in inv.domains if d.hostdevs and d.state == "running" and _asked(ctx, d.name)]
    if not doms:
        return verdict(Status.NOT_APPLICABLE, "no running libvirt domain with a PCI host device",
                       [Evidence(STATUS, "no active domain with <hostdev type='pci'>")])
    host = getattr(ctx.facts, "host", None)
    return _combine([(d, judge_guest_pci(host, d)) for d in doms], "every running guest sees its host devices")
