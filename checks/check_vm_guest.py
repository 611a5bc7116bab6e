"""The guest side: domains that take a GPU (vm.hostdevs_cover_unit, vm.machine_q35, vm.kvm_hidden,
vm.not_wedged, vm.guest_sees_gpu) and the guest image's serial console (guest.serial_getty)."""

from __future__ import annotations

from doctor.facts import Facts
from doctor.model import Evidence, Remedy, Severity, Status, Verdict, verdict
from doctor.registry import Context, check
from doctor.vm.domains import STATUS, inventory
from doctor.vm.domxml import VmDomain
from doctor.vm.guestsees import judge_guest_pci
from doctor.vm.judge import RANK, Finding, judge_cover, judge_hidden, judge_q35, judge_wedged


def _with_hostdevs(facts: Facts) -> list[VmDomain]:
    return [d for d in inventory(facts).domains if d.hostdevs]


def _none() -> Verdict:
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
    doms = _with_hostdevs(ctx.facts)
    if not doms:
        return _none()
    return _combine([(d, judge_cover(ctx.facts, d)) for d in doms], f"{len(doms)} domain(s) take whole cards",
                    Remedy("Recreate the domain from this host's devices.", ("gpudoctor vm create NAME --gpu ADDR",)))


@check("vm.machine_q35", "VMs with a GPU use the q35 (PCIe) machine", severity=Severity.ADVICE)
def vm_machine_q35(ctx: Context) -> Verdict:
    """i440fx has no PCIe: the card's link capability is meaningless to the guest's driver."""
    doms = _with_hostdevs(ctx.facts)
    if not doms:
        return _none()
    return _combine([(d, judge_q35(d)) for d in doms], "every domain with a host device is q35")


@check("vm.kvm_hidden", "KVM is hidden where the card's driver refuses a VM", severity=Severity.ADVICE)
def vm_kvm_hidden(ctx: Context) -> Verdict:
    """NVIDIA GeForce/Quadro drivers before R465 stop with Code 43 in a VM they recognise as KVM."""
    doms = _with_hostdevs(ctx.facts)
    if not doms:
        return _none()
    return _combine([(d, judge_hidden(ctx.facts, d)) for d in doms], "no card here needs KVM hidden, or it is hidden")


@check("vm.not_wedged", "No VM with a GPU is paused on error or left behind by a dead QEMU", fix="vm_cleanup")
def vm_not_wedged(ctx: Context) -> Verdict:
    """A domain paused on an error, crashed, or whose QEMU died keeps its host devices: the card
    cannot go back to the host or to another VM until it is destroyed and undefined."""
    inv = inventory(ctx.facts)
    doms = [d for d in inv.domains if d.hostdevs]
    if not doms:
        return _none()
    if not inv.status_known:
        return verdict(Status.UNKNOWN, f"unknown: {STATUS} could not be read", [Evidence(STATUS, "not readable")],
                       [f"to settle it, collect: sudo ls {STATUS}; virsh list --all"])
    per = [(d, judge_wedged(ctx.facts, d)) for d in doms]
    names = [d.name for d, fs in per if any(s == Status.FAIL for s, _ in fs)]
    return _combine(per, "no wedged domain", Remedy(
        "Destroy and undefine it; gpudoctor deletes only the volumes it created.",
        tuple(f"sudo gpudoctor vm cleanup {n} --apply --yes" for n in names), "vm_cleanup"))


@check("vm.guest_sees_gpu", "A running VM's guest sees each passed-through function with programmed BARs")
def vm_guest_sees_gpu(ctx: Context) -> Verdict:
    """QEMU's own view of the guest's PCI bus (`query-pci` through libvirt's qemu-monitor-command):
    each hostdev is there, under the alias libvirt gave it, with BARs the guest's firmware assigned."""
    inv = inventory(ctx.facts)
    doms = [d for d in inv.domains if d.hostdevs and d.state == "running"]
    if not doms:
        return verdict(Status.NOT_APPLICABLE, "no running libvirt domain with a PCI host device",
                       [Evidence(STATUS, "no active domain with <hostdev type='pci'>")])
    host = getattr(ctx.facts, "host", None)
    return _combine([(d, judge_guest_pci(host, d)) for d in doms], "every running guest sees its host devices")




@check("guest.serial_getty", "The guest image starts a login on its serial console (ttyS0)", severity=Severity.ADVICE,
       fix="guest_getty")
def guest_serial_getty(ctx: Context) -> Verdict:
    """Read offline with libguestfs (read-only), only when asked (`gpudoctor vm getty NAME` or an image):
    serial-getty@ttyS0.service enabled, or console=ttyS0 on the guest kernel's command line (systemd
    then starts that getty by itself)."""
    image = ctx.options.get("image")
    if not image:
        return verdict(Status.NOT_APPLICABLE, "no guest image given (gpudoctor vm getty NAME, or --image PATH)")
    from doctor.vm.getty import judge
    from doctor.vm.guestfs import parse_read, read_argv

    host = getattr(ctx.facts, "host", None)
    if host is None:
        return verdict(Status.UNKNOWN, "unknown: no host to run libguestfs on")
    prefix = tuple(ctx.options.get("guestfs_env", "").split()) if ctx.options.get("guestfs_env") else ()
    argv = read_argv(image, ctx.options.get("image_format", "raw"), prefix)
    r = host.run(argv, timeout=600)
    src = Evidence(image, " ".join(argv[argv.index("guestfish"):][:6]) + " ...")
    if not r.ok:
        err = (r.stderr or r.stdout).strip().splitlines()
        return verdict(Status.UNKNOWN, f"unknown: the image could not be read: {r.describe()}", [src],
                       [*err[-3:], "libguestfs needs a kernel for its appliance (Debian: linux-image-amd64); where KVM "
                        "fails, LIBGUESTFS_BACKEND_SETTINGS=force_tcg"])
    try:
        view = parse_read(r.stdout)
    except ValueError as e:
        return verdict(Status.UNKNOWN, f"unknown: {e}", [src])
    j = judge(view)
    ev = [src, *(Evidence(w, v) for w, v in j.evidence)]
    remedy = None
    if j.fixable:
        target = ctx.options.get("vm") or f"--image {image}"
        remedy = Remedy("Enable serial-getty@ttyS0.service offline (a symlink in getty.target.wants), with the domain shut off.",
                        (f"sudo gpudoctor vm getty {target} --apply --yes",), "guest_getty")
    return verdict(j.status, j.summary, ev, [], remedy)
