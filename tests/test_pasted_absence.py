"""No verdict from absence (issue 14): a device list the paste may have filtered leaves the other devices unknown,
and a check never says "IOMMU not active" where the same paste proves it active (the proof iommu.active reads)."""

from __future__ import annotations

from checks.common import iommu_on
from doctor import pasted as P

# gh-complete-single-gpu-passthrough-8's card as lspci -nnk showed it, here on vfio-pci (written for these tests)
CARD = ("$ lspci -nnk -s 01:00\n"
        "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n"
        "\tKernel driver in use: vfio-pci\n"
        "01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n"
        "\tKernel driver in use: vfio-pci\n")


def facts(text: str) -> P.PastedFacts:
    return P.PastedFacts(P.evidence_from_text(text, "paste.txt"))


def result(text: str, cid: str):  # type: ignore[no-untyped-def]
    run = P.run_pasted(facts(text), "paste.txt")
    rs = [sr.result for sr in run.report.results if sr.result.check_id == cid]
    assert len(rs) == 1
    return rs[0]


def test_a_grepped_group_listing_showing_one_card_leaves_twins_unknown() -> None:
    text = ("$ find /sys/kernel/iommu_groups/ -type l | grep 01:00\n"
            "/sys/kernel/iommu_groups/1/devices/0000:01:00.0\n/sys/kernel/iommu_groups/1/devices/0000:01:00.1\n\n" + CARD)
    r = result(text, "vfio.ids_unique_to_card")
    assert r.status.value == "unknown"
    assert any("lspci -nnk" in m for m in r.messages)  # the command that settles it


def test_one_groups_listing_without_its_command_is_not_the_whole_device_list() -> None:
    text = "/sys/kernel/iommu_groups/1/devices/0000:01:00.0\n/sys/kernel/iommu_groups/1/devices/0000:01:00.1\n\n" + CARD
    assert facts(text).unlisted_devices() is not None
    assert result(text, "vfio.ids_unique_to_card").status.value == "unknown"


def test_a_whole_group_listing_lists_every_device() -> None:
    links = "".join(f"/sys/kernel/iommu_groups/{g}/devices/{a}\n" for g, a in
                    ((0, "0000:00:00.0"), (1, "0000:00:01.0"), (1, "0000:01:00.0"), (1, "0000:01:00.1"), (2, "0000:00:14.0")))
    text = "$ find /sys/kernel/iommu_groups/ -type l\n" + links + "\n" + CARD
    assert facts(text).unlisted_devices() is None
    assert result(text, "vfio.ids_unique_to_card").status.value == "pass"


def test_checks_do_not_call_the_iommu_inactive_where_the_paste_proves_it_active() -> None:
    # an absent group folder (written for this test) beside a device on vfio-pci
    text = "$ ls /sys/kernel/iommu_groups/\nls: cannot access '/sys/kernel/iommu_groups/': No such file or directory\n\n" + CARD
    f = facts(text)
    assert iommu_on(f) is True  # a device on vfio-pci proves it, as iommu.active reads it
    r = result(text, "gpu.group_isolated")
    assert "IOMMU not active" not in r.summary
    # gh-cloud-hypervisor-6147: 'Adding to iommu group' lines prove it too
    assert iommu_on(facts("[    4.507087] pci 0000:00:03.1: Adding to iommu group 5\n")) is True


def test_an_error_that_only_a_missing_iommu_prints_makes_it_inactive() -> None:
    # gh-macos-simple-kvm-579, as pasted
    f = facts("qemu-system-x86_64: -device vfio-pci,host=08:00.0,bus=port.1,multifunction=on: vfio 0000:08:00.0: no iommu_group found: "
              "No such file or directory\n")
    assert iommu_on(f) is False


def test_a_gpu_whose_boot_display_is_not_shown_is_a_candidate_with_the_question_as_a_note() -> None:
    # gh-cloud-hypervisor-4353's Quadro, as lspci -k -s showed it (no boot_vga in the paste)
    text = ("$ lspci -k -s 0000:65:00.0\n"
            "0000:65:00.0 VGA compatible controller: NVIDIA Corporation TU104GL [Quadro RTX 4000] (rev a1)\n"
            "        Subsystem: Dell TU104GL [Quadro RTX 4000]\n"
            "        Kernel driver in use: vfio-pci\n")
    r = result(text, "gpu.candidate")
    assert r.status.value == "pass"
    assert any("boot display is not shown" in m and "boot_vga" in m for m in r.messages)
