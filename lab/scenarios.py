"""The lab's scenarios: a QEMU topology, a kernel command line and a setup run in the guest."""

from __future__ import annotations

from dataclasses import dataclass, field

CARD = "0000:01:00.0"
CARD_FUNCTIONS = ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2", "0000:01:00.3"]

INTEL_IOMMU = ["-device", "intel-iommu,intremap=on,caching-mode=on"]
AMD_IOMMU = ["-device", "amd-iommu,intremap=on"]
# TCG's default qemu64 CPU says AuthenticAMD and has svm (TCG emulates SVM, so kvm_amd loads and
# /dev/kvm exists). An Intel host gets an Intel vendor string; TCG cannot emulate VMX, so the
# Intel scenarios have no vmx flag and no /dev/kvm (like VT-x disabled in the firmware).
# Every guest names its CPU vendor, and it matches its IOMMU (GenuineIntel with intel-iommu,
# AuthenticAMD with amd-iommu; tests/test_lab_scenarios.py holds them to it), except the one
# scenario that mismatches on purpose: MISMATCHED.
INTEL_CPU = ["-cpu", "qemu64,vendor=GenuineIntel,-svm"]
AMD_CPU = ["-cpu", "qemu64,vendor=AuthenticAMD,+svm"]
MISMATCHED = {"intel-on-amd-cpu"}

# A four-function "GPU": VGA (0300), HDA audio (0403), xHCI USB (0c03), 16550 serial (0700),
# all in one multifunction slot behind a PCIe root port, so they end up at 01:00.0-3.
# q35 also keeps its own default VGA at 00:01.0 (the "boot display").
CARD_DEVICES = [
    "-device",
    "VGA,bus=rp1,addr=00.0,multifunction=on",
    "-device",
    "ich9-intel-hda,bus=rp1,addr=00.1",
    "-device",
    "qemu-xhci,bus=rp1,addr=00.2",
    "-device",
    "pci-serial,bus=rp1,addr=00.3",
]
ROOT_PORT = ["-device", "pcie-root-port,id=rp1,chassis=1,slot=1"]

# Two root ports in one multifunction slot without ACS (like many PCH root ports): Linux cannot
# isolate them, so everything below both lands in a single IOMMU group. A NIC at 02:00.0 then
# shares the card's group.
SHARED_PORTS = [
    "-device",
    "pcie-root-port,id=rp1,chassis=1,slot=1,addr=1c.0,multifunction=on,disable-acs=on",
    "-device",
    "pcie-root-port,id=rp2,chassis=2,slot=2,addr=1c.1,disable-acs=on",
    "-device",
    "e1000e,bus=rp2,addr=00.0",
]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    iommu: str  # "intel" | "amd"
    qemu_devices: list[str]
    append: str  # kernel command line besides console=...
    bind_vfio: list[str] = field(default_factory=list)  # bound to vfio-pci at runtime
    sysctl: dict[str, str] = field(default_factory=dict)
    # Prepended to the doctor's command line (e.g. to drop CAP_SYSLOG).
    doctor_prefix: list[str] = field(default_factory=list)
    card: str = CARD
    card_functions: list[str] = field(default_factory=lambda: list(CARD_FUNCTIONS))
    # Devices that are not the card's but share its IOMMU group (ground truth).
    group_intruders: list[str] = field(default_factory=list)
    iommu_enabled: bool = True
    # "bios" (QEMU's default SeaBIOS) or "ovmf": OVMF_CODE_4M.fd read-only + a per-boot copy of
    # OVMF_VARS_4M.fd as pflash; OVMF then boots -kernel/-initrd (fw_cfg) as an EFI stub.
    firmware: str = "bios"
    # QEMU's -vga: "std" keeps q35's own VGA at 00:01.0 as the host's display; "none" leaves the
    # card's VGA function the only display (the firmware's console then lives in its BAR 0).
    vga: str = "std"


def _intel(**kw) -> dict:
    return dict(
        iommu="intel",
        qemu_devices=INTEL_CPU + INTEL_IOMMU + ROOT_PORT + CARD_DEVICES,
        append="intel_iommu=on",
        **kw,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="intel-unbound",
            description="Intel VT-d on; the card's functions on their usual drivers, nothing on vfio-pci",
            **_intel(),
        ),
        Scenario(
            name="intel-partial",
            description="Intel VT-d; 01:00.0 and 01:00.1 on vfio-pci, 01:00.2 (xhci_hcd) and 01:00.3 "
            "(serial) left on their drivers: QEMU says the group is not viable",
            bind_vfio=["0000:01:00.0", "0000:01:00.1"],
            **_intel(),
        ),
        Scenario(
            name="intel-bound",
            description="Intel VT-d; all four functions bound to vfio-pci at runtime (driver_override)",
            bind_vfio=list(CARD_FUNCTIONS),
            **_intel(),
        ),
        Scenario(
            name="amd-partial",
            description="AMD-Vi; 01:00.0 and 01:00.1 on vfio-pci, the other two functions not",
            iommu="amd",
            qemu_devices=AMD_CPU + AMD_IOMMU + ROOT_PORT + CARD_DEVICES,
            append="iommu=pt",  # AMD-Vi is on by default; amd_iommu=on is not a valid option
            bind_vfio=["0000:01:00.0", "0000:01:00.1"],
        ),
        Scenario(
            name="intel-iommu-off",
            description="Intel IOMMU device present but intel_iommu=off on the kernel command line",
            iommu="intel",
            qemu_devices=INTEL_CPU + INTEL_IOMMU + ROOT_PORT + CARD_DEVICES,
            append="intel_iommu=off",
            iommu_enabled=False,
        ),
        Scenario(
            name="intel-on-amd-cpu",
            description="Intel IOMMU (intel-iommu: an ACPI DMAR table) on an AMD CPU (vendor=AuthenticAMD), "
            "intel_iommu=off on the kernel command line: the only IOMMU there is stays off. The CPU vendor "
            "and the IOMMU disagree on purpose (the usual nested setup); the firmware table decides",
            iommu="intel",
            qemu_devices=AMD_CPU + INTEL_IOMMU + ROOT_PORT + CARD_DEVICES,
            append="intel_iommu=off",
            iommu_enabled=False,
        ),
        Scenario(
            name="intel-shared-group",
            description="Card behind a root port without ACS that shares a multifunction slot with "
            "another ACS-less root port; the NIC at 02:00.0 lands in the card's IOMMU group",
            iommu="intel",
            qemu_devices=INTEL_CPU + INTEL_IOMMU + SHARED_PORTS + CARD_DEVICES,
            append="intel_iommu=on",
            group_intruders=["0000:02:00.0"],
            # The whole card is on vfio-pci, yet the group is not viable: the NIC is on e1000e.
            bind_vfio=list(CARD_FUNCTIONS),
        ),
        Scenario(
            name="intel-dmesg-restricted",
            description="Intel VT-d, partial binding; kernel.dmesg_restrict=1 and the doctor runs "
            "without CAP_SYSLOG and CAP_SYS_ADMIN (the kernel still lets CAP_SYS_ADMIN read it), so "
            "dmesg and /dev/kmsg fail for it",
            bind_vfio=["0000:01:00.0", "0000:01:00.1"],
            sysctl={"kernel.dmesg_restrict": "1"},
            doctor_prefix=[
                "setpriv",
                "--inh-caps=-syslog,-sys_admin",
                "--bounding-set=-syslog,-sys_admin",
                "--",
            ],  # fmt: skip
            **_intel(),
        ),
    ]
}


def get(name: str) -> Scenario:
    from .errors import LabError

    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
