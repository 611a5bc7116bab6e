"""gpudoctor as a pytest plugin: the checks as a pytest suite against a host.

    pytest -p doctor.plugin --gpudoctor-live
    pytest -p doctor.plugin --gpudoctor-snapshot fixtures/dev-machine [--html r.html]

One item per result (`cpu.virtualization`, `vfio.group_viable[0000:01:00.0]`):
fail fails the item, error errors it (raised in setup), not applicable and
unknown skip it with the summary as reason, pass and warn pass. Without one of
the two options the plugin is inert: it adds no item and registers nothing.

The checks run once, at session start, through `run_checks`; the items only
report the results. `doctor.htmlreport` reuses `GpudoctorPlugin` over results
it already has, so the HTML report is a pure function of those results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from doctor.htmlparts import CSS, TITLE, _e, _status_cell, detail_html, summary_html
from doctor.model import Result, Status
from doctor.runner import Report, SubjectResult


def item_name(sr: SubjectResult) -> str:
    """`check.id` for a host-wide check, `check.id[0000:01:00.0]` for a per-GPU one."""
    return sr.result.check_id + (f"[{sr.subject}]" if sr.subject else "")


class CheckProblem(Exception):
    """Raised by a CheckItem for a fail (in runtest) or an error (in setup)."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.summary)
        self.result = result


def describe(res: Result) -> str:
    """Plain text for the terminal: status, summary, messages and the fix."""
    lines = [f"{res.status.word}: {res.check_id} — {res.summary}"]
    lines += [f"  {m}" for m in res.messages]
    lines += [f"  evidence {e.source}: {e.value}" for e in res.evidence]
    if res.remedy is not None:
        lines.append(f"  fix: {res.remedy.text}")
        lines += [f"    {s}" for s in res.remedy.steps]
    return "\n".join(lines)


class CheckItem(pytest.Item):
    """One gpudoctor result as a pytest item; it reports, it never probes."""

    def __init__(self, *, subject_result: SubjectResult, **kw: Any) -> None:
        super().__init__(**kw)
        self.subject_result = subject_result

    @property
    def result(self) -> Result:
        return self.subject_result.result

    def setup(self) -> None:
        if self.result.status is Status.ERROR:
            raise CheckProblem(self.result)  # pytest reports a setup failure as an error

    def runtest(self) -> None:
        res = self.result
        if res.status is Status.FAIL:
            raise CheckProblem(res)
        if res.status is Status.NOT_APPLICABLE:
            pytest.skip(res.summary or "not applicable")
        if res.status is Status.UNKNOWN:
            s = res.summary or "unknown"
            pytest.skip(s if s.startswith("unknown") else f"unknown: {s}")
        # pass and warn pass; the WARN word shows in the report's Status column

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckProblem):
            return describe(excinfo.value.result)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"gpudoctor: {self.name}"


class GpudoctorPlugin:
    """Adds one CheckItem per result; `get_report` is called once, at session start.

    `redact` applies the CLI's redaction to what the items show.
    """

    def __init__(self, get_report: Callable[[], Report], redact: bool = True) -> None:
        self._get_report = get_report
        self.redact = redact
        self.report: Report | None = None
        self.results: list[SubjectResult] = []
        self.host: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from doctor.render import host_table, make_redactor, redact_results

        self.report = self._get_report()
        red = make_redactor(self.report, self.redact)
        self.host = host_table(self.report, red)  # first, as in to_json: the same fake names
        self.results = redact_results(self.report.results, red)

    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        seen: dict[str, int] = {}
        for sr in self.results:
            name = item_name(sr)
            n = seen[name] = seen.get(name, 0) + 1
            if n > 1:  # never two items with one node id
                name = f"{name}#{n}"
            items.append(CheckItem.from_parent(session, name=name, nodeid=name, subject_result=sr))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if isinstance(item, CheckItem):
            # what the HTML columns read (a report only carries plain attributes)
            res = item.result
            report.gpudoctor = {
                "status": res.status.value,
                "word": res.status.word,
                "check_id": res.check_id,
                "subject": item.subject_result.subject or "",
                "summary": res.summary,
                "duration_s": res.duration_s,
            }
            if report.skipped and isinstance(report.longrepr, tuple):
                # "SKIPPED [1] vfio.group_viable: reason", not the line of plugin.py that skipped
                report.longrepr = (item.name, None, report.longrepr[2])
        return report


# -- the `-p doctor.plugin` entry: options, and nothing else unless one is given


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gpudoctor", "gpudoctor: KVM GPU passthrough checks as tests")
    src = g.addoption
    src("--gpudoctor-live", action="store_true", default=False, help="run gpudoctor's checks on this host")
    src("--gpudoctor-snapshot", metavar="PATH", default=None,
        help="run gpudoctor's checks on a recorded snapshot (folder or .tar.gz)")
    src("--gpudoctor-gpu", metavar="ADDR", default=None, help="the GPU to check (default: every non-boot GPU)")
    src("--gpudoctor-no-redact", action="store_true", default=False,
        help="keep hostnames, addresses, serials and UUIDs in what the items show")


def pytest_configure(config: pytest.Config) -> None:
    live = config.getoption("gpudoctor_live")
    snap = config.getoption("gpudoctor_snapshot")
    if not live and not snap:
        return
    if live and snap:
        raise pytest.UsageError("--gpudoctor-live and --gpudoctor-snapshot exclude each other")
    gpu = config.getoption("gpudoctor_gpu")
    redact = not config.getoption("gpudoctor_no_redact")
    closers: list[Callable[[], None]] = []

    def get_report() -> Report:
        from doctor.errors import DoctorError
        from doctor.facts import HostFacts
        from doctor.host import LiveHost
        from doctor.runner import run_checks
        from doctor.snaphost import SnapshotHost

        try:
            host = SnapshotHost(snap) if snap else LiveHost()
            close = getattr(host, "close", None)
            if close:
                closers.append(close)
            return run_checks(HostFacts(host), host.source_info(), gpu=gpu)
        except DoctorError as e:
            raise pytest.UsageError(f"gpudoctor: {e}") from e

    config.stash[_closers_key] = closers
    plugin = GpudoctorPlugin(get_report, redact)
    config.pluginmanager.register(plugin, "gpudoctor-checks")
    if hasattr(config.hook, "pytest_html_results_table_row"):  # pytest-html is active
        config.pluginmanager.register(HtmlHooks(plugin), "gpudoctor-html")


_closers_key = pytest.StashKey[list]()


def pytest_unconfigure(config: pytest.Config) -> None:
    for close in config.stash.get(_closers_key, []):
        close()


class HtmlHooks:
    """pytest-html hooks over the results a GpudoctorPlugin holds."""

    def __init__(self, plugin: GpudoctorPlugin) -> None:
        self.plugin = plugin

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # after GpudoctorPlugin's (tryfirst), before pytest-html's (trylast) reads the environment
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:  # pragma: no cover - pytest-html depends on it
            return
        md = session.config.stash.get(metadata_key, None)
        if md is None:
            return
        md.clear()  # Platform, Python, Packages, Plugins, CI variables: about this machine, not the report
        # pytest-html inserts environment values as HTML (keys as text)
        md.update({k: _e(v) for k, v in self.plugin.host.items()})
        md["redacted"] = "yes" if self.plugin.redact else "NO: identifying values kept"

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = TITLE

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        prefix.append(f"<style>{CSS}</style>")
        rep = self.plugin.report
        if rep is not None:
            prefix.append(summary_html(rep, self.plugin.redact))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="sortable" data-column-type="status">Status</th>')
        cells.insert(3, '<th class="sortable" data-column-type="checkid">Check id</th>')
        cells.insert(4, '<th data-column-type="summary">Summary</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        info = getattr(report, "gpudoctor", None)
        if info is None:  # not one of ours (a collection error, another plugin's item)
            cells.insert(1, _status_cell("", "none"))
            cells.insert(3, '<td class="col-checkid"></td>')
            cells.insert(4, '<td class="col-summary"></td>')
            return
        cells[1] = f'<td class="col-testId">{_e(report.nodeid)}</td>'
        for i, c in enumerate(cells):  # the check's own run time, not the item's (~0)
            if 'class="col-duration"' in c:
                cells[i] = f'<td class="col-duration">{info["duration_s"] * 1000:.1f} ms</td>'
        cells.insert(1, _status_cell(info["word"], info["status"]))
        cells.insert(3, f'<td class="col-checkid">{_e(info["check_id"])}</td>')
        cells.insert(4, f'<td class="col-summary">{_e(info["summary"])}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        if getattr(report, "gpudoctor", None) is not None and getattr(report, "extras", None):
            data.clear()  # the detail block says it all; pytest's log would repeat it

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if isinstance(item, CheckItem):
            res = item.result
            # the phase that decides the outcome: setup for an error, call otherwise
            decisive = "setup" if res.status is Status.ERROR else "call"
            if report.when == decisive:
                from pytest_html import extras

                report.extras = [*getattr(report, "extras", []),
                                 extras.html(detail_html(res, item.subject_result.subject))]
        return report
