"""Error messages people paste are evidence: each rule of doctor/pasted/observe.py, on lines copied from public
threads (the slug names the fixtures/pasted entry the line comes from), settles the check it names and cites the
pasted file:line."""

from __future__ import annotations

import pytest

from doctor import pasted as P
from doctor.causes import analyse
from doctor.errors import FactUnknown
from doctor.facts import Facts
from doctor.facts.logsearch import top_level_alternatives
from doctor.pasted.observe import clean, observe_text


def run_text(text: str, name: str = "paste.txt") -> P.PastedRun:
    pf = P.PastedFacts(P.evidence_from_text(text, name))
    assert pf.recognised_anything()
    return P.run_pasted(pf, name)


def result(run: P.PastedRun, cid: str, subject: str | None = None):  # type: ignore[no-untyped-def]
    rs = [sr.result for sr in run.report.results if sr.result.check_id == cid and (subject is None or sr.subject == subject)]
    assert len(rs) == 1, (cid, subject, [sr.subject for sr in run.report.results if sr.result.check_id == cid])
    return rs[0]


# gh-kubevirt-6718 (kubectl describe event), as pasted
KUBEVIRT = ("  Warning  SyncFailed        7s    virt-handler, k8s-master   server error. command SyncVMI failed: \"LibvirtError(Code=1, "
            "Domain=10, Message='internal error: qemu unexpectedly closed the monitor: 2021-11-03T08:06:48.563014Z qemu-kvm: -device "
            "vfio-pci,host=0000:01:00.0,id=ua-gpu1,bus=pci.5,addr=0x0: vfio 0000:01:00.0: group 1 is not viable\\nPlease ensure all "
            "devices within the iommu_group are bound to their vfio bus driver.')\"\n")


def test_group_not_viable_fails_group_viable_naming_the_group_and_citing_the_line() -> None:
    run = run_text("line one of the ticket\n" + KUBEVIRT)
    r = result(run, "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "fail"
    assert "group 1 not viable" in r.summary and "not shown in the evidence" in r.summary
    assert any(e.source == "paste.txt:2" and "group 1 is not viable" in e.value for e in r.evidence)
    # the group number also proves the IOMMU active and groups present
    assert result(run, "iommu.active").status.value == "pass"
    assert result(run, "iommu.groups_present").status.value == "pass"


def test_group_not_viable_names_the_culprit_the_paste_shows() -> None:
    # gh-complete-single-gpu-passthrough-8's lspci -nnk (1060 on nvidia, its audio on snd_hda_intel) with a QEMU error
    text = ("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n"
            "\tKernel driver in use: nvidia\n"
            "01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n"
            "\tKernel driver in use: snd_hda_intel\n"
            "\n"
            "qemu-system-x86_64: -device vfio-pci,host=01:00.0,multifunction=on: vfio error: 0000:01:00.0: group 1 is not viable\n")
    r = result(run_text(text), "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "fail"
    # QEMU named 01:00.0 in group 1, and the paste shows it on nvidia: a culprit by QEMU's own word.
    # The group's members are not shown: the audio function is only likely in it, and said so.
    assert r.summary.endswith("devices on a host driver: 0000:01:00.0 on nvidia (the device QEMU named); "
                              "likely 0000:01:00.1 on snd_hda_intel (same card)"), r.summary
    assert any("members are not shown" in n and "/sys/kernel/iommu_groups/1/devices" in n for n in r.messages), r.messages
    # the GPU on vfio-pci, its audio on the host driver: only the audio, and only as likely
    r2 = result(run_text(text.replace("in use: nvidia", "in use: vfio-pci")), "vfio.group_viable", "0000:01:00.0")
    assert r2.status.value == "fail"
    assert r2.summary.endswith(": likely 0000:01:00.1 on snd_hda_intel (same card)"), r2.summary


@pytest.mark.parametrize("line", [
    # gh-macos-simple-kvm-579
    "qemu-system-x86_64: -device vfio-pci,host=08:00.0,bus=port.1,multifunction=on: vfio 0000:08:00.0: no iommu_group found: No such file or directory",
    # gh-kvm-gpu-passthrough-bigant-19 (virt-manager)
    "Error starting domain: unsupported configuration: host doesn't support passthrough of host PCI devices",
    # gh-raspberry-pi-pcie-devices-754 (new kernel wording of the probe failure)
    "[   26.895721] vfio-pci 0001:01:00.0: probe with driver vfio-pci failed with error -22",
])
def test_an_error_only_a_missing_iommu_prints_fails_iommu_active(line: str) -> None:
    r = result(run_text(line + "\n"), "iommu.active")
    assert r.status.value == "fail"
    assert r.evidence[0].source == "paste.txt:1"


def test_vfio_pci_lines_before_a_failed_probe_are_no_proof() -> None:
    # gh-raspberry-pi-pcie-devices-754: vfio-pci prints during the probe that then fails
    text = ("[   26.871532] vfio-pci 0001:01:00.0: vgaarb: VGA decodes changed: olddecodes=io+mem,decodes=none:owns=none\n"
            "[   26.895721] vfio-pci 0001:01:00.0: probe with driver vfio-pci failed with error -22\n")
    assert result(run_text(text), "iommu.active").status.value == "fail"


def test_an_error_against_a_proof_is_a_warning_never_pass_or_unknown() -> None:
    # gh-kvm-gpu-passthrough-bigant-19: two attempts, one says no IOMMU, the other names group 2
    text = ("libvirt.libvirtError: unsupported configuration: host doesn't support passthrough of host PCI devices\n\n"
            "qemu-system-x86_64: -device vfio-pci,host=0000:09:00.0: vfio 0000:09:00.0: group 2 is not viable\n")
    run = run_text(text)
    assert result(run, "iommu.active").status.value == "warn"
    assert result(run, "vfio.group_viable", "0000:09:00.0").status.value == "fail"


@pytest.mark.parametrize("line, group", [
    ("[  +0.000021] pci 0000:01:00.0: Adding to iommu group 8", "8"),  # gh-i915ovmfpkg-36 (dmesg -H)
    ("**vfio 0000:01:00.0: failed to open /dev/vfio/1: No such file or directory**", "1"),  # gh-mobilepassthrough-31
    ("crw-rw---- 1 root kvm 241, 0 Aug 14 18:43 /dev/vfio/25", "25"),  # gh-kata-containers-11687
    ("> kvm: -device vfio-pci,host=0000:04:00.1,id=hostpci3,bus=ich9-pcie-port-4,addr=0x0: vfio 0000:04:00.1: device is already attached",
     None),  # gh-vendor-reset-4
    ("AMD-VI IOMMU preformance counters supported ", None),  # gh-gpu-passthrough-manager-43, retyped as pasted
])
def test_a_line_only_an_active_iommu_prints_passes_iommu_active(line: str, group: str | None) -> None:
    obs = [o for o in observe_text(line + "\n", "p.txt") if o.kind == "iommu.proof"]
    assert obs and obs[0].group == group and obs[0].where == "p.txt:1"
    r = result(run_text(line + "\n"), "iommu.active")
    assert r.status.value == "pass" and r.evidence[0].source == "paste.txt:1"


def test_an_ls_of_dev_vfio_names_groups() -> None:
    text = "$ ls -l /dev/vfio\ntotal 0\ncrw------- 1 root root 243,   0 Jun  4 10:00 36\ncrw-rw-rw- 1 root root  10, 196 Jun  4 10:00 vfio\n"
    obs = observe_text(text, "ls.txt")
    assert [(o.kind, o.group, o.where) for o in obs] == [("iommu.proof", "36", "ls.txt:3")]


def test_a_device_on_vfio_pci_proves_the_iommu_active() -> None:
    # gh-kata-containers-11687: lshw -c display
    text = ("  *-display\n       description: 3D controller\n       product: GA102GL [A10]\n       vendor: NVIDIA Corporation\n"
            "       bus info: pci@0000:17:00.0\n       configuration: driver=vfio-pci latency=0\n")
    pf = P.PastedFacts(P.evidence_from_text(text, "lshw.txt"))
    assert pf.devs, "lshw -c display was not read"
    assert result(P.run_pasted(pf, "lshw.txt"), "iommu.active").status.value == "pass"


def test_a_bar_that_cannot_be_reserved_fails_framebuffer_free() -> None:
    # gh-talos-14356 (simpledrm on a 3D controller)
    text = ("c3:00.0 3D controller [0302]: NVIDIA Corporation Device [10de:2bb1] (rev a1)\n\n"
            "vfio-pci 0000:c3:00.0: BAR 0: can't reserve [mem 0x2800000000-0x2fffffffff 64bit pref]\n")
    r = result(run_text(text), "gpu.framebuffer_free", "0000:c3:00.0")
    assert r.status.value == "fail"
    assert "BAR 0" in r.summary and any(e.source == "paste.txt:3" for e in r.evidence)


def test_a_bar_error_with_no_lspci_still_makes_the_named_device_a_subject() -> None:
    # gh-vfio-single-amdgpu-passthrough-3
    r = result(run_text("[   44.702115] vfio-pci 0000:05:00.0: BAR 0: can't reserve [mem 0xd0000000-0xdfffffff 64bit pref]\n"),
               "gpu.framebuffer_free", "0000:05:00.0")
    assert r.status.value == "fail"


def test_efifb_on_the_bar_is_a_warning_when_the_kernel_is_not_known() -> None:
    # gh-single-gpu-passthrough-joeknock90-1
    r = result(run_text("[    0.191668] pci 0000:01:00.0: BAR 1: assigned to efifb\n"), "gpu.framebuffer_free", "0000:01:00.0")
    assert r.status.value == "warn" and "video=efifb:off" in " ".join(r.remedy.steps if r.remedy else ())


@pytest.mark.parametrize("line", [
    "[   38.526047] kvm: disabled by bios",  # gh-platform9-express-206
    "x86/cpu: VMX (outside TXT) disabled by BIOS",  # gh-dasharo-issues-14
    "kvm_amd: SVM disabled (by BIOS) in MSR_VM_CR",  # gh-kernel-bridge-50
])
def test_virtualization_disabled_by_the_firmware_fails_cpu_and_kvm(line: str) -> None:
    run = run_text(line + "\n")
    for cid in ("cpu.virtualization", "kvm.available"):
        r = result(run, cid)
        assert r.status.value == "fail", cid
        assert r.evidence[0].source == "paste.txt:1"
    assert "firmware" in result(run, "cpu.virtualization").summary


def test_kvm_no_hardware_support_fails_kvm_available() -> None:
    # gh-platform9-express-206
    run = run_text("[852791.201874] kvm: no hardware support\n")
    assert result(run, "kvm.available").status.value == "fail"
    assert result(run, "cpu.virtualization").status.value == "fail"


def test_proxmox_kvm_not_available_fails_kvm_available() -> None:
    # gh-tteck-proxmox-1613
    line = ("Jul 13 23:11:53 pve qm[648710]: KVM virtualisation configured, but not available. Either disable in VM "
            "configuration or enable in BIOS.\n")
    r = result(run_text(line), "kvm.available")
    assert r.status.value == "fail" and r.evidence[0].source == "paste.txt:1"


def test_no_interrupt_remapping_support_fails_interrupt_remapping() -> None:
    # the kernel's own wording (drivers/vfio/vfio_iommu_type1.c, pr_warn in vfio_iommu_type1_attach_group); with a
    # QEMU error naming the group, as the two appear together
    text = ("[  412.123456] vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param "
            "\"allow_unsafe_interrupts\" to enable VFIO IOMMU support on this platform\n\n"
            "qemu-system-x86_64: -device vfio-pci,host=01:00.0: vfio 0000:01:00.0: failed to setup container for group 1: "
            "Failed to set iommu for container: Operation not permitted\n")
    r = result(run_text(text), "iommu.interrupt_remapping")
    assert r.status.value == "fail"
    assert any(e.source == "paste.txt:1" for e in r.evidence)


def test_markup_around_a_pasted_line_is_taken_off() -> None:
    assert clean("> **vfio 0000:01:00.0: failed to open /dev/vfio/1: No such file or directory**") == \
        "vfio 0000:01:00.0: failed to open /dev/vfio/1: No such file or directory"
    assert clean("[    0.977163] [    T1] pci 0000:00:01.0: Adding to iommu group 1") == "pci 0000:00:01.0: Adding to iommu group 1"


def test_a_host_source_does_not_claim_observations() -> None:
    with pytest.raises(FactUnknown):
        Facts().observed()


def test_an_error_only_paste_is_recognised() -> None:
    pf = P.PastedFacts(P.evidence_from_text("kvm_amd: SVM disabled (by BIOS) in MSR_VM_CR\n", "e.txt"))
    assert pf.recognised_anything()


@pytest.mark.parametrize("text, want", [
    ("vfio_region_write(0000:01:00.0:region1+0x1234, 0x0,8) failed: Device or resource busy", "vfio.bar_reserve"),
    # gh-macos-simple-kvm-497
    ("qemu-system-x86_64: -device vfio-pci,host=0000:00:02.0,multifunction=on: vfio 0000:00:02.0: failed to open /dev/vfio/1: "
     "No such file or directory", "vfio.no_group_node"),
    ("vfio 0000:02:00.1: group 3 used in multiple address spaces", "vfio.multiple_address_spaces"),
    ("vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param \"allow_unsafe_interrupts\" to enable "
     "VFIO IOMMU support on this platform", "iommu.no_interrupt_remapping"),
    ("qemu-system-x86_64: vfio-pci: Cannot read device rom at 0000:00:02.0", "gpu.rom_unreadable"),  # gh-macos-kvm-pci-passthrough-2
    ("x86/cpu: VMX (outside TXT) disabled by BIOS", "kvm.disabled_by_bios"),  # gh-dasharo-issues-14
    ("KVM virtualisation configured, but not available. Either disable in VM configuration or enable in BIOS.", "kvm.unavailable"),
])
def test_explain_answers_each_text_with_the_right_first_entry(text: str, want: str) -> None:
    from doctor.explain import find_errors

    ids = [m.error.id for m in find_errors(text)]
    assert ids[:1] == [want], ids
    if want == "vfio.bar_reserve":
        assert "vfio.device_busy" not in ids  # a BAR write refused is the framebuffer, not a busy /dev/vfio node
    if want == "iommu.no_interrupt_remapping":
        from doctor.explain import KB

        first = next(e for e in KB if e.id == want).causes[0]
        assert first.checks == ("iommu.interrupt_remapping",)


def test_every_explain_pattern_alternative_holds_a_keyword() -> None:
    # find_errors_in_log reads only the lines that hold a KEYWORD: a pattern alternative without one would be missed
    from doctor.explain import KB, KEYWORDS
    for e in KB:
        for alt in top_level_alternatives(e.pattern.pattern):
            plain = alt.replace("\\", "").lower()
            assert any(k in plain for k in KEYWORDS), (e.id, alt)


def test_find_errors_in_log_reads_past_the_explain_cap() -> None:
    from doctor.explain import MAX_EXPLAIN_CHARS, find_errors_in_log

    filler = "[    1.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n" * (MAX_EXPLAIN_CHARS // 60 + 10)
    text = filler + "[  412.1] vfio-pci 0000:c3:00.0: BAR 0: can't reserve [mem 0x2800000000-0x2fffffffff 64bit pref]\n"
    assert [m.error.id for m in find_errors_in_log(text)] == ["vfio.bar_reserve"]


def test_every_observe_rule_alternative_holds_a_keyword() -> None:
    from doctor.pasted.observe import _KEYWORDS, _RULES

    for kind, rx in _RULES:
        for alt in top_level_alternatives(rx.pattern):
            plain = alt.replace("\\", "").lower()
            assert any(k in plain for k in _KEYWORDS), (kind, alt)


# the RTX 3090 on vfio-pci, its audio left on snd_hda_intel; no group listing, no error line
CARD_HALF_BOUND = ("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (rev a1)\n"
                   "\tSubsystem: ASUSTeK Computer Inc. Device [1043:87b3]\n"
                   "\tKernel driver in use: vfio-pci\n"
                   "\tKernel modules: nouveau, nvidia\n"
                   "01:00.1 Audio device [0403]: NVIDIA Corporation GA102 High Definition Audio Controller [10de:1aef] (rev a1)\n"
                   "\tSubsystem: ASUSTeK Computer Inc. Device [1043:87b3]\n"
                   "\tKernel driver in use: snd_hda_intel\n"
                   "\tKernel modules: snd_hda_intel\n")


def test_a_function_of_the_card_on_a_host_driver_fails_group_viable_without_the_groups() -> None:
    run = run_text(CARD_HALF_BOUND)
    assert result(run, "iommu.groups_present").status.value == "unknown"
    r = result(run, "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "fail", r
    assert r.summary == ("0000:01:00.0's group (not shown) is not viable: 0000:01:00.1 [0403] 10de:1aef on snd_hda_intel "
                         "(a function of the same card)"), r.summary
    assert any("ACS" in m for m in r.messages) and any("/sys/kernel/iommu_groups" in m for m in r.messages), r.messages
    assert [e.source for e in r.evidence] == ["paste.txt:5"], r.evidence
    # a failure decided on its own evidence is a cause of its own, not something that follows from an open question
    names = [c.name for c in analyse(run.report.results).causes if c.kind == "blocker"]
    assert "vfio.group_viable[0000:01:00.0]" in names, names


def test_the_gpu_itself_on_nvidia_fails_group_viable_saying_so() -> None:
    r = result(run_text(CARD_HALF_BOUND.replace("in use: vfio-pci", "in use: nvidia")), "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "fail"
    assert "0000:01:00.0 [0300] 10de:2204 on nvidia, 0000:01:00.1 [0403] 10de:1aef on snd_hda_intel" in r.summary
    assert "same card" not in r.summary and "The GPU itself is on a host driver" in r.messages[0], (r.summary, r.messages)


def test_a_card_all_on_vfio_pci_without_the_groups_stays_unknown() -> None:
    r = result(run_text(CARD_HALF_BOUND.replace("in use: snd_hda_intel", "in use: vfio-pci")), "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "unknown", r  # the group may hold other devices: only the listing settles it


def test_lspci_nnk_flattened_onto_one_line_is_read_record_by_record() -> None:
    flat = " ".join(ln.strip() for ln in CARD_HALF_BOUND.splitlines())
    run = run_text("before\n" + flat + "\n")
    r = result(run, "vfio.group_viable", "0000:01:00.0")
    assert r.status.value == "fail" and "0000:01:00.1 [0403] 10de:1aef on snd_hda_intel" in r.summary, r.summary
    assert [e.source for e in r.evidence] == ["paste.txt:2"], r.evidence  # the physical line it was on
    assert "lspci with drivers (-k) [line 2]" in run.report.source.details["input 1"], run.report.source.details


@pytest.mark.parametrize("text, line, address", [
    # readlink of the device's link: its output is the group's path alone, read only right after the command
    ("$ readlink /sys/bus/pci/devices/0000:01:00.0/iommu_group\n../../../../kernel/iommu_groups/13\n", 2, "0000:01:00.0"),
    ("# readlink -f /sys/bus/pci/devices/0000:0a:00.0/iommu_group\n/sys/kernel/iommu_groups/13\n", 2, "0000:0a:00.0"),
    # ls -l of the link
    ("lrwxrwxrwx 1 root root 0 Mar  1 10:00 /sys/bus/pci/devices/0000:01:00.0/iommu_group -> "
     "../../../../kernel/iommu_groups/13\n", 1, "0000:01:00.0"),
    # lspci -v's Flags line
    ("01:00.0 VGA compatible controller: NVIDIA Corporation TU104 [GeForce RTX 2080] (rev a1) (prog-if 00 [VGA controller])\n"
     "\tFlags: bus master, fast devsel, latency 0, IRQ 11, IOMMU group 13\n\tKernel driver in use: nouveau\n", 2, None),
])
def test_a_devices_group_link_or_flags_line_proves_the_iommu_and_names_the_group(text: str, line: int, address: str | None) -> None:
    run = run_text(text)
    r = result(run, "iommu.active")
    assert r.status.value == "pass" and any(e.source == f"paste.txt:{line}" for e in r.evidence), r
    g = result(run, "iommu.groups_present")
    assert g.status.value == "pass" and "13" in g.summary, g
    obs = [o for o in observe_text(text, "paste.txt") if o.kind == "iommu.proof"]
    assert [(o.group, o.address) for o in obs] == [("13", address)], obs


def test_a_group_path_not_after_readlink_proves_nothing() -> None:
    assert observe_text("$ ls /tmp\n../../../../kernel/iommu_groups/13\n", "paste.txt") == []
    assert observe_text("../../../../kernel/iommu_groups/13\n", "paste.txt") == []


def test_lspci_v_header_name_drops_rev_and_prog_if() -> None:
    pf = P.PastedFacts(P.evidence_from_text(
        "01:00.0 VGA compatible controller: NVIDIA Corporation TU104 [GeForce RTX 2080] (rev a1) (prog-if 00 [VGA controller])\n"
        "\tKernel driver in use: vfio-pci\n", "paste.txt"))
    assert pf.pci_devices()["0000:01:00.0"].name == "NVIDIA Corporation TU104 [GeForce RTX 2080]"
