"""gpudoctor's lab: real kernels in QEMU (TCG) with an emulated IOMMU and a GPU-like card.

    from lab import Lab, SCENARIOS
    with Lab.boot("intel-partial", timeout=120) as guest:
        r = guest.run(["gpudoctor", "check", "--json"], timeout=60)

See lab/README.md.
"""

from .cache import cache_dir, fetch_kernel, load_kernel
from .errors import (
    LabBootError,
    LabBootStalled,
    LabCommandTimeout,
    LabError,
    LabGuestDied,
    LabGuestHung,
    LabSetupError,
)
from .scenarios import CARD, CARD_FUNCTIONS, SCENARIOS, Scenario
from .vm import GUEST_SHARE, REPO_ROOT, Guest, Lab, Result

__all__ = [
    "CARD",
    "CARD_FUNCTIONS",
    "GUEST_SHARE",
    "REPO_ROOT",
    "SCENARIOS",
    "Guest",
    "Lab",
    "LabBootError",
    "LabBootStalled",
    "LabCommandTimeout",
    "LabError",
    "LabGuestDied",
    "LabGuestHung",
    "LabSetupError",
    "Result",
    "Scenario",
    "cache_dir",
    "fetch_kernel",
    "load_kernel",
]
