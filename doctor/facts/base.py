"""Typed facts, parsed once from a Host (or, later, from pasted text).

A check asks `facts.cmdline()`, `facts.pci_devices()`, ... and gets a value, or
a `FactUnknown` exception that says why the fact could not be established and
what would settle it. The runner turns an unhandled FactUnknown into an
`unknown` result. A missing fact is never turned into an empty value.

`Facts` is the interface: every accessor raises FactUnknown. `HostFacts` reads
a Host (live or snapshot); other sources override what they know.
"""

from __future__ import annotations

from doctor.datarecord import field, record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.boot import BootConfig, BootEntry
from doctor.facts.host_use import BlockDevice, Mount, NetInterface
from doctor.facts.initramfs import InitramfsImage
from doctor.facts.kernel import Cmdline, ConsoleState, CpuInfo, KernelLog, ModuleState, SecurityState
from doctor.facts.libvirt import LibvirtDomain, LibvirtHostdev
from doctor.facts.modprobe import BootOverride, EarlyLoadConfig, ModprobeLine
from doctor.facts.observed import Observed
from doctor.facts.pci import PciDevice
from doctor.facts.pci_space import IomemRange, PciBar

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


@record
class HostSummary:
    """Environment facts for report headers; every field may be unknown (None)."""

    kernel: str | None = None
    distro: str | None = None
    cpu: str | None = None
    hostname: str | None = None
    product: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Facts:
    """Every fact a check can ask for. The base knows nothing."""

    source_kind = "none"

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _unknown(self, fact_name: str, settle: str) -> FactUnknown:
        return FactUnknown(fact_name, "not in the evidence", settle)

    def kernel_release(self) -> str:
        raise self._unknown("kernel release", "uname -r")

    def os_release(self) -> dict[str, str]:
        raise self._unknown("distribution", "cat /etc/os-release")

    def cpu(self) -> CpuInfo:
        raise self._unknown("CPU", "grep -m1 -E 'vendor_id|flags' /proc/cpuinfo")

    def kvm_device(self) -> bool:
        raise self._unknown("/dev/kvm", "ls -l /dev/kvm")

    def acpi_tables(self) -> frozenset[str]:
        raise self._unknown("ACPI tables", "ls /sys/firmware/acpi/tables")

    def cmdline(self) -> Cmdline:
        raise self._unknown("kernel command line", "cat /proc/cmdline")

    def kernel_config(self) -> dict[str, str]:
        raise self._unknown("kernel build configuration", "grep IOMMU /boot/config-$(uname -r)")

    def modules(self) -> ModuleState:
        raise self._unknown("kernel modules", "cat /proc/modules; ls /sys/module")

    def kernel_log(self) -> KernelLog:
        raise self._unknown("kernel log", "sudo dmesg")

    def iommu_class(self) -> tuple[str, ...]:
        raise self._unknown("/sys/class/iommu", "ls /sys/class/iommu")

    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        raise self._unknown("IOMMU groups", "find /sys/kernel/iommu_groups/ -type l")

    def pci_devices(self) -> dict[str, PciDevice]:
        raise self._unknown("PCI devices", "lspci -Dnnk")

    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        raise self._unknown("modprobe configuration", "grep -r . /etc/modprobe.d/")

    def early_load(self) -> EarlyLoadConfig:
        raise self._unknown(
            "early module loading configuration",
            "cat /etc/modules-load.d/*.conf /etc/modules /etc/initramfs-tools/modules",
        )

    def boot_config(self) -> BootConfig:
        raise self._unknown("bootloader configuration", "cat /etc/default/grub /etc/kernel/cmdline")

    def summary(self) -> HostSummary:
        s = HostSummary()
        for attr, get in (
            ("kernel", self.kernel_release),
            ("distro", lambda: self.os_release().get("PRETTY_NAME")),
            ("cpu", lambda: self.cpu().model_name),
        ):
            try:
                setattr(s, attr, get())
            except (FactUnknown, NotCaptured):
                pass
        return s

    # -- forecast facts (checks/check_forecast*.py) ---------------------------
    def iomem(self) -> tuple[IomemRange, ...]:
        raise self._unknown("/proc/iomem", "sudo cat /proc/iomem")

    def pci_bars(self, address: str) -> tuple[PciBar, ...]:
        raise self._unknown(f"BARs of {address}", f"cat /sys/bus/pci/devices/{address}/resource")

    def pci_config(self, address: str) -> bytes:
        raise self._unknown(f"config space of {address}", f"sudo lspci -vvv -s {address}")

    def reset_method(self, address: str) -> tuple[str, ...] | None:
        """The kernel's reset methods for a device in order; None where the attribute is absent."""
        raise self._unknown(f"reset methods of {address}", f"cat /sys/bus/pci/devices/{address}/reset_method")

    def consoles(self) -> ConsoleState:
        raise self._unknown("consoles and framebuffers", "grep . /sys/class/vtconsole/*/name /sys/class/vtconsole/*/bind; cat /proc/fb")

    def interrupt_chips(self) -> frozenset[str]:
        raise self._unknown("interrupt controllers", "cat /proc/interrupts")

    def vfio_allow_unsafe_interrupts(self) -> bool | None:
        """vfio_iommu_type1's allow_unsafe_interrupts; None where the module is not loaded."""
        raise self._unknown("vfio_iommu_type1 parameters", "cat /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")

    def mounts(self) -> tuple[Mount, ...]:
        raise self._unknown("mounted filesystems", "cat /proc/self/mounts")

    def block_devices(self) -> dict[str, BlockDevice]:
        raise self._unknown("block devices", "ls -l /sys/class/block/")

    def net_interfaces(self) -> dict[str, NetInterface]:
        raise self._unknown("network interfaces", "ls -l /sys/class/net/")

    def default_route_ifaces(self) -> tuple[str, ...]:
        raise self._unknown("default route", "ip route show default; ip -6 route show default")

    def routed_ifaces(self) -> tuple[str, ...]:
        raise self._unknown("configured interfaces", "ip route show; ip -6 route show")

    def boot_entries(self) -> tuple[BootEntry, ...]:
        raise self._unknown("boot loader entries", "grep . /boot/loader/entries/*.conf")

    def initramfs(self) -> InitramfsImage:
        raise self._unknown("initramfs image", "lsinitramfs /boot/initrd.img-$(uname -r) | grep vfio")

    def security(self) -> SecurityState:
        raise self._unknown("Secure Boot and lockdown", "mokutil --sb-state; cat /sys/kernel/security/lockdown")

    def option_rom(self, address: str) -> bytes:
        """The GPU's option ROM image. Never read from sysfs by default: reading `rom` needs
        writing 1 to it first, which changes the device's state (opt in: check --read-rom, or
        give a dump with --rom FILE). OptionRomUnreadable where a requested read failed."""
        raise FactUnknown(f"option ROM of {address}", "not read (reading it means writing 1 to sysfs `rom`)",
                          f"sudo sh -c 'echo 1 > /sys/bus/pci/devices/{address}/rom; cat /sys/bus/pci/devices/{address}/rom > rom.bin; echo 0 > /sys/bus/pci/devices/{address}/rom'")

    def boot_overrides(self) -> tuple[BootOverride, ...]:
        raise self._unknown("boot-time driver_override configuration",
                            "grep -rl driver_override /etc/initramfs-tools/scripts /etc/udev/rules.d /etc/modprobe.d")

    def libvirt_hostdevs(self) -> tuple[LibvirtHostdev, ...]:
        raise self._unknown("libvirt domain definitions", "sudo grep -A3 '<hostdev' /etc/libvirt/qemu/*.xml")

    def libvirt_domains(self) -> tuple[LibvirtDomain, ...]:
        raise self._unknown("libvirt domain definitions", "sudo cat /etc/libvirt/qemu/*.xml")

    def observed(self) -> tuple[Observed, ...]:
        """Error (and proof) lines QEMU, libvirt or the kernel printed, as a paste shows them (doctor.facts.observed)."""
        raise self._unknown("errors seen", "the full error QEMU or libvirt printed (virsh start NAME, /var/log/libvirt/qemu/NAME.log)")

    def meminfo(self) -> dict[str, int]:
        raise self._unknown("memory and hugepages", "cat /proc/meminfo")

    def where(self, fact_name: str, path: str) -> str:
        """Where the source read a fact, for evidence: `path` on a host; a source of its own says where (`dmesg.txt:3-40`)."""
        return path

    def unlisted_devices(self) -> FactUnknown | None:
        """Why PCI devices may exist that pci_devices() does not list (a filtered paste); None: it lists them all."""
        return None

    # -- derived facts shared by checks ------------------------------------
    def gpus(self) -> list[PciDevice]:
        return [d for d in self.pci_devices().values() if d.is_display]

    def slot_functions(self, dev: PciDevice) -> list[PciDevice]:
        return sorted(
            (d for d in self.pci_devices().values() if d.slot == dev.slot), key=lambda d: d.address
        )

    def group_members(self, dev: PciDevice) -> list[PciDevice] | None:
        """Every PCI device in dev's IOMMU group, or None where dev has no group."""
        if dev.iommu_group is None:
            return None
        groups = self.iommu_groups()
        addrs = groups.get(dev.iommu_group)
        devs = self.pci_devices()
        if addrs is None:
            return [d for d in devs.values() if d.iommu_group == dev.iommu_group]
        return [devs[a] if a in devs else PciDevice(a, 0, "????", "????") for a in addrs]

