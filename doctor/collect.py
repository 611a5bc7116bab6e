"""What a recording captures, declared (sos-style), not scattered in code.

Each spec names paths the facts read. `{release}` is the running kernel's
release. A snapshot covers exactly these patterns: a path they match that was
not on the host is absent; any other path is "not captured".
"""

from __future__ import annotations

from doctor.datarecord import record
from doctor.facts import (
    BLS_DIRS,
    BOOT_TOOLS,
    GRUB_CFGS,
    INITRAMFS_IMAGES,
    MODPROBE_DIRS,
    MODULES_LOAD_DIRS,
    PCI_ATTRS,
)


@record(frozen=True)
class Spec:
    kind: str  # "file" (glob, copy), "list" (directory listing), "exists" (presence only)
    pattern: str


def _files(*patterns: str) -> list[Spec]:
    return [Spec("file", p) for p in patterns]


def _lists(*dirs: str) -> list[Spec]:
    return [Spec("list", d) for d in dirs]


def _exists(*paths: str) -> list[Spec]:
    return [Spec("exists", p) for p in paths]


PCI = "/sys/bus/pci/devices"

SPECS: list[Spec] = [
    *_files(
        "/proc/cmdline",
        "/proc/cpuinfo",
        "/proc/modules",
        "/proc/sys/kernel/osrelease",
        "/proc/sys/kernel/hostname",
        "/proc/iomem",
        "/proc/fb",
        "/etc/os-release",
        "/usr/lib/os-release",
        "/boot/config-{release}",
        "/lib/modules/{release}/modules.builtin",
        "/usr/lib/modules/{release}/modules.builtin",
        "/sys/class/dmi/id/sys_vendor",
        "/sys/class/dmi/id/product_name",
    ),
    # PCI devices and their links
    *_lists(PCI),
    *_files(*(f"{PCI}/*/{a}" for a in PCI_ATTRS)),
    *_files(f"{PCI}/*/driver", f"{PCI}/*/iommu_group", f"{PCI}/*/resource", f"{PCI}/*/reset_method"),
    *_lists("/sys/bus/pci/drivers"),
    *_files("/sys/bus/pci/drivers/*/module"),
    # IOMMU
    *_exists("/sys/kernel/iommu_groups"),
    *_lists("/sys/kernel/iommu_groups", "/sys/class/iommu", "/sys/firmware/acpi/tables", "/sys/module"),
    *_files("/sys/kernel/iommu_groups/*/devices/*", "/sys/class/iommu/*"),
    *_files("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"),
    *_exists("/dev/kvm", "/sys/firmware/acpi/tables/DMAR", "/sys/firmware/acpi/tables/IVRS"),
    # consoles and framebuffers
    *_files("/sys/class/vtconsole/*/bind", "/sys/class/vtconsole/*/name"),
    # module configuration
    *_lists(*MODPROBE_DIRS, *MODULES_LOAD_DIRS),
    *_files(*(f"{d}/*.conf" for d in MODPROBE_DIRS + MODULES_LOAD_DIRS)),
    *_files("/etc/modules", "/etc/initramfs-tools/modules"),
    # per-device vfio-pci at boot (driver_override): initramfs-tools scripts, udev rules
    *_lists("/etc/initramfs-tools/scripts/init-top", "/etc/initramfs-tools/scripts/init-premount", "/etc/udev/rules.d"),
    *_files("/etc/initramfs-tools/scripts/init-top/*", "/etc/initramfs-tools/scripts/init-premount/*", "/etc/udev/rules.d/*.rules"),
    *_lists("/etc/dracut.conf.d", "/usr/lib/dracut/dracut.conf.d", "/etc/mkinitcpio.conf.d"),
    *_files(
        "/etc/dracut.conf",
        "/etc/dracut.conf.d/*.conf",
        "/usr/lib/dracut/dracut.conf.d/*.conf",
        "/etc/mkinitcpio.conf",
        "/etc/mkinitcpio.conf.d/*.conf",
    ),
    # bootloader
    *_lists("/etc/default/grub.d"),
    *_files(
        "/etc/default/grub",
        "/etc/default/grub.d/*.cfg",
        *GRUB_CFGS,
        "/etc/kernel/cmdline",
        "/etc/kernelstub/configuration",
    ),
    *_exists(*BOOT_TOOLS),
    *_exists("/boot/vmlinuz-{release}", "/usr/lib/modules/{release}/vmlinuz"),
    # forecast checks (checks/check_forecast*.py)
    *_files("/proc/interrupts", "/proc/self/mounts", "/proc/net/route", "/proc/net/ipv6_route"),
    *_files(f"{PCI}/*/config"),
    *_lists("/sys/class/block", "/sys/class/net", *BLS_DIRS, "/etc/libvirt/qemu"),
    *_files("/sys/class/block/*", "/sys/class/block/*/dm/name", "/sys/class/block/*/slaves/*"),
    *_files("/sys/class/net/*", "/sys/class/net/*/lower_*"),
    *_files(*(f"{d}/*.conf" for d in BLS_DIRS), "/boot/grub2/grubenv", "/boot/grub/grubenv"),
    *_files(*INITRAMFS_IMAGES),
    *_exists("/sys/firmware/efi"),
    *_files(
        "/sys/firmware/efi/efivars/SecureBoot-*",
        "/sys/kernel/security/lockdown",
        "/sys/module/module/parameters/sig_enforce",
        "/etc/libvirt/qemu/*.xml",
        "/proc/meminfo",
    ),
]

COMMANDS: list[tuple[str, ...]] = [
    ("dmesg",),
    ("lspci", "-Dnnk"),
]
