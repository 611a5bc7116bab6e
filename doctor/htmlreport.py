"""A self-contained pytest-html report of results already computed.

`write_html(report, path)` runs pytest in-process over the Report's results
(one item per result, see `doctor.plugin`): nothing is probed again, the HTML
is a pure function of the results. pytest-html draws the page; we add the
Status / Check id / Summary columns, one detail block per check (messages,
evidence, fix) and the environment table (the CLI's host table, in place of
pytest-metadata's rows about this Python). Every piece of text we hand to
pytest-html is escaped here: its table cells, extras and environment values
are inserted as HTML.

Outcomes: pass → passed; warn → passed, with WARN in the Status column (a warn
is advice: the CLI exits 0 on it, so it is not a failure, and pytest's xfail
would read "expected failure", which it is not); fail → failed; error → error
(raised in setup); not applicable → skipped (reason: the summary); unknown →
skipped ("unknown: ...").
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import pytest

from doctor.errors import BadInput
from doctor.output import check_target, write_output
from doctor.plugin import GpudoctorPlugin, HtmlHooks
from doctor.runner import Report

# builtin plugins a report needs none of (each costs start-up time, and some
# would touch process state: faulthandler, logging handlers, fd capture)
_UNNEEDED = (
    "cacheprovider", "faulthandler", "logging", "warnings", "junitxml", "pastebin", "doctest",
    "stepwise", "capture", "legacypath", "tmpdir", "monkeypatch", "recwarn", "setuponly",
    "setupplan", "unraisableexception", "threadexception", "debugging",
)

def _pytest_args(root: str, out: str) -> list[str]:
    args = [
        root,
        "-c", os.devnull,  # no ini file of the project (addopts, testpaths) is read
        "--rootdir", root,
        "--noconftest",
        "--assert=plain",
        "-q",
        "--html", out,
        "--self-contained-html",
        "-o", "render_collapsed=passed,skipped",
        "-o", "initial_sort=original",
    ]
    for plugin in _UNNEEDED:
        args += ["-p", f"no:{plugin}"]
    return args


def _render(report: Report, redact: bool) -> str:
    """Run pytest in-process over the results; return the HTML text."""
    import pytest_html.plugin
    import pytest_metadata.plugin

    plugin = GpudoctorPlugin(lambda: report, redact)
    hooks = HtmlHooks(plugin)
    # no options or plugins from the caller's environment, no entry-point plugins (pytest-html and
    # pytest-metadata are passed explicitly); put back as it was afterwards
    names = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    buf = io.StringIO()
    try:
        with tempfile.TemporaryDirectory(prefix="gpudoctor-html-") as root:
            out = os.path.join(root, "report.html")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                code = pytest.main(
                    _pytest_args(root, out),
                    plugins=[pytest_metadata.plugin, pytest_html.plugin, plugin, hooks],
                )
            if code == pytest.ExitCode.INTERRUPTED:
                raise KeyboardInterrupt
            ok = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
            if code not in ok or not os.path.isfile(out):
                tail = buf.getvalue().strip()[-2000:]
                raise RuntimeError(f"pytest-html did not write the report (pytest exit {int(code)}): {tail}")
            with open(out, encoding="utf-8") as f:
                return f.read()
    finally:
        os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        os.environ.update(saved)


def write_html(report: Report, path: str, redact: bool = True) -> None:
    """Write a self-contained HTML report of `report` to `path` ("-": standard output) through
    `doctor.output.write_output` (beside the target, then renamed; devices, FIFOs, sockets, folders
    and symlinks refused). A missing folder is created, as the default `reports/` must be.

    BadInput (exit 2) where the path cannot or must not be written, before anything is rendered.
    """
    if path != "-":
        target = os.path.abspath(path)
        parent = os.path.dirname(target)
        if not os.path.lexists(parent):
            try:  # fail on a bad path before rendering
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise BadInput(f"--html {path}: cannot create the folder {parent}: {e.strerror or e}") from e
        check_target(path, "--html")
    write_output(path, _render(report, redact).encode("utf-8"), "--html")
