"""Command line: gpudoctor check [--from PATH...] | record | list | explain.

Exit codes: 0 all pass or warn, 1 any check failed, 2 usage or bad input,
3 internal error or a check that errored (even when another check failed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from doctor import __version__
from doctor.errors import DoctorError

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


def _stamp() -> str:
    import datetime

    return f"{datetime.datetime.now():%Y%m%d-%H%M%S}"


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, with the terminal width read the way `shutil.get_terminal_size` does but
    without importing shutil (with bz2, lzma and fnmatch: 3 ms of every start, for help text that a
    `check` run never prints)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _add_check(c: argparse.ArgumentParser) -> None:
    c.add_argument("--snapshot", metavar="PATH", nargs="+",
                   help="check recorded snapshots (folders or .tar.gz, globs) instead of this host; several: a fleet")
    c.add_argument("--gpu", metavar="ADDR", help="the GPU to check, e.g. 0000:01:00.0 (default: every non-boot GPU)")
    c.add_argument("--only", metavar="ID", nargs="+", help="run only these check ids")
    c.add_argument("--json", action="store_true", help="print a versioned JSON document instead of the table")
    c.add_argument("-o", "--output", metavar="PATH",
                   help="with --json: write the JSON document to PATH ('-': standard output, the default) and show the table")
    c.add_argument("--html", metavar="PATH", nargs="?", const="",
                   help="also write a self-contained HTML report (default: reports/; '-': standard output, instead of the table)")
    c.add_argument("-v", "--verbose", action="store_true", help="show evidence and fixes for every check")
    c.add_argument("--no-redact", action="store_true", help="keep hostnames, addresses, serials and UUIDs in the output")
    c.add_argument("--read-rom", action="store_true",
                   help="read the GPU's option ROM from sysfs (writes 1 to its `rom`, reads, writes 0; needs root)")
    c.add_argument("--rom", metavar="FILE", help="check this dump of the GPU's option ROM (with --gpu); never touches the device")
    c.add_argument("--vm", metavar="NAME", help="judge only this libvirt domain in the vm.* checks")
    c.add_argument("--from", dest="from_paths", metavar="PATH", nargs="+",
                   help="check pasted outputs (files or folders: lspci, dmesg, /proc/cmdline, IOMMU groups, ...) instead of this host")
    from doctor.fleetcli import add_check_arguments  # many hosts, --junit, --nfd (doctor/fleetcli.py)

    add_check_arguments(c)


def _add_record(r: argparse.ArgumentParser) -> None:
    r.add_argument("-o", "--output", metavar="PATH",
                   help="folder, a path ending in .tar.gz, or '-' for the .tar.gz on standard output "
                        "(default: gpudoctor-snapshot-<time>.tar.gz)")
    r.add_argument("--no-redact", action="store_true", help="keep hostnames, addresses, serials and UUIDs")
    r.add_argument("--provenance", metavar="TEXT", default="", help="where this snapshot comes from (kept in the manifest)")


def _add_fix(f: argparse.ArgumentParser) -> None:
    f.add_argument("checks", metavar="CHECK_ID", nargs="*", help="fix only these checks")
    f.add_argument("--all", action="store_true", help="every failing or warning check that has a remediation")
    f.add_argument("--gpu", metavar="ADDR", help="the GPU to prepare (default: every non-boot GPU)")
    f.add_argument("--snapshot", metavar="PATH", help="print the plan a recorded host would get (dry run only)")
    f.add_argument("--apply", action="store_true", help="execute the plan (needs root; boot-path and unbind actions need --yes)")
    f.add_argument("--yes", action="store_true", help="agree to actions that touch the boot path or unbind a device")
    f.add_argument("--force", action="store_true", help="also bind devices the host may be using (boot display, disk, NIC)")
    f.add_argument("--advice", action="store_true", help="with --all, also follow advice (e.g. iommu=pt), not only what blocks passthrough")
    f.add_argument("--json", action="store_true", help="print the plan (and outcomes) as a versioned JSON document")
    f.add_argument("--root", metavar="DIR", help=argparse.SUPPRESS)  # apply into a folder (tests)


def _add_undo(u: argparse.ArgumentParser) -> None:
    u.add_argument("id", nargs="?", help="the fix id (see --list)")
    u.add_argument("--list", action="store_true", help="list applied fixes")
    u.add_argument("--force", action="store_true", help="undo even where a file changed after the fix")
    u.add_argument("--root", metavar="DIR", help=argparse.SUPPRESS)


def _add_list(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("--markdown", action="store_true", help="print the table the README carries")


def _add_explain(e: argparse.ArgumentParser) -> None:
    e.add_argument("text", nargs="*", metavar="TEXT", help="the error text; '-' or nothing reads stdin")
    e.add_argument("--json", action="store_true", help="print JSON")


_SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "check": ("run every check on this host or a snapshot", _add_check),
    "record": ("snapshot this host into a replayable, redacted fixture", _add_record),
    "fix": ("plan (default) or apply the remediations of failing checks", _add_fix),
    "undo": ("revert the last (or the named) applied fix", _add_undo),
    "list": ("list the checks", _add_list),
    "explain": ("explain a QEMU/libvirt/kernel error text (exit 0 recognised, 1 not)", _add_explain),
}


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Only the command the command line names gets its options (all of them when it names
    none, for the overall help): building argparse actions for commands that do not run is start-up
    time that `check` should not pay. `vm`'s subcommands live in doctor.vm.cli, imported only for `vm`."""
    p = argparse.ArgumentParser(prog="gpudoctor", description="Preflight doctor for KVM GPU passthrough.",
                                formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"gpudoctor {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    # a known command: only its parser (the others matter only for the overall help and for an unknown command,
    # whose error lists them); otherwise every command
    known = first in _SUBCOMMANDS or first == "vm"
    for name, (text, add) in _SUBCOMMANDS.items():
        if known and name != first:
            continue
        sp = sub.add_parser(name, help=text, formatter_class=_Formatter)
        if first in (name, None):
            add(sp)
    if first in (None, "vm"):
        from doctor.vm.cli import add_parser as add_vm_parser

        add_vm_parser(sub)
    elif not known:
        sub.add_parser("vm", help="create, check and clean up the VM that gets the GPU (see `gpudoctor vm -h`)",
                       formatter_class=_Formatter)
    return p


def _open_host(snapshot: str | None):  # type: ignore[no-untyped-def]
    if not snapshot:
        from doctor.host import LiveHost

        return LiveHost()
    from doctor.snaphost import SnapshotHost

    return SnapshotHost(snapshot)


def cmd_check(args: argparse.Namespace) -> int:
    from doctor.fleetcli import (  # many hosts, --junit, --nfd (doctor/fleetcli.py)
        dispatch,
        single_host_outputs,
    )

    fleet_code = dispatch(args)  # many snapshots or --hosts; else args.snapshot is one path
    if fleet_code is not None:
        return fleet_code
    from doctor.facts import HostFacts
    from doctor.render import dumps_json
    from doctor.runner import run_checks

    rom_dumps = _rom_options(args)
    check_outputs(args)
    if getattr(args, "from_paths", None) and getattr(args, "vm", None):
        from doctor.errors import BadInput

        raise BadInput("--vm works on this host or a snapshot, not on pasted outputs (they show no libvirt domain)")
    if getattr(args, "from_paths", None) and args.snapshot:
        from doctor.errors import BadInput

        raise BadInput("--from and --snapshot cannot be used together: check either pasted outputs or a snapshot")
    host = None if getattr(args, "from_paths", None) else _open_host(args.snapshot)
    try:
        if host is None:  # the third source: pasted text
            from doctor.pasted import load_pasted, run_pasted

            report = run_pasted(load_pasted(list(args.from_paths)), ", ".join(args.from_paths), gpu=args.gpu, only=args.only).report
        else:
            facts = HostFacts(host)
            if getattr(args, "read_rom", False):
                rom_dumps = _read_roms(host, facts, args.gpu)
            facts.rom_dumps = rom_dumps
            options = _vm_option(facts, args.vm) if getattr(args, "vm", None) else {}
            report = run_checks(facts, host.source_info(), gpu=args.gpu, only=args.only, options=options)
        redact = not args.no_redact
        single_host_outputs(args, report)  # --junit, --nfd

        def table() -> None:
            from doctor.textout import render_terminal

            render_terminal(report, sys.stdout, verbose=args.verbose, redact=redact)

        emit_outputs(args, report, "gpudoctor" if host is not None else "gpudoctor-pasted", lambda: dumps_json(report, redact=redact), table)
        return report.exit_code
    finally:
        close = getattr(host, "close", None)
        if close:
            close()


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse bad output options and paths before any check runs (exit 2, one line)."""
    from doctor.errors import BadInput
    from doctor.output import check_target

    out = getattr(args, "output", None)
    if out is not None and not args.json:
        raise BadInput("-o/--output PATH goes with --json (the HTML report has its own path: --html PATH)")
    if args.html == "-" and args.json and out in (None, "-"):
        raise BadInput("--html - and --json both want standard output: give one of them a file (--html PATH or --json -o PATH)")
    if out is not None:
        check_target(out, "-o")
    if args.html and args.html != "-" and os.path.lexists(os.path.dirname(os.path.abspath(args.html))):
        check_target(args.html, "--html")


def emit_outputs(args: argparse.Namespace, report: object, prefix: str, json_text: Callable[[], str],
                 table: Callable[[], None]) -> None:
    """Standard output carries one thing: the JSON document (--json without -o, or -o -), the HTML
    report (--html -) or the table. Files go through `write_output`; what was written is said on stderr."""
    from doctor.output import write_output

    if args.html is not None:
        # only here: the HTML report is pytest-html's (pytest, pluggy); --json and the table need neither,
        # and must run where they are old (Debian's python3-pytest/pluggy in the reboot lab's image)
        from doctor.htmlreport import write_html

        path = args.html or os.path.join("reports", f"{prefix}-{_stamp()}.html")
        write_html(report, path, redact=not args.no_redact)  # type: ignore[arg-type]
        if path != "-":
            print(f"gpudoctor: HTML report written to {path}", file=sys.stderr)
    out = getattr(args, "output", None) or "-"
    if args.json:
        write_output(out, json_text().encode("utf-8"), "-o" if getattr(args, "output", None) else "--json")
        if out != "-":
            print(f"gpudoctor: JSON document written to {out}", file=sys.stderr)
    if args.html != "-" and (not args.json or out != "-"):
        table()


def _vm_option(facts: Any, name: str) -> dict[str, str]:
    """check --vm NAME: the domain must be one libvirt defines here (where the definitions can be read)."""
    from doctor.errors import BadInput, FactUnknown
    from doctor.vm.args import valid_name
    from doctor.vm.domains import inventory

    valid_name(name)
    try:
        names = sorted(d.name for d in inventory(facts).domains)
    except FactUnknown:
        return {"vm": name}  # the vm.* checks say unknown, and how to settle it
    if name not in names:
        raise BadInput(f"--vm {name}: no libvirt domain of that name here (defined: {', '.join(names) or 'none'})")
    return {"vm": name}


def _read_roms(host: Any, facts: Any, gpu: str | None) -> dict[str, tuple[str, Any]]:
    """check --read-rom: the explicit action that reads each selected GPU's option ROM through the live
    Host (write 1, read, write 0) before any check runs; a read that fails is kept as its error."""
    from doctor.errors import FactUnknown, OptionRomUnreadable
    from doctor.host import LiveHost
    from doctor.runner import select_gpus

    out: dict[str, tuple[str, Any]] = {}
    if not isinstance(host, LiveHost):
        return out
    for g in select_gpus(facts, gpu):
        try:
            out[g.address] = (f"/sys/bus/pci/devices/{g.address}/rom", host.read_option_rom(g.address))
        except (FactUnknown, OptionRomUnreadable) as e:
            out[g.address] = (f"/sys/bus/pci/devices/{g.address}/rom", e)
    return out


def _rom_options(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """Check --read-rom / --rom FILE against the other options; the dump's bytes by GPU address."""
    from doctor.errors import BadInput

    read_rom, rom = bool(getattr(args, "read_rom", False)), getattr(args, "rom", None)
    if not read_rom and rom is None:
        return {}
    if read_rom and rom is not None:
        raise BadInput("--read-rom and --rom cannot be used together: read the live ROM or check a dump")
    if getattr(args, "from_paths", None):
        raise BadInput("--read-rom and --rom do not work with --from (pasted outputs): check the dump with --rom on its own")
    if read_rom and args.snapshot:
        raise BadInput("--read-rom reads this host's sysfs, not a snapshot; give the snapshot's ROM dump with --rom FILE")
    if rom is None:
        return {}
    if not args.gpu:
        raise BadInput("--rom needs --gpu ADDR: a dump belongs to one GPU")
    from doctor.facts import normalize_pci_address
    from doctor.optionrom import load_dump

    try:
        addr = normalize_pci_address(args.gpu)
    except ValueError as e:
        raise BadInput(f"--gpu: {e}") from e
    return {addr: (rom, load_dump(rom))}


def cmd_record(args: argparse.Namespace) -> int:
    """A .tar.gz (or `-`: the .tar.gz on standard output, nothing else there) is recorded in a private
    temporary folder, then handed to `write_output`; a folder is recorded by `snapshot.record` itself,
    beside its target. Every bad output path is exit 2 with one line."""
    import tempfile

    from doctor.errors import BadInput
    from doctor.output import check_target, write_output
    from doctor.snapshot import record

    out = args.output or f"gpudoctor-snapshot-{_stamp()}.tar.gz"
    say = sys.stderr if out == "-" else sys.stdout
    redact, red = not args.no_redact, "redacted" if not args.no_redact else "NOT redacted"
    if out == "-" or out.endswith((".tar.gz", ".tgz")):
        check_target(out, "record -o")
        if out != "-" and os.path.lexists(out):
            raise BadInput(f"record -o {out}: already exists; choose a new path (nothing was overwritten)")
        try:
            with tempfile.TemporaryDirectory(prefix="gpudoctor-record-") as d:
                tmp = os.path.join(d, "snapshot.tar.gz")
                info = record(tmp, redact=redact, provenance=args.provenance)
                with open(tmp, "rb") as f:
                    data = f.read()
        except OSError as e:
            raise BadInput(f"record -o {out}: cannot record into a temporary folder: {e.strerror or e}") from e
        write_output(out, data, "record -o", replace=False)
        size = len(data)
    else:
        _check_record_folder(out)
        try:
            info = record(out, redact=redact, provenance=args.provenance)
        except OSError as e:
            raise BadInput(f"record -o {out}: {e.strerror or e}") from e
        size = _size(out)
    where = "standard output" if out == "-" else out
    print(f"gpudoctor: snapshot written to {where} ({size} bytes, {red}, {info['redactions']} value(s) replaced)", file=say)
    if out != "-":
        print(f"check it with: gpudoctor check --snapshot {out}", file=say)
    return 0


def _check_record_folder(out: str) -> None:
    """A snapshot folder: a new name, or an empty real folder, in an existing folder."""
    import stat

    from doctor.errors import BadInput
    from doctor.output import check_target, refusal

    try:
        st = os.lstat(out)
    except FileNotFoundError:
        check_target(out, "record -o")  # the folder above it must exist
        return
    except OSError as e:
        raise BadInput(f"record -o {out}: {e.strerror or e}") from e
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):  # a link, device, FIFO, socket
        raise BadInput(f"record -o {out}: {refusal(out, 'record -o')}")
    if not stat.S_ISDIR(st.st_mode) or os.listdir(out):
        raise BadInput(f"record -o {out}: already exists; choose a new path (nothing was overwritten)")


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if not os.path.islink(os.path.join(d, f)))


def cmd_list(args: argparse.Namespace) -> int:
    from doctor.registry import check_table

    print(check_table(markdown=args.markdown))
    return 0


def cmd_fix(args: argparse.Namespace) -> int:
    from doctor.fixcli import cmd_fix as run

    return run(args)


def cmd_undo(args: argparse.Namespace) -> int:
    from doctor.fixcli import cmd_undo as run

    return run(args)


def cmd_explain(args: argparse.Namespace) -> int:
    from doctor.explain import cmd_explain as run

    return run(args)


def cmd_vm(args: argparse.Namespace) -> int:
    from doctor.vm.cli import cmd_vm as run

    return run(args)


# each command imports what it needs when it runs: `check` stays quick to start
_COMMANDS = {"check": cmd_check, "record": cmd_record, "list": cmd_list, "fix": cmd_fix, "undo": cmd_undo,
             "explain": cmd_explain, "vm": cmd_vm}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.cmd](args)
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
