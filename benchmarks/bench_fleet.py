#!/usr/bin/env python3
"""Benchmark: snapshots judged per second, one process for all (`check --snapshot A B C ... --json`)
against a process per snapshot (`check --snapshot A --json`, N times), interleaved round by round.

The snapshots are N copies of a recorded fixture packed as .tar.gz. Prints the median rate of each
(wall clock, and per CPU-second of the gpudoctor processes) and the target (>= 20 snapshots/s in one process). Not a test: numbers only.
Usage: .venv/bin/python benchmarks/bench_fleet.py [-n SNAPSHOTS] [-r ROUNDS] [--fixture NAME]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGET = 20.0


def gpudoctor() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "gpudoctor")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "doctor.cli"]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(argv: list[str], cwd: str = REPO) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one gpudoctor process."""
    c0, t0 = _cpu(), time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, check=False)
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    if p.returncode not in (0, 1):
        sys.exit(f"bench_fleet: {' '.join(argv[:4])} ... exited {p.returncode}: {p.stderr.decode()[-300:]}")
    return dt, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--snapshots", type=int, default=20)
    ap.add_argument("-r", "--rounds", type=int, default=5)
    ap.add_argument("--fixture", default="lab-intel-partial")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another checkout (e.g. `git archive OLD | tar -x -C DIR`): its one-process run too, "
                         "interleaved round by round, printed beside this one's (python -m doctor.cli run in DIR)")
    a = ap.parse_args()
    if a.baseline and not os.path.isfile(os.path.join(a.baseline, "doctor", "cli.py")):
        sys.exit(f"bench_fleet: --baseline {a.baseline}: no doctor/cli.py there")
    gd = gpudoctor()
    tmp = tempfile.mkdtemp(prefix="gpudoctor-bench-fleet-")
    try:
        src = os.path.join(REPO, "fixtures", a.fixture)
        paths = []
        for i in range(a.snapshots):
            p = os.path.join(tmp, f"host{i:03d}.tar.gz")
            with tarfile.open(p, "w:gz") as tf:
                tf.add(src, arcname="snapshot")
            paths.append(p)
        one, per, one_cpu, per_cpu, base, base_cpu = [], [], [], [], [], []
        for _ in range(a.rounds):  # interleaved: both see the same machine load
            if a.baseline:
                wall, cpu = run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", *paths, "--json"],
                                os.path.abspath(a.baseline))
                base.append(a.snapshots / wall)
                base_cpu.append(a.snapshots / cpu)
            wall, cpu = run([*gd, "check", "--snapshot", *paths, "--json"])
            one.append(a.snapshots / wall)
            one_cpu.append(a.snapshots / cpu)
            each = [run([*gd, "check", "--snapshot", p, "--json"]) for p in paths]
            per.append(a.snapshots / sum(w for w, _ in each))
            per_cpu.append(a.snapshots / sum(c for _, c in each))
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; {a.snapshots} archives of "
              f"fixtures/{a.fixture} ({os.path.getsize(paths[0]) / 1024:.1f} KiB each), {a.rounds} rounds")
        rows = [("one process (--snapshot A B C ...)", one, one_cpu), ("a process per snapshot", per, per_cpu)]
        if a.baseline:
            rows.insert(0, (f"baseline {os.path.basename(os.path.abspath(a.baseline))}, one process", base, base_cpu))
        for name, xs, cs in rows:
            print(f"{name:<38} median {statistics.median(xs):6.1f} snapshots/s   min {min(xs):6.1f}   max {max(xs):6.1f}"
                  f"   (per CPU-second: median {statistics.median(cs):6.1f})")
        print(f"one process, wall s per round: {', '.join(f'{a.snapshots / x:.2f}' for x in one)}; "
              f"CPU s: {', '.join(f'{a.snapshots / c:.2f}' for c in one_cpu)}; load average {os.getloadavg()[0]:.2f}")
        med = statistics.median(one)
        label = f"target one process >= {TARGET:.0f}/s"
        print(f"{label:<38} {'ok' if med >= TARGET else 'MISSED'}"
              f"  (speed-up {med / statistics.median(per):.1f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
