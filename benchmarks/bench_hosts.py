#!/usr/bin/env python3
"""Benchmark: `check --hosts ansible://all` wall time for N local targets (aliases of 127.0.0.1
behind a throwaway sshd, tests/sshd.py), with Ansible forks = N; median of R runs for each N,
plus the time per host. Needs sshd (scripts/test.sh installs it) and ansible-core (the fleet extra).
Usage: .venv/bin/python benchmarks/bench_hosts.py [-n 1,4,8] [-r ROUNDS]
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
sys.path.insert(0, os.path.join(REPO, "tests"))
from sshd import start_sshd  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--hosts", default="1,4,8", help="comma-separated numbers of targets")
    ap.add_argument("-r", "--rounds", type=int, default=3)
    a = ap.parse_args()
    counts = [int(x) for x in a.hosts.split(",")]
    tmp = tempfile.mkdtemp(prefix="gpudoctor-bench-hosts-")
    sshd = start_sshd(tmp)
    try:
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; sshd on 127.0.0.1:{sshd.port}, "
              f"{a.rounds} rounds")
        times: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(a.rounds):
            for n in counts:  # interleaved
                inv = os.path.join(tmp, f"inv{n}.ini")
                with open(inv, "w", encoding="utf-8") as f:
                    f.write(sshd.inventory([f"host{i:02d}" for i in range(n)]))
                t0 = time.perf_counter()
                p = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--hosts", "ansible://all", "-i", inv,
                                    "--jobs", str(n), "--json"], capture_output=True, text=True, cwd=REPO, check=False)
                times[n].append(time.perf_counter() - t0)
                if p.returncode not in (0, 1):
                    sys.exit(f"bench_hosts: exit {p.returncode}: {p.stderr[-300:]}")
        for n in counts:
            med = statistics.median(times[n])
            print(f"--hosts, {n:>2} target(s), --jobs {n:<2}  median {med:6.2f} s  ({med / n:5.2f} s/host)  "
                  f"min {min(times[n]):6.2f}  max {max(times[n]):6.2f}")
    finally:
        sshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
