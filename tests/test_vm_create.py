"""`gpudoctor vm create|cleanup`: golden domain XML per case, each valid for libvirt's schema
(virt-xml-validate), and the call sequence against libvirt's test:///default driver."""

from __future__ import annotations

import os
import shutil
import subprocess
from argparse import Namespace
from pathlib import Path
from typing import Any

import libvirt  # the `test` extra installs libvirt-python: never skipped
import pytest

from doctor.cli import main
from doctor.errors import OptionRomUnreadable
from doctor.facts import PciDevice
from doctor.model import SourceInfo
from doctor.vm.cli import plan_create
from doctor.vm.domxml import CreatedVolume, parse_domain
from doctor.vm.libvirt_api import deletable_volumes
from doctor.vm.xml import build_xml
from tests.factory import FakeFacts

FIX = Path(__file__).parent.parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden" / "vm"
TEST_URI = "test:///default"


@pytest.fixture
def iso(tmp_path: Path) -> str:
    p = tmp_path / "install.iso"
    p.write_bytes(b"\0" * 0x8001 + b"CD001" + b"\0" * 2043)
    return str(p)


@pytest.fixture
def disk(tmp_path: Path) -> str:
    p = tmp_path / "guest.raw"
    p.write_bytes(b"\0" * 4096)
    return str(p)


def _xml(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["vm", "create", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _domain_xml(out: str) -> str:
    return "".join(ln + "\n" for ln in out.splitlines() if not ln.startswith("#"))


def _validate(xml: str, tmp_path: Path) -> None:
    f = tmp_path / "domain.xml"
    f.write_text(xml)
    p = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _golden(name: str, xml: str, tmp_path: Path) -> None:
    text = xml.replace(str(tmp_path), "@TMP@")
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("GPUDOCTOR_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name}: XML differs from {path} (GPUDOCTOR_UPDATE_GOLDEN=1 rewrites it)"


CASES = {
    # name: (fixture, gpu, extra args); seed-bound: the notes' 4-function Turing card, distro-fedora-bls: Navi 21 + audio
    "nvidia-4fn-bios": ("seed-bound", "0000:01:00.0", ["--firmware", "bios", "--iso", "@ISO", "--disk", "@DISK"]),
    "nvidia-4fn-uefi": ("seed-bound", "0000:01:00.0", ["--firmware", "uefi", "--disk-size", "40", "--pool", "default-pool"]),
    "amd-2fn-uefi": ("distro-fedora-bls", "0000:05:00.0", ["--firmware", "uefi", "--iso", "@ISO", "--memory", "8192"]),
    "amd-2fn-bios": ("distro-fedora-bls", "0000:05:00.0", ["--firmware", "bios", "--network", "none", "--vcpus", "2"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_domain_xml_is_valid_libvirt(case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            iso: str, disk: str) -> None:
    fixture, gpu, extra = CASES[case]
    extra = [iso if a == "@ISO" else disk if a == "@DISK" else a for a in extra]
    rc, out, err = _xml(capsys, f"g-{case}", "--gpu", gpu, "--snapshot", str(FIX / fixture), *extra)
    assert rc == 0, err
    xml = _domain_xml(out)
    _validate(xml, tmp_path)
    _golden(case, xml, tmp_path)
    d = parse_domain(xml, case)
    assert d.machine == "q35"
    unit = 4 if case.startswith("nvidia") else 2
    assert [h.guest for h in d.hostdevs] == [f"01:00.{i}" for i in range(unit)]  # one slot, function numbers kept
    assert all(h.managed for h in d.hostdevs)
    assert 'multifunction="on"' in xml and xml.count("multifunction") == 1
    assert d.kvm_hidden == case.startswith("nvidia") and (d.vendor_id is not None) == case.startswith("nvidia")
    assert ('firmware="efi"' in xml) == case.endswith("uefi")
    assert '<controller type="usb" model="none" />' in xml and '<memballoon model="none" />' in xml
    assert "<console type=\"pty\">" in xml and 'graphics type="vnc"' in xml
    assert "# ✓ vm.hostdevs_cover_unit" in out and "# ✓ vm.machine_q35" in out


def test_datacenter_card_with_unreadable_rom_gets_rom_bar_off_and_no_hiding(tmp_path: Path) -> None:
    h100 = PciDevice("0000:41:00.0", 0x030200, "10de", "2331", None, "a1", "vfio-pci", "7", False,
                     name="NVIDIA Corporation GH100 [H100 PCIe]")

    class Facts(FakeFacts):
        def option_rom(self, address: str) -> bytes:
            raise OptionRomUnreadable(f"/sys/bus/pci/devices/{address}/rom", "read failed: Input/output error")

    facts = Facts(pci=[h100])
    args = Namespace(name="dc", gpu="41:00.0", memory=4096, vcpus=4, firmware="uefi", iso=None, disk=None, disk_size=None,
                     pool="default", network="default", virt_type="kvm")
    spec, notes, failing = plan_create(args, facts, SourceInfo("test", "factory"))
    xml = build_xml(spec)
    _validate(xml, tmp_path)
    _golden("nvidia-1fn-datacenter-romoff", xml, tmp_path)
    assert '<rom bar="off" />' in xml and "Cannot read device rom" in xml
    assert "<hidden" not in xml and "multifunction" not in xml
    assert any("datacenter" in n for n in notes)


def test_a_gpu_whose_host_checks_fail_is_refused_and_named_unless_forced(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _xml(capsys, "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "seed-before"))
    assert rc == 1
    assert "iommu.active" in err and "cmdline.iommu_enabled" in err and "refusing" in err
    rc, out, err = _xml(capsys, "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "seed-before"), "--force")
    assert rc == 0 and "iommu.active" in err and "Dry run" in err


def test_never_takes_a_device_outside_the_card(capsys: pytest.CaptureFixture[str]) -> None:
    """lab-intel-shared-group: the card's group also holds a NIC (02:00.0): refused, and even forced the
    domain gets the card's four functions only."""
    rc, out, err = _xml(capsys, "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "lab-intel-shared-group"))
    assert rc == 1 and "gpu.group_isolated" in err
    rc, out, err = _xml(capsys, "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "lab-intel-shared-group"), "--force")
    assert rc == 0
    srcs = [h.source for h in parse_domain(_domain_xml(out), "x").hostdevs]
    assert srcs == [f"0000:01:00.{i}" for i in range(4)]


def _bad(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    rc = main(["vm", *args])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpudoctor: error: ") and "Traceback" not in err, err
    return lines[0]


def test_bad_inputs_are_one_line_errors_with_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, iso: str) -> None:
    snap = ["--snapshot", str(FIX / "seed-bound")]
    base = ["create", "g1", "--gpu", "0000:01:00.0", *snap]
    assert "NAME" in _bad(capsys, tmp_path, "create", "../etc", "--gpu", "01:00.0", *snap)
    assert "NAME" in _bad(capsys, tmp_path, "create", "a" * 65, "--gpu", "01:00.0", *snap)
    assert "--memory 64" in _bad(capsys, tmp_path, *base, "--memory", "64")
    assert "--vcpus 0" in _bad(capsys, tmp_path, *base, "--vcpus", "0")
    assert "--disk-size 0" in _bad(capsys, tmp_path, *base, "--disk-size", "0")
    assert "not a regular file" in _bad(capsys, tmp_path, *base, "--iso", str(tmp_path))
    assert "No such file" in _bad(capsys, tmp_path, *base, "--iso", str(tmp_path / "nope.iso"))
    plain = tmp_path / "notes.txt"
    plain.write_text("hello\n")
    assert "not an ISO 9660" in _bad(capsys, tmp_path, *base, "--iso", str(plain))
    assert "No such file" in _bad(capsys, tmp_path, *base, "--disk", str(tmp_path / "nope.qcow2"))
    assert "no such PCI device" in _bad(capsys, tmp_path, "create", "g1", "--gpu", "0000:09:00.0", *snap)
    assert "not a GPU" in _bad(capsys, tmp_path, "create", "g1", "--gpu", "0000:01:00.1", *snap)
    assert "--gpu" in _bad(capsys, tmp_path, "create", "g1", "--gpu", "zz:zz", *snap)
    assert "--start needs" in _bad(capsys, tmp_path, *base, "--start")
    assert "--snapshot plans only" in _bad(capsys, tmp_path, *base, "--apply", "--yes")
    assert "add --yes" in _bad(capsys, tmp_path, *base, "--connect", TEST_URI, "--apply")
    assert "no domain named" in _bad(capsys, tmp_path, "cleanup", "nosuch", "--connect", TEST_URI)


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """test:///default keeps its state while one connection stays open: hold one for the test."""
    monkeypatch.setenv("GPUDOCTOR_STATE_DIR", str(tmp_path / "state"))
    c = libvirt.open(TEST_URI)
    yield c
    for d in c.listAllDomains():
        if d.name().startswith("g"):
            if d.isActive():
                d.destroy()
            d.undefine()
    c.close()


def _vols(conn: Any) -> list[str]:
    return sorted(conn.storagePoolLookupByName("default-pool").listVolumes())


def test_create_start_cleanup_call_sequence_on_libvirts_test_driver(conn: Any, capsys: pytest.CaptureFixture[str],
                                                                     iso: str, tmp_path: Path) -> None:
    before = _vols(conn)
    rc, out, err = _xml(capsys, "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "seed-bound"), "--connect", TEST_URI,
                        "--iso", iso, "--disk-size", "8", "--pool", "default-pool", "--apply", "--yes", "--start")
    assert rc == 0, err
    assert "created volume default-pool/g1-gpudoctor.qcow2" in out and "defined g1" in out and "started g1 (running)" in out
    dom = conn.lookupByName("g1")
    assert dom.isActive()
    live = parse_domain(dom.XMLDesc(0), "g1")
    assert [h.source for h in live.hostdevs] == [f"0000:01:00.{i}" for i in range(4)]
    assert live.created == (CreatedVolume("default-pool", "g1-gpudoctor.qcow2"),)
    assert _vols(conn) == sorted([*before, "g1-gpudoctor.qcow2"])
    # a second create of the same name is refused, nothing changes
    assert main(["vm", "create", "g1", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "seed-bound"), "--connect", TEST_URI,
                 "--apply", "--yes"]) == 2
    capsys.readouterr()
    dom.suspend()  # paused, as a domain paused on an I/O error is
    assert main(["vm", "cleanup", "g1", "--connect", TEST_URI]) == 0  # dry run
    out, _ = capsys.readouterr()
    assert "destroy g1 (now paused)" in out and f"keep: {iso}: install ISO" in out and conn.lookupByName("g1").isActive()
    assert main(["vm", "cleanup", "g1", "--connect", TEST_URI, "--apply", "--yes"]) == 0
    out, _ = capsys.readouterr()
    assert "destroyed g1" in out and "undefined" in out and "deleted volume default-pool/g1-gpudoctor.qcow2" in out
    assert "g1" not in [d.name() for d in conn.listAllDomains()]
    assert _vols(conn) == before
    assert os.path.isfile(iso)
    assert "0000:01:00.3: not read (libvirt's test driver touches no device)" in out


def test_cleanup_keeps_a_volume_gpudoctor_did_not_record(conn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A domain whose metadata was edited to name someone else's volume: cleanup keeps that volume."""
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>precious.img</name><capacity unit='MiB'>1</capacity></volume>", 0)
    try:
        rc, out, err = _xml(capsys, "g2", "--gpu", "0000:05:00.0", "--snapshot", str(FIX / "distro-fedora-bls"),
                            "--connect", TEST_URI, "--apply", "--yes", "--force")
        assert rc == 0, err
        xml = conn.lookupByName("g2").XMLDesc(0).replace(
            "</devices>", "<disk type='volume' device='disk'><source pool='default-pool' volume='precious.img'/>"
                          "<target dev='sdc' bus='sata'/></disk></devices>").replace(
            "</name>", "</name><metadata><gpudoctor:created xmlns:gpudoctor='https://gpudoctor.invalid/xmlns/libvirt/1'>"
                       "<gpudoctor:volume pool='default-pool' name='precious.img'/></gpudoctor:created></metadata>", 1)
        conn.defineXML(xml)
        assert main(["vm", "cleanup", "g2", "--connect", TEST_URI, "--apply", "--yes"]) == 0
        out, _ = capsys.readouterr()
        assert "default-pool/precious.img: named in the domain's metadata but not in gpudoctor's record: kept" in out
        assert "precious.img" in _vols(conn)
    finally:
        pool.storageVolLookupByName("precious.img").delete(0)


def test_deletable_volumes_never_takes_a_cdrom_or_an_unrecorded_volume() -> None:
    xml = ("<domain type='kvm'><name>v</name><metadata><g:created xmlns:g='https://gpudoctor.invalid/xmlns/libvirt/1'>"
           "<g:volume pool='p' name='disk.qcow2'/><g:volume pool='p' name='win.iso'/><g:volume pool='p' name='other'/>"
           "</g:created></metadata><os><type machine='q35'>hvm</type></os><devices>"
           "<disk type='volume' device='disk'><source pool='p' volume='disk.qcow2'/><target dev='sda'/></disk>"
           "<disk type='volume' device='cdrom'><source pool='p' volume='win.iso'/><target dev='sdb'/></disk>"
           "</devices></domain>")
    d = parse_domain(xml, "v")
    rec = [CreatedVolume("p", "disk.qcow2"), CreatedVolume("p", "win.iso"), CreatedVolume("p", "other")]
    keep, why = deletable_volumes(d, rec)
    assert keep == [CreatedVolume("p", "disk.qcow2")]
    assert any("win.iso" in w and "not attached" in w for w in why) and any("other" in w for w in why)
    keep, _ = deletable_volumes(d, [])
    assert keep == []


def test_virt_xml_validate_is_installed() -> None:
    assert shutil.which("virt-xml-validate") and shutil.which("xmllint"), "bash scripts/test.sh installs libvirt-clients, libxml2-utils"


def test_a_tcg_guest_does_not_need_kvm_on_the_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """lab-intel-partial (recorded in a lab guest: no vmx, no /dev/kvm): refused for a KVM domain,
    planned for --virt-type qemu (TCG), whose XML then asks for no host-passthrough CPU."""
    args = ["lab-gd", "--gpu", "0000:01:00.0", "--snapshot", str(FIX / "lab-intel-partial"), "--firmware", "bios",
            "--network", "none", "--memory", "256", "--vcpus", "1"]
    rc, out, err = _xml(capsys, *args)
    assert rc == 1 and "cpu.virtualization" in err and "kvm.available" in err
    rc, out, err = _xml(capsys, *args, "--virt-type", "qemu")
    assert rc == 0, err
    xml = _domain_xml(out)
    _validate(xml, tmp_path)
    assert '<domain type="qemu">' in xml and "host-passthrough" not in xml
    assert "# kvm.available fails, not needed for this VM" in out


def test_a_volume_of_that_name_already_in_the_pool_is_refused_and_kept(conn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>g3-gpudoctor.qcow2</name><capacity unit='MiB'>1</capacity></volume>", 0)
    try:
        rc = main(["vm", "create", "g3", "--gpu", "0000:05:00.0", "--snapshot", str(FIX / "distro-fedora-bls"), "--force",
                   "--connect", TEST_URI, "--disk-size", "4", "--pool", "default-pool", "--apply", "--yes"])
        _, err = capsys.readouterr()
        assert rc == 2 and "volume g3-gpudoctor.qcow2 already exists in pool default-pool" in err
        assert "g3" not in [d.name() for d in conn.listAllDomains()]
        assert pool.storageVolLookupByName("g3-gpudoctor.qcow2").info()[1] == 1024 * 1024  # untouched
    finally:
        pool.storageVolLookupByName("g3-gpudoctor.qcow2").delete(0)


def test_a_unit_function_the_host_runs_on_is_refused_even_with_force(capsys: pytest.CaptureFixture[str]) -> None:
    from doctor.facts import BlockDevice, Mount
    from doctor.vm.cli import host_keeps
    from tests.factory import card

    class Facts(FakeFacts):
        def mounts(self):  # type: ignore[no-untyped-def]
            return (Mount("/dev/sda1", "/", "ext4"),)

        def block_devices(self):  # type: ignore[no-untyped-def]
            return {"sda1": BlockDevice("sda1", "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.2/usb1/sda/sda1")}

    f = Facts(pci=card())
    assert host_keeps(f, [d.address for d in card()]) == ["0000:01:00.2 holds mounted filesystems: / (/dev/sda1, ext4)"]
    assert host_keeps(FakeFacts(pci=card()), ["0000:01:00.0"]) == []  # unknown mounts: nothing claimed
    from doctor.vm.cli import HostKeeps

    args = Namespace(name="k", gpu="01:00.0", memory=4096, vcpus=4, firmware="bios", iso=None, disk=None, disk_size=None,
                     pool="default", network="default", virt_type="kvm")
    with pytest.raises(HostKeeps, match="even with --force"):
        plan_create(args, f, SourceInfo("test", "factory"))
