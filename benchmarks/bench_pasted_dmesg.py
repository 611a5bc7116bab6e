#!/usr/bin/env python3
"""Benchmark: `gpudoctor check --from` on a long kernel log plus `lspci -Dnnk` (not a test).

The log is the recorded boot log of fixtures/dev-machine (a real `dmesg`), its post-boot part repeated with
rising timestamps up to N lines (a host that ran for weeks); the lspci is fixtures/seed-before's `lspci -Dnnk`.
Each size runs the whole CLI (`python -m doctor.cli check --from DIR --json`) R times; the CPU time is the child's
user+sys (resource.getrusage), the wall time includes process start. Prints the median of each, and the curve over
sizes. Target (issue 14): 100,000 lines <= 0.8 s CPU on 2 cores.

Usage: .venv/bin/python benchmarks/bench_pasted_dmesg.py [-n RUNS] [--lines 1000,10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGET_LINES = 100_000
TARGET_CPU_S = 0.8


def recorded(fixture: str, argv0: str) -> str:
    m = json.load(open(os.path.join(REPO, "fixtures", fixture, "manifest.json")))
    return next(c["stdout"] for c in m["commands"] if c["argv"][0] == argv0)


def long_dmesg(n: int) -> str:
    boot = recorded("dev-machine", "dmesg").splitlines()
    later = [ln.split("] ", 1)[1] for ln in boot[len(boot) // 2:] if "] " in ln] or ["audit: type=1400"]
    out = boot[:n]
    t = 100.0
    i = 0
    while len(out) < n:
        t += 0.001
        out.append(f"[{t:12.6f}] {later[i % len(later)]}")
        i += 1
    return "\n".join(out) + "\n"


def cpu_of_child(cmd: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 1):
        raise SystemExit(f"gpudoctor exited {p.returncode}: {p.stderr.decode()[-300:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--lines", default="1000,10000,100000,1000000")
    a = ap.parse_args()
    sizes = [int(x) for x in a.lines.split(",") if x.strip()]
    lspci = recorded("seed-before", "lspci")
    ok = True
    with tempfile.TemporaryDirectory() as d:
        print(f"{'lines':>9} {'bytes':>10} {'median CPU':>11} {'median wall':>12}   ({a.runs} runs each)")
        for n in sizes:
            sub = os.path.join(d, str(n))
            os.mkdir(sub)
            with open(os.path.join(sub, "dmesg.txt"), "w") as f:
                f.write(long_dmesg(n))
            with open(os.path.join(sub, "lspci-nnk.txt"), "w") as f:
                f.write("$ lspci -Dnnk\n" + lspci)
            cmd = [sys.executable, "-m", "doctor.cli", "check", "--from", sub, "--json"]
            cpus, walls = [], []
            for _ in range(a.runs):
                c, w = cpu_of_child(cmd)
                cpus.append(c)
                walls.append(w)
            size = os.path.getsize(os.path.join(sub, "dmesg.txt"))
            mc, mw = statistics.median(cpus), statistics.median(walls)
            flag = ""
            if n == TARGET_LINES:
                flag = f"  target <= {TARGET_CPU_S} s CPU: {'ok' if mc <= TARGET_CPU_S else 'OVER'}"
                ok = mc <= TARGET_CPU_S
            print(f"{n:>9} {size:>10} {mc:>10.3f}s {mw:>11.3f}s{flag}")
    print(f"cores available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
