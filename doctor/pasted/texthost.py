"""Facts from pasted text: the outputs people paste into forums and tickets.

`load_inputs(paths)` reads files (or folders) of pasted output, `segment()`
cuts each into chunks recognised by their content (lspci, dmesg, cmdline, IOMMU
group listings, /etc/default/grub, modprobe.d, lsmod, cpuinfo / lscpu, kvm-ok,
QEMU / libvirt errors), and `PastedFacts` fills the typed facts the checks ask
for, only from what the chunks show. Everything else stays `FactUnknown(...,
"not in the evidence", settle)` from the `Facts` base class.

No verdict from absence
-----------------------
Some things a paste leaves open are not whole facts but parts of one: the
drivers of devices listed by `lspci -nn` without `-k`, the IOMMU group of a
device when no group listing was pasted, whether a GPU is the boot display,
whether vfio-pci is built into the kernel. The checks read those parts as
values (`PciDevice.driver is None` means "no driver"). So `run_pasted` runs
every check on the evidence as shown (the *neutral* view) and again on views
where every open part is filled in the most favourable and the least
favourable way; a verdict stands only where all views agree. Where they
differ, the result is `unknown`, naming the open parts that move it and the
command that would settle each. A check that needs a whole fact the paste does
not have is unknown the ordinary way (FactUnknown from the base class).

Recognisers are pure functions of text (fuzzed by tests). Input is bounded:
at most MAX_FILE_BYTES per file (head and tail kept, the cut is reported) and
MAX_LINE chars per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from doctor.errors import BadInput, FactUnknown
from doctor.explain import Match, find_errors
from doctor.facts import (
    BootConfig,
    Cmdline,
    ConfigLine,
    CpuInfo,
    EarlyLoadConfig,
    Facts,
    HostSummary,
    KernelLog,
    ModprobeLine,
    ModuleState,
    PciDevice,
    fact,
    normalize_pci_address,
    parse_cmdline,
    parse_cpuinfo,
    parse_iommu_group_links,
    parse_modprobe,
    parse_os_release,
    parse_shell_assignments,
)
from doctor.model import Result, SourceInfo, Status
from doctor.pasted.chunks import (
    DevInfo,
    DmesgFacts,
    parse_dmesg,
    parse_group_listing,
    parse_group_ls,
    parse_kvm_ok,
    parse_lscpu,
    parse_lsmod,
    parse_lspci_chunk,
)
from doctor.pasted.segment import _ADDR, KIND_NAMES, Chunk, Evidence_, load_inputs

if TYPE_CHECKING:
    from doctor.runner import Report
DRIVER_UNKNOWN = "unknown: not in the evidence"


class PastedFacts(Facts):
    """Facts decided only from pasted evidence; the rest stays unknown."""

    source_kind = "pasted"

    def __init__(self, evidence: Evidence_) -> None:
        super().__init__()
        self.evidence = evidence
        self.chunks = evidence.chunks
        self.notes: list[str] = []
        self._build()

    # -- assembly -----------------------------------------------------------
    def _of(self, *kinds: str) -> list[Chunk]:
        return [c for c in self.chunks if c.kind in kinds]

    def _build(self) -> None:
        dm: list[tuple[Chunk, DmesgFacts]] = [(c, parse_dmesg(c.text, c.command)) for c in self._of("dmesg")]
        self.dmesg = dm
        self.hostnames: set[str] = set()
        for _, d in dm:
            self.hostnames |= d.hostnames
        # devices
        devs: dict[str, DevInfo] = {}
        self.lspci_complete = False
        for c in self._of("lspci"):
            found, _k = parse_lspci_chunk(c.text)
            for di in found:
                di.source = c.where
                _merge_dev(devs, di)
            if any(d.address.endswith("00:00.0") for d in found) and len(found) >= 5 and "grep" not in c.command and " -s" not in c.command:
                self.lspci_complete = True
        groups: dict[str, set[str]] | None = None
        self.groups_source = ""
        for c in self._of("group"):
            g, found, _k = parse_group_listing(c.text)
            for di in found:
                di.source = c.where
                _merge_dev(devs, di)
            if not any(g.values()):
                continue
            groups = groups or {}
            for k, v in g.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        for c in self._of("group_find"):
            g2: dict[str, Any] = dict(parse_iommu_group_links([ln.strip() for ln in c.lines]))
            if not g2:
                continue
            groups = groups or {}
            for k, v in g2.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        for c in self._of("group_ls"):
            g2 = {k: v for k, v in parse_group_ls(c.text).items() if v}
            if not g2:
                continue  # entries without a /sys/kernel/iommu_groups/N/devices: header name no group
            groups = groups or {}
            for k, v in g2.items():
                groups.setdefault(k, set()).update(v)
            self.groups_source = c.where
        self.groups_absent = self._of("groups_absent")
        if groups is None and self.groups_absent:
            groups = {}
            self.groups_source = self.groups_absent[0].where
        if groups is None:
            for c, d in dm:
                if d.full and d.groups and sorted(map(int, d.groups)) == list(range(len(d.groups))):
                    groups = {k: set(v) for k, v in d.groups.items()}
                    self.groups_source = f"{c.where} (Adding to iommu group lines of a full boot log)"
                    break
        for c, dmf in dm:
            for a, (ven, dv, cls) in dmf.enumerated.items():
                if a not in devs:
                    di = DevInfo(a, cls, ven, dv, source=c.where)
                    devs[a] = di
                elif devs[a].vendor is None:
                    devs[a].vendor, devs[a].device = ven, dv
                    devs[a].class_code = devs[a].class_code or cls
            if dmf.full and dmf.enumerated:
                self.lspci_complete = True
        self.groups: dict[str, tuple[str, ...]] | None = None if groups is None else {k: tuple(sorted(v)) for k, v in sorted(groups.items(), key=lambda kv: (len(kv[0]), kv[0]))}
        self.group_of: dict[str, str] = {}
        if self.groups:
            for gname, members in self.groups.items():
                for a in members:
                    self.group_of[a] = gname
                    if a not in devs:
                        devs[a] = DevInfo(a, source=self.groups_source)
        if self.groups is not None and self.groups:
            self.lspci_complete = self.lspci_complete or bool(self._of("group_find", "group_ls"))
        self.devs = devs
        # boot display
        self.boot_vga_known: set[str] = set()
        for _, d in dm:
            self.boot_vga_known |= d.boot_vga

    # -- facts ----------------------------------------------------------------
    @fact
    def kernel_release(self) -> str:
        for c in self._of("uname"):
            parts = c.lines[0].split()
            if len(parts) > 2:
                return parts[2]
        for _, d in self.dmesg:
            if d.kernel:
                return d.kernel
        return super().kernel_release()

    @fact
    def os_release(self) -> dict[str, str]:
        for c in self._of("os_release"):
            return parse_os_release(c.text)
        return super().os_release()

    @fact
    def cpu(self) -> CpuInfo:
        for c in self._of("cpuinfo"):
            try:
                ci = parse_cpuinfo(c.text)
            except ValueError:
                continue
            if ci.vendor == "unknown":
                v = self.cpu_vendor_hint()
                if v:
                    ci = replace(ci, vendor=v[0])
            if ci.flags:
                return ci
        for c in self._of("lscpu"):
            try:
                ci = parse_lscpu(c.text)
            except ValueError:
                continue
            if ci.flags:
                return ci
        v = self.cpu_vendor_hint()
        if v is not None:
            # vendor known, flags not: the flags are an open part (see run_pasted)
            return CpuInfo(v[0], f"unknown (vendor from {v[1]})", frozenset(), 1)
        return super().cpu()

    def cpu_flags_known(self) -> bool:
        try:
            return bool(self.cpu().flags)
        except FactUnknown:
            return False

    def cpu_vendor_hint(self) -> tuple[str, str] | None:
        """(vendor_id, why) from evidence other than /proc/cpuinfo."""
        for c in self._of("cpuinfo", "lscpu"):
            m = re.search(r"^(?:vendor_id|\s*Vendor ID)\s*:\s*(\S+)", c.text, re.M)
            if m:
                return m.group(1), c.where
        for _, d in self.dmesg:
            for ln in d.lines:
                if "DMAR:" in ln or "DMAR-IR:" in ln:
                    return "GenuineIntel", "DMAR lines in the kernel log"
                if "AMD-Vi:" in ln:
                    return "AuthenticAMD", "AMD-Vi lines in the kernel log"
        for c in self._of("lsmod", "proc_modules"):
            names, _ = parse_lsmod(c.text)
            if "kvm_intel" in names:
                return "GenuineIntel", "kvm_intel in lsmod"
            if "kvm_amd" in names:
                return "AuthenticAMD", "kvm_amd in lsmod"
        hb = self.devs.get("0000:00:00.0")
        if hb is not None and hb.class_code is not None and hb.class_code >> 8 == 0x0600:
            if hb.vendor == "8086":
                return "GenuineIntel", "the Intel host bridge at 00:00.0"
            if hb.vendor == "1022":
                return "AuthenticAMD", "the AMD host bridge at 00:00.0"
        return None

    @fact
    def kvm_device(self) -> bool:
        for c in self._of("kvm_ok"):
            exists, _ = parse_kvm_ok(c.text)
            if exists is not None:
                return exists
        for c in self._of("dev_kvm"):
            return "No such file" not in c.text
        for c in self._of("error"):
            if re.search(r"Could not access KVM kernel module: No such file|failed to initialize kvm: No such file", c.text):
                return False
        return super().kvm_device()

    @fact
    def acpi_tables(self) -> frozenset[str]:
        tables: set[str] = set()
        complete = False
        for _, d in self.dmesg:
            tables |= d.acpi_tables
            complete = complete or (d.full and d.table_listing)
        if complete or tables & {"DMAR", "IVRS", "IORT"}:
            return frozenset(tables)
        raise FactUnknown("ACPI tables", "not in the evidence", "ls /sys/firmware/acpi/tables  (or: sudo dmesg | grep -E 'ACPI: (DMAR|IVRS)')")

    @fact
    def cmdline(self) -> Cmdline:
        for c in self._of("cmdline"):
            return parse_cmdline(c.lines[0], f"/proc/cmdline (pasted, {c.where})")
        for c, d in self.dmesg:
            if d.cmdline is not None:
                return parse_cmdline(d.cmdline, f"kernel log command line ({c.where})")
        return super().cmdline()

    @fact
    def modules(self) -> ModuleState:
        for c in self._of("lsmod", "proc_modules"):
            names, complete = parse_lsmod(c.text)
            if complete or (c.kind == "proc_modules" and len(names) >= 10 and "grep" not in c.command):
                return ModuleState(names, frozenset(), None, True)
        if self._of("lsmod", "proc_modules"):
            raise FactUnknown("kernel modules", "only a filtered lsmod is in the evidence (presence, not absence)", "lsmod")
        return super().modules()

    @fact
    def kernel_log(self) -> KernelLog:
        lines: list[str] = []
        for _, d in self.dmesg:
            lines += d.lines
        for c in self._of("error"):
            lines += [ln for ln in c.lines if re.search(r"vfio|DMAR|AMD-Vi|BAR", ln)]
        if not lines:
            return super().kernel_log()
        full = any(d.full for _, d in self.dmesg)
        return KernelLog(tuple(lines), "pasted kernel log" + ("" if full else " (filtered: shows lines, proves no absence)"))

    @fact
    def iommu_class(self) -> tuple[str, ...]:
        if self.groups == {}:
            return ()
        units: list[str] = []
        on = False
        for _, d in self.dmesg:
            for ln in d.lines:
                m = re.search(r"DMAR: (dmar\d+): reg_base_addr", ln)
                if m and m.group(1) not in units:
                    units.append(m.group(1))
                if re.search(r"Intel\(R\) Virtualization Technology for Directed I/O|AMD-Vi: Found IOMMU|Adding to iommu group", ln):
                    on = True
                m = re.search(r"AMD-Vi: Found IOMMU at", ln)
                if m:
                    units.append(f"ivhd{sum(1 for u in units if u.startswith('ivhd'))}")
        if units and (on or self.groups):
            return tuple(units)
        return super().iommu_class()

    @fact
    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        if self.groups is None:
            return super().iommu_groups()
        return dict(self.groups)

    @fact
    def pci_devices(self) -> dict[str, PciDevice]:
        if not self.devs:
            return super().pci_devices()
        return {a: self._device(d) for a, d in sorted(self.devs.items())}

    def _device(self, d: DevInfo) -> PciDevice:
        cls = d.class_code if d.class_code is not None else 0
        bv: bool | None = None
        if cls >> 8 == 0x0300 and self.boot_vga_known:
            bv = d.address in self.boot_vga_known
        return PciDevice(
            address=d.address,
            class_code=cls,
            vendor=d.vendor or "????",
            device=d.device or "????",
            subsystem=d.subsystem,
            revision=d.revision,
            driver=d.driver if d.driver_known else DRIVER_UNKNOWN,
            iommu_group=self.group_of.get(d.address),
            boot_vga=bv,
            name=d.name,
            kernel_modules=d.modules,
        )

    @fact
    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        chunks = self._of("modprobe")
        if not chunks:
            return super().modprobe_config()
        out: list[ModprobeLine] = []
        for c in chunks:
            for i, raw in enumerate(c.lines):
                m = re.match(r"^(\S+\.conf):(.*)$", raw)
                fname, body = (m.group(1), m.group(2)) if m else (f"modprobe.d (pasted, {c.file})", raw)
                for ln in parse_modprobe(body, fname):
                    out.append(replace(ln, lineno=c.start + i if not m else ln.lineno))
        return tuple(out)

    @fact
    def early_load(self) -> EarlyLoadConfig:
        chunks = self._of("initramfs")
        if not chunks:
            return super().early_load()
        init: list[ConfigLine] = []
        tool = "unknown"
        for c in chunks:
            for i, raw in enumerate(c.lines):
                s = raw.split("#", 1)[0].strip()
                if s.startswith("MODULES="):
                    tool = "mkinitcpio"
                    init.append(ConfigLine(f"mkinitcpio.conf (pasted, {c.file})", c.start + i, s))
                elif re.match(r"^(add_drivers|force_drivers|drivers)\s*\+?=", s):
                    tool = "dracut"
                    init.append(ConfigLine(f"dracut.conf (pasted, {c.file})", c.start + i, s))
        return EarlyLoadConfig((), tuple(init), tool)

    def early_load_partial(self) -> bool:
        return True  # modules-load.d is never known from a paste

    @fact
    def boot_config(self) -> BootConfig:
        chunks = self._of("grub")
        if not chunks:
            return super().boot_config()
        text = "\n".join(c.text for c in chunks)
        try:
            env = parse_shell_assignments(text)
        except ValueError as e:
            raise FactUnknown("bootloader configuration", f"the pasted /etc/default/grub does not parse: {e}", "sh -n /etc/default/grub") from e
        configured = " ".join(x for x in (env.get("GRUB_CMDLINE_LINUX", ""), env.get("GRUB_CMDLINE_LINUX_DEFAULT", "")) if x)
        src = f"/etc/default/grub (pasted, {chunks[0].where})"
        return BootConfig("grub", parse_cmdline(configured, src), (src,), notes=("pasted: grub.cfg not in the evidence",))

    def summary(self) -> HostSummary:
        s = super().summary()
        s.hostname = sorted(self.hostnames)[0] if self.hostnames else None
        return s

    # -- what was recognised --------------------------------------------------
    def source_info(self, location: str) -> SourceInfo:
        details: dict[str, str] = {
            "evidence": "pasted outputs, not a live host: each verdict is decided only from the inputs listed here",
        }
        for n, it in enumerate(self.evidence.inputs, 1):
            kinds = [c for c in self.chunks if c.file == it.path]
            parts = []
            for c in kinds:
                if c.kind == "unrecognised":
                    continue
                name = KIND_NAMES.get(c.kind, c.kind)
                if c.kind == "dmesg":
                    full = parse_dmesg(c.text, c.command).full
                    name += " (full boot log)" if full else " (filtered or partial)"
                if c.kind == "lspci":
                    _, k = parse_lspci_chunk(c.text)
                    name += " with drivers (-k)" if k else " without drivers (no -k)"
                parts.append(f"{name} [lines {c.start}-{c.end}]")
            unrec = [c for c in kinds if c.kind == "unrecognised"]
            desc = "; ".join(parts) or "nothing recognised"
            if it.error:
                desc = it.error
            if unrec:
                desc += "; not recognised: " + ", ".join(
                    f"lines {c.start}-{c.end} ({c.lines[0].strip()[:50]!r})" for c in unrec[:8]
                ) + (f" and {len(unrec) - 8} more" if len(unrec) > 8 else "")
            if it.notes:
                desc += "; note: " + "; ".join(it.notes)
            details[f"input {n}"] = f"{it.path}: {desc}"
        return SourceInfo("pasted", location, details)

    def recognised_anything(self) -> bool:
        return any(c.kind != "unrecognised" for c in self.chunks)

    def error_matches(self) -> list[tuple[Match, str]]:
        """(known error, where) for each error text found in the evidence."""
        out: list[tuple[Match, str]] = []
        seen: set[str] = set()
        for c in self.chunks:
            if c.kind in ("error", "dmesg", "kvm_ok", "unrecognised", "groups_absent"):
                for m in find_errors(c.text):
                    if m.error.id not in seen:
                        seen.add(m.error.id)
                        out.append((m, c.where))
        return out

    def named_devices(self) -> set[str]:
        """PCI addresses named in error messages (QEMU host=..., vfio 0000:..)."""
        out: set[str] = set()
        for c in self._of("error"):
            for m in re.finditer(r"(?:host=|vfio |vfio-pci )(" + _ADDR + r")", c.text):
                try:
                    out.add(normalize_pci_address(m.group(1)))
                except ValueError:
                    pass
        return out


def _merge_dev(devs: dict[str, DevInfo], d: DevInfo) -> None:
    old = devs.get(d.address)
    if old is None:
        devs[d.address] = d
        return
    for f in ("class_code", "vendor", "device", "name", "revision", "subsystem"):
        if getattr(old, f) is None and getattr(d, f) is not None:
            setattr(old, f, getattr(d, f))
    if d.driver_known and not old.driver_known:
        old.driver, old.driver_known = d.driver, True
    if d.modules_known and not old.modules_known:
        old.modules, old.modules_known = d.modules, True


# ---------------------------------------------------------------------------
# open parts and the views that fill them


@dataclass(frozen=True)
class OpenPart:
    id: str
    what: str
    settle: str


def open_parts(pf: PastedFacts) -> list[OpenPart]:
    out: list[OpenPart] = []
    devs = pf.devs
    if any(not d.driver_known for d in devs.values()):
        n = [a for a, d in devs.items() if not d.driver_known]
        out.append(OpenPart("drivers", f"the drivers of {len(n)} device(s) ({', '.join(n[:4])}{'...' if len(n) > 4 else ''})", "lspci -nnk"))
    if any(d.vendor is None for d in devs.values()):
        out.append(OpenPart("ids", "the [vendor:device] ids of some devices (lspci without -nn)", "lspci -nn"))
    if devs and pf.groups is None:
        out.append(OpenPart("groups", "the IOMMU groups", "find /sys/kernel/iommu_groups/ -type l"))
    elif devs and pf.groups and any(a not in pf.group_of for a in devs):
        n = [a for a in devs if a not in pf.group_of]
        out.append(OpenPart("groups", f"the IOMMU groups of {', '.join(n[:4])}{'...' if len(n) > 4 else ''} (not in the pasted listing)",
                            "find /sys/kernel/iommu_groups/ -type l"))
    if any((d.class_code or 0) >> 8 == 0x0300 for d in devs.values()) and not pf.boot_vga_known:
        out.append(OpenPart("boot_vga", "which GPU is the boot display", "grep . /sys/bus/pci/devices/*/boot_vga"))
    if devs and not pf.lspci_complete:
        out.append(OpenPart("device_list", "whether every PCI device was pasted (a filtered lspci)", "lspci -nnk"))
    if not pf.cpu_flags_known():
        out.append(OpenPart("cpu", "the CPU's vendor and flags", "grep -m1 -E 'vendor_id|flags' /proc/cpuinfo"))
    if _raises(pf.kernel_config):
        out.append(OpenPart("kernel_config", "the kernel's IOMMU build defaults", "grep IOMMU /boot/config-$(uname -r)"))
    mods = _value(pf.modules)
    if mods is None or mods.builtin is None:
        out.append(OpenPart("builtin", "whether vfio-pci is built into the kernel", "grep vfio /lib/modules/$(uname -r)/modules.builtin; lsmod | grep vfio"))
    out.append(OpenPart("early_load", "the early module loading configuration",
                        "cat /etc/modules-load.d/*.conf /etc/modules /etc/initramfs-tools/modules /etc/mkinitcpio.conf"))
    return out


def _raises(fn) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn()
    except FactUnknown:
        return True
    return False


def _value(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except FactUnknown:
        return None


class FilledFacts(Facts):
    """A view of PastedFacts with each open part filled one way.

    `mode[part]` is "opt" (most favourable), "pes" (least favourable),
    "shared" (groups only: everything in one group) or absent (as shown)."""

    source_kind = "pasted"

    def __init__(self, base: PastedFacts, mode: dict[str, str], configured_ids: list[str]) -> None:
        super().__init__()
        self.base = base
        self.mode = mode
        self.ids = configured_ids

    def kernel_release(self) -> str:
        return self.base.kernel_release()

    def os_release(self) -> dict[str, str]:
        return self.base.os_release()

    def kvm_device(self) -> bool:
        return self.base.kvm_device()

    def acpi_tables(self) -> frozenset[str]:
        return self.base.acpi_tables()

    def cmdline(self) -> Cmdline:
        return self.base.cmdline()

    def kernel_log(self) -> KernelLog:
        return self.base.kernel_log()

    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        return self.base.modprobe_config()

    def boot_config(self) -> BootConfig:
        return self.base.boot_config()

    def summary(self) -> HostSummary:
        return self.base.summary()

    def cpu(self) -> CpuInfo:
        m = self.mode.get("cpu")
        if m is None:
            return self.base.cpu()
        known = _value(self.base.cpu)
        intel_first = m in ("opt", "pes2")
        vendor = known.vendor if known is not None and known.vendor != "unknown" else ("GenuineIntel" if intel_first else "AuthenticAMD")
        flag = "vmx" if vendor == "GenuineIntel" else "svm"
        return CpuInfo(vendor, "filled", frozenset({flag}) if m in ("opt", "opt2") else frozenset(), 1)

    def kernel_config(self) -> dict[str, str]:
        m = self.mode.get("kernel_config")
        if m is None:
            return self.base.kernel_config()
        if m == "opt":
            return {"CONFIG_INTEL_IOMMU": "y", "CONFIG_INTEL_IOMMU_DEFAULT_ON": "y"}
        return {"CONFIG_INTEL_IOMMU": "y"}

    def modules(self) -> ModuleState:
        m = self.mode.get("builtin")
        known = _value(self.base.modules)
        if m is None:
            return self.base.modules()
        loaded = known.loaded if known else frozenset()
        if m == "opt":
            return ModuleState(loaded, frozenset(), frozenset(), True)
        return ModuleState(loaded, frozenset(), frozenset({"vfio_pci", "vfio", "vfio_iommu_type1"}) - loaded, True)

    def early_load(self) -> EarlyLoadConfig:
        m = self.mode.get("early_load")
        known = _value(self.base.early_load)
        if m is None:
            return self.base.early_load()
        init = known.initramfs if known else ()
        tool = known.initramfs_tool if known else "unknown"
        if m == "opt":
            assumed = (ConfigLine("(filled)", 1, "vfio-pci"),)
            return EarlyLoadConfig(assumed, init if known else assumed, tool if known else "initramfs-tools")
        return EarlyLoadConfig((), init, tool)

    def _devices(self) -> dict[str, PciDevice]:
        base = self.base.pci_devices()
        out: dict[str, PciDevice] = {}
        drv = self.mode.get("drivers")
        bvm = self.mode.get("boot_vga")
        idm = self.mode.get("ids")
        ids_pool = list(self.ids)
        for a, d in base.items():
            info = self.base.devs[a]
            if drv is not None and not info.driver_known:
                if drv == "opt":
                    d = replace(d, driver="pcieport" if d.is_bridge else "vfio-pci", kernel_modules=())
                else:
                    d = replace(d, driver="pcieport" if d.is_bridge else "unknown_native", kernel_modules=() if d.is_bridge else ("unknown_native",))
            if bvm is not None and d.class_code >> 8 == 0x0300 and d.boot_vga is None:
                d = replace(d, boot_vga=(bvm != "opt"))
            if idm is not None and info.vendor is None:
                if idm == "opt" and ids_pool:
                    v, dv = ids_pool.pop(0).split(":", 1)
                    d = replace(d, vendor=v, device=dv)
                else:
                    d = replace(d, vendor="ffff", device="fffe")
            out[a] = d
        if self.mode.get("device_list") is not None:
            present = {d.ident for d in out.values()}
            if self.mode["device_list"] == "opt":
                if not any(d.is_display for d in out.values()):
                    out["0000:fd:00.0"] = PciDevice("0000:fd:00.0", 0x030200, "ffff", "fffc", driver="vfio-pci", iommu_group=None)
                for i, ident in enumerate(x for x in self.ids if x not in present):
                    v, dv = ident.split(":", 1)
                    addr = f"0000:fe:{i % 32:02x}.0"
                    out[addr] = PciDevice(addr, 0x0c0330, v, dv, driver="vfio-pci")
            else:
                for g in [d for d in out.values() if d.is_display]:
                    addr = f"{g.slot}.7"
                    if addr not in out:
                        out[addr] = PciDevice(addr, 0x0c8000, "ffff", "fffd", driver="unknown_native",
                                              iommu_group=g.iommu_group, kernel_modules=("unknown_native",))
        gm = self.mode.get("groups")
        if gm is not None:
            known = self.base.group_of
            open_ = {a for a in out if a not in known}
            if gm == "opt":
                slots = sorted({out[a].slot for a in open_})
                gid = {s: f"f{i}" for i, s in enumerate(slots)}
                out = {a: replace(d, iommu_group=gid[d.slot]) if a in open_ else d for a, d in out.items()}
            elif gm == "shared":
                out = {a: replace(d, iommu_group="fs") if a in open_ else d for a, d in out.items()}
            elif self.base.groups is None:
                out = {a: replace(d, iommu_group=None) for a, d in out.items()}
        return out

    def pci_devices(self) -> dict[str, PciDevice]:
        if "_devs" not in self._cache:
            self._cache["_devs"] = self._devices()
        return self._cache["_devs"]  # type: ignore[no-any-return]

    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        gm = self.mode.get("groups")
        if gm is None:
            g = self.base.iommu_groups()
            if not self.base.devs:
                return g
            devs = self.pci_devices()
            extra = {a: d.iommu_group for a, d in devs.items() if a not in self.base.devs and d.iommu_group}
            if extra:
                g = {k: tuple(sorted(set(v) | {a for a, x in extra.items() if x == k})) for k, v in g.items()}
            return g
        groups: dict[str, list[str]] = {k: list(v) for k, v in (self.base.groups or {}).items()}
        for a, d in self.pci_devices().items():
            if d.iommu_group is not None and a not in self.base.group_of:
                groups.setdefault(d.iommu_group, []).append(a)
        return {k: tuple(sorted(v)) for k, v in groups.items()}

    def iommu_class(self) -> tuple[str, ...]:
        gm = self.mode.get("groups")
        if gm is None or self.base.groups is not None:
            return self.base.iommu_class()
        return () if gm == "pes" else ("dmar0",)


# ---------------------------------------------------------------------------
# running


def configured_ids(pf: PastedFacts) -> list[str]:
    from checks.common import cmdline_vfio_ids, modprobe_vfio_ids

    ids: list[str] = []
    mp = _value(pf.modprobe_config) or ()
    for _, v in modprobe_vfio_ids(mp):
        ids += v
    ids += cmdline_vfio_ids(_value(pf.cmdline))
    boot = _value(pf.boot_config)
    if boot is not None:
        ids += cmdline_vfio_ids(boot.cmdline)
    return list(dict.fromkeys(i for i in ids if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", i)))


def target_gpus(pf: PastedFacts) -> tuple[list[str], str]:
    """The GPUs the per-GPU checks are about, and why (the evidence decides)."""
    try:
        devs = pf.pci_devices()
    except FactUnknown:
        return [], "no PCI devices in the evidence"
    gpus = [d for d in devs.values() if d.is_display]
    if not gpus:
        return [], "no display-class device in the evidence"
    ids = set(configured_ids(pf))
    named = pf.named_devices()
    dmesg_vfio = set()
    for _, d in pf.dmesg:
        for ln in d.lines:
            m = re.search(r"vfio-pci (" + _ADDR + r"):", ln)
            if m:
                try:
                    dmesg_vfio.add(normalize_pci_address(m.group(1)))
                except ValueError:
                    pass
    slots_named = {a.rsplit(".", 1)[0] for a in named | dmesg_vfio}
    chosen = [g for g in gpus if g.driver == "vfio-pci" or g.ident in ids or g.slot in slots_named]
    why = "the GPU(s) the evidence sets up for vfio (bound to vfio-pci, in vfio-pci ids, or named in an error)"
    if not chosen:
        chosen = [g for g in gpus if not g.boot_vga]
        discrete = [g for g in chosen if not g.address.startswith("0000:00:")]
        if discrete and len(discrete) < len(chosen):
            chosen = discrete
            why = "every GPU not on bus 00 (an integrated GPU stays with the host); --gpu picks another"
        else:
            why = "every GPU the evidence shows that is not the boot display"
        if not chosen:
            chosen = gpus[:1]
    seen: set[str] = set()
    out = []
    for g in chosen:
        if g.slot not in seen:
            seen.add(g.slot)
            out.append(g.address)
    return out, why


@dataclass
class PastedRun:
    report: Report
    facts: PastedFacts
    ties: list[dict[str, Any]]


def _extremes(parts: list[OpenPart]) -> list[dict[str, str]]:
    ids = [p.id for p in parts]
    if not ids:
        return []
    opt = {i: "opt" for i in ids}
    pes = {i: "pes" for i in ids}
    views = [opt, pes]
    if "cpu" in ids:  # the vendor changes what the command line means: try both
        views += [{**opt, "cpu": "opt2"}, {**pes, "cpu": "pes2"}]
    if "groups" in ids:
        views.append({**pes, "groups": "shared"})
        views.append({**opt, "groups": "shared"})
    return views


def run_pasted(pf: PastedFacts, location: str, gpu: str | None = None, only: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Run the checks on pasted facts; verdicts that depend on open parts become unknown."""
    from doctor.runner import Report, SubjectResult, run_checks

    source = pf.source_info(location)
    if gpu is None:
        targets, why = target_gpus(pf)
    else:
        targets, why = [gpu], "chosen with --gpu"
    details = dict(source.details)
    details["gpus checked"] = (", ".join(targets) or "none") + f" ({why})"
    parts = open_parts(pf)
    ids = configured_ids(pf)
    views = [FilledFacts(pf, m, ids) for m in _extremes(parts)]

    memo: dict[tuple[str, str, str | None], Report] = {}

    def run(facts: Facts, g: str | None) -> Report:
        if isinstance(facts, FilledFacts) and len(facts.mode) == 1:
            key = (*next(iter(facts.mode.items())), g)
            if key not in memo:
                memo[key] = run_checks(facts, source, gpu=g, only=only)
            return memo[key]
        return run_checks(facts, source, gpu=g, only=only)

    results: list[SubjectResult] = []
    gpus = []
    duration = 0.0
    for n, g in enumerate(targets or [None]):
        neutral = run(pf, g)
        duration += neutral.duration_s
        gpus += neutral.gpus
        others = [run(v, g) for v in views]
        for i, sr in enumerate(neutral.results):
            if n > 0 and sr.subject is None:
                continue  # host-wide checks once
            alts = [o.results[i].result for o in others if i < len(o.results)]
            results.append(SubjectResult(_combine(sr.result, alts, pf, parts, ids, g, only, i, run), sr.subject))
    report = Report(results, replace(source, details=details), pf, gpus, duration)
    ties = tie_errors(pf, report)
    if ties:
        report.source.details["errors in evidence"] = " | ".join(
            f"{t['error']}: " + "; ".join(f"{c['cause']} → {c['verdict']}" for c in t["causes"]) for t in ties  # type: ignore[union-attr]
        )
    return PastedRun(report, pf, ties)


def _combine(neutral: Result, alts: list[Result], pf: PastedFacts, parts: list[OpenPart], ids: list[str],
             gpu: str | None, only, index: int, run) -> Result:  # type: ignore[no-untyped-def]
    # a filled view that cannot decide tells nothing about the open parts
    alts = [a for a in alts if a.status not in (Status.UNKNOWN, Status.ERROR)]
    if neutral.status in (Status.UNKNOWN, Status.ERROR) or all(a.status == neutral.status for a in alts):
        return neutral
    if alts and len({a.status for a in alts}) == 1 and alts[0].status != Status.ERROR and not _shows_fill(alts[0]):
        a = alts[0]
        return replace(a, messages=a.messages + ("decided whichever way the parts a paste leaves open turn out",),
                       duration_s=neutral.duration_s)
    # which open parts move it (one at a time); all of them if none alone does
    moving = []
    for p in parts:
        sts = set()
        for val in ("opt", "pes") + (("shared",) if p.id == "groups" else ()) + (("opt2", "pes2") if p.id == "cpu" else ()):
            r = run(FilledFacts(pf, {p.id: val}, ids), gpu).results[index].result
            sts.add(r.status)
        if len(sts | {neutral.status}) > 1:
            moving.append(p)
    moving = moving or parts
    msgs = [f"{p.what}: not in the evidence; to settle it, collect: {p.settle}" for p in moving]
    msgs.append("no verdict is drawn from what a paste leaves out")
    return replace(
        neutral,
        status=Status.UNKNOWN,
        summary="unknown: " + "; ".join(p.what for p in moving) + " not in the evidence",
        messages=tuple(msgs),
        remedy=None,
    )


_FILL_MARKS = ("unknown_native", "(filled)", "filled", "ffff:ff", "0000:fe:", "0000:fd:", "dmar0")


def _shows_fill(r: Result) -> bool:
    text = " ".join([r.summary, *r.messages, *(e.source + " " + e.value for e in r.evidence)])
    if r.remedy is not None:
        text += " " + r.remedy.text + " " + " ".join(r.remedy.steps)
    return any(m in text for m in _FILL_MARKS)


def tie_errors(pf: PastedFacts, report: Report) -> list[dict[str, Any]]:
    """Each known error in the evidence, with what the evidence says of each cause."""
    by_check: dict[str, list[Result]] = {}
    for sr in report.results:
        by_check.setdefault(sr.result.check_id, []).append(sr.result)
    out: list[dict[str, Any]] = []
    for m, where in pf.error_matches():
        causes = []
        for c in m.error.causes:
            ids = [cid for cid in c.checks if cid in by_check]
            rs = [r for cid in ids for r in by_check.get(cid, [])]
            if not ids:
                verdict = "no check settles this: " + "; ".join(m.error.commands[:2])
            elif any(r.status.value in c.confirm_on for r in rs):
                hit = next(r for r in rs if r.status.value in c.confirm_on)
                verdict = f"confirmed by the evidence ({hit.check_id}: {hit.summary})"
            elif rs and all(r.status in (Status.PASS, Status.NOT_APPLICABLE) or (r.status == Status.WARN and "warn" not in c.confirm_on) for r in rs):
                verdict = "ruled out by the evidence (" + ", ".join(f"{r.check_id}: {r.status.value}" for r in rs) + ")"
            else:
                settle = [msg.split("collect: ", 1)[1] for r in rs for msg in r.messages if "collect: " in msg]
                verdict = "not settled by the evidence" + (f"; collect: {'; '.join(dict.fromkeys(settle))}" if settle else "")
            causes.append({"cause": c.text, "checks": ids, "verdict": verdict})
        out.append({"error": m.error.id, "title": m.error.title, "seen": m.text[:300], "where": where,
                    "meaning": m.error.meaning, "causes": causes})
    return out


def load_pasted(paths: list[str]) -> PastedFacts:
    """Read and recognise the inputs; BadInput when nothing in them is usable."""
    ev = load_inputs(paths)
    pf = PastedFacts(ev)
    if not pf.recognised_anything():
        why = "; ".join(f"{it.path}: {it.error or 'nothing recognised'}" for it in ev.inputs)
        raise BadInput(
            "--from: none of the inputs holds a recognised output (lspci, dmesg, /proc/cmdline, IOMMU groups, "
            f"grub, modprobe.d, lsmod, cpuinfo, kvm-ok, QEMU/libvirt errors): {why}"
        )
    return pf


# ---------------------------------------------------------------------------
# output


def to_json(run: PastedRun, redact: bool = True) -> dict[str, object]:
    from doctor.render import make_redactor
    from doctor.render import to_json as base_json

    doc = base_json(run.report, redact)  # type: ignore[arg-type]
    red = make_redactor(run.report, redact)  # type: ignore[arg-type]
    doc["errors_in_evidence"] = [_redact_obj(t, red) for t in run.ties]
    return doc


def _redact_obj(o, red):  # type: ignore[no-untyped-def]
    if isinstance(o, str):
        return red.text(o)
    if isinstance(o, list):
        return [_redact_obj(x, red) for x in o]
    if isinstance(o, dict):
        return {k: _redact_obj(v, red) for k, v in o.items()}
    return o


def render_terminal(run: PastedRun, console, verbose: bool = False, redact: bool = True) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape

    from doctor.render import make_redactor
    from doctor.render import render_terminal as base

    red = make_redactor(run.report, redact)  # type: ignore[arg-type]
    src = run.report.source  # type: ignore[attr-defined]
    console.print("[bold]Evidence[/bold] (pasted; verdicts decided only from these inputs):")
    for k, v in src.details.items():
        if k.startswith("input ") or k == "gpus checked":
            console.print(f"  {escape(k)}: {escape(red.text(v))}")
    base(run.report, console, verbose=verbose, redact=redact)  # type: ignore[arg-type]
    if run.ties:
        console.print()
        console.print("[bold]Errors in the evidence[/bold]")
        for t in run.ties:
            console.print(f"  [bold]{escape(str(t['title']))}[/bold] ({escape(str(t['where']))}): {escape(red.text(str(t['seen'])))}")
            for c in t["causes"]:  # type: ignore[attr-defined]
                console.print(f"    - {escape(red.text(c['cause']))}: {escape(red.text(c['verdict']))}")




def cmd_check_from(args) -> int:  # type: ignore[no-untyped-def]
    """`gpudoctor check --from PATH...`: same outputs and exit codes as `check`."""
    import json

    from doctor.errors import BadInput as _Bad

    if getattr(args, "snapshot", None):
        raise _Bad("--from and --snapshot cannot be used together: check either pasted outputs or a snapshot")
    pf = load_pasted(list(args.from_paths))
    run = run_pasted(pf, ", ".join(args.from_paths), gpu=args.gpu, only=args.only)
    redact = not args.no_redact

    def table() -> None:
        from rich.console import Console

        render_terminal(run, Console(highlight=False, soft_wrap=False), verbose=args.verbose, redact=redact)

    from doctor.cli import emit_outputs

    emit_outputs(args, run.report, "gpudoctor-pasted", lambda: json.dumps(to_json(run, redact), indent=2, ensure_ascii=False) + "\n",
                 table)
    return run.report.exit_code  # type: ignore[attr-defined, no-any-return]

