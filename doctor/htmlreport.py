"""A self-contained pytest-html report of results already computed.

`write_html(report, path)` runs pytest in-process over the Report's results
(one item per result, see `doctor.plugin`): nothing is probed again, the HTML
is a pure function of the results. pytest-html draws the page; we add the
Status / Check id / Summary columns, one detail block per check (messages,
evidence, fix) and the environment table (the CLI's host table, in place of
pytest-metadata's rows about this Python). Every piece of text we hand to
pytest-html is escaped here: its table cells, extras and environment values
are inserted as HTML.

Outcomes: pass → passed; warn → passed, with WARN in the Status column (a warn
is advice: the CLI exits 0 on it, so it is not a failure, and pytest's xfail
would read "expected failure", which it is not); fail → failed; error → error
(raised in setup); not applicable → skipped (reason: the summary); unknown →
skipped ("unknown: ...").
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import tempfile
from typing import Any

import pytest

from doctor.causes import Analysis, analyse, headline, name
from doctor.errors import BadInput
from doctor.model import Result, Status
from doctor.output import check_target, write_output
from doctor.plugin import CheckItem, GpudoctorPlugin
from doctor.runner import Report, SubjectResult

TITLE = "gpudoctor report"

# builtin plugins a report needs none of (each costs start-up time, and some
# would touch process state: faulthandler, logging handlers, fd capture)
_UNNEEDED = (
    "cacheprovider", "faulthandler", "logging", "warnings", "junitxml", "pastebin", "doctest",
    "stepwise", "capture", "legacypath", "tmpdir", "monkeypatch", "recwarn", "setuponly",
    "setupplan", "unraisableexception", "threadexception", "debugging",
)

_CSS = """
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
        if rem.params:
            out.append("<p>parameters: " + _e(", ".join(f"{k}={v}" for k, v in rem.params)) + "</p>")
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


class HtmlHooks:
    """pytest-html hooks over the results a GpudoctorPlugin holds."""

    def __init__(self, plugin: GpudoctorPlugin) -> None:
        self.plugin = plugin

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # after GpudoctorPlugin's (tryfirst), before pytest-html's (trylast) reads the environment
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:  # pragma: no cover - pytest-html depends on it
            return
        md = session.config.stash.get(metadata_key, None)
        if md is None:
            return
        md.clear()  # Platform, Python, Packages, Plugins, CI variables: about this machine, not the report
        # pytest-html inserts environment values as HTML (keys as text)
        md.update({k: _e(v) for k, v in self.plugin.host.items()})
        md["redacted"] = "yes" if self.plugin.redact else "NO: identifying values kept"

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = TITLE

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        prefix.append(f"<style>{_CSS}</style>")
        rep = self.plugin.report
        if rep is not None:
            prefix.append(summary_html(rep, self.plugin.redact))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="sortable" data-column-type="status">Status</th>')
        cells.insert(3, '<th class="sortable" data-column-type="checkid">Check id</th>')
        cells.insert(4, '<th data-column-type="summary">Summary</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        info = getattr(report, "gpudoctor", None)
        if info is None:  # not one of ours (a collection error, another plugin's item)
            cells.insert(1, _status_cell("", "none"))
            cells.insert(3, '<td class="col-checkid"></td>')
            cells.insert(4, '<td class="col-summary"></td>')
            return
        cells[1] = f'<td class="col-testId">{_e(report.nodeid)}</td>'
        for i, c in enumerate(cells):  # the check's own run time, not the item's (~0)
            if 'class="col-duration"' in c:
                cells[i] = f'<td class="col-duration">{info["duration_s"] * 1000:.1f} ms</td>'
        cells.insert(1, _status_cell(info["word"], info["status"]))
        cells.insert(3, f'<td class="col-checkid">{_e(info["check_id"])}</td>')
        cells.insert(4, f'<td class="col-summary">{_e(info["summary"])}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        if getattr(report, "gpudoctor", None) is not None and getattr(report, "extras", None):
            data.clear()  # the detail block says it all; pytest's log would repeat it

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if isinstance(item, CheckItem):
            res = item.result
            # the phase that decides the outcome: setup for an error, call otherwise
            decisive = "setup" if res.status is Status.ERROR else "call"
            if report.when == decisive:
                from pytest_html import extras

                report.extras = [*getattr(report, "extras", []),
                                 extras.html(detail_html(res, item.subject_result.subject))]
        return report


def _pytest_args(root: str, out: str) -> list[str]:
    args = [
        root,
        "-c", os.devnull,  # no ini file of the project (addopts, testpaths) is read
        "--rootdir", root,
        "--noconftest",
        "--assert=plain",
        "-q",
        "--html", out,
        "--self-contained-html",
        "-o", "render_collapsed=passed,skipped",
        "-o", "initial_sort=original",
    ]
    for plugin in _UNNEEDED:
        args += ["-p", f"no:{plugin}"]
    return args


def _render(report: Report, redact: bool) -> str:
    """Run pytest in-process over the results; return the HTML text."""
    import pytest_html.plugin
    import pytest_metadata.plugin

    plugin = GpudoctorPlugin(lambda: report, redact)
    hooks = HtmlHooks(plugin)
    # no options or plugins from the caller's environment, no entry-point plugins (pytest-html and
    # pytest-metadata are passed explicitly); put back as it was afterwards
    names = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    buf = io.StringIO()
    try:
        with tempfile.TemporaryDirectory(prefix="gpudoctor-html-") as root:
            out = os.path.join(root, "report.html")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                code = pytest.main(
                    _pytest_args(root, out),
                    plugins=[pytest_metadata.plugin, pytest_html.plugin, plugin, hooks],
                )
            if code == pytest.ExitCode.INTERRUPTED:
                raise KeyboardInterrupt
            ok = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
            if code not in ok or not os.path.isfile(out):
                tail = buf.getvalue().strip()[-2000:]
                raise RuntimeError(f"pytest-html did not write the report (pytest exit {int(code)}): {tail}")
            with open(out, encoding="utf-8") as f:
                return f.read()
    finally:
        os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        os.environ.update(saved)


def write_html(report: Report, path: str, redact: bool = True) -> None:
    """Write a self-contained HTML report of `report` to `path` ("-": standard output) through
    `doctor.output.write_output` (beside the target, then renamed; devices, FIFOs, sockets, folders
    and symlinks refused). A missing folder is created, as the default `reports/` must be.

    BadInput (exit 2) where the path cannot or must not be written, before anything is rendered.
    """
    if path != "-":
        target = os.path.abspath(path)
        parent = os.path.dirname(target)
        if not os.path.lexists(parent):
            try:  # fail on a bad path before rendering
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise BadInput(f"--html {path}: cannot create the folder {parent}: {e.strerror or e}") from e
        check_target(path, "--html")
    write_output(path, _render(report, redact).encode("utf-8"), "--html")
