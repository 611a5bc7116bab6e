"""Command line: gpudoctor check | record | list.

Exit codes: 0 all pass or warn, 1 any check failed, 2 usage or bad input,
3 internal error (or a check that errored), 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from collections.abc import Sequence

from doctor import __version__
from doctor.errors import DoctorError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpudoctor", description="Preflight doctor for KVM GPU passthrough.")
    p.add_argument("--version", action="version", version=f"gpudoctor {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    c = sub.add_parser("check", help="run every check on this host or a snapshot")
    c.add_argument("--snapshot", metavar="PATH", help="check a recorded snapshot (folder or .tar.gz) instead of this host")
    c.add_argument("--gpu", metavar="ADDR", help="the GPU to check, e.g. 0000:01:00.0 (default: every non-boot GPU)")
    c.add_argument("--only", metavar="ID", nargs="+", help="run only these check ids")
    c.add_argument("--json", action="store_true", help="print a versioned JSON document instead of the table")
    c.add_argument("--html", metavar="PATH", nargs="?", const="", help="also write a self-contained HTML report (default: reports/)")
    c.add_argument("-v", "--verbose", action="store_true", help="show evidence and fixes for every check")
    c.add_argument("--no-redact", action="store_true", help="keep hostnames, addresses, serials and UUIDs in the output")

    r = sub.add_parser("record", help="snapshot this host into a replayable, redacted fixture")
    r.add_argument("-o", "--output", metavar="PATH", help="folder, or a path ending in .tar.gz (default: gpudoctor-snapshot-<time>.tar.gz)")
    r.add_argument("--no-redact", action="store_true", help="keep hostnames, addresses, serials and UUIDs")
    r.add_argument("--provenance", metavar="TEXT", default="", help="where this snapshot comes from (kept in the manifest)")

    sub.add_parser("list", help="list the checks")
    return p


def _open_host(snapshot: str | None):  # type: ignore[no-untyped-def]
    from doctor.host import LiveHost
    from doctor.snapshot import SnapshotHost

    return SnapshotHost(snapshot) if snapshot else LiveHost()


def cmd_check(args: argparse.Namespace) -> int:
    from doctor.facts import HostFacts
    from doctor.render import dumps_json, render_terminal
    from doctor.runner import run_checks

    host = _open_host(args.snapshot)
    try:
        facts = HostFacts(host)
        report = run_checks(facts, host.source_info(), gpu=args.gpu, only=args.only)
        redact = not args.no_redact
        if args.html is not None:
            from doctor.htmlreport import write_html

            path = args.html or os.path.join("reports", f"gpudoctor-{_dt.datetime.now():%Y%m%d-%H%M%S}.html")
            write_html(report, path, redact=redact)
            print(f"gpudoctor: HTML report written to {path}", file=sys.stderr)
        if args.json:
            sys.stdout.write(dumps_json(report, redact=redact))
        else:
            from rich.console import Console

            render_terminal(report, Console(highlight=False, soft_wrap=False), verbose=args.verbose, redact=redact)
        return report.exit_code
    finally:
        close = getattr(host, "close", None)
        if close:
            close()


def cmd_record(args: argparse.Namespace) -> int:
    from doctor.snapshot import record

    out = args.output or f"gpudoctor-snapshot-{_dt.datetime.now():%Y%m%d-%H%M%S}.tar.gz"
    info = record(out, redact=not args.no_redact, provenance=args.provenance)
    red = "redacted" if not args.no_redact else "NOT redacted"
    size = _size(out)
    print(f"gpudoctor: snapshot written to {out} ({size} bytes, {red}, {info['redactions']} value(s) replaced)")
    print(f"check it with: gpudoctor check --snapshot {out}")
    return 0


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if not os.path.islink(os.path.join(d, f)))


def cmd_list(args: argparse.Namespace) -> int:
    from doctor.registry import load_checks

    for spec in load_checks().values():
        scope = "per GPU" if spec.per_gpu else "host"
        fix = f" (fix: {spec.fix_id})" if spec.fix_id else ""
        print(f"{spec.id:<28} {spec.severity.value:<8} {scope:<8} {spec.title}{fix}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return 2
    try:
        return {"check": cmd_check, "record": cmd_record, "list": cmd_list}[args.cmd](args)
    except DoctorError as e:
        print(f"gpudoctor: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gpudoctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the boundary: never a bare traceback
        import traceback

        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
        print(f"gpudoctor: internal error: {type(e).__name__}: {e} (at {where}); please report this line", file=sys.stderr)
        if os.environ.get("GPUDOCTOR_DEBUG"):
            traceback.print_exc()
        return 3


if __name__ == "__main__":
    sys.exit(main())
