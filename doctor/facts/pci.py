"""PCI devices and IOMMU groups: the typed device, the address, `lspci -nnk` and sysfs."""

from __future__ import annotations

import re

from doctor.datarecord import field, record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.pci_ids import MODULES_ALIAS, PCI_IDS, modalias_modules, parse_pci_aliases, pci_ids_name
from doctor.facts.read import HostReader, fact

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

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


@record(frozen=True)
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


@record(frozen=True)
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


class PciHostFacts(HostReader):
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
        """Every PCI device, from sysfs: names from the system's pci.ids and kernel modules from
        `modalias` against modules.alias (what `lspci -nnk` shows, without spawning it). Where a
        snapshot did not record those, its recorded `lspci -Dnnk` fills them in; an attribute that
        neither recorded is unknown, never absent."""
        h = self.host
        fact_name, settle = "PCI devices", "lspci -Dnnk; grep . /sys/bus/pci/devices/*/*"
        try:
            addrs = h.listdir("/sys/bus/pci/devices")
        except FileNotFoundError:
            return {}
        except (PermissionError, NotCaptured) as e:
            raise FactUnknown(fact_name, str(e), "lspci -Dnnk") from e
        lspci: dict[str, LspciEntry] | None = None

        def listed(address: str) -> LspciEntry | None:
            nonlocal lspci
            if lspci is None:
                lspci = self._lspci()
            return lspci.get(address)

        found: list[tuple[str, str, dict[str, Any]]] = []  # address, sysfs folder, PciDevice fields
        for addr in addrs:
            try:
                address = normalize_pci_address(addr)
            except ValueError:
                continue
            base = f"/sys/bus/pci/devices/{addr}"
            attrs: dict[str, str | None] = {}
            unseen: dict[str, str] = {}  # attribute -> why it could not be read
            for a in PCI_ATTRS:
                try:
                    attrs[a] = h.read_text_or_none(f"{base}/{a}")
                except (PermissionError, NotCaptured) as e:
                    attrs[a], unseen[a] = None, str(e)

            def unknown(what: str, why: str, address: str = address) -> FactUnknown:
                return FactUnknown(fact_name, f"{what} of {address}: {why}", settle)

            cls = _hex_attr(attrs["class"], 6)
            ven = _hex_attr(attrs["vendor"], 4)
            dev = _hex_attr(attrs["device"], 4)
            ln = listed(address) if ven is None or dev is None or cls is None or unseen else None
            if ven is None and ln is not None:
                ven, dev = ln.vendor, ln.device
            if cls is None and ln is not None:
                cls = ln.class_id + "00"
            if ven is None or dev is None or cls is None:
                for a in ("class", "vendor", "device"):
                    if a in unseen:
                        raise unknown(a, unseen[a])
                continue  # garbage in sysfs: skip the device rather than invent one
            sv = _hex_attr(attrs["subsystem_vendor"], 4)
            sd = _hex_attr(attrs["subsystem_device"], 4)
            subsystem = f"{sv}:{sd}" if sv and sd else None
            if "subsystem_vendor" in unseen or "subsystem_device" in unseen:
                if ln is None:
                    raise unknown("subsystem", unseen.get("subsystem_vendor") or unseen["subsystem_device"])
                subsystem = ln.subsystem
            revision = _hex_attr(attrs["revision"], 2)
            if "revision" in unseen:
                if ln is None:
                    raise unknown("revision", unseen["revision"])
                revision = ln.revision
            for a in ("boot_vga", "driver_override"):
                if a in unseen:
                    raise unknown(a, unseen[a])
            try:
                driver = h.link_name(f"{base}/driver")
            except (PermissionError, NotCaptured) as e:
                ln = listed(address)
                if ln is None:
                    raise unknown("driver", str(e)) from e
                driver = ln.driver
            try:
                group = h.link_name(f"{base}/iommu_group")
            except (PermissionError, NotCaptured) as e:
                raise unknown("IOMMU group", str(e)) from e
            bv = attrs["boot_vga"]
            dov = (attrs["driver_override"] or "").strip()
            found.append((address, base, {
                "address": address,
                "class_code": int(cls, 16),
                "vendor": ven,
                "device": dev,
                "subsystem": subsystem,
                "revision": revision,
                "driver": driver,
                "iommu_group": group,
                "boot_vga": None if bv is None or bv.strip() not in ("0", "1") else bv.strip() == "1",
                "driver_override": None if dov in ("", "(null)") else dov,
            }))
        vendors = {f["vendor"] for _, _, f in found}
        out: dict[str, PciDevice] = {}
        for address, base, f in found:
            driver = f["driver"]
            modules = self._kernel_modules(base, vendors)
            name = self._pci_name(f["vendor"], f["device"])
            if modules is None or name is None:
                ln = listed(address)
                if modules is None:
                    modules = ln.modules if ln else ()
                if name is None and ln is not None:
                    name = ln.name
            name = name or None
            if not modules and driver and driver != "vfio-pci":
                # nothing matched the modalias: the module behind the bound driver (xhci_hcd -> xhci_pci)
                try:
                    m = h.link_name(f"/sys/bus/pci/drivers/{driver}/module")
                except (PermissionError, NotCaptured):
                    m = None
                modules = (m,) if m else ()
            out[address] = PciDevice(**f, name=name, kernel_modules=modules)
        return dict(sorted(out.items()))

    def _kernel_modules(self, base: str, vendors: set[str]) -> tuple[str, ...] | None:
        """The modules whose alias matches the device's modalias; () where the kernel has no
        modules.alias or the device no modalias (lspci -k could not say more); None where either
        was not recorded (a snapshot: its `lspci -k` output may say)."""
        try:
            modalias = self.host.read_text_or_none(f"{base}/modalias")
        except (PermissionError, NotCaptured):
            return None
        if modalias is None:
            return ()
        aliases = self._pci_aliases(vendors)
        if aliases is None:
            return None
        return modalias_modules(aliases, modalias.strip())

    def _pci_aliases(self, vendors: set[str]) -> list[tuple[str, str]] | None:
        """The `alias pci:` lines of the running kernel's modules.alias, read once; [] where it has
        none; None where it was not recorded or is not readable."""
        if "_pci_aliases" in self._cache:
            return self._cache["_pci_aliases"]  # type: ignore[no-any-return]
        out: list[tuple[str, str]] | None = []
        try:
            rel = self.kernel_release()
            for tmpl in MODULES_ALIAS:
                text = self.host.read_text_or_none(tmpl.format(release=rel))
                if text is not None:
                    out = parse_pci_aliases(text, vendors)
                    break
        except (FactUnknown, PermissionError, NotCaptured, UnicodeDecodeError):
            out = None
        self._cache["_pci_aliases"] = out
        return out

    def _pci_name(self, vendor: str, device: str) -> str | None:
        """lspci's name from the system's pci.ids; "" where the host has no pci.ids (nothing to
        name it by); None where it was not recorded (a snapshot's `lspci` output may name it)."""
        if "_pci_ids" not in self._cache:
            data: bytes | None = b""
            for p in PCI_IDS:
                try:
                    data = self.host.read_bytes(p)
                    break
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except (PermissionError, NotCaptured):
                    data = None
                    break
            self._cache["_pci_ids"] = data
        ids: bytes | None = self._cache["_pci_ids"]
        if ids is None:
            return None
        blocks: dict[str, tuple[str, int, int]] = self._cache.setdefault("_pci_ids_blocks", {})
        return pci_ids_name(ids, vendor, device, blocks) or ""

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

