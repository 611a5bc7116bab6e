"""Forecast checks (checks/check_forecast.py): rules on hand-built facts, parsers, snapshot replay."""

from __future__ import annotations

import gzip
import lzma
import os
from collections.abc import Iterator

import pytest

from doctor.errors import FactUnknown
from doctor.facts import (
    BlockDevice,
    BootConfig,
    ConfigLine,
    ConsoleState,
    EarlyLoadConfig,
    HostFacts,
    IomemRange,
    LibvirtHostdev,
    ModuleState,
    Mount,
    NetInterface,
    PciBar,
    PciDevice,
    SecurityState,
    last_pci_address,
    parse_boot_overrides,
    parse_cmdline,
    parse_default_route_ifaces,
    parse_initramfs,
    parse_interrupt_chips,
    parse_iomem,
    parse_libvirt_hostdevs,
    parse_option_rom,
    parse_pci_resource,
    parse_pcie_flr,
)
from doctor.host import CommandResult
from doctor.model import SourceInfo, Status
from doctor.runner import run_checks
from doctor.snapshot import DirHost, SnapshotHost, record
from tests.factory import AMD, INTEL, FakeFacts, card, igpu, root_port

SRC = SourceInfo("test", "forecast")
_SAVED: dict = {}


@pytest.fixture(autouse=True)
def forecast_checks() -> Iterator[None]:
    """Every check registered (load_checks lists checks.check_forecast now). This fixture used to
    register the forecast checks alone and take them out afterwards, from before the module was
    listed: every test file after this one then ran without them."""
    from doctor.registry import load_checks

    load_checks()
    yield


class ForecastFacts(FakeFacts):
    """FakeFacts plus the forecast facts; every fact not given is unknown."""

    def iomem(self):  # type: ignore[no-untyped-def]
        return self._get("iomem", super().iomem)

    def pci_bars(self, address):  # type: ignore[no-untyped-def]
        if "bars" in self.given:
            return self.given["bars"].get(address, ())
        return super().pci_bars(address)

    def pci_config(self, address):  # type: ignore[no-untyped-def]
        if "config" in self.given and address in self.given["config"]:
            return self.given["config"][address]
        return super().pci_config(address)

    def reset_method(self, address):  # type: ignore[no-untyped-def]
        if "reset_method" in self.given:
            return self.given["reset_method"].get(address)
        return super().reset_method(address)

    def consoles(self):  # type: ignore[no-untyped-def]
        return self._get("consoles", super().consoles)

    def interrupt_chips(self):  # type: ignore[no-untyped-def]
        return self._get("interrupt_chips", super().interrupt_chips)

    def vfio_allow_unsafe_interrupts(self):  # type: ignore[no-untyped-def]
        return self._get("unsafe", super().vfio_allow_unsafe_interrupts)

    def mounts(self):  # type: ignore[no-untyped-def]
        return self._get("mounts", super().mounts)

    def boot_overrides(self):  # type: ignore[no-untyped-def]
        return self._get("boot_overrides", super().boot_overrides)

    def block_devices(self):  # type: ignore[no-untyped-def]
        return self._get("block_devices", super().block_devices)

    def net_interfaces(self):  # type: ignore[no-untyped-def]
        return self._get("net_interfaces", super().net_interfaces)

    def default_route_ifaces(self):  # type: ignore[no-untyped-def]
        return self._get("default_route", super().default_route_ifaces)

    def routed_ifaces(self):  # type: ignore[no-untyped-def]
        return self._get("routed", super().routed_ifaces)

    def boot_entries(self):  # type: ignore[no-untyped-def]
        return self._get("boot_entries", super().boot_entries)

    def initramfs(self):  # type: ignore[no-untyped-def]
        return self._get("initramfs", super().initramfs)

    def security(self):  # type: ignore[no-untyped-def]
        return self._get("security", super().security)

    def libvirt_hostdevs(self):  # type: ignore[no-untyped-def]
        return self._get("libvirt", super().libvirt_hostdevs)

    def option_rom(self, address):  # type: ignore[no-untyped-def]
        if "rom" in self.given:
            if isinstance(self.given["rom"], BaseException):
                raise self.given["rom"]
            return self.given["rom"]
        return super().option_rom(address)


MODS = ModuleState(frozenset({"kvm", "kvm_intel", "vfio_pci", "vfio", "vfio_iommu_type1"}), frozenset({"kvm", "vfio_pci"}),
                   frozenset({"ext4"}))
GRUB_ON = BootConfig("grub", parse_cmdline("intel_iommu=on iommu=pt", "/etc/default/grub"), ("/etc/default/grub",),
                     tools=("/usr/sbin/update-grub", "/usr/sbin/update-initramfs"))
IDS = "options vfio-pci ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9\n"


def host(**over):  # type: ignore[no-untyped-def]
    base = dict(
        cpu=INTEL,
        cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt",
        kernel_release="6.1.0-13-amd64",
        kernel_config={"CONFIG_INTEL_IOMMU": "y", "CONFIG_VFIO_PCI": "m"},
        modules=MODS,
        kernel_log="[0.1] DMAR: IOMMU enabled\n[0.2] DMAR-IR: Enabled IRQ remapping in x2apic mode",
        iommu_class=("dmar0",),
        pci=[root_port(), *card(), igpu()],
        modprobe={},
        early_load=EarlyLoadConfig((), (), "initramfs-tools"),
        boot_config=GRUB_ON,
    )
    base.update(over)
    return ForecastFacts(**base)


def result(facts, check_id: str, gpu: str | None = None):  # type: ignore[no-untyped-def]
    rep = run_checks(facts, SRC, gpu=gpu, only=[check_id])
    assert len(rep.results) == 1
    return rep.results[0].result


def text(r) -> str:  # type: ignore[no-untyped-def]
    return " ".join([r.summary, *r.messages, *(f"{e.source} {e.value}" for e in r.evidence), *(r.remedy.steps if r.remedy else ()),
                     r.remedy.text if r.remedy else ""])


# --- 3. interrupt remapping ------------------------------------------------------------


def test_remapping_enabled_in_the_log_passes() -> None:
    assert result(host(), "iommu.interrupt_remapping").status is Status.PASS


def test_remapping_seen_only_in_proc_interrupts_passes_without_a_log() -> None:
    f = host(kernel_log="", interrupt_chips=frozenset({"IR-IO-APIC", "IR-PCI-MSIX-0000:00:04.0", "DMAR-MSI"}))
    f.given.pop("kernel_log")
    r = result(f, "iommu.interrupt_remapping")
    assert r.status is Status.PASS and "IR- chips" in r.summary


def test_no_remapping_fails_with_the_qemu_error_it_forecasts() -> None:
    f = host(kernel_log="[0.1] DMAR: IOMMU enabled", interrupt_chips=frozenset({"IO-APIC", "PCI-MSIX-0000:01:00.0"}), unsafe=False)
    r = result(f, "iommu.interrupt_remapping")
    assert r.status is Status.FAIL
    assert "Failed to set iommu for container: Operation not permitted" in text(r)
    assert "allow_unsafe_interrupts" in text(r)


def test_intremap_off_on_the_command_line_is_named_and_removed_by_the_remedy() -> None:
    f = host(cmdline="root=/dev/sda1 intel_iommu=on intremap=off", kernel_log="[0.1] DMAR: IOMMU enabled", unsafe=False)
    r = result(f, "iommu.interrupt_remapping")
    assert r.status is Status.FAIL and "intremap=off" in r.summary
    assert any("intremap=off" not in s.split("GRUB_CMDLINE_LINUX=")[-1] for s in r.remedy.steps if "GRUB_CMDLINE_LINUX" in s)


def test_no_remapping_but_unsafe_interrupts_allowed_warns() -> None:
    f = host(kernel_log="[0.1] DMAR: IOMMU enabled", interrupt_chips=frozenset({"IO-APIC", "PCI-MSI"}), unsafe=True)
    r = result(f, "iommu.interrupt_remapping")
    assert r.status is Status.WARN and "allow_unsafe_interrupts" in r.summary


def test_vfio_refusal_already_in_the_log_is_shown() -> None:
    log = "[5.0] vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param"
    r = result(host(kernel_log=log, unsafe=False), "iommu.interrupt_remapping")
    assert r.status is Status.FAIL and "already happened" in text(r)


def test_remapping_unknown_without_log_or_interrupts() -> None:
    f = host()
    f.given.pop("kernel_log")
    assert result(f, "iommu.interrupt_remapping").status is Status.UNKNOWN


def test_remapping_not_applicable_without_iommu() -> None:
    f = host(iommu_class=(), pci=[*card(group=None), igpu(group=None)])
    assert result(f, "iommu.interrupt_remapping").status is Status.NOT_APPLICABLE


def test_amd_remapping_line_passes() -> None:
    f = host(cpu=AMD, kernel_log="[0.5] AMD-Vi: Interrupt remapping enabled", iommu_class=("ivhd0",))
    assert result(f, "iommu.interrupt_remapping").status is Status.PASS


# --- 6. identical cards --------------------------------------------------------------------


def twin_cards() -> list[PciDevice]:
    """Two identical NVIDIA cards: 01:00 for the guest (vfio-pci), 02:00 for the host (nouveau)."""
    return [root_port(), *card(drivers=("vfio-pci",) * 4), *card(group="2", bus="02"), igpu()]


def test_ids_line_that_also_takes_the_hosts_identical_card_fails() -> None:
    f = host(pci=twin_cards(), modprobe={"/etc/modprobe.d/vfio.conf": IDS})
    r = result(f, "vfio.ids_unique_to_card", gpu="0000:01:00.0")
    assert r.status is Status.FAIL
    assert "0000:02:00.0 (nouveau)" in r.summary
    assert any("driver_override" in s for s in r.remedy.steps)
    assert not any("ids=" in s and "options vfio-pci" in s for s in r.remedy.steps)


def test_cmdline_ids_count_as_ids_too() -> None:
    f = host(pci=twin_cards(), cmdline="root=/dev/sda1 intel_iommu=on vfio-pci.ids=10de:1e84")
    r = result(f, "vfio.ids_unique_to_card", gpu="0000:01:00.0")
    assert r.status is Status.FAIL and "/proc/cmdline" in text(r)


def test_identical_card_without_ids_warns_not_to_use_ids() -> None:
    r = result(host(pci=twin_cards()), "vfio.ids_unique_to_card", gpu="0000:01:00.0")
    assert r.status is Status.WARN and "do not use ids=" in r.summary


def test_unique_ids_pass() -> None:
    assert result(host(), "vfio.ids_unique_to_card").status is Status.PASS


def test_host_display_with_the_same_id_as_the_guest_card_is_a_twin() -> None:
    """The lab's case: the host's boot display 00:01.0 (bochs) and the card's VGA share 1234:1111."""
    boot = PciDevice("0000:00:01.0", 0x030000, "1234", "1111", None, "02", "bochs-drm", "1", True)
    cardvga = PciDevice("0000:01:00.0", 0x030000, "1234", "1111", None, "02", "bochs-drm", "6", False)
    f = host(pci=[boot, cardvga], modprobe={"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=1234:1111\n"})
    r = result(f, "vfio.ids_unique_to_card", gpu="0000:01:00.0")
    assert r.status is Status.FAIL and "0000:00:01.0" in r.summary


def test_boot_overrides_are_read_from_scripts_rules_and_modprobe_lines() -> None:
    from remediations.vfio_override import SCRIPT, script_text

    ov = parse_boot_overrides(script_text(["0000:01:00.0", "0000:01:00.1"]), SCRIPT, "initramfs")
    assert [(o.address, o.kind) for o in ov] == [("0000:01:00.0", "initramfs"), ("0000:01:00.1", "initramfs")]
    rule = 'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:0a:00.0", ATTR{driver_override}="vfio-pci"\n'
    assert [o.address for o in parse_boot_overrides(rule, "/etc/udev/rules.d/99-vfio.rules", "udev")] == ["0000:0a:00.0"]
    # short addresses, as people write them in the Arch wiki's loop
    sh = "#!/bin/sh\nfor d in 01:00.0 01:00.1; do echo vfio-pci > /sys/bus/pci/devices/0000:$d/driver_override; done\n"
    assert {o.address for o in parse_boot_overrides(sh, "/usr/local/bin/vfio-pci-override.sh", "modprobe")} == {"0000:01:00.0", "0000:01:00.1"}
    # commented out, or another driver: nothing
    assert parse_boot_overrides("# echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override\n", "x", "initramfs") == []
    assert parse_boot_overrides("echo nouveau > /sys/bus/pci/devices/0000:01:00.0/driver_override\n", "x", "initramfs") == []


def _overrides(addrs: list[str]):  # type: ignore[no-untyped-def]
    from remediations.vfio_override import SCRIPT, script_text

    return tuple(parse_boot_overrides(script_text(addrs), SCRIPT, "initramfs"))


def test_identical_cards_bound_by_address_at_boot_pass_without_ids() -> None:
    """The fix for twins: no ids= line, an init-top script with the card's addresses."""
    card_addrs = [f"0000:01:00.{i}" for i in range(4)]
    f = host(pci=twin_cards(), boot_overrides=_overrides(card_addrs),
             early_load=EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools"))
    for cid in ("vfio.ids_unique_to_card", "vfio.ids_configured", "vfio.binding_persistent"):
        r = result(f, cid, gpu="0000:01:00.0")
        assert r.status is Status.PASS, (cid, r.summary, r.messages)
    assert "0000:02:00.0" in result(f, "vfio.ids_unique_to_card", gpu="0000:01:00.0").summary
    # one function missing from the script: not covered
    f = host(pci=twin_cards(), boot_overrides=_overrides(card_addrs[:3]))
    assert result(f, "vfio.ids_configured", gpu="0000:01:00.0").status is Status.WARN
    # an ids= line that also names the twin's id still grabs it, whatever the script says
    f = host(pci=twin_cards(), boot_overrides=_overrides(card_addrs), modprobe={"/etc/modprobe.d/vfio.conf": IDS})
    assert result(f, "vfio.ids_unique_to_card", gpu="0000:01:00.0").status is Status.FAIL


def test_override_plan_writes_an_init_top_script_and_merges_an_earlier_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from remediations.vfio_override import SCRIPT, plan_override, script_text

    f = host(pci=twin_cards())
    eps = [d for d in twin_cards() if d.address.startswith("0000:01:00.")]
    acts, why = plan_override(f, DirHost(str(tmp_path)), eps, ("vfio.ids_configured",))
    assert why is None and len(acts) == 1
    a = acts[0]
    assert a.path == SCRIPT and a.mode == 0o755 and a.old is None and a.takes_effect == "next boot, once the initramfs is rebuilt"
    assert b"for dev in 0000:01:00.0 0000:01:00.1 0000:01:00.2 0000:01:00.3" in a.new
    p = tmp_path / SCRIPT.lstrip("/")
    p.parent.mkdir(parents=True)
    p.write_text(script_text(["0000:05:00.0"]))
    acts, _ = plan_override(f, DirHost(str(tmp_path)), eps, ("vfio.ids_configured",))
    assert b"for dev in 0000:05:00.0 0000:01:00.0" in acts[0].new  # a second card's earlier line is kept
    p.write_text(script_text(["0000:05:00.0", *[d.address for d in eps]]))
    assert plan_override(f, DirHost(str(tmp_path)), eps, ("x",)) == ([], None)
    f = host(pci=twin_cards(), early_load=EarlyLoadConfig((), (), "dracut"))
    acts, why = plan_override(f, DirHost(str(tmp_path)), eps, ("x",))
    assert acts == [] and "initramfs-tools only" in (why or "")


# --- 4. group safety ------------------------------------------------------------------------


def nvme(group: str = "1") -> PciDevice:
    return PciDevice("0000:03:00.0", 0x010802, "144d", "a808", None, "00", "nvme", group)


def nic(group: str = "1") -> PciDevice:
    return PciDevice("0000:04:00.0", 0x020000, "8086", "15b8", None, "00", "e1000e", group)


DISKS = {
    "nvme0n1p2": BlockDevice("nvme0n1p2", "/sys/devices/pci0000:00/0000:00:1d.0/0000:03:00.0/nvme/nvme0/nvme0n1/nvme0n1p2"),
    "dm-0": BlockDevice("dm-0", "/sys/devices/virtual/block/dm-0", ("nvme0n1p2",), "vg-root"),
}
NETS = {
    "enp4s0": NetInterface("enp4s0", "/sys/devices/pci0000:00/0000:00:1c.0/0000:04:00.0/net/enp4s0"),
    "br0": NetInterface("br0", "/sys/devices/virtual/net/br0", ("enp4s0",)),
}


def safety_host(**over):  # type: ignore[no-untyped-def]
    base = dict(mounts=(Mount("/dev/mapper/vg-root", "/", "ext4"), Mount("proc", "/proc", "proc")),
                block_devices=DISKS, net_interfaces=NETS, default_route=("br0",))
    base.update(over)
    return host(**base)


def _card_with_a_disk() -> list[PciDevice]:
    """A card whose second function is an NVMe controller (as on some workstation boards' risers)."""
    vga = card()[0]
    disk = PciDevice("0000:01:00.1", 0x010802, "144d", "a808", None, "00", "nvme", "1")
    return [root_port(), vga, disk, igpu()]


ROOT_ON_CARD = {"nvme0n1p2": BlockDevice("nvme0n1p2", "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.1/nvme/nvme0/nvme0n1/nvme0n1p2")}


def test_bind_never_takes_a_controller_holding_a_mounted_filesystem_even_with_force() -> None:
    from remediations.pci_bind import plan_bind

    f = safety_host(pci=_card_with_a_disk(), block_devices=ROOT_ON_CARD, mounts=(Mount("/dev/nvme0n1p2", "/", "ext4"),))
    gpu = f.pci_devices()["0000:01:00.0"]
    for force in (False, True):
        acts, why = plan_bind(f, gpu, ("vfio.group_viable",), force=force)
        assert acts == [] and why is not None and "0000:01:00.1 holds mounted filesystems: / (/dev/nvme0n1p2, ext4)" in why, why


def test_bind_never_takes_a_storage_function_of_the_cards_slot_even_unmounted() -> None:
    """Issue 12: a function that is not the GPU's (a storage controller, whatever slot it sits in)
    is an intruder in the group, never bound, mounted or not, forced or not."""
    from remediations.pci_bind import plan_bind

    f = safety_host(pci=_card_with_a_disk(), block_devices=ROOT_ON_CARD, mounts=(Mount("proc", "/proc", "proc"),))
    for force in (False, True):
        acts, why = plan_bind(f, f.pci_devices()["0000:01:00.0"], ("vfio.group_viable",), force=force)
        assert acts == [] and "0000:01:00.1 [0108]" in (why or "") and "not a graphics card's function" in (why or ""), why


def test_bind_of_the_boot_display_asks_for_force_when_another_display_remains() -> None:
    from remediations.pci_bind import plan_bind

    vga = card()[0]
    boot = PciDevice(vga.address, vga.class_code, vga.vendor, vga.device, None, "00", "nouveau", "1", True)
    f = safety_host(pci=[root_port(), boot, igpu()])
    acts, why = plan_bind(f, boot, ("vfio.group_viable",))
    assert acts == [] and "without --force" in (why or "") and "boot display" in (why or ""), why
    acts, why = plan_bind(f, boot, ("vfio.group_viable",), force=True)
    assert why is None and [a.address for a in acts if hasattr(a, "address")] == [boot.address]


def test_bind_in_a_shared_group_names_what_the_host_runs_on() -> None:
    from remediations.pci_bind import plan_bind

    pci = [root_port(), *card(), nvme(group="1"), igpu()]
    f = safety_host(pci=pci)
    acts, why = plan_bind(f, f.pci_devices()["0000:01:00.0"], ("vfio.group_viable",), force=True)
    assert acts == [] and "0000:03:00.0 holds mounted filesystems: / (/dev/mapper/vg-root, ext4)" in (why or ""), why


def test_group_with_the_root_disk_controller_fails_through_lvm() -> None:
    f = safety_host(pci=[root_port(), *card(), nvme(group="1"), igpu()])
    r = result(f, "gpu.group_safe")
    assert r.status is Status.FAIL and "0000:03:00.0 holds mounted filesystems: / (/dev/mapper/vg-root" in r.summary


def test_group_with_the_default_route_nic_behind_a_bridge_fails() -> None:
    f = safety_host(pci=[root_port(), *card(), nic(group="1"), igpu()])
    r = result(f, "gpu.group_safe")
    assert r.status is Status.FAIL and "default route (br0 via enp4s0)" in r.summary


def test_group_of_the_only_display_warns() -> None:
    f = safety_host(pci=[root_port(), *card()])
    r = result(f, "gpu.group_safe")
    assert r.status is Status.WARN and "only display" in r.summary


def test_acs_override_warns_that_groups_are_not_isolation() -> None:
    f = safety_host(cmdline="root=/dev/sda1 intel_iommu=on pcie_acs_override=downstream,multifunction")
    r = result(f, "gpu.group_safe")
    assert r.status is Status.WARN and "pcie_acs_override" in r.summary


def test_clean_group_passes() -> None:
    f = safety_host(pci=[root_port(), *card(), nvme(group="5"), nic(group="6"), igpu()])
    assert result(f, "gpu.group_safe").status is Status.PASS


def test_ids_that_bind_another_group_bring_its_hazards_in() -> None:
    ids = "options vfio-pci ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9,144d:a808\n"
    f = safety_host(pci=[root_port(), *card(), nvme(group="5"), igpu()], modprobe={"/etc/modprobe.d/vfio.conf": ids})
    r = result(f, "gpu.group_safe")
    assert r.status is Status.FAIL and "0000:03:00.0" in r.summary


def test_unknown_mounts_with_foreign_devices_in_group_is_unknown() -> None:
    f = host(pci=[root_port(), *card(), nvme(group="1"), igpu()])
    assert result(f, "gpu.group_safe").status is Status.UNKNOWN


# --- 2. configuration in effect -----------------------------------------------------------


def test_options_for_a_builtin_vfio_pci_are_dead() -> None:
    f = host(kernel_config={"CONFIG_VFIO_PCI": "y"}, modprobe={"/etc/modprobe.d/vfio.conf": IDS})
    r = result(f, "boot.config_in_effect")
    assert r.status is Status.FAIL and "never read" in r.summary and "CONFIG_VFIO_PCI=y" in r.summary
    assert any("vfio-pci.ids=10de:1e84" in s for s in r.remedy.steps)


def test_grub_edited_but_not_regenerated_fails_for_passthrough_args() -> None:
    boot = BootConfig("grub", parse_cmdline("quiet intel_iommu=on iommu=pt", "/etc/default/grub"), ("/etc/default/grub",),
                      generated=parse_cmdline("BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet", "/boot/grub/grub.cfg"),
                      generated_source="/boot/grub/grub.cfg", tools=("/usr/sbin/update-grub",))
    r = result(host(boot_config=boot), "boot.config_in_effect")
    assert r.status is Status.FAIL and "not regenerated" in r.summary and "intel_iommu=on" in r.summary
    assert "sudo update-grub" in r.remedy.steps


def test_grub_regenerated_passes() -> None:
    boot = BootConfig("grub", parse_cmdline("quiet intel_iommu=on", "/etc/default/grub"), ("/etc/default/grub",),
                      generated=parse_cmdline("BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet intel_iommu=on", "/boot/grub/grub.cfg"),
                      generated_source="/boot/grub/grub.cfg", tools=("/usr/sbin/update-grub",))
    assert result(host(boot_config=boot), "boot.config_in_effect").status is Status.PASS


def test_bls_entry_without_the_new_args_fails() -> None:
    from doctor.facts import BootEntry

    boot = BootConfig("systemd-boot", parse_cmdline("root=UUID=x rw amd_iommu=pt", "/etc/kernel/cmdline"), ("/etc/kernel/cmdline",),
                      tools=("/usr/bin/kernel-install",))
    entry = BootEntry("/boot/loader/entries/abc-6.1.0-13-amd64.conf", "Debian", "6.1.0-13-amd64", "root=UUID=x rw")
    r = result(host(boot_config=boot, boot_entries=(entry,)), "boot.config_in_effect")
    assert r.status is Status.FAIL and "amd_iommu=pt" in r.summary and "kernel-install" in " ".join(r.remedy.steps)


def test_bls_entry_written_by_kernel_install_passes_despite_its_machine_id() -> None:
    # The lab's Debian 12 systemd-boot host: kernel-install (systemd 252) appends
    # systemd.machine_id= to every entry it writes; /etc/kernel/cmdline never has it.
    from doctor.facts import BootEntry

    mid = "5ccd716de19346cbbf98d79252ae76d2"
    boot = BootConfig("systemd-boot", parse_cmdline("root=UUID=x ro console=ttyS0,115200 quiet intel_iommu=off",
                                                    "/etc/kernel/cmdline"), ("/etc/kernel/cmdline",),
                      tools=("/usr/bin/kernel-install",))
    entry = BootEntry(f"/boot/efi/loader/entries/{mid}-6.1.0-13-amd64.conf", "Debian GNU/Linux 12 (bookworm)",
                      "6.1.0-13-amd64", f"root=UUID=x ro console=ttyS0,115200 quiet intel_iommu=off systemd.machine_id={mid}")
    r = result(host(boot_config=boot, boot_entries=(entry,)), "boot.config_in_effect")
    assert r.status is Status.PASS, (r.status, r.summary)


def cpio(entries: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for i, (name, data) in enumerate([*entries, ("TRAILER!!!", b"")]):
        nb = name.encode() + b"\0"
        hdr = b"070701" + b"".join(f"{x:08X}".encode() for x in (i, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


KO = "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/vfio/pci/vfio-pci.ko"


def initramfs_host(image: bytes, conf: str = IDS) -> ForecastFacts:
    return host(modprobe={"/etc/modprobe.d/vfio.conf": conf},
                early_load=EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools"),
                initramfs=parse_initramfs(image, "/boot/initrd.img-6.1.0-13-amd64"))


def test_initramfs_with_microcode_then_gzip_holding_vfio_passes() -> None:
    early = cpio([("kernel/x86/microcode/GenuineIntel.bin", b"\x01" * 100)])
    main = gzip.compress(cpio([(KO, b"\x7fELF"), ("etc/modprobe.d/vfio.conf", IDS.encode())]))
    r = result(initramfs_host(early + main), "boot.initramfs_current")
    assert r.status is Status.PASS, r.summary


def test_initramfs_older_than_vfio_conf_fails() -> None:
    img = lzma.compress(cpio([(KO, b"\x7fELF"), ("etc/modprobe.d/vfio.conf", b"options vfio-pci ids=10de:1e84\n")]),
                        format=lzma.FORMAT_XZ)
    r = result(initramfs_host(img), "boot.initramfs_current")
    assert r.status is Status.FAIL and "differs" in r.summary and r.remedy.steps == ("sudo update-initramfs -u -k 6.1.0-13-amd64",)


def test_initramfs_without_vfio_pci_fails() -> None:
    img = gzip.compress(cpio([("etc/modprobe.d/vfio.conf", IDS.encode())]))
    r = result(initramfs_host(img), "boot.initramfs_current")
    assert r.status is Status.FAIL and "does not contain vfio-pci.ko" in r.summary


def test_initramfs_must_carry_the_per_device_binding_script() -> None:
    from remediations.vfio_override import script_text

    ov = _overrides(["0000:01:00.0", "0000:01:00.1"])
    el = EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools")

    def with_image(entries):  # type: ignore[no-untyped-def]
        img = parse_initramfs(gzip.compress(cpio([(KO, b"\x7fELF"), *entries])), "/boot/initrd.img-6.1.0-13-amd64")
        return result(host(modprobe={}, early_load=el, boot_overrides=ov, initramfs=img), "boot.initramfs_current")

    r = with_image([])
    assert r.status is Status.FAIL and "gpudoctor-vfio-override is not in the image" in r.summary, r.summary
    r = with_image([("scripts/init-top/gpudoctor-vfio-override", script_text(["0000:01:00.0"]).encode())])
    assert r.status is Status.FAIL and "differs" in r.summary, r.summary
    assert with_image([("scripts/init-top/gpudoctor-vfio-override", ov[0].text.encode())]).status is Status.PASS


def test_zstd_initramfs_is_read_with_zstandard() -> None:
    zstandard = pytest.importorskip("zstandard")  # a dependency of gpudoctor: always installed
    early = cpio([("kernel/x86/microcode/AuthenticAMD.bin", b"\x01")])
    main = zstandard.ZstdCompressor().compress(cpio([("usr/lib/modules/6.1.0-13-amd64/kernel/drivers/vfio/pci/vfio-pci.ko", b"x"),
                                                     ("etc/modprobe.d/vfio.conf", IDS.encode())]))
    img = parse_initramfs(early + main, "/boot/initrd.img-6.1.0-13-amd64")
    assert img.undecoded is None
    assert img.has_module("vfio-pci") and "zstd" in img.segments


def test_zstd_initramfs_without_a_decoder_is_unknown_not_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # as on a Python without the package
    monkeypatch.setitem(sys.modules, "compression", None)
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)  # and no zstd program either
    early = cpio([("kernel/x86/microcode/AuthenticAMD.bin", b"\x01")])
    img = parse_initramfs(early + b"\x28\xb5\x2f\xfd" + b"\0" * 64, "/boot/initrd.img-6.1.0-13-amd64")
    assert img.undecoded is not None
    f = host(
        modprobe={"/etc/modprobe.d/vfio.conf": IDS},
        early_load=EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools"), initramfs=img)
    assert result(f, "boot.initramfs_current").status is Status.UNKNOWN



def test_zstd_initramfs_without_the_python_module_is_read_with_the_zstd_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's python3 has no zstd module (the reboot lab's image showed boot.initramfs_current
    unknown): the zstd program decodes it."""
    import shutil
    import sys

    zstandard = pytest.importorskip("zstandard")
    if shutil.which("zstd") is None:
        pytest.skip("no zstd program on this machine (lab/setup.sh installs it)")
    main = zstandard.ZstdCompressor().compress(cpio([("usr/lib/modules/6.1.0-13-amd64/kernel/drivers/vfio/pci/vfio-pci.ko", b"x"),
                                                     ("etc/modprobe.d/vfio.conf", IDS.encode())]))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(sys.modules, "compression", None)
    img = parse_initramfs(cpio([("kernel/x86/microcode/AuthenticAMD.bin", b"\x01")]) + main, "/boot/initrd.img-6.1.0-13-amd64")
    assert img.undecoded is None and img.segments == ("cpio", "zstd", "cpio")
    assert img.has_module("vfio-pci") and img.file("etc/modprobe.d/vfio.conf") == IDS.encode()
    with pytest.raises(ValueError, match="zstd data does not decompress"):
        parse_initramfs(b"\x28\xb5\x2f\xfd" + b"\0" * 64, "/boot/initrd.img")

# --- 1. framebuffer ---------------------------------------------------------------------------

BAR0 = PciBar(0, 0xC0000000, 0xCFFFFFFF, 0x42208)
LAB_IOMEM = parse_iomem("c0000000-febfffff : PCI Bus 0000:00\n  c0000000-cfffffff : 0000:01:00.0\n    c0000000-c03e7fff : efifb\n")


def fb_host(**over):  # type: ignore[no-untyped-def]
    base = dict(bars={"0000:01:00.0": (BAR0,)}, iomem=LAB_IOMEM, consoles=ConsoleState((("vtcon1", "(M) frame buffer device", True),), ("0 EFI VGA",)))
    base.update(over)
    return host(**base)


def test_efifb_in_a_vga_bar_on_6_1_is_evicted_on_bind() -> None:
    r = result(fb_host(), "gpu.framebuffer_free")
    assert r.status is Status.PASS and "removes it when vfio-pci binds" in r.summary


def test_efifb_on_a_5_15_kernel_fails_with_the_remedy_for_efifb() -> None:
    r = result(fb_host(kernel_release="5.15.0-91-generic"), "gpu.framebuffer_free")
    assert r.status is Status.FAIL and "can't reserve" in text(r)
    assert "video=efifb:off" in r.remedy.text


def test_simpledrm_in_a_display_class_gpu_fails_even_on_new_kernels() -> None:
    """siderolabs/talos#14356: 6.18, class 0380 AMD APU, BOOTFB/simpledrm in BAR 0."""
    apu = PciDevice("0000:c3:00.0", 0x038000, "1002", "1586", None, "c1", "amdgpu", "20", True)
    bar = PciBar(0, 0x2800000000, 0x2FFFFFFFFF, 0x14220C)
    iomem = parse_iomem("2800000000-2fffffffff : 0000:c3:00.0\n  2800000000-2801fa3fff : BOOTFB\n    2800000000-2801fa3fff : simpledrm\n")
    f = host(pci=[apu], kernel_release="6.18.48-talos", bars={apu.address: (bar,)}, iomem=iomem, consoles=ConsoleState((), ()))
    r = result(f, "gpu.framebuffer_free", gpu="0000:c3:00.0")
    assert r.status is Status.FAIL and "not VGA" in text(r)
    assert "initcall_blacklist=sysfb_init" in r.remedy.text


def test_framebuffer_still_there_while_on_vfio_pci_fails() -> None:
    f = fb_host(pci=[root_port(), *card(drivers=("vfio-pci",) * 4), igpu()])
    assert result(f, "gpu.framebuffer_free").status is Status.FAIL


def test_no_framebuffer_in_the_bars_passes() -> None:
    f = fb_host(iomem=parse_iomem("80000000-80ffffff : 0000:00:02.0\n  80000000-803fffff : efifb\n"))
    assert result(f, "gpu.framebuffer_free").status is Status.PASS


def test_hidden_iomem_addresses_are_unknown() -> None:
    f = host(bars={"0000:01:00.0": (BAR0,)})
    assert result(f, "gpu.framebuffer_free").status is Status.UNKNOWN


# --- 5. reset --------------------------------------------------------------------------------


def pcie_config(flr: bool) -> bytes:
    c = bytearray(256)
    c[6] = 0x10  # capability list
    c[0x34] = 0x60
    c[0x60] = 0x10  # PCI Express
    c[0x61] = 0
    c[0x64:0x68] = ((1 << 28) if flr else 0).to_bytes(4, "little")
    return bytes(c)


def test_flr_in_reset_method_passes() -> None:
    r = result(host(reset_method={"0000:01:00.0": ("flr", "bus")}), "gpu.reset_capable")
    assert r.status is Status.PASS


def test_navi10_without_vendor_reset_warns_about_header_type_127() -> None:
    navi = PciDevice("0000:01:00.0", 0x030000, "1002", "731f", None, "c1", "amdgpu", "1", False)
    r = result(host(pci=[navi], reset_method={navi.address: ("bus",)}), "gpu.reset_capable")
    assert r.status is Status.WARN and "Unknown PCI header type '127'" in text(r)


def test_navi10_with_vendor_reset_selected_passes() -> None:
    navi = PciDevice("0000:01:00.0", 0x030000, "1002", "731f", None, "c1", "amdgpu", "1", False)
    mods = ModuleState(frozenset({"vendor_reset", "vfio_pci"}), frozenset(), None)
    r = result(host(pci=[navi], modules=mods, reset_method={navi.address: ("device_specific", "bus")}), "gpu.reset_capable")
    assert r.status is Status.PASS


def test_bus_reset_shared_with_another_device_warns() -> None:
    other = PciDevice("0000:01:01.0", 0x020000, "8086", "1533", None, "03", "igb", "3")
    r = result(host(pci=[root_port(), *card(), other], reset_method={"0000:01:00.0": ("bus",)}), "gpu.reset_capable")
    assert r.status is Status.WARN and "0000:01:01.0" in r.summary


def test_old_kernel_reads_flr_from_config_space() -> None:
    f = host(reset_method={}, config={"0000:01:00.0": pcie_config(True)})
    assert result(f, "gpu.reset_capable").status is Status.PASS
    f = host(reset_method={}, config={"0000:01:00.0": pcie_config(False)})
    assert result(f, "gpu.reset_capable").status is Status.WARN


def test_dead_device_reads_all_ones() -> None:
    f = host(reset_method={"0000:01:00.0": ("bus",)}, config={"0000:01:00.0": b"\xff" * 256})
    r = result(f, "gpu.reset_capable")
    assert r.status is Status.FAIL and "127" in text(r)


# --- 9. drift ---------------------------------------------------------------------------------


def test_stale_libvirt_hostdev_fails_and_names_the_domain() -> None:
    hd = (LibvirtHostdev("win11", "/etc/libvirt/qemu/win11.xml", "0000:0a:00.0"),
          LibvirtHostdev("win11", "/etc/libvirt/qemu/win11.xml", "0000:01:00.0"))
    r = result(host(libvirt=hd), "config.no_drift")
    assert r.status is Status.FAIL and "domain win11: 0000:0a:00.0" in r.summary


def test_stale_vfio_id_warns() -> None:
    f = host(libvirt=(), modprobe={"/etc/modprobe.d/vfio.conf": IDS.strip() + ",10de:1b80\n"})
    r = result(f, "config.no_drift")
    assert r.status is Status.WARN and "10de:1b80 (/etc/modprobe.d/vfio.conf:1)" in r.summary


def test_no_drift_passes() -> None:
    assert result(host(libvirt=(), modprobe={"/etc/modprobe.d/vfio.conf": IDS}), "config.no_drift").status is Status.PASS


# --- 8. Secure Boot ----------------------------------------------------------------------------


def navi_host(**over):  # type: ignore[no-untyped-def]
    navi = PciDevice("0000:01:00.0", 0x030000, "1002", "731f", None, "c1", "amdgpu", "1", False)
    return host(pci=[navi], **over)


def test_secure_boot_with_vendor_reset_not_loaded_warns() -> None:
    r = result(navi_host(security=SecurityState(True, "integrity", None)), "boot.secure_boot_modules")
    assert r.status is Status.WARN and "vendor_reset" in r.summary


def test_secure_boot_off_passes_and_no_oot_module_is_not_applicable() -> None:
    assert result(navi_host(security=SecurityState(False, "none", False)), "boot.secure_boot_modules").status is Status.PASS
    assert result(host(security=SecurityState(True, None, None)), "boot.secure_boot_modules").status is Status.NOT_APPLICABLE


# --- 10. option ROM ------------------------------------------------------------------------------


def rom_image(code: int, last: bool) -> bytes:
    img = bytearray(512)
    img[0:2] = b"\x55\xaa"
    img[0x18:0x1A] = (0x40).to_bytes(2, "little")
    img[0x40:0x44] = b"PCIR"
    img[0x50:0x52] = (1).to_bytes(2, "little")
    img[0x54] = code
    img[0x55] = 0x80 if last else 0
    return bytes(img)


def test_rom_is_not_read_by_default() -> None:
    f = host(bars={"0000:01:00.0": (BAR0, PciBar(6, 0xD0000000, 0xD007FFFF, 0x46200))})
    r = result(f, "gpu.rom_readable")
    assert r.status is Status.UNKNOWN and "rombar=0" in r.remedy.text and "romfile" in r.remedy.text


def test_rom_with_legacy_and_efi_images_passes_and_garbage_warns() -> None:
    """gpu.rom_readable is advice (QEMU still starts without the ROM): a bad image warns, it never fails."""
    bars = {"0000:01:00.0": (BAR0, PciBar(6, 0xD0000000, 0xD007FFFF, 0x46200))}
    assert result(host(bars=bars, rom=rom_image(0, False) + rom_image(3, True)), "gpu.rom_readable").status is Status.PASS
    r = result(host(bars=bars, rom=b"\xff" * 1024), "gpu.rom_readable")
    assert r.status is Status.WARN and "no 0x55AA signature" in r.summary and "rombar=0" in r.remedy.text
    assert result(host(bars=bars, rom=rom_image(0, True)), "gpu.rom_readable").status is Status.WARN
    r = result(host(bars=bars, rom=b"\x55\xaa"), "gpu.rom_readable")  # cut off after the signature
    assert r.status is Status.WARN and "cut off" in r.summary


# What the lab's card (01:00.0, the only display under OVMF) showed on Debian's 6.1 once on vfio-pci:
# `cat rom` -> Input/output error, and the kernel's drivers/pci/rom.c complaint.
SHADOW_ROM = PciBar(6, 0xC0000, 0xDFFFF, 0x212)
ROM_LOG = "[12.034209] vfio-pci 0000:01:00.0: Invalid PCI ROM header signature: expecting 0xaa55, got 0x4556"


def test_unreadable_rom_warns_with_the_kernel_message_and_the_qemu_remedy() -> None:
    from doctor.errors import OptionRomUnreadable

    err = OptionRomUnreadable("/sys/bus/pci/devices/0000:01:00.0/rom", "Input/output error", (ROM_LOG,))
    r = result(host(bars={"0000:01:00.0": (BAR0, SHADOW_ROM)}, rom=err), "gpu.rom_readable")
    assert r.status is Status.WARN
    assert "Input/output error" in r.summary and "Cannot read device rom at 0000:01:00.0" in r.summary
    assert "Invalid PCI ROM header signature" in text(r) and "shadow copy at 0xc0000" in text(r)
    assert "rombar=0" in r.remedy.text and "romfile=" in r.remedy.text


def test_empty_rom_warns_and_takes_the_kernel_line_from_the_log() -> None:
    r = result(host(bars={"0000:01:00.0": (BAR0, SHADOW_ROM)}, rom=b"", kernel_log=ROM_LOG), "gpu.rom_readable")
    assert r.status is Status.WARN and "empty" in r.summary
    assert any("Invalid PCI ROM header signature" in m for m in r.messages)


def test_rom_read_refused_for_lack_of_root_is_unknown_not_absent() -> None:
    err = FactUnknown("option ROM of 0000:01:00.0", "writing 1 to /sys/bus/pci/devices/0000:01:00.0/rom needs root")
    r = result(host(bars={"0000:01:00.0": (BAR0, SHADOW_ROM)}, rom=err), "gpu.rom_readable")
    assert r.status is Status.UNKNOWN and "needs root" in r.summary


# --- 11. command-line advice ----------------------------------------------------------------------


def test_iommu_pt_alone_on_intel_warns() -> None:
    r = result(host(cmdline="root=/dev/sda1 iommu=pt"), "cmdline.iommu_args_meaningful")
    assert r.status is Status.WARN and "does not turn the Intel IOMMU on" in r.summary


def test_amd_iommu_on_is_not_an_option() -> None:
    r = result(host(cpu=AMD, cmdline="root=/dev/sda1 amd_iommu=on iommu=pt",
                         kernel_log="[0.5] AMD-Vi: Interrupt remapping enabled", iommu_class=("ivhd0",)), "cmdline.iommu_args_meaningful")
    assert r.status is Status.WARN and "Unknown option" in r.summary


# --- parsers ----------------------------------------------------------------------------------------


def test_parsers() -> None:
    assert parse_pci_resource("0x00000000c0000000 0x00000000c0ffffff 0x0000000000042208\n" + "0x0 0x0 0x0\n" * 6) == (
        PciBar(0, 0xC0000000, 0xC0FFFFFF, 0x42208),)
    assert IomemRange(0xC0000000, 0xC03E7FFF, "efifb", 2) in LAB_IOMEM
    assert parse_interrupt_chips("   CPU0\n  0: 1 IR-IO-APIC 2-edge timer\n 24: 0 DMAR-MSI 0-edge dmar0\n") == {"IR-IO-APIC", "DMAR-MSI"}
    route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n" \
            "br0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\nbr0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
    assert parse_default_route_ifaces(route, None) == ("br0",)
    assert last_pci_address("/sys/devices/pci0000:00/0000:00:1c.0/0000:04:00.0/net/enp4s0") == "0000:04:00.0"
    xml = "<domain><name>win</name><devices><hostdev mode='subsystem' type='pci'><source>" \
          "<address domain='0x0000' bus='0x0a' slot='0x00' function='0x1'/></source></hostdev></devices></domain>"
    assert parse_libvirt_hostdevs(xml, "x.xml") == (LibvirtHostdev("win", "x.xml", "0000:0a:00.1"),)
    assert parse_pcie_flr(b"\0" * 64) is False  # no capability list bit
    assert parse_pcie_flr(b"\0" * 6 + b"\x10" + b"\0" * 57) is None  # unprivileged 64-byte read
    assert parse_option_rom(rom_image(0, False) + rom_image(3, True)) == ["x86 (legacy BIOS)", "EFI"]
    with pytest.raises(ValueError):
        parse_initramfs(b"not an initramfs at all", "x")


# --- snapshot capture: record then replay gives the same verdicts --------------------------------


def forecast_tree(tmp_path) -> DirHost:  # type: ignore[no-untyped-def]
    """A host whose GPU group also holds the NVMe with / and whose iomem has efifb in BAR 0."""
    root = tmp_path / "root"

    def w(p: str, data: str | bytes) -> None:
        f = root / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data if isinstance(data, bytes) else data.encode())

    def ln(p: str, target: str) -> None:
        f = root / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, f)

    w("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p2 intel_iommu=on intremap=off\n")
    w("/proc/sys/kernel/osrelease", "5.15.0-91-generic\n")
    w("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test\nflags\t\t: fpu vmx\n")
    w("/proc/iomem", "c0000000-cfffffff : 0000:01:00.0\n  c0000000-c03e7fff : efifb\n")
    w("/proc/interrupts", "  CPU0\n 0: 1 IO-APIC 2-edge timer\n 24: 3 PCI-MSI 1-edge nvme0q0\n")
    w("/proc/self/mounts", "/dev/nvme0n1p2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n")
    w("/proc/net/route", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n")
    w("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "N\n")
    (root / "sys/kernel/iommu_groups").mkdir(parents=True)
    (root / "sys/class/iommu/dmar0").mkdir(parents=True)
    for addr, cls, ven, dev, drv in (("0000:01:00.0", "0x030000", "0x10de", "0x1e84", "nouveau"),
                                     ("0000:03:00.0", "0x010802", "0x144d", "0xa808", "nvme")):
        d = f"/sys/devices/pci0000:00/0000:00:01.0/{addr}"
        w(f"{d}/class", cls + "\n")
        w(f"{d}/vendor", ven + "\n")
        w(f"{d}/device", dev + "\n")
        w(f"{d}/resource", ("0x00000000c0000000 0x00000000cfffffff 0x0000000000042208\n" if addr.startswith("0000:01") else "") + "0x0 0x0 0x0\n" * 6)
        w(f"{d}/reset_method", "bus\n")
        (root / f"sys/bus/pci/drivers/{drv}").mkdir(parents=True, exist_ok=True)
        ln(f"{d}/driver", f"../../../../bus/pci/drivers/{drv}")
        (root / "sys/kernel/iommu_groups/1/devices").mkdir(parents=True, exist_ok=True)
        ln(f"/sys/kernel/iommu_groups/1/devices/{addr}", f"../../../../devices/pci0000:00/0000:00:01.0/{addr}")
        ln(f"{d}/iommu_group", "../../../../kernel/iommu_groups/1")
        ln(f"/sys/bus/pci/devices/{addr}", f"../../../devices/pci0000:00/0000:00:01.0/{addr}")
    (root / "sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0/nvme/nvme0/nvme0n1/nvme0n1p2").mkdir(parents=True)
    ln("/sys/class/block/nvme0n1p2", "../../devices/pci0000:00/0000:00:01.0/0000:03:00.0/nvme/nvme0/nvme0n1/nvme0n1p2")
    (root / "sys/class/net").mkdir(parents=True)
    w("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1e84,10de:1b80\n")
    cmds = {("dmesg",): CommandResult(("dmesg",), 0, "[0.1] DMAR: IOMMU enabled\n", "")}
    return DirHost(str(root), cmds)


FORECAST_IDS = ["iommu.interrupt_remapping", "vfio.ids_unique_to_card", "gpu.group_safe", "boot.config_in_effect",
                "boot.initramfs_current", "gpu.framebuffer_free", "gpu.reset_capable", "config.no_drift",
                "boot.secure_boot_modules", "gpu.rom_readable", "cmdline.iommu_args_meaningful"]


def statuses(h) -> list[tuple[str, str | None, str, str]]:  # type: ignore[no-untyped-def]
    rep = run_checks(HostFacts(h), h.source_info(), only=FORECAST_IDS)
    return [(sr.result.check_id, sr.subject, sr.result.status.value, sr.result.summary) for sr in rep.results]


def test_record_then_replay_gives_identical_forecasts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = forecast_tree(tmp_path)
    live = statuses(src)
    by = {c: s for c, _, s, _ in live}
    assert by["iommu.interrupt_remapping"] == "fail"
    assert by["gpu.group_safe"] == "fail"
    assert by["gpu.framebuffer_free"] == "fail"
    assert by["config.no_drift"] == "warn"
    out = str(tmp_path / "snap")
    record(out, src, redact=False)
    assert statuses(SnapshotHost(out)) == live


def test_a_fact_the_recording_lacks_is_unknown_not_absent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    src = forecast_tree(tmp_path)
    out = tmp_path / "snap"
    record(str(out), src, redact=False)
    m = json.loads((out / "manifest.json").read_text())
    m["captured"] = [p for p in m["captured"] if p != "/proc/interrupts"]
    (out / "manifest.json").write_text(json.dumps(m))
    f = HostFacts(SnapshotHost(str(out)))
    with pytest.raises(FactUnknown):
        f.interrupt_chips()


def test_framebuffer_argument_joins_the_fix_plan(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The safe fix for a framebuffer the kernel will not evict goes into the bootloader plan."""
    from doctor.fixer import build_plan
    from doctor.plan import FileEdit

    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/grub").write_text('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=""\n')
    f = fb_host(kernel_release="5.15.0-91-generic")
    rep = run_checks(f, SourceInfo("test", "x"), gpu="0000:01:00.0")
    fb = next(sr.result for sr in rep.results if sr.result.check_id == "gpu.framebuffer_free")
    assert fb.status is Status.FAIL
    plan = build_plan(rep, DirHost(str(root)), only=["gpu.framebuffer_free"])
    grub = next(a for a in plan.actions if isinstance(a, FileEdit) and a.path == "/etc/default/grub")
    assert "video=efifb:off" in grub.new.decode() or "initcall_blacklist=sysfb_init" in grub.new.decode()
    assert "gpu.framebuffer_free" in grub.checks


def test_x86_iommu_arguments_are_not_judged_on_an_arm_host() -> None:
    from doctor.facts import CpuInfo

    arm = CpuInfo("ARM", "Cortex-A76", frozenset(), 4)
    r = result(host(cpu=arm, cmdline="root=/dev/sda1 iommu=on vfio-pci-ids=10de:1c82", kernel_log="", iommu_class=()),
               "cmdline.iommu_args_meaningful")
    # iommu=on means nothing to the x86 parser, but this host has none; the misspelled vfio-pci ids stay wrong everywhere
    assert r.status is Status.WARN and "vfio-pci-ids" in r.summary and "`iommu=on`" not in " ".join([r.summary, *r.messages])
    assert r.remedy is not None and r.remedy.params is not None and r.remedy.params.remove == ("vfio-pci-ids=10de:1c82",)
