#!/usr/bin/env python3
"""Benchmark: `gpudoctor check` and `check --json` against the anchor, `virt-host-validate qemu`.

One interleaved run (anchor, --json, text, anchor, ...) so that both see the same machine load;
CPU time (user+system of the child, from getrusage) and wall time per run; medians and the ratio
to the anchor printed side by side, with issue 13's targets (--json <= 4x, text <= 6x). The code is
byte-compiled first and the children may use the bytecode (as an installed package does: pip
compiles at install time), whatever PYTHONDONTWRITEBYTECODE says here. Not a test: figures only.

    .venv/bin/python benchmarks/bench_startup.py [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def gpudoctor() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "gpudoctor")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "doctor.cli"]


def one(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=env, check=False)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--rounds", type=int, default=15)
    a = ap.parse_args()
    anchor = shutil.which("virt-host-validate")
    if anchor is None:
        print("virt-host-validate not found (apt install libvirt-clients): no anchor, no figures", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for d in ("doctor", "checks", "remediations"):
        compileall.compile_dir(os.path.join(REPO, d), quiet=1)
    gd = gpudoctor()
    cmds = {"virt-host-validate qemu": [anchor, "qemu"], "gpudoctor check --json": [*gd, "check", "--json"],
            "gpudoctor check (piped)": [*gd, "check"]}
    for argv in cmds.values():  # warm the page cache
        one(argv, env)
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(a.rounds):
        for k, argv in cmds.items():
            got[k].append(one(argv, env))
    base_cpu = statistics.median(c for c, _ in got["virt-host-validate qemu"])
    base_wall = statistics.median(w for _, w in got["virt-host-validate qemu"])
    targets = {"gpudoctor check --json": 4.0, "gpudoctor check (piped)": 6.0}
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {a.rounds} interleaved rounds")
    print(f"{'command':<26} {'CPU median':>11} {'x anchor':>9} {'wall median':>12} {'x anchor':>9}  target")
    for k, xs in got.items():
        cpu = statistics.median(c for c, _ in xs)
        wall = statistics.median(w for _, w in xs)
        t = targets.get(k)
        verdict = "" if t is None else f"<= {t:.0f}x: " + ("met" if cpu / base_cpu <= t and wall / base_wall <= t else "MISSED")
        print(f"{k:<26} {cpu * 1000:9.1f}ms {cpu / base_cpu:8.1f}x {wall * 1000:10.1f}ms {wall / base_wall:8.1f}x  {verdict}")
    py = [one([sys.executable, "-c", "pass"], env) for _ in range(a.rounds)]
    print(f"{'(python -c pass)':<26} {statistics.median(c for c, _ in py) * 1000:9.1f}ms "
          f"{statistics.median(c for c, _ in py) / base_cpu:8.1f}x {statistics.median(w for _, w in py) * 1000:10.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
