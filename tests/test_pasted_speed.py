"""The pasted source reads a long log once: the fast paths give the same answers as the plain ones."""

from __future__ import annotations

import re

import pytest

from doctor.facts import KernelLog
from doctor.facts.logsearch import JoinedLog
from doctor.redact import Redactor

LINES = (
    "[    0.000000] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)",
    "[    0.012345] ACPI: DMAR 0x000000007A9E5000 0000A8 (v01 INTEL  EDK2     00000002      01000013)",
    "[    0.231388] DMAR: DRHD base: 0x000000fed90000 flags: 0x0",
    "[    0.233051] DMAR-IR: Enabled IRQ remapping in x2apic mode",
    "[    0.500000] pci 0000:01:00.0: Adding to iommu group 1",
    "serial",
    ": value on the next line",
    "[    1.000000] AMD-Vi: Interrupt remapping enabled",
    "",
)


@pytest.mark.parametrize("pattern", [
    r"\bDMAR(-IR)?:", r"DMAR-IR: Enabled IRQ remapping|AMD-Vi: Interrupt remapping enabled", r"^\[\s+0\.", r"enabled$",
    r"serial\s*:", r"(?i)iommu group \d+", r"x{0}", r"nothing like this",
])
def test_joined_grep_gives_the_lines_grep_gives(pattern: str) -> None:
    # `serial\s*:` spans the line break in the joined text: it must not count for the line "serial"
    assert JoinedLog(LINES, "s").grep(pattern) == KernelLog(LINES, "s").grep(pattern)
    assert JoinedLog(LINES, "s").grep(re.compile(pattern)) == KernelLog(LINES, "s").grep(pattern)


def test_a_long_text_teaches_the_redactor_what_a_short_one_does() -> None:
    filler = "[    2.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n" * 200
    text = (filler + "Serial Number: ABCD1234XYZ\nbooted with systemd.machine_id=0123456789abcdef0123456789abcdef\n"
            "eth0: link up, MAC 52:54:00:12:34:56\nmgmt 0050.56ab.cdef up\nBOOTIF=01-52-54-00-aa-bb-cc\n" + filler)
    long_r, short_r = Redactor([], enabled=True), Redactor([], enabled=True)
    long_r.learn(text)
    for ln in text.splitlines():
        short_r.learn(ln)
    assert len(text) > 4096
    probe = "ABCD1234XYZ 0123456789abcdef0123456789abcdef 52:54:00:12:34:56 0050.56ab.cdef 52:54:00:aa:bb:cc"
    assert long_r.text(probe) == short_r.text(probe) != probe


def test_literal_prefixes_are_what_every_match_starts_with() -> None:
    from doctor.facts.logsearch import literal_prefixes

    assert literal_prefixes(r"\bDMAR(-IR)?:|AMD-Vi: Found") == ["DMAR", "AMD-Vi: Found"]
    assert literal_prefixes(r"Intel\(R\) VT|abcd?e") == ["Intel(R) VT", "abc"]  # d? is optional: not part of it
    assert literal_prefixes(r"ab?c|xyz") is None  # "a" alone is too short to search for
    assert literal_prefixes(r"(?i)kvm") is None and literal_prefixes(r"\d+ foo") is None
