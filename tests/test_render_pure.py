"""Rendering is a pure function of the Report (issue 13.7): once the checks have run, JSON, text and the
HTML fragments read nothing from the host, and the option ROM is never read by a fact accessor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctor.facts import HostFacts
from doctor.htmlparts import summary_html
from doctor.render import to_json
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost
from doctor.textout import report_lines

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class Sealed:
    """A host that fails every use: rendering must not need one."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the host was used after the checks ran: {name}")


@pytest.mark.parametrize("name", ["seed-before", "dev-machine"])
def test_rendering_reads_nothing_once_the_checks_ran(name: str) -> None:
    host = SnapshotHost(str(FIXTURES / name))
    try:
        facts = HostFacts(host)
        report = run_checks(facts, host.source_info())
        before = json.dumps(to_json(report, True), sort_keys=True)
        text_before = [ln.text for ln in report_lines(report, redact=True)]
    finally:
        host.close()
    facts.host = Sealed()  # type: ignore[assignment]  # every fact already read is cached; anything new would hit the sealed host
    facts._cache.clear()  # and nothing may be re-read either
    assert json.dumps(to_json(report, True), sort_keys=True) == before
    assert [ln.text for ln in report_lines(report, redact=True)] == text_before
    assert summary_html(report, True)


def test_the_option_rom_is_never_read_by_the_facts() -> None:
    """Without a dump the CLI read or loaded, option_rom is unknown: no accessor touches sysfs `rom`."""
    from doctor.errors import FactUnknown

    host = SnapshotHost(str(FIXTURES / "dev-machine"))
    try:
        facts = HostFacts(host)
        facts.host = Sealed()  # type: ignore[assignment]
        with pytest.raises(FactUnknown):
            facts.option_rom("0000:01:00.0")
    finally:
        host.close()
