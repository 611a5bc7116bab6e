"""Group listings by `ls`: `ls -l /sys/kernel/iommu_groups/N/devices/` (symlinks, the group named only by the command),
`ls /sys/kernel/iommu_groups/*/devices` (a header per group, bare addresses several to a line) and `ls` of one group's
folder are read as group membership, like the other group listings (shapes as coreutils' ls prints them; the symlink
form as gh-vgpu-unlock-57 pasted it)."""

from __future__ import annotations

import pytest

from doctor import pasted as P

ONE_GROUP_LONG = '$ ls -l /sys/kernel/iommu_groups/1/devices/\ntotal 0\nlrwxrwxrwx 1 root root 0 Mar  2 10:11 0000:00:01.0 -> ../../../../devices/pci0000:00/0000:00:01.0\nlrwxrwxrwx 1 root root 0 Mar  2 10:11 0000:01:00.0 -> ../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0\nlrwxrwxrwx 1 root root 0 Mar  2 10:11 0000:01:00.1 -> ../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.1\n\n$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tKernel driver in use: vfio-pci\n\tKernel modules: nouveau\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tKernel driver in use: snd_hda_intel\n\tKernel modules: snd_hda_intel\n'
ALL_GROUPS_SHORT = '$ ls /sys/kernel/iommu_groups/*/devices\n/sys/kernel/iommu_groups/0/devices:\n0000:00:00.0\n\n/sys/kernel/iommu_groups/1/devices:\n0000:00:01.0  0000:01:00.0  0000:01:00.1\n\n/sys/kernel/iommu_groups/2/devices:\n0000:00:14.0  0000:00:14.2\n\n$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tKernel driver in use: vfio-pci\n\tKernel modules: nouveau\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tKernel driver in use: snd_hda_intel\n\tKernel modules: snd_hda_intel\n'
ONE_GROUP_SHORT = '$ ls /sys/kernel/iommu_groups/1/devices/\n0000:00:01.0  0000:01:00.0  0000:01:00.1\n\n$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tKernel driver in use: vfio-pci\n\tKernel modules: nouveau\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tKernel driver in use: snd_hda_intel\n\tKernel modules: snd_hda_intel\n'


def run(text: str) -> P.PastedRun:
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    return P.run_pasted(pf, "paste.txt")


def status(r: P.PastedRun, cid: str) -> tuple[str, str]:
    rs = [sr.result for sr in r.report.results if sr.result.check_id == cid]
    assert len(rs) == 1
    return rs[0].status.value, rs[0].summary


@pytest.mark.parametrize("text, groups", [
    (ONE_GROUP_LONG, {"1": ("0000:00:01.0", "0000:01:00.0", "0000:01:00.1")}),
    (ALL_GROUPS_SHORT, {"0": ("0000:00:00.0",), "1": ("0000:00:01.0", "0000:01:00.0", "0000:01:00.1"),
                        "2": ("0000:00:14.0", "0000:00:14.2")}),
    (ONE_GROUP_SHORT, {"1": ("0000:00:01.0", "0000:01:00.0", "0000:01:00.1")}),
])
def test_ls_group_listings_are_group_membership(text: str, groups: dict[str, tuple[str, ...]]) -> None:
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    got = {k: tuple(sorted(v)) for k, v in pf.iommu_groups().items()}
    assert got == groups
    assert "not recognised" not in pf.source_info("paste.txt").details["input 1"]
    r = run(text)
    assert status(r, "iommu.groups_present")[0] == "pass"
    st, summary = status(r, "vfio.group_viable")
    assert st == "fail" and "0000:01:00.1 [0403] 10de:10f1 on snd_hda_intel" in summary


def test_a_member_named_by_address_alone_leaves_isolation_unknown_not_failed() -> None:
    # 00:01.0 (the root port, a bridge on a real host) has no lspci line: bridge or endpoint is not shown
    st, summary = status(run(ONE_GROUP_LONG), "gpu.group_isolated")
    assert st == "unknown" and "0000:00:01.0" in summary
    known = ONE_GROUP_LONG + ("\n$ lspci -nn -s 00:01.0\n00:01.0 PCI bridge [0604]: Intel Corporation 6th-10th Gen Core Processor PCIe "
                              "Controller (x16) [8086:1901] (rev 07)\n")
    assert status(run(known), "gpu.group_isolated")[0] == "pass"
    endpoint = ONE_GROUP_LONG + ("\n$ lspci -nn -s 00:01.0\n00:01.0 USB controller [0c03]: Intel Corporation USB 3.0 xHCI "
                                 "[8086:a12f] (rev 31)\n")
    assert status(run(endpoint), "gpu.group_isolated")[0] == "fail"


def test_bare_addresses_are_not_read_as_a_group_without_an_iommu_groups_command() -> None:
    text = "$ ls /sys/bus/pci/devices/\n0000:00:00.0  0000:00:01.0  0000:01:00.0\n"
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    assert pf.groups is None
