"""Redaction that needs a host or knows a file format.

`learn_host` registers the secrets a host names in files the doctor may never show
(hostname, machine id, /etc/passwd users, DMI and disk serial numbers, interface MACs), so
they are replaced wherever else they turn up. `redact_file` redacts one recorded file by
what it is: hex routing tables (addresses faked in hex, interface and flags kept, so the
default-route fact still reads), PCI config space (the Device Serial Number capability
faked, found by walking the extended capability list), initramfs images (rebuilt as a
plain cpio of the names and the few small files the facts read, redacted), sysfs serial
files, and text; bytes that are not UTF-8 are redacted as Latin-1 text.
"""

from __future__ import annotations

import re

from doctor.errors import DoctorError
from doctor.host import Host
from doctor.redact import Redactor

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

HOSTNAME_FILES = ("/proc/sys/kernel/hostname", "/etc/hostname")
# a device's serial number attribute; not a driver named "serial" (/sys/bus/pci/drivers/serial, the
# 16550 driver, whose entries are PCI addresses: learnt as a serial, they renamed the device's
# iommu_groups entry in a redacted snapshot)
_SERIAL_FILE = re.compile(r"^/sys/(?!bus/[^/]+/drivers/)(?:.*/)?(?:product_serial|board_serial|chassis_serial|serial)$")
_NOT_A_SERIAL = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$|/")
_CONFIG = re.compile(r"^/sys/.*/config$")
_INITRAMFS = re.compile(r"^/boot/(?:initrd\.img-|initramfs-|initrd-)[^/]+$")
_LEARN_GLOBS = {
    "serial": ("/sys/class/dmi/id/product_serial", "/sys/class/dmi/id/board_serial", "/sys/class/dmi/id/chassis_serial",
               "/sys/class/block/*/device/serial", "/sys/class/nvme/*/serial", "/sys/bus/pci/devices/*/serial"),
    "mac": ("/sys/class/net/*/address", "/sys/class/net/*/bonding_slave/perm_hwaddr"),
    "machine-id": ("/etc/machine-id", "/var/lib/dbus/machine-id"),
    "host": HOSTNAME_FILES,
}


def _read(host: Host, path: str, limit: int = 1 << 20) -> str | None:
    try:
        data = host.read_bytes(path)
    except (OSError, DoctorError):
        return None
    return data[:limit].decode("utf-8", "replace")


def _glob(host: Host, pattern: str) -> list[str]:
    if "*" not in pattern:
        return [pattern]
    try:
        return host.glob(pattern)
    except (OSError, DoctorError):
        return []


def learn_host(red: Redactor, host: Host) -> None:
    """Register every secret `host` names in the places listed above."""
    if not red.enabled:
        return
    add = {"serial": red.add_serial, "mac": red.add_mac, "machine-id": red.add_machine_id, "host": red.add_hostname}
    for kind, patterns in _LEARN_GLOBS.items():
        for pat in patterns:
            for p in _glob(host, pat):
                t = _read(host, p, 4096)
                if t is not None and t.strip() and not (kind == "serial" and _NOT_A_SERIAL.search(t.strip())):
                    add[kind](t.strip())
    passwd = _read(host, "/etc/passwd")
    for line in (passwd or "").splitlines():
        f = line.split(":")
        if len(f) >= 6 and f[2].isdigit() and 1000 <= int(f[2]) < 60000:
            red.add_user(f[0])
        if len(f) >= 6:
            m = re.fullmatch(r"/(?:var/)?home/([^/]+)/?", f[5])
            if m:
                red.add_user(m.group(1))


class _Recorder:
    """Stands in for a Redactor while `learn_host` runs: keeps (kind, value) pairs to replay later."""

    enabled = True

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("add_"):
            return lambda v: self.found.append((name[4:], v))
        raise AttributeError(name)


def host_secrets(host: Host | None) -> tuple[tuple[str, str], ...]:
    """The secrets `host` names, as (kind, value) pairs (kind: serial, mac, machine_id, hostname, user),
    read once when the checks run so that rendering reads nothing (replay them with `teach`)."""
    if host is None:
        return ()
    rec = _Recorder()
    learn_host(rec, host)  # type: ignore[arg-type]
    return tuple(rec.found)


def teach(red: Redactor, secrets: tuple[tuple[str, str], ...]) -> None:
    for kind, value in secrets:
        getattr(red, f"add_{kind}")(value)


def redact_file(red: Redactor, logical: str, data: bytes) -> bytes | None:
    """The bytes to record for `logical`, redacted; None where they cannot be redacted
    (then they are not recorded)."""
    if not red.enabled:
        return data
    if _CONFIG.match(logical):
        return pci_config(red, data)
    if _INITRAMFS.match(logical):
        return initramfs(red, data, logical)
    try:
        text = data.decode("utf-8")
        enc = "utf-8"
    except UnicodeDecodeError:
        text, enc = data.decode("latin-1"), "latin-1"
    if logical in HOSTNAME_FILES:
        out = red.hostname_value(text.strip()) + "\n"
    elif logical == "/proc/net/route":
        out = route4(red, text)
    elif logical == "/proc/net/ipv6_route":
        out = route6(red, text)
    elif _SERIAL_FILE.match(logical) and text.strip() and not _NOT_A_SERIAL.search(text.strip()):
        red.add_serial(text.strip())
        out = red.text(text)
    else:
        out = red.text(text)
    return out.encode(enc, "replace")


# -- routing tables ------------------------------------------------------------------


def _fake4_hex(red: Redactor, h: str) -> str:
    """A /proc/net/route address: 8 hex digits, the address in host (little-endian) order."""
    import ipaddress

    if not re.fullmatch(r"[0-9A-Fa-f]{8}", h):
        return h
    ip = ipaddress.IPv4Address(bytes.fromhex(h)[::-1])
    fake = red.ipv4(str(ip))
    return h if fake == str(ip) else ipaddress.IPv4Address(fake).packed[::-1].hex().upper()


def _fake6_hex(red: Redactor, h: str) -> str:
    import ipaddress

    if not re.fullmatch(r"[0-9A-Fa-f]{32}", h):
        return h
    ip = ipaddress.IPv6Address(int(h, 16))
    fake = red.ipv6(str(ip))
    return h if fake == ip.compressed else f"{int(ipaddress.IPv6Address(fake)):032x}"


def _fields(line: str, fix: dict[int, object]) -> str:
    parts = re.split(r"(\s+)", line)
    # parts alternate: field, separator, field, ... (a leading separator gives an empty field 0)
    i = 0
    for k in range(0, len(parts), 2):
        if parts[k] == "":
            continue
        f = fix.get(i)
        if f is not None:
            parts[k] = f(parts[k])  # type: ignore[operator]
        i += 1
    return "".join(parts)


def route4(red: Redactor, text: str) -> str:
    """Iface Destination Gateway Flags RefCnt Use Metric Mask ...: addresses faked in hex;
    the interface (only known values in it), flags and mask kept."""
    lines = text.splitlines(keepends=True)
    fix = {0: red.path, 1: lambda h: _fake4_hex(red, h), 2: lambda h: _fake4_hex(red, h)}
    return "".join(lines[:1] + [_fields(ln, fix) for ln in lines[1:]])  # type: ignore[arg-type]


def route6(red: Redactor, text: str) -> str:
    """dest plen src plen next-hop metric refcnt use flags iface (no header)."""
    f6 = lambda h: _fake6_hex(red, h)  # noqa: E731
    fix = {0: f6, 2: f6, 4: f6, 9: red.path}
    return "".join(_fields(ln, fix) for ln in text.splitlines(keepends=True))  # type: ignore[arg-type]


# -- PCI config space ----------------------------------------------------------------

PCI_EXT_CAP_DSN = 0x0003


def pci_config(red: Redactor, data: bytes) -> bytes:
    """Fake the Device Serial Number extended capability; everything else is kept (the
    facts read the header, capabilities and ROM registers)."""
    b = bytearray(data)
    off, seen = 0x100, set()
    while 0x100 <= off <= len(b) - 4 and off not in seen:
        seen.add(off)
        hdr = int.from_bytes(b[off : off + 4], "little")
        if hdr in (0, 0xFFFFFFFF):
            break
        if hdr & 0xFFFF == PCI_EXT_CAP_DSN and off + 12 <= len(b):
            real = "-".join(f"{x:02x}" for x in reversed(b[off + 4 : off + 12]))  # as lspci prints it
            b[off + 4 : off + 12] = bytes(int(x, 16) for x in reversed(red.dsn(real).split("-")))
        off = (hdr >> 20) & 0xFFC
    return bytes(b)


# -- initramfs images -----------------------------------------------------------------

_UNDECODED_MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "lz4": b"\x02\x21\x4c\x18"}


def _cpio_entry(out: bytearray, name: str, body: bytes, mode: int) -> None:
    nb = name.encode("utf-8", "replace") + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(nb), 0]
    out += b"070701" + "".join(f"{v:08X}" for v in fields).encode() + nb
    out += b"\0" * (-len(out) % 4) + body
    out += b"\0" * (-len(out) % 4)


def initramfs(red: Redactor, data: bytes, path: str) -> bytes | None:
    """A plain cpio holding every name of the image and, redacted, the small files the
    facts read; a compression this Python cannot decode is kept as its magic number alone,
    so the replay still says what it could not see. None for what is not an initramfs."""
    from doctor.facts import parse_initramfs

    try:
        img = parse_initramfs(data, path)
    except ValueError:
        return None
    kept = dict(img.files)
    out = bytearray()
    for n in sorted(img.names):
        if n in kept:
            _cpio_entry(out, red.path(n), red.text(kept[n].decode("utf-8", "replace")).encode(), 0o100644)
        else:  # a name only (as a folder: the facts never read its content)
            _cpio_entry(out, red.path(n), b"", 0o040755)
    _cpio_entry(out, "TRAILER!!!", b"", 0)
    if img.undecoded:
        out += b"\0" * (-len(out) % 512) + _UNDECODED_MAGIC.get(img.undecoded, b"GDRX")
    return bytes(out)
