"""vm.* checks over domain XML fed through a Host folder (definitions, libvirtd's status files, the
answer of `virsh qemu-monitor-command ... query-pci`), the way a snapshot would feed them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctor.facts import PciDevice
from doctor.host import CommandResult
from doctor.model import Status
from doctor.registry import REGISTRY, Context, load_checks
from doctor.snapshot import DirHost
from doctor.vm.domxml import parse_domain, parse_status
from doctor.vm.guestsees import query_pci_argv
from tests.factory import FakeFacts, card

NV = "10de"


def hostdev(addr: str, guest_fn: int | None, alias: str | None = None, slot: str = "0x00") -> str:
    b, rest = addr.split(":")[1:]
    s, f = rest.split(".")
    ga = (f"<address type='pci' domain='0x0000' bus='0x01' slot='{slot}' function='0x{guest_fn:x}'"
          + (" multifunction='on'" if guest_fn == 0 else "") + "/>") if guest_fn is not None else ""
    al = f"<alias name='{alias}'/>" if alias else ""
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x{b}' "
            f"slot='0x{s}' function='0x{f}'/></source>{al}{ga}</hostdev>")


def domain(name: str, devs: str, machine: str = "pc-q35-7.2", features: str = "") -> str:
    return (f"<domain type='kvm'><name>{name}</name><memory unit='KiB'>1048576</memory>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os><features>{features}</features>"
            f"<devices>{devs}</devices></domain>")


HIDDEN = "<hyperv><vendor_id state='on' value='gpudoctor'/></hyperv><kvm><hidden state='on'/></kvm>"
FOUR = "".join(hostdev(f"0000:01:00.{i}", i, f"hostdev{i}") for i in range(4))


def facts_with(tmp_path: Path, defs: dict[str, str], status: dict[str, str] | None = None,
               commands: dict[tuple[str, ...], CommandResult] | None = None, pids: tuple[int, ...] = (),
               pci: list[PciDevice] | None = None) -> FakeFacts:
    root = tmp_path / "root"
    (root / "etc/libvirt/qemu").mkdir(parents=True)
    (root / "run/libvirt/qemu").mkdir(parents=True)
    for n, x in defs.items():
        (root / "etc/libvirt/qemu" / f"{n}.xml").write_text(x)
    for n, x in (status or {}).items():
        (root / "run/libvirt/qemu" / f"{n}.xml").write_text(x)
    for p in pids:
        (root / "proc" / str(p)).mkdir(parents=True)
    f = FakeFacts(pci=pci if pci is not None else named_card())
    f.host = DirHost(str(root), commands or {})  # type: ignore[attr-defined]
    return f


def named_card() -> list[PciDevice]:
    from doctor.datarecord import replace

    devs = card(drivers=("vfio-pci",) * 4)
    return [replace(devs[0], name="NVIDIA Corporation TU106 [GeForce RTX 2060 Rev. A]"), *devs[1:]]


def run(f: FakeFacts, cid: str) -> tuple[Status, str]:
    load_checks()
    v = REGISTRY[cid].func(Context(f))
    return v.status, v.summary


def status_xml(name: str, state: str, reason: str, pid: int, devs: str = FOUR) -> str:
    return f"<domstatus state='{state}' reason='{reason}' pid='{pid}'>{domain(name, devs, features=HIDDEN)}</domstatus>"


def test_whole_card_on_one_guest_slot_passes_and_a_missing_function_fails(tmp_path: Path) -> None:
    f = facts_with(tmp_path, {"ok": domain("ok", FOUR, features=HIDDEN)})
    assert run(f, "vm.hostdevs_cover_unit")[0] is Status.PASS
    three = "".join(hostdev(f"0000:01:00.{i}", i) for i in range(3))
    st, s = run(facts_with(tmp_path / "b", {"part": domain("part", three)}), "vm.hostdevs_cover_unit")
    assert st is Status.FAIL and "0000:01:00.3" in s and "not given to the guest" in s


def test_a_hostdev_not_on_this_host_fails(tmp_path: Path) -> None:
    devs = FOUR + hostdev("0000:09:00.0", None)
    st, s = run(facts_with(tmp_path, {"drift": domain("drift", devs)}), "vm.hostdevs_cover_unit")
    assert st is Status.FAIL and "0000:09:00.0 is not on this host" in s


def test_functions_left_to_libvirts_addressing_warn(tmp_path: Path) -> None:
    devs = "".join(hostdev(f"0000:01:00.{i}", None) for i in range(4))
    st, s = run(facts_with(tmp_path, {"spread": domain("spread", devs)}), "vm.hostdevs_cover_unit")
    assert st is Status.WARN and "not on one guest slot" in s


def test_i440fx_warns_q35_passes(tmp_path: Path) -> None:
    assert run(facts_with(tmp_path, {"a": domain("a", FOUR, "pc-q35-8.2")}), "vm.machine_q35")[0] is Status.PASS
    st, s = run(facts_with(tmp_path / "b", {"b": domain("b", FOUR, "pc-i440fx-7.2")}), "vm.machine_q35")
    assert st is Status.WARN and "pc-i440fx-7.2" in s


def test_geforce_without_hidden_kvm_warns_amd_is_not_applicable(tmp_path: Path) -> None:
    st, s = run(facts_with(tmp_path, {"g": domain("g", FOUR)}), "vm.kvm_hidden")
    assert st is Status.WARN and "Code 43" in s and "hidden" in s
    assert run(facts_with(tmp_path / "h", {"g": domain("g", FOUR, features=HIDDEN)}), "vm.kvm_hidden")[0] is Status.PASS
    amd = [PciDevice("0000:01:00.0", 0x030000, "1002", "73bf", None, None, "vfio-pci", "1", False),
           PciDevice("0000:01:00.1", 0x040300, "1002", "ab28", None, None, "vfio-pci", "1")]
    two = "".join(hostdev(f"0000:01:00.{i}", i) for i in range(2))
    assert run(facts_with(tmp_path / "a", {"r": domain("r", two)}, pci=amd), "vm.kvm_hidden")[0] is Status.NOT_APPLICABLE


def test_paused_on_io_error_or_dead_qemu_is_wedged_and_the_fix_is_cleanup(tmp_path: Path) -> None:
    f = facts_with(tmp_path, {"w": domain("w", FOUR)}, {"w": status_xml("w", "paused", "ioerror", 4242)}, pids=(4242,))
    load_checks()
    v = REGISTRY["vm.not_wedged"].func(Context(f))
    assert v.status is Status.FAIL and "paused (ioerror)" in v.summary
    assert v.remedy is not None and "sudo gpudoctor vm cleanup w --apply --yes" in v.remedy.steps
    dead = facts_with(tmp_path / "d", {"w": domain("w", FOUR)}, {"w": status_xml("w", "running", "booted", 777)})
    st, s = run(dead, "vm.not_wedged")
    assert st is Status.FAIL and "pid 777" in s and "gone" in s
    alive = facts_with(tmp_path / "l", {"w": domain("w", FOUR)}, {"w": status_xml("w", "running", "booted", 777)}, pids=(777,))
    assert run(alive, "vm.not_wedged")[0] is Status.PASS


def _query_pci(devices: list[dict[str, object]]) -> str:
    bridge = {"bus": 0, "slot": 1, "function": 0, "class_info": {"class": 1540}, "id": {"vendor": 6966, "device": 12},
              "qdev_id": "pci.1", "regions": [],
              "pci_bridge": {"bus": {"number": 1, "secondary": 1, "subordinate": 1}, "devices": devices}}
    return json.dumps({"return": [{"bus": 0, "devices": [bridge]}], "id": "libvirt-1"})


def _guest_dev(fn: int, device: int, address: int) -> dict[str, object]:
    return {"bus": 1, "slot": 0, "function": fn, "class_info": {"class": 768}, "id": {"vendor": 0x10DE, "device": device},
            "qdev_id": f"hostdev{fn}",
            "regions": [{"bar": 0, "type": "memory", "address": address, "size": 16777216, "prefetch": False, "mem_type_64": False}]}


def test_guest_sees_every_function_with_programmed_bars_from_query_pci(tmp_path: Path) -> None:
    argv = query_pci_argv("run")
    devs = [_guest_dev(i, d, 0xFB000000 + i * 0x1000000) for i, d in enumerate((0x1E84, 0x10F8, 0x1AD8, 0x1AD9))]
    ok = CommandResult(argv, 0, _query_pci(devs), "")
    f = facts_with(tmp_path, {"run": domain("run", FOUR)}, {"run": status_xml("run", "running", "booted", 9)}, {argv: ok}, (9,))
    st, s = run(f, "vm.guest_sees_gpu")
    assert st is Status.PASS, s
    f2 = facts_with(tmp_path / "m", {"run": domain("run", FOUR)}, {"run": status_xml("run", "running", "booted", 9)},
                    {argv: CommandResult(argv, 0, _query_pci(devs[:3]), "")}, (9,))
    st, s = run(f2, "vm.guest_sees_gpu")
    assert st is Status.FAIL and "0000:01:00.3 (hostdev3) is not on the guest's PCI bus" in s
    unset = [_guest_dev(i, 0x1E84, 2**64 - 1) for i in range(4)]
    f3 = facts_with(tmp_path / "u", {"run": domain("run", FOUR)}, {"run": status_xml("run", "running", "booted", 9)},
                    {argv: CommandResult(argv, 0, _query_pci(unset), "")}, (9,))
    assert run(f3, "vm.guest_sees_gpu")[0] is Status.WARN
    f4 = facts_with(tmp_path / "n", {"run": domain("run", FOUR)}, {"run": status_xml("run", "running", "booted", 9)}, {}, (9,))
    st, s = run(f4, "vm.guest_sees_gpu")
    assert st is Status.UNKNOWN and "command not found" in s
    assert run(facts_with(tmp_path / "o", {"run": domain("run", FOUR)}), "vm.guest_sees_gpu")[0] is Status.NOT_APPLICABLE


@pytest.mark.parametrize("bad", ["<domain", "<!DOCTYPE x [<!ENTITY a 'b'>]><domain><name>&a;</name></domain>",
                                 "<notadomain/>", "<domain><devices/></domain>", "x" * 10])
def test_hostile_domain_xml_is_refused_not_crashed(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_domain(bad, "f")
    with pytest.raises(ValueError):
        parse_status(bad, "f")
    f = facts_with(tmp_path, {"bad": bad})
    assert run(f, "vm.hostdevs_cover_unit")[0] is Status.NOT_APPLICABLE


def test_no_domains_is_not_applicable_and_no_host_is_unknown(tmp_path: Path) -> None:
    assert run(facts_with(tmp_path, {}), "vm.not_wedged")[0] is Status.NOT_APPLICABLE
    from doctor.runner import _run_one

    load_checks()
    r = _run_one(REGISTRY["vm.machine_q35"], Context(FakeFacts(pci=named_card())))
    assert r.status is Status.UNKNOWN


def test_check_vm_judges_only_the_named_domain(tmp_path: Path) -> None:
    """check --vm NAME: the vm.* checks look at that domain alone (a broken neighbour does not fail it)."""
    good = domain("good", FOUR, features=HIDDEN)
    bad = domain("bad", hostdev("0000:01:00.0", 0, "hostdev0"), machine="pc-i440fx-7.2")
    f = facts_with(tmp_path, {"good": good, "bad": bad})
    load_checks()
    for cid in ("vm.hostdevs_cover_unit", "vm.machine_q35"):
        assert REGISTRY[cid].func(Context(f)).status is not Status.PASS
        only_good = REGISTRY[cid].func(Context(f, options={"vm": "good"}))
        assert only_good.status is Status.PASS, (cid, only_good.summary)
        assert all("bad" not in e.value for e in only_good.evidence)
        only_bad = REGISTRY[cid].func(Context(f, options={"vm": "bad"}))
        assert only_bad.status is not Status.PASS and "bad" in only_bad.summary


def test_check_vm_refuses_a_domain_that_is_not_defined(tmp_path: Path) -> None:
    import subprocess
    import sys

    from doctor.snapshot import record

    root = tmp_path / "root"
    (root / "etc/libvirt/qemu").mkdir(parents=True)
    (root / "etc/libvirt/qemu/good.xml").write_text(domain("good", FOUR, features=HIDDEN))
    snap = tmp_path / "snap"
    record(str(snap), DirHost(str(root), {}), redact=False)
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", str(snap), "--vm", "nope"],
                       capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2 and "--vm nope: no libvirt domain of that name here (defined: good)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", str(snap), "--vm", "good", "--json",
                        "--only", "vm.hostdevs_cover_unit"], capture_output=True, text=True, cwd=repo)
    assert r.returncode in (0, 1), r.stderr
    res = json.loads(r.stdout)["results"]
    assert len(res) == 1 and json.dumps(res[0]).count("vm.hostdevs_cover_unit") >= 1
    assert "good" in json.dumps(res[0])
