"""check --hosts ansible://PATTERN, end to end over real Ansible and real SSH: a throwaway sshd on
127.0.0.1 (its own host key, key-only login), an inventory with two aliases of this machine and one
alias on a closed loopback port. The reachable hosts' verdicts equal a local `check` of this machine;
the unreachable one is listed, never dropped; exit 1. Never skips: scripts/setup.sh installs sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import Sshd, start_sshd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GD = [sys.executable, "-m", "doctor.cli"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    s = start_sshd(str(tmp_path_factory.mktemp("sshd")))
    try:
        yield s
    finally:
        s.stop()


def gd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GD, *args], capture_output=True, text=True, check=False, cwd=REPO, timeout=300)


def verdicts(doc: dict) -> list[tuple[str, str | None, str]]:  # type: ignore[type-arg]
    return [(r["id"], r["subject"], r["status"]) for r in doc["results"]]


def test_hosts_over_ssh_equal_a_local_check_and_unreachable_is_listed(sshd: Sshd, tmp_path: Path) -> None:
    inv = tmp_path / "inventory.ini"
    inv.write_text(sshd.inventory(["alpha", "beta"], dead=["gamma"]))
    keep, junit, report = tmp_path / "keep", tmp_path / "junit.xml", tmp_path / "fleet.html"
    p = gd("check", "--hosts", "ansible://all", "-i", str(inv), "--json", "--keep", str(keep), "--junit", str(junit),
           "--html", str(report))
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["format"], doc["version"]) == ("gpudoctor.fleet", 1)
    states = {h["name"]: h["state"] for h in doc["hosts"]}
    assert set(states) == {"alpha", "beta", "gamma"}
    assert states["gamma"] == "unreachable"
    gamma = next(h for h in doc["hosts"] if h["name"] == "gamma")
    assert "127.0.0.1" in gamma["reason"] and gamma["check"] is None
    assert doc["summary"]["unreachable"] == 1 and doc["summary"]["exit_code"] == 1

    local = gd("check", "--json")
    assert local.returncode in (0, 1), local.stderr
    want = verdicts(json.loads(local.stdout))
    for name in ("alpha", "beta"):
        h = next(h for h in doc["hosts"] if h["name"] == name)
        assert h["check"]["source"]["kind"] == "snapshot"
        assert verdicts(h["check"]) == want, name
        assert h["state"] == {0: "pass", 1: "fail"}.get(local.returncode)
    # the kept snapshots replay to the same verdicts later
    assert sorted(os.listdir(keep)) == ["alpha.tar.gz", "beta.tar.gz"]
    again = gd("check", "--snapshot", str(keep / "alpha.tar.gz"), "--json")
    assert verdicts(json.loads(again.stdout)) == want
    # JUnit: one testsuite per host, the unreachable one included as an error
    from lxml import etree

    root = etree.parse(str(junit)).getroot()
    etree.XMLSchema(etree.parse(str(REPO / "tests" / "data" / "junit.xsd"))).assertValid(root)
    assert sorted(s.get("name") for s in root.findall("testsuite")) == ["alpha", "beta", "gamma"]
    # HTML: one report, a section per host; the unreachable one says so
    from lxml import html

    secs = {s.find("h2").text_content().rsplit(" — ", 1)[0]: s.text_content()
            for s in html.fromstring(report.read_bytes()).xpath("//section[@class='gd-host-section']")}
    assert sorted(secs) == ["alpha", "beta", "gamma"]
    assert "UNREACHABLE" in secs["gamma"] and "127.0.0.1" in secs["gamma"]
    for name in ("alpha", "beta"):
        assert all(cid in secs[name] for cid, _, st in want if st not in ("pass", "not_applicable")), name


def test_target_python_has_no_gpudoctor() -> None:
    """What makes the proof meaningful: the target's interpreter cannot import gpudoctor."""
    p = subprocess.run(["/usr/bin/python3", "-c", "import doctor"], capture_output=True, cwd="/", check=False)
    assert p.returncode != 0


@pytest.mark.parametrize("args, needle", [
    (["--hosts", "gpu_hosts"], "ansible://PATTERN"),
    (["--hosts", "ansible://{{ lookup('pipe','id') }}"], "not an Ansible host pattern"),
    (["--hosts", "ansible://all", "-i", "/nonexistent/inv"], "no such inventory"),
    (["--hosts", "ansible://all", "--jobs", "0", "-i", "x,"], "--jobs 0"),
    (["--hosts", "ansible://all", "--snapshot", "fixtures/dev-machine"], "cannot be used together"),
])
def test_bad_hosts_options_are_exit_2(args: list[str], needle: str) -> None:
    p = gd("check", *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_a_pattern_matching_no_host_is_exit_2(sshd: Sshd, tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text(sshd.inventory(["alpha"]))
    p = gd("check", "--hosts", "ansible://nosuchgroup", "-i", str(inv))
    assert p.returncode == 2 and "no host matched" in p.stderr, p.stderr


def run_playbook(tmp_path: Path, fail_on: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    from doctor.fleet_ansible import collections_path

    pb = tmp_path / f"pb-{fail_on}.yml"
    pb.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [
        {"gpudoctor.doctor.gpudoctor_record": {"fail_on": fail_on}}]}]))
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "gpudoctor.doctor.gpudoctor_json",
           "ANSIBLE_COLLECTIONS_PATH": collections_path()}
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    p = subprocess.run([exe, str(pb), "-i", "local,", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3"],
                       capture_output=True, text=True, env=env, check=False, timeout=300)
    return p.returncode, json.loads(p.stdout)["results"]["local"]


def test_module_changed_is_false_and_fail_on_follows_the_verdicts(tmp_path: Path) -> None:
    local = gd("check", "--json")
    local_fails = json.loads(local.stdout)["summary"]["fail"] > 0
    rc, never = run_playbook(tmp_path, "never")
    assert rc == 0 and never["changed"] is False and "verdicts" not in never and never["size"] > 0
    rc, fail = run_playbook(tmp_path, "fail")
    assert fail["changed"] is False
    assert verdicts(fail["verdicts"]) == verdicts(json.loads(local.stdout))
    assert bool(fail.get("failed")) == local_fails and (rc != 0) == local_fails
