"""Record-shaped device listings: `lspci -vmm` (`Slot:`/`Class:`/`IOMMUGroup:` records) and `lshw -c display`
(`bus info: pci@...`, `configuration: driver=...`) → devices and the groups they name (pure)."""

from __future__ import annotations

import re

from doctor.facts import normalize_pci_address
from doctor.pasted.chunks import DevInfo
from doctor.pasted.forms import class_id

_ID = re.compile(r"^(.*?)\s*\[([0-9a-fA-F]{4})\]\s*$")


def parse_lspci_vmm(lines: tuple[str, ...]) -> tuple[list[DevInfo], dict[str, list[str]]]:
    """(devices with the line of their `Slot:`, groups by number). Drivers are known only where the records
    carry `Driver:`/`Module:` lines (lspci -k)."""
    recs: list[tuple[int, dict[str, str]]] = []
    cur: dict[str, str] | None = None
    for n, raw in enumerate(lines):
        k, sep, v = raw.partition(":")
        if not sep:
            continue
        k, v = k.strip(), v.strip()
        if k == "Slot":
            cur = {}
            recs.append((n, cur))
        if cur is not None:
            cur.setdefault(k, v)
    with_k = any("Driver" in r or "Module" in r for _, r in recs)
    devs: list[DevInfo] = []
    groups: dict[str, list[str]] = {}
    for n, r in recs:
        try:
            addr = normalize_pci_address(r["Slot"])
        except ValueError:
            continue
        d = DevInfo(addr, line=n)
        m = _ID.match(r.get("Class", ""))
        cls = m.group(2) if m else class_id(r.get("Class", ""))
        d.class_code = (int(cls, 16) << 8 | int(r.get("ProgIf", "0") or "0", 16)) if cls else None
        for key, attr in (("Vendor", "vendor"), ("Device", "device")):
            m = _ID.match(r.get(key, ""))
            if m:
                setattr(d, attr, m.group(2).lower())
        m = _ID.match(r.get("Device", ""))
        d.name = (m.group(1) if m else r.get("Device")) or None
        d.revision = r.get("Rev")
        if with_k:
            d.driver, d.driver_known = r.get("Driver") or None, True
            d.modules, d.modules_known = tuple(x.strip() for x in r.get("Module", "").split(",") if x.strip()), True
        if r.get("IOMMUGroup", "").isdigit():
            groups.setdefault(r["IOMMUGroup"], []).append(addr)
        devs.append(d)
    return devs, groups


def parse_lshw(lines: tuple[str, ...]) -> list[DevInfo]:
    """`lshw -c display` (or any class) blocks: a device per `bus info: pci@...`; the driver is known when the
    block shows its `configuration:` line (lshw names a bound driver there; without `driver=` none is bound)."""
    out: list[DevInfo] = []
    block: dict[str, str] = {}
    start = 0

    def close() -> None:
        bus = block.get("bus info", "")
        if not bus.startswith("pci@"):
            return
        try:
            addr = normalize_pci_address(bus[4:])
        except ValueError:
            return
        d = DevInfo(addr, line=start, name=block.get("product"))
        cls = class_id(block.get("description", ""))
        d.class_code = int(cls, 16) << 8 if cls else None
        if "configuration" in block:
            m = re.search(r"\bdriver=(\S+)", block["configuration"])
            d.driver, d.driver_known = (m.group(1) if m else None), True
        out.append(d)

    for n, raw in enumerate(lines):
        s = raw.strip()
        if s.startswith("*-"):
            close()
            block, start = {}, n
            continue
        k, sep, v = s.partition(":")
        if sep:
            block.setdefault(k.strip(), v.strip())
    close()
    return out
