"""What a check is: a function of a Context that returns a Verdict, registered with an id that names the
healthy state, a title and a severity. Check modules import this; `doctor.registry` lists the modules
and pairs each check with its fix (the arrows go one way: registry -> checks -> checkapi)."""

from __future__ import annotations

from collections.abc import Callable

from doctor.datarecord import field, record
from doctor.facts import Facts, PciDevice
from doctor.model import Severity, Verdict


@record
class Context:
    """What a check sees: the facts, and the GPU it is about (per-GPU checks)."""

    facts: Facts
    gpu: PciDevice | None = None
    options: dict[str, str] = field(default_factory=dict)


CheckFunc = Callable[[Context], Verdict]


@record(frozen=True)
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


def check(id: str, title: str, *, severity: Severity = Severity.BLOCKER, per_gpu: bool = False) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check. Its fix family and its place in the report come from `doctor.registry`."""

    def deco(fn: CheckFunc) -> CheckFunc:
        if id in REGISTRY:
            raise RuntimeError(f"check id registered twice: {id}")
        REGISTRY[id] = CheckSpec(id, title, fn, severity, "", per_gpu, -1, (fn.__doc__ or "").strip())
        return fn

    return deco
