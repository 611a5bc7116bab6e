"""libvirt inside the guest: the error users actually see, from virsh start with managed hostdevs.

(libvirtd runs in the guest against the guest's kernel; namespaces = [] in qemu.conf.)
"""

from __future__ import annotations

import pytest

from lab import CARD, CARD_FUNCTIONS

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("guest", ["intel-partial"], indirect=True)
def test_libvirt_managed_hostdev_not_viable_then_whole_card_starts(guest):
    before = guest.drivers()
    group = guest.group_of(CARD)
    guest.start_libvirt()
    try:
        one = guest.libvirt_start_domain("lab-one", [CARD])
        assert one.rc != 0, one
        assert f"vfio {CARD}: group {group} is not viable" in one.stderr, one
        assert (
            "Please ensure all devices within the iommu_group are bound to their vfio bus driver."
            in one.stderr
        )

        whole = guest.libvirt_start_domain("lab-whole", CARD_FUNCTIONS)
        assert whole.rc == 0, whole
        assert "Domain 'lab-whole' started" in whole.stdout, whole
        during = guest.drivers()
        assert all(during[a] == "vfio-pci" for a in CARD_FUNCTIONS), during
    finally:
        guest.libvirt_destroy_domain("lab-whole")
        guest.libvirt_destroy_domain("lab-one")
    # managed='yes': libvirt gives 01:00.2 and 01:00.3 back to their drivers.
    after = guest.drivers()
    if after != before:
        guest.close()  # leave no surprise for later tests of this scenario (the pool reboots)
    assert after == before, (before, after)
