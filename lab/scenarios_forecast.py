"""Lab scenarios for the forecast checks (checks/check_forecast.py).

Each one sets up a host where a later step really fails, so a lab test can compare the
doctor's forecast with what the kernel or QEMU then does:

- intel-no-intremap: VT-d without interrupt remapping (QEMU's `intel-iommu,intremap=off`):
  vfio_iommu_type1 refuses the group, QEMU says `Failed to set iommu for container`.
- disk-in-group (built per test, it needs a disk image): a virtio-blk disk behind an ACS-less
  root port that shares the card's IOMMU group; the test formats and mounts it in the guest.
- intel-efifb-on-card: OVMF firmware and `-vga none`, so the card's VGA function (01:00.0) is
  the only display: OVMF's GOP drives it and the kernel's efifb sits in its BAR 0. The test
  binds the card to vfio-pci itself (the check's forecast comes first).
- identical cards need no scenario of their own: in every scenario the host's boot display
  (q35 `-vga std`, 00:01.0) and the card's VGA (01:00.0) are both 1234:1111.
"""

from __future__ import annotations

from pathlib import Path

from .scenarios import CARD_DEVICES, CARD_FUNCTIONS, INTEL_CPU, ROOT_PORT, Scenario

INTEL_IOMMU_NO_IR = ["-device", "intel-iommu,intremap=off,caching-mode=on"]

# Two ACS-less root ports in one multifunction slot (like lab.scenarios.SHARED_PORTS), with a
# virtio-blk disk instead of the NIC at 02:00.0: the disk controller lands in the card's group.
SHARED_PORTS_DISK = [
    "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,addr=1c.0,multifunction=on,disable-acs=on",
    "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,addr=1c.1,disable-acs=on",
]  # fmt: skip
DISK_ADDR = "0000:02:00.0"

FORECAST_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="intel-no-intremap",
            description="Intel VT-d without interrupt remapping (intel-iommu,intremap=off); the card on vfio-pci: "
            "vfio refuses the group (`No interrupt remapping support`), QEMU `Failed to set iommu for container`",
            iommu="intel",
            qemu_devices=INTEL_CPU + INTEL_IOMMU_NO_IR + ROOT_PORT + CARD_DEVICES,
            append="intel_iommu=on",
            bind_vfio=list(CARD_FUNCTIONS),
        ),
        Scenario(
            name="intel-efifb-on-card",
            description="OVMF, -vga none: the card's VGA is the only display, OVMF's GOP and the kernel's efifb "
            "live in its BAR 0; nothing on vfio-pci yet (the test binds it)",
            iommu="intel",
            qemu_devices=INTEL_CPU + ["-device", "intel-iommu,intremap=on,caching-mode=on"] + ROOT_PORT + CARD_DEVICES,
            # nomodeset: bochs-drm refuses to load (drm_firmware_drivers_only()), as a GPU whose native
            # driver is absent or blacklisted; otherwise bochs-drm takes the card over and removes efifb.
            append="intel_iommu=on nomodeset",
            firmware="ovmf",
            vga="none",
        ),
    ]
}


def disk_in_group(image: Path) -> Scenario:
    """The card and a virtio-blk disk (backed by `image`, raw) in one IOMMU group."""
    return Scenario(
        name="intel-disk-in-group",
        description="virtio-blk disk at 02:00.0 behind an ACS-less root port sharing the card's IOMMU group",
        iommu="intel",
        qemu_devices=INTEL_CPU + ["-device", "intel-iommu,intremap=on,caching-mode=on"] + SHARED_PORTS_DISK + CARD_DEVICES
        + ["-drive", f"file={image},if=none,format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0,bus=rp2,addr=00.0"],
        append="intel_iommu=on",
        group_intruders=[DISK_ADDR],
    )
