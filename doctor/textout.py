"""The report as text for a person: causes first, then every check, then the counts.

`report_lines` is a pure function of a Report (a list of `Line`); `emit` writes them. No rich:
piped output is plain text (no escape codes, never wrapped, so `grep` sees whole lines), a
terminal gets colour unless NO_COLOR is set, and lines are wrapped between words only where a
width is known (COLUMNS, or the terminal's). Commands (a fix's steps) are never wrapped: they are
copied and pasted.
"""

from __future__ import annotations

import os
import sys

from doctor import __version__
from doctor.causes import Analysis, headline, name
from doctor.datarecord import record
from doctor.model import Result, Status
from doctor.redact import Redactor
from doctor.runner import Report, SubjectResult

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any, TextIO

ANSI = {
    Status.PASS: "32", Status.WARN: "33", Status.FAIL: "1;31", Status.NOT_APPLICABLE: "2",
    Status.UNKNOWN: "35", Status.ERROR: "1;35", "bold": "1", "dim": "2",
}
LONG = 60  # evidence values at least this long are printed once, then referred to


@record(frozen=True)
class Line:
    text: str
    indent: int = 0  # where continuation lines start when wrapped
    wrap: bool = True
    style: Status | str | None = None  # colours the first `styled` characters
    styled: int = 0


def cell(st: Status) -> str:
    return f"{st.glyph} {st.word}"


def _counts(report: Report) -> str:
    from doctor.render import summary_line

    return summary_line(report.counts())


def _fix_lines(res: Result, pad: str) -> list[Line]:
    out: list[Line] = []
    if res.remedy is not None:
        first, *rest = res.remedy.text.splitlines() or [""]
        out.append(Line(f"{pad}fix: {first}", len(pad) + 5))
        out += [Line(f"{pad}     {r.strip()}", len(pad) + 5) for r in rest]
        out += [Line(f"{pad}  {s}", wrap=False) for s in res.remedy.steps]
    return out


def _messages(res: Result, pad: str) -> list[Line]:
    fix = res.remedy.text if res.remedy else None
    return [Line(f"{pad}{m}", len(pad)) for m in res.messages if m != fix]  # never the fix twice


def _cause_lines(an: Analysis) -> list[Line]:
    out: list[Line] = []
    groups = (("blocker", "Causes, in the order to fix them:"), ("error", "Checks that broke (the verdict is incomplete):"),
              ("unknown", "Could not be decided (each says what settles it):"), ("advice", "Advice (passthrough works without it):"))
    n = 0
    for kind, title in groups:
        cs = [c for c in an.causes if c.kind == kind]
        if not cs:
            continue
        out += [Line(""), Line(title, style="bold", styled=len(title))]
        for c in cs:
            n += 1
            res = c.result.result
            head = f"{n}. {cell(res.status)} "
            out.append(Line(f"{head}{c.name} — {res.summary}", 5, style=res.status, styled=len(head)))
            pad = " " * 5
            out += _messages(res, pad) + _fix_lines(res, pad)
            if c.explains:
                names = ", ".join(f"{name(sr)} ({sr.result.status.word})" for sr in c.explains)
                out.append(Line(f"{pad}follows from it ({len(c.explains)}): {names}", len(pad) + 4))
    return out


def _table(results: list[SubjectResult], an: Analysis) -> list[Line]:
    width = max((len(name(sr)) for sr in results), default=0)
    out = []
    for sr in results:
        res = sr.result
        first = f"{cell(res.status):<9}  {name(sr):<{width}}  "
        ups = an.follows.get(name(sr))
        tail = f" (follows from {', '.join(ups)})" if ups else ""
        out.append(Line(f"{first}{res.summary}{tail}", len(first), style=res.status, styled=len(cell(res.status))))
    return out


def _details(results: list[SubjectResult], an: Analysis) -> list[Line]:
    out: list[Line] = []
    seen: dict[str, str] = {}  # long evidence value -> where it was first shown
    roots = {c.name: i for i, c in enumerate(an.causes, 1)}
    for sr in results:
        res, nm = sr.result, name(sr)
        head = f"{cell(res.status)} {nm} — {res.title}"
        out += [Line(""), Line(head, 4, style=res.status, styled=len(cell(res.status)))]
        pad = "    "
        out += _messages(res, pad)
        for e in res.evidence:
            first = seen.get(e.value)
            if first is not None:
                out.append(Line(f"{pad}evidence {e.source}: the same text as under {first}", len(pad) + 9))
                continue
            if len(e.value) >= LONG:
                seen[e.value] = f"{nm} ({e.source})"
            out.append(Line(f"{pad}evidence {e.source}: {e.value}", len(pad) + 9))
        ups = an.follows.get(nm)
        if ups:
            out.append(Line(f"{pad}follows from {', '.join(ups)}: fix that first", len(pad)))
        elif nm in roots and res.remedy is not None:
            out.append(Line(f"{pad}fix: see cause {roots[nm]} above", len(pad)))
        else:
            out += _fix_lines(res, pad)
    return out


def report_lines(report: Report, verbose: bool = False, redact: bool = True, red: Redactor | None = None) -> list[Line]:
    from doctor.render import analysis, host_table, make_redactor

    red = red or make_redactor(report, redact)
    host = host_table(report, red)
    results, an = analysis(report, redact, red)
    title = f"gpudoctor {__version__}"
    out = [
        Line(f"{title} — {host['source']}: kernel {host['kernel']}, {host['distribution']}, {host['cpu']}",
             style="bold", styled=len(title)),
        Line(f"GPUs: {host['gpus']}"),
        *_pasted_inputs(report, red),
        Line(""),
        Line(headline(an), style="bold", styled=len(headline(an))),
    ]
    out += _cause_lines(an)
    out += [Line(""), Line("Every check:", style="bold", styled=12)] + _table(results, an)
    if verbose:
        out += _details(results, an)
    out += _evidence_errors(report, red)
    nb = len(an.blockers)
    follow = len({name(sr) for c in an.blockers for sr in c.explains})
    out.append(Line(""))
    if nb:
        out.append(Line(f"{nb} cause{'s' if nb != 1 else ''} block passthrough; {follow} check{'s' if follow != 1 else ''} "
                        f"follow{'s' if follow == 1 else ''} from {'them' if nb != 1 else 'it'} (not counted as separate causes)."))
    line = (f"{_counts(report)} ({report.duration_s:.2f}s) — exit {report.exit_code}"
            + ("" if verbose else "; -v shows the evidence"))
    out.append(Line(line, wrap=False, style="bold", styled=len(line)))  # the last line, whole: scripts read it
    return out


def _pasted_inputs(report: Report, red: Redactor) -> list[Line]:
    """Pasted text: which inputs were read (and what each showed) and which GPUs were checked."""
    if report.source.kind != "pasted":
        return []
    head = "Evidence"
    out = [Line(f"{head} (pasted; verdicts decided only from these inputs):", style="bold", styled=len(head))]
    out += [Line(f"  {k}: {red.text(v)}", indent=4) for k, v in report.source.details.items()
            if k.startswith("input ") or k == "gpus checked"]
    return out


def _evidence_errors(report: Report, red: Redactor) -> list[Line]:
    """Known errors found in pasted evidence, each cause with what the evidence says of it."""
    if not report.errors_in_evidence:
        return []
    head = "Errors in the evidence"
    out = [Line(""), Line(head, style="bold", styled=len(head))]
    for t in report.errors_in_evidence:
        title = str(t["title"])
        out.append(Line(f"  {title} ({red.text(str(t['where']))}): {red.text(str(t['seen']))}", indent=4, style="bold", styled=len(title) + 2))
        out += [Line(f"    - {red.text(c['cause'])}: {red.text(c['verdict'])}", indent=6) for c in t["causes"]]
    return out


def width_of(stream: TextIO) -> int | None:
    """COLUMNS where set (a number >= 20), else the terminal's width, else None: piped output is not wrapped."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) >= 20:
        return int(cols)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def render(lines: list[Line], width: int | None, colour: bool) -> str:
    chunks = []
    for ln in lines:
        parts = [ln.text]
        if width and ln.wrap and len(ln.text) > width:
            lead = len(ln.text) - len(ln.text.lstrip(" "))
            import textwrap

            parts = textwrap.wrap(ln.text, width=width, initial_indent="", subsequent_indent=" " * ln.indent,
                                  break_long_words=False, break_on_hyphens=False, drop_whitespace=True) or [ln.text]
            parts[0] = " " * lead + parts[0].lstrip(" ") if lead else parts[0]
        if colour and ln.style is not None and ln.styled:
            code = ANSI[ln.style]
            p0 = parts[0]
            parts[0] = f"\x1b[{code}m{p0[:ln.styled]}\x1b[0m{p0[ln.styled:]}"
        chunks.append("\n".join(parts))
    return "\n".join(chunks) + "\n"


def emit(lines: list[Line], stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(render(lines, width_of(stream), use_colour(stream)))
    stream.flush()


def render_terminal(report: Report, out: Any = None, verbose: bool = False, redact: bool = True,
                    red: Redactor | None = None) -> None:
    """Print the report as text (doctor.textout): causes first, then every check, then the counts.

    `out` is a text stream (default standard output) or anything with a `file` attribute (a rich
    Console, as older callers pass): the text goes to that file, coloured only on a terminal
    without NO_COLOR, wrapped only between words and only where a width is known (COLUMNS, or
    the terminal's); piped output is never wrapped.
    """
    stream = getattr(out, "file", out)
    emit(report_lines(report, verbose=verbose, redact=redact, red=red), stream)
