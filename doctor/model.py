"""Results are data: frozen dataclasses that every renderer reads."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Evidence:
    """One thing a verdict was decided on: where it was read, and what it said."""

    source: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "value": self.value}


@dataclass(frozen=True)
class Remedy:
    """The exact fix a person would apply, derived from this host.

    `fix_id` names the automatic remediation that can apply it (may be empty);
    `steps` are literal commands or file contents, in order; `params` are the
    values the remediation would use.
    """

    text: str
    steps: tuple[str, ...] = ()
    fix_id: str = ""
    params: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "steps": list(self.steps),
            "fix_id": self.fix_id or None,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class SourceInfo:
    """Where the facts came from: a live host, a snapshot or pasted text."""

    kind: str  # "live" | "snapshot" | "pasted"
    location: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, **self.details}
