"""The wrappers people put around pasted output, taken off one line at a time (line numbers stay), and the
group-listing shapes of the popular scripts rewritten to the one the group parser reads (pure).

- Markdown: `> ` quoting, ``` `inline code` ```, `**bold**`; HTML `<pre>`, `<code>`, `<br>`;
- a whole paste indented (a list item, a quoted block): a kernel-log line or an lspci device line is de-indented;
- a group header alone on its line, `### Group N ###` or `Group N:`, becomes `IOMMU Group N:`;
- `Group N - 01:00.0 VGA ...` (sGPUpt) and `Group N:\\t[10de:21c4] [R] 09:00.0  VGA compatible controller  TU116 ...`
  (GPU-Passthrough-Manager, ids first, columns) become `IOMMU Group N 01:00.0 VGA compatible controller [0300]: ...`.
"""

from __future__ import annotations

import re

from doctor.pasted.segment_re import ADDR, TS_RX

_QUOTE = re.compile(r"^(?:[ \t]{0,3}>(?: |\t|$))+")
_HTML = re.compile(r"</?(?:pre|code|tt|kbd|samp)>|<br\s*/?>", re.I)
_LSPCI_DEV = re.compile(r"^" + ADDR + r" [^:\[]+(?:\[[0-9a-fA-F]{4}\])?: \S")
_DASH_GROUP = re.compile(r"^(?:IOMMU )?[Gg]roup (\d+) - (" + ADDR + r") (.*)$")
# a group header alone on its line: `### Group 1 ###` (Markdown heading or a script's banner), `Group 1:`
_HEADER_GROUP = re.compile(r"^#*\s*(?:IOMMU\s+)?[Gg]roup\s+(\d+)\s*(?:#+|:)?$")
_USB_UNDER = re.compile(r"^USB Bus \d+ Device \d+:|^Bus \d+ Device \d+:")
_COLUMNS = re.compile(r"^(?:(?:IOMMU )?[Gg]roup (\d+):)?\s*\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]\s+(?:\[R\]\s+)?(" + ADDR
                      + r")\s+(\S.*?)\s{2,}(\S.*)$")
_CLASS_IDS = {
    "host bridge": "0600", "isa bridge": "0601", "pci bridge": "0604", "vga compatible controller": "0300",
    "3d controller": "0302", "display controller": "0380", "audio device": "0403", "multimedia audio controller": "0401",
    "usb controller": "0c03", "serial bus controller": "0c80", "smbus": "0c05", "sata controller": "0106",
    "non-volatile memory controller": "0108", "ethernet controller": "0200", "network controller": "0280",
    "signal processing controller": "1180", "communication controller": "0780", "encryption controller": "1080",
    "system peripheral": "0880", "ide interface": "0101", "raid bus controller": "0104", "memory controller": "0580",
    "ram memory": "0500", "iommu": "0806",
}


def class_id(name: str) -> str | None:
    return _CLASS_IDS.get(name.strip().lower())


def unwrap(line: str) -> str:
    """The line without quoting and markup; de-indented when it is a kernel-log or lspci device line."""
    s = line
    if ">" in s[:8]:
        s = _QUOTE.sub("", s)
    if "<" in s:
        s = _HTML.sub("", s)
    if "**" in s:
        s = s.replace("**", "")
    if "`" in s:
        t = s.strip()
        if t.startswith("`") or t.endswith("`"):
            s = s.replace("`", "") if t.strip("`").strip() else ""
    t = s.lstrip()
    if t is not s and t != s and t and (TS_RX.match(t) or _LSPCI_DEV.match(t)):
        s = t
    return s.rstrip()


def rewrite_group_line(line: str, in_group: bool) -> str | None:
    """A popular script's group-listing line in the canonical shape; None when it is not one."""
    t = line.strip()
    m = _HEADER_GROUP.match(t)
    if m:
        return f"IOMMU Group {m.group(1)}:"
    m = _DASH_GROUP.match(t)
    if m:
        rest = m.group(3)
        if _USB_UNDER.match(rest):
            return f"IOMMU Group {m.group(1)}"  # an lsusb line under its controller: not a PCI device
        return f"IOMMU Group {m.group(1)} {m.group(2)} {rest}"
    if "[" not in t[:2] and not t.lower().startswith(("group", "iommu group")):
        return None
    m = _COLUMNS.match(t)
    if m and (m.group(1) is not None or in_group):
        group, ven, dev, addr, cls, name = m.groups()
        cid = class_id(cls)
        dev_line = f"{addr} {cls}{f' [{cid}]' if cid else ''}: {name} [{ven.lower()}:{dev.lower()}]"
        return f"IOMMU Group {group} {dev_line}" if group is not None else "\t" + dev_line
    return None
