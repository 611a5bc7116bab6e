"""Different hosts for real: two lab guests of different scenarios up at the same time, each
running sshd behind QEMU's user networking (its port 22 forwarded from 127.0.0.1 only), in one
Ansible inventory; `gpudoctor check --hosts ansible://all -i INV` records both over real SSH and
judges them here (JSON, HTML and the table). The partly bound host fails vfio.group_viable naming its function that is not
on vfio-pci; the host without a DMAR table fails firmware.iommu_table; the summary groups the hosts
by cause. Two TCG guests at once at most (this machine's two cores): the session's pooled guest is
closed first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import SCENARIOS, Guest, Lab, LabError
from lab.guest_ssh import SshKeys, make_keys, start_sshd
from lab.scenarios_fleet import FLEET_SCENARIOS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sshd import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 180

pytestmark = pytest.mark.lab

PARTIAL, NO_DMAR = SCENARIOS["intel-partial"], FLEET_SCENARIOS["intel-no-dmar"]
HOSTS = {"partial": PARTIAL, "nodmar": NO_DMAR}
NOT_ON_VFIO = sorted(set(PARTIAL.card_functions) - set(PARTIAL.bind_vfio))  # 01:00.2 and 01:00.3
TIMES: dict[str, float] = {}


def inventory(ports: dict[str, int], keys: SshKeys) -> str:
    ssh_args = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=60 "
                "-o BatchMode=yes -o IdentitiesOnly=yes")
    return "\n".join([
        "[gpu]", *(f"{alias} ansible_host=127.0.0.1 ansible_port={port}" for alias, port in ports.items()), "",
        "[all:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={keys.client_key}",
        f"ansible_ssh_common_args='{ssh_args}'", "ansible_python_interpreter=/usr/bin/python3", "ansible_timeout=120",
    ]) + "\n"  # fmt: skip


@pytest.fixture(scope="module")
def fleet(lab_pool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Guest], Path]]:
    lab_pool.close()  # the session's pooled guest: at most two guests at once
    keys = make_keys(tmp_path_factory.mktemp("fleet-ssh"))
    guests: dict[str, Guest] = {}
    t0 = time.monotonic()
    try:
        for alias, sc in HOSTS.items():
            port = free_port()
            guests[alias] = Lab.boot(sc, timeout=BOOT_TIMEOUT, ssh_port=port)
            start_sshd(guests[alias], keys)
        TIMES["boot_and_sshd"] = time.monotonic() - t0
        assert all(g.alive for g in guests.values())  # both up at the same time
        inv = tmp_path_factory.mktemp("fleet-inv") / "inventory.ini"
        inv.write_text(inventory({a: g.ssh_port for a, g in guests.items() if g.ssh_port}, keys))
        yield guests, inv
    except LabError as e:
        pytest.fail(f"{type(e).__name__}: {e}", pytrace=False)
    finally:
        for g in guests.values():
            g.close()
        print(f"\n[lab] fleet timings: {', '.join(f'{k} {v:.1f}s' for k, v in TIMES.items())}", file=sys.stderr)


def gd(*args: str) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                       cwd=REPO, timeout=900, env={**os.environ, "ANSIBLE_FORKS": "2"})
    TIMES[" ".join(a for a in args if a in ("--json", "--keep")) or "table"] = time.monotonic() - t0
    return p


def result(host: dict, check_id: str) -> dict:  # type: ignore[type-arg]
    hits = [r for r in host["check"]["results"] if r["id"] == check_id]
    assert hits, f"{host['name']}: no {check_id} result"
    return hits[0]


def test_two_live_guests_over_ssh_each_show_their_own_verdicts(fleet, tmp_path: Path) -> None:
    guests, inv = fleet
    # the guests really differ where the checks look (ground truth, asked of each guest directly)
    drivers = guests["partial"].drivers()
    assert [a for a in PARTIAL.card_functions if drivers.get(a) != "vfio-pci"] == NOT_ON_VFIO
    assert guests["partial"].run("test -e /sys/firmware/acpi/tables/DMAR").rc == 0
    assert guests["nodmar"].run("test -e /sys/firmware/acpi/tables/DMAR").rc == 1
    assert {g.run("hostname", check=True).stdout.strip() for g in guests.values()} == {
        "lab-intel-partial", "lab-intel-no-dmar"}

    keep, report = tmp_path / "keep", tmp_path / "fleet.html"
    p = gd("check", "--hosts", "ansible://all", "-i", str(inv), "--gpu", PARTIAL.card, "--json", "--keep", str(keep),
           "--html", str(report))
    assert p.returncode == 1, f"exit {p.returncode}\n{p.stderr}\n{p.stdout[-3000:]}"
    doc = json.loads(p.stdout)
    assert (doc["format"], doc["version"]) == ("gpudoctor.fleet", 1)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == set(HOSTS) and all(h["state"] == "fail" for h in hosts.values()), {
        n: (h["state"], h["reason"]) for n, h in hosts.items()}
    assert sorted(os.listdir(keep)) == ["nodmar.tar.gz", "partial.tar.gz"]

    # the partly bound host: its group is not viable, and the functions left on their drivers are named
    gv = result(hosts["partial"], "vfio.group_viable")
    assert gv["status"] == "fail", gv
    text = json.dumps(gv)
    for addr in NOT_ON_VFIO:
        assert addr in text or addr[5:] in text, (addr, gv)
    assert result(hosts["partial"], "firmware.iommu_table")["status"] == "pass"
    # the host without DMAR: the firmware check fails; its own kernel found no IOMMU either
    fw = result(hosts["nodmar"], "firmware.iommu_table")
    assert fw["status"] == "fail" and "DMAR" in fw["summary"], fw
    assert result(hosts["nodmar"], "vfio.group_viable")["status"] != "fail"  # no group to judge: not this cause

    # the summary groups the hosts by cause: each host under its own root cause, not the other's
    causes = {c["id"]: c["hosts"] for c in doc["causes"]}
    assert causes.get("vfio.group_viable") == ["partial"], doc["causes"]
    assert causes.get("firmware.iommu_table") == ["nodmar"], doc["causes"]
    assert doc["summary"]["hosts"] == 2 and doc["summary"]["fail"] == 2 and doc["summary"]["unreachable"] == 0

    # the HTML report: one section per host, each with its own host's failure
    from lxml import html

    secs = {s.find("h2").text_content().rsplit(" — ", 1)[0]: s.text_content()
            for s in html.fromstring(report.read_bytes()).xpath("//section[@class='gd-host-section']")}
    assert sorted(secs) == sorted(HOSTS)
    assert "vfio.group_viable" in secs["partial"] and all(a in secs["partial"] for a in NOT_ON_VFIO)
    assert "no ACPI DMAR table" in secs["nodmar"] and "no ACPI DMAR table" not in secs["partial"]

    # the table: one section per host and the same grouping in the summary lines
    t = gd("check", "--hosts", "ansible://all", "-i", str(inv), "--gpu", PARTIAL.card)
    assert t.returncode == 1, t.stderr
    lines = t.stdout.splitlines()
    assert any(ln.startswith("fleet: 2 hosts: 0 passed, 2 failed") for ln in lines), t.stdout[-2000:]
    assert any("FAIL vfio.group_viable" in ln and ln.rstrip().endswith(": partial") for ln in lines), t.stdout[-2000:]
    assert any("FAIL firmware.iommu_table" in ln and ln.rstrip().endswith(": nodmar") for ln in lines), t.stdout[-2000:]
