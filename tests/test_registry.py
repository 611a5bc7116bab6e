"""The registry is the one list: check files named by id prefix, the README's table and `gpudoctor list`
come from it, and every fix family a check names has a remediation."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from doctor.registry import CHECK_MODULES, FIXES, MANUAL, ORDER, load_checks, remediation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_check_lives_in_the_file_named_by_its_id_prefix() -> None:
    specs = load_checks()
    assert list(specs) == list(ORDER)
    for cid, spec in specs.items():
        assert spec.func.__module__ == f"checks.check_{cid.split('.')[0]}", cid
    files = {f[len("check_"):-3] for f in os.listdir(os.path.join(ROOT, "checks")) if f.startswith("check_") and f.endswith(".py")}
    assert files == set(CHECK_MODULES)
    assert {c.split(".")[0] for c in ORDER} == set(CHECK_MODULES)


def test_no_check_names_its_fix_outside_the_table() -> None:
    """@check takes no fix=: the pairing is doctor.registry.FIXES, nowhere else."""
    for m in CHECK_MODULES:
        tree = ast.parse(open(os.path.join(ROOT, "checks", f"check_{m}.py")).read())
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "check":
                assert not [k for k in n.keywords if k.arg == "fix"], m
    assert set(FIXES) <= set(ORDER) and set(MANUAL) <= set(ORDER) and not set(FIXES) & set(MANUAL)
    for fam in {f for fs in FIXES.values() for f in fs} - {"vm_cleanup"}:
        assert remediation(fam).__name__ == f"remediations.{fam}"


def test_readme_table_is_gpudoctor_list_markdown() -> None:
    out = subprocess.run([sys.executable, "-m", "doctor.cli", "list", "--markdown"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    readme = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- checks:begin -->\n(.*?)\n<!-- checks:end -->", readme, re.S)
    assert m, "README.md lost its checks table markers"
    assert m.group(1) == out, "README's check table differs from `gpudoctor list --markdown`: paste it again"
    assert out.count("\n| `") == len(ORDER)


def test_list_prints_every_check_once() -> None:
    out = subprocess.run([sys.executable, "-m", "doctor.cli", "list"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    ids = [ln.split()[0] for ln in out.splitlines()]
    assert ids == list(ORDER)


def test_the_fixer_reads_typed_parameters_not_prose() -> None:
    """No check id, summary text or action description decides what the fixer plans (issue 13.4):
    it dispatches on the remedy's FixParams and the table."""
    src = open(os.path.join(ROOT, "doctor", "fixer.py")).read()
    plan_src = src[src.index("def build_plan("):src.index("def _guard(")]
    assert ".summary" not in plan_src and "describe()" not in plan_src
    assert not re.findall(r'cid\s*(==|!=|in)\s*\(?"', plan_src), "a check id compared in build_plan"
    assert "remediations." not in src, "the fixer reaches remediations only through doctor.registry"
