"""Issue 12: no plan, ever, configures for vfio-pci a device the host runs on or a function
outside the GPU's passthrough unit; the unit is derived (an APU's SoC functions are not the
GPU's); --gpu takes display-class functions only."""

from __future__ import annotations

import os

import pytest

from doctor.errors import BadInput
from doctor.facts import BlockDevice, Mount, NetInterface, PciDevice
from doctor.fixer import build_plan
from doctor.model import SourceInfo, Status
from doctor.passthrough import configured_targets, guard, host_keeps, passthrough_unit, refusal
from doctor.plan import Bind, FileEdit
from doctor.runner import run_checks, select_gpus
from doctor.snapshot import SnapshotHost
from tests.factory import card, igpu, root_port
from tests.test_forecast import host

HERE = os.path.dirname(__file__)
FIX = os.path.join(HERE, "..", "fixtures")

GPU = "0000:01:00.0"
NIC = PciDevice("0000:01:00.4", 0x020000, "8086", "10d3", None, "00", "e1000e", "1", kernel_modules=("e1000e",))
NIC_OTHER_SLOT = PciDevice("0000:04:00.0", 0x020000, "8086", "10d3", None, "00", "e1000e", "1", kernel_modules=("e1000e",))
NVME = PciDevice("0000:03:00.0", 0x010802, "144d", "a80a", None, "00", "nvme", "1", kernel_modules=("nvme",))
SWITCH = PciDevice("0000:02:00.0", 0x060400, "10b5", "8747", None, "00", "pcieport", "1")


def _nic_host(nic: PciDevice, default: bool = True, **over):  # type: ignore[no-untyped-def]
    path = f"/sys/devices/pci0000:00/0000:00:01.0/{nic.address}/net/eth0"
    base = dict(pci=[root_port(), *card(), nic, igpu()], mounts=(Mount("proc", "/proc", "proc"),), block_devices={},
                net_interfaces={"eth0": NetInterface("eth0", path)},
                default_route=("eth0",) if default else (), routed=("eth0",))
    base.update(over)
    return host(**base)


def _disk_host(**over):  # type: ignore[no-untyped-def]
    path = "/sys/devices/pci0000:00/0000:00:01.0/0000:02:00.0/0000:03:00.0/nvme/nvme0/nvme0n1/nvme0n1p2"
    base = dict(pci=[root_port(), SWITCH, *card(), NVME, igpu()], mounts=(Mount("/dev/nvme0n1p2", "/", "ext4"),),
                block_devices={"nvme0n1p2": BlockDevice("nvme0n1p2", path)}, net_interfaces={}, default_route=(), routed=())
    base.update(over)
    return host(**base)


def _console_host(**over):  # type: ignore[no-untyped-def]
    vga = card()[0]
    only = [PciDevice(d.address, d.class_code, d.vendor, d.device, None, "a1", d.driver, "1", d.address == vga.address,
                      kernel_modules=d.kernel_modules) for d in card()]
    base = dict(pci=[root_port(), *only], mounts=(Mount("proc", "/proc", "proc"),), block_devices={}, net_interfaces={},
                default_route=(), routed=())
    base.update(over)
    return host(**base)


PROTECTED = {
    "default-route NIC in the card's slot": (lambda: _nic_host(NIC), NIC.address, "carries the default route"),
    "default-route NIC in another slot of the group": (lambda: _nic_host(NIC_OTHER_SLOT), NIC_OTHER_SLOT.address, "default route"),
    "NIC of a configured interface": (lambda: _nic_host(NIC_OTHER_SLOT, default=False), NIC_OTHER_SLOT.address, "configured interface"),
    "root disk's NVMe behind a switch": (_disk_host, NVME.address, "holds mounted filesystems"),
    "the only display (console)": (_console_host, GPU, "only display"),
}


def _targets(plan, facts) -> set[str]:  # type: ignore[no-untyped-def]
    devs = facts.pci_devices()
    out: set[str] = set()
    for a in plan.actions:
        if isinstance(a, Bind):
            out.add(a.address)
        elif isinstance(a, FileEdit):
            old = a.old.decode() if a.old is not None else None
            out |= {addr for addr, (_, strong) in configured_targets(a.path, a.new.decode(), devs, old).items() if strong}
    return out


@pytest.mark.parametrize("kind", sorted(PROTECTED))
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("builtin_vfio", [False, True])
def test_no_plan_configures_what_the_host_runs_on(kind: str, force: bool, builtin_vfio: bool) -> None:
    make, protected, why = PROTECTED[kind]
    facts = make()
    if builtin_vfio:  # the ids go on the kernel command line (vfio-pci.ids=) instead of modprobe.d
        from doctor.facts import ModuleState

        facts.given["modules"] = ModuleState(frozenset({"kvm", "kvm_intel"}), frozenset({"vfio_pci"}),
                                             frozenset({"vfio_pci", "vfio", "vfio_iommu_type1"}))
    rep = run_checks(facts, SourceInfo("test", "x"), gpu=GPU)
    plan = build_plan(rep, SnapshotHost(os.path.join(FIX, "seed-partial")), force=force)
    # nothing the plan writes or binds names the protected device (or any device outside the unit)
    unit = passthrough_unit(facts, facts.pci_devices()[GPU])
    got = _targets(plan, facts)
    assert protected not in got, (kind, got, plan.explanations)
    assert got <= set(unit.addresses), (got, unit.addresses)
    said = " ".join(w for _, w in plan.explanations)
    assert why in said and "nothing" in said or "refusing" in said, said


@pytest.mark.parametrize("kind", sorted(PROTECTED))
def test_the_guard_blocks_every_remediation_shape_naming_the_protected_device(kind: str) -> None:
    """Whatever a remediation writes (an ids= line, a softdep, vfio-pci.ids= on the command line,
    an address in an initramfs script, a runtime bind), the guard refuses it for a protected device."""
    make, protected, why = PROTECTED[kind]
    facts = make()
    d = facts.pci_devices()[protected]
    drv = (d.kernel_modules or (d.driver,))[0]
    shapes = [
        Bind(("t",), "bind", "now", address=protected, previous_driver=d.driver),
        FileEdit(("t",), "ids", "next boot", path="/etc/modprobe.d/vfio.conf", new=f"options vfio-pci ids={d.ident}\n".encode()),
        FileEdit(("t",), "softdep", "next boot", path="/etc/modprobe.d/vfio.conf", new=f"softdep {drv} pre: vfio-pci\n".encode()),
        FileEdit(("t",), "cmdline", "next boot", path="/etc/default/grub",
                 new=f'GRUB_CMDLINE_LINUX="quiet vfio-pci.ids={d.ident}"\n'.encode()),
        FileEdit(("t",), "script", "next boot", path="/etc/initramfs-tools/scripts/init-top/x",
                 new=f"for dev in {protected}; do echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; done\n".encode()),
    ]
    units = [passthrough_unit(facts, facts.pci_devices()[GPU])]
    for force in (False, True):
        blocked = guard(shapes, facts, units, force)
        assert {b.index for b in blocked if b.address == protected} == set(range(len(shapes))), (kind, blocked)
        assert all(why in b.why for b in blocked if b.address == protected)


def test_refusal_names_the_choices_for_a_shared_group() -> None:
    facts = _nic_host(NIC_OTHER_SLOT)
    why = refusal(facts, facts.pci_devices()[GPU]) or ""
    assert "0000:04:00.0" in why and "carries the default route" in why and "another slot" in why and "ACS" in why


def test_host_keeps_every_bridge_above_the_root_disk() -> None:
    keeps = host_keeps(_disk_host())
    assert {"0000:00:01.0", "0000:02:00.0", "0000:03:00.0"} <= {a for a, k in keeps.items() if k.certain}


# --- the unit: an APU's slot holds the SoC's functions too


def _apu(groups: str) -> list[PciDevice]:
    """A Renoir/Cezanne APU's slot as Linux lists it (ids and names from pci.ids: 1002:1636 Renoir,
    1002:1637 Renoir Radeon High Definition Audio Controller, 1022:15df Family 17h (Models 10h-1fh)
    Platform Security Processor, 1022:1639 Renoir/Cezanne USB 3.1, 1022:15e2 Raven/Raven2/FireFlight/
    Renoir Audio Processor, 1022:15e3 Family 17h/19h HD Audio Controller). groups: "one" (every
    function in one IOMMU group) or "own" (a group each, as boards with ACS show)."""
    spec = [("0", 0x030000, "1002", "1636", "amdgpu", True), ("1", 0x040300, "1002", "1637", "snd_hda_intel", False),
            ("2", 0x108000, "1022", "15df", "ccp", False), ("3", 0x0C0330, "1022", "1639", "xhci_hcd", False),
            ("4", 0x0C0330, "1022", "1639", "xhci_hcd", False), ("5", 0x048000, "1022", "15e2", "snd_rn_pci_acp3x", False),
            ("6", 0x040300, "1022", "15e3", "snd_hda_intel", False)]
    out = []
    for fn, cls, ven, dev, drv, boot in spec:
        grp = "10" if groups == "one" else str(10 + int(fn))
        out.append(PciDevice(f"0000:05:00.{fn}", cls, ven, dev, None, "c1", drv, grp, boot, kernel_modules=(drv,)))
    dgpu = [PciDevice(d.address, d.class_code, d.vendor, d.device, None, "a1", d.driver, "1", False, kernel_modules=d.kernel_modules)
            for d in card()]
    return [root_port(), *dgpu, *out]


def test_apu_unit_is_the_igpu_and_its_hdmi_audio_only() -> None:
    facts = host(pci=_apu("one"))
    unit = passthrough_unit(facts, facts.pci_devices()["0000:05:00.0"])
    assert [d.address for d in unit.functions] == ["0000:05:00.0", "0000:05:00.1"]
    assert [d.address for d in unit.intruders] == [f"0000:05:00.{i}" for i in range(2, 7)]
    assert "marks the SoC's encryption controller" in unit.describe_intruders()


def test_apu_in_one_group_fails_isolation_and_gets_no_plan() -> None:
    facts = host(pci=_apu("one"), mounts=(), block_devices={}, net_interfaces={}, default_route=(), routed=())
    rep = run_checks(facts, SourceInfo("test", "x"), gpu="0000:05:00.0")
    iso = next(sr.result for sr in rep.results if sr.result.check_id == "gpu.group_isolated")
    assert iso.status is Status.FAIL and "0000:05:00.2" in iso.summary and "0000:05:00.3" in iso.summary
    plan = build_plan(rep, SnapshotHost(os.path.join(FIX, "seed-partial")), force=True)
    assert not _targets(plan, facts), plan.actions


def test_apu_with_acs_binds_only_the_igpu_unit() -> None:
    facts = host(pci=_apu("own"), mounts=(), block_devices={}, net_interfaces={}, default_route=(), routed=())
    rep = run_checks(facts, SourceInfo("test", "x"), gpu="0000:05:00.0")
    iso = next(sr.result for sr in rep.results if sr.result.check_id == "gpu.group_isolated")
    assert iso.status is Status.PASS
    plan = build_plan(rep, SnapshotHost(os.path.join(FIX, "seed-partial")), force=True)
    conf = [a for a in plan.actions if isinstance(a, FileEdit) and a.path == "/etc/modprobe.d/vfio.conf"]
    assert conf and "ids=1002:1636,1002:1637\n" in conf[0].new.decode()
    assert _targets(plan, facts) <= {"0000:05:00.0", "0000:05:00.1"}
    # the SoC's HD audio shares snd_hda_intel with the iGPU's: the softdep orders loading, binds nothing
    assert "1022:15e3" not in conf[0].new.decode()


# --- --gpu takes a GPU


@pytest.mark.parametrize(("addr", "what"), [("0000:03:00.0", "class 0108 (NVMe controller)"), ("0000:00:01.0", "class 0604 (PCI bridge)"),
                                            ("0000:01:00.1", "class 0403 (audio device)")])
def test_gpu_option_refuses_what_is_not_a_display_function(addr: str, what: str) -> None:
    facts = _disk_host()
    with pytest.raises(BadInput) as e:
        select_gpus(facts, addr)
    assert what in str(e.value) and "0300, 0302 or 0380" in str(e.value)


def test_gpu_option_on_the_cli_is_one_line_exit_2() -> None:
    from doctor.cli import main

    assert main(["check", "--snapshot", os.path.join(FIX, "lab-intel-shared-group"), "--gpu", "0000:00:1f.2"]) == 2


# --- issue 13 point 3: whose IOMMU it is comes from the firmware table


def test_intel_iommu_on_an_amd_cpu_is_judged_as_intel() -> None:
    """QEMU's intel-iommu under an AMD CPU: intel_iommu=off disables the only IOMMU there is."""
    from doctor.passthrough import iommu_vendor
    from tests.test_checks_unit import AMD

    f = host(cpu=AMD, acpi_tables=frozenset({"DMAR", "APIC"}), cmdline="root=/dev/sda1 intel_iommu=off",
             kernel_log="[0.1] DMAR: IOMMU disabled", iommu_class=(), iommu_groups={})
    v = iommu_vendor(f)
    assert (v.vendor, v.basis, v.cpu) == ("intel", "ACPI DMAR table", "amd") and "Intel VT-d" in (v.disagreement or "")
    rep = run_checks(f, SourceInfo("test", "x"))
    r = next(sr.result for sr in rep.results if sr.result.check_id == "cmdline.iommu_enabled")
    assert r.status is Status.FAIL and "intel_iommu=off" in r.summary and any("AMD CPU" in m for m in r.messages), r


def test_iommu_vendor_falls_back_to_the_log_then_the_cpu() -> None:
    from doctor.passthrough import iommu_vendor
    from tests.factory import FakeFacts
    from tests.test_checks_unit import AMD, INTEL

    assert iommu_vendor(FakeFacts(cpu=INTEL, kernel_log="[0.2] AMD-Vi: Found IOMMU cap 0x40")).vendor == "amd"
    v = iommu_vendor(FakeFacts(cpu=AMD))
    assert (v.vendor, v.disagreement) == ("amd", None) and v.basis.startswith("CPU vendor")


def test_a_unit_whose_group_is_unknown_is_refused_and_vm_unit_stays_unknown() -> None:
    """Unknown, not absent: where a function's group cannot be read, what else it holds may be a
    device the host runs on, so nothing is written for it; vm create's unit raises as before."""
    from doctor.errors import FactUnknown
    from doctor.vm.unit import passthrough_unit as vm_unit

    class NoGroups(type(_nic_host(NIC_OTHER_SLOT))):  # type: ignore[misc]
        def iommu_groups(self) -> dict[str, tuple[str, ...]]:
            raise FactUnknown("IOMMU groups", "permission denied", "find /sys/kernel/iommu_groups/ -type l")

    facts = _nic_host(NIC_OTHER_SLOT)
    facts.__class__ = NoGroups
    gpu = facts.pci_devices()[GPU]
    unit = passthrough_unit(facts, gpu)
    assert unit.groups_unknown is not None and not unit.intruders
    why = refusal(facts, gpu) or ""
    assert "unknown" in why and "IOMMU groups" in why and "nothing is written" in why
    with pytest.raises(FactUnknown):
        vm_unit(facts, gpu)


def test_the_only_display_with_a_serial_console_is_configured_for_the_next_boot_not_unbound_now() -> None:
    """console=ttyS0: the screen is not the host's only console (the reboot lab's machines); the next
    boot's configuration is written, a runtime unbind of the display still needs --force."""
    from remediations.pci_bind import plan_bind

    facts = _console_host(cmdline="root=/dev/sda1 intel_iommu=on console=ttyS0,115200")
    gpu = facts.pci_devices()[GPU]
    assert refusal(facts, gpu) is None
    assert "without --force" in (refusal(facts, gpu, runtime=True) or "")
    acts, why = plan_bind(facts, gpu, ("vfio.group_viable",))
    assert acts == [] and "kernel console is on ttyS0" in (why or ""), why
