"""python -m lab {list,fetch-kernel,boot SCENARIO [-- CMD...],qemu-cmd SCENARIO}"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from . import cache
from .errors import LabError
from .scenarios import SCENARIOS, get
from .vm import Lab, qemu_command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(prog="python -m lab", description="gpudoctor's QEMU lab")
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list the scenarios")
    f = sub.add_parser("fetch-kernel", help="download and unpack the guest kernel into the cache")
    f.add_argument("--force", action="store_true")
    sub.add_parser("build-initrd", help="build the initramfs (done automatically on boot)")
    b = sub.add_parser("boot", help="boot SCENARIO, run CMD (after --) in the guest, print its output")
    b.add_argument("scenario")
    b.add_argument("--timeout", type=float, default=120, help="boot timeout (s)")
    b.add_argument("--cmd-timeout", type=float, default=300, help="command timeout (s)")
    b.add_argument("--no-setup", action="store_true", help="skip the scenario's vfio-pci binding")
    b.add_argument("--console", action="store_true", help="print the guest console log at the end")
    q = sub.add_parser("qemu-cmd", help="print the QEMU command line of a scenario")
    q.add_argument("scenario")
    a = ap.parse_args(argv)
    try:
        if a.action == "list":
            for s in SCENARIOS.values():
                print(f"{s.name:24} {s.description}")
            return 0
        if a.action == "fetch-kernel":
            cache.fetch_kernel(force=a.force)
            return 0
        if a.action == "build-initrd":
            print(cache.build_initramfs(cache.load_kernel()))
            return 0
        if a.action == "qemu-cmd":
            k = cache.load_kernel()
            from pathlib import Path

            print(shlex.join(qemu_command(get(a.scenario), k, Path("INITRD"), Path("WORKDIR"))))
            return 0
        t0 = time.monotonic()
        with Lab.boot(a.scenario, timeout=a.timeout, setup=not a.no_setup) as g:
            rc = 0
            if cmd:
                r = g.run(cmd if len(cmd) > 1 else cmd[0], timeout=a.cmd_timeout)
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                rc = r.rc
            else:
                print(f"guest {a.scenario} is up: {g.ready.get('uname')}; nothing to run (give -- CMD)")
            if a.console:
                print(g.console())
            print(f"[lab] total {time.monotonic() - t0:.1f}s", file=sys.stderr)
            return rc
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
