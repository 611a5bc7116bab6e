#!/usr/bin/env python3
"""Benchmark: `gpudoctor fix --all --snapshot` (plan time) on the recorded hosts, median of N runs,
in-process and as a whole command. Target: plan ≤ 0.4 s on 2 cores. Apply + re-check times in
the lab are printed by the lab tests (`pytest -m lab tests/lab/test_lab_fix.py --durations=0`).

    .venv/bin/python benchmarks/bench_fix.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FIXTURES = ["seed-partial", "seed-before", "distro-fedora-bls", "distro-arch-grub", "lab-intel-partial"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=9)
    a = ap.parse_args()
    from doctor.facts import HostFacts
    from doctor.fixer import build_plan
    from doctor.runner import run_checks
    from doctor.snapshot import SnapshotHost

    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, runs: {a.runs}")
    for name in FIXTURES:
        snap = os.path.join(REPO, "fixtures", name)
        if not os.path.isdir(snap):
            continue
        xs = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            h = SnapshotHost(snap)
            rep = run_checks(HostFacts(h), h.source_info())
            plan = build_plan(rep, h)
            xs.append(time.perf_counter() - t0)
        ys = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "doctor.cli", "fix", "--all", "--snapshot", snap], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            ys.append(time.perf_counter() - t0)
        med = statistics.median(ys)
        print(f"{name:<22} {len(plan.actions)} actions   in-process median {statistics.median(xs):.3f} s   "
              f"command median {med:.3f} s  (target ≤ 0.40 s: {'ok' if med <= 0.4 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
