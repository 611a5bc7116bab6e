"""One base class for every error gpudoctor raises on purpose.

The CLI maps these to exit codes (2 for bad input) and prints one line a user
can paste into a ticket; anything else is an internal error (exit 3).
"""

from __future__ import annotations


class DoctorError(Exception):
    """Base of every expected error."""

    exit_code = 2


class BadInput(DoctorError):
    """The user gave something we cannot use (a path, an address, a file)."""


class SnapshotError(BadInput):
    """A snapshot is missing, corrupt or of an unknown format."""


class NotCaptured(DoctorError):
    """A snapshot was asked for something its recording did not cover.

    Never turned into "absent": a stale fixture must not give a wrong verdict.
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"not captured in this snapshot: {what}")
        self.what = what


class FactUnknown(DoctorError):
    """A fact could not be established from the source.

    `settle` is the command (or file) whose output would settle it.
    """

    def __init__(self, fact: str, reason: str, settle: str = "") -> None:
        super().__init__(f"{fact}: {reason}")
        self.fact = fact
        self.reason = reason
        self.settle = settle


class OptionRomUnreadable(DoctorError):
    """An option ROM read on request (sysfs `rom`) failed: a fact about the device, not an unknown.

    `kernel_lines` are the kernel's own words about it (drivers/pci/rom.c: `Invalid PCI ROM
    header signature: expecting 0xaa55, got 0x....`), when the log could be read."""

    def __init__(self, source: str, reason: str, kernel_lines: tuple[str, ...] = ()) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.kernel_lines = kernel_lines
