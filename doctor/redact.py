"""Redaction: hostnames, MAC and IP addresses, serial numbers, UUIDs, machine ids and user
names are replaced by stable fake values, consistently across every file and command output
that one Redactor sees (one snapshot, one report).

Every value is canonicalised before it is looked up (a MAC in colon, dash, dot or bare
notation, an IPv6 address full or compressed, a UUID in any case or in braces), so one
real value always gets one fake. Values that no pattern can find on its own (a hostname,
a serial number in a sysfs file, a user name, a machine id, a MAC written as 12 bare hex
digits) are *learned* first: from the host (doctor.redact_host) and from context in the
text itself (`systemd.machine_id=`, `Serial Number:`, `/home/<user>`, `Set hostname to`).
Callers that redact a document in pieces learn from every piece before replacing any.

Fake values come from documentation ranges (192.0.2.0/24, 2001:db8::/32, locally
administered MACs) so that nobody mistakes them for real ones.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator

_H = "[0-9A-Fa-f]"
# colon or dash MAC (one separator throughout); not a piece of a longer run of hex groups
_MAC = re.compile(rf"(?<![0-9A-Fa-f:-])(?<!{_H}\.){_H}{{2}}([:-])(?:{_H}{{2}}\1){{4}}{_H}{{2}}(?![0-9A-Fa-f]|[:-]{_H})")
_MAC_DOT = re.compile(rf"(?<![0-9A-Fa-f.:]){_H}{{4}}\.{_H}{{4}}\.{_H}{{4}}(?![0-9A-Fa-f]|\.{_H})")  # Cisco style
# 8 hex bytes with dashes: the PCIe Device Serial Number as lspci prints it (also EUI-64s)
_EUI64 = re.compile(rf"(?<![0-9A-Fa-f:-])(?:{_H}{{2}}-){{7}}{_H}{{2}}(?![0-9A-Fa-f]|-{_H})")
_UUID = re.compile(
    # a dash may precede it: grub menuentry ids read `gnulinux-simple-<uuid>`
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
# IPv6 candidates: 2 or more colons, optionally a dotted-quad tail; validated by ipaddress.
# Bare "06:44:52" (a time), "10de:1e84" (an id) and "0000:01:00.0" (a PCI address) are not addresses.
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![0-9A-Za-z:]|\.\d)"
)
_SERIAL = re.compile(
    r"(?i)(\b(?:serial[ _-]?(?:number|no\.?|num)?|serialnumber|product_serial|board_serial|chassis_serial|"
    r"sn)\s*[:=]\s*)([^\s,;\]\)]+)"
)
_BOOTIF = re.compile(r"(?i)(\bBOOTIF=01-)((?:[0-9a-f]{2}-){5}[0-9a-f]{2})(?![0-9a-f])")  # pxelinux IPAPPEND 2
_DSN = re.compile(r"(?i)(Device Serial Number\s+)((?:[0-9a-f]{2}-){7}[0-9a-f]{2})")
_MID_CONTEXT = re.compile(
    r"(?i)(?:systemd\.machine_id=|\bmachine-id\s+|(?:^|/)(?=[0-9a-f]{32}-[^/\s]*\.conf\b)|/(?=[0-9a-f]{32}/[^/\s]+/(?:linux|initrd)))"
    r"([0-9a-f]{32})(?![0-9a-f])",
    re.M,
)
# what each pattern above needs (supersets, searched fast): _MID_CONTEXT's four forms need one of these words
_MID_WORDS = ("machine_id=", "machine-id", ".conf", "/linux", "/initrd")
_SERIAL_PRE = re.compile(r"serial[ _-]?(?:number|no\.?|num)?\s*[:=]|sn\s*[:=]")  # on the lower-cased text
_MAC_PRE = re.compile(r"[:-][0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}[:-]")
_MAC_DOT_PRE = re.compile(r"\.[0-9A-Fa-f]{4}\.")


def _windows(s: str, hits: Iterable[re.Match[str]]) -> Iterator[str]:
    """The line of each hit and the line after it (a value may follow on the next line), once each."""
    end = -1
    for h in hits:
        if h.start() < end:
            continue
        start = s.rfind("\n", 0, h.start()) + 1
        nl = s.find("\n", h.end())
        end = len(s) if nl < 0 else nl  # a later hit on this line is in this window
        after = len(s) if nl < 0 else s.find("\n", nl + 1)
        yield s[start:len(s) if after < 0 else after]


_HOME = re.compile(r"/(?:var/)?home/([a-z_](?:[a-z0-9_.-]*[a-z0-9_])?)(?=[/\s'\"),:;.<>]|$)", re.M)
_SET_HOSTNAME = re.compile(r"(?:Set hostname to|Hostname set to) <([^<>\s]+)>")
_PROMPT = re.compile(r"^\s*([a-z_][a-z0-9_-]*)@([A-Za-z0-9][A-Za-z0-9.-]*):[~/]", re.M)

# names that are not secrets: no host is identified by them, and replacing them would destroy the
# facts (`ID=debian` in os-release) and the doctor's own words ("the GPU")
_GENERIC_HOSTS = {"localhost", "localhost.localdomain", "(none)", "none", "debian", "ubuntu", "fedora",
                  "archlinux", "arch"}
_GENERIC_USERS = {"root", "user", "admin", "guest", "test", "gpu", "vfio", "kvm", "qemu", "libvirt", "nvidia",
                  "amd", "intel", "linux", "host", "none", "nobody"}
# real names that are also words the doctor and the reports use ("this VM guest", "Ubuntu 24.04"): a
# host or user so named is replaced where it appears as the host wrote it (lower case: /etc/hostname,
# prompts, /home/NAME), never in another case, which is prose (seen on a real H200 VM named "vm",
# whose user "ubuntu" turned the distribution into "user-1 24.04")
_PROSE_WORDS = {"vm", "host", "gpu", "guest", "server", "node", "box", "pc", "lab", "kvm", "qemu", "linux",
                "ubuntu", "debian", "fedora", "arch", "centos", "rocky", "alma", "opensuse", "suse", "nixos",
                "proxmox", "pve", "nvidia", "amd", "intel", "iommu", "vfio", "pci", "cpu", "ram", "dev", "test"}
_PCI_ADDRESS = re.compile(r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
_SERIAL_PLACEHOLDERS = {"none", "unknown", "default", "default string", "not specified", "to be filled by o.e.m.",
                        "system serial number", "0", "00000000", "0123456789", "123456789", "n/a", "na"}


# Many documents (a fleet of hosts, each report's texts) repeat the same strings: what a string
# names by context, and whether any pattern finds anything in it, depend on the string alone and
# are remembered for strings up to this length (what is learnt from them still goes to each Redactor).
_CACHE_MAX_LEN = 4096


def _context_values(s: str) -> tuple[tuple[str, str], ...]:
    """(kind, value) for every value `s` names by context, in the order Redactor.learn adds them.
    On a long text each scan runs only where a cheap test (a literal, or a pattern re can search
    fast) says it can match: the same values, a 6 MB kernel log in ~0.1 s instead of ~1 s."""
    low = s.lower() if len(s) > 4096 else None
    if low is not None and len(low) != len(s):  # lower() changed lengths (a few Unicode letters): no shortcut
        low = None
    out: list[tuple[str, str]] = []
    if low is None or any(k in low for k in _MID_WORDS):
        out += (("machine-id", m.group(1)) for m in _MID_CONTEXT.finditer(s))
    for w in ([s] if low is None else _windows(s, _SERIAL_PRE.finditer(low))):
        out += (("serial", m.group(2)) for m in _SERIAL.finditer(w))
    for rx, pre in ((_MAC, _MAC_PRE), (_MAC_DOT, _MAC_DOT_PRE)):
        if low is None or pre.search(s):
            out += (("mac", m.group(0)) for m in rx.finditer(s))
    if low is None or "bootif=" in low:
        out += (("mac", m.group(2)) for m in _BOOTIF.finditer(s))
    out += (("user", m.group(1)) for m in _HOME.finditer(s))
    if low is None or "hostname" in low:
        out += (("host", m.group(1)) for m in _SET_HOSTNAME.finditer(s))
    for m in _PROMPT.finditer(s):
        out += (("user", m.group(1)), ("host", m.group(2)))
    return tuple(out)


_context_values_cached = functools.lru_cache(maxsize=8192)(_context_values)


@functools.lru_cache(maxsize=8192)
def _nothing_by_shape(s: str) -> bool:
    """No pattern that Redactor.text substitutes finds anything in `s`."""
    return not any(rx.search(s) for rx in (_BOOTIF, _DSN, _EUI64, _SERIAL, _UUID, _MAC, _MAC_DOT, _IPV6, _IPV4, _HOME))


def mac_key(s: str) -> str | None:
    """A MAC in any notation, as 12 lower-case hex digits; None if it is not one."""
    h = re.sub(r"[:.-]", "", s).lower()
    return h if re.fullmatch(r"[0-9a-f]{12}", h) else None


def _mac_as(fake12: str, like: str) -> str:
    pairs = [fake12[i : i + 2] for i in range(0, 12, 2)]
    if "." in like:
        return ".".join(fake12[i : i + 4] for i in range(0, 12, 4))
    if "-" in like:
        return "-".join(pairs)
    if ":" in like:
        return ":".join(pairs)
    return fake12


class Redactor:
    """Stable, consistent replacement of identifying values."""

    def __init__(self, hostnames: list[str] | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self._maps: dict[str, dict[str, str]] = {}
        self._fakes: set[str] = set()
        self._known: dict[str, set[str]] = {"host": set(), "machine-id": set(), "user": set(), "serial": set(),
                                            "mac": set()}
        self._known_re: re.Pattern[str] | None = None
        for h in hostnames or []:
            self.add_hostname(h)

    # -- what is secret ----------------------------------------------------------
    def _add(self, kind: str, value: str) -> None:
        if value and value not in self._known[kind] and value not in self._fakes:
            self._known[kind].add(value)
            self._known_re = None

    def add_machine_id(self, value: str) -> None:
        """/etc/machine-id: 32 hex digits that name BLS entries, ESP folders and journal
        files. Only known values are replaced (a bare 32-hex pattern would hit checksums)."""
        v = value.strip().lower()
        if re.fullmatch(r"[0-9a-f]{32}", v):
            self._add("machine-id", v)

    def add_hostname(self, name: str) -> None:
        name = name.strip().lower().rstrip(".")
        if not name or name in _GENERIC_HOSTS or not re.fullmatch(r"[a-z0-9_][a-z0-9_.-]*", name):
            return
        for n in {name, name.split(".", 1)[0]}:
            if n and n not in _GENERIC_HOSTS:
                self._add("host", n)

    def add_user(self, name: str) -> None:
        name = name.strip()
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*\$?", name) and name.lower() not in _GENERIC_USERS:
            self._add("user", name.lower())

    def add_serial(self, value: str) -> None:
        v = value.strip()
        # a USB root hub's serial is its host controller's PCI address (`usb usb1: SerialNumber:
        # 0000:01:00.2`): a name, not a secret; learnt, it renamed the device in a redacted snapshot
        if _PCI_ADDRESS.fullmatch(v):
            return
        if len(v) >= 4 and v.lower() not in _SERIAL_PLACEHOLDERS and not re.fullmatch(r"0+|f+|(.)\1*", v, re.I) \
                and re.fullmatch(r"[\w.:/+-]+", v):
            self._add("serial", v.lower())

    def add_mac(self, value: str) -> None:
        k = mac_key(value.strip())
        if k and k not in ("000000000000", "ffffffffffff"):
            self._add("mac", k)

    def learn(self, s: str) -> None:
        """Register the values `s` names by context, without replacing anything yet."""
        if not self.enabled or not s:
            return
        found = _context_values_cached(s) if len(s) <= _CACHE_MAX_LEN else _context_values(s)
        add = {"machine-id": self.add_machine_id, "serial": self.add_serial, "mac": self.add_mac,
               "user": self.add_user, "host": self.add_hostname}
        for kind, value in found:
            add[kind](value)

    def learn_all(self, texts: Iterable[str]) -> None:
        for t in texts:
            self.learn(t)

    # -- fake values ---------------------------------------------------------------
    def _fake(self, kind: str, real: str) -> str:
        m = self._maps.setdefault(kind, {})
        if real in self._fakes or _FAKE_SHAPE[kind].fullmatch(real):
            return real  # already a fake value (of this redactor or of an earlier one): redacting twice changes nothing
        if real not in m:
            n = len(m) + 1
            m[real] = {
                "host": f"host-{n}",
                "mac": f"020000{n & 0xFFFFFF:06x}",
                # TEST-NET-1 first; past 254 values, the benchmarking range 198.18.0.0/15 (unique)
                "ipv4": f"192.0.2.{n}" if n < 255 else _dotted(0xC6120000 + n),
                "ipv6": f"2001:db8::{n:x}",
                "uuid": f"00000000-0000-4000-8000-{n:012x}",
                "serial": f"SERIAL-{n:04d}",
                "dsn": "-".join(f"{0xFA6E000000000000 | n:016x}"[i : i + 2] for i in range(0, 16, 2)),
                "machine-id": f"{0xFA6E << 112 | n:032x}",
                "user": f"user-{n}",
            }[kind]
            self._fakes.update((m[real], m[real].lower()))
        return m[real]

    @property
    def replacements(self) -> int:
        return sum(len(m) for m in self._maps.values())

    def hostname_value(self, name: str) -> str:
        self.add_hostname(name)
        n = name.strip().lower().rstrip(".")
        if not n or n not in self._known["host"]:
            return name.strip()
        return self._fake("host", n)

    def mac(self, value: str) -> str:
        """A MAC in any notation -> its fake, in the same notation."""
        k = mac_key(value)
        if k is None or k in ("000000000000", "ffffffffffff"):
            return value
        return _mac_as(self._fake("mac", k), value)

    def dsn(self, value: str) -> str:
        """A Device Serial Number, `xx-xx-...` (8 bytes, most significant first) -> its fake."""
        return self._fake("dsn", value.lower())

    def ipv4(self, t: str) -> str:
        """A dotted quad as `ipaddress.IPv4Address` accepts it (no leading zeros), checked by hand:
        version numbers look like addresses, and importing ipaddress for them cost 1 ms of every start."""
        parts = t.split(".")
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0")
                                      and int(p) <= 255 for p in parts):
            return t
        if parts[0] in ("127", "255") or t == "0.0.0.0" or t.startswith("192.0.2."):  # loopback, broadcast, docs
            return t
        return self._fake("ipv4", t)

    def ipv6(self, t: str) -> str:
        import ipaddress

        try:
            ip = ipaddress.IPv6Address(t)
        except ValueError:
            return t
        if ip.is_loopback or ip.is_unspecified or ip.packed[:4] == b"\x20\x01\x0d\xb8":  # 2001:db8::/32
            return t
        return self._fake("ipv6", ip.compressed)

    # -- replacing -----------------------------------------------------------------
    def _known_pattern(self) -> re.Pattern[str] | None:
        if self._known_re is None:
            alts: list[str] = []
            for kind, vals in self._known.items():
                for v in sorted(vals, key=len, reverse=True):
                    alts.append(f"(?P<{kind.replace('-', '_')}_{len(alts)}>{self._alt(kind, v)})")
            self._known_re = re.compile("|".join(alts), re.I) if alts else re.compile(r"(?!x)x")
        return self._known_re

    @staticmethod
    def _alt(kind: str, v: str) -> str:
        e = re.escape(v)
        if kind == "machine-id":
            return rf"(?<![0-9a-f]){e}(?![0-9a-f])"
        if kind == "mac":
            pairs = [v[i : i + 2] for i in range(0, 12, 2)]
            forms = [v, ":".join(pairs), "-".join(pairs), ".".join(v[i : i + 4] for i in range(0, 12, 4))]
            return rf"(?<![0-9a-f:.-])(?:{'|'.join(re.escape(f) for f in forms)})(?![0-9a-f]|[:.-][0-9a-f])"
        if kind in ("host", "user") and v in _PROSE_WORDS:
            # never gpudoctor's own command words ("gpudoctor vm getty" on a host named vm)
            return rf"(?-i:(?<![\w.-])(?<!gpudoctor ){e}(?:(?![\w-]|\.\w)|(?=\.(?:local|lan|home|localdomain|internal)\b)))"
        if kind == "host":
            dm = e.replace("\\-", "--")  # device-mapper doubles dashes: host--vg-root
            # a short name followed by `.word` is a sysctl or a file ("vm.swappiness") unless the word
            # is a local domain (mDNS "qz.local")
            tail = r"(?![\w-]|\.\w)|(?=\.(?:local|lan|home|localdomain|internal)\b)" if len(v) < 4 else r"(?![\w-])"
            return rf"(?<![\w.-]){e}(?:{tail}|(?=-vg\b))|(?<![\w.-]){dm}(?=--vg\b)"
        return rf"(?<![\w.-]){e}(?![\w-]|\.\w)"

    def _known_sub(self, s: str) -> str:
        rx = self._known_pattern()
        if rx is None or not any(self._known.values()):
            return s

        def one(m: re.Match[str]) -> str:
            kind = (m.lastgroup or "").rsplit("_", 1)[0].replace("_", "-")
            t = m.group(0)
            if kind == "mac":
                return self.mac(t)
            if kind == "host":
                key = t.lower()
                if "--" in key:  # the device-mapper form
                    return self._fake("host", key.replace("--", "-")).replace("-", "--")
                return self._fake("host", key)
            return self._fake(kind, t.lower())

        return rx.sub(one, s)

    def path(self, p: str) -> str:
        """A file name or path with known values replaced (machine ids name BLS entries,
        /boot/loader/entries/<machine-id>-<kver>.conf; MACs name interfaces, enx<mac>)."""
        if not self.enabled:
            return p
        return self._known_sub(p)

    def text(self, s: str) -> str:
        if not self.enabled or not s:
            return s
        self.learn(s)
        if len(s) <= _CACHE_MAX_LEN and _nothing_by_shape(s):  # each substitution below would change nothing
            return self._known_sub(s)
        s = _BOOTIF.sub(lambda m: m.group(1) + self.mac(m.group(2)), s)
        s = _DSN.sub(lambda m: m.group(1) + self.dsn(m.group(2)), s)
        s = _EUI64.sub(lambda m: self.dsn(m.group(0)), s)
        s = _SERIAL.sub(lambda m: m.group(1) + self._serial(m.group(2)), s)
        s = _UUID.sub(lambda m: self._fake("uuid", m.group(0).lower()), s)
        s = _MAC.sub(lambda m: self.mac(m.group(0)), s)
        s = _MAC_DOT.sub(lambda m: self.mac(m.group(0)), s)
        s = _IPV6.sub(lambda m: self.ipv6(m.group(0)), s)
        s = _IPV4.sub(lambda m: self.ipv4(m.group(0)), s)
        s = _HOME.sub(lambda m: m.string[m.start(0) : m.start(1)] + self._user(m.group(1)), s)
        return self._known_sub(s)

    def _serial(self, v: str) -> str:
        if v in self._fakes or v.lower() in _SERIAL_PLACEHOLDERS or _PCI_ADDRESS.fullmatch(v):
            return v
        return self._fake("serial", v.lower())

    def _user(self, v: str) -> str:
        return v if v.lower() in _GENERIC_USERS else self._fake("user", v.lower())

    def mapped(self) -> dict[str, dict[str, str]]:
        """kind -> {real: fake}: what was replaced so far (for tests and the record summary)."""
        return {k: dict(v) for k, v in self._maps.items()}


def redact_each(red: Redactor, values: Iterable[str], fn: Callable[[str], str] | None = None) -> list[str]:
    """Learn from every value, then redact each: one mapping for a document redacted in pieces."""
    vals = list(values)
    red.learn_all(vals)
    return [(fn or red.text)(v) for v in vals]


# what the fakes look like: a recording redacted again (a fixture re-recorded) keeps them
_FAKE_SHAPE = {k: re.compile(v, re.I) for k, v in {
    "host": r"host-\d+", "mac": r"020000[0-9a-f]{6}", "ipv4": r"192\.0\.2\.\d+", "ipv6": r"2001:db8::[0-9a-f]{1,4}",
    "uuid": r"00000000-0000-4000-8000-[0-9a-f]{12}", "serial": r"SERIAL-\d{4,}", "dsn": r"fa-6e(?:-[0-9a-f]{2}){6}",
    "machine-id": r"fa6e[0-9a-f]{28}", "user": r"user-\d+"}.items()}


def _dotted(n: int) -> str:
    return ".".join(str(n >> s & 255) for s in (24, 16, 8, 0))
