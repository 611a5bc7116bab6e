"""Lab scenarios of the fleet proof (tests/lab/test_lab_fleet.py) besides lab.scenarios' own.

- intel-no-dmar: an Intel host whose firmware has VT-d off: no IOMMU device at all, so no ACPI
  DMAR table, while the kernel command line asks for intel_iommu=on (what an admin's role sets).
  Its CPU says GenuineIntel, as the platform it stands for; no IOMMU disagrees with it.
"""

from __future__ import annotations

from .scenarios import CARD_DEVICES, INTEL_CPU, ROOT_PORT, Scenario

FLEET_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="intel-no-dmar",
            description="Intel CPU, VT-d off in firmware: no IOMMU device, no ACPI DMAR table; intel_iommu=on "
            "on the kernel command line cannot help",
            iommu="intel",
            qemu_devices=INTEL_CPU + ROOT_PORT + CARD_DEVICES,
            append="intel_iommu=on",
            iommu_enabled=False,
        ),
    ]
}
