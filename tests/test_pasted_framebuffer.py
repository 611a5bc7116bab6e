"""gpu.framebuffer_free from pasted text (issue 14): a pasted /proc/iomem with a firmware framebuffer nested in a
GPU's BAR is that framebuffer on the BAR; the framebuffer arguments the pasted command line (or kernel log)
already holds are not asked for again. Lines from fixtures/pasted entries (the slug says which)."""

from __future__ import annotations

from doctor import pasted as P
from doctor.model import CmdlineEdit
from doctor.pasted.observe import observe_text

# gh-talos-14356, iomem.txt as pasted
TALOS_IOMEM = ("2800000000-2fffffffff : 0000:c3:00.0\n"
               "  2800000000-2801fa3fff : BOOTFB\n"
               "    2800000000-2801fa3fff : simpledrm\n")
# gh-talos-14356, cmdline-workaround.txt (the kernel log of the boot with the workaround)
TALOS_WORKAROUND = "blacklisting initcall sysfb_init\n[drm] Initialized simpledrm 1.0.0 for simple-framebuffer.0 on minor 0\n"


def fb_result(text: str):  # type: ignore[no-untyped-def]
    run = P.run_pasted(P.PastedFacts(P.evidence_from_text(text, "paste.txt")), "paste.txt")
    rs = [sr.result for sr in run.report.results if sr.result.check_id == "gpu.framebuffer_free"]
    assert len(rs) == 1
    return rs[0]


def test_a_framebuffer_nested_in_a_devices_range_of_proc_iomem_is_on_its_bar() -> None:
    obs = [o for o in observe_text(TALOS_IOMEM, "iomem.txt") if o.kind == "gpu.fb_on_bar"]
    assert len(obs) == 1
    assert obs[0].address == "0000:c3:00.0" and obs[0].where == "iomem.txt:2" and "BOOTFB" in obs[0].text
    assert obs[0].detail == "[mem 0x2800000000-0x2fffffffff]"
    # a framebuffer outside any device's range (a BIOS area, an iGPU's stolen memory) names no device
    assert not observe_text("c0000000-c02fffff : BOOTFB\n", "iomem.txt")


def test_the_iomem_paste_alone_judges_the_card_and_asks_for_the_sysfb_argument() -> None:
    r = fb_result(TALOS_IOMEM)
    assert r.status.value == "warn"  # kernel version and class not shown: whether vfio-pci evicts it is unknown
    assert any(e.source == "paste.txt:2" for e in r.evidence)
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("initcall_blacklist=sysfb_init",))


def test_an_argument_already_in_effect_is_not_asked_for_again() -> None:
    r = fb_result(TALOS_IOMEM + "\n" + TALOS_WORKAROUND)
    assert r.remedy is not None and r.remedy.params is None
    assert "already holds initcall_blacklist=sysfb_init" in r.remedy.text and "blacklisting initcall sysfb_init" in r.remedy.text


def test_video_efifb_off_on_the_pasted_command_line_leaves_only_what_is_missing() -> None:
    # gh-single-gpu-passthrough-joeknock90-1's efifb line, with a command line written for this test
    text = ("BOOT_IMAGE=/vmlinuz ro intel_iommu=on video=efifb:off\n\n"
            "[    0.191668] pci 0000:01:00.0: BAR 1: assigned to efifb\n")
    r = fb_result(text)
    assert r.remedy is not None and r.remedy.params is None and "video=efifb:off" in r.remedy.text
    r = fb_result("[    0.191668] pci 0000:01:00.0: BAR 1: assigned to efifb\n")
    assert r.remedy is not None and r.remedy.params == CmdlineEdit(add=("video=efifb:off",))
