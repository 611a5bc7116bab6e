"""Many hosts in one process: `check --snapshot A B C ...` and `check --hosts ansible://PATTERN`.

Each host is judged by the same checks as a single `check`; its verdicts become the
`gpudoctor.check` document (render.to_json) while its snapshot is open, and the fleet is a pure
function of those documents: one table per host, then a summary that groups the hosts by the
check that failed on them ("firmware.iommu_table ...: 3 hosts"), or `--json` as a versioned
`gpudoctor.fleet` document. JUnit (doctor/junit.py) and NFD (doctor/nfd.py) read the same
documents.

Exit codes: 1 a host failed a check or was unreachable, 3 a check errored (and none failed),
2 a bad snapshot or bad input (each named on stderr; the others are still judged and shown).
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Callable, Iterable
from typing import Any

from doctor import __version__
from doctor.datarecord import field, record
from doctor.errors import BadInput, DoctorError

FLEET_FORMAT = "gpudoctor.fleet"
FLEET_VERSION = 1
STATES = ("pass", "fail", "error", "unreachable")


@record(frozen=True)
class HostOutcome:
    """One host of a fleet: its name (snapshot path or inventory alias), its state, why (for an
    unreachable or broken host) and its `gpudoctor.check` document (None when never judged)."""

    name: str
    state: str  # one of STATES
    reason: str = ""
    check: dict[str, Any] | None = None
    bad_input: bool = False  # a bad snapshot or option for this host: the run exits 2

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "reason": self.reason or None, "check": self.check}


@record(frozen=True)
class Fleet:
    hosts: tuple[HostOutcome, ...]
    redacted: bool = True
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if any(h.bad_input for h in self.hosts):
            return 2
        states = {h.state for h in self.hosts}
        if "fail" in states or "unreachable" in states:
            return 1
        return 3 if "error" in states else 0

    def causes(self) -> list[dict[str, Any]]:
        """Failing (then erroring) check ids that are root causes (doctor.causes: a result that follows
        from another host's failure is not a cause of its own), each with its hosts, most hosts first."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for h in self.hosts:
            for r in (h.check or {}).get("results", []):
                if r["status"] not in ("fail", "error") or r.get("follows_from"):
                    continue
                g = groups.setdefault((r["status"], r["id"]),
                                      {"id": r["id"], "title": r["title"], "status": r["status"], "hosts": []})
                if h.name not in g["hosts"]:
                    g["hosts"].append(h.name)
        order = {"fail": 0, "error": 1}
        return sorted(groups.values(), key=lambda g: (order[g["status"]], -len(g["hosts"]), g["id"]))

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for h in self.hosts:
            out[h.state] += 1
        return out


def to_json(fleet: Fleet) -> dict[str, Any]:
    return {
        "format": FLEET_FORMAT,
        "version": FLEET_VERSION,
        "gpudoctor": __version__,
        "redacted": fleet.redacted,
        "summary": {"hosts": len(fleet.hosts), **fleet.counts(), "exit_code": fleet.exit_code,
                    "duration_s": round(fleet.duration_s, 4)},
        "causes": fleet.causes(),
        "hosts": [h.to_dict() for h in fleet.hosts],
        **fleet.extra,
    }


def _plural(n: int) -> str:
    return f"{n} host" + ("" if n == 1 else "s")


def summary_lines(fleet: Fleet) -> list[str]:
    """The fleet summary as plain lines (no markup): who is ready, who fails on what."""
    c = fleet.counts()
    lines = [f"fleet: {_plural(len(fleet.hosts))}: {c['pass']} passed, {c['fail']} failed, "
             f"{c['error']} with errors, {c['unreachable']} unreachable — exit {fleet.exit_code}"]
    ready = []
    for h in fleet.hosts:
        if h.state == "pass":
            unknown = (h.check or {}).get("summary", {}).get("unknown", 0)
            ready.append(h.name + (f" ({unknown} unknown)" if unknown else ""))
    if ready:
        lines.append(f"  ready (no check failed): {', '.join(ready)}")
    for g in fleet.causes():
        word = "FAIL" if g["status"] == "fail" else "ERROR"
        lines.append(f"  {word} {g['id']} ({g['title']}): {_plural(len(g['hosts']))}: {', '.join(g['hosts'])}")
    for h in fleet.hosts:
        if h.state == "unreachable" or (h.state == "error" and h.check is None):
            lines.append(f"  {h.state.upper()} {h.name}: {h.reason}")
    return lines


# ---------------------------------------------------------------------------
# judging snapshots


def expand_snapshot_args(args: Iterable[str]) -> list[str]:
    """Files or folders, with globs expanded here too (a quoted `'keep/*.tar.gz'`); order kept,
    duplicates dropped. A glob that matches nothing is bad input."""
    out: list[str] = []
    for a in args:
        if glob.has_magic(a) and not os.path.exists(a):
            hits = sorted(glob.glob(a))
            if not hits:
                raise BadInput(f"--snapshot {a}: no file or folder matches")
        else:
            hits = [a]
        for h in hits:
            if h not in out:
                out.append(h)
    return out


def judge_snapshot(name: str, path: str, gpu: str | None, only: list[str] | None, redact: bool,
                   on_report: Callable[[Any], None] | None = None) -> HostOutcome:
    """Open, check and close one snapshot; `on_report(report)` runs while it is still open
    (the terminal table reads facts lazily)."""
    from doctor.facts import HostFacts
    from doctor.render import to_json as check_json
    from doctor.runner import run_checks
    from doctor.snapshot import SnapshotHost

    try:
        host = SnapshotHost(path)
    except DoctorError as e:
        return HostOutcome(name, "error", f"bad snapshot: {e}", None, bad_input=True)
    try:
        report = run_checks(HostFacts(host), host.source_info(), gpu=gpu, only=only)
        doc = check_json(report, redact=redact)
        if on_report is not None:
            on_report(report)
    except BadInput as e:
        return HostOutcome(name, "error", f"{path}: {e}", None, bad_input=True)
    finally:
        host.close()
    state = {0: "pass", 1: "fail"}.get(report.exit_code, "error")
    return HostOutcome(name, state, "", doc)


def judge_many(items: Iterable[tuple[str, str]], args: argparse.Namespace,
               on_report: Callable[[str, Any], None] | None = None) -> list[HostOutcome]:
    out = []
    for name, path in items:
        cb = (lambda rep, n=name: on_report(n, rep)) if on_report else None
        out.append(judge_snapshot(name, path, args.gpu, args.only, not args.no_redact, cb))
    return out


# ---------------------------------------------------------------------------
# the CLI hooks (doctor/cli.py calls these three)


def _state(code: int) -> str:
    return {0: "pass", 1: "fail"}.get(code, "error")


def write_output(path: str, data: bytes, what: str = "output") -> None:
    """doctor/output.py's write_output: beside the target and renamed, never through a device, FIFO or link."""
    from doctor.output import write_output as write

    write(path, data, what)

