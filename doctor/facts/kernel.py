"""The running kernel: CPU, command line, build configuration, modules, kernel log, consoles, security."""

from __future__ import annotations

import re
import shlex

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.logsearch import JoinedLog, KernelLog
from doctor.facts.read import HostReader, fact


@record(frozen=True)
class CpuInfo:
    vendor: str  # "GenuineIntel", "AuthenticAMD", ...
    model_name: str
    flags: frozenset[str]
    count: int

    @property
    def is_intel(self) -> bool:
        return self.vendor == "GenuineIntel"

    @property
    def is_amd(self) -> bool:
        return self.vendor in ("AuthenticAMD", "HygonGenuine")


@record(frozen=True)
class KernelArg:
    key: str
    value: str | None  # None for a bare flag

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@record(frozen=True)
class Cmdline:
    raw: str
    args: tuple[KernelArg, ...]
    source: str

    def values(self, key: str) -> list[str | None]:
        k = _norm_key(key)
        return [a.value for a in self.args if _norm_key(a.key) == k]

    def last(self, key: str) -> str | None:
        """Value of the last occurrence (the kernel's own rule); None if absent or bare."""
        v = self.values(key)
        return v[-1] if v else None

    def has(self, key: str) -> bool:
        return bool(self.values(key))

    def option_values(self, key: str) -> list[str]:
        """Comma-separated sub-options across every occurrence (intel_iommu=on,sm_on)."""
        out: list[str] = []
        for v in self.values(key):
            if v:
                out.extend(x.strip() for x in v.split(",") if x.strip())
        return out


def _norm_key(key: str) -> str:
    # The kernel treats '-' and '_' alike in parameter names (vfio-pci.ids == vfio_pci.ids).
    return key.replace("-", "_")


def parse_cmdline(raw: str, source: str) -> Cmdline:
    args: list[KernelArg] = []
    for tok in _split_cmdline(raw):
        if tok == "--":
            break
        if "=" in tok:
            k, v = tok.split("=", 1)
            args.append(KernelArg(k, v.strip('"')))
        else:
            args.append(KernelArg(tok, None))
    return Cmdline(raw.strip(), tuple(args), source)


def _split_cmdline(raw: str) -> list[str]:
    # The kernel's own rule: whitespace separates, double quotes group.
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in raw.strip():
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


@record(frozen=True)
class ModuleState:
    loaded: frozenset[str]  # from /proc/modules
    sysfs: frozenset[str]  # /sys/module entries (also built-ins with parameters)
    builtin: frozenset[str] | None  # modules.builtin, None if unknown
    modular: bool = True  # False: no /proc/modules, the kernel cannot load modules

    def present(self, name: str) -> bool:
        n = name.replace("-", "_")
        return n in self.loaded or n in self.sysfs or (self.builtin is not None and n in self.builtin)

    def is_builtin(self, name: str) -> bool | None:
        if self.builtin is None:
            return None
        return name.replace("-", "_") in self.builtin


def parse_cpuinfo(text: str) -> CpuInfo:
    vendor = model = ""
    flags: frozenset[str] = frozenset()
    count = 0
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, _, v = line.partition(":")
        k = k.strip()
        v = v.strip()
        if k == "processor":
            count += 1
        elif k == "vendor_id" and not vendor:
            vendor = v
        elif k == "model name" and not model:
            model = v
        elif k == "flags" and not flags:
            flags = frozenset(v.split())
    if not vendor and not flags:
        raise ValueError("no vendor_id or flags line")
    return CpuInfo(vendor or "unknown", model or "unknown", flags, max(count, 1))


def parse_kernel_config(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-11]] = "n"
    return out


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            try:
                parts = shlex.split(v)
            except ValueError:
                parts = [v.strip("\"'")]
            out[k.strip()] = parts[0] if parts else ""
    return out


@record(frozen=True)
class ConsoleState:
    vtconsoles: tuple[tuple[str, str, bool], ...]  # (vtconN, name, bound)
    framebuffers: tuple[str, ...]  # /proc/fb lines ("0 EFI VGA")


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo: kB values (HugePages_* are counts)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k.strip()] = int(parts[0])
    return out


def parse_interrupt_chips(text: str) -> frozenset[str]:
    """The irq chip names of /proc/interrupts (IR-PCI-MSI, IR-IO-APIC, PCI-MSI, ...)."""
    chips: set[str] = set()
    for line in text.splitlines()[1:]:
        p = line.split()
        for tok in p[1:]:
            if not tok.isdigit():
                chips.add(tok)
                break
    return frozenset(chips)


@record(frozen=True)
class SecurityState:
    secure_boot: bool | None  # efivars SecureBoot-*; None: not an EFI boot or unreadable
    lockdown: str | None  # "none", "integrity", "confidentiality"; None: no lockdown LSM
    sig_enforce: bool | None  # module.sig_enforce
    sources: tuple[tuple[str, str], ...] = ()


class KernelHostFacts(HostReader):
    @fact
    def kernel_release(self) -> str:
        return self._need("kernel release", "/proc/sys/kernel/osrelease", "uname -r").strip()

    @fact
    def os_release(self) -> dict[str, str]:
        for p in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                t = self.host.read_text_or_none(p)
            except (PermissionError, NotCaptured):
                continue
            if t is not None:
                return parse_os_release(t)
        raise FactUnknown("distribution", "no /etc/os-release", "cat /etc/os-release")

    @fact
    def cpu(self) -> CpuInfo:
        text = self._need("CPU", "/proc/cpuinfo", "cat /proc/cpuinfo")
        try:
            return parse_cpuinfo(text)
        except ValueError as e:
            raise FactUnknown("CPU", f"/proc/cpuinfo unparseable: {e}", "cat /proc/cpuinfo") from e

    @fact
    def kvm_device(self) -> bool:
        try:
            return self.host.exists("/dev/kvm")
        except NotCaptured as e:
            raise FactUnknown("/dev/kvm", str(e), "ls -l /dev/kvm") from e

    @fact
    def acpi_tables(self) -> frozenset[str]:
        try:
            return frozenset(self.host.listdir("/sys/firmware/acpi/tables"))
        except FileNotFoundError as e:
            raise FactUnknown(
                "ACPI tables", "/sys/firmware/acpi/tables does not exist (no ACPI?)", "ls /sys/firmware/acpi/tables"
            ) from e
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("ACPI tables", str(e), "ls /sys/firmware/acpi/tables") from e

    @fact
    def cmdline(self) -> Cmdline:
        return parse_cmdline(self._need("kernel command line", "/proc/cmdline", "cat /proc/cmdline"), "/proc/cmdline")

    @fact
    def kernel_config(self) -> dict[str, str]:
        rel = self.kernel_release()
        path = f"/boot/config-{rel}"
        return parse_kernel_config(self._need("kernel build configuration", path, f"grep IOMMU {path}"))

    @fact
    def modules(self) -> ModuleState:
        try:
            text = self.host.read_text_or_none("/proc/modules")
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("kernel modules", str(e), "cat /proc/modules") from e
        # No /proc/modules: a kernel built without loadable module support.
        modular = text is not None
        loaded = frozenset(ln.split()[0] for ln in (text or "").splitlines() if ln.strip())
        try:
            sysfs = frozenset(self.host.listdir("/sys/module"))
        except (FileNotFoundError, PermissionError, NotCaptured):
            sysfs = frozenset()
        builtin: frozenset[str] | None = None
        try:
            rel = self.kernel_release()
            for base in ("/lib/modules", "/usr/lib/modules"):
                t = self.host.read_text_or_none(f"{base}/{rel}/modules.builtin")
                if t is not None:
                    builtin = frozenset(
                        ln.strip().rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_")
                        for ln in t.splitlines()
                        if ln.strip()
                    )
                    break
        except (FactUnknown, PermissionError, NotCaptured):
            pass
        return ModuleState(loaded, sysfs, builtin, modular)

    @fact
    def kernel_log(self) -> KernelLog:
        try:
            r = self.host.dmesg()
        except NotCaptured as e:
            raise FactUnknown("kernel log", str(e), "sudo dmesg") from e
        if r.ok and r.stdout.strip():
            return JoinedLog(tuple(r.stdout.splitlines()), "dmesg")
        why = r.describe()
        if r.ok:
            why = "`dmesg` printed nothing"
        raise FactUnknown("kernel log", f"not readable: {why}", "sudo dmesg")

    @fact
    def consoles(self) -> ConsoleState:
        settle = "grep . /sys/class/vtconsole/*/name /sys/class/vtconsole/*/bind; cat /proc/fb"
        vts: list[tuple[str, str, bool]] = []
        try:
            names = self.host.listdir("/sys/class/vtconsole")
        except FileNotFoundError:
            names = []
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("consoles and framebuffers", str(e), settle) from e
        for n in names:
            name = (self._text_or_none("consoles and framebuffers", f"/sys/class/vtconsole/{n}/name", settle) or "").strip()
            bind = (self._text_or_none("consoles and framebuffers", f"/sys/class/vtconsole/{n}/bind", settle) or "").strip()
            vts.append((n, name, bind == "1"))
        fb = self._text_or_none("consoles and framebuffers", "/proc/fb", settle) or ""
        return ConsoleState(tuple(vts), tuple(ln.strip() for ln in fb.splitlines() if ln.strip()))

    @fact
    def interrupt_chips(self) -> frozenset[str]:
        return parse_interrupt_chips(self._need("interrupt controllers", "/proc/interrupts", "cat /proc/interrupts"))

    @fact
    def vfio_allow_unsafe_interrupts(self) -> bool | None:
        p = "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"
        t = self._text_or_none("vfio_iommu_type1 parameters", p, f"cat {p}")
        return None if t is None else t.strip() in ("Y", "1")

    @fact
    def security(self) -> SecurityState:
        h = self.host
        src: list[tuple[str, str]] = []
        sb: bool | None = None
        try:
            efi = h.exists("/sys/firmware/efi")
        except NotCaptured:
            efi = None
        if efi is False:
            sb = False
            src.append(("/sys/firmware/efi", "absent: booted without UEFI (no Secure Boot)"))
        elif efi:
            try:
                vars_ = [p for p in h.glob("/sys/firmware/efi/efivars/SecureBoot-*")]
                if vars_:
                    data = h.read_bytes(vars_[0])
                    if len(data) >= 5:
                        sb = data[4] == 1
                        src.append((vars_[0], f"{'1 (enabled)' if sb else '0 (disabled)'}"))
            except (OSError, NotCaptured):
                sb = None
        lock = None
        try:
            t = h.read_text_or_none("/sys/kernel/security/lockdown")
            if t is not None:
                m = re.search(r"\[(\w+)\]", t)
                lock = m.group(1) if m else None
                src.append(("/sys/kernel/security/lockdown", t.strip()))
        except (PermissionError, NotCaptured):
            pass
        sig = None
        try:
            t = h.read_text_or_none("/sys/module/module/parameters/sig_enforce")
            if t is not None:
                sig = t.strip() in ("Y", "1")
                src.append(("/sys/module/module/parameters/sig_enforce", t.strip()))
        except (PermissionError, NotCaptured):
            pass
        if sb is None and lock is None and sig is None:
            raise FactUnknown("Secure Boot and lockdown", "no efivars, lockdown or sig_enforce readable", "mokutil --sb-state")
        return SecurityState(sb, lock, sig, tuple(src))

    @fact
    def meminfo(self) -> dict[str, int]:
        return parse_meminfo(self._need("memory and hugepages", "/proc/meminfo", "cat /proc/meminfo"))

