"""Explicit check registry: checks register themselves with an id that names
the healthy state, a title, a severity and the fix that answers them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from doctor.facts import Facts, PciDevice
from doctor.model import Severity, Verdict


@dataclass
class Context:
    """What a check sees: the facts, and the GPU it is about (per-GPU checks)."""

    facts: Facts
    gpu: PciDevice | None = None
    options: dict[str, str] = field(default_factory=dict)


CheckFunc = Callable[[Context], Verdict]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    func: CheckFunc
    severity: Severity
    fix_id: str
    per_gpu: bool
    order: int
    doc: str


REGISTRY: dict[str, CheckSpec] = {}


def check(
    id: str, title: str, *, severity: Severity = Severity.BLOCKER, fix: str = "", per_gpu: bool = False
) -> Callable[[CheckFunc], CheckFunc]:
    def deco(fn: CheckFunc) -> CheckFunc:
        if id in REGISTRY:
            raise RuntimeError(f"check id registered twice: {id}")
        REGISTRY[id] = CheckSpec(
            id, title, fn, severity, fix, per_gpu, len(REGISTRY), (fn.__doc__ or "").strip()
        )
        return fn

    return deco


def load_checks() -> dict[str, CheckSpec]:
    """Import the check modules (an explicit list, no discovery magic)."""
    # The import order is the report's order (registration order); keep it, isort would not.
    import checks.check_cpu  # noqa: F401, I001
    import checks.check_iommu  # noqa: F401
    import checks.check_gpu  # noqa: F401  (after iommu: the order is the report's order)
    import checks.check_vfio  # noqa: F401
    import checks.check_forecast  # noqa: F401  (what comes after the notes' steps)
    import checks.check_vm  # noqa: F401
    import checks.check_vm_guest  # noqa: F401

    return dict(sorted(REGISTRY.items(), key=lambda kv: kv[1].order))
