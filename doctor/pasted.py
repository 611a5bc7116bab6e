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

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from doctor.errors import BadInput, FactUnknown
from doctor.explain import KB, Match, find_errors
from doctor.facts import (
    PCI_ADDR_RE,
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
    parse_lspci_nnk,
    parse_modprobe,
    parse_os_release,
    parse_shell_assignments,
)
from doctor.mirror import Entry, NotRegular, describe_mode, open_regular, read_fd, walk
from doctor.model import Result, SourceInfo, Status

if TYPE_CHECKING:
    from doctor.runner import Report

MAX_FILE_BYTES = 8 * 1024 * 1024  # per file: head 6 MiB + tail 2 MiB beyond this
_HEAD = 6 * 1024 * 1024
_TAIL = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_LINE = 4096
MAX_FILES = 500

DRIVER_UNKNOWN = "unknown: not in the evidence"

# ---------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class InputText:
    path: str
    text: str
    notes: tuple[str, ...] = ()
    error: str = ""  # set when the file could not be used at all


def decode_bytes(data: bytes) -> tuple[str, list[str]]:
    """Text of pasted bytes; notes say what was odd (never raises)."""
    notes: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), ["UTF-16 text"]
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # mixed encodings: decode line by line, latin-1 where UTF-8 fails
        parts = []
        bad = 0
        for ln in data.split(b"\n"):
            try:
                parts.append(ln.decode("utf-8"))
            except UnicodeDecodeError:
                bad += 1
                parts.append(ln.decode("latin-1"))
        text = "\n".join(parts)
        notes.append(f"{bad} line(s) not UTF-8, read as Latin-1")
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text, notes


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def looks_binary(data: bytes) -> bool:
    sample = data[:65536]
    if not sample:
        return False
    if b"\x00" in sample and sample[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return True
    ctrl = sum(1 for b in sample if b < 9 or 13 < b < 32 and b != 27)
    return ctrl / len(sample) > 0.05


def read_input(path: str, dir_fd: int | None = None, shown: str = "") -> InputText:
    """One pasted file: a path named on the command line (the user's own link is followed), or
    a name in the folder dir_fd (never followed). Only a regular file is opened, reads are
    bounded."""
    shown = shown or path
    try:
        fd = open_regular(path, dir_fd=dir_fd, follow=dir_fd is None)
    except FileNotFoundError as e:
        raise BadInput(f"--from {shown}: no such file or folder") from e
    except IsADirectoryError as e:
        raise BadInput(f"--from {shown}: is a folder") from e
    except NotRegular as e:
        raise BadInput(f"--from {shown}: {e.what}, not a regular file: not read") from e
    except PermissionError as e:
        raise BadInput(f"--from {shown}: not readable (permission denied)") from e
    except OSError as e:
        raise BadInput(f"--from {shown}: cannot be read ({e.strerror or e})") from e
    try:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            head = read_fd(fd, _HEAD - 1)
            os.lseek(fd, max(size - _TAIL, _HEAD), os.SEEK_SET)
            tail = read_fd(fd, _TAIL - 1)
            cut = [f"{size} bytes: only the first {_HEAD} and the last {_TAIL} bytes were read"]
            data = head.rsplit(b"\n", 1)[0] + b"\n" + tail.split(b"\n", 1)[-1]
        else:
            data = read_fd(fd, MAX_FILE_BYTES)
            cut = []
    except OSError as e:
        raise BadInput(f"--from {shown}: cannot be read ({e.strerror or e})") from e
    finally:
        os.close(fd)
    return _input_text(shown, data, cut)


def _input_text(path: str, data: bytes, cut: list[str]) -> InputText:
    if not data.strip():
        return InputText(path, "", tuple(cut), "empty file")
    if looks_binary(data):
        return InputText(path, "", tuple(cut), "binary data (NUL or control bytes), not pasted text: skipped")
    text, notes = decode_bytes(data)
    if not text.endswith("\n"):
        notes.append("last line has no newline (cut off?)")
    long_lines = 0
    if any(len(ln) > MAX_LINE for ln in text.split("\n")):
        out = []
        for ln in text.split("\n"):
            if len(ln) > MAX_LINE:
                long_lines += 1
                ln = ln[:MAX_LINE]
            out.append(ln)
        text = "\n".join(out)
        notes.append(f"{long_lines} line(s) longer than {MAX_LINE} characters were cut")
    return InputText(path, text, tuple(cut + notes))


@dataclass(frozen=True)
class Found:
    """One input to read: `read()` opens it (only while its folder is being walked), or
    `skip` says why it is listed and not read (a link inside a folder, a FIFO)."""

    path: str
    read: Callable[[], InputText] | None
    skip: str = ""


def expand_paths(paths: Iterable[str]) -> Iterator[Found]:
    """The files named, and every file inside the folders named (dot names left out). A
    folder is walked by descriptor: a link inside it is listed and never followed, a FIFO,
    device or socket is listed and never opened."""
    count = 0
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError as e:
            raise BadInput(f"--from {p}: no such file or folder") from e
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        if not stat.S_ISDIR(st.st_mode):
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"--from {p}: {describe_mode(st.st_mode)}, not a regular file: not read")
            count += 1
            yield Found(p, lambda p=p: read_input(p))  # type: ignore[misc]
            continue
        try:
            top = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        found = 0
        try:
            for ent in walk(top, skip=lambda n: n.startswith("."), max_depth=32):
                shown = os.path.join(p, *ent.parts)
                mode = ent.st.st_mode
                if stat.S_ISDIR(mode):
                    continue
                found += 1
                count += 1
                if count > MAX_FILES:
                    raise BadInput(f"--from: more than {MAX_FILES} files; point it at the pasted outputs only")
                if stat.S_ISREG(mode):
                    yield Found(shown, lambda n=ent.name, d=ent.dir_fd, s=shown: read_input(n, d, s))  # type: ignore[misc]
                elif stat.S_ISLNK(mode):
                    yield Found(shown, None, f"{describe_mode(mode)} (to {_link(ent)!r}): not followed")
                else:
                    yield Found(shown, None, f"{describe_mode(mode)}: not read")
        except OSError as e:
            raise BadInput(f"--from {p}: cannot be read ({e.strerror or e})") from e
        finally:
            os.close(top)
        if not found:
            raise BadInput(f"--from {p}: the folder holds no files")


def _link(ent: Entry) -> str:
    try:
        return os.readlink(ent.name, dir_fd=ent.dir_fd)[:200]
    except OSError:
        return "?"


# ---------------------------------------------------------------------------
# recognising: one kind per line, then chunks of consecutive lines


_ADDR = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]"
_TS = (
    r"^(?:\[\s*\d+\.\d+\]|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]"
    r"|<\d>\[\s*\d+\.\d+\])\s?"
)
_JOURNAL = r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) (?P<host>\S+) kernel: "
_KERNEL_PREFIX = (
    r"^(?:DMAR|DMAR-IR|AMD-Vi|iommu|pci \S+:|pci_bus|pcieport|vfio[-_]pci|vfio|efifb|simplefb|simpledrm|vesafb|vgaarb|"
    r"ACPI|kvm|kvm_intel|kvm_amd|nvidia|NVRM|nouveau|amdgpu|radeon|i915|Command line|Kernel command line|Linux version|"
    r"PCI-DMA|perf/amd_iommu|x86/cpu|Unknown kernel command line|Booting paravirtualized|fbcon|\[drm\]|snd_hda_intel|"
    r"xhci_hcd|blacklisting initcall|BAR \d|Console)[:\s\]]"
)

LINE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("fence", re.compile(r"^\s*(?:```|~~~)")),
    ("group", re.compile(r"^\s*IOMMU [Gg]roup\s+\d+\b")),
    ("group_find", re.compile(r"^/sys/kernel/iommu_groups/\d+/devices/" + _ADDR + r"/?$")),
    ("group_ls_header", re.compile(r"^/sys/kernel/iommu_groups/\d+/devices/?:\s*$")),
    ("group_ls_entry", re.compile(r"^l[rwxst-]{9}\S*\s+\d+\s.*\s" + _ADDR + r" -> \S*devices/pci")),
    ("groups_absent", re.compile(r"^(?:ls|find): (?:cannot access )?'?/sys/kernel/iommu_groups[^:]*'?: No such file")),
    ("dmesg", re.compile(_TS)),
    ("dmesg", re.compile(_JOURNAL)),
    ("lspci", re.compile(r"^" + _ADDR + r" [^:\[]+(?:\[[0-9a-fA-F]{4}\])?: \S")),
    ("cmdline", re.compile(r"^(?:BOOT_IMAGE=|initrd=\S+ )\S*")),
    ("grub", re.compile(r"^\s*(?:export\s+)?GRUB_[A-Z0-9_]+=")),
    ("modprobe", re.compile(r"^(?:\S+\.conf:)?\s*(?:options|softdep|blacklist|install|alias|remove)\s+[\w-]+")),
    ("initramfs", re.compile(r"^\s*(?:MODULES|HOOKS|BINARIES|FILES)=\(|^\s*(?:add_drivers|force_drivers|drivers)\s*\+?=")),
    ("lsmod", re.compile(r"^Module\s+Size\s+Used by")),
    ("proc_modules", re.compile(r"^[a-z0-9_]+ \d+ \d+ \S+ (?:Live|Loading|Unloading) 0x[0-9a-f]+")),
    ("lsmod", re.compile(r"^[a-z0-9_]+\s+\d+\s+\d+(?:\s+[\w,\[\]-]+)?\s*$")),
    ("cpuinfo", re.compile(
        r"^(?:processor|vendor_id|cpu family|model|model name|stepping|microcode|cpu MHz|cache size|physical id|"
        r"siblings|core id|cpu cores|apicid|initial apicid|fpu|fpu_exception|cpuid level|wp|flags|vmx flags|bugs|"
        r"bogomips|TLB size|clflush size|cache_alignment|address sizes|power management)\s*:")),
    ("lscpu", re.compile(
        r"^\s*(?:Architecture|CPU op-mode\(s\)|Address sizes|Byte Order|CPU\(s\)|On-line CPU\(s\) list|Vendor ID|"
        r"Model name|CPU family|Model|Thread\(s\) per core|Core\(s\) per (?:socket|cluster)|Socket\(s\)|Stepping|"
        r"CPU(?:\(s\))? (?:max|min|scaling) MHz|BogoMIPS|Flags|Virtualization|Virtualization features|Caches \(sum of all\)|"
        r"L1d|L1i|L2|L3|NUMA node\(s\)|NUMA node\d+ CPU\(s\)|Vulnerabilit(?:y|ies).*|Hypervisor vendor|Virtualization type|"
        r"Frequency boost|BIOS Vendor ID|BIOS Model name)\s*:")),
    ("kvm_ok", re.compile(r"^(?:INFO|HINT): |^KVM acceleration can")),
    ("dev_kvm", re.compile(r"^c[rwx-]{9}\S*\s.*\s/dev/kvm\s*$|^ls: cannot access '?/dev/kvm'?: No such file")),
    ("os_release", re.compile(r"^(?:PRETTY_NAME|NAME|VERSION|VERSION_ID|VERSION_CODENAME|ID|ID_LIKE|BUILD_ID)=")),
    ("uname", re.compile(r"^Linux \S+ \d+\.\d+\S* #\S+ .*(?:x86_64|aarch64|GNU/Linux)\s*$")),
    ("error", re.compile(r"^(?:\S*qemu-system-\w+|qemu-kvm|qemu|error|internal error|libvirt|virsh|kvm)\S*:? ", re.I)),
    ("error", re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d+Z? \S*(?:qemu|libvirt)")),
    ("dmesg", re.compile(_KERNEL_PREFIX)),
)

_PROMPT = re.compile(
    r"^(?:\S*[@:]\S*)?\s*[$#%>]\s*(?:sudo\s+)?(?P<cmd>(?:lspci|dmesg|journalctl|cat|grep|ls|find|lsmod|lscpu|kvm-ok|"
    r"for|shopt|uname|virsh|qemu\S*|echo|modprobe|egrep|sh|bash|\./\S+|lsiommu|iommu)\b.*)$"
)
_BARE_CMD = re.compile(
    r"^(?:sudo\s+)?(?P<cmd>(?:lspci|dmesg|journalctl|lsmod|lscpu|kvm-ok|uname|lsiommu)(?:\s.*)?|"
    r"(?:cat|grep|egrep|find|ls)\s+.*(?:/proc/|/sys/|/etc/|/dev/|dmesg).*|for g in .*|shopt -s nullglob)$"
)


def classify_line(line: str) -> str:
    """The kind of one pasted line, from its content alone ("" if none)."""
    s = line.rstrip()
    if not s.strip():
        return "blank"
    for kind, rx in LINE_PATTERNS:
        if rx.search(s):
            return kind
    st = s.strip()
    if _PROMPT.match(st) or _BARE_CMD.match(st):
        return "command"
    if any(e.pattern.search(s) for e in KB):
        return "error"
    if _looks_cmdline(st):
        return "cmdline"
    return ""


_ARG = re.compile(r'^[A-Za-z_][\w.\-]*(?:=(?:"[^"]*"|\S*))?$')


def _looks_cmdline(s: str) -> bool:
    toks = s.split()
    if len(toks) < 2 or len(toks) > 200:
        return False
    if not all(_ARG.match(t) for t in toks):
        return False
    return any(t.startswith(("root=", "BOOT_IMAGE=", "intel_iommu=", "amd_iommu=", "iommu=", "vfio-pci.ids=", "vfio_pci.ids="))
               for t in toks) and any("=" in t for t in toks)


@dataclass(frozen=True)
class Chunk:
    kind: str
    file: str
    start: int  # 1-based line numbers
    end: int
    lines: tuple[str, ...]
    command: str = ""  # the command line pasted just before it, if any

    @property
    def where(self) -> str:
        return f"{self.file}:{self.start}" + (f"-{self.end}" if self.end != self.start else "")

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


KIND_NAMES = {
    "lspci": "lspci",
    "group": "IOMMU group listing",
    "group_find": "IOMMU group links (find /sys/kernel/iommu_groups)",
    "group_ls": "IOMMU group links (ls -l /sys/kernel/iommu_groups/*/devices)",
    "groups_absent": "no /sys/kernel/iommu_groups (ls/find error)",
    "dmesg": "kernel log (dmesg)",
    "cmdline": "kernel command line (/proc/cmdline)",
    "grub": "/etc/default/grub",
    "modprobe": "modprobe.d configuration",
    "initramfs": "initramfs configuration (mkinitcpio/dracut)",
    "lsmod": "lsmod",
    "proc_modules": "/proc/modules",
    "cpuinfo": "/proc/cpuinfo",
    "lscpu": "lscpu",
    "kvm_ok": "kvm-ok",
    "dev_kvm": "ls -l /dev/kvm",
    "os_release": "/etc/os-release",
    "uname": "uname -a",
    "error": "QEMU / libvirt error",
    "command": "shell command",
    "unrecognised": "not recognised",
}

# kinds whose indented (or following, for groups) lines continue the chunk
_CONTINUES = {"lspci", "group", "group_ls", "error", "dmesg"}
# comment lines (#...) belong to these file kinds
_COMMENTED = {"grub", "modprobe", "initramfs"}


def segment(text: str, file: str = "<text>") -> list[Chunk]:
    """Cut pasted text into chunks of one recognised kind each (pure)."""
    chunks: list[Chunk] = []
    cur_kind = ""
    cur: list[str] = []
    start = 0
    last_cmd = ""
    cmd_for_chunk = ""

    def close(end: int) -> None:
        nonlocal cur, cur_kind, cmd_for_chunk
        if cur and cur_kind not in ("", "blank", "fence", "command"):
            chunks.append(Chunk(cur_kind, file, start, end, tuple(cur), cmd_for_chunk))
        elif cur and cur_kind == "":
            chunks.append(Chunk("unrecognised", file, start, end, tuple(cur), cmd_for_chunk))
        cur = []
        cur_kind = ""

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip()
        k = classify_line(line)
        if k in ("group_ls_header", "group_ls_entry"):
            k = "group_ls"
        if k == "blank" or k == "fence":
            # a blank line ends a chunk, except inside an IOMMU group listing (blocks per group)
            if cur_kind != "group":
                close(n - 1)
            continue
        if k == "command":
            close(n - 1)
            last_cmd = line.strip()
            continue
        indented = line[:1] in (" ", "\t")
        if cur_kind in _CONTINUES and indented and k in ("", "lspci", "error", "dmesg", "lscpu", "cpuinfo"):
            cur.append(line)
            continue
        if cur_kind == "group" and k == "lspci":
            cur.append(line)
            continue
        if cur_kind in _COMMENTED and line.lstrip().startswith("#"):
            cur.append(line)
            continue
        if cur_kind == "error" and k == "" and not indented:
            # multi-line QEMU errors ("Please ensure all devices ...") continue the error
            cur.append(line)
            continue
        if k == "" and line.lstrip().startswith("#") and not cur_kind:
            k = "comment"
        if k == "comment":
            if cur_kind == "":
                close(n - 1)
            continue
        if k != cur_kind or not cur:
            close(n - 1)
            cur_kind = k
            start = n
            cmd_for_chunk = last_cmd
            last_cmd = ""
        cur.append(line)
    close(len(lines))
    # merge neighbours of one kind separated only by blank lines
    merged: list[Chunk] = []
    for c in chunks:
        if merged and merged[-1].kind == c.kind and merged[-1].file == c.file and not c.command and c.kind != "unrecognised":
            p = merged[-1]
            merged[-1] = Chunk(p.kind, p.file, p.start, c.end, p.lines + c.lines, p.command)
        else:
            merged.append(c)
    return merged


# ---------------------------------------------------------------------------
# parsers of recognised chunks (pure)

_CLASS_NAMES = {
    "host bridge": "0600", "isa bridge": "0601", "pci bridge": "0604", "vga compatible controller": "0300",
    "3d controller": "0302", "display controller": "0380", "audio device": "0403",
    "multimedia audio controller": "0401", "usb controller": "0c03", "serial bus controller": "0c80",
    "smbus": "0c05", "sata controller": "0106", "non-volatile memory controller": "0108",
    "ethernet controller": "0200", "network controller": "0280", "signal processing controller": "1180",
    "communication controller": "0780", "encryption controller": "1080", "system peripheral": "0880",
    "ide interface": "0101", "raid bus controller": "0104", "memory controller": "0580",
    "ram memory": "0500", "non-essential instrumentation [1300]": "1300", "usb controller [0c03]": "0c03",
}
_LSPCI_PLAIN = re.compile(
    r"^(?P<addr>" + _ADDR + r")\s+(?P<cls>[^:\[]+?)(?:\s*\[(?P<clsid>[0-9a-fA-F]{4})\])?:\s*(?P<name>.*?)\s*$"
)


@dataclass
class DevInfo:
    address: str
    class_code: int | None = None
    vendor: str | None = None
    device: str | None = None
    name: str | None = None
    revision: str | None = None
    subsystem: str | None = None
    driver: str | None = None
    driver_known: bool = False
    modules: tuple[str, ...] = ()
    modules_known: bool = False
    source: str = ""


def parse_lspci_chunk(text: str) -> tuple[list[DevInfo], bool]:
    """(devices, shows drivers): any lspci flavour; -k/-v detected by its lines."""
    k_lines = bool(re.search(r"^\s+(?:Kernel driver in use|Kernel modules):", text, re.M))
    with_ids = {e.address: e for e in _safe_lspci(text)}
    out: list[DevInfo] = []
    for raw in text.split("\n"):
        if not raw or raw[0].isspace():
            continue
        m = _LSPCI_PLAIN.match(raw.strip())
        if not m:
            continue
        try:
            addr = normalize_pci_address(m.group("addr"))
        except ValueError:
            continue
        e = with_ids.get(addr)
        d = DevInfo(addr)
        if e is not None:
            d.class_code = int(e.class_id, 16) << 8
            d.vendor, d.device, d.name, d.revision, d.subsystem = e.vendor, e.device, e.name, e.revision, e.subsystem
            d.driver, d.modules = e.driver, e.modules
        else:
            cls = m.group("clsid") or _CLASS_NAMES.get(m.group("cls").strip().lower())
            d.class_code = int(cls, 16) << 8 if cls else None
            name = re.sub(r"\s*\(rev [0-9a-fA-F]+\)$", "", m.group("name"))
            d.name = name
        if k_lines:
            d.driver_known = d.modules_known = True
        out.append(d)
    if k_lines:
        # drivers of devices without [ven:dev] ids: read the -k lines ourselves
        cur: DevInfo | None = None
        by = {d.address: d for d in out}
        for raw in text.split("\n"):
            if raw and not raw[0].isspace():
                m = _LSPCI_PLAIN.match(raw.strip())
                cur = None
                if m:
                    try:
                        cur = by.get(normalize_pci_address(m.group("addr")))
                    except ValueError:
                        cur = None
            elif cur is not None and cur.vendor is None:
                s = raw.strip()
                if s.startswith("Kernel driver in use:"):
                    cur.driver = s.split(":", 1)[1].strip() or None
                elif s.startswith("Kernel modules:"):
                    cur.modules = tuple(x.strip() for x in s.split(":", 1)[1].split(",") if x.strip())
    return out, k_lines


def _safe_lspci(text: str) -> list:  # type: ignore[type-arg]
    try:
        return parse_lspci_nnk(text)
    except (ValueError, TypeError):
        return []


_LS_IOMMU = re.compile(r"^(" + _ADDR + r" [^:\[]+\[[0-9a-fA-F]{4})\](?!:)")
_GROUP_HDR = re.compile(r"^\s*IOMMU [Gg]roup\s+(\d+)\s*:?\s*(.*)$")


def parse_group_listing(text: str) -> tuple[dict[str, list[str]], list[DevInfo], bool]:
    """`IOMMU Group N:` blocks or `IOMMU Group N 01:00.0 ...` lines →
    (groups, devices with what their lspci lines say, shows drivers)."""
    groups: dict[str, list[str]] = {}
    body: list[str] = []
    owner: list[str] = []
    cur: str | None = None
    for raw in text.split("\n"):
        m = _GROUP_HDR.match(raw)
        if m:
            cur = m.group(1)
            groups.setdefault(cur, [])
            rest = m.group(2).strip()
            if rest:
                body.append(_LS_IOMMU.sub(r"\1]:", rest, count=1))
                owner.append(cur)
            continue
        if cur is None or not raw.strip():
            continue
        s = raw.strip()
        if re.match(_ADDR + r"\s", s):
            body.append(_LS_IOMMU.sub(r"\1]:", s, count=1))
            owner.append(cur)
        elif raw[:1].isspace() or s.startswith(("Kernel driver", "Kernel modules", "Subsystem")):
            body.append("\t" + s)
            owner.append(cur)
    devs, k = parse_lspci_chunk("\n".join(body))
    addr_group: dict[str, str] = {}
    for line, g in zip(body, owner, strict=True):
        m = re.match(r"(" + _ADDR + r")\s", line)
        if m:
            try:
                addr_group[normalize_pci_address(m.group(1))] = g
            except ValueError:
                pass
    for a, g in addr_group.items():
        groups.setdefault(g, []).append(a)
    return {g: sorted(set(v)) for g, v in groups.items()}, devs, k


def parse_group_ls(text: str) -> dict[str, list[str]]:
    """`ls -l /sys/kernel/iommu_groups/*/devices` output → groups."""
    groups: dict[str, list[str]] = {}
    cur: str | None = None
    for raw in text.split("\n"):
        s = raw.strip()
        m = re.match(r"^/sys/kernel/iommu_groups/(\d+)/devices/?:$", s)
        if m:
            cur = m.group(1)
            groups.setdefault(cur, [])
            continue
        m = re.search(r"\s(" + _ADDR + r") -> ", s)
        if m and cur is not None:
            try:
                groups[cur].append(normalize_pci_address(m.group(1)))
            except ValueError:
                pass
    return groups


_DMESG_STRIP = re.compile(_TS + "|" + _JOURNAL)
_PCI_ENUM = re.compile(r"pci (" + _ADDR + r"): \[([0-9a-f]{4}):([0-9a-f]{4})\] type \d+ class 0x([0-9a-f]{6})")
_ADD_GROUP = re.compile(r"(?:pci (" + _ADDR + r"): Adding to iommu group (\d+)|iommu: Adding device (" + _ADDR + r") to group (\d+))")
_BOOT_VGA = re.compile(r"(" + _ADDR + r"): vgaarb: (?:setting as boot VGA device|Boot video device)")
_ACPI_TABLE = re.compile(r"ACPI: ([A-Z0-9]{4}) 0x[0-9A-F]+ ")
_CMDLINE_LOG = re.compile(r"(?:Kernel command line|Command line): (.*)$")
_LINUX_VERSION = re.compile(r"Linux version (\S+)")


@dataclass
class DmesgFacts:
    lines: list[str] = field(default_factory=list)
    full: bool = False  # an unfiltered log from the start of boot
    cmdline: str | None = None
    kernel: str | None = None
    acpi_tables: set[str] = field(default_factory=set)
    table_listing: bool = False
    enumerated: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    boot_vga: set[str] = field(default_factory=set)
    hostnames: set[str] = field(default_factory=set)


def parse_dmesg(text: str, command: str = "") -> DmesgFacts:
    """Kernel log lines (any timestamp form) → what they show (pure)."""
    f = DmesgFacts()
    grepped = bool(re.search(r"\bgrep\b|\|\s*(?:head|tail|less)|--grep|-g\b", command))
    starts = False
    for raw in text.split("\n"):
        if not raw.strip():
            continue
        f.lines.append(raw)
        jm = re.match(_JOURNAL, raw)
        if jm:
            f.hostnames.add(jm.group("host"))
        msg = _DMESG_STRIP.sub("", raw, count=1)
        if "Linux version" in msg:
            m = _LINUX_VERSION.search(msg)
            if m:
                f.kernel = m.group(1)
                starts = True
        m = _CMDLINE_LOG.search(msg)
        if m and f.cmdline is None:
            f.cmdline = m.group(1).strip()
        m = _ACPI_TABLE.search(msg)
        if m:
            f.table_listing = True
            f.acpi_tables.add(m.group(1))
        if re.search(r"DMAR: (?:Host address width|DRHD base)", msg):
            f.acpi_tables.add("DMAR")
        if re.search(r"AMD-Vi: (?:Found IOMMU|Using IVHD|IVRS)", msg):
            f.acpi_tables.add("IVRS")
        m = _PCI_ENUM.search(msg)
        if m:
            try:
                f.enumerated[normalize_pci_address(m.group(1))] = (m.group(2), m.group(3), int(m.group(4), 16))
            except ValueError:
                pass
        m = _ADD_GROUP.search(msg)
        if m:
            addr, g = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            try:
                f.groups.setdefault(g, []).append(normalize_pci_address(addr))
            except ValueError:
                pass
        m = _BOOT_VGA.search(msg)
        if m:
            try:
                f.boot_vga.add(normalize_pci_address(m.group(1)))
            except ValueError:
                pass
    f.full = starts and not grepped and len(f.lines) >= 100
    return f


def parse_lsmod(text: str) -> tuple[frozenset[str], bool]:
    """(module names, complete): complete when the lsmod header or many
    /proc/modules lines show it was not filtered."""
    names = set()
    header = False
    for raw in text.split("\n"):
        s = raw.strip()
        if re.match(r"^Module\s+Size\s+Used by", s):
            header = True
            continue
        m = re.match(r"^([a-z0-9_]+)\s+\d+\s+\d+", s)
        if m:
            names.add(m.group(1))
    return frozenset(names), header


def parse_lscpu(text: str) -> CpuInfo:
    kv: dict[str, str] = {}
    for raw in text.split("\n"):
        k, sep, v = raw.partition(":")
        if sep:
            kv.setdefault(k.strip(), v.strip())
    vendor = kv.get("Vendor ID", "")
    flags = frozenset(kv.get("Flags", "").split())
    if not vendor and not flags:
        raise ValueError("no Vendor ID or Flags line")
    try:
        count = int(kv.get("CPU(s)", "1"))
    except ValueError:
        count = 1
    return CpuInfo(vendor or "unknown", kv.get("Model name", "unknown") or "unknown", flags, max(count, 1))


def parse_kvm_ok(text: str) -> tuple[bool | None, list[str]]:
    """(/dev/kvm exists, notable lines)."""
    exists: bool | None = None
    notes = []
    for raw in text.split("\n"):
        s = raw.strip()
        if "/dev/kvm exists" in s:
            exists = True
        elif "/dev/kvm does not exist" in s:
            exists = False
        if s:
            notes.append(s)
    return exists, notes


# ---------------------------------------------------------------------------
# evidence → facts


@dataclass
class Evidence_:
    """Everything recognised in the inputs, before it becomes facts."""

    inputs: list[InputText] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)


def load_inputs(paths: Iterable[str]) -> Evidence_:
    ev = Evidence_()
    total = 0
    for f in expand_paths(paths):
        if f.read is None:
            ev.inputs.append(InputText(f.path, "", (), f.skip))
            continue
        if total > MAX_TOTAL_BYTES:
            ev.inputs.append(InputText(f.path, "", (), f"skipped: the inputs exceed {MAX_TOTAL_BYTES} bytes in all"))
            continue
        it = f.read()
        total += len(it.text)
        if total > MAX_TOTAL_BYTES:
            ev.inputs.append(InputText(f.path, "", (), f"skipped: the inputs exceed {MAX_TOTAL_BYTES} bytes in all"))
            continue
        ev.inputs.append(it)
        if it.text:
            ev.chunks.extend(segment(it.text, f.path))
    return ev


def evidence_from_text(text: str, name: str = "<text>") -> Evidence_:
    ev = Evidence_()
    ev.inputs.append(InputText(name, text))
    ev.chunks.extend(segment(text, name))
    return ev


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

    # one redactor for the whole document: the ties are learned from before anything is replaced
    red = make_redactor(run.report, redact, _strings(run.ties))  # type: ignore[arg-type]
    doc = base_json(run.report, redact, red)  # type: ignore[arg-type]
    doc["errors_in_evidence"] = [_redact_obj(t, red) for t in run.ties]
    return doc


def _strings(o) -> list[str]:  # type: ignore[no-untyped-def]
    if isinstance(o, str):
        return [o]
    if isinstance(o, list | tuple):
        return [s for x in o for s in _strings(x)]
    if isinstance(o, dict):
        return [s for v in o.values() for s in _strings(v)]
    return []


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

    red = make_redactor(run.report, redact, _strings(run.ties))  # type: ignore[arg-type]
    src = run.report.source  # type: ignore[attr-defined]
    console.print("[bold]Evidence[/bold] (pasted; verdicts decided only from these inputs):")
    for k, v in src.details.items():
        if k.startswith("input ") or k == "gpus checked":
            console.print(f"  {escape(k)}: {escape(red.text(v))}")
    base(run.report, console, verbose=verbose, redact=redact, red=red)  # type: ignore[arg-type]
    if run.ties:
        console.print()
        console.print("[bold]Errors in the evidence[/bold]")
        for t in run.ties:
            console.print(f"  [bold]{escape(str(t['title']))}[/bold] ({escape(str(t['where']))}): {escape(red.text(str(t['seen'])))}")
            for c in t["causes"]:  # type: ignore[attr-defined]
                console.print(f"    - {escape(red.text(c['cause']))}: {escape(red.text(c['verdict']))}")


__all__ = [
    "PCI_ADDR_RE",
    "PastedFacts",
    "FilledFacts",
    "classify_line",
    "segment",
    "load_pasted",
    "run_pasted",
]


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
