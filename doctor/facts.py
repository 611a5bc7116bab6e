"""Typed facts, parsed once from a Host (or, later, from pasted text).

A check asks `facts.cmdline()`, `facts.pci_devices()`, ... and gets a value, or
a `FactUnknown` exception that says why the fact could not be established and
what would settle it. The runner turns an unhandled FactUnknown into an
`unknown` result. A missing fact is never turned into an empty value.

`Facts` is the interface: every accessor raises FactUnknown. `HostFacts` reads
a Host (live or snapshot); other sources override what they know.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from doctor.errors import FactUnknown, NotCaptured
from doctor.host import Host

T = TypeVar("T")

PCI_ADDR_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")


def normalize_pci_address(text: str) -> str:
    """`01:00.0` or `0000:01:00.0` → `0000:01:00.0`; ValueError otherwise."""
    m = PCI_ADDR_RE.match(text.strip())
    if not m:
        raise ValueError(
            f"not a PCI address: {text!r} (expected DDDD:BB:SS.F or BB:SS.F, e.g. 0000:01:00.0)"
        )
    dom = (m.group(1) or "0000").lower()
    return f"{dom}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"


# ---------------------------------------------------------------------------
# value types


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class KernelArg:
    key: str
    value: str | None  # None for a bare flag

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class PciDevice:
    address: str
    class_code: int  # 24-bit, e.g. 0x030000
    vendor: str  # "10de"
    device: str  # "1e84"
    subsystem: str | None = None  # "10de:139f"
    revision: str | None = None
    driver: str | None = None
    iommu_group: str | None = None
    boot_vga: bool | None = None
    driver_override: str | None = None
    name: str | None = None
    kernel_modules: tuple[str, ...] = ()
    driver_known: bool = True  # False: the source does not show the driver (driver is None then, not "no driver")
    source: str = field(default="", compare=False)  # where it was read ("lspci.txt:12"); "" = /sys/bus/pci/devices

    @property
    def ident(self) -> str:
        return f"{self.vendor}:{self.device}"

    @property
    def class_hex(self) -> str:
        return f"{self.class_code >> 8:04x}"

    @property
    def base_class(self) -> int:
        return self.class_code >> 16

    @property
    def is_bridge(self) -> bool:
        return self.base_class == 0x06

    @property
    def is_display(self) -> bool:
        return self.base_class == 0x03

    @property
    def slot(self) -> str:
        return self.address.rsplit(".", 1)[0]

    @property
    def function(self) -> int:
        return int(self.address.rsplit(".", 1)[1])

    def label(self) -> str:
        name = f" {self.name}" if self.name else ""
        drv = self.driver or ("no driver" if self.driver_known else "not shown")
        return f"{self.address} [{self.class_hex}]{name} [{self.ident}] (driver: {drv})"


@dataclass(frozen=True)
class ModprobeLine:
    file: str
    lineno: int
    text: str
    command: str  # options, softdep, blacklist, install, alias, remove
    module: str
    rest: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


@dataclass(frozen=True)
class ConfigLine:
    file: str
    lineno: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


@dataclass(frozen=True)
class BootConfig:
    """What the bootloader will give the kernel at the next boot, as configured."""

    kind: str  # grub, systemd-boot, kernelstub, unknown
    cmdline: Cmdline | None  # configured next-boot command line (None: not found)
    files: tuple[str, ...] = ()
    generated: Cmdline | None = None  # from the generated grub.cfg, if readable
    generated_source: str = ""
    tools: tuple[str, ...] = ()  # regeneration tools present on the host
    notes: tuple[str, ...] = ()
    grub_linux: str | None = None  # GRUB_CMDLINE_LINUX alone (the variable a fix edits)


@dataclass(frozen=True)
class KernelLog:
    lines: tuple[str, ...]
    source: str

    def grep(self, pattern: str | re.Pattern[str]) -> list[str]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [ln for ln in self.lines if rx.search(ln)]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class EarlyLoadConfig:
    modules_load: tuple[ConfigLine, ...]  # modules-load.d and /etc/modules entries
    initramfs: tuple[ConfigLine, ...]  # initramfs-tools / dracut / mkinitcpio mentions
    initramfs_tool: str  # initramfs-tools, dracut, mkinitcpio, unknown


@dataclass(frozen=True)
class BootOverride:
    """A PCI device that configuration hands to vfio-pci by address at boot (driver_override
    written by an initramfs script, a udev rule or a modprobe install command): the per-device
    way, which leaves an identical device with the host."""

    address: str
    file: str
    lineno: int
    kind: str  # "initramfs" (runs before udev loads any driver), "udev", "modprobe"
    text: str = field(default="", compare=False, repr=False)  # the whole file, to compare with the initramfs' copy

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


# Where boot-time driver_override writes live. initramfs-tools runs scripts/init-top before
# udev starts, so an override set there wins over every modular driver.
OVERRIDE_SCRIPT_DIRS = ("/etc/initramfs-tools/scripts/init-top", "/etc/initramfs-tools/scripts/init-premount")
UDEV_RULE_DIRS = ("/etc/udev/rules.d",)
_PCI_ADDR = re.compile(r"\b(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\b")


def parse_boot_overrides(text: str, path: str, kind: str) -> list[BootOverride]:
    """Devices a boot-time file sends to vfio-pci through driver_override. A file counts when
    it writes `vfio-pci` into a `driver_override`; every PCI address it names is then taken
    (scripts loop over a list: `for d in 0000:01:00.0 ...`). Commented lines are ignored."""
    live = [(n, ln.split("#", 1)[0] if kind != "udev" else (ln if not ln.lstrip().startswith("#") else ""))
            for n, ln in enumerate(text.splitlines(), 1)]
    body = "\n".join(ln for _, ln in live)
    if "driver_override" not in body or not re.search(r"vfio[-_]pci", body):
        return []
    out: dict[str, BootOverride] = {}
    for n, ln in live:
        for m in _PCI_ADDR.finditer(ln):
            addr = f"{(m.group(1) or '0000').lower()}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"
            out.setdefault(addr, BootOverride(addr, path, n, kind, text))
    return list(out.values())


@dataclass
class HostSummary:
    """Environment facts for report headers; every field may be unknown (None)."""

    kernel: str | None = None
    distro: str | None = None
    cpu: str | None = None
    hostname: str | None = None
    product: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# the interface


def fact(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """Cache a fact per Facts object; cache FactUnknown too (parsed once)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Any) -> T:
        cache = self._cache
        if name in cache:
            v = cache[name]
            if isinstance(v, BaseException):
                raise v
            return v  # type: ignore[no-any-return]
        try:
            v = fn(self)
        except (FactUnknown, NotCaptured) as e:
            cache[name] = e
            raise
        cache[name] = v
        return v

    return wrapper


class Facts:
    """Every fact a check can ask for. The base knows nothing."""

    source_kind = "none"

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _unknown(self, fact_name: str, settle: str) -> FactUnknown:
        return FactUnknown(fact_name, "not in the evidence", settle)

    def kernel_release(self) -> str:
        raise self._unknown("kernel release", "uname -r")

    def os_release(self) -> dict[str, str]:
        raise self._unknown("distribution", "cat /etc/os-release")

    def cpu(self) -> CpuInfo:
        raise self._unknown("CPU", "grep -m1 -E 'vendor_id|flags' /proc/cpuinfo")

    def kvm_device(self) -> bool:
        raise self._unknown("/dev/kvm", "ls -l /dev/kvm")

    def acpi_tables(self) -> frozenset[str]:
        raise self._unknown("ACPI tables", "ls /sys/firmware/acpi/tables")

    def cmdline(self) -> Cmdline:
        raise self._unknown("kernel command line", "cat /proc/cmdline")

    def kernel_config(self) -> dict[str, str]:
        raise self._unknown("kernel build configuration", "grep IOMMU /boot/config-$(uname -r)")

    def modules(self) -> ModuleState:
        raise self._unknown("kernel modules", "cat /proc/modules; ls /sys/module")

    def kernel_log(self) -> KernelLog:
        raise self._unknown("kernel log", "sudo dmesg")

    def iommu_class(self) -> tuple[str, ...]:
        raise self._unknown("/sys/class/iommu", "ls /sys/class/iommu")

    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        raise self._unknown("IOMMU groups", "find /sys/kernel/iommu_groups/ -type l")

    def pci_devices(self) -> dict[str, PciDevice]:
        raise self._unknown("PCI devices", "lspci -Dnnk")

    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        raise self._unknown("modprobe configuration", "grep -r . /etc/modprobe.d/")

    def early_load(self) -> EarlyLoadConfig:
        raise self._unknown(
            "early module loading configuration",
            "cat /etc/modules-load.d/*.conf /etc/modules /etc/initramfs-tools/modules",
        )

    def boot_config(self) -> BootConfig:
        raise self._unknown("bootloader configuration", "cat /etc/default/grub /etc/kernel/cmdline")

    def summary(self) -> HostSummary:
        s = HostSummary()
        for attr, get in (
            ("kernel", self.kernel_release),
            ("distro", lambda: self.os_release().get("PRETTY_NAME")),
            ("cpu", lambda: self.cpu().model_name),
        ):
            try:
                setattr(s, attr, get())
            except (FactUnknown, NotCaptured):
                pass
        return s

    # -- forecast facts (checks/check_forecast*.py) ---------------------------
    def iomem(self) -> tuple[IomemRange, ...]:
        raise self._unknown("/proc/iomem", "sudo cat /proc/iomem")

    def pci_bars(self, address: str) -> tuple[PciBar, ...]:
        raise self._unknown(f"BARs of {address}", f"cat /sys/bus/pci/devices/{address}/resource")

    def pci_config(self, address: str) -> bytes:
        raise self._unknown(f"config space of {address}", f"sudo lspci -vvv -s {address}")

    def reset_method(self, address: str) -> tuple[str, ...] | None:
        """The kernel's reset methods for a device in order; None where the attribute is absent."""
        raise self._unknown(f"reset methods of {address}", f"cat /sys/bus/pci/devices/{address}/reset_method")

    def consoles(self) -> ConsoleState:
        raise self._unknown("consoles and framebuffers", "grep . /sys/class/vtconsole/*/name /sys/class/vtconsole/*/bind; cat /proc/fb")

    def interrupt_chips(self) -> frozenset[str]:
        raise self._unknown("interrupt controllers", "cat /proc/interrupts")

    def vfio_allow_unsafe_interrupts(self) -> bool | None:
        """vfio_iommu_type1's allow_unsafe_interrupts; None where the module is not loaded."""
        raise self._unknown("vfio_iommu_type1 parameters", "cat /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")

    def mounts(self) -> tuple[Mount, ...]:
        raise self._unknown("mounted filesystems", "cat /proc/self/mounts")

    def block_devices(self) -> dict[str, BlockDevice]:
        raise self._unknown("block devices", "ls -l /sys/class/block/")

    def net_interfaces(self) -> dict[str, NetInterface]:
        raise self._unknown("network interfaces", "ls -l /sys/class/net/")

    def default_route_ifaces(self) -> tuple[str, ...]:
        raise self._unknown("default route", "ip route show default; ip -6 route show default")

    def routed_ifaces(self) -> tuple[str, ...]:
        raise self._unknown("configured interfaces", "ip route show; ip -6 route show")

    def boot_entries(self) -> tuple[BootEntry, ...]:
        raise self._unknown("boot loader entries", "grep . /boot/loader/entries/*.conf")

    def initramfs(self) -> InitramfsImage:
        raise self._unknown("initramfs image", "lsinitramfs /boot/initrd.img-$(uname -r) | grep vfio")

    def security(self) -> SecurityState:
        raise self._unknown("Secure Boot and lockdown", "mokutil --sb-state; cat /sys/kernel/security/lockdown")

    def option_rom(self, address: str) -> bytes:
        """The GPU's option ROM image. Never read from sysfs by default: reading `rom` needs
        writing 1 to it first, which changes the device's state (opt in: check --read-rom, or
        give a dump with --rom FILE). OptionRomUnreadable where a requested read failed."""
        raise FactUnknown(f"option ROM of {address}", "not read (reading it means writing 1 to sysfs `rom`)",
                          f"sudo sh -c 'echo 1 > /sys/bus/pci/devices/{address}/rom; cat /sys/bus/pci/devices/{address}/rom > rom.bin; echo 0 > /sys/bus/pci/devices/{address}/rom'")

    def boot_overrides(self) -> tuple[BootOverride, ...]:
        raise self._unknown("boot-time driver_override configuration",
                            "grep -rl driver_override /etc/initramfs-tools/scripts /etc/udev/rules.d /etc/modprobe.d")

    def libvirt_hostdevs(self) -> tuple[LibvirtHostdev, ...]:
        raise self._unknown("libvirt domain definitions", "sudo grep -A3 '<hostdev' /etc/libvirt/qemu/*.xml")

    def libvirt_domains(self) -> tuple[LibvirtDomain, ...]:
        raise self._unknown("libvirt domain definitions", "sudo cat /etc/libvirt/qemu/*.xml")

    def meminfo(self) -> dict[str, int]:
        raise self._unknown("memory and hugepages", "cat /proc/meminfo")

    def where(self, fact_name: str, path: str) -> str:
        """Where the source read a fact, for evidence: `path` on a host; a source of its own says where (`dmesg.txt:3-40`)."""
        return path

    def unlisted_devices(self) -> FactUnknown | None:
        """Why PCI devices may exist that pci_devices() does not list (a filtered paste); None: it lists them all."""
        return None

    # -- derived facts shared by checks ------------------------------------
    def gpus(self) -> list[PciDevice]:
        return [d for d in self.pci_devices().values() if d.is_display]

    def slot_functions(self, dev: PciDevice) -> list[PciDevice]:
        return sorted(
            (d for d in self.pci_devices().values() if d.slot == dev.slot), key=lambda d: d.address
        )

    def group_members(self, dev: PciDevice) -> list[PciDevice] | None:
        """Every PCI device in dev's IOMMU group, or None where dev has no group."""
        if dev.iommu_group is None:
            return None
        groups = self.iommu_groups()
        addrs = groups.get(dev.iommu_group)
        devs = self.pci_devices()
        if addrs is None:
            return [d for d in devs.values() if d.iommu_group == dev.iommu_group]
        return [devs[a] if a in devs else PciDevice(a, 0, "????", "????") for a in addrs]


# ---------------------------------------------------------------------------
# parsers (pure functions, fuzzed by tests)


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


def parse_modprobe(text: str, file: str) -> list[ModprobeLine]:
    out: list[ModprobeLine] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i]
        # modprobe.d allows a trailing backslash to continue a line
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(None, 2)
        cmd = parts[0]
        if cmd not in ("options", "softdep", "blacklist", "install", "alias", "remove") or len(parts) < 2:
            continue
        module = parts[1]
        rest = parts[2] if len(parts) > 2 else ""
        out.append(ModprobeLine(file, lineno, s, cmd, module.replace("-", "_"), rest))
    return out


def parse_module_list(text: str, file: str) -> list[ConfigLine]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s and not s.startswith(";"):
            out.append(ConfigLine(file, n, s))
    return out


_SHELL_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def parse_shell_assignments(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Evaluate simple `VAR=value` lines the way `sh` would for /etc/default/grub.

    Supports quoting, escapes, comments and $VAR / ${VAR} references to earlier
    assignments. Lines that are not plain assignments are ignored. Raises
    ValueError on unbalanced quotes.
    """
    env = dict(env or {})
    for line in text.splitlines():
        m = _SHELL_ASSIGN.match(line)
        if not m:
            continue
        name, rhs = m.group(1), m.group(2)
        env[name] = _shell_value(rhs, env)
    return env


def _shell_value(rhs: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    n = len(rhs)
    while i < n:
        c = rhs[i]
        if c in " \t":
            break  # end of the word; the rest is a command or a comment
        if c == "#" and not out:
            break
        if c == "'":
            j = rhs.find("'", i + 1)
            if j < 0:
                raise ValueError("unterminated single quote")
            out.append(rhs[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            buf: list[str] = []
            while i < n and rhs[i] != '"':
                if rhs[i] == "\\" and i + 1 < n and rhs[i + 1] in '"\\$`\n':
                    buf.append(rhs[i + 1])
                    i += 2
                    continue
                buf.append(rhs[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated double quote")
            i += 1
            out.append(_expand("".join(buf), env, raw=buf))
        elif c == "\\" and i + 1 < n:
            out.append(rhs[i + 1])
            i += 2
        elif c == "$":
            m = _VAR_REF.match(rhs, i)
            if m:
                out.append(env.get(m.group(1) or m.group(2), ""))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _expand(s: str, env: dict[str, str], raw: list[str]) -> str:
    return _VAR_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), s)


_GRUB_LINUX = re.compile(r"^\s*linux(?:efi|16)?\s+(\S+)\s*(.*)$")


def parse_grub_cfg_default_linux(text: str) -> str | None:
    """Arguments of the first `linux` line in a generated grub.cfg (the default entry)."""
    for line in text.splitlines():
        m = _GRUB_LINUX.match(line)
        if m:
            return m.group(2).strip()
    return None


def parse_iommu_group_links(paths: list[str]) -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for p in paths:
        parts = p.strip("/").split("/")
        # sys/kernel/iommu_groups/N/devices/ADDR
        if len(parts) >= 6 and parts[-2] == "devices":
            groups.setdefault(parts[-3], []).append(parts[-1])
    return {g: tuple(sorted(v)) for g, v in sorted(groups.items(), key=lambda kv: _group_key(kv[0]))}


def _group_key(g: str) -> tuple[int, str]:
    return (int(g), "") if g.isdigit() else (1 << 30, g)


_LSPCI_LINE = re.compile(
    r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<cls>.*?)\s*\[(?P<clsid>[0-9a-fA-F]{4})\]:\s*(?P<name>.*?)\s*"
    r"\[(?P<ven>[0-9a-fA-F]{4}):(?P<dev>[0-9a-fA-F]{4})\](?P<tail>.*)$"
)


@dataclass(frozen=True)
class LspciEntry:
    address: str
    class_id: str
    class_name: str
    name: str
    vendor: str
    device: str
    revision: str | None
    subsystem: str | None
    driver: str | None
    modules: tuple[str, ...]


def parse_lspci_nnk(text: str) -> list[LspciEntry]:
    """Parse `lspci -nn`, `-nnk`, `-Dnnk` output (tolerant; unknown lines skipped)."""
    out: list[LspciEntry] = []
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            out.append(LspciEntry(**cur))

    for raw in text.splitlines():
        line = raw.rstrip()
        m = _LSPCI_LINE.match(line.strip()) if line and not line[0].isspace() else None
        if m:
            flush()
            rev = re.search(r"\(rev ([0-9a-fA-F]+)\)", m.group("tail"))
            cur = {
                "address": normalize_pci_address(m.group("addr")),
                "class_id": m.group("clsid").lower(),
                "class_name": m.group("cls"),
                "name": m.group("name"),
                "vendor": m.group("ven").lower(),
                "device": m.group("dev").lower(),
                "revision": rev.group(1) if rev else None,
                "subsystem": None,
                "driver": None,
                "modules": (),
            }
            continue
        if cur is None or not line[:1].isspace():
            continue
        s = line.strip()
        if s.startswith("Subsystem:"):
            sm = re.search(r"\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]\s*$", s)
            if sm:
                cur["subsystem"] = f"{sm.group(1).lower()}:{sm.group(2).lower()}"
        elif s.startswith("Kernel driver in use:"):
            cur["driver"] = s.split(":", 1)[1].strip() or None
        elif s.startswith("Kernel modules:"):
            cur["modules"] = tuple(x.strip() for x in s.split(":", 1)[1].split(",") if x.strip())
    flush()
    return out


# ---------------------------------------------------------------------------
# forecast facts: value types and pure parsers (fuzzed by tests/test_forecast.py)


@dataclass(frozen=True)
class IomemRange:
    start: int
    end: int
    name: str
    depth: int  # indentation level in /proc/iomem

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end

    def __str__(self) -> str:
        return f"{self.start:08x}-{self.end:08x} : {self.name}"


def parse_iomem(text: str) -> tuple[IomemRange, ...]:
    out: list[IomemRange] = []
    for line in text.splitlines():
        m = re.match(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$", line)
        if m:
            out.append(IomemRange(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(), len(m.group(1)) // 2))
    return tuple(out)


@dataclass(frozen=True)
class PciBar:
    index: int  # 0-5 BARs, 6 the expansion ROM
    start: int
    end: int
    flags: int

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & 0x200)

    def __str__(self) -> str:
        return f"{'ROM' if self.index == 6 else f'BAR {self.index}'} [mem {self.start:#x}-{self.end:#x}]"


def parse_pci_resource(text: str) -> tuple[PciBar, ...]:
    """The `resource` attribute: one `start end flags` line per region (0-5 BARs, 6 ROM)."""
    out: list[PciBar] = []
    for i, line in enumerate(text.splitlines()[:7]):
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            s, e, f = (int(p, 16) for p in parts)
        except ValueError:
            continue
        if s or e:
            out.append(PciBar(i, s, e, f))
    return tuple(out)


@dataclass(frozen=True)
class ConsoleState:
    vtconsoles: tuple[tuple[str, str, bool], ...]  # (vtconN, name, bound)
    framebuffers: tuple[str, ...]  # /proc/fb lines ("0 EFI VGA")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    fstype: str


def parse_mounts(text: str) -> tuple[Mount, ...]:
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 3:
            dec = [x.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\") for x in p[:3]]
            out.append(Mount(dec[0], dec[1], dec[2]))
    return tuple(out)


@dataclass(frozen=True)
class BlockDevice:
    name: str  # nvme0n1p2, sda1, dm-0
    sysfs: str  # /sys/devices/... (the class link's target)
    slaves: tuple[str, ...] = ()  # dm/md: the devices under it
    dm_name: str | None = None  # dm: its /dev/mapper name

    @property
    def pci_address(self) -> str | None:
        return last_pci_address(self.sysfs)


@dataclass(frozen=True)
class NetInterface:
    name: str
    sysfs: str
    lowers: tuple[str, ...] = ()  # bridge ports, bond slaves, vlan parents

    @property
    def pci_address(self) -> str | None:
        return last_pci_address(self.sysfs)


_PCI_COMPONENT = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")


def last_pci_address(sysfs_path: str) -> str | None:
    """The PCI function a sysfs device path hangs off (the last PCI component)."""
    found = None
    for part in sysfs_path.split("/"):
        if _PCI_COMPONENT.match(part):
            found = part
    return found


def parse_routed_ifaces(route: str | None, route6: str | None) -> tuple[str, ...]:
    """Interfaces with a route of their own (an address configured on them), from /proc/net/route
    and /proc/net/ipv6_route; IPv6 link-local (fe80::/64) and multicast routes, which every
    interface that is up has, do not count."""
    out: list[str] = []
    for line in (route or "").splitlines()[1:]:
        p = line.split()
        if len(p) >= 8 and p[0] != "lo" and p[0] not in out:
            out.append(p[0])
    for line in (route6 or "").splitlines():
        p = line.split()
        if len(p) < 10 or p[9] == "lo" or p[9] in out or not (int(p[8], 16) & 0x1 if _HEX.match(p[8]) else False):
            continue
        if p[0].startswith(("fe80", "ff")):
            continue
        out.append(p[9])
    return tuple(out)


_HEX = re.compile(r"^[0-9a-fA-F]+$")


def parse_default_route_ifaces(route: str | None, route6: str | None) -> tuple[str, ...]:
    """Interfaces of the default route(s), from /proc/net/route and /proc/net/ipv6_route."""
    out: list[str] = []
    for line in (route or "").splitlines()[1:]:
        p = line.split()
        # Iface Destination Gateway Flags ... Mask ...
        if len(p) >= 8 and p[1] == "00000000" and p[7] == "00000000" and int(p[3], 16) & 0x1:
            if p[0] not in out:
                out.append(p[0])
    for line in (route6 or "").splitlines():
        p = line.split()
        if len(p) >= 10 and p[0] == "0" * 32 and p[1] == "00" and p[9] != "lo" and int(p[8], 16) & 0x1:
            if p[9] not in out:
                out.append(p[9])
    return tuple(out)


@dataclass(frozen=True)
class BootEntry:
    """A Boot Loader Specification entry (/boot/loader/entries/*.conf)."""

    path: str
    title: str
    version: str
    options: str


def parse_bls_entry(text: str, path: str, env: dict[str, str] | None = None) -> BootEntry:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        k, _, v = s.partition(" ")
        keys.setdefault(k, []).append(v.strip())
    opts = " ".join(keys.get("options", []))
    if env:
        opts = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: (env or {}).get(m.group(1), m.group(0)), opts)
    return BootEntry(path, (keys.get("title") or [""])[0], (keys.get("version") or [""])[0], opts)


def parse_grubenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v
    return out


@dataclass(frozen=True)
class InitramfsImage:
    path: str
    segments: tuple[str, ...]  # "cpio", "gzip", "zstd", ... in order
    names: frozenset[str]  # every path in the archive(s), without a leading "./" or "/"
    files: tuple[tuple[str, bytes], ...]  # contents of the small files we care about (modprobe.d, conf)
    undecoded: str | None = None  # a compression this Python cannot decode (the rest is unknown)

    def has_module(self, name: str) -> bool:
        want = {name.replace("-", "_"), name.replace("_", "-")}
        for n in self.names:
            base = n.rsplit("/", 1)[-1]
            for suf in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if base.endswith(suf) and base[: -len(suf)] in want:
                    return True
        return False

    def file(self, name: str) -> bytes | None:
        for n, data in self.files:
            if n == name:
                return data
        return None


_CPIO_KEEP = re.compile(r"^(usr/)?(etc|lib)/modprobe\.d/[^/]+\.conf$|^conf/modules$|^etc/modules-load\.d/[^/]+\.conf$"
                        r"|^scripts/(init-top|init-premount)/[^/]+$")


def _decompressor(data: bytes) -> tuple[str, Callable[[bytes], bytes] | None]:
    import bz2
    import gzip
    import lzma

    if data[:2] == b"\x1f\x8b":
        return "gzip", lambda b: gzip.decompress(b)
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz", lambda b: lzma.decompress(b, format=lzma.FORMAT_XZ)
    if data[:3] == b"\x5d\x00\x00":
        return "lzma", lambda b: lzma.decompress(b, format=lzma.FORMAT_ALONE)
    if data[:3] == b"BZh":
        return "bzip2", bz2.decompress
    if data[:4] == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14

            return "zstd", zstd.decompress
        except ImportError:
            try:
                import zstandard  # type: ignore[import-not-found]

                return "zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)
            except ImportError:
                return "zstd", _tool_decompressor("zstd")
    if data[:4] in (b"\x02\x21\x4c\x18", b"\x04\x22\x4d\x18"):
        try:
            import lz4.frame  # type: ignore[import-not-found]

            if data[:4] == b"\x04\x22\x4d\x18":
                return "lz4", lz4.frame.decompress
        except ImportError:
            pass
        return "lz4", _tool_decompressor("lz4")  # the legacy format (the kernel's lz4 -l) only the tool reads
    return "unknown", None


def _tool_decompressor(tool: str) -> Callable[[bytes], bytes] | None:
    """Where this Python has no decoder, the `zstd` / `lz4` program of the machine doing the
    analysis (not of the host analysed: this only decompresses bytes already read). Debian's
    python3 has no zstd module, but every host with a zstd initramfs has the zstd program."""
    import shutil
    import subprocess

    exe = shutil.which(tool)
    if exe is None:
        return None

    def run(b: bytes) -> bytes:
        # -dc reads concatenated frames; trailing data after the frames makes it fail, so
        # --no-check is not used and errors are reported as corrupt data by the caller.
        r = subprocess.run([exe, "-dc"], input=b, capture_output=True, timeout=120, check=False)
        if r.returncode != 0 and not r.stdout:
            raise ValueError(r.stderr.decode(errors="replace").strip() or f"{tool} -dc exited {r.returncode}")
        return r.stdout

    return run


def parse_initramfs(data: bytes, path: str) -> InitramfsImage:
    """Walk concatenated newc cpio archives, uncompressed or compressed (gzip, xz, lzma,
    bzip2; zstd/lz4 where this Python has a decoder): the early-microcode cpio first,
    then the main one. Raises ValueError for something that is not an initramfs."""
    names: set[str] = set()
    files: list[tuple[str, bytes]] = []
    segments: list[str] = []
    undecoded = None
    buf = data
    pos = 0
    while pos < len(buf):
        # skip the zero padding between archives
        while pos < len(buf) and buf[pos] == 0:
            pos += 1
        if pos >= len(buf):
            break
        if buf[pos : pos + 6] in (b"070701", b"070702"):
            segments.append("cpio")
            pos = _walk_cpio(buf, pos, names, files)
            continue
        kind, dec = _decompressor(buf[pos : pos + 8])
        if dec is None:
            if kind == "unknown" and not segments:
                raise ValueError(f"{path}: not a cpio archive or a known compression")
            undecoded = kind
            segments.append(kind)
            break
        segments.append(kind)
        try:
            out = dec(buf[pos:])
        except Exception as e:  # noqa: BLE001 - a corrupt image is reported, not raised
            raise ValueError(f"{path}: {kind} data does not decompress ({e})") from e
        # the decompressed stream is itself one or more cpio archives; nothing follows it we can find
        buf = out
        pos = 0
    if not segments:
        raise ValueError(f"{path}: empty")
    return InitramfsImage(path, tuple(segments), frozenset(names), tuple(files), undecoded)


def _walk_cpio(buf: bytes, pos: int, names: set[str], files: list[tuple[str, bytes]]) -> int:
    while pos + 110 <= len(buf):
        if buf[pos : pos + 6] not in (b"070701", b"070702"):
            raise ValueError(f"bad cpio header at offset {pos}")
        try:
            mode = int(buf[pos + 14 : pos + 22], 16)
            fsize = int(buf[pos + 54 : pos + 62], 16)
            nsize = int(buf[pos + 94 : pos + 102], 16)
        except ValueError as e:
            raise ValueError(f"bad cpio header at offset {pos}") from e
        name_start = pos + 110
        name = buf[name_start : name_start + nsize - 1].decode("utf-8", "replace")
        data_start = (name_start + nsize + 3) & ~3
        end = (data_start + fsize + 3) & ~3
        if name == "TRAILER!!!":
            return end
        n = name.lstrip("./").lstrip("/")
        if n:
            names.add(n)
            if (mode & 0o170000) == 0o100000 and fsize < 65536 and _CPIO_KEEP.match(n):
                files.append((n, buf[data_start : data_start + fsize]))
        pos = end
    return len(buf)


@dataclass(frozen=True)
class LibvirtHostdev:
    domain: str  # the domain's <name>
    file: str
    address: str  # normalized PCI address of <source><address .../>


def parse_libvirt_hostdevs(text: str, file: str) -> tuple[LibvirtHostdev, ...]:
    """PCI <hostdev> sources of a libvirt domain XML (ValueError if it does not parse)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"{file}: {e}") from e
    name = (root.findtext("name") or file.rsplit("/", 1)[-1]).strip()
    out = []
    for hd in root.iter("hostdev"):
        if hd.get("type") != "pci":
            continue
        a = hd.find("source/address")
        if a is None:
            continue
        try:
            dom = int(a.get("domain", "0"), 0)
            bus = int(a.get("bus", "0"), 0)
            slot = int(a.get("slot", "0"), 0)
            fn = int(a.get("function", "0"), 0)
        except ValueError:
            continue
        out.append(LibvirtHostdev(name, file, f"{dom:04x}:{bus:02x}:{slot:02x}.{fn:x}"))
    return tuple(out)


_UNIT_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024, "m": 1024, "mib": 1024,
             "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2, "gb": 1000**3 / 1024, "t": 1024**3, "tib": 1024**3}


def _kib(el: Any) -> int | None:
    if el is None or not (el.text or "").strip():
        return None
    try:
        return int(int(el.text.strip()) * _UNIT_KIB.get((el.get("unit") or "KiB").lower(), 1))
    except ValueError:
        return None


@dataclass(frozen=True)
class LibvirtDomain:
    """What a libvirt domain asks of host memory (for VFIO all guest RAM is pinned)."""

    name: str
    file: str
    memory_kib: int | None
    hostdevs: int  # PCI host devices
    hugepages: bool
    hard_limit_kib: int | None
    locked: bool  # <memoryBacking><locked/>


def parse_libvirt_domain(text: str, file: str) -> LibvirtDomain:
    """ValueError if the XML does not parse."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"{file}: {e}") from e
    name = (root.findtext("name") or file.rsplit("/", 1)[-1]).strip()
    mb = root.find("memoryBacking")
    return LibvirtDomain(
        name, file, _kib(root.find("memory")),
        sum(1 for hd in root.iter("hostdev") if hd.get("type") == "pci"),
        mb is not None and mb.find("hugepages") is not None,
        _kib(root.find("memtune/hard_limit")),
        mb is not None and mb.find("locked") is not None,
    )


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


@dataclass(frozen=True)
class SecurityState:
    secure_boot: bool | None  # efivars SecureBoot-*; None: not an EFI boot or unreadable
    lockdown: str | None  # "none", "integrity", "confidentiality"; None: no lockdown LSM
    sig_enforce: bool | None  # module.sig_enforce
    sources: tuple[tuple[str, str], ...] = ()


def parse_pcie_flr(config: bytes) -> bool | None:
    """FLR support from the PCI Express capability's Device Capabilities (bit 28).

    None where the capability list cannot be read (config shorter than 256 bytes:
    an unprivileged read returns only the first 64)."""
    if len(config) < 64:
        return None
    status = int.from_bytes(config[6:8], "little")
    if not status & 0x10:
        return False  # no capability list: conventional PCI, no PCIe FLR
    if len(config) < 256:
        return None
    ptr = config[0x34] & 0xFC
    seen = set()
    while ptr and ptr not in seen and ptr + 8 <= len(config):
        seen.add(ptr)
        cap_id = config[ptr]
        if cap_id == 0x10:
            devcap = int.from_bytes(config[ptr + 4 : ptr + 8], "little")
            return bool(devcap & (1 << 28))
        ptr = config[ptr + 1] & 0xFC
    return False


def parse_option_rom(data: bytes) -> list[str]:
    """Images of a PCI option ROM: ["x86 (legacy)", "EFI", ...]; ValueError if invalid."""
    images: list[str] = []
    if data[:2] != b"\x55\xaa":
        raise ValueError(f"no 0x55AA signature at offset 0 (starts {data[:2].hex(' ') or 'empty'})")
    off = 0
    while off + 0x1A <= len(data):
        if data[off : off + 2] != b"\x55\xaa":
            break
        pcir = off + int.from_bytes(data[off + 0x18 : off + 0x1A], "little")
        if data[pcir : pcir + 4] != b"PCIR":
            raise ValueError(f"no PCI data structure ('PCIR') in the image at {off:#x}")
        if pcir + 0x16 > len(data):
            raise ValueError(f"the PCI data structure of the image at {off:#x} is cut off ({len(data)} bytes)")
        code = data[pcir + 0x14]
        images.append({0: "x86 (legacy BIOS)", 1: "Open Firmware", 2: "HP PA-RISC", 3: "EFI"}.get(code, f"type {code}"))
        length = int.from_bytes(data[pcir + 0x10 : pcir + 0x12], "little") * 512
        last = data[pcir + 0x15] & 0x80
        if last or not length:
            break
        off += length
    if not images:
        raise ValueError(f"cut off: {len(data)} bytes, shorter than a ROM header")
    return images


BLS_DIRS = ("/boot/loader/entries", "/boot/efi/loader/entries", "/efi/loader/entries")
INITRAMFS_IMAGES = ("/boot/initrd.img-{release}", "/boot/initramfs-{release}.img", "/boot/initrd-{release}")


# ---------------------------------------------------------------------------
# facts read from a Host

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")
MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d", "/usr/local/lib/modules-load.d", "/usr/lib/modules-load.d", "/lib/modules-load.d")
BOOT_TOOLS = (
    "/usr/sbin/update-grub",
    "/usr/sbin/grub-mkconfig",
    "/usr/sbin/grub2-mkconfig",
    "/usr/sbin/grubby",
    "/usr/bin/kernelstub",
    "/usr/bin/bootctl",
    "/usr/bin/kernel-install",
    "/usr/sbin/update-initramfs",
    "/usr/bin/dracut",
    "/usr/sbin/dracut",
    "/usr/bin/mkinitcpio",
)
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
PCI_ATTRS = (
    "class", "vendor", "device", "subsystem_vendor", "subsystem_device", "revision",
    "boot_vga", "driver_override",
)  # fmt: skip


def _hex_attr(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    if not re.fullmatch(r"[0-9a-f]+", t):
        return None
    return t[-width:].rjust(width, "0")


class HostFacts(Facts):
    """Facts read from a Host: the live machine or a recorded snapshot."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.source_kind = host.source_info().kind

    def _need(self, fact_name: str, path: str, settle: str) -> str:
        try:
            text = self.host.read_text(path)
        except FileNotFoundError as e:
            raise FactUnknown(fact_name, f"{path} does not exist", settle) from e
        except PermissionError as e:
            raise FactUnknown(fact_name, f"{path} is not readable (permission denied)", settle) from e
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e
        return text

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
        r = self.host.run(["dmesg"], timeout=10)
        if r.ok and r.stdout.strip():
            return KernelLog(tuple(r.stdout.splitlines()), "dmesg")
        why = r.describe()
        if r.ok:
            why = "`dmesg` printed nothing"
        raise FactUnknown("kernel log", f"not readable: {why}", "sudo dmesg")

    @fact
    def iommu_class(self) -> tuple[str, ...]:
        try:
            return tuple(self.host.listdir("/sys/class/iommu"))
        except FileNotFoundError:
            return ()
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("/sys/class/iommu", str(e), "ls /sys/class/iommu") from e

    @fact
    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        try:
            if not self.host.exists("/sys/kernel/iommu_groups"):
                return {}
            return parse_iommu_group_links(self.host.glob("/sys/kernel/iommu_groups/*/devices/*"))
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("IOMMU groups", str(e), "find /sys/kernel/iommu_groups/ -type l") from e

    @fact
    def pci_devices(self) -> dict[str, PciDevice]:
        h = self.host
        try:
            addrs = h.listdir("/sys/bus/pci/devices")
        except FileNotFoundError:
            return {}
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("PCI devices", str(e), "lspci -Dnnk") from e
        names = self._lspci()
        out: dict[str, PciDevice] = {}
        for addr in addrs:
            try:
                address = normalize_pci_address(addr)
            except ValueError:
                continue
            base = f"/sys/bus/pci/devices/{addr}"
            attrs: dict[str, str | None] = {}
            for a in PCI_ATTRS:
                try:
                    attrs[a] = h.read_text_or_none(f"{base}/{a}")
                except (PermissionError, NotCaptured):
                    attrs[a] = None
            cls = _hex_attr(attrs["class"], 6)
            ven = _hex_attr(attrs["vendor"], 4)
            dev = _hex_attr(attrs["device"], 4)
            ln = names.get(address)
            if ven is None and ln is not None:
                ven, dev = ln.vendor, ln.device
            if cls is None and ln is not None:
                cls = ln.class_id + "00"
            if ven is None or dev is None or cls is None:
                continue  # garbage in sysfs: skip the device rather than invent one
            sv = _hex_attr(attrs["subsystem_vendor"], 4)
            sd = _hex_attr(attrs["subsystem_device"], 4)
            try:
                driver = h.link_name(f"{base}/driver")
                group = h.link_name(f"{base}/iommu_group")
            except (PermissionError, NotCaptured):
                driver = ln.driver if ln else None
                group = None
            bv = attrs["boot_vga"]
            dov = (attrs["driver_override"] or "").strip()
            modules = ln.modules if ln else ()
            if not modules and driver and driver != "vfio-pci":
                # no `lspci -k` at hand: the module behind the bound driver (xhci_hcd -> xhci_pci)
                try:
                    m = h.link_name(f"/sys/bus/pci/drivers/{driver}/module")
                except (PermissionError, NotCaptured):
                    m = None
                modules = (m,) if m else ()
            out[address] = PciDevice(
                address=address,
                class_code=int(cls, 16),
                vendor=ven,
                device=dev,
                subsystem=f"{sv}:{sd}" if sv and sd else None,
                revision=_hex_attr(attrs["revision"], 2),
                driver=driver,
                iommu_group=group,
                boot_vga=None if bv is None or bv.strip() not in ("0", "1") else bv.strip() == "1",
                driver_override=None if dov in ("", "(null)") else dov,
                name=ln.name if ln else None,
                kernel_modules=modules,
            )
        return dict(sorted(out.items()))

    def _lspci(self) -> dict[str, LspciEntry]:
        try:
            r = self.host.run(["lspci", "-Dnnk"], timeout=10)
        except NotCaptured:
            return {}
        if not r.ok:
            return {}
        try:
            return {e.address: e for e in parse_lspci_nnk(r.stdout)}
        except ValueError:
            return {}

    def _read_dir_files(self, dirs: tuple[str, ...], suffix: str) -> list[tuple[str, str]]:
        """(path, text) of each `*suffix` file, with systemd-style name override order."""
        seen: dict[str, str] = {}
        for d in dirs:
            try:
                names = self.host.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (PermissionError, NotCaptured):
                continue
            for n in names:
                if n.endswith(suffix) and n not in seen:
                    seen[n] = f"{d}/{n}"
        out = []
        for n in sorted(seen):
            try:
                t = self.host.read_text_or_none(seen[n])
            except (PermissionError, NotCaptured):
                continue
            if t is not None:
                out.append((seen[n], t))
        return out

    @fact
    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        out: list[ModprobeLine] = []
        for path, text in self._read_dir_files(MODPROBE_DIRS, ".conf"):
            out.extend(parse_modprobe(text, path))
        return tuple(out)

    @fact
    def early_load(self) -> EarlyLoadConfig:
        h = self.host
        ml: list[ConfigLine] = []
        for path, text in self._read_dir_files(MODULES_LOAD_DIRS, ".conf"):
            ml.extend(parse_module_list(text, path))
        t = h.read_text_or_none("/etc/modules")
        if t is not None:
            ml.extend(parse_module_list(t, "/etc/modules"))
        init: list[ConfigLine] = []
        tool = "unknown"
        t = h.read_text_or_none("/etc/initramfs-tools/modules")
        if t is not None or h.exists("/usr/sbin/update-initramfs"):
            tool = "initramfs-tools"
            init.extend(parse_module_list(t or "", "/etc/initramfs-tools/modules"))
        dracut_files = [("/etc/dracut.conf", h.read_text_or_none("/etc/dracut.conf"))]
        dracut_files += [(p, t) for p, t in self._read_dir_files(("/etc/dracut.conf.d", "/usr/lib/dracut/dracut.conf.d"), ".conf")]
        if any(t is not None for _, t in dracut_files) and tool == "unknown":
            tool = "dracut"
        for p, t in dracut_files:
            for n, line in enumerate((t or "").splitlines(), 1):
                s = line.split("#", 1)[0].strip()
                if re.match(r"^(add_drivers|force_drivers|drivers)\s*\+?=", s):
                    init.append(ConfigLine(p, n, s))
        mk = h.read_text_or_none("/etc/mkinitcpio.conf")
        mk_files = ([("/etc/mkinitcpio.conf", mk)] if mk is not None else []) + self._read_dir_files(
            ("/etc/mkinitcpio.conf.d",), ".conf"
        )
        if mk_files and tool == "unknown":
            tool = "mkinitcpio"
        for p, t in mk_files:
            for n, line in enumerate(t.splitlines(), 1):
                s = line.split("#", 1)[0].strip()
                if s.startswith("MODULES="):
                    init.append(ConfigLine(p, n, s))
        return EarlyLoadConfig(tuple(ml), tuple(init), tool)

    @fact
    def boot_config(self) -> BootConfig:
        h = self.host
        tools = tuple(t for t in BOOT_TOOLS if _exists_quiet(h, t))
        notes: list[str] = []
        # systemd-boot / kernel-install: /etc/kernel/cmdline is the source of truth
        kc = h.read_text_or_none("/etc/kernel/cmdline")
        # kernelstub (Pop!_OS)
        ks = h.read_text_or_none("/etc/kernelstub/configuration")
        grub_text = h.read_text_or_none("/etc/default/grub")
        if ks is not None and "/usr/bin/kernelstub" in tools:
            import json

            try:
                conf = json.loads(ks)
                opts = conf.get("user", {}).get("kernel_options", [])
                return BootConfig(
                    "kernelstub",
                    parse_cmdline(" ".join(map(str, opts)), "/etc/kernelstub/configuration"),
                    ("/etc/kernelstub/configuration",),
                    tools=tools,
                )
            except (ValueError, AttributeError):
                notes.append("/etc/kernelstub/configuration is not valid JSON")
        if grub_text is not None:
            files = ["/etc/default/grub"]
            try:
                env = parse_shell_assignments(grub_text)
                for p, t in self._read_dir_files(("/etc/default/grub.d",), ".cfg"):
                    files.append(p)
                    env = parse_shell_assignments(t, env)
            except ValueError as e:
                raise FactUnknown(
                    "bootloader configuration", f"/etc/default/grub does not parse: {e}", "sh -n /etc/default/grub"
                ) from e
            configured = " ".join(
                x for x in (env.get("GRUB_CMDLINE_LINUX", ""), env.get("GRUB_CMDLINE_LINUX_DEFAULT", "")) if x
            )
            generated = None
            gsrc = ""
            for cfg in GRUB_CFGS:
                try:
                    cfg_text = h.read_text_or_none(cfg)
                except PermissionError:
                    notes.append(f"{cfg} is not readable")
                    continue
                except NotCaptured:
                    continue
                if cfg_text is not None:
                    args = parse_grub_cfg_default_linux(cfg_text)
                    if args is not None:
                        generated = parse_cmdline(args, cfg)
                        gsrc = cfg
                    break
            next_cmdline = parse_cmdline(configured, " + ".join(files))
            if env.get("GRUB_ENABLE_BLSCFG") == "true":
                # BLS hosts (Fedora, RHEL): grub reads each kernel's own entry; grubby edits those
                entry = self._default_bls_entry()
                if entry is not None:
                    next_cmdline = parse_cmdline(entry.options, entry.path)
                    notes.append(f"BLS: the next boot's arguments come from {entry.path}, not from /etc/default/grub")
            return BootConfig(
                "grub",
                next_cmdline,
                tuple(files),
                generated=generated,
                generated_source=gsrc,
                tools=tools,
                notes=tuple(notes),
                grub_linux=env.get("GRUB_CMDLINE_LINUX", ""),
            )
        if kc is not None:
            return BootConfig("systemd-boot", parse_cmdline(kc, "/etc/kernel/cmdline"), ("/etc/kernel/cmdline",), tools=tools)
        raise FactUnknown(
            "bootloader configuration",
            "no /etc/default/grub, /etc/kernel/cmdline or kernelstub configuration on this host",
            "ls /etc/default/grub /etc/kernel/cmdline /boot/loader/entries",
        )

    # -- forecast facts -------------------------------------------------------
    def _per(self, key: str, fn: Callable[[], T]) -> T:
        """Cache a per-argument fact (FactUnknown included), like @fact does."""
        if key in self._cache:
            v = self._cache[key]
            if isinstance(v, BaseException):
                raise v
            return v  # type: ignore[no-any-return]
        try:
            v = fn()
        except (FactUnknown, NotCaptured) as e:
            self._cache[key] = e
            raise
        self._cache[key] = v
        return v

    def _text_or_none(self, fact_name: str, path: str, settle: str) -> str | None:
        try:
            return self.host.read_text_or_none(path)
        except PermissionError as e:
            raise FactUnknown(fact_name, f"{path} is not readable (permission denied)", settle) from e
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e

    @fact
    def iomem(self) -> tuple[IomemRange, ...]:
        rs = parse_iomem(self._need("/proc/iomem", "/proc/iomem", "sudo cat /proc/iomem"))
        if rs and all(r.start == 0 and r.end == 0 for r in rs):
            raise FactUnknown("/proc/iomem", "addresses hidden (read without root they are all zero)", "sudo cat /proc/iomem")
        return rs

    def pci_bars(self, address: str) -> tuple[PciBar, ...]:
        p = f"/sys/bus/pci/devices/{address}/resource"
        return self._per(f"pci_bars:{address}", lambda: parse_pci_resource(self._need(f"BARs of {address}", p, f"cat {p}")))

    def pci_config(self, address: str) -> bytes:
        p = f"/sys/bus/pci/devices/{address}/config"

        def read() -> bytes:
            try:
                return self.host.read_bytes(p)
            except FileNotFoundError as e:
                raise FactUnknown(f"config space of {address}", f"{p} does not exist", f"sudo lspci -vvv -s {address}") from e
            except (PermissionError, NotCaptured) as e:
                raise FactUnknown(f"config space of {address}", str(e), f"sudo lspci -vvv -s {address}") from e

        return self._per(f"pci_config:{address}", read)

    def reset_method(self, address: str) -> tuple[str, ...] | None:
        p = f"/sys/bus/pci/devices/{address}/reset_method"

        def read() -> tuple[str, ...] | None:
            t = self._text_or_none(f"reset methods of {address}", p, f"cat {p}")
            return None if t is None else tuple(t.split())

        return self._per(f"reset_method:{address}", read)

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
    def mounts(self) -> tuple[Mount, ...]:
        return parse_mounts(self._need("mounted filesystems", "/proc/self/mounts", "cat /proc/self/mounts"))

    def _class_links(self, cls: str, fact_name: str) -> dict[str, str]:
        import posixpath

        base = f"/sys/class/{cls}"
        try:
            names = self.host.listdir(base)
        except FileNotFoundError:
            return {}
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown(fact_name, str(e), f"ls -l {base}/") from e
        out = {}
        for n in names:
            try:
                t = self.host.readlink(f"{base}/{n}")
            except (OSError, NotCaptured):
                continue
            # class links are relative and point into /sys/devices, which has no symlinks on the way
            out[n] = posixpath.normpath(t if t.startswith("/") else posixpath.join(base, t))
        return out

    @fact
    def block_devices(self) -> dict[str, BlockDevice]:
        out: dict[str, BlockDevice] = {}
        for n, path in self._class_links("block", "block devices").items():
            slaves: tuple[str, ...] = ()
            dm = None
            if "/virtual/" in path:
                try:
                    slaves = tuple(self.host.listdir(f"/sys/class/block/{n}/slaves"))
                except (OSError, NotCaptured):
                    slaves = ()
                try:
                    t = self.host.read_text_or_none(f"/sys/class/block/{n}/dm/name")
                    dm = t.strip() if t else None
                except (OSError, NotCaptured):
                    dm = None
            out[n] = BlockDevice(n, path, slaves, dm)
        return out

    @fact
    def net_interfaces(self) -> dict[str, NetInterface]:
        out: dict[str, NetInterface] = {}
        for n, path in self._class_links("net", "network interfaces").items():
            lowers: tuple[str, ...] = ()
            if "/virtual/" in path:
                try:
                    lowers = tuple(x[len("lower_"):] for x in self.host.listdir(f"/sys/class/net/{n}") if x.startswith("lower_"))
                except (OSError, NotCaptured):
                    lowers = ()
            out[n] = NetInterface(n, path, lowers)
        return out

    @fact
    def default_route_ifaces(self) -> tuple[str, ...]:
        r4 = self._text_or_none("default route", "/proc/net/route", "ip route show default")
        r6 = self._text_or_none("default route", "/proc/net/ipv6_route", "ip -6 route show default")
        if r4 is None and r6 is None:
            raise FactUnknown("default route", "no /proc/net/route", "ip route show default")
        return parse_default_route_ifaces(r4, r6)

    @fact
    def routed_ifaces(self) -> tuple[str, ...]:
        r4 = self._text_or_none("configured interfaces", "/proc/net/route", "ip route show")
        r6 = self._text_or_none("configured interfaces", "/proc/net/ipv6_route", "ip -6 route show")
        if r4 is None and r6 is None:
            raise FactUnknown("configured interfaces", "no /proc/net/route", "ip route show")
        return parse_routed_ifaces(r4, r6)

    @fact
    def boot_entries(self) -> tuple[BootEntry, ...]:
        env: dict[str, str] = {}
        for p in ("/boot/grub2/grubenv", "/boot/grub/grubenv"):
            try:
                t = self.host.read_text_or_none(p)
            except (PermissionError, NotCaptured):
                t = None
            if t is not None:
                env = parse_grubenv(t)
                break
        out: list[BootEntry] = []
        for d in BLS_DIRS:
            try:
                names = self.host.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (PermissionError, NotCaptured) as e:
                raise FactUnknown("boot loader entries", str(e), f"sudo ls {d}") from e
            for n in names:
                if n.endswith(".conf"):
                    t = self._text_or_none("boot loader entries", f"{d}/{n}", f"sudo cat {d}/{n}")
                    if t is not None:
                        out.append(parse_bls_entry(t, f"{d}/{n}", env))
        return tuple(out)

    def _default_bls_entry(self) -> BootEntry | None:
        """The entry of the running kernel, else the newest one; None where there is none."""
        try:
            entries = self.boot_entries()
            rel = self.kernel_release()
        except (FactUnknown, NotCaptured):
            return None
        if not entries:
            return None
        for e in entries:
            if e.version == rel or e.path.endswith(f"-{rel}.conf"):
                return e
        return sorted(entries, key=lambda e: e.version)[-1]

    @fact
    def initramfs(self) -> InitramfsImage:
        rel = self.kernel_release()
        settle = f"lsinitramfs /boot/initrd.img-{rel} | grep vfio  (dracut: lsinitrd | grep vfio)"
        for tmpl in INITRAMFS_IMAGES:
            p = tmpl.format(release=rel)
            try:
                data = self.host.read_bytes(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError as e:
                raise FactUnknown("initramfs image", f"{p}: {e.strerror or 'not readable'}", settle) from e
            except NotCaptured as e:
                raise FactUnknown("initramfs image", str(e), settle) from e
            try:
                return parse_initramfs(data, p)
            except ValueError as e:
                raise FactUnknown("initramfs image", str(e), settle) from e
        raise FactUnknown("initramfs image", f"none of {', '.join(t.format(release=rel) for t in INITRAMFS_IMAGES)} exists", settle)

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

    # Option ROMs are read only on request (gpudoctor check --rom FILE / --read-rom): the CLI sets
    # these on the instance. rom_dumps: PCI address -> (file, bytes) of a dump; read_rom: read the
    # live host's sysfs `rom` (write 1, read, write 0; needs root).
    rom_dumps: dict[str, tuple[str, bytes]] = {}  # noqa: RUF012 - replaced per instance, never mutated
    read_rom: bool = False

    def option_rom(self, address: str) -> bytes:
        if address in self.rom_dumps:
            return self.rom_dumps[address][1]
        if not self.read_rom:
            return super().option_rom(address)
        from doctor.optionrom import read_live

        return self._per(f"option_rom:{address}", lambda: read_live(self.host, address))

    def _libvirt_xml(self) -> list[tuple[str, str]]:
        """(path, text) of each libvirt domain definition; read once for every fact built on them."""
        if "_libvirt_xml" in self._cache:
            return self._cache["_libvirt_xml"]  # type: ignore[no-any-return]
        d = "/etc/libvirt/qemu"
        settle = f"sudo cat {d}/*.xml"
        try:
            names = self.host.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown("libvirt domain definitions", str(e), settle) from e
        out = []
        for n in names:
            if n.endswith(".xml"):
                t = self._text_or_none("libvirt domain definitions", f"{d}/{n}", settle)
                if t is not None:
                    out.append((f"{d}/{n}", t))
        self._cache["_libvirt_xml"] = out
        return out

    @fact
    def boot_overrides(self) -> tuple[BootOverride, ...]:
        out: list[BootOverride] = []
        for d in OVERRIDE_SCRIPT_DIRS:
            try:
                names = sorted(self.host.listdir(d))
            except (FileNotFoundError, NotADirectoryError, PermissionError, NotCaptured):
                continue
            for n in names:
                t = self._text_or_skip(f"{d}/{n}")
                if t is not None:
                    out += parse_boot_overrides(t, f"{d}/{n}", "initramfs")
        for path, text in self._read_dir_files(UDEV_RULE_DIRS, ".rules"):
            out += parse_boot_overrides(text, path, "udev")
        # modprobe `install vfio-pci /path/script` (the Arch wiki's way) or an inline sh -c
        for ln in self.modprobe_config():
            if ln.command != "install":
                continue
            out += [BootOverride(o.address, ln.file, ln.lineno, "modprobe") for o in parse_boot_overrides(ln.rest, ln.file, "modprobe")]
            for tok in ln.rest.split():
                if tok.startswith("/") and not tok.startswith(("/sbin/modprobe", "/usr/sbin/modprobe", "/bin/", "/usr/bin/")):
                    t = self._text_or_skip(tok)
                    if t is not None:
                        out += parse_boot_overrides(t, tok, "modprobe")
        return tuple(out)

    def _text_or_skip(self, path: str) -> str | None:
        try:
            return self.host.read_text_or_none(path)
        except (PermissionError, NotCaptured, IsADirectoryError, UnicodeDecodeError):
            return None

    @fact
    def libvirt_hostdevs(self) -> tuple[LibvirtHostdev, ...]:
        out: list[LibvirtHostdev] = []
        for path, text in self._libvirt_xml():
            try:
                out.extend(parse_libvirt_hostdevs(text, path))
            except ValueError:
                continue  # a definition that does not parse names no device
        return tuple(out)

    @fact
    def libvirt_domains(self) -> tuple[LibvirtDomain, ...]:
        out: list[LibvirtDomain] = []
        for path, text in self._libvirt_xml():
            try:
                out.append(parse_libvirt_domain(text, path))
            except ValueError:
                continue
        return tuple(out)

    @fact
    def meminfo(self) -> dict[str, int]:
        return parse_meminfo(self._need("memory and hugepages", "/proc/meminfo", "cat /proc/meminfo"))

    def summary(self) -> HostSummary:
        s = super().summary()
        try:
            hn = self.host.read_text_or_none("/proc/sys/kernel/hostname")
            s.hostname = hn.strip() if hn else None
        except (PermissionError, NotCaptured):
            pass
        parts = []
        for a in ("sys_vendor", "product_name"):
            try:
                v = self.host.read_text_or_none(f"/sys/class/dmi/id/{a}")
            except (PermissionError, NotCaptured):
                v = None
            if v and v.strip():
                parts.append(v.strip())
        s.product = " ".join(parts) or None
        return s


def _exists_quiet(h: Host, path: str) -> bool:
    try:
        return h.exists(path)
    except NotCaptured:
        return False
