"""Kernel arguments that do not do what they are meant to (doctor.kernel_args, cmdline.iommu_args_meaningful):
read by the kernel's own parsers (intel_iommu_setup, x86 iommu_setup's prefix match), each with the exact
correction as a typed CmdlineEdit. Lines from fixtures/pasted entries where one exists (the slug says which);
the others are written here and say so."""

from __future__ import annotations

import pytest

from doctor import pasted as P
from doctor.facts import parse_cmdline
from doctor.kernel_args import findings, iommu_pt_item
from doctor.model import CmdlineEdit


def run_text(text: str, name: str = "paste.txt") -> P.PastedRun:
    pf = P.PastedFacts(P.evidence_from_text(text, name))
    assert pf.recognised_anything()
    return P.run_pasted(pf, name)


def result(run: P.PastedRun, cid: str):  # type: ignore[no-untyped-def]
    rs = [sr.result for sr in run.report.results if sr.result.check_id == cid]
    assert len(rs) == 1
    return rs[0]


# gh-macos-simple-kvm-497, grub.txt as pasted (the next boot's command line only)
GRUB_497 = ('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash intel_iommu=on iommu=pt pcie_aspm=off vfio_iommu_type1.allow_unsafe_interrupts=1 '
            'vfio_pci.disable_vga=1 vfio_pci.disable_idle_d3=1 vfio-pci-ids=8086:9a49,8086:a0c8"\n')
# gh-deepops-515, grub-cmdline.txt (the GRUB line pasted bare; Intel host per the thread)
DEEPOPS_515 = "BOOT_IMAGE=/vmlinuz quiet splash amd_iommu=on vfio-pci.ids=1002:699f,1002:aae0\n"
# gh-clayfreeman-gpu-passthrough-6, the end of the kernel log's command line
CLAY_6 = ("[    0.000000] Command line: BOOT_IMAGE=(hd2,gpt5)/vmlinuz-6.18.10-100.fc42.x86_64 ro rhgb quiet intel_iommu=on iommu=pt "
          "vfio-pci.ids=1002:6900 vfio_pci.ids=1002:6900 vfio_pci.disable_idle_d3=1 modprobe. blacklist=amdgpu\n")


def test_vfio_pci_ids_misspelled_on_the_next_boot_gives_the_exact_spelling() -> None:
    r = result(run_text(GRUB_497), "cmdline.iommu_args_meaningful")
    assert r.status.value == "warn" and "vfio-pci-ids=8086:9a49,8086:a0c8" in r.summary
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("vfio-pci.ids=8086:9a49,8086:a0c8",),
                                                                   remove=("vfio-pci-ids=8086:9a49,8086:a0c8",))
    assert "/etc/default/grub" in r.summary  # it says where it stands: the next boot's configuration


def test_amd_iommu_on_does_nothing_whatever_the_vendor() -> None:
    r = result(run_text(DEEPOPS_515), "cmdline.iommu_args_meaningful")
    assert r.status.value == "warn" and "amd_iommu=on" in r.summary
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(remove=("amd_iommu=on",))
    assert all("add  to" not in s for s in r.remedy.steps)  # no empty "add" step where nothing is added


def test_amd_iommu_on_on_an_intel_host_asks_for_intel_iommu_on() -> None:
    # the deepops line, with the vendor shown (a DMAR line: gh-macos-simple-kvm-497's dmesg)
    text = DEEPOPS_515 + "[    0.012345] ACPI: DMAR 0x000000004A6E7000 000088 (v02 INTEL  EDK2     00000002      01000013)\n"
    r = result(run_text(text), "cmdline.iommu_args_meaningful")
    assert r.status.value == "warn" and "Intel host" in r.summary
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("intel_iommu=on",), remove=("amd_iommu=on",))


def test_a_bad_intel_iommu_value_on_an_amd_host_is_removed_not_corrected() -> None:
    # written for this test: an AMD host (cpuinfo) with intel_iommu=yes,pt copied from an Intel guide
    text = ("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet intel_iommu=yes,pt\n"
            "vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm\n")
    r = result(run_text(text), "cmdline.iommu_args_meaningful")
    assert r.status.value == "warn" and "intel_iommu=yes,pt" in r.summary
    assert "on this AMD host intel_iommu= is read by nothing" in r.summary, r.summary
    # pt still reaches the x86 parser where it belongs; nothing writes an intel_iommu= back
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("iommu=pt",), remove=("intel_iommu=yes,pt",)), r.remedy


def test_a_space_after_the_dot_is_joined_back() -> None:
    r = result(run_text(CLAY_6), "cmdline.iommu_args_meaningful")
    assert r.status.value == "warn"
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("modprobe.blacklist=amdgpu",), remove=("modprobe.", "blacklist=amdgpu"))


# written for these tests (no public paste in fixtures/pasted shows them yet)
@pytest.mark.parametrize(("cmdline", "add", "says"), [
    ("intel_iommu=1", ("intel_iommu=on",), "Unknown option - '1'"),
    ("intel_iommu=pt", ("intel_iommu=on", "iommu=pt"), "iommu=pt"),
    ("intel_iommu=on,igfx_of", ("intel_iommu=on",), "igfx_of"),
    ("iommu=on", ("intel_iommu=on",), "knows no `on`"),
    ("iommu=pti", ("iommu=pt",), "IS taken as `pt`"),
    ("iommu=1", (), "GART aperture size"),
    ("vfio-pci", (), "loads nothing"),
    ("vfio_pci_ids=10de:1b81", ("vfio-pci.ids=10de:1b81",), "vfio-pci.ids=10de:1b81"),
    ("vfio-pci.ids=10de:1b81, 10de:10f0", ("vfio-pci.ids=10de:1b81,10de:10f0",), "space ends the argument"),
])
def test_each_misplaced_argument_gets_its_exact_correction(cmdline: str, add: tuple[str, ...], says: str) -> None:
    fs = findings(parse_cmdline("ro quiet " + cmdline, "t"))
    assert len(fs) == 1, fs
    assert fs[0].add == add and says in fs[0].message


@pytest.mark.parametrize("cmdline", [
    "intel_iommu=on,igfx_off iommu=pt", "intel_iommu=on,sm_on,strict iommu=pt,nopanic", "intel_iommu=off iommu=soft",
    "amd_iommu=force_isolation iommu=nopt", "vfio-pci.ids=10de:1b81,10de:10f0 vfio_pci.disable_vga=1", "pci-stub.ids=10de:1b81",
    "quiet splash nomodeset",
])
def test_arguments_the_kernel_takes_are_not_reported(cmdline: str) -> None:
    assert findings(parse_cmdline(cmdline, "t")) == []


def test_iommu_pti_is_passthrough_and_a_later_nopt_undoes_it() -> None:
    assert iommu_pt_item(parse_cmdline("iommu=pti", "t")) == "pti"
    assert iommu_pt_item(parse_cmdline("iommu=pt iommu=nopt", "t")) is None
    r = result(run_text("BOOT_IMAGE=/vmlinuz ro intel_iommu=on iommu=pti\n"), "cmdline.iommu_passthrough")
    assert r.status.value == "pass" and "prefix" in r.summary


def test_pci_stub_ids_are_named_as_held_by_pci_stub_not_vfio_pci() -> None:
    # gh-complete-single-gpu-passthrough-8's card, with its ids given to pci-stub (written for this test)
    text = ("BOOT_IMAGE=/vmlinuz ro intel_iommu=on pci-stub.ids=10de:1c03,10de:10f1\n\n"
            "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n"
            "\tKernel driver in use: pci-stub\n"
            "01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n"
            "\tKernel driver in use: pci-stub\n"
            "options vfio-pci disable_vga=1\n")
    r = result(run_text(text), "vfio.ids_configured")
    assert r.status.value == "fail"
    assert any("handed to pci-stub" in m and "needs the device on vfio-pci" in m for m in r.messages), r.messages


def test_the_correction_applied_by_the_fixer_gives_the_line_the_kernel_reads() -> None:
    from remediations.kernel_cmdline import edit_tokens

    r = result(run_text(GRUB_497), "cmdline.iommu_args_meaningful")
    assert r.remedy is not None and isinstance(r.remedy.params, CmdlineEdit)
    toks = GRUB_497.split('"')[1].split()
    new = edit_tokens(toks, list(r.remedy.params.add), list(r.remedy.params.remove))
    assert "vfio-pci.ids=8086:9a49,8086:a0c8" in new and not any(t.startswith("vfio-pci-ids") for t in new)
    assert findings(parse_cmdline(" ".join(new), "t")) == []
