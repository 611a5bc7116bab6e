"""pci-stub on a pasted command line or a device shown bound to pci-stub: vfio.ids_configured FAILs with the exact
correction (the same ids to vfio-pci, pci-stub.ids= off the command line); vfio.group_viable stays PASS (pci-stub
keeps the group viable) and says the functions are on pci-stub, not unbound.

The format is `lspci -nnk` as the guides that recommend pci-stub.ids= print it (e.g. a Fedora laptop guide:
"Kernel driver in use: pci-stub" under each function of a GTX 1660 Ti Mobile); no forum thread with a confirmed
outcome was found (see the report of branch h14c)."""

from __future__ import annotations

from doctor import pasted as P
from doctor.model import CmdlineEdit, Result, VfioIds

STUB = '$ cat /proc/cmdline\nBOOT_IMAGE=/boot/vmlinuz-5.4.0-42-generic root=UUID=0d3b ro quiet splash intel_iommu=on pci-stub.ids=10de:1c03,10de:10f1\n\n$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 [GeForce GTX 1060 6GB] [1462:3285]\n\tKernel driver in use: pci-stub\n\tKernel modules: nvidiafb, nouveau\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 High Definition Audio Controller [1462:3285]\n\tKernel driver in use: pci-stub\n\tKernel modules: snd_hda_intel\n\n$ for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo "IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})"; done\nIOMMU Group 1 00:01.0 PCI bridge [0604]: Intel Corporation Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 07)\nIOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\nIOMMU Group 1 01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n'


def results(text: str) -> dict[str, Result]:
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    run = P.run_pasted(pf, "paste.txt")
    return {sr.result.check_id: sr.result for sr in run.report.results if sr.result.check_id.startswith("vfio.")}


def test_functions_on_pci_stub_fail_ids_configured_with_the_exact_correction() -> None:
    r = results(STUB)["vfio.ids_configured"]
    assert r.status.value == "fail"
    assert "0000:01:00.0, 0000:01:00.1 on pci-stub, not vfio-pci" in r.summary
    assert "pci-stub.ids=10de:1c03,10de:10f1 on the running command line" in r.summary
    assert any("vfio-pci.ids=10de:1c03,10de:10f1" in m for m in r.messages)
    params = r.remedy.params
    assert params == CmdlineEdit(add=("vfio-pci.ids=10de:1c03,10de:10f1",), remove=("pci-stub.ids=10de:1c03,10de:10f1",))
    g = results(STUB)["vfio.group_viable"]
    assert g.status.value == "pass" and "2 on pci-stub" in g.summary and "unbound" not in g.summary


def test_the_underscore_spelling_is_taken_off_as_written() -> None:
    r = results(STUB.replace("pci-stub.ids=", "pci_stub.ids="))["vfio.ids_configured"]
    assert r.status.value == "fail"
    assert r.remedy.params.remove == ("pci_stub.ids=10de:1c03,10de:10f1",)


def test_bound_to_pci_stub_without_the_command_line_shown_moves_the_ids_to_vfio_pci() -> None:
    text = STUB.split("\n\n", 1)[1]  # no /proc/cmdline
    r = results(text)["vfio.ids_configured"]
    assert r.status.value == "fail" and "running command line" not in r.summary
    assert r.remedy.params == VfioIds(("10de:1c03", "10de:10f1"))


def test_pci_stub_ids_without_the_drivers_shown_draw_no_verdict_from_the_argument_alone() -> None:
    # pci-stub may be a module that never loaded: the argument alone does not show where the device is
    text = STUB.replace("\tKernel driver in use: pci-stub\n", "")
    r = results(text)["vfio.ids_configured"]
    assert r.status.value != "fail" or "pci-stub, not vfio-pci" not in r.summary
