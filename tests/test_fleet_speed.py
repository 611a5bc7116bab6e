"""What makes many snapshots fast in one process may not change any verdict or redaction: the
coverage of a snapshot's captured patterns and what a string names by context are remembered
across snapshots and Redactors (doctor/snapshot.py, doctor/redact.py); each host's document in a
fleet equals a single check of it, in full (evidence and fixes included), whatever came before."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from doctor.cli import main
from doctor.redact import Redactor
from doctor.snapshot import SnapshotHost

FIX = Path(__file__).resolve().parent.parent / "fixtures"
NAMES = ["lab-intel-partial", "dev-machine", "lab-intel-shared-group", "lab-amd-partial"]


def _doc(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    main(["check", *args, "--json"])
    return json.loads(capsys.readouterr().out)


def _timeless(x: object) -> object:
    """x without its timings (duration_s): the one thing that differs between two runs."""
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if k != "duration_s"}
    if isinstance(x, list):
        return [_timeless(v) for v in x]
    return x


def _body(check: dict) -> object:  # type: ignore[type-arg]
    return _timeless([check["results"], check["summary"]])


def test_every_host_of_a_fleet_equals_its_single_check_in_full(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    paths = []
    for i, name in enumerate(NAMES * 2):  # each fixture twice, as an archive and as a folder
        if not (FIX / name).is_dir():
            pytest.fail(f"fixture {name} missing")
        if i % 2:
            p = tmp_path / f"{i}-{name}.tar.gz"
            with tarfile.open(p, "w:gz") as tf:
                tf.add(FIX / name, arcname="snapshot")
        else:
            p = Path(shutil.copytree(FIX / name, tmp_path / f"{i}-{name}", symlinks=True))
        paths.append(str(p))
    fleet = _doc(capsys, "--snapshot", *paths)
    assert [h["name"] for h in fleet["hosts"]] == paths
    for h in fleet["hosts"]:
        single = _doc(capsys, "--snapshot", h["name"])
        assert _body(h["check"]) == _body(single), h["name"]
    # the same fixture as a folder and as an archive, early and late in the run: the same verdicts
    for i, name in enumerate(NAMES):
        a, b = fleet["hosts"][i], fleet["hosts"][i + len(NAMES)]
        assert _body(a["check"]) == _body(b["check"]), name


def test_what_a_string_names_is_learnt_by_every_redactor_not_only_the_first() -> None:
    s = "Serial Number: QX7Z91 on /home/alice/x, Set hostname to <rack7-node3>"
    for _ in range(2):
        red = Redactor()
        red.learn(s)
        out = red.text("QX7Z91 rack7-node3 alice")
        assert "QX7Z91" not in out and "rack7-node3" not in out and "alice" not in out, out
    # a string with no shape of its own still loses the values learnt elsewhere
    red = Redactor(["rack7-node3"])
    assert red.text("plain words about rack7-node3") == "plain words about host-1"
    assert Redactor(enabled=False).text("Serial Number: QX7Z91") == "Serial Number: QX7Z91"


def test_coverage_follows_the_captured_patterns_even_when_changed() -> None:
    snap = SnapshotHost(str(FIX / "lab-intel-partial"))
    path = "/sys/bus/pci/devices/0000:01:00.0/boot_vga"
    assert snap.covered(path)
    other = SnapshotHost(str(FIX / "lab-intel-partial"))
    other.captured = [p for p in other.captured if p != "/sys/bus/pci/devices/*/boot_vga"]
    assert not other.covered(path) and snap.covered(path)  # one snapshot's change is not another's
    snap.captured.clear()  # changed in place
    assert not snap.covered(path)
    with pytest.raises(ValueError):
        other.covered("relative/path")
