"""libvirt domain definitions: the hostdevs and the shape of each VM."""

from __future__ import annotations

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.read import HostReader, fact

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True)
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


@record(frozen=True)
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


class LibvirtHostFacts(HostReader):
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

