"""`check --snapshot A B C --html PATH` and `check --hosts ... --html PATH`: one self-contained
HTML report for a fleet, a section per host.

The top is the fleet summary (who is ready, who fails on what, grouped by cause, each host a link
to its section), then a table of the hosts, then each host's section: the single-host report's own
body (doctor.htmlreport.summary_html: host table, causes, every check, the details of every check
that did not pass), made while that host's snapshot is open, or, for a host never judged
(unreachable, a bad snapshot), why. A plain page: no script, every text escaped here or by
summary_html; readable with JavaScript off.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from typing import Any

from doctor.errors import BadInput
from doctor.fleet import Fleet, HostOutcome, summary_lines

TITLE = "gpudoctor fleet report"
_e = html.escape

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 14px; max-width: 1200px; margin: 16px; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: 2px 6px; text-align: left;
  vertical-align: top; }
.gd-status { font-weight: bold; white-space: nowrap; }
.gd-pass { color: #1a7f37; } .gd-warn { color: #9a6700; } .gd-fail { color: #cf222e; }
.gd-not_applicable { color: #6e7781; } .gd-unknown { color: #8250df; } .gd-error, .gd-unreachable { color: #a40e26; }
.gd-detail { font-size: 13px; padding: 4px 0 8px 0; }
.gd-detail td, .gd-detail th { font-family: monospace; white-space: pre-wrap; word-break: break-all; }
pre { background: #f6f8fa; padding: 6px; border: 1px solid #d0d7de; white-space: pre-wrap; }
.gd-headline { font-size: 17px; font-weight: bold; margin: 10px 0; }
.gd-summary-line { font-weight: bold; } .gd-follows { color: #57606a; } .gd-cause { margin: 6px 0 12px 0; }
section.gd-host-section { border-top: 3px solid #d0d7de; margin-top: 24px; }
"""

STATE_WORDS = {"pass": "READY", "fail": "FAIL", "error": "ERROR", "unreachable": "UNREACHABLE"}


def anchors(hosts: tuple[HostOutcome, ...]) -> dict[str, str]:
    """A section id per host name (host-1, host-2, ... in the fleet's order)."""
    return {h.name: f"host-{i}" for i, h in enumerate(hosts, 1)}


def _link(name: str, ids: dict[str, str]) -> str:
    return f'<a href="#{ids[name]}">{_e(name)}</a>' if name in ids else _e(name)


def summary_html(fleet: Fleet, ids: dict[str, str]) -> str:
    first, *_ = summary_lines(fleet)
    out = [f'<p class="gd-headline">{_e(first)}</p>']
    ready = [h for h in fleet.hosts if h.state == "pass"]
    if ready:
        out.append("<p>Ready (no check failed): " + ", ".join(_link(h.name, ids) for h in ready) + "</p>")
    causes = fleet.causes()
    if causes:
        out.append("<h2>Causes, grouped by host</h2><table><tr><th>Status</th><th>Check</th><th>Hosts</th></tr>")
        for g in causes:
            word = "FAIL" if g["status"] == "fail" else "ERROR"
            hosts = ", ".join(_link(n, ids) for n in g["hosts"])
            out.append(f'<tr><td class="gd-status gd-{_e(g["status"])}">{word}</td>'
                       f'<td><b>{_e(g["id"])}</b> ({_e(g["title"])})</td><td>{len(g["hosts"])}: {hosts}</td></tr>')
        out.append("</table>")
    return "".join(out)


def hosts_table(fleet: Fleet, ids: dict[str, str]) -> str:
    out = ["<h2>Hosts</h2><table><tr><th>Host</th><th>State</th><th>Checks</th></tr>"]
    for h in fleet.hosts:
        if h.check is not None:
            s = h.check.get("summary", {})
            counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if isinstance(v, int) and k != "exit_code" and v)
        else:
            counts = h.reason
        out.append(f'<tr><td>{_link(h.name, ids)}</td><td class="gd-status gd-{_e(h.state)}">{STATE_WORDS[h.state]}</td>'
                   f"<td>{_e(counts)}</td></tr>")
    out.append("</table>")
    return "".join(out)


def host_section(h: HostOutcome, anchor: str, body: str | None) -> str:
    head = (f'<section class="gd-host-section" id="{anchor}"><h2>{_e(h.name)} — '
            f'<span class="gd-status gd-{_e(h.state)}">{STATE_WORDS[h.state]}</span></h2>')
    if body is None:
        why = h.reason or "not judged"
        return f"{head}<p>{_e(why)}</p></section>"
    return f"{head}{body}</section>"


def fleet_html(fleet: Fleet, bodies: dict[str, str]) -> str:
    """The page: `bodies` maps a judged host's name to its summary_html fragment."""
    ids = anchors(fleet.hosts)
    redacted = "yes" if fleet.redacted else "NO: identifying values kept"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(TITLE)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(TITLE)}</h1><p>{len(fleet.hosts)} hosts; redacted: {redacted}</p>",
        summary_html(fleet, ids),
        hosts_table(fleet, ids),
        *(host_section(h, ids[h.name], bodies.get(h.name)) for h in fleet.hosts),
        "</body></html>\n",
    ]
    return "".join(parts)


def html_path(arg: str) -> str:
    """--html's path: '' is the default file under reports/, '-' standard output. The folder is
    made and the target checked before any host is judged (BadInput, exit 2)."""
    from doctor.output import check_target

    path = arg or os.path.join("reports", f"gpudoctor-fleet-{_dt.datetime.now():%Y%m%d-%H%M%S}.html")
    if path == "-":
        return path
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise BadInput(f"--html {path}: cannot create the folder {parent}: {e.strerror or e}") from e
    check_target(path, "--html")
    return path


def body_of(report: Any, redact: bool) -> str:
    """One host's section body: the single-host HTML report's own (doctor.htmlreport.summary_html)."""
    from doctor.htmlparts import summary_html as host_summary_html

    return host_summary_html(report, redact)
