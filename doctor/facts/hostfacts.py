"""HostFacts: every fact read from a Host (live or snapshot), one mixin per subject."""

from __future__ import annotations

from doctor.errors import DoctorError, NotCaptured
from doctor.facts.base import Facts, HostSummary
from doctor.facts.boot import BootHostFacts
from doctor.facts.host_use import HostUseHostFacts
from doctor.facts.initramfs import InitramfsHostFacts
from doctor.facts.kernel import KernelHostFacts
from doctor.facts.libvirt import LibvirtHostFacts
from doctor.facts.modprobe import ModprobeHostFacts
from doctor.facts.pci import PciHostFacts
from doctor.facts.pci_space import PciSpaceHostFacts
from doctor.host import Host


class HostFacts(
    PciHostFacts,
    PciSpaceHostFacts,
    KernelHostFacts,
    ModprobeHostFacts,
    BootHostFacts,
    InitramfsHostFacts,
    HostUseHostFacts,
    LibvirtHostFacts,
    Facts,
):
    """Facts read from a Host: the live machine or a recorded snapshot."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.source_kind = host.source_info().kind

    # Option ROMs are never read here. The CLI reads them on request (check --read-rom, through
    # LiveHost.read_option_rom) or loads a dump (--rom FILE) before the checks run, and sets
    # rom_dumps: PCI address -> (where from, the bytes, or the error the read ended with).
    rom_dumps: dict[str, tuple[str, bytes | DoctorError]] = {}  # noqa: RUF012 - replaced per instance, never mutated

    def option_rom(self, address: str) -> bytes:
        if address in self.rom_dumps:
            got = self.rom_dumps[address][1]
            if isinstance(got, DoctorError):
                raise got
            return got
        return super().option_rom(address)

    def summary(self) -> HostSummary:
        s = super().summary()
        try:
            hn = self.host.read_text_or_none("/proc/sys/kernel/hostname")
            s.hostname = hn.strip() if hn else None
        except (PermissionError, NotCaptured):
            pass
        parts = []
        for a in ("sys_vendor", "product_name"):
            try:
                v = self.host.read_text_or_none(f"/sys/class/dmi/id/{a}")
            except (PermissionError, NotCaptured):
                v = None
            if v and v.strip():
                parts.append(v.strip())
        s.product = " ".join(parts) or None
        return s

