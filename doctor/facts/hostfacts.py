"""HostFacts: every fact read from a Host (live or snapshot), one mixin per subject."""

from __future__ import annotations

from doctor.errors import NotCaptured
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

    # Option ROMs are read only on request (gpudoctor check --rom FILE / --read-rom): the CLI sets
    # these on the instance. rom_dumps: PCI address -> (file, bytes) of a dump; read_rom: read the
    # live host's sysfs `rom` (write 1, read, write 0; needs root).
    rom_dumps: dict[str, tuple[str, bytes]] = {}  # noqa: RUF012 - replaced per instance, never mutated
    read_rom: bool = False

    def option_rom(self, address: str) -> bytes:
        if address in self.rom_dumps:
            return self.rom_dumps[address][1]
        if not self.read_rom:
            return super().option_rom(address)
        from doctor.optionrom import read_live

        return self._per(f"option_rom:{address}", lambda: read_live(self.host, address))

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

