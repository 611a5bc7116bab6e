"""Error and proof lines in pasted text → typed observations (doctor.facts.Observed), each with its file:line.

The lines are found wherever they were pasted (a QEMU error quoted with `> `, in **bold**, inside a libvirt
message, a kubectl event, a Proxmox task log, a kernel log with any prefix): one search over each input for
a trigger, then the rule that matched decides the kind, the group and the device it names. Pure.

Sources for the wordings: QEMU hw/vfio/{container,helpers,pci}.c (`no iommu_group found`, `failed to open
/dev/vfio/%d`, `group %d is not viable`, `failed to setup container for group %d`, `error getting device from
group %d`, `device is already attached`); libvirt qemu_hostdev.c (`host doesn't support passthrough of host
PCI devices`); Linux drivers/pci/setup-res.c and vfio (`BAR %d: can't reserve`), drivers/iommu (`Adding to
iommu group %d`, `IO_PAGE_FAULT`, `DMAR: [DMA Read`), drivers/vfio/vfio_iommu_type1.c (`No interrupt
remapping support`), arch/x86/kernel/cpu/feat_ctl.c (`VMX (outside TXT) disabled by BIOS`), arch/x86/kvm
(`kvm: disabled by bios`, `kvm: no hardware support`, `SVM disabled (by BIOS) in MSR_VM_CR`), i915
(`[drm] VT-d active for gfx access`), Proxmox qemu-server (`KVM virtualisation configured, but not available`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from doctor.explain import KEYWORDS as EXPLAIN_KEYWORDS
from doctor.facts import Observed, normalize_pci_address
from doctor.pasted.segment import _ADDR
from doctor.pasted.segment_re import keyword_lines

# (kind, pattern): the named group `g` is the IOMMU group where the line names one
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, re.compile(rx, re.I)) for k, rx in (
    ("iommu.missing", r"no iommu_group found|\bIOMMU not found|No IOMMU (?:detected|found)"
                      r"|host doesn't support passthrough of (?:host )?PCI devices"
                      r"|vfio-pci: probe of \S+ failed with error -22|probe with driver vfio-pci failed with error -22"),
    ("vfio.group_not_viable", r"group (?P<g>\d+) is not viable"),
    ("iommu.no_interrupt_remapping", r"No interrupt remapping support"),
    ("gpu.bar_reserve", r"BAR (?P<bar>\d+): can(?:'t| ?not) reserve"),
    ("gpu.fb_on_bar", r"BAR (?P<bar>\d+): assigned to (?:efifb|vesafb|simplefb|simpledrm)"),
    ("kvm.disabled_by_bios", r"kvm: disabled by bios|VMX \(outside TXT\) disabled by BIOS|SVM disabled \(by BIOS\)"
                             r"|KVM \((?:vmx|svm)\) is disabled by your BIOS|kvm_intel: VMX not enabled"),
    ("kvm.no_hardware", r"kvm: no hardware support|kvm_intel: VMX not supported|kvm_amd: SVM not supported"
                        r"|Your CPU does not support KVM extensions"),
    ("kvm.unavailable", r"Could not access KVM kernel module|failed to initialize kvm"
                        r"|KVM virtualisation configured, but not available|/dev/kvm does not exist"),
    ("gpu.rom_unreadable", r"Invalid PCI ROM header signature|Cannot read device rom at"),
    ("iommu.proof", r"Adding to iommu group (?P<g>\d+)|iommu: Adding device \S+ to group (?P<g2>\d+)"
                    r"|(?:failed to open|error opening) /dev/vfio/(?P<g3>\d+)|HostPath:/dev/vfio/(?P<g4>\d+)"
                    r"|^c[rwx-]{9}\S*\s.*\s/dev/vfio/(?P<g5>\d+)\s*$"
                    r"|failed to setup container for group (?P<g6>\d+)|error getting device from group (?P<g7>\d+)"
                    r"|Verify all devices in group (?P<g8>\d+)|group (?P<g9>\d+) is not viable"
                    r"|group (?P<g10>\d+) used in multiple address spaces"
                    r"|: device is already attached|VT-d active for gfx access|IO_PAGE_FAULT|DMAR: \[DMA (?:Read|Write)"
                    r"|DMAR: Intel\(R\) Virtualization Technology for Directed I/O"
                    r"|AMD-Vi: Found IOMMU|AMD-V[Ii]:? IOMMU p(?:er|re)formance counters supported"
                    r"|Detected AMD IOMMU #\d|AMD-Vi: Interrupt remapping enabled"
                    # printed when QEMU opens a device vfio-pci holds (vfio_pci_core_enable, vfio_ecap_init): only with a group
                    r"|vfio-pci " + _ADDR + r": enabling device|vfio_ecap_init: " + _ADDR + r" hiding ecap"
                    # the device's link (ls -l), and lspci -v's Flags line: the group exists, so the IOMMU is on
                    r"|/" + _ADDR + r"/iommu_group -> \S*iommu_groups/(?P<g11>\d+)"
                    r"|^Flags: .*\bIOMMU group (?P<g12>\d+)"),
))
# one search tells whether any rule can match a line (most lines a keyword finds match none)
_ANY_RULE = re.compile("|".join("(?:" + re.sub(r"\(\?P<\w+>", "(", rx.pattern) + ")" for _, rx in _RULES), re.I)
# a line is read further only if it holds one of these (lower case; found with str.find, C speed, on the whole text)
_KEYWORDS = ("iommu_group found", "iommu not found", "no iommu", "doesn't support passthrough", "error -22", "not viable",
             "interrupt remapping", "reserve", "assigned to", "disabled by", "no hardware support",
             "kvm kernel module", "initialize kvm", "virtualisation configured", "/dev/kvm does", "outside txt", "svm disabled",
             "vmx not", "svm not", "kvm extensions", "/dev/vfio/", "iommu group", "to group", "container for group",
             "from group", "devices in group", "address spaces", "already attached", "vt-d active", "io_page_fault", "[dma ",
             "directed i/o", "found iommu", "formance counters", "amd iommu", "rom header", "device rom", "vfio-pci ",
             "hiding ecap", "iommu_group ->")
# the lines worth reading for an observation or for explain's error entries: found once per input
_UNION = tuple(dict.fromkeys(_KEYWORDS + EXPLAIN_KEYWORDS))
ALL_KEYWORDS = tuple(k for k in _UNION if not any(o != k and o in k for o in _UNION))  # a keyword holding another adds no line
_MARKUP = re.compile(r"^(?:\s|>|\*\*|`|<pre>|<code>)+|(?:\*\*|`|</pre>|</code>|<br>)+\s*$")
_STAMP = re.compile(r"^(?:\[\s*[\d.+]+\]\s*)+(?:\[\s*[CT]\d+\]\s*)?|^\S+ \S+ kernel: |^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ kernel: ")
_DEV_ADDR = re.compile(r"(?:vfio(?:-pci)? |host=|\"host\":\"|pci |BDF:|pci@|vfio_pci |vfio-pci: probe of |device rom at |vfio_ecap_init: "
                      r"|/sys/bus/pci/devices/)("
                      + _ADDR + r")\b")
_VFIO_LS = re.compile(r"\bls\b.*\s/dev/vfio/?\s*$")
_LS_NODE = re.compile(r"^c[rwx-]{9}\S*\s+\d+\s+\S+\s+\S+\s+\d+,\s*\d+\s.*\s(\d+)\s*$")


def clean(line: str) -> str:
    """The message of a pasted line: quoting, Markdown and kernel timestamps taken off."""
    s = _MARKUP.sub("", line)
    return _STAMP.sub("", s).strip()


def _address(text: str) -> str | None:
    m = _DEV_ADDR.search(text)
    if m is None:
        return None
    try:
        return normalize_pci_address(m.group(1))
    except ValueError:
        return None


def observe_text(text: str, file: str, lines: list[str] | None = None, hits: list[int] | None = None) -> list[Observed]:
    """Every observation in one pasted file (pure). Only the lines that hold a keyword are read (`hits`: their
    indexes, found by the caller for a superset of _KEYWORDS; found here otherwise)."""
    out: list[Observed] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    lines = text.split("\n") if lines is None else lines
    if "/dev/vfio" in text:
        _ls_dev_vfio(lines, file, out, seen)
    if "readlink" in text:
        _readlink_group(lines, file, out, seen)
    if _IOMEM_FB.search(text):
        _iomem_fb(lines, file, out, seen)
    for i in keyword_lines(text, lines, _KEYWORDS) if hits is None else hits:
        msg = clean(lines[i])
        if not _ANY_RULE.search(msg):
            continue
        for kind, rx in _RULES:
            m = rx.search(msg)
            if m is None:
                continue
            d = m.groupdict()
            g = next((v for k, v in d.items() if k.startswith("g") and v), None)
            _add(out, seen, Observed(kind, msg[:400], f"{file}:{i + 1}", g, _address(msg), d.get("bar")))
    out.sort(key=lambda o: int(o.where.rsplit(":", 1)[1]))
    return out


_IOMEM_FB = re.compile(r"^\s*(?:>\s*)?[0-9a-fA-F]{5,16}-[0-9a-fA-F]{5,16} : (?:BOOTFB|efifb|vesafb|simplefb|simpledrm)\s*$", re.M)
_IOMEM = re.compile(r"^(?:>\s?)?( *)([0-9a-fA-F]{5,16})-([0-9a-fA-F]{5,16}) : (.*?)\s*$")
_BDF = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def _iomem_fb(lines: list[str], file: str, out: list[Observed], seen: set[tuple[str, str | None, str | None]]) -> None:
    """A pasted /proc/iomem: a firmware framebuffer (BOOTFB, efifb, vesafb, simplefb, simpledrm) nested inside a
    range a PCI device holds (its BAR) is the framebuffer on that device's BAR, as `BAR 1: assigned to efifb` says."""
    stack: list[tuple[int, int, int, str, str]] = []  # indent, start, end, name, line
    for n, raw in enumerate(lines, 1):
        m = _IOMEM.match(raw)
        if m is None:
            continue
        indent, start, end, name = len(m.group(1)), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if name in ("BOOTFB", "efifb", "vesafb", "simplefb", "simpledrm"):
            bar = next((x for x in reversed(stack) if _BDF.match(x[3]) and x[1] <= start and end <= x[2]), None)
            if bar is not None:
                _add(out, seen, Observed("gpu.fb_on_bar", f"{raw.strip()} inside {bar[4].strip()} (/proc/iomem)", f"{file}:{n}", None,
                                         normalize_pci_address(bar[3]), f"[mem {bar[1]:#x}-{bar[2]:#x}]"))
        stack.append((indent, start, end, name, raw))


def _ls_dev_vfio(lines: list[str], file: str, out: list[Observed], seen: set[tuple[str, str | None, str | None]]) -> None:
    """`ls -l /dev/vfio` prints group nodes by number alone: read them only right after that command."""
    ls_vfio_at = -10
    for n, raw in enumerate(lines, 1):
        if "/dev/vfio" in raw and _VFIO_LS.search(raw):
            ls_vfio_at = n
            continue
        if n - ls_vfio_at < 64 and raw.strip():
            m = _LS_NODE.match(clean(raw))
            if m:
                _add(out, seen, Observed("iommu.proof", clean(raw), f"{file}:{n}", m.group(1), None, "a /dev/vfio group node"))
                continue
            if not raw.lstrip().startswith(("total", "c", "d", "l")):
                ls_vfio_at = -10


_READLINK = re.compile(r"\breadlink\b.*/(" + _ADDR + r")/iommu_group/?\s*$")
_GROUP_PATH = re.compile(r"^(?:(?:\.\./)+|/sys/)kernel/iommu_groups/(\d+)/?$")


def _readlink_group(lines: list[str], file: str, out: list[Observed], seen: set[tuple[str, str | None, str | None]]) -> None:
    """`readlink [-f] /sys/bus/pci/devices/ADDR/iommu_group` prints the group's path alone: read it only right
    after that command, for that device."""
    addr: str | None = None
    for n, raw in enumerate(lines, 1):
        t = clean(raw)
        m = _READLINK.search(t) if "readlink" in t else None
        if m:
            try:
                addr = normalize_pci_address(m.group(1))
            except ValueError:
                addr = None
            continue
        if addr is not None and t:
            g = _GROUP_PATH.match(t)
            if g:
                _add(out, seen, Observed("iommu.proof", f"{t} (readlink of {addr}'s iommu_group)", f"{file}:{n}", g.group(1),
                                         addr, "the device's iommu_group link"))
            addr = None


def _add(out: list[Observed], seen: set[tuple[str, str | None, str | None]], o: Observed) -> None:
    key = (o.kind, o.group, o.address)
    if key in seen:
        return
    seen.add(key)
    out.append(o)


def observe(texts: Iterable[tuple[str, str]]) -> tuple[Observed, ...]:
    """(file, text) pairs → every observation, in order."""
    out: list[Observed] = []
    for file, text in texts:
        out += observe_text(text, file)
    return tuple(out)
