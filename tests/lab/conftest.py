"""Fixtures for the lab tests (tests marked ``lab``): real kernels booted in QEMU (TCG).

One boot per scenario for the whole session: tests get the ``guest`` fixture by indirect
parametrization with the scenario name; the tests are grouped by scenario and a session-wide
pool keeps one guest alive at a time. Nothing here skips: a missing kernel cache or
QEMU makes the tests fail with a message that says to run lab/setup.sh.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import Lab, LabError, LabSetupError  # noqa: E402
from lab.proc import BOOT_STALLS  # noqa: E402

BOOT_TIMEOUT = 180
_boot_times: dict[str, float] = {}
_reports: dict[str, dict] = {}


def _say(config, line: str) -> None:
    """A line on the terminal even while output is captured."""
    tr = config.pluginmanager.getplugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")
    if tr is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            tr.write_line(line)
    else:
        tr.write_line(line)


def lab_fail(e: Exception) -> None:
    hint = "" if "setup.sh" in str(e) else "\n(if the lab is not set up: sudo bash lab/setup.sh)"
    pytest.fail(f"{type(e).__name__}: {e}{hint}", pytrace=False)


@pytest.fixture(scope="session")
def lab_ready() -> None:
    """Fail (never skip) when the lab is not set up."""
    problem = None
    try:
        Lab.check_setup()
    except LabSetupError as e:
        problem = e
    if problem is not None:
        lab_fail(problem)


class _Pool:
    """At most one guest alive: booted on first use, reused while tests ask for the same scenario.

    (Not pytest's parametrized session fixtures: their grouping keys on the parameter's index in
    each parametrize() list, so subsets of scenarios would reboot guests.) Tests are sorted by
    scenario in pytest_collection_modifyitems, so each scenario boots once per session."""

    def __init__(self, config) -> None:
        self.config = config
        self.name: str | None = None
        self.guest = None
        self.failed: dict[str, str] = {}

    def get(self, name: str):
        if name in self.failed:
            pytest.fail(f"{name} did not boot earlier in this session:\n{self.failed[name]}", pytrace=False)
        if name == self.name and self.guest is not None and self.guest.alive:
            return self.guest
        self.close()
        t0 = time.monotonic()
        problem = None
        try:
            g = Lab.boot(name, timeout=BOOT_TIMEOUT)
        except LabError as e:
            self.failed[name] = f"{type(e).__name__}: {e}"
            problem = e
        if problem is not None:
            lab_fail(problem)
        self.name, self.guest = name, g
        _boot_times[name] = g.boot_time or 0.0
        _say(
            self.config,
            f"[lab] {name}: booted in {g.boot_time:.1f}s, ready (setup included) in {time.monotonic() - t0:.1f}s",
        )
        return g

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
        self.name = self.guest = None


@pytest.fixture(scope="session")
def lab_pool(request, lab_ready):
    pool = _Pool(request.config)
    yield pool
    pool.close()


@pytest.fixture
def guest(request, lab_pool):
    """The booted guest for the scenario given by indirect parametrization:
    ``@pytest.mark.parametrize("guest", ["intel-partial"], indirect=True)``."""
    return lab_pool.get(request.param)


def _scenario_of(item) -> str | None:
    cs = getattr(item, "callspec", None)
    return cs.params.get("guest") if cs is not None else None


def pytest_collection_modifyitems(session, config, items):
    """Group tests that use the ``guest`` fixture by scenario (stable; other items stay put)."""
    from lab import SCENARIOS

    order = {name: i for i, name in enumerate(SCENARIOS)}
    slots = [i for i, it in enumerate(items) if _scenario_of(it) is not None]
    grouped = sorted((items[i] for i in slots), key=lambda it: order.get(_scenario_of(it), len(order)))
    for i, it in zip(slots, grouped, strict=True):
        items[i] = it


@pytest.fixture
def doctor(guest):
    """``gpudoctor check --json --gpu CARD --no-redact`` run once per scenario in its guest.

    Returns (report dict, lab Result)."""
    name = guest.scenario.name
    if name not in _reports:
        try:
            r = guest.gpudoctor(["check", "--json", "--gpu", guest.scenario.card, "--no-redact"], timeout=180)
        except LabError as e:
            lab_fail(e)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            pytest.fail(f"gpudoctor check --json did not print JSON in {name}:\n{r}", pytrace=False)
        _reports[name] = (report, r)
    return _reports[name]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _boot_times:
        terminalreporter.section("lab boot times")
        for name, t in _boot_times.items():
            terminalreporter.write_line(f"{name:24} {t:5.1f}s")
    if BOOT_STALLS:
        terminalreporter.section("lab boot stalls (each guest booted again)")
        for line in BOOT_STALLS:
            terminalreporter.write_line(line)
