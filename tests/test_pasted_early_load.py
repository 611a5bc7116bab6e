"""vfio.early_load from a paste: FAIL where the paste shows the configuration that decides it (the initramfs configuration
and every modules-load list, no vfio-pci there) and the card on its native driver at this boot; unknown, with the
command that settles it, where it does not; and never a verdict that contradicts vfio.binding_persistent on the same paste."""

from __future__ import annotations

from doctor import pasted as P

# lspci -nnk of a GTX 1060 (as gh-complete-single-gpu-passthrough-8 shows it) bound to vfio-pci, the "Kernel modules" lines not
# shown (lspci prints them only where it can read modules.alias), with the popular group script, modprobe.d and modules-load.d
HIDDEN = '$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 [GeForce GTX 1060 6GB] [1462:3285]\n\tKernel driver in use: vfio-pci\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 High Definition Audio Controller [1462:3285]\n\tKernel driver in use: vfio-pci\n\n$ for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo "IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})"; done\nIOMMU Group 1 00:01.0 PCI bridge [0604]: Intel Corporation Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 07)\nIOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\nIOMMU Group 1 01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\n$ grep -r . /etc/modprobe.d/\n/etc/modprobe.d/vfio.conf:options vfio-pci ids=10de:1c03,10de:10f1\n\n$ cat /etc/modules-load.d/*.conf\nvfio\nvfio_iommu_type1\nvfio_pci\n'

# the same card on nvidia / snd_hda_intel with vfio-pci.ids= on the running command line; /etc/modules and
# /etc/initramfs-tools/modules shown without vfio-pci, modprobe.d without a softdep
CMDLINE = '$ cat /proc/cmdline\nBOOT_IMAGE=/boot/vmlinuz-6.1.0-13-amd64 root=UUID=0d3b ro quiet intel_iommu=on vfio-pci.ids=10de:1c03,10de:10f1\n\n$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 [GeForce GTX 1060 6GB] [1462:3285]\n\tKernel driver in use: nvidia\n\tKernel modules: nouveau, nvidia_drm, nvidia\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 High Definition Audio Controller [1462:3285]\n\tKernel driver in use: snd_hda_intel\n\tKernel modules: snd_hda_intel\n\n$ for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo "IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})"; done\nIOMMU Group 1 00:01.0 PCI bridge [0604]: Intel Corporation Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 07)\nIOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\nIOMMU Group 1 01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\n$ cat /etc/modules\ncoretemp\nloop\nkvm_intel\n\n$ cat /etc/initramfs-tools/modules\n# List of modules that you want to include in your initramfs.\nlz4\n\n$ grep -r . /etc/modprobe.d/\n/etc/modprobe.d/blacklist-nouveau.conf:blacklist nouveau\n/etc/modprobe.d/blacklist-nouveau.conf:options nouveau modeset=0\n'

# the same, with the ids only in modprobe.d (a built-in vfio-pci would never read them) and no /proc/cmdline
MODPROBE_ONLY = '$ lspci -nnk -s 01:00\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 [GeForce GTX 1060 6GB] [1462:3285]\n\tKernel driver in use: nvidia\n\tKernel modules: nouveau, nvidia_drm, nvidia\n01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\tSubsystem: Micro-Star International Co., Ltd. [MSI] GP106 High Definition Audio Controller [1462:3285]\n\tKernel driver in use: snd_hda_intel\n\tKernel modules: snd_hda_intel\n\n$ for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo "IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})"; done\nIOMMU Group 1 00:01.0 PCI bridge [0604]: Intel Corporation Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 07)\nIOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP106 [GeForce GTX 1060 6GB] [10de:1c03] (rev a1)\nIOMMU Group 1 01:00.1 Audio device [0403]: NVIDIA Corporation GP106 High Definition Audio Controller [10de:10f1] (rev a1)\n\n$ grep -r . /etc/modprobe.d/\n/etc/modprobe.d/vfio.conf:options vfio-pci ids=10de:1c03,10de:10f1\n\n$ cat /etc/modules\ncoretemp\nloop\nkvm_intel\n\n$ cat /etc/initramfs-tools/modules\n# List of modules that you want to include in your initramfs.\nlz4\n'


def verdicts(text: str) -> dict[str, tuple[str, str]]:
    pf = P.PastedFacts(P.evidence_from_text(text, "paste.txt"))
    run = P.run_pasted(pf, "paste.txt")
    return {sr.result.check_id: (sr.result.status.value, sr.result.summary) for sr in run.report.results
            if sr.result.check_id in ("vfio.early_load", "vfio.binding_persistent")}


def test_a_function_on_vfio_pci_with_its_native_driver_not_shown_is_no_pass_from_absence() -> None:
    # before: early_load PASS ('no native driver competes') while binding_persistent WARNed that a reboot loses the binding
    v = verdicts(HIDDEN)
    assert v["vfio.binding_persistent"][0] == "warn"
    assert v["vfio.early_load"][0] == "warn", v
    assert "modules-load.d" in v["vfio.early_load"][1]


def test_configuration_shown_without_vfio_pci_and_the_native_driver_in_use_fails_both() -> None:
    # before: both unknown (a pasted configuration without vfio-pci never decided it)
    v = verdicts(CMDLINE)
    assert v["vfio.early_load"][0] == "fail", v
    assert "nothing loads vfio-pci at boot" in v["vfio.early_load"][1]
    assert "0000:01:00.0 on nvidia" in v["vfio.early_load"][1]
    assert v["vfio.binding_persistent"][0] == "fail"


def test_ids_only_in_modprobe_d_leave_early_load_unknown_until_built_in_is_known() -> None:
    v = verdicts(MODPROBE_ONLY)
    status, summary = v["vfio.early_load"]
    assert status == "unknown" and "built into the kernel" in summary
    # not bound at boot whichever it is; the reason names both readings
    assert v["vfio.binding_persistent"][0] == "fail"
    assert "or built in" in v["vfio.binding_persistent"][1]
    # a full lsmod that shows vfio_pci loaded as a module settles it: the native driver won at this boot
    lsmod = ("\n$ lsmod\nModule                  Size  Used by\nvfio_pci               16384  0\nvfio_pci_core          94208  1 vfio_pci\n"
             "vfio_iommu_type1       45056  0\nvfio                   57344  2 vfio_pci_core,vfio_iommu_type1\nnvidia_drm             77824  4\n"
             "nvidia              56487936  60 nvidia_drm\nsnd_hda_intel          57344  3\nkvm_intel             380928  0\n"
             "kvm                  1142784  1 kvm_intel\nirqbypass              16384  2 vfio_pci_core,kvm\n")
    v = verdicts(MODPROBE_ONLY + lsmod)
    assert v["vfio.early_load"][0] == "fail", v


def test_one_named_modules_load_file_does_not_decide_it() -> None:
    # /etc/modules-load.d/kvm.conf is one file: another may load vfio-pci
    text = CMDLINE.replace("$ cat /etc/modules\n", "$ cat /etc/modules-load.d/kvm.conf\n")
    status, summary = verdicts(text)["vfio.early_load"]
    assert status == "unknown" and "modules-load configuration does not load vfio-pci" in summary
