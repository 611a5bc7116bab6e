"""Each check's decision rules, on facts built by hand (no host needed)."""

from __future__ import annotations

import pytest

from doctor.datarecord import replace
from doctor.facts import BootConfig, ConfigLine, EarlyLoadConfig, ModuleState, PciDevice, parse_cmdline
from doctor.model import SourceInfo, Status
from doctor.runner import run_checks
from tests.factory import AMD, INTEL, FakeFacts, card, igpu, root_port

SRC = SourceInfo("test", "unit")


def verdicts(facts: FakeFacts, gpu: str | None = None) -> dict[str, tuple[Status, str]]:
    rep = run_checks(facts, SRC, gpu=gpu)
    return {sr.result.check_id: (sr.result.status, sr.result.summary) for sr in rep.results}


def result(facts: FakeFacts, check_id: str, gpu: str | None = None):  # type: ignore[no-untyped-def]
    rep = run_checks(facts, SRC, gpu=gpu, only=[check_id])
    assert len(rep.results) == 1
    return rep.results[0].result


MODS = ModuleState(frozenset({"kvm", "kvm_intel", "vfio_pci", "vfio"}), frozenset({"kvm", "vfio_pci"}), frozenset({"ext4"}))
GRUB_ON = BootConfig("grub", parse_cmdline("intel_iommu=on iommu=pt", "/etc/default/grub"), ("/etc/default/grub",),
                     tools=("/usr/sbin/update-grub", "/usr/sbin/update-initramfs"))


def host(**over):  # type: ignore[no-untyped-def]
    base = dict(
        cpu=INTEL,
        kvm_device=True,
        acpi_tables=frozenset({"DMAR", "APIC"}),
        cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt",
        kernel_release="5.0.0-27-generic",
        kernel_config={"CONFIG_INTEL_IOMMU": "y", "CONFIG_INTEL_IOMMU_DEFAULT_ON": "n"},
        modules=MODS,
        kernel_log="[0.1] DMAR: IOMMU enabled\n[1.0] DMAR: Intel(R) Virtualization Technology for Directed I/O",
        iommu_class=("dmar0",),
        pci=[root_port(), *card(), igpu()],
        modprobe={},
        early_load=EarlyLoadConfig((), (), "initramfs-tools"),
        boot_config=GRUB_ON,
    )
    base.update(over)
    return FakeFacts(**base)


# --- CPU -------------------------------------------------------------------


def test_vendor_comes_from_vendor_id_not_flags() -> None:
    amd_with_vmx_flag = replace(AMD, flags=frozenset({"vmx"}))
    r = result(host(cpu=amd_with_vmx_flag, kvm_device=False), "cpu.virtualization")
    assert r.status is Status.FAIL and "svm" in r.summary


def test_vm_guest_without_nested_virt_is_told_about_its_hypervisor() -> None:
    guest = replace(INTEL, flags=frozenset({"hypervisor"}))
    r = result(host(cpu=guest, kvm_device=False), "cpu.virtualization")
    assert r.status is Status.FAIL
    assert r.remedy is not None and "nested" in r.remedy.text


def test_no_vmx_flag_but_working_dev_kvm_is_not_a_failure() -> None:
    """Issue 17: KVM-usable and VFIO-possible are separate statements; /dev/kvm works, so no FAIL."""
    guest = replace(INTEL, flags=frozenset({"hypervisor"}))
    r = result(host(cpu=guest, kvm_device=True), "cpu.virtualization")
    assert r.status is Status.WARN and "KVM is usable" in r.summary
    assert any("IOMMU" in m for m in r.messages)


def test_missing_dev_kvm_fails_with_the_vendor_module() -> None:
    r = result(host(kvm_device=False), "kvm.available")
    assert r.status is Status.FAIL
    assert r.remedy is not None and "modprobe kvm_intel" in r.remedy.steps[0]


# --- firmware and command line ---------------------------------------------


def test_missing_dmar_hints_firmware_not_kernel_argument() -> None:
    r = result(host(acpi_tables=frozenset({"APIC"})), "firmware.iommu_table")
    assert r.status is Status.FAIL
    assert r.remedy is not None and "firmware" in r.remedy.text and "intel_iommu" not in r.remedy.text


def test_without_a_firmware_iommu_the_command_line_fix_defers_to_the_firmware_cause() -> None:
    """Issue 17: "No kernel argument can help" and "add intel_iommu=on" must not both be the fix."""
    f = host(acpi_tables=frozenset({"APIC"}), cmdline="root=/dev/sda1", iommu_class=(), iommu_groups={},
             kernel_log="[0.1] nothing here", boot_config=replace(GRUB_ON, cmdline=parse_cmdline("quiet", "/etc/default/grub")))
    fw = result(f, "firmware.iommu_table")
    cl = result(f, "cmdline.iommu_enabled")
    assert fw.status is Status.FAIL and any("No kernel argument can help" in m for m in fw.messages)
    assert cl.remedy is not None and cl.remedy.text.startswith("First give this host an IOMMU (see firmware.iommu_table)")
    assert cl.remedy.fix_id == ""  # `fix --all` does not edit the bootloader for an argument that cannot help yet


def test_inside_a_vm_guest_the_firmware_fix_addresses_the_hypervisor() -> None:
    guest = replace(INTEL, flags=frozenset({"vmx", "hypervisor"}))
    r = result(host(cpu=guest, acpi_tables=frozenset({"APIC"})), "firmware.iommu_table")
    assert r.status is Status.FAIL and r.remedy is not None
    assert "firmware setup" not in r.remedy.text and "hypervisor" in r.remedy.text
    assert any("intel-iommu,intremap=on" in s and "kernel-irqchip=split" in s and "q35" in s for s in r.remedy.steps)


def test_missing_intel_iommu_on_is_not_a_failure_when_the_build_default_is_on() -> None:
    f = host(cmdline="root=/dev/sda1", kernel_config={"CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF": "y"},
             boot_config=replace(GRUB_ON, cmdline=parse_cmdline("quiet", "/etc/default/grub")))
    r = result(f, "cmdline.iommu_enabled")
    assert r.status is Status.PASS, r.summary
    assert "build default" in r.summary


def test_missing_intel_iommu_on_fails_where_the_default_is_off_and_iommu_inactive() -> None:
    f = host(cmdline="root=/dev/sda1 quiet", iommu_class=(), pci=[*card(group=None)],
             boot_config=replace(GRUB_ON, cmdline=parse_cmdline("quiet splash", "/etc/default/grub")))
    r = result(f, "cmdline.iommu_enabled")
    assert r.status is Status.FAIL
    assert r.remedy is not None
    assert any('GRUB_CMDLINE_LINUX="quiet splash intel_iommu=on iommu=pt"' in s for s in r.remedy.steps)
    assert "sudo update-grub" in r.remedy.steps


def test_configured_but_not_booted_is_reboot_pending() -> None:
    f = host(cmdline="root=/dev/sda1 quiet", iommu_class=(), pci=[*card(group=None)])
    r = result(f, "cmdline.iommu_enabled")
    assert r.status is Status.WARN and "reboot pending" in r.summary


def test_intel_iommu_off_fails_now() -> None:
    r = result(host(cmdline="root=/dev/sda1 intel_iommu=off", iommu_class=(), pci=[*card(group=None)],
                    boot_config=replace(GRUB_ON, cmdline=parse_cmdline("intel_iommu=off", "/etc/default/grub"))),
               "cmdline.iommu_enabled")
    assert r.status is Status.FAIL and "intel_iommu=off" in r.summary


def test_intel_iommu_off_on_systemd_boot_with_vtd_on_by_default_says_only_remove() -> None:
    # The lab's Debian 12 systemd-boot host: intel_iommu=off in /etc/kernel/cmdline, a kernel
    # with CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y, so there is nothing to add, only to remove.
    line = "root=UUID=x ro console=ttyS0,115200 quiet intel_iommu=off"
    boot = BootConfig("systemd-boot", parse_cmdline(line, "/etc/kernel/cmdline"), ("/etc/kernel/cmdline",),
                      tools=("/usr/bin/bootctl", "/usr/bin/kernel-install", "/usr/sbin/update-initramfs"))
    r = result(host(cmdline=f"initrd=\\abc\\6.1.0-13-amd64\\initrd.img-6.1.0-13-amd64 {line}", iommu_class=(),
                    pci=[*card(group=None)], boot_config=boot,
                    kernel_config={"CONFIG_INTEL_IOMMU": "y", "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF": "y"}),
               "cmdline.iommu_enabled")
    assert r.status is Status.FAIL and r.remedy is not None
    assert r.remedy.steps == ("edit /etc/kernel/cmdline: remove intel_iommu=off",
                              'sudo kernel-install add 5.0.0-27-generic /boot/vmlinuz-5.0.0-27-generic', "sudo reboot")


def test_next_boot_disabling_the_iommu_fails_even_though_it_is_on_now() -> None:
    r = result(host(boot_config=replace(GRUB_ON, cmdline=parse_cmdline("intel_iommu=off", "/etc/default/grub"))),
               "cmdline.iommu_enabled")
    assert r.status is Status.FAIL and "next boot" in r.summary


def test_amd_iommu_on_is_flagged_as_unknown_option_not_required() -> None:
    f = host(cpu=AMD, acpi_tables=frozenset({"IVRS"}), cmdline="root=/dev/sda1 amd_iommu=on iommu=pt",
             iommu_class=("ivhd0",), kernel_log="AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40",
             boot_config=replace(GRUB_ON, cmdline=parse_cmdline("amd_iommu=on iommu=pt", "/etc/default/grub")))
    r = result(f, "cmdline.iommu_enabled")
    assert r.status is Status.WARN
    assert any("not an option the kernel knows" in m for m in r.messages)
    assert r.remedy is not None and "amd_iommu=on" in r.remedy.text


def test_amd_without_argument_passes() -> None:
    f = host(cpu=AMD, cmdline="root=/dev/sda1", boot_config=replace(GRUB_ON, cmdline=parse_cmdline("", "/etc/default/grub")))
    assert result(f, "cmdline.iommu_enabled").status is Status.PASS


def test_iommu_pt_is_advice() -> None:
    r = result(host(cmdline="intel_iommu=on", boot_config=replace(GRUB_ON, cmdline=parse_cmdline("intel_iommu=on", "x"))),
               "cmdline.iommu_passthrough")
    assert r.status is Status.WARN


def test_grub_cfg_not_regenerated_is_a_warning() -> None:
    stale = replace(GRUB_ON, generated=parse_cmdline("root=UUID=x ro quiet", "/boot/grub/grub.cfg"), generated_source="/boot/grub/grub.cfg")
    r = result(host(boot_config=stale), "cmdline.iommu_enabled")
    assert r.status is Status.WARN and "not regenerated" in r.summary


# --- IOMMU active ------------------------------------------------------------


def test_unreadable_kernel_log_lets_sysfs_decide_and_says_so() -> None:
    f = host()
    f.given.pop("kernel_log")
    r = result(f, "iommu.active")
    assert r.status is Status.PASS
    assert any("kernel log not readable" in m for m in r.messages)


def test_no_iommu_units_and_no_groups_fails() -> None:
    r = result(host(iommu_class=(), pci=[*card(group=None)]), "iommu.active")
    assert r.status is Status.FAIL


# --- GPUs --------------------------------------------------------------------


def test_3d_controller_is_a_gpu() -> None:
    h100 = PciDevice("0000:00:06.0", 0x030200, "10de", "2330", None, "a1", "nvidia", "3", False)
    r = result(host(pci=[h100]), "gpu.candidate")
    assert r.status is Status.PASS and "0000:00:06.0" in r.summary


def test_boot_display_is_a_warning() -> None:
    only = replace(card()[0], boot_vga=True)
    r = result(host(pci=[only, *card()[1:]]), "gpu.candidate")
    assert r.status is Status.WARN and "boot display" in r.summary


def test_default_candidate_skips_the_boot_igpu() -> None:
    rep = run_checks(host(), SRC)
    assert [g.address for g in rep.gpus] == ["0000:01:00.0"]


def test_bridge_in_group_is_not_a_failure() -> None:
    assert result(host(), "gpu.group_isolated").status is Status.PASS


def test_unrelated_device_in_group_fails_and_is_named() -> None:
    nic = PciDevice("0000:04:00.0", 0x020000, "10ec", "8168", None, "15", "r8169", "1")
    r = result(host(pci=[root_port(), *card(), nic, igpu()]), "gpu.group_isolated")
    assert r.status is Status.FAIL and "0000:04:00.0" in r.summary
    assert r.remedy is not None and r.remedy.fix_id == ""


# --- vfio --------------------------------------------------------------------

IDS = "options vfio-pci ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9"


def test_ids_cover_every_function() -> None:
    r = result(host(modprobe={"/etc/modprobe.d/vfio.conf": IDS + "\n"}), "vfio.ids_configured")
    assert r.status is Status.PASS


def test_typoed_ids_fail_with_the_exact_line_from_this_host() -> None:
    typo = "options vfio-pci ids=10de:1f02,10de:10f9,10de:1ada,10de:1adb\n"
    r = result(host(modprobe={"/etc/modprobe.d/vfio.conf": typo}), "vfio.ids_configured")
    assert r.status is Status.FAIL
    assert "10de:1f02" in r.summary  # named as matching no device
    assert r.remedy is not None and IDS in r.remedy.text


def test_two_conflicting_ids_lines_fail() -> None:
    r = result(host(modprobe={"/etc/modprobe.d/vfio.conf": IDS + "\n", "/etc/modprobe.d/zz.conf": "options vfio_pci ids=10de:1e84\n"}),
               "vfio.ids_configured")
    assert r.status is Status.FAIL and "conflicting" in r.summary


def test_ids_on_the_command_line_count() -> None:
    f = host(cmdline="intel_iommu=on vfio-pci.ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9",
             boot_config=replace(GRUB_ON, cmdline=parse_cmdline("intel_iommu=on vfio-pci.ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9", "g")))
    assert result(f, "vfio.ids_configured").status is Status.PASS


def test_builtin_vfio_pci_makes_modprobe_options_dead() -> None:
    mods = replace(MODS, builtin=frozenset({"vfio_pci", "vfio"}))
    r = result(host(modules=mods, modprobe={"/etc/modprobe.d/vfio.conf": IDS}), "vfio.ids_configured")
    assert r.status is Status.FAIL
    assert any("built into this kernel" in m for m in r.messages)


def test_partial_binding_is_not_viable_and_names_the_blockers() -> None:
    drivers = ("vfio-pci", "vfio-pci", "xhci_hcd", "nvidia-gpu")
    r = result(host(pci=[root_port(), *card(drivers=drivers), igpu()]), "vfio.group_viable")
    assert r.status is Status.FAIL
    assert "0000:01:00.2" in r.summary and "0000:01:00.3" in r.summary and "0000:01:00.0 " not in r.summary
    assert any("group 1 is not viable" in m for m in r.messages)
    assert r.remedy is not None
    assert "echo vfio-pci | sudo tee /sys/bus/pci/devices/0000:01:00.2/driver_override" in r.remedy.steps
    assert not any("new_id" in s for s in r.remedy.steps)


def test_unbound_functions_are_viable() -> None:
    r = result(host(pci=[root_port(), *card(drivers=("vfio-pci", None, None, "vfio-pci")), igpu()]), "vfio.group_viable")
    assert r.status is Status.PASS


def test_runtime_only_binding_warns_naming_what_is_lost() -> None:
    r = result(host(pci=[root_port(), *card(drivers=("vfio-pci",) * 4), igpu()]), "vfio.binding_persistent")
    assert r.status is Status.WARN and "0000:01:00.2" in r.summary


def test_ids_and_initramfs_make_the_binding_persistent() -> None:
    el = EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools")
    f = host(pci=[root_port(), *card(drivers=("vfio-pci",) * 4), igpu()], modprobe={"/etc/modprobe.d/vfio.conf": IDS}, early_load=el)
    assert result(f, "vfio.binding_persistent").status is Status.PASS
    assert result(f, "vfio.early_load").status is Status.PASS


def test_modules_load_d_only_is_a_race_warning() -> None:
    el = EarlyLoadConfig((ConfigLine("/etc/modules-load.d/vfio-pci.conf", 1, "vfio-pci"),), (), "initramfs-tools")
    r = result(host(modprobe={"/etc/modprobe.d/vfio.conf": IDS}, early_load=el), "vfio.early_load")
    assert r.status is Status.WARN and "xhci_pci" in r.summary


def test_softdeps_for_every_native_driver_pass() -> None:
    sd = "\n".join(f"softdep {m} pre: vfio-pci" for m in ("nvidiafb", "nouveau", "snd_hda_intel", "xhci_pci", "i2c_nvidia_gpu"))
    r = result(host(modprobe={"/etc/modprobe.d/vfio.conf": IDS + "\n" + sd}), "vfio.early_load")
    assert r.status is Status.PASS


# --- unknown facts -------------------------------------------------------------


def test_missing_fact_is_unknown_with_the_command_that_settles_it() -> None:
    rep = run_checks(FakeFacts(), SRC)
    by = {sr.result.check_id: sr.result for sr in rep.results}
    assert by["cpu.virtualization"].status is Status.UNKNOWN
    assert any("grep" in m for m in by["cpu.virtualization"].messages)
    assert all(sr.result.status in (Status.UNKNOWN, Status.NOT_APPLICABLE) for sr in rep.results), [
        (sr.result.check_id, sr.result.status) for sr in rep.results]


def test_a_crashing_check_becomes_an_error_result_and_others_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from doctor import registry

    specs = registry.load_checks()
    spec = specs["kvm.available"]

    def boom(ctx):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("planted")

    monkeypatch.setitem(registry.REGISTRY, "kvm.available", replace(spec, func=boom))
    rep = run_checks(healthy(), SRC)
    by = {sr.result.check_id: sr.result for sr in rep.results}
    assert by["kvm.available"].status is Status.ERROR and "planted" in by["kvm.available"].summary
    assert by["cpu.virtualization"].status is Status.PASS
    assert rep.exit_code == 3


def test_a_crashed_check_makes_the_run_exit_3_even_when_another_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 1 says "the host is not ready"; with a check that crashed the verdict is incomplete: 3 wins."""
    from doctor import registry

    spec = registry.load_checks()["kvm.available"]

    def boom(ctx):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("planted")

    failing = run_checks(host(), SRC)
    assert Status.FAIL in {sr.result.status for sr in failing.results} and failing.exit_code == 1
    monkeypatch.setitem(registry.REGISTRY, "kvm.available", replace(spec, func=boom))
    rep = run_checks(host(), SRC)
    st = {sr.result.status for sr in rep.results}
    assert Status.FAIL in st and Status.ERROR in st
    assert rep.exit_code == 3


def test_cli_exit_3_with_a_crashed_and_a_failed_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import os

    from doctor import registry
    from doctor.cli import main

    spec = registry.load_checks()["kvm.available"]

    def boom(ctx):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("planted")

    monkeypatch.setitem(registry.REGISTRY, "kvm.available", replace(spec, func=boom))
    snap = os.path.join(os.path.dirname(__file__), "..", "fixtures", "dev-machine")
    rc = main(["check", "--snapshot", snap, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["fail"] >= 1 and doc["summary"]["error"] == 1
    assert rc == doc["summary"]["exit_code"] == 3


def healthy() -> FakeFacts:
    return host(pci=[root_port(), *card(drivers=("vfio-pci",) * 4), igpu()], modprobe={"/etc/modprobe.d/vfio.conf": IDS},
                early_load=EarlyLoadConfig((), (ConfigLine("/etc/initramfs-tools/modules", 1, "vfio-pci"),), "initramfs-tools"))


FORECASTS = {"iommu.interrupt_remapping", "vfio.ids_unique_to_card", "gpu.group_safe", "gpu.framebuffer_free",
             "gpu.reset_capable", "gpu.rom_readable", "cmdline.iommu_args_meaningful"}


def registry_ids() -> list[str]:
    from doctor.registry import load_checks

    return list(load_checks())


def test_exit_codes() -> None:
    # the forecasts need facts a hand-built host does not give: only the notes' chain here
    chain = [c for c in registry_ids() if not c.startswith(("boot.", "config.", "vm.", "guest.")) and c not in FORECASTS]
    rep = run_checks(healthy(), SRC, only=chain)
    assert {sr.result.status for sr in rep.results} <= {Status.PASS, Status.WARN}, [(sr.result.check_id, sr.result.summary) for sr in rep.results if sr.result.status is not Status.PASS]
    assert rep.exit_code == 0
    assert run_checks(host(), SRC).exit_code == 1


def test_identical_card_kept_by_the_host_means_no_ids_line() -> None:
    second = card(group="2", bus="02")  # the same four ids, staying with the host on its drivers
    f = host(pci=[root_port(), *card(), *second, igpu()])
    r = result(f, "vfio.ids_configured", gpu="0000:01:00.0")
    assert r.status is Status.WARN and "0000:02:00.0" in r.summary
    assert r.remedy is not None and "driver_override" in r.remedy.text and "ids=" not in "".join(r.remedy.steps)
    from doctor.fixer import build_plan
    from doctor.plan import FileEdit

    rep = run_checks(f, SRC, gpu="0000:01:00.0")
    plan = build_plan(rep, FakeHostForPlan())
    assert not any(isinstance(a, FileEdit) and a.path == "/etc/modprobe.d/vfio.conf" for a in plan.actions)
    assert any("would also take 0000:02:00.0" in why for _, why in plan.explanations)


class FakeHostForPlan:
    """Just enough of a Host for planning file edits: every file absent."""

    def read_text_or_none(self, path: str) -> None:
        return None

    def exists(self, path: str) -> bool:
        return False

    def listdir(self, path: str) -> list[str]:
        raise FileNotFoundError(path)


# --- the guest's memory ---------------------------------------------------------


def _dom(**kw):  # type: ignore[no-untyped-def]
    from doctor.facts import LibvirtDomain

    base = dict(name="win10", file="/etc/libvirt/qemu/win10.xml", memory_kib=16 * 1024**2, hostdevs=2, hugepages=False,
                hard_limit_kib=None, locked=False)
    base.update(kw)
    return LibvirtDomain(**base)


MEM = {"MemTotal": 64 * 1024**2, "MemAvailable": 48 * 1024**2, "HugePages_Free": 0, "Hugepagesize": 2048}


class MemFacts(FakeFacts):
    def libvirt_domains(self):  # type: ignore[no-untyped-def]
        return self._get("libvirt_domains", super().libvirt_domains)

    def meminfo(self):  # type: ignore[no-untyped-def]
        return self._get("meminfo", super().meminfo)


def test_memory_hard_limit_below_guest_ram_fails() -> None:
    r = result(MemFacts(libvirt_domains=(_dom(hard_limit_kib=8 * 1024**2),), meminfo=MEM), "vm.memory_pinnable")
    assert r.status is Status.FAIL and "hard_limit" in r.summary and "VFIO_MAP_DMA" in r.summary


def test_too_few_free_hugepages_fail() -> None:
    mi = {**MEM, "HugePages_Free": 1024}  # 2 GiB of 2 MiB pages for a 16 GiB guest
    r = result(MemFacts(libvirt_domains=(_dom(hugepages=True),), meminfo=mi), "vm.memory_pinnable")
    assert r.status is Status.FAIL and "hugepages" in r.summary


def test_guest_that_fits_passes_and_no_hostdev_is_not_applicable() -> None:
    assert result(MemFacts(libvirt_domains=(_dom(),), meminfo=MEM), "vm.memory_pinnable").status is Status.PASS
    assert result(MemFacts(libvirt_domains=(_dom(hostdevs=0),), meminfo=MEM), "vm.memory_pinnable").status is Status.NOT_APPLICABLE
    assert result(MemFacts(libvirt_domains=(_dom(),)), "vm.memory_pinnable").status is Status.UNKNOWN


def test_libvirt_domain_parser_reads_units() -> None:
    from doctor.facts import parse_libvirt_domain

    xml = """<domain type='kvm'><name>w</name><memory unit='GiB'>16</memory>
      <memtune><hard_limit unit='KiB'>4194304</hard_limit></memtune>
      <memoryBacking><hugepages/></memoryBacking>
      <devices><hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev></devices></domain>"""
    d = parse_libvirt_domain(xml, "f")
    assert (d.memory_kib, d.hard_limit_kib, d.hugepages, d.hostdevs) == (16 * 1024**2, 4 * 1024**2, True, 1)


def test_a_group_bound_by_hand_and_accepted_by_qemu_is_one_warning_not_three_verdicts() -> None:
    """Issue 17: one fact (bound now, not at boot), one severity: ids, early load and persistence all WARN."""
    f = host(pci=[root_port(), *card(drivers=("vfio-pci",) * 4), igpu()])
    got = {cid: result(f, cid, gpu="0000:01:00.0") for cid in ("vfio.ids_configured", "vfio.early_load",
                                                                 "vfio.binding_persistent", "vfio.group_viable")}
    assert got["vfio.group_viable"].status is Status.PASS
    for cid in ("vfio.ids_configured", "vfio.early_load", "vfio.binding_persistent"):
        assert got[cid].status is Status.WARN, (cid, got[cid].summary)
    assert "a reboot loses it" in got["vfio.ids_configured"].summary
    # the same host with the GPU still on its native driver: nothing works yet, ids missing is a blocker
    f2 = host(pci=[root_port(), *card(), igpu()])
    assert result(f2, "vfio.ids_configured", gpu="0000:01:00.0").status is Status.FAIL


def test_bind_plan_also_binds_the_functions_that_have_no_driver() -> None:
    """Issue 17: with the GPU itself unbound, binding only the blocking audio makes the group viable while
    QEMU still fails (`error getting device from group N: No such device`): every function goes to vfio-pci."""
    from remediations.pci_bind import plan_bind

    f = host(pci=[root_port(), *card(drivers=(None, "snd_hda_intel", "vfio-pci", "vfio-pci")), igpu()])
    acts, why = plan_bind(f, f.pci_devices()["0000:01:00.0"], ("vfio.group_viable",))
    bound = [a.address for a in acts if getattr(a, "address", None)]
    assert why is None and bound == ["0000:01:00.1", "0000:01:00.0"], (bound, why)
    gpu_bind = next(a for a in acts if getattr(a, "address", None) == "0000:01:00.0")
    assert not gpu_bind.unbinds and "QEMU needs it on vfio-pci" in gpu_bind.reason
