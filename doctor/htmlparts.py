"""The HTML fragments of a report (pure functions of results): status cells, one detail block per
check, the causes and the first screen. `doctor.plugin`'s pytest-html hooks and `doctor.htmlreport`
use them."""

from __future__ import annotations

import html

from doctor.causes import Analysis, analyse, headline, name
from doctor.model import Result, Status
from doctor.runner import Report, SubjectResult

TITLE = "gpudoctor report"

CSS = """
.gd-status { font-weight: bold; white-space: nowrap; }
.gd-pass { color: #1a7f37; } .gd-warn { color: #9a6700; } .gd-fail { color: #cf222e; }
.gd-not_applicable { color: #6e7781; } .gd-unknown { color: #8250df; } .gd-error { color: #a40e26; }
.gd-detail { font-family: Helvetica, Arial, sans-serif; font-size: 13px; padding: 4px 0 8px 0; }
.gd-detail table { border-collapse: collapse; margin: 4px 0; }
.gd-detail th, .gd-detail td { border: 1px solid #d0d7de; padding: 2px 6px; text-align: left;
  vertical-align: top; font-family: monospace; white-space: pre-wrap; word-break: break-all; }
.gd-detail pre { background: #f6f8fa; padding: 6px; border: 1px solid #d0d7de; white-space: pre-wrap; }
.gd-summary-line { font-weight: bold; }
.gd-report { font-family: Helvetica, Arial, sans-serif; font-size: 14px; max-width: 1200px; }
.gd-headline { font-size: 17px; font-weight: bold; margin: 10px 0; }
.gd-report table.gd-host td, .gd-report table.gd-checks td, .gd-report table.gd-checks th {
  border: 1px solid #d0d7de; padding: 2px 6px; text-align: left; vertical-align: top; }
.gd-report table { border-collapse: collapse; }
.gd-cause { margin: 6px 0 12px 0; }
.gd-follows { color: #57606a; }
.gd-report pre { background: #f6f8fa; padding: 6px; border: 1px solid #d0d7de; white-space: pre-wrap; }
/* pytest's words and empty boxes: our statuses and counts say it (the data stays in the page) */
p.run-count, p.filter, .controls .filters, .logwrapper, #environment-header, #environment,
#results-table .col-checkid, #results-table th[data-column-type="checkid"],
#results-table .col-result, #results-table th[data-column-type="result"] { display: none; }
"""

_e = html.escape


def _status_cell(word: str, status: str) -> str:
    return f'<td class="col-status gd-status gd-{_e(status)}">{_e(word)}</td>'


def detail_html(res: Result, subject: str | None = None) -> str:
    """The per-check block: title, summary, messages, evidence, fix (all escaped)."""
    st = res.status
    out = [
        '<div class="gd-detail">',
        f'<p><span class="gd-status gd-{_e(st.value)}">{_e(st.word)}</span> '
        f"<b>{_e(res.check_id)}</b>{_e(f' [{subject}]' if subject else '')} — {_e(res.title)}</p>",
        f"<p>{_e(res.summary)}</p>",
    ]
    if res.messages:
        out.append("<ul>" + "".join(f"<li>{_e(m)}</li>" for m in res.messages) + "</ul>")
    if res.evidence:
        rows = "".join(f"<tr><td>{_e(ev.source)}</td><td>{_e(ev.value)}</td></tr>" for ev in res.evidence)
        out.append(f"<table><tr><th>source</th><th>value</th></tr>{rows}</table>")
    if res.remedy is not None:
        rem = res.remedy
        fix_id = f" (fix id: {_e(rem.fix_id)})" if rem.fix_id else ""
        out.append(f"<p><b>Fix</b>{fix_id}: {_e(rem.text)}</p>")
        if rem.steps:
            out.append("<pre>" + _e("\n".join(rem.steps)) + "</pre>")
        if rem.params is not None and rem.params.items():
            out.append("<p>parameters: " + _e(", ".join(f"{k}={v}" for k, v in rem.params.items())) + "</p>")
    out.append("</div>")
    return "".join(out)


def _follows(nm: str, an: Analysis) -> str:
    ups = an.follows.get(nm)
    return f'<p class="gd-follows">follows from {_e(", ".join(ups))}: fix that first</p>' if ups else ""


def causes_html(results: list[SubjectResult]) -> str:
    """The root causes of one host's results, each with its fix and what follows from it, as a
    self-contained HTML fragment (no script): the top of the report, and what a fleet summary shows."""
    an = analyse(results)
    out = [f'<p class="gd-headline">{_e(headline(an))}</p>']
    groups = (("blocker", "Causes, in the order to fix them"), ("error", "Checks that broke (the verdict is incomplete)"),
              ("unknown", "Could not be decided (each says what settles it)"), ("advice", "Advice (passthrough works without it)"))
    for kind, title in groups:
        cs = [c for c in an.causes if c.kind == kind]
        if not cs:
            continue
        out.append(f"<h3>{_e(title)}</h3><ol>")
        for c in cs:
            res = c.result.result
            body = detail_html(res, c.result.subject)
            below = ""
            if c.explains:
                names = ", ".join(f"{name(sr)} ({sr.result.status.word})" for sr in c.explains)
                below = f'<p class="gd-follows">follows from it ({len(c.explains)}): {_e(names)}</p>'
            out.append(f'<li class="gd-cause">{body}{below}</li>')
        out.append("</ol>")
    return "".join(out)


def summary_html(report: Report, redact: bool = True) -> str:
    """Everything a person needs, readable with JavaScript off: host, headline, causes, every check
    (once, in our words), the details of every check that did not pass."""
    from doctor.render import analysis, host_table, make_redactor, summary_line

    host = host_table(report, make_redactor(report, redact))
    results, an = analysis(report, redact)
    counts = report.counts()
    words = "  ".join(f"{st.word} {counts[st.value]}" for st in Status)
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in host.items())
    if "redacted" not in host:  # a snapshot's own row says it already
        rows += f"<tr><td>redacted</td><td>{'yes' if redact else 'NO: identifying values kept'}</td></tr>"
    out = ['<div class="gd-report">', f'<table class="gd-host">{rows}</table>', causes_html(results),
           f'<p class="gd-summary-line">{_e(words)} — exit {report.exit_code} ({_e(summary_line(counts) or "no checks")})</p>',
           "<h3>Every check</h3>", '<table class="gd-checks"><tr><th>Status</th><th>Check</th><th>Summary</th></tr>']
    for sr in results:
        res, nm = sr.result, name(sr)
        ups = an.follows.get(nm)
        tail = f' <span class="gd-follows">(follows from {_e(", ".join(ups))})</span>' if ups else ""
        out.append(f'<tr>{_status_cell(res.status.word, res.status.value)}<td>{_e(nm)}</td><td>{_e(res.summary)}{tail}</td></tr>')
    out.append("</table><h3>Details of every check that did not pass</h3>")
    for sr in results:
        if sr.result.status in (Status.PASS, Status.NOT_APPLICABLE):
            continue
        out.append(detail_html(sr.result, sr.subject) + _follows(name(sr), an))
    out.append("</div>")
    return "".join(out)
