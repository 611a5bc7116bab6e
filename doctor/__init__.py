"""gpudoctor: a preflight doctor for KVM GPU passthrough on Linux."""

from __future__ import annotations

__version__ = "0.1.0"
