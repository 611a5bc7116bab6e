"""Facts from pasted text: the outputs people paste into forums and tickets.

`load_inputs(paths)` reads files (or folders) of pasted output, `segment()`
cuts each into chunks recognised by their content (lspci, dmesg, cmdline, IOMMU
group listings, /etc/default/grub, modprobe.d, lsmod, cpuinfo / lscpu, kvm-ok,
QEMU / libvirt errors), and `PastedFacts` fills the typed facts the checks ask
for, only from what the chunks show. Everything else stays `FactUnknown(...,
"not in the evidence", settle)` from the `Facts` base class.

No verdict from absence
-----------------------
Some things a paste leaves open are parts of a fact, not whole facts, and the facts say so in
their types: a device listed by `lspci -nn` without `-k` has `driver_known=False` (its driver is
unknown, not "none"); a device whose IOMMU group was not pasted makes `group_members` raise
FactUnknown (not "no group"); a GPU whose boot_vga was not shown has `boot_vga=None`; a filtered
device list makes `unlisted_devices()` say so; a CPU known only by its vendor has no flags. The
checks read these as unknown, and the suite runs once (doctor.pasted.run). Evidence names the
pasted file and line (`lspci.txt:12`), never a live path.

Recognisers are pure functions of text (fuzzed by tests). Input is bounded:
at most MAX_FILE_BYTES per file (head and tail kept, the cut is reported) and
MAX_LINE chars per line.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right

from doctor.datarecord import replace
from doctor.errors import FactUnknown
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
    Observed,
    PciDevice,
    fact,
    normalize_pci_address,
    parse_cmdline,
    parse_cpuinfo,
    parse_modprobe,
    parse_os_release,
    parse_shell_assignments,
)
from doctor.facts.logsearch import JoinedLog
from doctor.facts.observed import OBSERVED_KINDS
from doctor.model import SourceInfo
from doctor.pasted.assemble import Shown
from doctor.pasted.chunks import (
    DevInfo,
    parse_kvm_ok,
    parse_lscpu,
    parse_lsmod,
    parse_lspci_chunk,
)
from doctor.pasted.observe import ALL_KEYWORDS, observe_text
from doctor.pasted.segment import _ADDR, KIND_NAMES, Evidence_, span
from doctor.pasted.segment_re import keyword_lines

# observations that name the device the user tried to pass (a subject when no lspci shows it)
SUBJECT_KINDS = ("vfio.group_not_viable", "gpu.bar_reserve", "gpu.fb_on_bar", "gpu.rom_unreadable")

GROUPS_SETTLE = "find /sys/kernel/iommu_groups/ -type l"
_DMAR_UNIT = re.compile(r"DMAR: (dmar\d+): reg_base_addr")
_IOMMU_ON = re.compile(r"Intel\(R\) Virtualization Technology for Directed I/O|AMD-Vi: Found IOMMU|Adding to iommu group")


# `lsmod | grep kvm` (or -i, -w, an alternation with kvm): every kvm module's line holds "kvm"
_GREP_KVM = re.compile(r"\blsmod\b.*\|\s*e?grep\s+(?:-[A-Za-z]+\s+)*['\"]?(?:[^'\"\s]*\|)?\^?kvm(?![\w-])")
# a command that printed every modules-load list: /etc/modules, or modules-load.d by glob or folder (not one named file)
_WHOLE_ML = re.compile(r"/etc/modules(?:\s|$)|modules-load\.d/?(?:\*[^/\s]*)?(?:\s|$)")

class PastedFacts(Shown, Facts):
    """Facts decided only from pasted evidence; the rest stays unknown."""

    source_kind = "pasted"

    def __init__(self, evidence: Evidence_) -> None:
        Facts.__init__(self)
        Shown.__init__(self, evidence.chunks)
        self.evidence = evidence
        self._where: dict[str, str] = {}  # fact -> the chunk(s) it was read from
        # the lines of each input that hold a keyword of an observation or of an explain entry: found once
        self._lines = {it.path: it.text.split("\n") for it in evidence.inputs if it.text}
        self._hits = {p: keyword_lines(evidence_text, ls, ALL_KEYWORDS)
                      for p, ls, evidence_text in ((it.path, self._lines[it.path], it.text) for it in evidence.inputs if it.text)}
        self._observed = tuple(o for it in evidence.inputs if it.text
                               for o in observe_text(it.text, it.path, self._lines[it.path], self._hits[it.path]))
        for o in self._observed:
            if o.address and o.address not in self.devs and o.kind in SUBJECT_KINDS:
                self.devs[o.address] = DevInfo(o.address, source=o.where)

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
                self._where["cpu"] = c.where
                return ci
        for c in self._of("lscpu"):
            try:
                ci = parse_lscpu(c.text)
            except ValueError:
                continue
            if ci.flags:
                self._where["cpu"] = c.where
                return ci
        v = self.cpu_vendor_hint()
        if v is not None:
            # vendor known, flags not: no flags (cpu.virtualization reads that as unknown)
            self._where["cpu"] = v[1]
            return CpuInfo(v[0], f"unknown (vendor from {v[1]})", frozenset(), 1)
        return super().cpu()

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
                self._where["kvm_device"] = c.where
                return exists
        for c in self._of("dev_kvm"):
            self._where["kvm_device"] = c.where
            return "No such file" not in c.text
        for c in self._of("lsmod", "proc_modules"):
            # a module in the list or in another's "Used by" column is loaded; the vendor module stays loaded only
            # when kvm_init() succeeded, which registers /dev/kvm
            vendor_mods = sorted(set(re.findall(r"\b(kvm_(?:intel|amd))\b", c.text)))
            if vendor_mods:
                self._where["kvm_device"] = f"{c.where} ({', '.join(vendor_mods)} loaded)"
                return True
        for c in self._of("error"):
            if re.search(r"Could not access KVM kernel module: No such file|failed to initialize kvm: No such file", c.text):
                self._where["kvm_device"] = c.where
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
            self._where["acpi_tables"] = ", ".join(c.where for c, d in self.dmesg if d.acpi_tables)
            return frozenset(tables)
        raise FactUnknown("ACPI tables", "not in the evidence", "ls /sys/firmware/acpi/tables  (or: sudo dmesg | grep -E 'ACPI: (DMAR|IVRS)')")

    @fact
    def cmdline(self) -> Cmdline:
        for c in self._of("cmdline"):
            return parse_cmdline(c.lines[0], f"{c.file}:{c.start}")
        for c, d in self.dmesg:
            if d.cmdline is not None:
                return parse_cmdline(d.cmdline, f"{c.file}:{c.start + d.cmdline_line} (kernel log command line)")
        return super().cmdline()

    @fact
    def modules(self) -> ModuleState:
        for c in self._of("lsmod", "proc_modules"):
            names, complete = parse_lsmod(c.text)
            if complete or (c.kind == "proc_modules" and len(names) >= 10 and "grep" not in c.command):
                self._where["modules"] = c.where
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
        where = ", ".join([c.where for c, _ in self.dmesg] + [c.where for c in self._of("error")])
        return JoinedLog(tuple(lines), where + ("" if full else " (filtered: shows lines, proves no absence)"))

    @fact
    def iommu_class(self) -> tuple[str, ...]:
        if self.groups == {}:
            self._where["iommu_class"] = self.groups_source
            return ()
        units: list[str] = []
        on = False
        for _, d in self.dmesg:
            for ln in d.lines:
                if "DMAR" not in ln and "AMD-Vi" not in ln and "iommu" not in ln and "Intel(R)" not in ln:
                    continue
                m = _DMAR_UNIT.search(ln)
                if m and m.group(1) not in units:
                    units.append(m.group(1))
                if _IOMMU_ON.search(ln):
                    on = True
                if "AMD-Vi: Found IOMMU at" in ln:
                    units.append(f"ivhd{sum(1 for u in units if u.startswith('ivhd'))}")
        if units and (on or self.groups):
            self._where["iommu_class"] = ", ".join(c.where for c, _ in self.dmesg)
            return tuple(units)
        return super().iommu_class()

    @fact
    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        if self.groups is None:
            return super().iommu_groups()
        self._where["iommu_groups"] = self.groups_source
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
            driver=d.driver if d.driver_known else None,
            iommu_group=self.group_of.get(d.address),
            boot_vga=bv,
            name=d.name,
            kernel_modules=d.modules,
            driver_known=d.driver_known,
            source=d.source,
        )

    @fact
    def observed(self) -> tuple[Observed, ...]:
        """The error and proof lines pasted (doctor.pasted.observe), and a device shown on vfio-pci (vfio-pci
        binds only a device in an IOMMU group, so that proves the IOMMU active)."""
        bound = [Observed("iommu.proof", f"{d.address} driver in use: vfio-pci", d.source or "pasted device list", self.group_of.get(d.address),
                          d.address, "a device on vfio-pci") for d in self.devs.values() if d.driver_known and d.driver == "vfio-pci"]
        return self._observed + tuple(bound[:4]) + self._kvm_without_vendor()

    def _kvm_without_vendor(self) -> tuple[Observed, ...]:
        """`kvm` loaded with neither kvm_intel nor kvm_amd, in a full lsmod or in `lsmod | grep kvm` (which lists every
        kvm module): the vendor module failed to load (firmware leaves VT-x / SVM off, or no CPU support)."""
        out: list[Observed] = []
        for c in self._of("lsmod", "proc_modules"):
            names, complete = parse_lsmod(c.text)
            whole = complete or (c.kind == "proc_modules" and len(names) >= 10 and "grep" not in c.command)
            if "kvm" not in names or names & {"kvm_intel", "kvm_amd"} or not (whole or _GREP_KVM.search(c.command)):
                continue
            i = next(i for i, ln in enumerate(c.lines) if re.match(r"^\s*kvm\s", ln))
            out.append(Observed("kvm.vendor_module_missing", c.lines[i].strip(), f"{c.file}:{c.start + i}", None, None,
                                "full lsmod" if whole else c.command))
        return tuple(out[:1])

    def observed_subjects(self) -> list[str]:
        """Devices an error names as the one being passed (QEMU's host=, vfio's address)."""
        return list(dict.fromkeys(o.address for o in self._observed if o.address and o.kind in SUBJECT_KINDS))

    def where(self, fact_name: str, path: str) -> str:
        try:
            getattr(self, fact_name)()
        except FactUnknown:
            pass
        return self._where.get(fact_name, f"{path} (not shown in the paste)")

    def group_members(self, dev: PciDevice) -> list[PciDevice] | None:
        """As on a host, but a group the evidence does not show is unknown, not "no group"."""
        if self.groups is None:
            raise FactUnknown("IOMMU groups", "not in the evidence", GROUPS_SETTLE)
        if self.groups and dev.address not in self.group_of:
            raise FactUnknown(f"IOMMU group of {dev.address} (the pasted group listing does not name it)", "not in the evidence",
                              GROUPS_SETTLE)
        return super().group_members(dev)

    def unlisted_devices(self) -> FactUnknown | None:
        if self.devs and not self.lspci_complete:
            return FactUnknown("the whole PCI device list", "the pasted device list may be filtered (lspci | grep, lspci -s)",
                               "lspci -nnk")
        return None

    @fact
    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        chunks = self._of("modprobe")
        if not chunks:
            return super().modprobe_config()
        out: list[ModprobeLine] = []
        for c in chunks:
            for i, raw in enumerate(c.lines):
                m = re.match(r"^(\S+\.conf):(.*)$", raw)
                fname, body = (m.group(1), m.group(2)) if m else (c.file, raw)
                for ln in parse_modprobe(body, fname):
                    out.append(replace(ln, lineno=c.start + i if not m else ln.lineno))
        return tuple(out)

    @fact
    def early_load(self) -> EarlyLoadConfig:
        chunks = self._of("initramfs")
        listed = self._of("etc_modules")
        if not chunks and not listed:
            return super().early_load()
        init: list[ConfigLine] = []
        tool = "unknown"
        for c in chunks:
            for i, raw in enumerate(c.lines):
                s = raw.split("#", 1)[0].strip()
                if s.startswith("MODULES="):
                    tool = "mkinitcpio"
                    init.append(ConfigLine(c.file, c.start + i, s))
                elif re.match(r"^(add_drivers|force_drivers|drivers)\s*\+?=", s):
                    tool = "dracut"
                    init.append(ConfigLine(c.file, c.start + i, s))
        # /etc/modules, modules-load.d or /etc/initramfs-tools/modules, pasted after the command that printed it
        ml: list[ConfigLine] = []
        init_shown = bool(chunks)
        whole_ml = False  # /etc/modules or all of modules-load.d (a glob or the folder), not one file of it
        for c in listed:
            lines = [ConfigLine(c.file, c.start + i, raw.strip()) for i, raw in enumerate(c.lines)
                     if raw.strip() and not raw.strip().startswith("#")]
            if "initramfs-tools/modules" in c.command:
                tool = "initramfs-tools"
                init += lines
                init_shown = True
            else:
                ml += lines
                whole_ml = whole_ml or bool(_WHOLE_ML.search(c.command))
        if not any(re.search(r"\bvfio[-_]pci\b", ln.text) for ln in init + ml) and not (init_shown and whole_ml):
            # only a pasted file that loads vfio-pci decides it, or the initramfs configuration and the module lists
            # both shown without it: otherwise the other places may be the ones that do
            raise FactUnknown("early module loading configuration", "the pasted initramfs / modules-load configuration does not "
                              "load vfio-pci, and the other places are not in the evidence",
                              "cat /etc/modules-load.d/*.conf /etc/modules /etc/initramfs-tools/modules")
        return EarlyLoadConfig(tuple(ml), tuple(init), tool)

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
        src = f"{chunks[0].file}:{chunks[0].start} (/etc/default/grub)"
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
                    full = next(d.full for dc, d in self.dmesg if dc is c)
                    name += " (full boot log)" if full else " (filtered or partial)"
                if c.kind == "lspci":
                    _, k = parse_lspci_chunk(c.text)
                    name += " with drivers (-k)" if k else " without drivers (no -k)"
                parts.append(f"{name} [{span(c.start, c.end)}]")
            # lines outside any recognised block that are evidence on their own (observe.py)
            seen_at = {int(o.where.rsplit(":", 1)[1]): o.kind for o in self._observed
                       if o.where.rsplit(":", 1)[0] == it.path and o.where.rsplit(":", 1)[1].isdigit()}
            unrec = [c for c in kinds if c.kind == "unrecognised"]
            alone = sorted((n, k) for c in unrec for n, k in seen_at.items() if c.start <= n <= c.end)
            if alone:
                parts.append("read line by line: " + ", ".join(
                    f"line {n} ({OBSERVED_KINDS[k].split(' (', 1)[0]})" for n, k in alone[:8])
                    + (f" and {len(alone) - 8} more" if len(alone) > 8 else ""))
            unrec = [c for c in unrec if not all(n in seen_at for n in range(c.start, c.end + 1))]
            desc = "; ".join(parts) or "nothing recognised"
            if it.error:
                desc = it.error
            if unrec:
                desc += "; not recognised: " + ", ".join(
                    f"{span(c.start, c.end)} ({c.lines[0].strip()[:50]!r})" for c in unrec[:8]
                ) + (f" and {len(unrec) - 8} more" if len(unrec) > 8 else "")
            if it.notes:
                desc += "; note: " + "; ".join(it.notes)
            details[f"input {n}"] = f"{it.path}: {desc}"
        return SourceInfo("pasted", location, details)

    def recognised_anything(self) -> bool:
        return bool(self._observed) or any(c.kind != "unrecognised" for c in self.chunks)

    def error_matches(self) -> list[tuple[Match, str]]:
        """(known error, where) for each error text found in the evidence."""
        out: list[tuple[Match, str]] = []
        seen: set[str] = set()
        for c in self.chunks:
            if c.kind in ("error", "dmesg", "kvm_ok", "unrecognised", "groups_absent"):
                # only the chunk's lines that hold a keyword (explain.KEYWORDS is part of ALL_KEYWORDS)
                hits, lines = self._hits.get(c.file, []), self._lines.get(c.file, [])
                lo, hi = bisect_left(hits, c.start - 1), bisect_right(hits, c.end - 1)
                for m in find_errors("\n".join(lines[i] for i in hits[lo:hi])):
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
