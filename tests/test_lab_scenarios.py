"""Every lab guest's QEMU command line names a CPU vendor that matches its IOMMU (GenuineIntel
with intel-iommu, AuthenticAMD with amd-iommu), except the one scenario that mismatches them
on purpose. Nothing is booted: the argv is built as the lab would run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import vm
from lab.cache import Kernel
from lab.disk import AMD_PLATFORM, INTEL_PLATFORM, Machine
from lab.scenarios import MISMATCHED, SCENARIOS, Scenario
from lab.scenarios_fleet import FLEET_SCENARIOS
from lab.scenarios_forecast import FORECAST_SCENARIOS, disk_in_group

VENDOR_OF_IOMMU = {"intel-iommu": "GenuineIntel", "amd-iommu": "AuthenticAMD"}
IOMMU_OF_SCENARIO = {"intel": "intel-iommu", "amd": "amd-iommu"}


def _values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def platform(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the -cpu option's vendor=, or None when no vendor is named; the IOMMU devices)."""
    cpus = _values(argv, "-cpu")
    assert len(cpus) <= 1, cpus
    opts = cpus[0].split(",")[1:] if cpus else []
    vendor = next((o.split("=", 1)[1] for o in opts if o.startswith("vendor=")), None)
    iommus = [d.split(",")[0] for d in _values(argv, "-device") if d.split(",")[0] in VENDOR_OF_IOMMU]
    return vendor, iommus


def mismatch(argv: list[str]) -> str | None:
    """Why the CPU vendor and the IOMMU disagree, or None when they agree."""
    vendor, iommus = platform(argv)
    if len(iommus) != 1:
        return f"expected one IOMMU device, found {iommus}"
    want = VENDOR_OF_IOMMU[iommus[0]]
    if vendor != want:
        return f"{iommus[0]} with CPU vendor {vendor or '(not named: qemu64 says AuthenticAMD)'}, not {want}"
    return None


def _direct(sc: Scenario, tmp_path: Path) -> list[str]:
    return vm.qemu_command(sc, Kernel("6.1.0-lab", tmp_path / "kernel"), tmp_path / "initrd", tmp_path)


DIRECT = {**SCENARIOS, **FORECAST_SCENARIOS, "intel-disk-in-group": disk_in_group(Path("/nonexistent.raw"))}


@pytest.mark.parametrize("name", sorted(n for n in DIRECT if n not in MISMATCHED))
def test_direct_kernel_guest_cpu_vendor_matches_its_iommu(name: str, tmp_path: Path) -> None:
    sc = DIRECT[name]
    argv = _direct(sc, tmp_path)
    assert mismatch(argv) is None, f"{name}: {mismatch(argv)}"
    assert platform(argv)[1] == [IOMMU_OF_SCENARIO[sc.iommu]], (name, sc.iommu)


@pytest.mark.parametrize("platform_argv", [INTEL_PLATFORM, AMD_PLATFORM], ids=["intel", "amd"])
def test_disk_machine_cpu_vendor_matches_its_iommu(platform_argv: list[str]) -> None:
    with Machine(Path("/nonexistent.raw"), name="argv-only", platform=platform_argv, overlay=False) as m:
        argv = m.qemu_command(1)
    assert mismatch(argv) is None, mismatch(argv)


def test_disk_machine_default_is_intel_with_an_intel_cpu() -> None:
    with Machine(Path("/nonexistent.raw"), name="argv-only", overlay=False) as m:
        assert platform(m.qemu_command(1)) == ("GenuineIntel", ["intel-iommu"])


def test_the_deliberate_mismatch_is_intel_iommu_on_an_amd_cpu_with_intel_iommu_off(tmp_path: Path) -> None:
    assert MISMATCHED == {"intel-on-amd-cpu"}
    sc = SCENARIOS["intel-on-amd-cpu"]
    argv = _direct(sc, tmp_path)
    assert platform(argv) == ("AuthenticAMD", ["intel-iommu"])
    assert mismatch(argv) is not None
    assert "intel_iommu=off" in _values(argv, "-append")[0].split()
    assert sc.iommu == "intel" and not sc.iommu_enabled


def test_an_unnamed_vendor_is_a_mismatch_even_on_amd() -> None:
    # QEMU's qemu64 is AuthenticAMD by default; the lab still says so explicitly.
    assert mismatch(["-cpu", "qemu64", "-device", "amd-iommu,intremap=on"]) is not None
    assert mismatch(["-device", "intel-iommu"]) is not None
    assert mismatch(["-cpu", "qemu64,vendor=AuthenticAMD", "-device", "amd-iommu"]) is None


@pytest.mark.parametrize("name", sorted(FLEET_SCENARIOS))
def test_fleet_scenarios_without_an_iommu_still_name_their_platforms_vendor(name: str, tmp_path: Path) -> None:
    """A scenario with no IOMMU device (VT-d off in firmware) has nothing to disagree with, but its
    CPU still says the vendor of the platform it stands for."""
    sc = FLEET_SCENARIOS[name]
    vendor, iommus = platform(_direct(sc, tmp_path))
    assert iommus == [] and not sc.iommu_enabled
    assert vendor == VENDOR_OF_IOMMU[IOMMU_OF_SCENARIO[sc.iommu]]


def test_no_network_unless_asked(tmp_path: Path) -> None:
    argv = _direct(SCENARIOS["intel-partial"], tmp_path)
    assert _values(argv, "-nic") == ["none"] and "-netdev" not in argv


def test_ssh_port_forwards_loopback_only_to_the_guests_port_22(tmp_path: Path) -> None:
    sc = SCENARIOS["intel-partial"]
    argv = vm.qemu_command(sc, Kernel("6.1.0-lab", tmp_path / "kernel"), tmp_path / "initrd", tmp_path, ssh_port=40022)
    assert "-nic" not in argv
    (netdev,) = _values(argv, "-netdev")
    opts = netdev.split(",")
    assert opts[0] == "user" and "restrict=on" in opts
    assert [o for o in opts if o.startswith("hostfwd=")] == ["hostfwd=tcp:127.0.0.1:40022-:22"]
    # one NIC at its fixed slot; the scenario's own devices follow unchanged
    assert _values(argv, "-device") == [f"e1000e,netdev=lan0,addr={vm.NIC_SLOT}", *_values(sc.qemu_devices, "-device")]
    assert mismatch(argv) is None


@pytest.mark.parametrize("port", [0, 65536, -1, "22", True, 22.0])
def test_ssh_port_must_be_a_tcp_port(port: object, tmp_path: Path) -> None:
    from lab.errors import LabError

    with pytest.raises(LabError, match="not a TCP port"):
        vm.nic_args(port)  # type: ignore[arg-type]
