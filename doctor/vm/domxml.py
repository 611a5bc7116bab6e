"""Read libvirt domain XML (a definition, or libvirtd's live status file) into what the vm.* checks
and `vm cleanup` need. Pure parsers: the text comes from a Host (live, snapshot, test folder)."""

from __future__ import annotations

from doctor.datarecord import record

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

# gpudoctor's own element in <metadata>: the volumes `vm create` made for this domain
META_NS = "https://gpudoctor.invalid/xmlns/libvirt/1"
META_PREFIX = "gpudoctor"
MAX_XML = 4 * 1024 * 1024


@record(frozen=True)
class GuestHostdev:
    source: str  # host PCI address 0000:01:00.0
    guest: str | None  # guest address "bus:slot.function" (hex), None where libvirt picks it
    managed: bool
    rom_bar_off: bool
    alias: str | None  # libvirt's qdev id (live status only): hostdev0 ...


@record(frozen=True)
class CreatedVolume:
    pool: str
    name: str


@record(frozen=True)
class VmDomain:
    name: str
    file: str
    domain_type: str
    machine: str | None
    hostdevs: tuple[GuestHostdev, ...]
    kvm_hidden: bool
    vendor_id: str | None
    created: tuple[CreatedVolume, ...]
    nvram: str | None
    disks: tuple[tuple[str, str], ...]  # (device kind: disk/cdrom, source path or pool/volume)
    # from libvirtd's status file (/run/libvirt/qemu/NAME.xml); None for a bare definition
    state: str | None = None
    reason: str | None = None
    pid: int | None = None


def _pci(a: ET.Element) -> tuple[int, int, int, int] | None:
    try:
        return (int(a.get("domain", "0"), 0), int(a.get("bus", "0"), 0), int(a.get("slot", "0"), 0),
                int(a.get("function", "0"), 0))
    except ValueError:
        return None


def _hostdevs(dom: ET.Element) -> tuple[GuestHostdev, ...]:
    out = []
    devices = dom.find("devices")
    for hd in devices.findall("hostdev") if devices is not None else []:
        if hd.get("type") != "pci":
            continue
        src = hd.find("source/address")
        s = _pci(src) if src is not None else None
        if s is None:
            continue
        g = hd.find("address")
        ga = _pci(g) if g is not None and g.get("type") == "pci" else None
        rom = hd.find("rom")
        alias = hd.find("alias")
        out.append(GuestHostdev(
            f"{s[0]:04x}:{s[1]:02x}:{s[2]:02x}.{s[3]:x}",
            f"{ga[1]:02x}:{ga[2]:02x}.{ga[3]:x}" if ga else None,
            hd.get("managed") == "yes",
            rom is not None and rom.get("bar") == "off",
            alias.get("name") if alias is not None else None,
        ))
    return tuple(out)


def _disks(dom: ET.Element) -> tuple[tuple[str, str], ...]:
    out = []
    for d in dom.iter("disk"):
        src = d.find("source")
        if src is None:
            continue
        where = src.get("file") or src.get("dev") or (f"{src.get('pool')}/{src.get('volume')}" if src.get("volume") else None)
        if where:
            out.append((d.get("device", "disk"), where))
    return tuple(out)


def _created(dom: ET.Element) -> tuple[CreatedVolume, ...]:
    out = []
    for c in dom.iter(f"{{{META_NS}}}created"):
        for v in c.iter(f"{{{META_NS}}}volume"):
            pool, name = v.get("pool"), v.get("name")
            if pool and name:
                out.append(CreatedVolume(pool, name))
    return tuple(out)


def _domain(dom: ET.Element, file: str, state: str | None = None, reason: str | None = None,
            pid: int | None = None) -> VmDomain:
    if dom.tag != "domain":
        raise ValueError(f"{file}: not a libvirt domain (root element <{dom.tag}>)")
    name = (dom.findtext("name") or "").strip()
    if not name:
        raise ValueError(f"{file}: the domain has no <name>")
    t = dom.find("os/type")
    hidden = dom.find("features/kvm/hidden")
    vid = dom.find("features/hyperv/vendor_id")
    nv = dom.find("os/nvram")
    return VmDomain(
        name, file, dom.get("type", ""), t.get("machine") if t is not None else None, _hostdevs(dom),
        hidden is not None and hidden.get("state") == "on",
        vid.get("value") if vid is not None and vid.get("state") == "on" else None,
        _created(dom), (nv.text or "").strip() or None if nv is not None else None, _disks(dom), state, reason, pid,
    )


def _root(text: str, file: str) -> ET.Element:
    if len(text) > MAX_XML:
        raise ValueError(f"{file}: larger than {MAX_XML} bytes")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError(f"{file}: document type declarations are not accepted")
    import xml.etree.ElementTree as ET  # here: a host without domains never pays for it

    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"{file}: {e}") from e


def parse_domain(text: str, file: str) -> VmDomain:
    """A domain definition (/etc/libvirt/qemu/NAME.xml, `virsh dumpxml`); ValueError if it is not one."""
    return _domain(_root(text, file), file)


def parse_status(text: str, file: str) -> VmDomain:
    """libvirtd's status file of an active domain: <domstatus state= reason= pid=><domain>...."""
    root = _root(text, file)
    if root.tag != "domstatus":
        raise ValueError(f"{file}: not a libvirt status file (root element <{root.tag}>)")
    dom = root.find("domain")
    if dom is None:
        raise ValueError(f"{file}: no <domain> in the status file")
    pid_s = root.get("pid")
    pid = int(pid_s) if pid_s and pid_s.isdigit() else None
    return _domain(dom, file, root.get("state"), root.get("reason"), pid)


def pci_address(text: str) -> str:
    """Normalise a PCI address the way domxml writes them (ValueError if it is not one)."""
    from doctor.facts import normalize_pci_address

    return normalize_pci_address(text)
