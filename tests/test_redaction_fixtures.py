"""A redacted recording of every existing fixture gives the verdicts the fixture gives:
redaction changes values, never facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctor.facts import HostFacts
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost, record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NAMES = sorted(p.parent.name for p in FIXTURES.glob("*/expected.json"))


def verdicts(path: str) -> dict[tuple[str, str | None], str]:
    host = SnapshotHost(path)
    try:
        report = run_checks(HostFacts(host), host.source_info())
    finally:
        host.close()
    return {(sr.result.check_id, sr.subject): sr.result.status.value for sr in report.results}


@pytest.mark.parametrize("name", NAMES)
def test_redacted_rerecording_keeps_every_verdict(name: str, tmp_path: Path) -> None:
    src = FIXTURES / name
    host = SnapshotHost(str(src))
    out = tmp_path / "again.tar.gz"
    try:
        record(str(out), host, redact=True)
    finally:
        host.close()
    before, after = verdicts(str(src)), verdicts(str(out))
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    expected = json.loads((src / "expected.json").read_text())
    gpu = expected.get("gpu")
    for cid, status in expected["verdicts"].items():
        got = after.get((cid, None), after.get((cid, gpu)))
        assert got == status, f"{cid}: {got} != {status}"
