"""What the forecast checks read of a device's resources: /proc/iomem, BARs, config space, reset, option ROM."""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.read import HostReader, fact


@record(frozen=True)
class IomemRange:
    start: int
    end: int
    name: str
    depth: int  # indentation level in /proc/iomem

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end

    def __str__(self) -> str:
        return f"{self.start:08x}-{self.end:08x} : {self.name}"


def parse_iomem(text: str) -> tuple[IomemRange, ...]:
    out: list[IomemRange] = []
    for line in text.splitlines():
        m = re.match(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$", line)
        if m:
            out.append(IomemRange(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(), len(m.group(1)) // 2))
    return tuple(out)


@record(frozen=True)
class PciBar:
    index: int  # 0-5 BARs, 6 the expansion ROM
    start: int
    end: int
    flags: int

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & 0x200)

    def __str__(self) -> str:
        return f"{'ROM' if self.index == 6 else f'BAR {self.index}'} [mem {self.start:#x}-{self.end:#x}]"


def parse_pci_resource(text: str) -> tuple[PciBar, ...]:
    """The `resource` attribute: one `start end flags` line per region (0-5 BARs, 6 ROM)."""
    out: list[PciBar] = []
    for i, line in enumerate(text.splitlines()[:7]):
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            s, e, f = (int(p, 16) for p in parts)
        except ValueError:
            continue
        if s or e:
            out.append(PciBar(i, s, e, f))
    return tuple(out)


def parse_pcie_flr(config: bytes) -> bool | None:
    """FLR support from the PCI Express capability's Device Capabilities (bit 28).

    None where the capability list cannot be read (config shorter than 256 bytes:
    an unprivileged read returns only the first 64)."""
    if len(config) < 64:
        return None
    status = int.from_bytes(config[6:8], "little")
    if not status & 0x10:
        return False  # no capability list: conventional PCI, no PCIe FLR
    if len(config) < 256:
        return None
    ptr = config[0x34] & 0xFC
    seen = set()
    while ptr and ptr not in seen and ptr + 8 <= len(config):
        seen.add(ptr)
        cap_id = config[ptr]
        if cap_id == 0x10:
            devcap = int.from_bytes(config[ptr + 4 : ptr + 8], "little")
            return bool(devcap & (1 << 28))
        ptr = config[ptr + 1] & 0xFC
    return False


def parse_option_rom(data: bytes) -> list[str]:
    """Images of a PCI option ROM: ["x86 (legacy)", "EFI", ...]; ValueError if invalid."""
    images: list[str] = []
    if data[:2] != b"\x55\xaa":
        raise ValueError(f"no 0x55AA signature at offset 0 (starts {data[:2].hex(' ') or 'empty'})")
    off = 0
    while off + 0x1A <= len(data):
        if data[off : off + 2] != b"\x55\xaa":
            break
        pcir = off + int.from_bytes(data[off + 0x18 : off + 0x1A], "little")
        if data[pcir : pcir + 4] != b"PCIR":
            raise ValueError(f"no PCI data structure ('PCIR') in the image at {off:#x}")
        if pcir + 0x16 > len(data):
            raise ValueError(f"the PCI data structure of the image at {off:#x} is cut off ({len(data)} bytes)")
        code = data[pcir + 0x14]
        images.append({0: "x86 (legacy BIOS)", 1: "Open Firmware", 2: "HP PA-RISC", 3: "EFI"}.get(code, f"type {code}"))
        length = int.from_bytes(data[pcir + 0x10 : pcir + 0x12], "little") * 512
        last = data[pcir + 0x15] & 0x80
        if last or not length:
            break
        off += length
    if not images:
        raise ValueError(f"cut off: {len(data)} bytes, shorter than a ROM header")
    return images


class PciSpaceHostFacts(HostReader):
    @fact
    def iomem(self) -> tuple[IomemRange, ...]:
        rs = parse_iomem(self._need("/proc/iomem", "/proc/iomem", "sudo cat /proc/iomem"))
        if rs and all(r.start == 0 and r.end == 0 for r in rs):
            raise FactUnknown("/proc/iomem", "addresses hidden (read without root they are all zero)", "sudo cat /proc/iomem")
        return rs

    def pci_bars(self, address: str) -> tuple[PciBar, ...]:
        p = f"/sys/bus/pci/devices/{address}/resource"
        return self._per(f"pci_bars:{address}", lambda: parse_pci_resource(self._need(f"BARs of {address}", p, f"cat {p}")))

    def pci_config(self, address: str) -> bytes:
        p = f"/sys/bus/pci/devices/{address}/config"

        def read() -> bytes:
            try:
                return self.host.read_bytes(p)
            except FileNotFoundError as e:
                raise FactUnknown(f"config space of {address}", f"{p} does not exist", f"sudo lspci -vvv -s {address}") from e
            except (PermissionError, NotCaptured) as e:
                raise FactUnknown(f"config space of {address}", str(e), f"sudo lspci -vvv -s {address}") from e

        return self._per(f"pci_config:{address}", read)

    def reset_method(self, address: str) -> tuple[str, ...] | None:
        p = f"/sys/bus/pci/devices/{address}/reset_method"

        def read() -> tuple[str, ...] | None:
            t = self._text_or_none(f"reset methods of {address}", p, f"cat {p}")
            return None if t is None else tuple(t.split())

        return self._per(f"reset_method:{address}", read)

