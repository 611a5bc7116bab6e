"""Run the registered checks over a Facts object; one broken check never hides
the others: a check that raises becomes an `error` result."""

from __future__ import annotations

import time
from collections.abc import Iterator

from doctor.datarecord import field, record, replace
from doctor.errors import BadInput, DoctorError, FactUnknown, NotCaptured
from doctor.facts import Facts, HostSummary, PciDevice, normalize_pci_address
from doctor.host import Host
from doctor.model import Evidence, Result, SourceInfo, Status
from doctor.redact_host import host_secrets
from doctor.registry import CheckSpec, Context, load_checks

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True)
class SubjectResult:
    """A Result plus the GPU it is about (None for host-wide checks)."""

    result: Result
    subject: str | None = None


@record
class Report:
    results: list[SubjectResult]
    source: SourceInfo
    facts: Facts
    gpus: list[PciDevice] = field(default_factory=list)
    duration_s: float = 0.0
    # known errors found in pasted evidence, each tied to the checks that settle its causes (doctor.pasted.run)
    errors_in_evidence: list[dict[str, Any]] = field(default_factory=list)
    # what renderers need of the host, read once here so that rendering reads nothing (issue 13.7):
    # the header facts, the secrets a redacted report must hide, the raw texts a report may quote
    summary: HostSummary | None = None
    secrets: tuple[tuple[str, str], ...] | None = None
    source_text: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.summary is None:
            try:
                self.summary = self.facts.summary()
            except (FactUnknown, NotCaptured, OSError):
                self.summary = HostSummary()
        if self.secrets is None:
            host = getattr(self.facts, "host", None)
            self.secrets = host_secrets(host) if isinstance(host, Host) else ()
        if self.source_text is None:
            self.source_text = tuple(source_texts(self.facts))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for r in self.results:
            out[r.result.status.value] += 1
        return out

    @property
    def exit_code(self) -> int:
        """3 if any check crashed (even where another failed: a crash means the verdict is incomplete,
        and a script must not read it as a plain failure), else 1 if any failed, else 0."""
        st = {r.result.status for r in self.results}
        if Status.ERROR in st:
            return 3
        if Status.FAIL in st:
            return 1
        return 0


def select_gpus(facts: Facts, requested: str | None) -> list[PciDevice]:
    """The GPUs the per-GPU checks are about.

    With --gpu: that device (BadInput if it is not on the host). Without: every
    display-class device that is not the boot display; if there is none, the
    boot display itself (gpu.candidate warns about it).
    """
    if requested is not None:
        try:
            addr = normalize_pci_address(requested)
        except ValueError as e:
            raise BadInput(f"--gpu: {e}") from e
        try:
            devs = facts.pci_devices()
        except (FactUnknown, NotCaptured) as e:
            raise BadInput(f"--gpu {addr}: the PCI devices of this host are unknown ({e})") from e
        if addr not in devs:
            known = ", ".join(d.address for d in facts.gpus()) or "none"
            raise BadInput(f"--gpu {addr}: no such PCI device on this host (GPUs here: {known})")
        from doctor.passthrough import class_name, is_gpu

        if not is_gpu(devs[addr]):
            known = ", ".join(d.address for d in facts.gpus() if is_gpu(d)) or "none"
            raise BadInput(f"--gpu {addr}: class {devs[addr].class_hex} ({class_name(devs[addr])}), not a GPU "
                           f"(--gpu takes class 0300, 0302 or 0380; GPUs here: {known})")
        return [devs[addr]]
    try:
        gpus = facts.gpus()
    except (FactUnknown, NotCaptured):
        return []
    cands = [g for g in gpus if not g.boot_vga]
    if cands:
        # one card = one slot: report per card, not per function
        seen: set[str] = set()
        out = []
        for g in cands:
            if g.slot not in seen:
                seen.add(g.slot)
                out.append(g)
        return out
    return gpus[:1]


def _run_one(spec: CheckSpec, ctx: Context) -> Result:
    t0 = time.perf_counter()
    try:
        v = spec.func(ctx)
        res = Result(spec.id, spec.title, v.status, v.summary, v.messages, v.evidence, v.remedy)
    except FactUnknown as e:
        msgs = [f"{e.fact}: {e.reason}"]
        if e.settle:
            msgs.append(f"to settle it, collect: {e.settle}")
        res = Result(
            spec.id,
            spec.title,
            Status.UNKNOWN,
            f"unknown: {e.fact} {e.reason}" if e.reason == "not in the evidence" else f"unknown: {e.reason}",
            tuple(msgs),
            (Evidence(e.fact, e.reason),),
        )
    except NotCaptured as e:
        res = Result(spec.id, spec.title, Status.UNKNOWN, f"unknown: {e}", (str(e),))
    except Exception as e:  # noqa: BLE001 - one broken probe never hides the others
        import traceback

        tb = traceback.format_exception(type(e), e, e.__traceback__)
        res = Result(
            spec.id,
            spec.title,
            Status.ERROR,
            f"internal error in this check: {type(e).__name__}: {e}",
            tuple(line.rstrip() for line in tb[-3:]),
        )
    return replace(res, duration_s=time.perf_counter() - t0)


def source_texts(facts: Any) -> Iterator[str]:
    """The raw texts the facts were read from, where a report may quote a piece of them: the
    pasted inputs (a shell prompt, `Set hostname to <...>` name the host), or the kernel log."""
    if getattr(facts, "base", None) is not None:
        yield from source_texts(facts.base)
        return
    inputs = getattr(getattr(facts, "evidence", None), "inputs", None)
    if inputs is not None:
        yield from (getattr(i, "text", "") for i in inputs)
        return
    try:
        yield "\n".join(facts.kernel_log().lines)
    except (DoctorError, OSError):
        pass


def run_checks(
    facts: Facts,
    source: SourceInfo,
    gpu: str | None = None,
    only: list[str] | None = None,
    subjects: list[str] | None = None,
    options: dict[str, str] | None = None,
) -> Report:
    """Every check once (per-GPU checks once per GPU). `subjects`: the GPUs' addresses where the
    source decides them (pasted evidence names the GPU it is about); otherwise select_gpus.
    `options` reach every check's Context (`vm`: the vm.* checks judge only that libvirt domain)."""
    t0 = time.perf_counter()
    specs = load_checks()
    if only:
        unknown = [c for c in only if c not in specs]
        if unknown:
            raise BadInput(f"unknown check id(s): {', '.join(unknown)} (see `gpudoctor list`)")
        specs = {k: v for k, v in specs.items() if k in only}
    if subjects is not None and gpu is None:
        devs = facts.pci_devices() if subjects else {}
        gpus = [devs[a] for a in subjects]
    else:
        gpus = select_gpus(facts, gpu)
    out: list[SubjectResult] = []
    for spec in specs.values():
        if spec.per_gpu:
            if not gpus:
                out.append(SubjectResult(_no_gpu(spec, facts), None))
            for g in gpus:
                out.append(SubjectResult(_run_one(spec, Context(facts, g, dict(options or {}))), g.address))
        else:
            out.append(SubjectResult(_run_one(spec, Context(facts, gpus[0] if gpus else None, dict(options or {})))))
    return Report(out, source, facts, gpus, time.perf_counter() - t0)


def _no_gpu(spec: CheckSpec, facts: Facts) -> Result:
    try:
        facts.pci_devices()
    except (FactUnknown, NotCaptured) as e:
        return Result(spec.id, spec.title, Status.UNKNOWN, f"unknown: which GPUs this host has ({e})")
    unlisted = facts.unlisted_devices()
    if unlisted is not None:
        return Result(spec.id, spec.title, Status.UNKNOWN, f"unknown: no GPU among the devices shown, and {unlisted.reason}",
                      (f"to settle it, collect: {unlisted.settle}",))
    return Result(spec.id, spec.title, Status.NOT_APPLICABLE, "no GPU to pass through on this host")
