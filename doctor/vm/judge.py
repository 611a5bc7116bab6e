"""Per-domain judgements of the vm.* checks, below both the checks (checks/check_vm_guest.py) and
`vm create` (which runs them on the domain it is about to define): one decision, rendered twice."""

from __future__ import annotations

from doctor.facts import Facts, PciDevice
from doctor.model import Status
from doctor.vm.domains import pid_alive
from doctor.vm.domxml import VmDomain
from doctor.vm.unit import kvm_hiding, passthrough_unit

RANK = {Status.PASS: 0, Status.NOT_APPLICABLE: 0, Status.UNKNOWN: 1, Status.WARN: 2, Status.FAIL: 3}
Finding = tuple[Status, str]


def _cards(facts: Facts, d: VmDomain) -> list[PciDevice]:
    devs = facts.pci_devices()
    return [devs[h.source] for h in d.hostdevs if h.source in devs and devs[h.source].is_display]


# --- per-domain judgements, shared with `vm create` (judge_definition)

def _slot(guest: str | None) -> str | None:
    return guest.rsplit(".", 1)[0] if guest else None


def judge_cover(facts: Facts, d: VmDomain) -> list[Finding]:
    devs = facts.pci_devices()
    src = {h.source: h for h in d.hostdevs}
    out: list[Finding] = []
    for a in src:
        if a not in devs:
            out.append((Status.FAIL, f"{a} is not on this host (moved card, changed slot): QEMU fails to start"))
    for gpu in _cards(facts, d):
        unit = {u.address for u in passthrough_unit(facts, gpu)}
        missing = sorted(unit - set(src))
        outside = sorted(a for a in src if a in devs and devs[a].slot == gpu.slot and a not in unit)
        if missing:
            out.append((Status.FAIL, f"{gpu.address}'s unit also has {', '.join(missing)}: not given to the guest "
                                     "(the group is not viable while they stay with host drivers)"))
        if outside:
            out.append((Status.FAIL, f"{', '.join(outside)} in {gpu.slot} is not part of the card"))
        guest = {_slot(src[a].guest) for a in unit if a in src}
        if not missing and (None in guest or len(guest) > 1):
            out.append((Status.WARN, f"{gpu.address}'s functions are not on one guest slot "
                                     "(the guest sees separate devices; set each <address> to one slot, multifunction='on' on .0)"))
        elif not missing and not outside:
            out.append((Status.PASS, f"{gpu.address}: all {len(unit)} function(s) on one guest slot"))
    if not out:
        out.append((Status.PASS, f"{len(src)} host device(s), no GPU among them"))
    return out


def judge_q35(d: VmDomain) -> list[Finding]:
    m = d.machine or ""
    if m == "q35" or m.startswith("pc-q35"):
        return [(Status.PASS, f"machine {m}")]
    if not m:
        return [(Status.UNKNOWN, "no machine type in the definition")]
    return [(Status.WARN, f"machine {m}: the card sits on a conventional PCI bus without a PCIe link "
                          "(GPU drivers misread the link; AMD's need it); recreate it as q35")]


def judge_hidden(facts: Facts, d: VmDomain) -> list[Finding]:
    out: list[Finding] = []
    for gpu in _cards(facts, d):
        need = kvm_hiding(gpu)
        if not need.needed:
            out.append((Status.NOT_APPLICABLE, need.reason))
        elif d.kvm_hidden and d.vendor_id:
            out.append((Status.PASS, f"KVM hidden, vendor_id {d.vendor_id!r}"))
        else:
            miss = [w for w, ok in (("<kvm><hidden state='on'/>", d.kvm_hidden), ("<hyperv><vendor_id state='on'>", d.vendor_id)) if not ok]
            out.append((Status.WARN, f"{need.reason}; missing: {', '.join(miss)}"))
    return out or [(Status.NOT_APPLICABLE, "no GPU among its host devices")]


def judge_definition(d: VmDomain, facts: Facts) -> list[tuple[str, Status, str]]:
    """What vm.hostdevs_cover_unit, vm.machine_q35 and vm.kvm_hidden say of one definition."""
    out = []
    for cid, fs in (("vm.hostdevs_cover_unit", judge_cover(facts, d)), ("vm.machine_q35", judge_q35(d)),
                    ("vm.kvm_hidden", judge_hidden(facts, d))):
        st = max((s for s, _ in fs), key=lambda s: RANK[s])
        out.append((cid, st, "; ".join(m for s, m in fs if s == st)))
    return out


WEDGED_REASONS = {"ioerror", "crashed", "panicked", "unknown", "postcopy-failed", "api-error"}


def judge_wedged(facts: Facts, d: VmDomain) -> list[Finding]:
    if d.state is None:
        return [(Status.PASS, "not running")]
    if d.state in ("crashed",) or (d.state == "paused" and (d.reason or "") in WEDGED_REASONS):
        return [(Status.FAIL, f"{d.state} ({d.reason or 'no reason'}): it still holds its devices")]
    if d.pid is not None:
        alive = pid_alive(facts, d.pid)
        if alive is False:
            return [(Status.FAIL, f"libvirt says {d.state} but its QEMU (pid {d.pid}) is gone: the group stays claimed")]
        if alive is None:
            return [(Status.UNKNOWN, f"{d.state}; whether QEMU pid {d.pid} lives is unknown")]
    return [(Status.PASS, f"{d.state}" + (f" ({d.reason})" if d.reason else ""))]
