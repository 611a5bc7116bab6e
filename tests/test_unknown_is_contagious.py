"""Unknown is contagious: taking evidence away never decides a verdict.

For recorded snapshots, each captured pattern (and each recorded command) is taken out in turn, as
if the recording had not covered it, and the whole suite runs again in-process. A verdict may stay
as it was or become UNKNOWN; it never moves to another decided status (UNKNOWN -> PASS/FAIL/N/A,
PASS -> FAIL, ...), and no check crashes (ERROR) because of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doctor.errors import NotCaptured
from doctor.facts import HostFacts
from doctor.host import CommandResult, Host
from doctor.model import SourceInfo, Status
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost, _covers

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SNAPSHOTS = ("dev-machine", "seed-partial", "distro-debian-grub", "distro-fedora-bls", "lab-intel-partial")


class Without(Host):
    """A snapshot replayed as if one captured pattern (or one command) had not been recorded."""

    def __init__(self, snap: SnapshotHost, pattern: str | None = None, command: tuple[str, ...] | None = None) -> None:
        self.snap = snap
        self.pattern = pattern
        self.command = command
        self.others = [p for p in snap.captured if p != pattern]

    def _check(self, path: str, what: str) -> None:
        if self.pattern is None or not _covers(self.pattern, path):
            return
        if any(_covers(p, path) for p in self.others):
            return
        raise NotCaptured(f"{what} {path} (taken out by the test)")

    def read_bytes(self, path: str) -> bytes:
        self._check(path, "file")
        return self.snap.read_bytes(path)

    def exists(self, path: str) -> bool:
        self._check(path, "whether exists")
        return self.snap.exists(path)

    def is_dir(self, path: str) -> bool:
        self._check(path, "whether a directory")
        return self.snap.is_dir(path)

    def is_link(self, path: str) -> bool:
        self._check(path, "whether a link")
        return self.snap.is_link(path)

    def listdir(self, path: str) -> list[str]:
        self._check(path, "directory listing of")
        return self.snap.listdir(path)

    def readlink(self, path: str) -> str:
        self._check(path, "link")
        return self.snap.readlink(path)

    def run(self, argv: list[str] | tuple[str, ...], timeout: float = 10.0) -> CommandResult:
        if self.command is not None and tuple(argv) == self.command:
            raise NotCaptured(f"output of `{' '.join(argv)}` (taken out by the test)")
        return self.snap.run(argv, timeout)

    def source_info(self) -> SourceInfo:
        return self.snap.source_info()


def _verdicts(host: Host) -> dict[str, tuple[Status, str]]:
    """check id (and GPU) -> (status, summary); a per-GPU check with no GPU to run on is keyed by id alone."""
    report = run_checks(HostFacts(host), host.source_info())
    out: dict[str, tuple[Status, str]] = {}
    for r in report.results:
        key = r.result.check_id if r.subject is None else f"{r.result.check_id}@{r.subject}"
        out[key] = (r.result.status, r.result.summary)
    return out


def _moves(before: dict[str, tuple[Status, str]], after: dict[str, tuple[Status, str]]) -> list[str]:
    bad = []
    for key, (st, _summary) in before.items():
        now = after.get(key)
        if now is None:  # the subject went away: the GPUs themselves became unknown
            now = after.get(key.split("@", 1)[0])
        if now is None:
            bad.append(f"{key}: {st.value} -> gone")
            continue
        if now[0] == Status.ERROR:
            bad.append(f"{key}: {st.value} -> error ({now[1]})")
        elif now[0] != st and now[0] != Status.UNKNOWN:
            bad.append(f"{key}: {st.value} -> {now[0].value} ({now[1]})")
    for key, (st, summary) in after.items():
        if key not in before and st not in (Status.UNKNOWN,):
            bad.append(f"{key}: (not run) -> {st.value} ({summary})")
    return bad


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_taking_out_any_captured_pattern_never_decides_a_verdict(name: str) -> None:
    path = FIXTURES / name
    assert (path / "manifest.json").is_file(), f"{name} is not a recorded snapshot"
    snap = SnapshotHost(os.fspath(path))
    before = _verdicts(snap)
    assert before, name
    cases: list[tuple[str, Without]] = [(p, Without(snap, pattern=p)) for p in dict.fromkeys(snap.captured)]
    cases += [(f"`{' '.join(argv)}`", Without(snap, command=argv)) for argv in snap.commands]
    assert len(cases) > 20, f"{name}: too few captured patterns to prove anything"
    failures = []
    for label, host in cases:
        bad = _moves(before, _verdicts(host))
        failures += [f"without {label}: {b}" for b in bad]
    assert not failures, f"{name}:\n" + "\n".join(failures)


def test_the_harness_sees_a_decided_verdict_move() -> None:
    """The comparison itself can fail: a verdict that moves from UNKNOWN to PASS is caught."""
    before = {"x.y": (Status.UNKNOWN, "unknown: z"), "a.b": (Status.PASS, "ok")}
    assert _moves(before, {"x.y": (Status.PASS, "ok"), "a.b": (Status.PASS, "ok")}) == ["x.y: unknown -> pass (ok)"]
    assert _moves(before, {"x.y": (Status.UNKNOWN, "u"), "a.b": (Status.UNKNOWN, "u")}) == []
    assert _moves(before, {"x.y": (Status.UNKNOWN, "u"), "a.b": (Status.NOT_APPLICABLE, "n/a")})
