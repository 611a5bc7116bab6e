"""vm.guest_sees_gpu: the guest's PCI bus as QEMU holds it (`query-pci`), asked through libvirt's
qemu-monitor-command by argv (`virsh qemu-monitor-command`), so the Host seam stays the only way
out: a snapshot or a test folder answers the same command."""

from __future__ import annotations

import json

from doctor.model import Status
from doctor.vm.domxml import VmDomain

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

UNMAPPED = (0, 2**64 - 1)  # QEMU's PCI_BAR_UNMAPPED is (pcibus_t)-1
MAX_JSON = 8 * 1024 * 1024


def query_pci_argv(name: str, uri: str = "qemu:///system") -> tuple[str, ...]:
    return ("virsh", "-c", uri, "qemu-monitor-command", name, '{"execute":"query-pci"}')


def _walk(devices: Any, out: list[dict[str, Any]]) -> None:
    if not isinstance(devices, list):
        return
    for d in devices:
        if not isinstance(d, dict):
            continue
        out.append(d)
        br = d.get("pci_bridge")
        if isinstance(br, dict):
            _walk(br.get("devices"), out)


def parse_query_pci(text: str) -> list[dict[str, Any]]:
    """Every device of every bus (bridges' buses included); ValueError if it is not query-pci's answer."""
    if len(text) > MAX_JSON:
        raise ValueError("answer too large")
    doc = json.loads(text)
    ret = doc.get("return") if isinstance(doc, dict) else None
    if not isinstance(ret, list):
        raise ValueError("no `return` list in the answer")
    out: list[dict[str, Any]] = []
    for bus in ret:
        if isinstance(bus, dict):
            _walk(bus.get("devices"), out)
    return out


def _where(d: dict[str, Any]) -> str:
    return f"{d.get('bus', 0):02x}:{d.get('slot', 0):02x}.{d.get('function', 0):x}"


def _bars(d: dict[str, Any]) -> tuple[list[str], list[str]]:
    done: list[str] = []
    unset: list[str] = []
    for r in d.get("regions") or []:
        if not isinstance(r, dict) or not isinstance(r.get("address"), int):
            continue
        label = f"BAR{r.get('bar')}"
        (unset if r["address"] in UNMAPPED else done).append(f"{label}@{r['address']:#x}" if r["address"] not in UNMAPPED else label)
    return done, unset


def judge_guest_pci(host: Any, d: VmDomain, uri: str = "qemu:///system") -> list[tuple[Status, str]]:
    if host is None:
        return [(Status.UNKNOWN, "no host to ask")]
    argv = query_pci_argv(d.name, uri)
    r = host.run(argv, timeout=30)
    if not r.ok:
        return [(Status.UNKNOWN, f"query-pci not answered: {r.describe()}")]
    try:
        devs = parse_query_pci(r.stdout)
    except ValueError as e:
        return [(Status.UNKNOWN, f"query-pci answer unreadable: {e}")]
    by_id = {str(x.get("qdev_id")): x for x in devs if x.get("qdev_id")}
    out: list[tuple[Status, str]] = []
    for h in d.hostdevs:
        g = by_id.get(h.alias or "")
        if g is None:
            out.append((Status.FAIL, f"{h.source} ({h.alias or 'no alias'}) is not on the guest's PCI bus"))
            continue
        ident = g.get("id") or {}
        what = f"{h.source} -> guest {_where(g)} [{ident.get('vendor', 0):04x}:{ident.get('device', 0):04x}]"
        done, unset = _bars(g)
        if unset and not done:
            out.append((Status.WARN, f"{what}: no BAR programmed yet ({', '.join(unset)}): the guest's firmware has not "
                                     "assigned them (still booting, or the BAR does not fit its MMIO window)"))
        else:
            out.append((Status.PASS, f"{what}" + (f", {', '.join(done)}" if done else ", no BARs")))
    return out
