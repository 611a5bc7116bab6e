"""The disk lab's guest runner (lab/disk_runner.py) run here, outside any image: its steps, their
timeouts and what it writes back are the same code the image runs at each boot."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lab import disk, disk_runner


def test_image_carries_the_runner_module_verbatim():
    assert disk.runner_text() == Path(disk_runner.__file__).read_text()
    assert disk.runner_text().startswith("#!/usr/bin/python3\n")


def test_host_and_guest_share_the_runner_constants():
    assert (disk.MARK, disk.GUEST_SHARE, disk.GUEST_SRC) == (disk_runner.MARK, disk_runner.SHARE, disk_runner.SRC)


def test_image_key_covers_the_runner(monkeypatch):
    before = disk.image_key("bios"), disk.image_key("uefi")
    monkeypatch.setattr(disk, "runner_text", lambda: disk_runner.__doc__ or "")
    after = disk.image_key("bios"), disk.image_key("uefi")
    assert before[0] != after[0] and before[1] != after[1]


def test_step_output_and_exit_code_are_kept(tmp_path):
    res = disk_runner.run_step({"name": "s", "sh": "echo out; echo err >&2; exit 3"}, str(tmp_path), 0, {})
    assert (res["name"], res["rc"], res["timed_out"]) == ("s", 3, False)
    assert (tmp_path / "0.out").read_text() == "out\n"
    assert (tmp_path / "0.err").read_text() == "err\n"


def test_step_past_its_timeout_is_killed_with_its_children(tmp_path):
    t0 = time.monotonic()
    res = disk_runner.run_step({"sh": "sleep 30 & sleep 30", "timeout": 0.5}, str(tmp_path), 1, {})
    assert res["timed_out"] is True
    assert res["rc"] == -9
    assert time.monotonic() - t0 < 10


def test_step_that_cannot_start_is_an_error_not_a_crash(tmp_path):
    res = disk_runner.run_step({"name": "no-sh"}, str(tmp_path), 2, {})
    assert res["rc"] == -1 and "KeyError" in res["error"]


def test_results_are_json_the_host_reads(tmp_path):
    disk_runner.write_json(str(tmp_path / "r.json"), {"rc": 0, "duration": 1.5}, indent=1)
    assert json.loads((tmp_path / "r.json").read_text()) == {"rc": 0, "duration": 1.5}
