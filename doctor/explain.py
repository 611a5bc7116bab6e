"""What a passthrough error message means: a small knowledge base.

Each entry is a regex over one error text, what it means, the likely causes in
order, the check ids whose verdicts settle each cause, and the commands that
tell the causes apart. `gpudoctor explain` prints it for one text; `check
--from` ties every error found in pasted evidence to the verdicts of those
checks (confirmed / ruled out / not settled).

Pure data and pure functions: no I/O here.
"""

from __future__ import annotations

import re

from doctor.datarecord import record

MAX_EXPLAIN_CHARS = 200_000  # one error text; longer input is cut (and said so)


@record(frozen=True)
class Cause:
    text: str
    checks: tuple[str, ...]  # check ids whose verdict settles this cause ("" none)
    confirm_on: tuple[str, ...] = ("fail",)  # statuses of those checks that confirm the cause


@record(frozen=True)
class KnownError:
    id: str
    pattern: re.Pattern[str]
    title: str
    meaning: str
    causes: tuple[Cause, ...]
    commands: tuple[str, ...]


def _k(id: str, rx: str, title: str, meaning: str, causes: list[Cause], commands: list[str]) -> KnownError:
    return KnownError(id, re.compile(rx, re.IGNORECASE), title, meaning, tuple(causes), tuple(commands))


KB: tuple[KnownError, ...] = (
    _k(
        "vfio.group_not_viable",
        r"group \d+ is not viable|ensure all devices within the iommu_group are bound to their vfio bus driver"
        r"|Verify all devices in group \d+ are bound to vfio",
        "IOMMU group not viable",
        "vfio refuses to open an IOMMU group while any device in it is bound to a host driver: the whole "
        "group goes to the guest or nothing does.",
        [
            Cause("another function of the card (HDMI audio, USB, UCSI) is still on its host driver", ("vfio.group_viable", "vfio.ids_configured")),
            Cause("an unrelated device shares the GPU's group (a slot or board without ACS isolation)", ("gpu.group_isolated",)),
            Cause("vfio-pci loaded after the native driver, which claimed a function first", ("vfio.early_load", "vfio.binding_persistent")),
        ],
        [
            "for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo \"IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})\"; done",
            "lspci -nnk",
            "grep -r . /etc/modprobe.d/; cat /proc/cmdline",
        ],
    ),
    _k(
        "vfio.bar_reserve",
        r"BAR \d+: can(?:'t| ?not) reserve|cannot reserve video memory"
        r"|vfio_(?:bar|region)_write\(.*Device or resource busy",
        "BAR cannot be reserved",
        "vfio-pci (or a driver) could not claim one of the device's memory windows because something else "
        "holds it: nearly always the firmware framebuffer (efifb, vesafb, simplefb / simpledrm, BOOTFB) "
        "left on the GPU the firmware booted with.",
        [
            Cause("the card is the host's boot display and the firmware framebuffer still holds its BAR", ("gpu.framebuffer_free", "gpu.candidate"), ("fail", "warn")),
            Cause("a host driver is still bound to the card", ("vfio.group_viable",)),
        ],
        [
            "grep -iE -B1 -A1 'bootfb|efifb|vesafb|simple' /proc/iomem",
            "dmesg | grep -iE 'efifb|vesafb|simplefb|simpledrm|boot VGA|BAR'",
            "cat /sys/bus/pci/devices/0000:01:00.0/boot_vga",
            "fix: video=efifb:off (older kernels) or initcall_blacklist=sysfb_init (simpledrm), or boot the host from another GPU",
        ],
    ),
    _k(
        "vfio.mmap_bar",
        r"Failed to mmap \S+ BAR \d+",
        "BAR cannot be mapped",
        "QEMU could not map a BAR of the device into the guest; usually the same conflict as `BAR N: can't "
        "reserve` (a host framebuffer on the boot GPU), sometimes a BAR too small for the host page size.",
        [
            Cause("the card is the host's boot display and a framebuffer holds its BAR", ("gpu.framebuffer_free", "gpu.candidate"), ("fail", "warn")),
            Cause("a host driver is still bound to a function of the card", ("vfio.group_viable",)),
        ],
        ["dmesg | grep -iE \"can't reserve|efifb|simpledrm\"", "grep -iE -B1 -A1 'bootfb|efifb' /proc/iomem"],
    ),
    _k(
        "vfio.container",
        r"failed to setup container for group \d+",
        "vfio container setup failed",
        "QEMU could not attach the group to an IOMMU container: the IOMMU is not usable for this group "
        "(not active, no interrupt remapping), the group is not viable, or the DMA mapping of guest memory failed.",
        [
            Cause("the IOMMU is not active in the running kernel", ("iommu.active", "iommu.groups_present")),
            Cause("a device of the group is on a host driver", ("vfio.group_viable",)),
            Cause("no interrupt remapping (old platforms): vfio_iommu_type1 allow_unsafe_interrupts=1 is the (unsafe) workaround",
                  ("iommu.interrupt_remapping",)),
            Cause("locked-memory limit too low to pin the guest's RAM (QEMU started by hand)", ()),
        ],
        ["dmesg | grep -iE 'dmar|amd-vi|remapping|vfio'", "ulimit -l", "ls /sys/kernel/iommu_groups"],
    ),
    _k(
        "vfio.reset",
        r"vfio: Cannot reset device|Cannot reset device|no available reset mechanism|Refused to change power state|"
        r"stuck in D3|Unable to power on device|Unknown PCI header type '127'",
        "device cannot be reset",
        "vfio found no way to reset the device between uses (no FLR, bus reset blocked by other devices on "
        "the bus), or the card is stuck in a low-power state: typical of AMD Polaris/Vega/Navi cards (the "
        "`reset bug`) and of cards whose other functions are not assigned with it.",
        [
            Cause("not every function of the card is assigned (a secondary bus reset needs them all)", ("vfio.ids_configured", "vfio.group_viable")),
            Cause("the card has no usable reset (AMD reset bug): vendor-reset module or a full host reboot between guest runs", ("gpu.reset_capable",)),
        ],
        ["lspci -vvs 0000:01:00.0 | grep -iE 'FLReset|DevCap'", "cat /sys/bus/pci/devices/0000:01:00.0/reset_method", "dmesg | grep -i reset"],
    ),
    _k(
        "qemu.memlock",
        r"Cannot allocate memory|vfio_dma_map\([^)]*\) = -12|locked memory|memlock|RLIMIT_MEMLOCK",
        "memory cannot be pinned",
        "Device assignment pins all guest RAM for DMA; the locked-memory limit (ulimit -l) or the free "
        "(huge)pages were too small.",
        [
            Cause("locked-memory limit below the guest's RAM (QEMU run by hand, a user service, a libvirt <hard_limit> too low)",
                  ("vm.memory_pinnable",)),
            Cause("not enough free memory or hugepages on the host", ()),
        ],
        ["ulimit -l", "grep -iE 'MemAvailable|Huge' /proc/meminfo", "grep -i memlock /etc/security/limits.conf /etc/security/limits.d/*"],
    ),
    _k(
        "iommu.missing",
        r"No IOMMU detected|IOMMU not found|No IOMMU found|host doesn't support passthrough of host PCI devices|"
        r"IOMMU not enabled|vfio-pci: probe of \S+ failed with error -22|probe with driver vfio-pci failed with error -22|DMAR: IOMMU disabled|"
        r"no iommu_group found|Operation not supported: .*IOMMU",
        "no IOMMU",
        "The running kernel has no active IOMMU, so there are no IOMMU groups and vfio cannot hand a device to a guest.",
        [
            Cause("VT-d / AMD-Vi (IOMMU) is off in the firmware: no ACPI DMAR/IVRS table", ("firmware.iommu_table",)),
            Cause("the kernel command line lacks intel_iommu=on (Intel) or disables the IOMMU", ("cmdline.iommu_enabled",)),
            Cause("the IOMMU did not come up", ("iommu.active", "iommu.groups_present")),
        ],
        ["dmesg | grep -iE 'DMAR|AMD-Vi|IOMMU'", "cat /proc/cmdline", "find /sys/kernel/iommu_groups/ -type l", "ls /sys/firmware/acpi/tables"],
    ),
    _k(
        "kvm.disabled_by_bios",
        r"kvm: disabled by bios|KVM \((?:vmx|svm)\) is disabled by your BIOS|VMX not enabled|SVM not enabled|"
        r"VMX \(outside TXT\) disabled by BIOS|SVM disabled \(by BIOS\)|"
        r"kvm_intel: VMX not supported|kvm_amd: SVM not supported",
        "virtualization disabled in firmware",
        "The CPU supports hardware virtualization but the firmware leaves it off, so KVM cannot load.",
        [
            Cause("VT-x / SVM disabled in the firmware setup", ("cpu.virtualization", "kvm.available")),
        ],
        ["grep -m1 -oE 'vmx|svm' /proc/cpuinfo", "dmesg | grep -i kvm", "kvm-ok"],
    ),
    _k(
        "kvm.unavailable",
        r"Could not access KVM kernel module|failed to initialize kvm|/dev/kvm does not exist|"
        r"KVM acceleration can NOT be used|Your CPU does not support KVM extensions|KVM is not available|"
        r"KVM virtualisation configured, but not available|kvm: no hardware support",
        "KVM not available",
        "/dev/kvm is missing: the kvm module for this CPU is not loaded, or the CPU/firmware does not offer virtualization.",
        [
            Cause("CPU virtualization off in firmware or absent", ("cpu.virtualization",)),
            Cause("kvm_intel / kvm_amd not loaded", ("kvm.available",)),
            Cause("running inside a VM that does not pass virtualization on (nested virtualization off)", ("cpu.virtualization",)),
        ],
        ["ls -l /dev/kvm", "lsmod | grep kvm", "grep -m1 -oE 'vmx|svm' /proc/cpuinfo", "kvm-ok"],
    ),
    _k(
        "cmdline.unknown_parameter",
        r"Unknown kernel command line parameters|AMD-Vi: Unknown option|Malformed early option",
        "kernel command line typo",
        "The kernel did not recognise an argument on its command line (a typo such as `intel_iomu=on`, or "
        "an option the kernel does not have, such as `amd_iommu=on`): it was ignored.",
        [
            Cause("the IOMMU argument is misspelt or not a real option", ("cmdline.iommu_enabled",)),
        ],
        ["cat /proc/cmdline", "dmesg | grep -iE 'unknown kernel command line|Unknown option'"],
    ),
    _k(
        "vfio.device_busy",
        r"error opening /dev/vfio/\d+|vfio: error getting device from group|^(?!.*vfio_(?:bar|region)_write).*Device or resource busy|"
        r"is already in use|vfio: error, group \d+ is not viable",
        "vfio device not available",
        "The group's /dev/vfio node is missing or busy: the device is not bound to vfio-pci, or another guest already holds it.",
        [
            Cause("the device is not bound to vfio-pci", ("vfio.group_viable", "vfio.ids_configured", "vfio.early_load")),
            Cause("another running guest already uses the group", ()),
        ],
        ["ls -l /dev/vfio/", "lspci -nnk -s 0000:01:00.0", "virsh list --all"],
    ),
    _k(
        "iommu.no_interrupt_remapping",
        r"No interrupt remapping support|Failed to set iommu for container: Operation not permitted",
        "no interrupt remapping",
        "vfio_iommu_type1 refuses to attach a group when the platform does not remap interrupts (a guest could "
        "otherwise forge MSIs to the host); QEMU then fails with `Failed to set iommu for container: Operation not permitted`.",
        [
            Cause("interrupt remapping is off: firmware setting (VT-d / IOMMU, x2APIC) or intremap=off on the command line",
                  ("iommu.interrupt_remapping",)),
            Cause("an old platform without remapping: vfio_iommu_type1 allow_unsafe_interrupts=1 is the (unsafe) workaround",
                  ("iommu.interrupt_remapping",)),
        ],
        ["dmesg | grep -iE 'DMAR-IR|AMD-Vi: Interrupt remapping|x2apic'", "grep -m3 IR- /proc/interrupts", "cat /proc/cmdline"],
    ),
    _k(
        "vfio.no_group_node",
        r"failed to open /dev/vfio/\d+",
        "the group's /dev/vfio node is missing",
        "QEMU found the device's IOMMU group (so the IOMMU is active) but not its /dev/vfio/N node: no device of "
        "the group is bound to vfio-pci, or the vfio modules are not loaded.",
        [
            Cause("the device is not on vfio-pci (a host driver such as nvidia or amdgpu still holds it)",
                  ("vfio.group_viable", "vfio.ids_configured")),
            Cause("vfio-pci was not loaded early enough or the binding was lost at reboot", ("vfio.early_load", "vfio.binding_persistent")),
        ],
        ["ls -l /dev/vfio/", "lspci -nnk -s 0000:01:00.0", "lsmod | grep vfio"],
    ),
    _k(
        "vfio.multiple_address_spaces",
        r"group \d+ used in multiple address spaces",
        "group split across address spaces",
        "Every device of an IOMMU group shares one DMA address space: QEMU refuses when functions of one group go "
        "to different VMs (or containers), or sit behind different (virtual) IOMMUs in one guest.",
        [
            Cause("functions of one group are assigned to different VMs or containers", ("gpu.group_isolated", "vm.hostdevs_cover_unit")),
            Cause("a vIOMMU in the guest puts the group's devices in different address spaces (assign them behind one bridge)", ()),
        ],
        ["ls /sys/kernel/iommu_groups/*/devices", "virsh dumpxml NAME | grep -A3 '<hostdev'"],
    ),
    _k(
        "gpu.rom_unreadable",
        r"Cannot read device rom|Invalid PCI ROM header signature|\brom: Input/output error",
        "option ROM unreadable",
        "QEMU (or the kernel) could not read a valid option ROM from the card: the ROM of the boot GPU is often "
        "shadowed by the firmware, some cards expose none; the guest firmware then cannot initialise the card.",
        [
            Cause("the card's ROM is not readable or not valid (boot GPU, laptop GPU without a ROM)", ("gpu.rom_readable",), ("fail", "warn")),
            Cause("the card is the host's boot display", ("gpu.candidate",), ("warn", "fail")),
        ],
        ["sudo sh -c 'echo 1 > /sys/bus/pci/devices/0000:01:00.0/rom; cat /sys/bus/pci/devices/0000:01:00.0/rom > rom.bin; "
         "echo 0 > /sys/bus/pci/devices/0000:01:00.0/rom'", "fix: give QEMU a dump with romfile=, or rombar=0"],
    ),
    _k(
        "vfio.no_such_device",
        r"not found: could not access /sys/bus/pci/devices/|no such host device",
        "the device is not on this host",
        "libvirt or QEMU was given a PCI address where this host has no device: the card moved (another slot, a card "
        "added or removed, a firmware update that renumbered the buses), or the address is mistyped.",
        [
            Cause("the VM's configuration names an address the host no longer has", ("config.no_drift",)),
            Cause("the card is not detected at all (seated badly, powered off, disabled in the firmware)", ()),
        ],
        ["lspci -nnD", "virsh dumpxml NAME | grep -A4 '<hostdev'", "dmesg | grep -iE 'pci 0000|BAR'"],
    ),
    _k(
        "boot.unsigned_module",
        r"Key was rejected by service|Loading of unsigned module is rejected",
        "unsigned module refused",
        "Secure Boot (or kernel lockdown, or module.sig_enforce) refuses a module that is not signed by a key the "
        "kernel trusts: out-of-tree modules such as nvidia or vendor-reset, built by DKMS without an enrolled key.",
        [
            Cause("Secure Boot or lockdown is on and the module is not signed with an enrolled key", ("boot.secure_boot_modules",), ("warn", "fail")),
        ],
        ["mokutil --sb-state", "cat /sys/kernel/security/lockdown", "modinfo -F signer vendor_reset nvidia",
         "fix: sign with a Machine Owner Key (DKMS: mokutil --import /var/lib/dkms/mok.pub) and enroll it, or turn Secure Boot off"],
    ),
    _k(
        "iommu.rmrr",
        r"ineligible for IOMMU domain attach due to platform RMRR|RMRR.*(?:conflict|fail|refus)",
        "RMRR conflict",
        "The firmware reserves memory (RMRR) for this device, and the kernel refuses to give it to a guest (common on HP ProLiant).",
        [Cause("platform RMRR on the device: firmware setting or a patched kernel", ())],
        ["dmesg | grep -i rmrr"],
    ),
    _k(
        "iommu.fault",
        r"DMAR: \[DMA (?:Read|Write)|DMAR: DRHD: handling fault|AMD-Vi: Event logged \[IO_PAGE_FAULT|IO_PAGE_FAULT",
        "IOMMU fault",
        "A device made a DMA access the IOMMU did not allow: a device shared between host and guest, a firmware RMRR, or a driver bug.",
        [
            Cause("devices of one group split between host and guest", ("gpu.group_isolated", "vfio.group_viable")),
            Cause("firmware or driver bug (often harmless at boot)", ()),
        ],
        ["dmesg | grep -iE 'DMAR|AMD-Vi|fault'"],
    ),
)


@record(frozen=True)
class Match:
    error: KnownError
    text: str  # the matching line (or the whole text if one line)


# every alternative of every KB pattern holds one of these words (lower case; tests/test_pasted_observe.py checks it):
# a line without any cannot match, so a long log is searched for them with str.find and only their lines are read
KEYWORDS = ("not viable", "iommu_group", "verify all devices", "reserve", "resource busy", "failed to mmap",
            "container for group", "cannot reset", "reset mechanism", "power state", "stuck in d3", "power on device",
            "allocate memory", "vfio_dma_map", "memlock", "locked memory", "no iommu", "iommu not", "iommu disabled",
            "operation not supported", "passthrough", "error -22", "disabled by", "vmx not", "svm not", "outside txt",
            "svm disabled", "kvm kernel module", "initialize kvm", "/dev/kvm does", "kvm acceleration", "kvm extensions",
            "kvm is not", "virtualisation configured", "command line param", "unknown option", "malformed early option",
            "vfio/", "getting device from group", "already in use", "interrupt remapping", "address spaces", "device rom",
            "rom header", "rmrr", "[dma ", "handling fault", "io_page_fault", "pci header type", "no hardware support",
            "set iommu for container", "could not access /sys/bus/pci", "no such host device", "key was rejected",
            "unsigned module", "rom: input/output error")


def find_errors_in_log(text: str, limit: int = 50) -> list[Match]:
    """find_errors over a whole log, however long: only the lines that hold a KEYWORD are matched (same result
    as find_errors on those lines, in the text's order)."""
    low = text.lower()
    if len(low) != len(text):
        return find_errors(text, limit)
    starts: list[int] = []
    for kw in KEYWORDS:
        i = low.find(kw)
        while i != -1:
            ls = low.rfind("\n", 0, i) + 1
            starts.append(ls)
            nl = low.find("\n", i)
            i = -1 if nl < 0 else low.find(kw, nl)
    picked = []
    for ls in sorted(set(starts)):
        nl = text.find("\n", ls)
        picked.append(text[ls:] if nl < 0 else text[ls:nl])
    return find_errors("\n".join(picked), limit)


def find_errors(text: str, limit: int = 50) -> list[Match]:
    """Every known error in text, one Match per (entry, first line that shows it)."""
    out: list[Match] = []
    seen: set[str] = set()
    for line in text[:MAX_EXPLAIN_CHARS].splitlines():
        if len(line) > 4000:
            line = line[:4000]
        for e in KB:
            if e.id in seen:
                continue
            if e.pattern.search(line):
                seen.add(e.id)
                out.append(Match(e, line.strip()))
                if len(out) >= limit:
                    return out
    return out


COLLECT_HINT = (
    "lspci -nnk",
    "sudo dmesg | grep -iE 'DMAR|AMD-Vi|IOMMU|vfio|BAR|efifb|simpledrm|kvm'",
    "cat /proc/cmdline",
    "for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; echo \"IOMMU Group ${n%%/*} $(lspci -nns ${d##*/})\"; done",
    "grep -r . /etc/modprobe.d/",
    "the full error QEMU or libvirt printed (virsh start NAME, or /var/log/libvirt/qemu/NAME.log)",
)


def registered(checks: tuple[str, ...]) -> tuple[str, ...]:
    """Only the check ids this gpudoctor has (the table may name checks other modules add)."""
    try:
        from doctor.registry import load_checks

        have = load_checks()
    except Exception:  # noqa: BLE001 - explaining must work even if a check module is broken
        return checks
    return tuple(c for c in checks if c in have)


def explain_text(text: str) -> tuple[bool, str]:
    """(recognised, human-readable explanation) for one error text."""
    cut = len(text) > MAX_EXPLAIN_CHARS
    matches = find_errors(text)
    lines: list[str] = []
    if cut:
        lines.append(f"(only the first {MAX_EXPLAIN_CHARS} characters were read)")
    if not matches:
        lines.append("gpudoctor does not recognise this error text.")
        lines.append("Collect these and run `gpudoctor check --from FILES...` on them:")
        lines += [f"  {c}" for c in COLLECT_HINT]
        return False, "\n".join(lines) + "\n"
    for m in matches:
        e = m.error
        lines.append(f"{e.title} [{e.id}]")
        lines.append(f"  seen: {m.text[:300]}")
        lines.append(f"  means: {e.meaning}")
        lines.append("  likely causes, most likely first:")
        for i, c in enumerate(e.causes, 1):
            ids = registered(c.checks)
            settle = f" (settled by: {', '.join(ids)})" if ids else " (no check settles this; see the commands)"
            lines.append(f"    {i}. {c.text}{settle}")
        lines.append("  to tell them apart, run:")
        lines += [f"    {cmd}" for cmd in e.commands]
        lines.append("")
    lines.append("Then run `gpudoctor check` on the host, or `gpudoctor check --from FILES...` on saved outputs.")
    return True, "\n".join(lines) + "\n"


def explain_json(text: str) -> dict[str, object]:
    matches = find_errors(text)
    return {
        "format": "gpudoctor.explain",
        "version": 1,
        "recognised": bool(matches),
        "errors": [
            {
                "id": m.error.id,
                "title": m.error.title,
                "seen": m.text[:300],
                "meaning": m.error.meaning,
                "causes": [{"text": c.text, "checks": list(registered(c.checks))} for c in m.error.causes],
                "commands": list(m.error.commands),
            }
            for m in matches
        ],
        "collect": [] if matches else list(COLLECT_HINT),
    }


def cmd_explain(args) -> int:  # type: ignore[no-untyped-def]
    """`gpudoctor explain TEXT` (or `-` / no TEXT: stdin). Exit 0 recognised, 1 not recognised."""
    import json
    import sys

    parts = list(args.text or [])
    if not parts or parts == ["-"]:
        data = sys.stdin.buffer.read(MAX_EXPLAIN_CHARS * 4 + 1)
        text = data.decode("utf-8", "replace")
    else:
        text = " ".join(parts)
    if not text.strip():
        from doctor.errors import BadInput

        raise BadInput("explain: no error text given (pass it as an argument, or on stdin)")
    if getattr(args, "json", False):
        doc = explain_json(text)
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return 0 if doc["recognised"] else 1
    ok, out = explain_text(text)
    sys.stdout.write(out)
    return 0 if ok else 1
