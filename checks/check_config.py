"""Drift: vfio ids and libvirt host devices against the devices this host has now."""

from __future__ import annotations

from checks.common import configured_ids, try_fact
from doctor.checkapi import Context, check
from doctor.model import Evidence, Remedy, Status, Verdict, verdict

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
    for ident, where in sorted(configured_ids(facts).items()):
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
