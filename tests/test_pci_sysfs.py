"""PCI devices come from sysfs and the system's pci.ids / modules.alias, without spawning lspci; a
snapshot's recorded `lspci -Dnnk` fills in what it did not record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doctor.errors import FactUnknown
from doctor.facts import HostFacts
from doctor.facts.pci_ids import modalias_modules, parse_pci_aliases, pci_ids_name
from doctor.host import CommandResult
from doctor.snapshot import DirHost, SnapshotHost

PCI_IDS = b"""# comment
10de  NVIDIA Corporation
\t1e84  TU104 [GeForce RTX 2070 SUPER]
\t\t10de 139f  some subsystem
\t10f8  TU104 HD Audio Controller
8086  Intel Corporation
\t3e92  CoffeeLake-S GT2 [UHD Graphics 630]
C 03  Display controller
\t00  VGA compatible controller
"""
ALIASES = """alias pci:v000010DEd*sv*sd*bc03sc00i00* nouveau
alias pci:v000010DEd*sv*sd*bc03sc00i00* nvidiafb
alias pci:v00008086d00003E92sv*sd*bc03sc*i* i915
alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci
alias usb:v*p*d*dc*dsc*dp*ic09isc*ip*in* usbcore
"""
MODALIAS = "pci:v000010DEd00001E84sv000010DEsd0000139Fbc03sc00i00"


def test_pci_ids_name_is_what_lspci_prints() -> None:
    assert pci_ids_name(PCI_IDS, "10de", "1e84") == "NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER]"
    assert pci_ids_name(PCI_IDS, "10DE", "10f8") == "NVIDIA Corporation TU104 HD Audio Controller"
    assert pci_ids_name(PCI_IDS, "10de", "3e92") == "NVIDIA Corporation Device"  # not NVIDIA's: Intel's id
    assert pci_ids_name(PCI_IDS, "8086", "3e92") == "Intel Corporation CoffeeLake-S GT2 [UHD Graphics 630]"
    assert pci_ids_name(PCI_IDS, "1234", "5678") is None
    assert pci_ids_name(PCI_IDS, "139f", "0000") is None  # a subsystem line is no vendor
    blocks: dict[str, tuple[str, int, int]] = {}
    for _ in range(2):  # the second round reads the vendor blocks from the cache
        assert pci_ids_name(PCI_IDS, "10de", "10f8", blocks) == "NVIDIA Corporation TU104 HD Audio Controller"
        assert pci_ids_name(PCI_IDS, "8086", "3e92", blocks) == "Intel Corporation CoffeeLake-S GT2 [UHD Graphics 630]"
        assert pci_ids_name(PCI_IDS, "8086", "0000", blocks) == "Intel Corporation Device"
    assert set(blocks) == {"10de", "8086"}


def test_modalias_matches_like_libkmod() -> None:
    aliases = parse_pci_aliases(ALIASES, {"10de"})
    assert modalias_modules(aliases, MODALIAS) == ("nouveau", "nvidiafb")
    assert modalias_modules(parse_pci_aliases(ALIASES, {"8086"}), MODALIAS.replace("10DE", "8086")) == ()
    assert modalias_modules(aliases, "pci:v00001B21d00001242sv00001B21sd00001242bc0Csc03i30") == ("xhci_pci",)


class CountingHost(DirHost):
    def __init__(self, root: str) -> None:
        super().__init__(root, {("lspci", "-Dnnk"): CommandResult(("lspci", "-Dnnk"), 0, "", "", True, False)})
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv, timeout=10.0):  # type: ignore[no-untyped-def]
        self.ran.append(tuple(argv))
        return super().run(argv, timeout)


def _root(tmp: Path, modules_alias: bool = True) -> Path:
    dev = tmp / "sys/bus/pci/devices/0000:01:00.0"
    dev.mkdir(parents=True)
    for k, v in {"class": "0x030000", "vendor": "0x10de", "device": "0x1e84", "subsystem_vendor": "0x10de",
                 "subsystem_device": "0x139f", "revision": "0xa1", "boot_vga": "0", "driver_override": "(null)",
                 "modalias": MODALIAS}.items():
        (dev / k).write_text(v + "\n")
    (tmp / "sys/bus/pci/drivers/vfio-pci").mkdir(parents=True)
    (tmp / "sys/kernel/iommu_groups/7").mkdir(parents=True)
    os.symlink("../../../bus/pci/drivers/vfio-pci", dev / "driver")
    os.symlink("../../../kernel/iommu_groups/7", dev / "iommu_group")
    (tmp / "proc/sys/kernel").mkdir(parents=True)
    (tmp / "proc/sys/kernel/osrelease").write_text("6.8.0-test\n")
    if modules_alias:
        (tmp / "lib/modules/6.8.0-test").mkdir(parents=True)
        (tmp / "lib/modules/6.8.0-test/modules.alias").write_text(ALIASES)
    (tmp / "usr/share/misc").mkdir(parents=True)
    (tmp / "usr/share/misc/pci.ids").write_bytes(PCI_IDS)
    return tmp


def test_a_live_host_is_read_from_sysfs_without_spawning_lspci(tmp_path: Path) -> None:
    host = CountingHost(os.fspath(_root(tmp_path)))
    d = HostFacts(host).pci_devices()["0000:01:00.0"]
    assert (d.vendor, d.device, d.class_hex, d.subsystem, d.revision) == ("10de", "1e84", "0300", "10de:139f", "a1")
    assert (d.driver, d.iommu_group, d.boot_vga, d.driver_override) == ("vfio-pci", "7", False, None)
    assert d.name == "NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER]"
    assert d.kernel_modules == ("nouveau", "nvidiafb")
    assert host.ran == []


def test_no_modules_alias_means_no_modules_not_an_lspci_run(tmp_path: Path) -> None:
    host = CountingHost(os.fspath(_root(tmp_path, modules_alias=False)))
    d = HostFacts(host).pci_devices()["0000:01:00.0"]
    assert d.kernel_modules == ()  # bound to vfio-pci and nothing to match the modalias against
    assert host.ran == []


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.parametrize("name", ["seed-partial", "distro-debian-grub"])
def test_a_snapshot_takes_names_and_modules_from_its_recorded_lspci(name: str) -> None:
    snap = SnapshotHost(os.fspath(FIXTURES / name))
    from doctor.facts import parse_lspci_nnk

    listed = {e.address: e for e in parse_lspci_nnk(snap.run(["lspci", "-Dnnk"]).stdout)}
    devs = HostFacts(snap).pci_devices()
    assert devs
    for addr, d in devs.items():
        if addr in listed:
            assert d.name == listed[addr].name
            if listed[addr].modules:
                assert d.kernel_modules == listed[addr].modules


def test_an_attribute_a_snapshot_did_not_record_is_unknown(tmp_path: Path) -> None:
    snap = SnapshotHost(os.fspath(FIXTURES / "seed-partial"))
    snap.captured = [p for p in snap.captured if p != "/sys/bus/pci/devices/*/boot_vga"]
    with pytest.raises(FactUnknown, match="boot_vga"):
        HostFacts(snap).pci_devices()
