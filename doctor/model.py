"""Results are data: frozen records (doctor.datarecord) that every renderer reads."""

from __future__ import annotations

import enum
from collections.abc import Callable

from doctor.datarecord import field, fields, record, replace

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def word(self) -> str:
        return {
            "pass": "PASS",
            "warn": "WARN",
            "fail": "FAIL",
            "not_applicable": "N/A",
            "unknown": "UNKNOWN",
            "error": "ERROR",
        }[self.value]

    @property
    def glyph(self) -> str:
        return {
            "pass": "✓",
            "warn": "!",
            "fail": "✗",
            "not_applicable": "-",
            "unknown": "?",
            "error": "‼",
        }[self.value]


class Severity(str, enum.Enum):
    """What a failing check means for passthrough: a blocker fails, advice warns."""

    BLOCKER = "blocker"
    ADVICE = "advice"


@record(frozen=True)
class Evidence:
    """One thing a verdict was decided on: where it was read, and what it said."""

    source: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "value": self.value}


class FixParams:
    """Typed parameters a check hands to its fix family: what the check found, so the fix need not
    re-derive it from prose. `family` names the remediation (doctor.registry pairs checks with families);
    an empty family is information for a person, nothing a fix runs."""

    family = ""
    SEP = {"ids": ",", "softdeps": ",", "devices": ",", "remove_ids": ","}

    def items(self) -> tuple[tuple[str, str], ...]:
        """The parameters as text (JSON, HTML, redaction): tuples joined by spaces, booleans as 1."""
        out = []
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                if v:
                    out.append((f.name, self.SEP.get(f.name, " ").join(v)))
            elif isinstance(v, bool):
                if v:
                    out.append((f.name, "1"))
            elif v:
                out.append((f.name, str(v)))
        return tuple(out)

    def mapped(self, fn: Callable[[str], str]) -> FixParams:
        """The same parameters with every text passed through `fn` (redaction)."""
        new: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            new[f.name] = tuple(fn(x) for x in v) if isinstance(v, tuple) else fn(v) if isinstance(v, str) else v
        return replace(self, **new)  # type: ignore[type-var]


@record(frozen=True)
class CmdlineEdit(FixParams):
    """kernel_cmdline: arguments to put on and take off the next boot's command line; `regenerate`
    rebuilds the bootloader's generated configuration even when no argument changes."""

    family = "kernel_cmdline"
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    regenerate: bool = False


@record(frozen=True)
class RebootPending(FixParams):
    """kernel_cmdline: already configured for the next boot; only a reboot is missing (nothing to write)."""

    family = "kernel_cmdline"


@record(frozen=True)
class VfioIds(FixParams):
    """vfio_conf: the vendor:device ids vfio-pci must claim for the GPU's passthrough unit."""

    family = "vfio_conf"
    ids: tuple[str, ...] = ()


@record(frozen=True)
class BindByAddress(FixParams):
    """vfio_conf: no ids= line (it would take identical devices from the host); the functions go to
    vfio-pci by address at boot (driver_override), and `remove_ids` leave the ids= lines."""

    family = "vfio_conf"
    devices: tuple[str, ...] = ()
    remove_ids: tuple[str, ...] = ()


@record(frozen=True)
class EarlyLoad(FixParams):
    """early_load: vfio-pci in the initramfs, softdeps for these native drivers, the image rebuilt."""

    family = "early_load"
    softdeps: tuple[str, ...] = ()


@record(frozen=True)
class PciBind(FixParams):
    """pci_bind: the functions to move to vfio-pci now; `remove_ids` are ids= entries that would grab
    devices outside the card (bound by address instead)."""

    family = "pci_bind"
    devices: tuple[str, ...] = ()
    remove_ids: tuple[str, ...] = ()


@record(frozen=True)
class GuestGetty(FixParams):
    """guest_getty: enable serial-getty@ttyS0 in the guest image, offline."""

    family = "guest_getty"


@record(frozen=True)
class VmCleanup(FixParams):
    """vm_cleanup: `gpudoctor vm cleanup NAME` for each wedged domain."""

    family = "vm_cleanup"
    domains: tuple[str, ...] = ()


@record(frozen=True)
class After(FixParams):
    """No fix runs: the remedy waits for another check's (named) to pass first."""

    after: str = ""


@record(frozen=True)
class Remedy:
    """The exact fix a person would apply, derived from this host.

    `steps` are literal commands or file contents, in order; `params` are the typed values of the fix
    family that can apply it automatically (None: a person applies it). `fix_id` is that family.
    """

    text: str
    steps: tuple[str, ...] = ()
    params: FixParams | None = None

    @property
    def fix_id(self) -> str:
        return self.params.family if self.params is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "steps": list(self.steps),
            "fix_id": self.fix_id or None,
            "params": dict(self.params.items()) if self.params is not None else {},
        }


@record(frozen=True)
class Result:
    check_id: str
    title: str
    status: Status
    summary: str
    messages: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    remedy: Remedy | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.check_id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "messages": list(self.messages),
            "evidence": [e.to_dict() for e in self.evidence],
            "remedy": self.remedy.to_dict() if self.remedy else None,
            "duration_s": round(self.duration_s, 6),
        }


@record(frozen=True)
class Verdict:
    """What a check function returns; the runner adds id, title and timing."""

    status: Status
    summary: str
    evidence: tuple[Evidence, ...] = ()
    messages: tuple[str, ...] = ()
    remedy: Remedy | None = None


def verdict(
    status: Status,
    summary: str,
    evidence: list[Evidence] | tuple[Evidence, ...] = (),
    messages: list[str] | tuple[str, ...] = (),
    remedy: Remedy | None = None,
) -> Verdict:
    return Verdict(status, summary, tuple(evidence), tuple(messages), remedy)


@record(frozen=True)
class SourceInfo:
    """Where the facts came from: a live host, a snapshot or pasted text."""

    kind: str  # "live" | "snapshot" | "pasted"
    location: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, **self.details}
