"""The shapes people paste in: quoting, fences, indentation, the popular group scripts, lspci -vmm, lshw, /etc/modules,
more kernel-log lines. Inputs are lines from public threads (the slug names the fixtures/pasted entry)."""

from __future__ import annotations

import pytest

from doctor import pasted as P
from doctor.pasted.forms import rewrite_group_line, unwrap
from doctor.pasted.segment import segment


def facts(text: str, name: str = "paste.txt") -> P.PastedFacts:
    return P.PastedFacts(P.evidence_from_text(text, name))


def result(text: str, cid: str, subject: str | None = None):  # type: ignore[no-untyped-def]
    run = P.run_pasted(facts(text), "paste.txt")
    rs = [sr.result for sr in run.report.results if sr.result.check_id == cid and (subject is None or sr.subject == subject)]
    assert len(rs) == 1, [sr.subject for sr in run.report.results if sr.result.check_id == cid]
    return rs[0]


@pytest.mark.parametrize("raw, want", [
    ("> 00:14.0 USB controller [0c03]: Intel Corporation 7 Series/C210 Series Chipset Family USB xHCI Host Controller [8086:1e31] (rev 04)",
     "00:14.0 USB controller [0c03]: Intel Corporation 7 Series/C210 Series Chipset Family USB xHCI Host Controller [8086:1e31] (rev 04)"),
    ("**vfio 0000:01:00.0: failed to open /dev/vfio/1: No such file or directory**",
     "vfio 0000:01:00.0: failed to open /dev/vfio/1: No such file or directory"),
    ("        [    0.977163] [    T1] pci 0000:00:01.0: [1234:1111] type 00 class 0x030000 conventional PCI endpoint",
     "[    0.977163] [    T1] pci 0000:00:01.0: [1234:1111] type 00 class 0x030000 conventional PCI endpoint"),  # gh-eve-6609
    ("<pre>00:00.0 Host bridge: Advanced Micro Devices, Inc. [AMD] Raven/Raven2 Root Complex",
     "00:00.0 Host bridge: Advanced Micro Devices, Inc. [AMD] Raven/Raven2 Root Complex"),  # gh-macos-simple-kvm-295
    ("\tKernel driver in use: vfio-pci", "\tKernel driver in use: vfio-pci"),  # an lspci -k line keeps its indent
])
def test_unwrap_takes_off_quoting_and_markup(raw: str, want: str) -> None:
    assert unwrap(raw) == want


def test_sgpupt_dash_listing_gives_groups_and_drops_lsusb_lines() -> None:
    # gh-sgpupt-16
    text = ("Group 1 - 00:01.0 PCI bridge [0604]: Intel Corporation 6th-10th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 05)\n"
            "Group 2 - 00:14.0 USB controller [0c03]: Intel Corporation 100 Series/C230 Series Chipset Family USB 3.0 xHCI Controller [8086:a12f] (rev 31)\n"
            "Group 2 - 00:14.0 USB Bus 001 Device 005: ID 0d8c:0017 C-Media Electronics, Inc. RAMPAGE MIRACLE\n")
    pf = facts(text)
    assert pf.iommu_groups() == {"1": ("0000:00:01.0",), "2": ("0000:00:14.0",)}
    assert pf.pci_devices()["0000:00:14.0"].class_code >> 8 == 0x0c03
    assert rewrite_group_line("Group 2 - 00:14.0 USB Bus 001 Device 004: ID 1d57:fa60 Xenta 2.4G Receiver", False) == "IOMMU Group 2"


@pytest.mark.parametrize("header", ["### Group {} ###", "## IOMMU Group {}", "Group {}:", "IOMMU group {}:"])
def test_a_group_header_alone_on_its_line_heads_its_indented_devices(header: str) -> None:
    text = "\n".join([
        header.format(14),
        "    01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2080] [10de:1e82] (rev a1)",
        "    01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio Controller [10de:10f8] (rev a1)",
        header.format(15),
        "\t02:00.0 Ethernet controller [0200]: Intel Corporation I211 Gigabit Network Connection [8086:1539] (rev 03)",
    ]) + "\n"
    pf = facts(text)
    assert pf.iommu_groups() == {"14": ("0000:01:00.0", "0000:01:00.1"), "15": ("0000:02:00.0",)}, header
    assert [c.kind for c in pf.chunks] == ["group"], pf.chunks
    assert result(text, "gpu.group_isolated", "0000:01:00.0").status.value == "pass"
    # prose that only names a group is not a header
    assert rewrite_group_line("Group 14 is the one with my GPU", False) is None


def test_gpu_passthrough_manager_columns_give_an_isolated_group() -> None:
    # gh-gpu-passthrough-manager-21, tabs as pasted
    text = ("Group 15:\t[10de:21c4] [R] 09:00.0  VGA compatible controller                TU116 [GeForce GTX 1660 SUPER]\n"
            "\t\t[10de:1aeb]     09:00.1  Audio device                             TU116 High Definition Audio Controller\n"
            "\t\t[10de:1aec]     09:00.2  USB controller                           TU116 USB 3.1 Host Controller\n"
            "\t\t[10de:1aed]     09:00.3  Serial bus controller                    TU116 USB Type-C UCSI Controller\n")
    pf = facts(text)
    assert pf.iommu_groups() == {"15": ("0000:09:00.0", "0000:09:00.1", "0000:09:00.2", "0000:09:00.3")}
    gpu = pf.pci_devices()["0000:09:00.0"]
    assert gpu.is_display and gpu.ident == "10de:21c4"
    assert result(text, "gpu.group_isolated", "0000:09:00.0").status.value == "pass"


def test_a_driver_suffix_in_a_group_listing_makes_the_group_not_viable() -> None:
    # gh-cubecos-259: the product's listing, filtered to GPUs; the last line is cut by the excerpt
    text = ("IOMMU Group 15: 5d:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H200 SXM 141GB] [10de:2335] (rev a1) (driver: nvidia)\n"
            "IOMMU Group 41: 3a:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H200 SXM 141GB] [10de:2335] (rev a1)\n")
    devs = facts(text).pci_devices()
    assert devs["0000:5d:00.0"].driver == "nvidia"
    assert devs["0000:3a:00.0"].driver_known is False  # no suffix: unknown, not "no driver"
    assert result(text, "vfio.group_viable", "0000:5d:00.0").status.value == "fail"


def test_a_group_script_whose_glob_matched_nothing_shows_no_groups() -> None:
    # gh-vmra1n-6 (inline-code backtick as pasted)
    text = ("`IOMMU Group * 00:00.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD/ATI] RD9x0/RX980 Host Bridge [1002:5a14] (rev 02)\n"
            "00:02.0 PCI bridge [0604]: Advanced Micro Devices, Inc. [AMD/ATI] RD890/RD9x0/RX980 PCI to PCI bridge (PCI Express GFX port 0) [1002:5a16]\n")
    assert facts(text).iommu_groups() == {}
    assert result(text, "iommu.groups_present").status.value == "fail"


def test_lspci_vmm_records_give_devices_and_groups() -> None:
    # gh-iommu-info-generate-11 (lspci -nnvmm)
    text = ("Slot:   00:00.2\nClass:  IOMMU [0806]\nVendor: Advanced Micro Devices, Inc. [AMD] [1022]\n"
            "Device: Renoir/Cezanne IOMMU [1631]\nProgIf: 00\n\n"
            "Slot:   00:01.1\nClass:  PCI bridge [0604]\nVendor: Advanced Micro Devices, Inc. [AMD] [1022]\n"
            "Device: Renoir PCIe GPP Bridge [1633]\nProgIf: 00\nIOMMUGroup:     1\n")
    pf = facts(text)
    assert pf.iommu_groups() == {"1": ("0000:00:01.1",)}
    d = pf.pci_devices()["0000:00:01.1"]
    assert (d.ident, d.class_code >> 8, d.driver_known) == ("1022:1633", 0x0604, False)
    assert result(text, "iommu.active").status.value == "pass"


def test_lshw_display_gives_the_device_and_its_driver() -> None:
    # gh-kata-containers-11687
    text = ("  *-display\n       description: 3D controller\n       product: GA102GL [A10]\n       vendor: NVIDIA Corporation\n"
            "       bus info: pci@0000:17:00.0\n       configuration: driver=vfio-pci latency=0\n")
    d = facts(text).pci_devices()["0000:17:00.0"]
    assert (d.class_code >> 8, d.driver, d.driver_known) == (0x0302, "vfio-pci", True)


def test_etc_modules_after_its_command_is_early_load_configuration() -> None:
    # gh-heads-712
    text = ("root@proxmox:~# cat /etc/modules\n# /etc/modules: kernel modules to load at boot time.\n"
            "vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n")
    el = facts(text).early_load()
    assert [ln.text for ln in el.modules_load] == ["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"]
    assert el.modules_load[2].where.endswith(":5")
    assert [c.kind for c in segment("vfio\nvfio_pci\n")] != ["etc_modules"]  # bare names without the command: not taken


def test_a_modules_file_pasted_alone_is_known_by_the_header_debian_ships_in_it() -> None:
    el = facts("# /etc/modules: kernel modules to load at boot time.\n#\n# This file contains the names of kernel modules "
               "that should be loaded\nvfio\nvfio_pci\n").early_load()
    assert [ln.text for ln in el.modules_load] == ["vfio", "vfio_pci"] and el.initramfs == ()
    el = facts("# List of modules that you want to include in your initramfs.\n# They will be loaded at boot time in the "
               "order below.\nvfio_pci\nvfio\n").early_load()
    assert [ln.text for ln in el.initramfs] == ["vfio_pci", "vfio"] and el.initramfs_tool == "initramfs-tools", el
    assert el.initramfs[0].where.endswith(":3")
    # any other comment does not make bare names modules
    assert [c.kind for c in segment("# my notes\nvfio\nvfio_pci\n")] != ["etc_modules"]


def test_dmar_ir_under_drhd_base_shows_the_dmar_table() -> None:
    # gh-macos-simple-kvm-497
    text = "[ 0.033906] DMAR: IOMMU enabled\n[ 0.069581] DMAR-IR: IOAPIC id 2 under DRHD base 0xfed91000 IOMMU 3\n"
    assert "DMAR" in facts(text).acpi_tables()
    assert result(text, "firmware.iommu_table").status.value == "pass"


def test_kvm_vendor_module_in_lsmod_proves_dev_kvm() -> None:
    # gh-cubecos-312: only the "Used by" column names kvm_amd
    text = "kvm                  1458176  2 kvm_amd,nvidia_vgpu_vfio\nirqbypass              12288  3 vfio_pci_core,nvidia_vgpu_vfio,kvm\n"
    assert facts(text).kvm_device() is True
    assert result(text, "kvm.available").status.value == "pass"


def test_vfio_pci_opening_a_device_proves_the_iommu_and_names_a_rom_problem() -> None:
    # gh-macos-kvm-pci-passthrough-2
    text = ("[ 1271.531853] vfio-pci 0000:00:02.0: enabling device (0400 -> 0403)\n"
            "[ 1272.865197] vfio-pci 0000:00:02.0: Invalid PCI ROM header signature: expecting 0xaa55, got 0xffff\n")
    assert result(text, "iommu.active").status.value == "pass"
    assert result(text, "gpu.rom_readable", "0000:00:02.0").status.value == "warn"
