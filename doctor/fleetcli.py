"""`gpudoctor check` for many hosts, as the CLI sees it: the options, which mode the options ask for
(many snapshots, --hosts over Ansible, or one host), and the outputs (tables, the fleet document,
--html, --junit, --nfd). The fleet's data and judging are doctor/fleet.py; Ansible's transport is
doctor/fleet_ansible.py; the HTML page doctor/fleet_html.py."""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections.abc import Iterable

from doctor.errors import BadInput

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

    from doctor.fleet import HostOutcome


def add_check_arguments(c: argparse.ArgumentParser) -> None:
    """The options `check` gains for many hosts, CI and Kubernetes."""
    c.add_argument("--junit", metavar="PATH", help="also write JUnit XML (one testsuite per host) for CI dashboards")
    c.add_argument("--nfd", metavar="PATH", help="also write a node-feature-discovery local feature file (this host)")
    c.add_argument("--nfd-ttl", metavar="SECONDS", type=int, default=3600,
                   help="the NFD labels expire this long after the check unless it runs again (default 3600)")
    c.add_argument("--hosts", metavar="ansible://PATTERN",
                   help="record the hosts of an Ansible PATTERN over Ansible and judge them here (pip install gpudoctor[fleet])")
    c.add_argument("-i", "--inventory", metavar="INVENTORY", action="append",
                   help="Ansible inventory for --hosts (repeatable; default: Ansible's own)")
    c.add_argument("--jobs", metavar="N", type=int, default=None, help="hosts recorded in parallel with --hosts (Ansible forks)")
    c.add_argument("--keep", metavar="DIR", help="with --hosts, keep each host's snapshot as DIR/<host>.tar.gz")


def dispatch(args: argparse.Namespace) -> int | None:
    """Run a fleet check when the options ask for one; None means: the single-host `check`
    (then args.snapshot is one path, exactly as before)."""
    snaps = args.snapshot
    if args.nfd_ttl <= 0:
        raise BadInput(f"--nfd-ttl {args.nfd_ttl}: must be a positive number of seconds")
    hosts_mode = bool(getattr(args, "hosts", None))
    for opt in ("inventory", "jobs", "keep"):
        if getattr(args, opt, None) is not None and not hosts_mode:
            raise BadInput(f"--{opt} works only with --hosts")
    if getattr(args, "from_paths", None) and (hosts_mode or args.junit or args.nfd):
        raise BadInput("--from (pasted outputs) does not work with --hosts, --junit or --nfd")
    if hosts_mode and snaps:
        raise BadInput("--hosts and --snapshot cannot be used together: record the hosts or check snapshots")
    if snaps is not None and not isinstance(snaps, str):
        # imported here: a single-host check does not pay for doctor.fleet
        from doctor.fleet import expand_snapshot_args

        paths = expand_snapshot_args(snaps)
        if len(paths) == 1 and not glob.has_magic(snaps[0]):
            args.snapshot = paths[0]
            return None
        args.snapshot = paths
    elif not hosts_mode:
        return None
    if getattr(args, "vm", None):
        raise BadInput("--vm names a domain of one host: not with --hosts or several snapshots")
    if args.nfd:
        raise BadInput("--nfd describes one node: run it on each node (check --nfd PATH), not on a fleet")
    if args.html is not None:
        if args.html == "-" and args.json:
            raise BadInput("--html - and --json both want standard output: give --html a file")
        from doctor.fleet_html import html_path

        args.html = html_path(args.html)  # checked (and its folder made) before any host is judged
    if getattr(args, "read_rom", False) or getattr(args, "rom", None):
        raise BadInput("--read-rom and --rom work on one host, not on a fleet")
    _validate_only(args.only)
    if hosts_mode:
        from doctor.fleet_ansible import cmd_check_hosts

        return cmd_check_hosts(args, lambda items, pre, order: run_fleet(items, args, pre=pre, order=order))
    return run_fleet([(p, p) for p in args.snapshot], args)


def single_host_outputs(args: argparse.Namespace, report: Any) -> None:
    """--junit and --nfd for the single-host `check` (called with the report while its host is open)."""
    if not (getattr(args, "junit", None) or getattr(args, "nfd", None)):
        return
    from doctor.fleet import HostOutcome, _state, write_output
    from doctor.render import to_json as check_json

    doc = check_json(report, redact=not args.no_redact)
    if args.junit:
        from doctor.junit import junit_xml

        name = args.snapshot or "localhost"
        write_output(args.junit, junit_xml([HostOutcome(name, _state(report.exit_code), "", doc)]), "--junit")
        print(f"gpudoctor: JUnit XML written to {args.junit}", file=sys.stderr)
    if args.nfd:
        from doctor.nfd import nfd_features

        write_output(args.nfd, nfd_features(doc, ttl_s=args.nfd_ttl).encode(), "--nfd")
        print(f"gpudoctor: NFD features written to {args.nfd}", file=sys.stderr)


def _validate_only(only: list[str] | None) -> None:
    if not only:
        return
    from doctor.registry import load_checks

    unknown = [c for c in only if c not in load_checks()]
    if unknown:
        raise BadInput(f"unknown check id(s): {', '.join(unknown)} (see `gpudoctor list`)")


def run_fleet(items: list[tuple[str, str]], args: argparse.Namespace,
              pre: Iterable[HostOutcome] = (), extra: dict[str, Any] | None = None,
              order: list[str] | None = None) -> int:
    """Judge (name, snapshot path) pairs, add hosts already settled (`pre`: unreachable ones),
    print the tables or the document, write --junit; the exit code."""
    from rich.console import Console

    from doctor.fleet import Fleet, judge_many, summary_lines, to_json, write_output

    t0 = time.perf_counter()
    console = Console(highlight=False, soft_wrap=False)
    redact = not args.no_redact
    html = getattr(args, "html", None)
    table = not args.json and html != "-"  # standard output carries one thing
    bodies: dict[str, str] = {}  # --html: each judged host's section, made while its snapshot is open

    def on_report(name: str, report: Any) -> None:
        if table:
            from doctor.textout import render_terminal

            console.rule(f"[bold]{name}[/bold]", align="left")
            render_terminal(report, console, verbose=args.verbose, redact=redact)
            console.print()
        if html is not None:
            from doctor.fleet_html import body_of

            bodies[name] = body_of(report, redact)

    outcomes = judge_many(items, args, on_report if table or html is not None else None) + list(pre)
    if order:
        rank = {n: i for i, n in enumerate(order)}
        outcomes.sort(key=lambda h: rank.get(h.name, len(rank)))
    fleet = Fleet(tuple(outcomes), redact, time.perf_counter() - t0, extra or {})
    for h in fleet.hosts:
        if h.bad_input:
            print(f"gpudoctor: error: {h.name}: {h.reason}", file=sys.stderr)
    if html is not None:
        from doctor.fleet_html import fleet_html

        write_output(html, fleet_html(fleet, bodies).encode("utf-8"), "--html")
        if html != "-":
            print(f"gpudoctor: HTML report written to {html}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(to_json(fleet), indent=2, ensure_ascii=False) + "\n")
    elif table:
        from rich.markup import escape

        for i, line in enumerate(summary_lines(fleet)):
            console.print(f"[bold]{escape(line)}[/bold]" if i == 0 else escape(line), soft_wrap=True)
    if args.junit:
        from doctor.junit import junit_xml

        write_output(args.junit, junit_xml(fleet.hosts), "--junit")
        print(f"gpudoctor: JUnit XML written to {args.junit}", file=sys.stderr)
    return fleet.exit_code
