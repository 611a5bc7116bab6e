#!/usr/bin/env python3
"""Benchmark: gpudoctor check (live, snapshot, --html), record, and virt-host-validate.

Prints the median (and min/max) wall time of N runs of each command, on this
machine, in one run, plus the compressed snapshot size. Not a test: numbers
only. Usage: .venv/bin/python benchmarks/bench_check.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def gpudoctor() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "gpudoctor")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "doctor.cli"]


def timed(argv: list[str], runs: int, setup=None) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        if setup:
            setup()
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, check=False)
        out.append(time.perf_counter() - t0)
    return out


def row(name: str, xs: list[float], target: float | None = None) -> None:
    med = statistics.median(xs)
    tgt = f"  (target ≤ {target:.2f} s: {'ok' if med <= target else 'MISSED'})" if target else ""
    print(f"{name:<34} median {med:6.3f} s   min {min(xs):6.3f}   max {max(xs):6.3f}   n={len(xs)}{tgt}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=9)
    a = ap.parse_args()
    gd = gpudoctor()
    tmp = tempfile.mkdtemp(prefix="gpudoctor-bench-")
    try:
        snap = os.path.join(tmp, "snap.tar.gz")
        subprocess.run([*gd, "record", "-o", snap], check=True, stdout=subprocess.DEVNULL, cwd=REPO)
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, runs per command: {a.runs}")
        row("gpudoctor check (live)", timed([*gd, "check"], a.runs), 0.35)
        row("gpudoctor check --json (live)", timed([*gd, "check", "--json"], a.runs), 0.35)
        row("gpudoctor check --snapshot", timed([*gd, "check", "--snapshot", snap], a.runs), 0.35)
        html = os.path.join(tmp, "r.html")
        row("gpudoctor check --html", timed([*gd, "check", "--html", html], a.runs), 0.5)
        rec = os.path.join(tmp, "rec.tar.gz")

        def clean() -> None:
            if os.path.exists(rec):
                os.remove(rec)

        row("gpudoctor record", timed([*gd, "record", "-o", rec], a.runs, setup=clean), 1.0)
        size = os.path.getsize(rec)
        print(f"{'snapshot size (.tar.gz)':<34} {size / 1024:.1f} KiB  (target ≤ 200 KB: {'ok' if size <= 200_000 else 'MISSED'})")
        vhv = shutil.which("virt-host-validate")
        if vhv:
            xs = timed([vhv, "qemu"], a.runs)
            row("virt-host-validate qemu", xs)
            ys = timed([*gd, "check"], a.runs)
            print(f"{'ratio check / virt-host-validate':<34} {statistics.median(ys) / statistics.median(xs):.2f}")
        else:
            print("virt-host-validate: not installed (apt-get install libvirt-clients)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
