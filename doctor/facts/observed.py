"""What a source saw happen: error (and proof) lines QEMU, libvirt or the kernel printed.

A pasted error is evidence: `vfio 0000:01:00.0: group 1 is not viable` settles vfio.group_viable for
that device as surely as a sysfs read. The checks read these as one typed fact, each with the line as
shown and where it was shown (`qemu.log:3`), and cite it. A live host or a snapshot does not provide
this fact (it is unknown there; their checks read sysfs and the kernel log instead).
"""

from __future__ import annotations

from doctor.datarecord import record

# kinds, and what each one means
OBSERVED_KINDS: dict[str, str] = {
    "iommu.missing": "no IOMMU for a device (`no iommu_group found`, libvirt `host doesn't support passthrough`, "
                     "`IOMMU not found`, vfio-pci probe -22)",
    "iommu.proof": "a line only an active IOMMU prints (`Adding to iommu group N`, `/dev/vfio/N`, a group number in a "
                   "vfio error, a device on vfio-pci, an IOMMU fault, `VT-d active for gfx access`)",
    "vfio.group_not_viable": "vfio refused a group: a device in it is on a host driver (`group N is not viable`)",
    "gpu.bar_reserve": "a BAR of the device could not be reserved (`BAR N: can't reserve [mem ...]`)",
    "gpu.fb_on_bar": "a firmware framebuffer was placed on the device's BAR (`BAR 1: assigned to efifb`)",
    "kvm.disabled_by_bios": "the firmware leaves VT-x / SVM off (`kvm: disabled by bios`, `VMX ... disabled by BIOS`)",
    "kvm.vendor_module_missing": "`kvm` loaded without kvm_intel / kvm_amd (a full lsmod, or `lsmod | grep kvm`): the vendor "
                                 "module failed to load",
    "kvm.no_hardware": "the CPU offers no VT-x / SVM (`kvm: no hardware support`)",
    "kvm.unavailable": "KVM is not available (`Could not access KVM kernel module`, Proxmox `KVM virtualisation "
                       "configured, but not available`)",
    "gpu.rom_unreadable": "the device's option ROM cannot be read (`Invalid PCI ROM header signature`, QEMU `Cannot read "
                          "device rom at ADDR`)",
    "iommu.no_interrupt_remapping": "vfio_iommu_type1 refused a group: `No interrupt remapping support`",
}


@record(frozen=True)
class Observed:
    kind: str  # a key of OBSERVED_KINDS
    text: str  # the line as shown (markup stripped)
    where: str  # file:line
    group: str | None = None  # the IOMMU group it names
    address: str | None = None  # the PCI device it names (normalised)
    detail: str | None = None  # e.g. the BAR number
