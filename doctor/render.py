"""Rendering is a pure function of results: terminal (rich), JSON envelope."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from doctor import __version__
from doctor.model import Evidence, Remedy, Status
from doctor.redact import Redactor
from doctor.runner import Report, SubjectResult

JSON_FORMAT = "gpudoctor.check"
JSON_VERSION = 1

STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.NOT_APPLICABLE: "dim",
    Status.UNKNOWN: "magenta",
    Status.ERROR: "bold magenta",
}


def redact_results(results: list[SubjectResult], r: Redactor) -> list[SubjectResult]:
    if not r.enabled:
        return results
    out = []
    for sr in results:
        res = sr.result
        remedy = res.remedy
        if remedy is not None:
            remedy = Remedy(r.text(remedy.text), tuple(r.text(s) for s in remedy.steps), remedy.fix_id,
                            tuple((k, r.text(v)) for k, v in remedy.params))
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
    s = report.facts.summary()
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


def make_redactor(report: Report, enabled: bool) -> Redactor:
    hn = report.facts.summary().hostname
    return Redactor([hn] if hn else [], enabled=enabled)


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


def to_json(report: Report, redact: bool = True) -> dict[str, Any]:
    red = make_redactor(report, redact)
    results = redact_results(report.results, red)
    counts = report.counts()
    doc = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "gpudoctor": __version__,
        "source": {k: red.text(str(v)) for k, v in report.source.to_dict().items()},
        "host": host_table(report, red),
        "redacted": redact,
        "gpus": [g.address for g in report.gpus],
        "summary": {**counts, "exit_code": report.exit_code, "duration_s": round(report.duration_s, 4)},
        "results": [{**sr.result.to_dict(), "subject": sr.subject} for sr in results],
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


def _status_cell(st: Status) -> str:
    return f"{st.glyph} {st.word}"


def render_terminal(report: Report, console: Any, verbose: bool = False, redact: bool = True) -> None:
    """Print one line per check (glyph + word + colour), details with verbose."""
    from rich.markup import escape
    from rich.table import Table

    red = make_redactor(report, redact)
    results = redact_results(report.results, red)
    host = host_table(report, red)
    console.print(
        f"[bold]gpudoctor {__version__}[/bold] — {escape(host['source'])}: kernel {escape(host['kernel'])}, "
        f"{escape(host['distribution'])}, {escape(host['cpu'])}"
    )
    console.print(f"GPUs: {escape(host['gpus'])}")
    if report.source.kind == "pasted":
        console.print("[bold]Evidence[/bold] (pasted; verdicts decided only from these inputs):")
        for k, v in report.source.details.items():
            if k.startswith("input ") or k == "gpus checked":
                console.print(f"  {escape(k)}: {escape(red.text(v))}")
    table = Table(show_header=False, box=None, pad_edge=False, expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("summary", overflow="fold")
    for sr in results:
        res = sr.result
        cid = res.check_id + (f"[{sr.subject}]" if sr.subject else "")
        table.add_row(f"[{STYLE[res.status]}]{_status_cell(res.status):<9}[/]", escape(cid), escape(res.summary))
    console.print(table)
    shown_detail = False
    for sr in results:
        res = sr.result
        if not verbose and res.status not in (Status.FAIL, Status.ERROR):
            continue
        if not verbose and res.remedy is None and not res.messages:
            continue
        shown_detail = True
        cid = res.check_id + (f"[{sr.subject}]" if sr.subject else "")
        console.print()
        console.print(f"[{STYLE[res.status]}]{_status_cell(res.status)}[/] [bold]{escape(cid)}[/bold] — {escape(res.title)}")
        for m in res.messages:
            console.print(f"    {escape(m)}")
        if verbose:
            for e in res.evidence:
                console.print(f"    [dim]evidence[/dim] {escape(e.source)}: {escape(e.value)}")
        if res.remedy is not None:
            console.print(f"    [bold]fix:[/bold] {escape(res.remedy.text)}")
            for s in res.remedy.steps:
                console.print(f"      {escape(s)}")
    if shown_detail or results:
        console.print()
    if report.errors_in_evidence:
        console.print("[bold]Errors in the evidence[/bold]")
        for t in report.errors_in_evidence:
            console.print(f"  [bold]{escape(str(t['title']))}[/bold] ({escape(str(t['where']))}): {escape(red.text(str(t['seen'])))}")
            for c in t["causes"]:
                console.print(f"    - {escape(red.text(c['cause']))}: {escape(red.text(c['verdict']))}")
        console.print()
    code = report.exit_code
    console.print(f"[bold]{summary_line(report.counts())}[/bold] ({report.duration_s:.2f}s) — exit {code}"
                  + ("" if verbose else "; -v shows the evidence"))
