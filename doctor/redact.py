"""Redaction: hostnames, MAC and IP addresses, serial numbers, UUIDs and machine ids are
replaced by stable fake values, consistently across every file and command
output that one Redactor sees (one snapshot, one report).

Fake values come from documentation ranges (192.0.2.0/24, 2001:db8::/32,
locally administered MACs) so that nobody mistakes them for real ones.
"""

from __future__ import annotations

import ipaddress
import re

_MAC = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_UUID = re.compile(
    # a dash may precede it: grub menuentry ids read `gnulinux-simple-<uuid>`
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
# IPv6 with '::' or all eight groups; bare "06:44:52" (a time) and "10de:1e84" (an id) do not match.
_IPV6 = re.compile(
    r"(?<![0-9A-Fa-f:.])(?:"
    r"(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
    r"|::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})"
    r")(?![0-9A-Fa-f:])"
)
_SERIAL = re.compile(
    r"(?i)(\b(?:serial[ _-]?(?:number|no\.?|num)?|serialnumber|product_serial|board_serial|chassis_serial|"
    r"sn)\s*[:=]\s*)([^\s,;\]\)]+)"
)
_DSN = re.compile(r"(?i)(Device Serial Number\s+)((?:[0-9a-f]{2}-){7}[0-9a-f]{2})")


class Redactor:
    """Stable, consistent replacement of identifying values."""

    def __init__(self, hostnames: list[str] | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self._maps: dict[str, dict[str, str]] = {}
        self._hostnames: list[str] = []
        self._fakes: set[str] = set()
        self._machine_ids: list[str] = []
        for h in hostnames or []:
            self.add_hostname(h)

    def add_machine_id(self, value: str) -> None:
        """/etc/machine-id: 32 hex digits that name BLS entries, ESP folders and journal
        files. Only known values are replaced (a bare 32-hex pattern would hit checksums)."""
        v = value.strip().lower()
        if re.fullmatch(r"[0-9a-f]{32}", v) and v not in self._machine_ids and v not in self._fakes:
            self._machine_ids.append(v)

    def path(self, p: str) -> str:
        """A file name or path with machine ids replaced (the only secret that names files
        gpudoctor records: /boot/loader/entries/<machine-id>-<kver>.conf)."""
        if not self.enabled:
            return p
        for mid in self._machine_ids:
            p = re.sub(re.escape(mid), lambda m: self._fake("machine-id", m.group(0).lower()), p, flags=re.I)
        return p

    def add_hostname(self, name: str) -> None:
        name = name.strip()
        if not name or name in ("localhost", "(none)", "localhost.localdomain"):
            return
        for n in {name, name.split(".", 1)[0]}:
            if n and n not in self._hostnames:
                self._hostnames.append(n)
        self._hostnames.sort(key=len, reverse=True)

    def _fake(self, kind: str, real: str) -> str:
        m = self._maps.setdefault(kind, {})
        if real in self._fakes:
            return real  # already a fake value: redacting twice changes nothing
        if real not in m:
            n = len(m) + 1
            m[real] = {
                "host": f"host-{n}",
                "mac": f"02:00:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}",
                # TEST-NET-1 first; past 254 values, the benchmarking range 198.18.0.0/15 (unique)
                "ipv4": f"192.0.2.{n}" if n < 255 else str(ipaddress.IPv4Address(0xC6120000 + n)),
                "ipv6": f"2001:db8::{n:x}",
                "uuid": f"00000000-0000-4000-8000-{n:012x}",
                "serial": f"SERIAL-{n:04d}",
                "machine-id": f"{0xFA6E << 112 | n:032x}",
            }[kind]
            self._fakes.add(m[real])
        return m[real]

    @property
    def replacements(self) -> int:
        return sum(len(m) for m in self._maps.values())

    def hostname_value(self, name: str) -> str:
        self.add_hostname(name)
        return self._fake("host", name.strip()) if name.strip() else name

    def text(self, s: str) -> str:
        if not self.enabled or not s:
            return s
        s = self.path(s)
        s = _DSN.sub(lambda m: m.group(1) + self._fake("serial", m.group(2)), s)
        s = _SERIAL.sub(lambda m: m.group(1) + self._fake("serial", m.group(2)), s)
        s = _UUID.sub(lambda m: self._fake("uuid", m.group(0).lower()), s)
        s = _MAC.sub(lambda m: self._fake("mac", m.group(0).lower().replace("-", ":")), s)
        s = _IPV6.sub(self._ipv6, s)
        s = _IPV4.sub(self._ipv4, s)
        for h in self._hostnames:
            if len(h) >= 3:  # shorter names ("vm") would mangle ordinary words
                s = re.sub(rf"(?<![\w.-]){re.escape(h)}(?![\w-])", lambda m: self._fake("host", m.group(0)), s)
        return s

    def _ipv4(self, m: re.Match[str]) -> str:
        t = m.group(0)
        try:
            ip = ipaddress.IPv4Address(t)
        except ValueError:
            return t
        if ip.is_loopback or ip.is_unspecified or t.startswith("255.") or ip in _DOC4:
            return t
        return self._fake("ipv4", t)

    def _ipv6(self, m: re.Match[str]) -> str:
        t = m.group(0)
        try:
            ip = ipaddress.IPv6Address(t)
        except ValueError:
            return t
        if ip.is_loopback or ip.is_unspecified or ip in _DOC6:
            return t
        return self._fake("ipv6", t)


_DOC4 = ipaddress.IPv4Network("192.0.2.0/24")
_DOC6 = ipaddress.IPv6Network("2001:db8::/32")
