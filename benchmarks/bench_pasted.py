#!/usr/bin/env python3
"""Benchmark: `gpudoctor check --from` on a 20-file pasted set (not a test).

Builds the set from fixtures/pasted (the first 20 input files), then times
N runs of the whole CLI (process start included) and of the in-process work
(read + recognise + run the checks on every view). Prints median/min/max.
Target: median <= 0.3 s on 2 cores. Usage: .venv/bin/python benchmarks/bench_pasted.py [-n RUNS]
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
sys.path.insert(0, REPO)


def twenty_files(dst: str) -> list[str]:
    corpus = os.path.join(REPO, "fixtures", "pasted")
    out = []
    for slug in sorted(os.listdir(corpus)):
        inp = os.path.join(corpus, slug, "input")
        if not os.path.isdir(inp):
            continue
        for n in sorted(os.listdir(inp)):
            p = os.path.join(dst, f"{len(out):02d}-{slug}-{n}")
            shutil.copy(os.path.join(inp, n), p)
            out.append(p)
            if len(out) == 20:
                return out
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=7)
    a = ap.parse_args()
    from doctor import pasted as P

    with tempfile.TemporaryDirectory() as d:
        files = twenty_files(d)
        inproc = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            pf = P.load_pasted([d])
            run = P.run_pasted(pf, d)
            P.to_json(run)
            inproc.append(time.perf_counter() - t0)
        exe = [sys.executable, "-m", "doctor.cli", "check", "--from", d, "--json"]
        cli = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run(exe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, check=False)
            cli.append(time.perf_counter() - t0)
    for name, xs in (("in-process (read, recognise, all views, JSON)", inproc), ("CLI, whole process", cli)):
        med = statistics.median(xs)
        flag = "ok" if med <= 0.3 else "over target"
        print(f"{name:<48} median {med:.3f}s  min {min(xs):.3f}s  max {max(xs):.3f}s  ({len(files)} files, {a.runs} runs; target 0.3s: {flag})")
    print(f"cores available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
