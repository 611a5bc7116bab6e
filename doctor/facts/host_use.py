"""What the host runs on: mounts, block devices, network interfaces and routes."""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.read import HostReader, fact


@record(frozen=True)
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


@record(frozen=True)
class BlockDevice:
    name: str  # nvme0n1p2, sda1, dm-0
    sysfs: str  # /sys/devices/... (the class link's target)
    slaves: tuple[str, ...] = ()  # dm/md: the devices under it
    dm_name: str | None = None  # dm: its /dev/mapper name

    @property
    def pci_address(self) -> str | None:
        return last_pci_address(self.sysfs)


@record(frozen=True)
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


class HostUseHostFacts(HostReader):
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

