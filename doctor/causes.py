"""The causal model of the checks: which verdict follows from which.

`EXPLAINS` is the model, as data: an upstream check whose result is FAIL, UNKNOWN or ERROR explains
the non-passing results (FAIL, WARN, UNKNOWN, N/A) of the checks it names; a WARN explains only a
WARN or N/A below it. A host-wide upstream check explains the results of every GPU; a per-GPU one
only those of its own GPU. A result nothing explains, and that did not pass, is a root cause.

`analyse(results)` is a pure function of a list of results (one host's report, or the results a
fleet summary holds for one host): the root causes, each with the results that follow from it, in
the order a person should act on them (blocking causes first, the one that explains most first).
Terminal, JSON and HTML rendering all read it; `headline()` is the one sentence they open with.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from doctor.datarecord import record
from doctor.model import Status
from doctor.runner import SubjectResult

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

PER_GPU_BELOW_CANDIDATE = (
    "gpu.group_isolated", "vfio.ids_configured", "vfio.early_load", "vfio.group_viable",
    "vfio.binding_persistent", "vfio.ids_unique_to_card", "gpu.group_safe", "gpu.framebuffer_free",
    "gpu.reset_capable", "gpu.rom_readable",
)

# upstream check id -> the check ids whose verdict follows from its FAIL / UNKNOWN
EXPLAINS: dict[str, tuple[str, ...]] = {
    "cpu.virtualization": ("kvm.available",),
    "firmware.iommu_table": ("cmdline.iommu_enabled", "iommu.active"),
    "cmdline.iommu_enabled": ("iommu.active",),
    "iommu.active": ("iommu.groups_present", "iommu.interrupt_remapping"),
    "iommu.groups_present": ("gpu.group_isolated", "vfio.group_viable", "vfio.binding_persistent", "gpu.group_safe"),
    "gpu.candidate": PER_GPU_BELOW_CANDIDATE,
    "vfio.ids_configured": ("vfio.binding_persistent", "boot.initramfs_current"),
    "vfio.early_load": ("vfio.binding_persistent",),
}

# a short phrase for the headline where the check's own summary is too long for it
PHRASES: dict[str, str] = {
    "firmware.iommu_table": "the firmware exposes no IOMMU",
    "gpu.candidate": "there is no GPU to pass through",
    "iommu.active": "no IOMMU is active",
}
VM_PHRASES: dict[str, str] = {
    "firmware.iommu_table": "this VM guest has no virtual IOMMU",
}

_BAD_UP = (Status.FAIL, Status.UNKNOWN, Status.ERROR)
_RANK = {Status.ERROR: 4, Status.FAIL: 3, Status.UNKNOWN: 2, Status.WARN: 1, Status.NOT_APPLICABLE: 0, Status.PASS: 0}
KINDS = {Status.FAIL: "blocker", Status.ERROR: "error", Status.UNKNOWN: "unknown", Status.WARN: "advice"}


def name(sr: SubjectResult) -> str:
    """`check.id` or `check.id[0000:01:00.0]`: how every output names one result."""
    return sr.result.check_id + (f"[{sr.subject}]" if sr.subject else "")


@functools.cache
def upstream_of(check_id: str) -> tuple[str, ...]:
    return tuple(up for up, downs in EXPLAINS.items() if check_id in downs)


@record(frozen=True)
class Cause:
    """A root cause: a result nothing upstream explains, and what follows from it."""

    result: SubjectResult
    explains: tuple[SubjectResult, ...]

    @property
    def kind(self) -> str:
        return KINDS.get(self.result.result.status, "advice")

    @property
    def name(self) -> str:
        return name(self.result)

    def phrase(self) -> str:
        res = self.result.result
        vm = any("hypervisor present" in e.value for e in res.evidence)
        return (VM_PHRASES if vm else {}).get(res.check_id) or PHRASES.get(res.check_id) or res.summary

    def to_dict(self) -> dict[str, Any]:
        res = self.result.result
        return {
            "id": res.check_id,
            "subject": self.result.subject,
            "status": res.status.value,
            "kind": self.kind,
            "summary": res.summary,
            "fix": res.remedy.text if res.remedy else None,
            "explains": [name(sr) for sr in self.explains],
        }


@record(frozen=True)
class Analysis:
    causes: tuple[Cause, ...]
    follows: dict[str, tuple[str, ...]]  # result name -> the root causes it follows from

    @property
    def blockers(self) -> tuple[Cause, ...]:
        return tuple(c for c in self.causes if c.kind in ("blocker", "error"))

    def explained(self) -> set[str]:
        return set(self.follows)

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.causes]


def _explains(up: SubjectResult, down: SubjectResult) -> bool:
    us, ds = up.result.status, down.result.status
    if ds is Status.PASS or ds is Status.ERROR or up.result.check_id not in upstream_of(down.result.check_id):
        return False
    if up.subject is not None and up.subject != down.subject:
        return False
    if us is Status.UNKNOWN and ds is Status.FAIL:
        return False  # a failure decided on its own evidence: an open question upstream does not explain it
    if us in _BAD_UP:
        return True
    return us is Status.WARN and ds in (Status.WARN, Status.NOT_APPLICABLE)


def analyse(results: Iterable[SubjectResult]) -> Analysis:
    rs = list(results)
    direct: dict[int, list[int]] = {}  # index -> indexes of the results that explain it directly
    by_check: dict[str, list[int]] = {}
    for j, up in enumerate(rs):
        by_check.setdefault(up.result.check_id, []).append(j)
    for i, down in enumerate(rs):  # only the results of the checks that may explain this one are compared
        cands = sorted(j for c in upstream_of(down.result.check_id) for j in by_check.get(c, ()))
        ups = [j for j in cands if j != i and _explains(rs[j], down)]
        if ups:
            direct[i] = ups

    def roots(i: int, seen: frozenset[int] = frozenset()) -> set[int]:
        if i not in direct:
            return {i}
        out: set[int] = set()
        for j in direct[i]:
            if j not in seen:
                out |= roots(j, seen | {i})
        return out or {i}

    follows: dict[int, set[int]] = {i: roots(i) - {i} for i in direct}
    follows = {i: r for i, r in follows.items() if r}
    causes = []
    for i, sr in enumerate(rs):
        if i in follows or sr.result.status in (Status.PASS, Status.NOT_APPLICABLE):
            continue
        below = tuple(rs[k] for k in sorted(k for k, r in follows.items() if i in r))
        causes.append((i, Cause(sr, below)))
    # the worst first; among equals, the report's order, which is the chain's (firmware before groups)
    causes.sort(key=lambda ic: (-_RANK[ic[1].result.result.status], ic[0]))
    return Analysis(
        tuple(c for _, c in causes),
        {name(rs[i]): tuple(name(rs[j]) for j in sorted(r)) for i, r in sorted(follows.items())},
    )


def _checks(n: int) -> str:
    return f"{n} check{'s' if n != 1 else ''}"


def headline(a: Analysis) -> str:
    """One sentence: whether a GPU can be passed through, the first cause, how much follows."""
    blockers = a.blockers
    if not blockers:
        unknown = [c for c in a.causes if c.kind == "unknown"]
        if unknown:
            return (f"Nothing blocks GPU passthrough that could be established; {_checks(len(unknown))} could not be "
                    f"decided (first: {unknown[0].name}).")
        if a.causes:
            return f"Nothing blocks GPU passthrough; {len(a.causes)} piece(s) of advice below."
        return "Nothing blocks GPU passthrough: every check passed or does not apply."
    first = blockers[0]
    n = len(blockers)
    count = "1 cause" if n == 1 else f"1 cause of {n}"
    follow = len(first.explains)
    tail = f"; {_checks(follow)} follow{'s' if follow == 1 else ''} from it" if follow else ""
    more = ""
    if n > 1:
        total = len({name(sr) for c in blockers for sr in c.explains})
        more = f" {n - 1} more cause{'s' if n > 2 else ''} below ({_checks(total)} follow from the {n} causes)."
    return f"This host cannot pass a GPU through: {first.phrase()} ({count}){tail}.{more}"
