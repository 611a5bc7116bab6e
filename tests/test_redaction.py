"""Redaction is a feature: planted identifying values never survive a snapshot or a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from doctor.host import CommandResult
from doctor.redact import Redactor
from doctor.snapshot import DirHost, record

HOSTNAME = "gpu-lab-node42.corp.example.net"
MAC = "3c:7c:3f:1a:2b:9d"
IPV4 = "10.23.45.67"
IPV6 = "fd12:3456:789a:1::42"
UUID = "5f1c2a9e-7b3d-4e21-9c8f-0a1b2c3d4e5f"
SERIAL = "PF2XK9QZ"
SECRETS = [HOSTNAME, "gpu-lab-node42", MAC, MAC.upper(), IPV4, IPV6, UUID, SERIAL]


def planted_host(tmp_path) -> DirHost:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "proc/sys/kernel/hostname").write_text("gpu-lab-node42\n")
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-13-amd64\n")
    (root / "proc/cmdline").write_text(f"BOOT_IMAGE=/vmlinuz root=UUID={UUID} ro ip={IPV4} intel_iommu=on\n")
    (root / "proc/cpuinfo").write_text("vendor_id\t: GenuineIntel\nflags\t\t: vmx\n")
    (root / "etc/default").mkdir()
    (root / "etc/default/grub").write_text(f'GRUB_CMDLINE_LINUX="root=UUID={UUID} intel_iommu=on"\n')
    dmesg = (
        f"[    1.0] r8169 0000:04:00.0 eth0: RTL8168h, {MAC}, XID 541, IRQ 130\n"
        f"[    2.0] usb 1-1: SerialNumber: {SERIAL}\n"
        f"[    3.0] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: {IPV6} link becomes ready\n"
        f"[    4.0] systemd[1]: Set hostname to <{HOSTNAME}>.\n"
        f"[    5.0] eth0: {IPV4} via dhcp\n"
        "[    6.0] DMAR: IOMMU enabled\n"
    )
    lspci = f"0000:04:00.0 Ethernet controller [0200]: Realtek RTL8111 [10ec:8168] (rev 15)\n\tDevice Serial Number {'01-23-45-67-89-ab-cd-ef'}\n"
    cmds = {("dmesg",): CommandResult(("dmesg",), 0, dmesg, ""), ("lspci", "-Dnnk"): CommandResult(("lspci", "-Dnnk"), 0, lspci, "")}
    return DirHost(str(root), cmds)


def all_text(folder: str) -> str:
    chunks = []
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                chunks.append(open(p, "rb").read().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_no_planted_value_survives_a_redacted_snapshot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "snap")
    record(out, planted_host(tmp_path))
    text = all_text(out)
    for s in SECRETS + ["01-23-45-67-89-ab-cd-ef"]:
        assert s.lower() not in text.lower(), s
    # consistent: the same UUID maps to the same fake value in every file
    fake_uuid = "00000000-0000-4000-8000-000000000001"
    assert text.count(fake_uuid) >= 2
    assert "intel_iommu=on" in text and "DMAR: IOMMU enabled" in text  # the facts themselves survive


MACHINE_ID = "4f0c2d9b8e7a41c3b5d6e7f8091a2b3c"


def test_machine_id_is_redacted_in_file_names_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """BLS entries are named <machine-id>-<kver>.conf: the snapshot renames them, consistently
    with the redacted contents, and check still reads the entry."""
    h = planted_host(tmp_path)
    root = tmp_path / "root"
    (root / "etc/machine-id").write_text(MACHINE_ID + "\n")
    (root / "etc/default/grub").unlink()  # a systemd-boot host
    (root / "etc/kernel").mkdir()
    (root / "etc/kernel/cmdline").write_text("root=/dev/sda1 intel_iommu=on vfio-pci.ids=10de:1e84\n")
    (root / "boot/loader/entries").mkdir(parents=True)
    (root / f"boot/loader/entries/{MACHINE_ID}-6.1.0-13-amd64.conf").write_text(
        f"title Debian\nversion 6.1.0-13-amd64\nmachine-id {MACHINE_ID}\nlinux /{MACHINE_ID}/6.1.0-13-amd64/linux\n"
        "options root=/dev/sda1 intel_iommu=on vfio-pci.ids=10de:1e84\n")
    out = str(tmp_path / "snap")
    record(out, h)
    names = [os.path.join(d, n) for d, ds, fs in os.walk(out) for n in ds + fs]
    assert not [n for n in names if MACHINE_ID in n], names
    text = all_text(out)
    assert MACHINE_ID not in text
    fake = [n for n in os.listdir(os.path.join(out, "root/boot/loader/entries"))]
    assert len(fake) == 1 and fake[0].endswith("-6.1.0-13-amd64.conf")
    fid = fake[0][: -len("-6.1.0-13-amd64.conf")]
    assert f"machine-id {fid}" in text and f"linux /{fid}/" in text  # the same fake in names and contents
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert fake[0] in manifest["listed"]["/boot/loader/entries"]
    from doctor.facts import HostFacts
    from doctor.snapshot import SnapshotHost

    entries = HostFacts(SnapshotHost(out)).boot_entries()
    assert [e.path for e in entries] == [f"/boot/loader/entries/{fake[0]}"], entries
    assert "vfio-pci.ids=10de:1e84" in entries[0].options


def test_no_redact_keeps_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "snap")
    record(out, planted_host(tmp_path), redact=False)
    text = all_text(out)
    assert UUID in text and MAC in text and IPV4 in text


def test_reports_are_redacted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "snap")
    record(out, planted_host(tmp_path), redact=False)
    p = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", out, "--json", "-v"],
                       capture_output=True, text=True, check=False)
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)
    assert doc["redacted"] is True
    for s in SECRETS:
        assert s not in p.stdout, s
    term = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", out, "-v"],
                          capture_output=True, text=True, check=False)
    for s in SECRETS:
        assert s not in term.stdout, s
    keep = subprocess.run([sys.executable, "-m", "doctor.cli", "check", "--snapshot", out, "--json", "--no-redact"],
                          capture_output=True, text=True, check=False)
    assert UUID in keep.stdout


def test_ids_times_and_pci_addresses_are_not_mistaken_for_addresses() -> None:
    r = Redactor()
    s = "[    0.007164] 06:44:52 0000:01:00.0 [10de:1e84] vfio_pci: add [10de:1ad9[ffffffff:ffffffff]] 6.1.0-13 version 1.2.3"
    assert r.text(s) == s


@given(st.text(max_size=300))
def test_redaction_is_total_and_idempotent(s: str) -> None:
    r = Redactor(["myhost"])
    once = r.text(s)
    assert r.text(once) == once


def test_redacting_twice_changes_nothing() -> None:
    r = Redactor(["gpu-lab-node42"])
    once = r.text(f"{MAC} {IPV4} {UUID} serial={SERIAL} gpu-lab-node42")
    assert r.text(once) == once
