"""Exceptions raised by the lab."""

from __future__ import annotations


class LabError(RuntimeError):
    """Anything that went wrong in the lab itself (not in the code under test)."""


class LabSetupError(LabError):
    """The lab is not set up on this machine (kernel cache or QEMU missing)."""


class LabBootError(LabError):
    """The guest did not come up (QEMU failed, kernel never reached the agent)."""


class LabBootStalled(LabBootError):
    """The guest's console went silent mid-boot for longer than the stall limit (lab.vm.BOOT_STALL)."""

    def __init__(self, message: str, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


class LabGuestDied(LabError):
    """QEMU exited or was killed while the guest was in use."""


class LabCommandTimeout(LabError):
    """A command ran past its timeout inside the guest and was killed there."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class LabGuestHung(LabError):
    """The guest agent stopped answering (the guest itself hangs)."""
