"""A redacted recording of every existing fixture gives the verdicts the fixture gives:
redaction changes values, never facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctor.facts import HostFacts
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost, record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NAMES = sorted(p.parent.name for p in FIXTURES.glob("*/expected.json"))


def verdicts(path: str) -> dict[tuple[str, str | None], str]:
    host = SnapshotHost(path)
    try:
        report = run_checks(HostFacts(host), host.source_info())
    finally:
        host.close()
    return {(sr.result.check_id, sr.subject): sr.result.status.value for sr in report.results}


@pytest.mark.parametrize("name", NAMES)
def test_redacted_rerecording_keeps_every_verdict(name: str, tmp_path: Path) -> None:
    src = FIXTURES / name
    host = SnapshotHost(str(src))
    out = tmp_path / "again.tar.gz"
    try:
        info = record(str(out), host, redact=True)
    finally:
        host.close()
    assert info["redactions"] == 0, "the committed fixture holds values redaction replaces"
    before, after = verdicts(str(src)), verdicts(str(out))
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    expected = json.loads((src / "expected.json").read_text())
    gpu = expected.get("gpu")
    ran = {cid for cid, _ in before}  # (another test file may leave a check unregistered; the replay tests hold the rest)
    for cid, status in expected["verdicts"].items():
        if cid not in ran:
            continue
        got = after.get((cid, None), after.get((cid, gpu)))
        assert got == status, f"{cid}: {got} != {status}"


# ---------------------------------------------------------------------------
# binary formats: redacted, and still read the same


def _cpio(entries: list[tuple[str, bytes, int]]) -> bytes:
    from doctor.redact_host import _cpio_entry

    out = bytearray()
    for name, body, mode in entries + [("TRAILER!!!", b"", 0)]:
        _cpio_entry(out, name, body, mode)
    return bytes(out)


def test_initramfs_is_rebuilt_without_secrets_and_reads_the_same() -> None:
    import gzip

    from doctor.facts import parse_initramfs
    from doctor.redact import Redactor
    from doctor.redact_host import redact_file

    secret = b"secret-node17"
    img = gzip.compress(_cpio([
        ("etc", b"", 0o040755),
        ("etc/hostname", secret + b"\n", 0o100644),
        ("etc/machine-id", b"4f0c2d9b8e7a41c3b5d6e7f8091a2b3c\n", 0o100644),
        ("etc/modprobe.d/vfio.conf", b"# on secret-node17 by /home/bob/x\noptions vfio-pci ids=10de:1e84\n", 0o100644),
        ("usr/lib/modules/6.1.0/kernel/drivers/vfio/pci/vfio-pci.ko", b"\x7fELF" + secret, 0o100644),
    ]))
    red = Redactor(["secret-node17"])
    red.add_machine_id("4f0c2d9b8e7a41c3b5d6e7f8091a2b3c")
    out = redact_file(red, "/boot/initrd.img-6.1.0", img)
    assert out is not None and secret not in out and b"bob" not in out and b"4f0c2d9b" not in out
    a, b = parse_initramfs(img, "a"), parse_initramfs(out, "b")
    assert a.names == b.names and b.has_module("vfio_pci")
    assert dict(b.files)["etc/modprobe.d/vfio.conf"] == b"# on host-1 by /home/user-1/x\noptions vfio-pci ids=10de:1e84\n"
    assert redact_file(red, "/boot/initrd.img-6.1.0", b"not an image") is None  # cannot redact: not recorded


def test_config_space_walk_ends_on_a_loop_and_fakes_only_the_dsn() -> None:
    from doctor.redact import Redactor
    from doctor.redact_host import pci_config

    b = bytearray(4096)
    b[0x100:0x104] = (0x0003 | 1 << 16 | 0x100 << 20).to_bytes(4, "little")  # DSN pointing at itself
    b[0x104:0x10C] = bytes(range(1, 9))
    out = pci_config(Redactor(), bytes(b))
    assert out[0x104:0x10C] != bytes(range(1, 9)) and out[:0x104] == bytes(b[:0x104]) and out[0x10C:] == bytes(b[0x10C:])
    assert pci_config(Redactor(), b"\xff" * 64) == b"\xff" * 64  # no extended space: unchanged


def test_route_tables_keep_the_default_route_and_lose_the_addresses() -> None:
    from doctor.facts import parse_default_route_ifaces
    from doctor.redact import Redactor
    from doctor.redact_host import route4, route6

    r4 = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
          "enp3s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
          "enp3s0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n")
    r6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000021122fffe334455 00000400 00000001 00000000 00000003   enp3s0\n"
    red = Redactor()
    a4, a6 = route4(red, r4), route6(red, r6)
    assert "0101A8C0" not in a4 and "0001A8C0" not in a4 and "fffe334455" not in a6
    assert parse_default_route_ifaces(a4, a6) == parse_default_route_ifaces(r4, r6) == ("enp3s0",)
    assert red.text("via 192.168.1.1") == "via " + red.ipv4("192.168.1.1")  # the same fake as in hex


def test_a_driver_named_serial_is_not_a_serial_number() -> None:
    """The lab's 16550 function is bound to the `serial` driver: /sys/bus/pci/drivers/serial lists PCI
    addresses. Learnt as a serial number, 0000:01:00.3 became serial-0001 in the redacted snapshot's
    iommu_groups, and gpu.group_isolated failed on replay (live: pass)."""
    from doctor.redact import Redactor
    from doctor.redact_host import _SERIAL_FILE, redact_file

    assert not _SERIAL_FILE.match("/sys/bus/pci/drivers/serial")
    assert _SERIAL_FILE.match("/sys/class/nvme/nvme0/serial") and _SERIAL_FILE.match("/sys/class/dmi/id/board_serial")
    red = Redactor()
    redact_file(red, "/sys/bus/pci/devices/0000:01:00.3/serial", b"0000:01:00.3\n")
    assert red.text("/sys/kernel/iommu_groups/6/devices/0000:01:00.3") == "/sys/kernel/iommu_groups/6/devices/0000:01:00.3"
    redact_file(red, "/sys/class/nvme/nvme0/serial", b"S4EWNX0R123456\n")
    assert "S4EWNX0R123456" not in red.text("serial S4EWNX0R123456")


def test_a_host_named_vm_with_user_ubuntu_keeps_the_prose() -> None:
    """Seen on a real two-H200 VM guest: hostname `vm`, user `ubuntu` (uid 1000). The report read
    'this host-1 guest' and 'user-1 24.04.3 LTS'. Such names go where the host wrote them, in their case."""
    from doctor.redact import Redactor

    r = Redactor()
    r.add_hostname("vm")
    r.add_user("ubuntu")
    out = r.text("This host is a VM guest running Ubuntu 24.04; root@vm:~# ls /home/ubuntu; Set hostname to <vm>.")
    assert "VM guest" in out and "Ubuntu 24.04" in out
    assert "@vm" not in out and "/home/ubuntu" not in out and "<vm>" not in out
    # gpudoctor's own commands are not the host's name (seen on the H200: "gpudoctor host-1 getty")
    cmd = r.text("fix it with: gpudoctor vm getty --image guest.qcow2; the vm login: prompt")
    assert "gpudoctor vm getty" in cmd and "the vm login" not in cmd


def test_a_usb_root_hubs_serial_number_is_a_pci_address_not_a_secret() -> None:
    """`usb usb1: SerialNumber: 0000:01:00.2` (dmesg; a root hub's serial is its controller's PCI
    address): learnt as a serial, the lab's xHCI function became SERIAL-0001 in a redacted
    snapshot and gpu.group_isolated failed on replay where the live check passed."""
    from doctor.redact import Redactor

    r = Redactor()
    r.learn("[    1.2] usb usb1: SerialNumber: 0000:01:00.2")
    assert r.text("usb usb1: SerialNumber: 0000:01:00.2; /sys/bus/pci/devices/0000:01:00.2") == \
        "usb usb1: SerialNumber: 0000:01:00.2; /sys/bus/pci/devices/0000:01:00.2"
    assert "ABCD1234" not in r.text("serial=ABCD1234")
