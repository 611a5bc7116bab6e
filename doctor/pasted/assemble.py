"""What the recognised chunks of a paste show, put together: the devices merged from every listing
(lspci of any flavour, group listings, the kernel log's enumeration), the IOMMU groups, the kernel logs."""

from __future__ import annotations

import re

from doctor.facts import parse_iommu_group_links
from doctor.pasted.chunks import (
    DevInfo,
    DmesgFacts,
    parse_dmesg,
    parse_group_listing,
    parse_group_ls,
    parse_lspci_chunk,
)
from doctor.pasted.records import parse_lshw, parse_lspci_vmm
from doctor.pasted.segment import Chunk

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


class Shown:
    """The assembled evidence; doctor.pasted.texthost reads facts from it."""

    def _of(self, *kinds: str) -> list[Chunk]:
        return [c for c in self.chunks if c.kind in kinds]

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        dm: list[tuple[Chunk, DmesgFacts]] = [(c, parse_dmesg(c.text, c.command)) for c in self._of("dmesg")]
        self.dmesg = dm
        self.hostnames: set[str] = set()
        for _, d in dm:
            self.hostnames |= d.hostnames
        # devices
        devs: dict[str, DevInfo] = {}
        self.lspci_complete = False
        for c in self._of("lspci"):
            found, _k = parse_lspci_chunk(c.text)
            for di in found:
                di.source = f"{c.file}:{c.start + di.line}"
                _merge_dev(devs, di)
            if any(d.address.endswith("00:00.0") for d in found) and len(found) >= 5 and "grep" not in c.command and " -s" not in c.command:
                self.lspci_complete = True
        groups: dict[str, set[str]] | None = None
        self.groups_source = ""
        for c in self._of("lspci_vmm"):
            found, g_vmm = parse_lspci_vmm(c.lines)
            for di in found:
                di.source = f"{c.file}:{c.start + di.line}"
                _merge_dev(devs, di)
            if any(d.address.endswith("00:00.0") for d in found) and len(found) >= 5 and "grep" not in c.command:
                self.lspci_complete = True
            if g_vmm:
                groups = groups or {}
                for k, v in g_vmm.items():
                    groups.setdefault(k, set()).update(v)
                self.groups_source = f"{c.where} (IOMMUGroup fields)"
        for c in self._of("lshw"):
            for di in parse_lshw(c.lines):
                di.source = f"{c.file}:{c.start + di.line}"
                _merge_dev(devs, di)
        for c in self._of("group"):
            g, found, _k = parse_group_listing(c.text)
            for di in found:
                di.source = c.where
                _merge_dev(devs, di)
            if not any(g.values()):
                continue
            groups = groups or {}
            for k, v in g.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        whole_listing = False  # a group-link listing nothing filtered: it names every device
        for c in self._of("group_find"):
            g2: dict[str, Any] = dict(parse_iommu_group_links([ln.strip() for ln in c.lines]))
            if not g2:
                continue
            whole_listing = whole_listing or _unfiltered(c, g2)
            groups = groups or {}
            for k, v in g2.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        for c in self._of("group_ls"):
            g2 = {k: v for k, v in parse_group_ls(c.text, c.command).items() if v}
            if not g2:
                continue  # entries without a /sys/kernel/iommu_groups/N/devices: header name no group
            whole_listing = whole_listing or _unfiltered(c, g2)
            groups = groups or {}
            for k, v in g2.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        self.groups_absent = self._of("groups_absent")
        if groups is None and self.groups_absent:
            groups = {}
            self.groups_source = self.groups_absent[0].where
        if groups is None:
            for c, d in dm:
                if d.full and d.groups and sorted(map(int, d.groups)) == list(range(len(d.groups))):
                    groups = {k: set(v) for k, v in d.groups.items()}
                    self.groups_source = f"{c.where} (Adding to iommu group lines of a full boot log)"
                    break
        for c, dmf in dm:
            for a, (ven, dv, cls) in dmf.enumerated.items():
                if a not in devs:
                    di = DevInfo(a, cls, ven, dv, source=c.where)
                    devs[a] = di
                elif devs[a].vendor is None:
                    devs[a].vendor, devs[a].device = ven, dv
                    devs[a].class_code = devs[a].class_code or cls
            if dmf.full and dmf.enumerated:
                self.lspci_complete = True
        self.groups: dict[str, tuple[str, ...]] | None = None if groups is None else {k: tuple(sorted(v)) for k, v in sorted(groups.items(), key=lambda kv: (len(kv[0]), kv[0]))}
        self.group_of: dict[str, str] = {}
        if self.groups:
            for gname, members in self.groups.items():
                for a in members:
                    self.group_of[a] = gname
                    if a not in devs:
                        devs[a] = DevInfo(a, source=self.groups_source)
        if self.groups is not None and self.groups:
            self.lspci_complete = self.lspci_complete or whole_listing
        self.devs = devs
        # boot display
        self.boot_vga_known: set[str] = set()
        for _, d in dm:
            self.boot_vga_known |= d.boot_vga


def _unfiltered(c: Chunk, groups: dict[str, Any]) -> bool:
    """A group-link listing shows every device only where nothing filtered it: no grep, not one group's folder
    (`find .../iommu_groups/1/ ...`), and its groups run 0..N without a gap (a filtered paste seldom does)."""
    if "grep" in c.command or re.search(r"iommu_groups/\d", c.command):
        return False
    nums = sorted(int(k) for k in groups if k.isdigit())
    return len(nums) > 1 and nums == list(range(len(nums)))


def _merge_dev(devs: dict[str, DevInfo], d: DevInfo) -> None:
    old = devs.get(d.address)
    if old is None:
        devs[d.address] = d
        return
    for f in ("class_code", "vendor", "device", "name", "revision", "subsystem"):
        if getattr(old, f) is None and getattr(d, f) is not None:
            setattr(old, f, getattr(d, f))
    if d.driver_known and not old.driver_known:
        old.driver, old.driver_known = d.driver, True
    if d.modules_known and not old.modules_known:
        old.modules, old.modules_known = d.modules, True


