"""Recognising pasted text: one kind per line, then chunks of consecutive lines (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property

from doctor.datarecord import field, record
from doctor.explain import KB
from doctor.pasted.forms import rewrite_group_line, unwrap
from doctor.pasted.read import MAX_TOTAL_BYTES, InputText, expand_paths
from doctor.pasted.segment_re import _ADDR, _JOURNAL, _TS, TS_RX

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
    ("groups_absent", re.compile(r"^(?:ls|find): (?:cannot access )?'?/sys/kernel/iommu_groups[^:]*'?: No such file"
                                 r"|^\s*IOMMU [Gg]roup \*")),  # a group script whose glob matched nothing
    ("lspci_vmm", re.compile(r"^(?:Slot|Class|Vendor|Device|SVendor|SDevice|Rev|ProgIf|Driver|Module|IOMMUGroup|PhySlot"
                             r"|NUMANode):\s")),
    ("lshw", re.compile(r"^\s*\*-(?:display|network|multimedia|usb|storage|generic|communication|bridge)(?::\d+)?\s*$")),
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

_TS_RX = TS_RX
_PROMPT = re.compile(
    r"^(?:\S*[@:]\S*)?\s*[$#%>]\s*(?:sudo\s+)?(?P<cmd>(?:lspci|dmesg|journalctl|cat|grep|ls|find|lsmod|lscpu|kvm-ok|"
    r"for|shopt|uname|virsh|qemu\S*|echo|modprobe|egrep|sh|bash|\./\S+|lsiommu|iommu|readlink)\b.*)$"
)
_BARE_CMD = re.compile(
    r"^(?:sudo\s+)?(?P<cmd>(?:lspci|dmesg|journalctl|lsmod|lscpu|kvm-ok|uname|lsiommu)(?:\s.*)?|"
    r"(?:cat|grep|egrep|find|ls|readlink)\s+.*(?:/proc/|/sys/|/etc/|/dev/|dmesg).*|for g in .*|shopt -s nullglob)$"
)


def classify_line(line: str) -> str:
    """The kind of one pasted line, from its content alone ("" if none)."""
    s = line.rstrip()
    if not s.strip():
        return "blank"
    if s[:1] == "[" and _TS_RX.match(s):  # fast path: a kernel log line (no earlier pattern starts with "[")
        return "dmesg"
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


@record(frozen=True)
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

    @cached_property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def span(start: int, end: int) -> str:
    """`line 5` or `lines 1-4`: where a block of an input lies."""
    return f"line {start}" if start == end else f"lines {start}-{end}"


KIND_NAMES = {
    "lspci": "lspci",
    "lspci_vmm": "lspci -vmm records",
    "lshw": "lshw -c display",
    "etc_modules": "/etc/modules (or modules-load.d)",
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
_CONTINUES = {"lspci", "group", "group_ls", "error", "dmesg", "lshw"}
# comment lines (#...) belong to these file kinds
_COMMENTED = {"grub", "modprobe", "initramfs", "etc_modules"}
_MODULES_CMD = re.compile(r"/etc/modules\b|modules-load\.d|initramfs-tools/modules")
# the headers Debian/Ubuntu ship in those files: a paste of the file alone still says which file it is
_MODULES_HEADER = {
    "kernel modules to load at boot time": "cat /etc/modules",
    "list of modules that you want to include in your initramfs": "cat /etc/initramfs-tools/modules",
}
_MODULE_NAME = re.compile(r"^\s*[A-Za-z0-9_-]+\s*$")
_GROUP_DIR_CMD = re.compile(r"\bls\b.*/sys/kernel/iommu_groups/")
_BARE_ADDRS = re.compile(r"^\s*(?:[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\s*)+$")
_LS_TOTAL = re.compile(r"^\s*total \d+\s*$")


def segment(text: str, file: str = "<text>") -> list[Chunk]:
    """Cut pasted text into chunks of one recognised kind each (pure)."""
    chunks: list[Chunk] = []
    cur_kind = ""
    cur: list[str] = []
    start = 0
    last_cmd = ""
    cmd_for_chunk = ""
    modules_cmd = False  # the last command printed /etc/modules or modules-load.d: bare names are modules

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
        if cur_kind == "dmesg" and line[:1] == "[" and _TS_RX.match(line):  # fast path: the log goes on
            cur.append(line)
            continue
        line = unwrap(line)
        if "roup" in line[:16] or line.lstrip()[:1] == "[":
            line = rewrite_group_line(line, cur_kind == "group") or line
        if modules_cmd and _MODULE_NAME.match(line):
            k = "etc_modules"
        else:
            k = classify_line(line)
        if k == "" and (cur_kind == "group_ls" or _GROUP_DIR_CMD.search(last_cmd)) and (
                _BARE_ADDRS.match(line) or (cur_kind != "group_ls" and _LS_TOTAL.match(line))):
            k = "group_ls"  # `ls /sys/kernel/iommu_groups/*/devices` (bare addresses) or one group's folder, `total 0` first
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
            modules_cmd = bool(_MODULES_CMD.search(last_cmd))
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
            low = line.lower()
            said = next((cmd for h, cmd in _MODULES_HEADER.items() if h in low), None)
            if said is not None:  # the file's own header: its bare names are modules, as after `cat FILE`
                last_cmd, modules_cmd = said, True
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


@record
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

