"""Rendering is a pure function of a Report (results, and the host facts captured when the checks ran):
the JSON envelope, the host table, one redactor per document. Nothing here reads a host."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from doctor import __version__
from doctor.causes import Analysis, analyse, headline
from doctor.datarecord import replace
from doctor.facts import HostSummary
from doctor.model import Evidence, Remedy
from doctor.redact import Redactor
from doctor.redact_host import teach
from doctor.runner import Report, SubjectResult

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

JSON_FORMAT = "gpudoctor.check"
JSON_VERSION = 1
# minor versions add keys compatibly (1.1: `causes`, and `follows_from` on each result)
JSON_MINOR = 1

def _name(sr: SubjectResult) -> str:
    return sr.result.check_id + (f"[{sr.subject}]" if sr.subject else "")


def analysis(report: Report, redact: bool = True, red: Redactor | None = None) -> tuple[list[SubjectResult], Analysis]:
    """The (redacted) results and their causal analysis: what every renderer starts from. One
    redactor serves one document: pass the one the rest of the document uses."""
    results = redact_results(report.results, red or make_redactor(report, redact))
    return results, analyse(results)


def redact_results(results: list[SubjectResult], r: Redactor) -> list[SubjectResult]:
    if not r.enabled:
        return results
    out = []
    for sr in results:
        res = sr.result
        remedy = res.remedy
        if remedy is not None:
            remedy = Remedy(r.text(remedy.text), tuple(r.text(s) for s in remedy.steps),
                            remedy.params.mapped(r.text) if remedy.params is not None else None)
        res = replace(
            res,
            summary=r.text(res.summary),
            messages=tuple(r.text(m) for m in res.messages),
            evidence=tuple(Evidence(r.text(e.source), r.text(e.value)) for e in res.evidence),
            remedy=remedy,
        )
        out.append(SubjectResult(res, sr.subject))
    return out


def host_table(report: Report, redactor: Redactor) -> dict[str, str]:
    s = report.summary or HostSummary()
    src = report.source
    rows = {
        "gpudoctor": __version__,
        "source": src.kind + ("" if src.kind == "live" else f" ({src.location})"),
        "kernel": s.kernel or "unknown",
        "distribution": s.distro or "unknown",
        "cpu": s.cpu or "unknown",
    }
    if s.product:
        rows["machine"] = s.product
    if s.hostname:
        rows["hostname"] = redactor.hostname_value(s.hostname) if redactor.enabled else s.hostname
    for k, v in src.details.items():
        if v:
            rows[k] = v
    rows["gpus"] = ", ".join(f"{g.address} {g.name or g.ident}" for g in report.gpus) or "none"
    return {k: redactor.text(v) for k, v in rows.items()}


def make_redactor(report: Report, enabled: bool, extra: Iterable[str] = ()) -> Redactor:
    """One redactor for one document: it knows the host's secrets (read through the host where
    there is one) and has learned from every string of the report (and `extra`) before it
    replaces any, so one real value gets one fake throughout."""
    s = report.summary or HostSummary()
    red = Redactor([s.hostname] if s.hostname else [], enabled=enabled)
    if not enabled:
        return red
    teach(red, report.secrets or ())
    red.learn_all(report.source_text or ())
    red.learn_all(report_texts(report))
    red.learn_all(extra)
    return red


def report_texts(report: Report) -> Iterator[str]:
    """Every string a rendering of `report` may show."""
    s = report.summary or HostSummary()
    yield from (v for v in (s.kernel, s.distro, s.cpu, s.hostname, s.product) if v)
    yield report.source.location
    yield from report.source.details.values()
    for g in report.gpus:
        yield from (v for v in (g.address, g.name or "") if v)
    for sr in report.results:
        res = sr.result
        yield from (res.summary, *res.messages)
        for e in res.evidence:
            yield from (e.source, e.value)
        if res.remedy is not None:
            yield from (res.remedy.text, *res.remedy.steps, *(v for _, v in (res.remedy.params.items() if res.remedy.params else ())))
    yield from _strings(report.errors_in_evidence)


def _strings(o: Any) -> Iterator[str]:
    if isinstance(o, str):
        yield o
    elif isinstance(o, list | tuple):
        for x in o:
            yield from _strings(x)
    elif isinstance(o, dict):
        for v in o.values():
            yield from _strings(v)


def summary_line(counts: dict[str, int]) -> str:
    words = [
        ("pass", "passed"),
        ("fail", "failed"),
        ("warn", "warnings"),
        ("error", "errors"),
        ("unknown", "unknown"),
        ("not_applicable", "not applicable"),
    ]
    return ", ".join(f"{counts[k]} {w}" for k, w in words if counts.get(k))


def to_json(report: Report, redact: bool = True, red: Redactor | None = None) -> dict[str, Any]:
    red = red or make_redactor(report, redact)
    results = redact_results(report.results, red)
    counts = report.counts()
    an = analyse(results)
    doc: dict[str, Any] = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "minor": JSON_MINOR,
        "gpudoctor": __version__,
        "source": {k: red.text(str(v)) for k, v in report.source.to_dict().items()},
        "host": host_table(report, red),
        "redacted": redact,
        "gpus": [g.address for g in report.gpus],
        "summary": {**counts, "exit_code": report.exit_code, "duration_s": round(report.duration_s, 4),
                    "headline": headline(an), "causes": len(an.blockers)},
        "causes": an.to_json(),
        "results": [{**sr.result.to_dict(), "subject": sr.subject,
                     "follows_from": list(an.follows.get(_name(sr), ()))} for sr in results],
    }
    if report.source.kind == "pasted":
        doc["errors_in_evidence"] = [_redact_obj(t, red) for t in report.errors_in_evidence]
    return doc


def _redact_obj(o: Any, red: Redactor) -> Any:
    if isinstance(o, str):
        return red.text(o)
    if isinstance(o, list):
        return [_redact_obj(x, red) for x in o]
    if isinstance(o, dict):
        return {k: _redact_obj(v, red) for k, v in o.items()}
    return o


def dumps_json(report: Report, redact: bool = True) -> str:
    return json.dumps(to_json(report, redact), indent=2, ensure_ascii=False) + "\n"

