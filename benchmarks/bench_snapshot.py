#!/usr/bin/env python3
"""Benchmark: replaying a .tar.gz snapshot read into memory (doctor.archive) against the old way,
extracting it to a temporary folder first (tarfile extractall, then reading the folder).

The snapshot is fixtures/<name> (default dev-machine, as `gpudoctor record` writes it: one top
folder `snapshot/`) packed into a .tar.gz in a temporary folder. Runs are interleaved (memory,
extract, memory, ...) so a busy machine slows both alike; medians of CPU time (process) and wall
time, for opening alone and for opening plus every check.

    .venv/bin/python benchmarks/bench_snapshot.py [-n RUNS] [--fixture NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def pack(fixture: str, out: str) -> str:
    path = os.path.join(out, f"{os.path.basename(fixture)}.tar.gz")
    with tarfile.open(path, "w:gz") as tf:
        tf.add(fixture, arcname="snapshot")
    return path


def extract(archive: str, work: str) -> str:
    """The old reader: every member written to disk under a temporary folder."""
    dest = tempfile.mkdtemp(prefix="bench-extract-", dir=work)
    with tarfile.open(archive, "r:*") as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="tar")
        else:
            tf.extractall(dest)  # noqa: S202 - our own archive of a fixture
    return os.path.join(dest, "snapshot")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=15)
    ap.add_argument("--fixture", default="dev-machine")
    a = ap.parse_args()
    from doctor.facts import HostFacts
    from doctor.runner import run_checks
    from doctor.snapshot import SnapshotHost

    fixture = os.path.join(REPO, "fixtures", a.fixture)
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as work:
        archive = pack(fixture, work)

        def memory(checks: bool) -> None:
            h = SnapshotHost(archive)
            if checks:
                run_checks(HostFacts(h), h.source_info())

        def extracted(checks: bool) -> None:
            folder = extract(archive, work)
            try:
                h = SnapshotHost(folder)
                if checks:
                    run_checks(HostFacts(h), h.source_info())
            finally:
                shutil.rmtree(os.path.dirname(folder))

        ways: list[tuple[str, Callable[[bool], None]]] = [("in memory", memory), ("extract to tmp", extracted)]
        with tarfile.open(archive) as tf:
            members = len(tf.getmembers())
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, runs: {a.runs}, "
              f"snapshot: {a.fixture} ({members} members, {os.path.getsize(archive)} bytes .tar.gz)")
        for checks in (False, True):
            cpu: dict[str, list[float]] = {n: [] for n, _ in ways}
            wall: dict[str, list[float]] = {n: [] for n, _ in ways}
            for f in ways:  # warm-up: imports, page cache
                f[1](checks)
            for _ in range(a.runs):
                for name, f in ways:
                    c0, w0 = time.process_time(), time.perf_counter()
                    f(checks)
                    cpu[name].append(time.process_time() - c0)
                    wall[name].append(time.perf_counter() - w0)
            what = "open + every check" if checks else "open only"
            print(f"{what}:")
            for name, _ in ways:
                print(f"  {name:<15} CPU median {statistics.median(cpu[name]) * 1000:7.1f} ms   "
                      f"wall median {statistics.median(wall[name]) * 1000:7.1f} ms")
            m, x = (statistics.median(wall[n]) for n, _ in ways)
            print(f"  in memory saves {(x - m) * 1000:.1f} ms of wall per replay ({x / m:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
