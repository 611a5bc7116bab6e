"""Parsers of recognised chunks: lspci, IOMMU group listings, dmesg, lsmod, lscpu, kvm-ok (pure)."""

from __future__ import annotations

import re

from doctor.datarecord import field, record
from doctor.facts import CpuInfo, normalize_pci_address, parse_lspci_nnk
from doctor.pasted.segment import _ADDR, _JOURNAL, _TS
from doctor.pasted.segment_re import keyword_lines

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


@record
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
    line: int = 0  # 0-based line of the device within its chunk


# a device record that starts inside a line (after a space), and the -k fields of a record
_DEV_INSIDE = re.compile(r"(?<=\s)(?=" + _ADDR + r" [A-Za-z][^:\[\n]*?(?:\[[0-9a-fA-F]{4}\])?: \S)")
_K_INSIDE = re.compile(r"\s+(?=(?:Subsystem|DeviceName|Kernel driver in use|Kernel modules): )")


def unflatten_lspci(text: str) -> tuple[str, list[int]]:
    """`lspci -nnk` flattened onto one line (a forum or chat that ate the newlines): each device record and
    each of its -k fields back on a line of its own. (text, the physical line of each line of it)."""
    out: list[str] = []
    where: list[int] = []
    for n, raw in enumerate(text.split("\n")):
        t = raw.strip()
        if raw and not raw[0].isspace() and _LSPCI_PLAIN.match(t) and (
                _DEV_INSIDE.search(t) or _K_INSIDE.search(t)):
            for rec in _DEV_INSIDE.split(t):
                head, *fields = _K_INSIDE.split(rec.strip())
                out += [head] + ["\t" + f for f in fields]
                where += [n] * (1 + len(fields))
        else:
            out.append(raw)
            where.append(n)
    return "\n".join(out), where


def parse_lspci_chunk(text: str) -> tuple[list[DevInfo], bool]:
    """(devices, shows drivers): any lspci flavour; -k/-v detected by its lines; a flattened paste is
    read as its lines (each device keeps the physical line it was on)."""
    text, where = unflatten_lspci(text)
    k_lines = bool(re.search(r"^\s+(?:Kernel driver in use|Kernel modules):", text, re.M))
    with_ids = {e.address: e for e in _safe_lspci(text)}
    out: list[DevInfo] = []
    for n, raw in enumerate(text.split("\n")):
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
        d = DevInfo(addr, line=where[n])
        if e is not None:
            d.class_code = int(e.class_id, 16) << 8
            d.vendor, d.device, d.name, d.revision, d.subsystem = e.vendor, e.device, e.name, e.revision, e.subsystem
            d.driver, d.modules = e.driver, e.modules
        else:
            cls = m.group("clsid") or _CLASS_NAMES.get(m.group("cls").strip().lower())
            d.class_code = int(cls, 16) << 8 if cls else None
            name = re.sub(r"\s*(?:\(rev [0-9a-fA-F]+\))?\s*(?:\(prog-if [^)]*\))?$", "", m.group("name"))
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
_DRIVER_SUFFIX = re.compile(r"\s*\(driver:\s*([\w.-]+)\)\s*$")
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
    # `IOMMU Group N: <lspci -nn line> (driver: X)` (one product's listing): the driver, when every device line has it
    dev_lines = [i for i, ln in enumerate(body) if not ln.startswith("\t")]
    suffixed = {body[i].split(" ", 1)[0] for i in dev_lines if _DRIVER_SUFFIX.search(body[i])}
    if suffixed:
        out_body: list[str] = []
        out_owner: list[str] = []
        for ln, g in zip(body, owner, strict=True):
            m = _DRIVER_SUFFIX.search(ln) if not ln.startswith("\t") else None
            if m:
                out_body += [ln[:m.start()], "\tKernel driver in use: " + m.group(1) if m.group(1) not in ("none", "-") else "\tKernel modules:"]
                out_owner += [g, g]
            else:
                out_body.append(ln)
                out_owner.append(g)
        body, owner = out_body, out_owner
    devs, k = parse_lspci_chunk("\n".join(body))
    if suffixed:  # a line without the suffix (cut off) leaves its driver unknown
        short = {normalize_pci_address(a) for a in suffixed if re.fullmatch(_ADDR, a)}
        for d in devs:
            if d.address not in short:
                d.driver, d.driver_known, d.modules_known = None, False, False
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


_ONE_GROUP_CMD = re.compile(r"/sys/kernel/iommu_groups/(\d+)/devices/?(?:\s|$)")
_BARE_ADDR = re.compile(r"(?<!\S)([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])(?!\S)")


def parse_group_ls(text: str, command: str = "") -> dict[str, list[str]]:
    """`ls [-l] /sys/kernel/iommu_groups/*/devices` output → groups: a `/sys/kernel/iommu_groups/N/devices:` header
    names the group of the entries under it; without one, the group is the one folder the command listed
    (`ls -l /sys/kernel/iommu_groups/13/devices/`). Entries are symlinks (`0000:01:00.0 -> ../../../../devices/pci...`)
    or bare addresses, several to a line."""
    groups: dict[str, list[str]] = {}
    m = _ONE_GROUP_CMD.search(command)
    cur: str | None = m.group(1) if m else None
    if cur is not None:
        groups[cur] = []
    for raw in text.split("\n"):
        s = raw.strip()
        m = re.match(r"^/sys/kernel/iommu_groups/(\d+)/devices/?:$", s)
        if m:
            cur = m.group(1)
            groups.setdefault(cur, [])
            continue
        if cur is None:
            continue
        m = re.search(r"\s(" + _ADDR + r") -> ", s)
        found = [m.group(1)] if m else _BARE_ADDR.findall(s) if not s.startswith(("l", "total")) else []
        for a in found:
            try:
                groups[cur].append(normalize_pci_address(a))
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
_JOURNAL_RE = re.compile(_JOURNAL)
_DMAR_TABLE = re.compile(r"DMAR: (?:Host address width|DRHD base)|DMAR-IR: .*under DRHD base")
_IVRS_TABLE = re.compile(r"AMD-Vi: (?:Found IOMMU|Using IVHD|IVRS)")


@record
class DmesgFacts:
    lines: list[str] = field(default_factory=list)
    full: bool = False  # an unfiltered log from the start of boot
    cmdline: str | None = None
    cmdline_line: int = 0  # 0-based line of the command line within the chunk
    kernel: str | None = None
    acpi_tables: set[str] = field(default_factory=set)
    table_listing: bool = False
    enumerated: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    boot_vga: set[str] = field(default_factory=set)
    hostnames: set[str] = field(default_factory=set)


# the words one of parse_dmesg's patterns needs: a line without any is only kept, not parsed
_BLANK = re.compile(r"^[ \t]*$", re.M)
_DMESG_WORDS = ("Linux version", "ommand line: ", "ACPI: ", "DMAR", "AMD-Vi", "] type ", "group", "vgaarb: ")


def parse_dmesg(text: str, command: str = "") -> DmesgFacts:
    """Kernel log lines (any timestamp form) → what they show (pure). The lines that matter are found by one
    search of the whole text (a log may hold 100,000 lines)."""
    f = DmesgFacts()
    grepped = bool(re.search(r"\bgrep\b|\|\s*(?:head|tail|less)|--grep|-g\b", command))
    starts = False
    raw_lines = text.split("\n")
    # a chunk from segment() holds no blank line: the copy without blanks is only needed for other callers
    f.lines = [ln for ln in raw_lines if ln.strip()] if _BLANK.search(text.rstrip("\n")) else raw_lines[:len(raw_lines) - (raw_lines[-1] == "")]
    for jm in re.finditer(_JOURNAL, text, re.M):
        f.hostnames.add(jm.group("host"))
    for i in keyword_lines(text, raw_lines, _DMESG_WORDS, lower=False):
        msg = _DMESG_STRIP.sub("", raw_lines[i], count=1)
        n = i  # 0-based line within the chunk, as before
        if "Linux version" in msg:
            m = _LINUX_VERSION.search(msg)
            if m:
                f.kernel = m.group(1)
                starts = True
        m = _CMDLINE_LOG.search(msg) if "ommand line: " in msg else None
        if m and f.cmdline is None:
            f.cmdline, f.cmdline_line = m.group(1).strip(), n
        m = _ACPI_TABLE.search(msg) if "ACPI: " in msg else None
        if m:
            f.table_listing = True
            f.acpi_tables.add(m.group(1))
        if "DMAR" in msg and _DMAR_TABLE.search(msg):
            f.acpi_tables.add("DMAR")
        if "AMD-Vi" in msg and _IVRS_TABLE.search(msg):
            f.acpi_tables.add("IVRS")
        m = _PCI_ENUM.search(msg) if "] type " in msg else None
        if m:
            try:
                f.enumerated[normalize_pci_address(m.group(1))] = (m.group(2), m.group(3), int(m.group(4), 16))
            except ValueError:
                pass
        m = _ADD_GROUP.search(msg) if "group" in msg else None
        if m:
            addr, g = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            try:
                f.groups.setdefault(g, []).append(normalize_pci_address(addr))
            except ValueError:
                pass
        m = _BOOT_VGA.search(msg) if "vgaarb: " in msg else None
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

