"""`kvm` loaded without kvm_intel / kvm_amd makes kvm.available FAIL with the firmware cause, only where the lsmod shown
lists every kvm module: a full lsmod (its header), or `lsmod | grep kvm`. The lines are those of
gh-complete-single-gpu-passthrough-19 (QaidVoid/Complete-Single-GPU-Passthrough#19: the poster's `lsmod | grep kvm`
printed kvm and irqbypass only; their dmesg said KVM was disabled by the BIOS). That entry's input holds the two lines
without the command (the command is in the prose), so it stays unknown there; here the command is pasted with them."""

from __future__ import annotations

import pytest

from doctor import pasted as P

LINES = "kvm                  1105920  0\nirqbypass              16384  1 kvm\n"
FULL = ("Module                  Size  Used by\nsnd_hda_intel          57344  3\nradeon               1609728  5\n" + LINES
        + "ccp                   118784  1 kvm\n")


def kvm(text: str) -> tuple[str, str]:
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    r = next(sr.result for sr in P.run_pasted(pf, "paste.txt").report.results if sr.result.check_id == "kvm.available")
    return r.status.value, r.summary


@pytest.mark.parametrize("text", [
    "$ lsmod | grep kvm\n" + LINES,
    "user@host:~$ lsmod | grep -i kvm\n" + LINES,
    "$ lsmod | grep -E 'kvm|vfio'\n" + LINES,
    "$ lsmod\n" + FULL,
    FULL,  # the header shows a whole lsmod
])
def test_kvm_without_its_vendor_module_fails_with_the_firmware_cause(text: str) -> None:
    status, summary = kvm(text)
    assert status == "fail" and "neither kvm_intel nor kvm_amd" in summary


@pytest.mark.parametrize("text", [
    LINES,  # no command: a filtered list of unknown filter proves presence only (gh-complete-single-gpu-passthrough-19 as pasted)
    "$ lsmod | grep irq\n" + LINES.split("\n", 1)[1],
    "$ lsmod | grep kvm_\n" + LINES,  # kvm_ lists only the vendor modules: kvm itself would not even match
    "$ lsmod | grep kvm\nkvm_amd               155648  0\nkvm                  1105920  1 kvm_amd\nirqbypass              16384  1 kvm\n",
])
def test_no_verdict_where_the_listing_does_not_show_every_kvm_module(text: str) -> None:
    status, summary = kvm(text)
    assert "neither kvm_intel nor kvm_amd" not in summary, (status, summary)


def test_dev_kvm_shown_present_wins() -> None:
    text = "$ lsmod | grep kvm\n" + LINES + "\n$ ls -l /dev/kvm\ncrw-rw----+ 1 root kvm 10, 232 Nov  3 10:00 /dev/kvm\n"
    assert kvm(text)[0] == "pass"
