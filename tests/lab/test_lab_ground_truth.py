"""What the lab's guests really look like, checked without gpudoctor.

These pin the lab itself: if one fails, the scenario no longer shows what gpudoctor's tests
assume (e.g. a new QEMU or kernel grouped devices differently).
"""

from __future__ import annotations

import os
import re

import pytest

from lab import CARD, CARD_FUNCTIONS, SCENARIOS

pytestmark = pytest.mark.lab

ALL = list(SCENARIOS)
WITH_IOMMU = [n for n, s in SCENARIOS.items() if s.iommu_enabled]
NOT_VIABLE = ["intel-partial", "amd-partial", "intel-dmesg-restricted", "intel-shared-group"]
# The usual host drivers of the card's functions when nothing is bound to vfio-pci.
NATIVE = {
    "0000:01:00.0": "bochs-drm",
    "0000:01:00.1": "snd_hda_intel",
    "0000:01:00.2": "xhci_hcd",
    "0000:01:00.3": "serial",
}


def scenarios(*names):
    return pytest.mark.parametrize("guest", list(names), indirect=True)


@scenarios(*ALL)
def test_card_functions_and_classes(guest):
    r = guest.run(["lspci", "-n", "-s", "01:00"], check=True)
    classes = dict(re.findall(r"^(\S+) (\w{4}):", r.stdout, re.M))
    assert classes == {"01:00.0": "0300", "01:00.1": "0403", "01:00.2": "0c03", "01:00.3": "0700"}, r.stdout


@scenarios(*ALL)
def test_drivers_match_the_scenario(guest):
    drivers = guest.drivers()
    for addr in CARD_FUNCTIONS:
        want = "vfio-pci" if addr in guest.scenario.bind_vfio else NATIVE[addr]
        assert drivers[addr] == want, (addr, drivers)
    # The host's own boot display stays on its driver.
    assert drivers["0000:00:01.0"] == "bochs-drm", drivers


@scenarios(*WITH_IOMMU)
def test_card_functions_share_one_group(guest):
    groups = guest.iommu_groups()
    g = guest.group_of(CARD)
    assert g is not None, groups
    members = groups[g]
    assert set(CARD_FUNCTIONS) <= set(members), members
    endpoints = [d for d in members if d not in CARD_FUNCTIONS and not _is_bridge(guest, d)]
    assert sorted(endpoints) == sorted(guest.scenario.group_intruders), members


def _is_bridge(guest, addr):
    return guest.read_file(f"/sys/bus/pci/devices/{addr}/class").strip().startswith("0x0604")


@scenarios("intel-shared-group")
def test_shared_group_holds_the_nic_and_both_root_ports(guest):
    members = guest.iommu_groups()[guest.group_of(CARD)]
    assert members == sorted(["0000:00:1c.0", "0000:00:1c.1", *CARD_FUNCTIONS, "0000:02:00.0"]), members
    assert guest.drivers()["0000:02:00.0"] == "e1000e"


@scenarios("intel-iommu-off", "intel-on-amd-cpu")
def test_iommu_off_has_no_groups(guest):
    r = guest.run("ls -A /sys/kernel/iommu_groups | wc -l; cat /proc/cmdline", check=True)
    count, cmdline = r.stdout.splitlines()[:2]
    assert count.strip() == "0", r.stdout
    assert "intel_iommu=off" in cmdline
    assert "DMAR: IOMMU disabled" in guest.run("dmesg", check=True).stdout


@scenarios(*[n for n in WITH_IOMMU if SCENARIOS[n].iommu == "intel"])
def test_intel_kernel_log_shows_vtd(guest):
    log = guest.run("dmesg", check=True).stdout
    assert "DMAR: IOMMU enabled" in log
    assert "DMAR: Intel(R) Virtualization Technology for Directed I/O" in log
    assert "DMAR-IR: Enabled IRQ remapping" in log


@scenarios("amd-partial")
def test_amd_kernel_log_shows_amd_vi(guest):
    log = guest.run("dmesg", check=True).stdout
    assert re.search(r"AMD-Vi: Found IOMMU", log), log[-3000:]
    assert "AMD-Vi: Interrupt remapping enabled" in log
    assert "DMAR: IOMMU enabled" not in log


@scenarios("intel-on-amd-cpu")
def test_intel_iommu_on_amd_cpu_has_dmar_and_no_amd_vi(guest):
    """The deliberate mismatch: an AMD CPU, the firmware describes only an Intel IOMMU (DMAR)."""
    r = guest.run("grep -m1 '^vendor_id' /proc/cpuinfo; ls /sys/firmware/acpi/tables", check=True)
    assert r.stdout.splitlines()[0].split(":")[1].strip() == "AuthenticAMD", r.stdout
    tables = r.stdout.split()
    assert "DMAR" in tables and "IVRS" not in tables, r.stdout
    log = guest.run("dmesg", check=True).stdout
    assert "DMAR: IOMMU disabled" in log
    # amd_iommu_v2 still says "AMD-Vi: AMD IOMMUv2 functionality not available" on any AMD CPU.
    assert not re.search(r"AMD-Vi: (Found IOMMU|Interrupt remapping enabled)", log), log[-3000:]


@scenarios(*NOT_VIABLE)
def test_qemu_in_guest_says_group_not_viable(guest):
    group = guest.group_of(CARD)
    r = guest.try_qemu_vfio()
    assert r.rc != 0, r
    assert f"vfio {CARD}: group {group} is not viable" in r.stderr, r
    assert "Please ensure all devices within the iommu_group are bound to their vfio bus driver." in r.stderr


@scenarios("intel-bound")
def test_qemu_in_guest_gets_past_vfio_when_whole_group_bound(guest):
    r = guest.try_qemu_vfio()
    assert "not viable" not in r.output, r
    assert r.rc == 0, r
    # The monitor lists the assigned device (1234:1111, the card's VGA function).
    assert 'id "hostdev0"' in r.stdout and "1234:1111" in r.stdout, r


@scenarios("intel-unbound")
def test_qemu_in_guest_fails_when_nothing_bound(guest):
    r = guest.try_qemu_vfio()
    assert r.rc != 0, r
    # No device of the group is on vfio-pci, so vfio never created the group's device node.
    assert re.search(rf"vfio {CARD}: (failed to open /dev/vfio/\d+|group \d+ is not viable)", r.stderr), r


@scenarios("intel-iommu-off", "intel-on-amd-cpu")
def test_qemu_in_guest_finds_no_group_without_iommu(guest):
    r = guest.try_qemu_vfio()
    assert r.rc != 0, r
    assert "no iommu_group found" in r.stderr, r


@scenarios("intel-dmesg-restricted")
def test_kernel_log_unreadable_for_the_doctor_but_readable_for_root(guest):
    restricted = guest.run([*guest.scenario.doctor_prefix, "dmesg"])
    assert restricted.rc != 0, restricted
    assert "Operation not permitted" in restricted.stderr, restricted
    kmsg = guest.run([*guest.scenario.doctor_prefix, "dd", "if=/dev/kmsg", "bs=8192", "count=1"])
    assert kmsg.rc != 0 and "Operation not permitted" in kmsg.stderr, kmsg
    assert guest.run(["dmesg"]).rc == 0
    # sysfs still tells that the IOMMU is on.
    assert guest.run("ls /sys/class/iommu/").stdout.strip() == "dmar0"


@scenarios("intel-partial")
def test_guest_sees_the_repo_at_the_same_path(guest):
    from lab import REPO_ROOT

    r = guest.run(["test", "-f", str(REPO_ROOT / "lab" / "agent.py")])
    assert r.rc == 0
    # The overlay is writable and private to the guest.
    assert guest.run("echo x > /etc/lab-probe && cat /etc/lab-probe", check=True).stdout == "x\n"
    assert not os.path.exists("/etc/lab-probe")
    assert guest.run(["uname", "-r"], check=True).stdout.strip() == guest.kernel.kver
    assert guest.run(["modinfo", "-F", "depends", "vfio-pci"], check=True).stdout.strip()
