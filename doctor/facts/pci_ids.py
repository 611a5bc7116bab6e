"""What `lspci -nnk` adds to sysfs, read from the same files lspci reads: device names from the
system's pci.ids, and the kernel modules that would claim a device (its sysfs `modalias` matched
against the running kernel's modules.alias, as libkmod does). Pure functions of bytes and text."""

from __future__ import annotations

import fnmatch
import re

PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")
MODULES_ALIAS = ("/lib/modules/{release}/modules.alias", "/usr/lib/modules/{release}/modules.alias")
_BLOCK_END = re.compile(rb"\n[^\t#\n]")  # the next line that is neither a device, a subsystem nor a comment


def pci_ids_name(data: bytes, vendor: str, device: str, blocks: dict[str, tuple[str, int, int]] | None = None) -> str | None:
    """lspci's name for vendor:device in a pci.ids file: "Vendor Device name", "Vendor Device" where
    pci.ids knows the vendor only, None where it knows neither. Looks up one pair without parsing
    the whole file; `blocks` caches each vendor's (name, start, end) between calls."""
    v, d = vendor.lower().encode("ascii", "replace"), device.lower().encode("ascii", "replace")
    if len(v) != 4 or len(d) != 4:
        return None
    block = None if blocks is None else blocks.get(vendor.lower())
    if block is None:
        if data.startswith(v + b"  "):
            start = 0
        else:
            k = data.find(b"\n" + v + b"  ")
            if k < 0:
                return None
            start = k + 1
        eol = data.find(b"\n", start)
        eol = len(data) if eol < 0 else eol
        nxt = _BLOCK_END.search(data, eol)
        block = (data[start + 6 : eol].decode("utf-8", "replace").strip(), eol, nxt.start() if nxt else len(data))
        if blocks is not None:
            blocks[vendor.lower()] = block
    vname, eol, block_end = block
    i = data.find(b"\n\t" + d + b"  ", eol, block_end)
    if i < 0:
        return f"{vname} Device" if vname else None
    j = data.find(b"\n", i + 1)
    dname = data[i + 8 : len(data) if j < 0 else j].decode("utf-8", "replace").strip()
    return f"{vname} {dname}".strip()


def parse_pci_aliases(text: str, vendors: set[str]) -> list[tuple[str, str]]:
    """(pattern, module) of each `alias pci:...` line of modules.alias that can match one of
    `vendors` (4 hex digits), in file order."""
    want = "|".join(sorted(f"0000{v.upper()}" for v in vendors if re.fullmatch(r"[0-9a-fA-F]{4}", v)))
    alt = f"(?:{want}|\\*)" if want else r"\*"
    rx = re.compile(rf"^alias (pci:v{alt}\S*) (\S+)$", re.M)
    return [(m.group(1), m.group(2)) for m in rx.finditer(text)]


def modalias_modules(aliases: list[tuple[str, str]], modalias: str) -> tuple[str, ...]:
    """The modules whose alias pattern matches a device's modalias, each once, in file order
    (what `lspci -k` prints as "Kernel modules")."""
    out: dict[str, None] = {}
    for pattern, module in aliases:
        if fnmatch.fnmatchcase(modalias, pattern):
            out.setdefault(module, None)
    return tuple(out)
