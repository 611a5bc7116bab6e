"""The domain XML `gpudoctor vm create` defines: a pure function of a DomainSpec.

Layout, and why:
- q35 (PCIe): the card sits behind a pcie-root-port as on the host, where GPU drivers expect a PCIe link.
- every function of the passthrough unit is a managed PCI hostdev (libvirt moves it to vfio-pci on
  start and hands it back on destroy), all on ONE guest slot, function numbers kept,
  multifunction='on' on function 0: the guest sees one card, as the host does.
- an emulated VGA on VNC stays the guest's first display: the installer and the firmware show there,
  the passed-through card drives its own outputs once the guest's driver loads. Drop it (video
  model none) only once the card is the guest's only screen.
- no USB controller (the card may bring its own USB-C controller; input is PS/2 on VNC), no memory
  balloon (VFIO pins all guest RAM: a balloon cannot reclaim any of it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from doctor.datarecord import record
from doctor.vm.domxml import META_NS, META_PREFIX, CreatedVolume

VENDOR_ID = "gpudoctor"  # Hyper-V vendor_id (at most 12 characters): anything but KVM's "KVMKVMKVM"
UNIT_BUS = 1  # the index of the pcie-root-port the unit sits behind


@record(frozen=True)
class UnitFunction:
    address: str  # host PCI address
    label: str  # for the XML comment


@record(frozen=True)
class DomainSpec:
    name: str
    memory_mib: int
    vcpus: int
    firmware: str  # "bios" | "uefi"
    unit: tuple[UnitFunction, ...]  # function 0 (the GPU) first
    kvm_hidden: bool = False
    hidden_reason: str = ""
    rom_bar_off: bool = False
    rom_reason: str = ""
    iso: str | None = None
    disk_file: str | None = None  # an existing image
    disk_format: str = "qcow2"
    disk_volume: CreatedVolume | None = None  # a volume vm create makes
    network: str | None = "default"
    virt_type: str = "kvm"


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        e.text = text
    return e


def guest_functions(spec: DomainSpec) -> list[tuple[UnitFunction, int]]:
    """Each function with its guest function number: the host's number where the unit has a
    function 0 (the usual card), else renumbered from 0 (a guest scans a slot only if .0 exists)."""
    fns = [int(f.address.rsplit(".", 1)[1], 16) for f in spec.unit]
    if 0 in fns:
        return list(zip(spec.unit, fns, strict=True))
    return [(f, i) for i, f in enumerate(spec.unit)]


def build_xml(spec: DomainSpec) -> str:
    ET.register_namespace(META_PREFIX, META_NS)
    dom = ET.Element("domain", {"type": spec.virt_type})
    _el(dom, "name", spec.name)
    if spec.disk_volume is not None:
        md = _el(dom, "metadata")
        cr = ET.SubElement(md, f"{{{META_NS}}}created")
        ET.SubElement(cr, f"{{{META_NS}}}volume", {"pool": spec.disk_volume.pool, "name": spec.disk_volume.name})
    _el(dom, "memory", str(spec.memory_mib), unit="MiB")
    _el(dom, "vcpu", str(spec.vcpus))
    os_ = _el(dom, "os", **({"firmware": "efi"} if spec.firmware == "uefi" else {}))
    _el(os_, "type", "hvm", arch="x86_64", machine="q35")
    if spec.firmware == "uefi":
        os_.append(ET.Comment(" OVMF picked by libvirt from the firmware descriptors; its NVRAM is "
                              "/var/lib/libvirt/qemu/nvram/NAME_VARS.fd (removed by `gpudoctor vm cleanup`) "))
    feat = _el(dom, "features")
    _el(feat, "acpi")
    _el(feat, "apic")
    if spec.kvm_hidden:
        feat.append(ET.Comment(f" {spec.hidden_reason} "))
        hv = _el(feat, "hyperv")
        _el(hv, "vendor_id", state="on", value=VENDOR_ID)
        kvm = _el(feat, "kvm")
        _el(kvm, "hidden", state="on")
    if spec.virt_type == "kvm":
        _el(dom, "cpu", mode="host-passthrough", check="none")
    dev = _el(dom, "devices")
    _el(dev, "controller", type="pci", index="0", model="pcie-root")
    _el(dev, "controller", type="pci", index=str(UNIT_BUS), model="pcie-root-port")
    boot = 1
    if spec.iso is not None:
        cd = _el(dev, "disk", type="file", device="cdrom")
        _el(cd, "driver", name="qemu", type="raw")
        _el(cd, "source", file=spec.iso)
        _el(cd, "target", dev="sdb", bus="sata")
        _el(cd, "readonly")
        _el(cd, "boot", order=str(boot))
        boot += 1
    if spec.disk_file is not None or spec.disk_volume is not None:
        if spec.disk_volume is not None:
            d = _el(dev, "disk", type="volume", device="disk")
            _el(d, "driver", name="qemu", type="qcow2")
            _el(d, "source", pool=spec.disk_volume.pool, volume=spec.disk_volume.name)
        else:
            assert spec.disk_file is not None
            d = _el(dev, "disk", type="file", device="disk")
            _el(d, "driver", name="qemu", type=spec.disk_format)
            _el(d, "source", file=spec.disk_file)
        _el(d, "target", dev="sda", bus="sata")  # SATA: every installer has a driver for it
        _el(d, "boot", order=str(boot))
    if spec.network:
        nic = _el(dev, "interface", type="network")
        _el(nic, "source", network=spec.network)
        _el(nic, "model", type="e1000e")
    ser = _el(dev, "serial", type="pty")
    _el(ser, "target", port="0")
    con = _el(dev, "console", type="pty")
    _el(con, "target", type="serial", port="0")
    _el(dev, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1")
    dev.append(ET.Comment(" the emulated VGA shows the installer on VNC; the passed-through card drives its own outputs "))
    video = _el(dev, "video")
    _el(video, "model", type="vga", primary="yes")
    _el(dev, "controller", type="usb", model="none")
    _el(dev, "memballoon", model="none")
    for f, gfn in guest_functions(spec):
        dev.append(ET.Comment(f" {f.label} "))
        hd = _el(dev, "hostdev", mode="subsystem", type="pci", managed="yes")
        src = _el(hd, "source")
        dom_s, bus, rest = f.address.split(":")
        slot, fn = rest.split(".")
        _el(src, "address", domain=f"0x{dom_s}", bus=f"0x{bus}", slot=f"0x{slot}", function=f"0x{int(fn, 16):x}")
        if spec.rom_bar_off and f is spec.unit[0]:
            hd.append(ET.Comment(f" {spec.rom_reason} "))
            _el(hd, "rom", bar="off")
        ga = {"type": "pci", "domain": "0x0000", "bus": f"0x{UNIT_BUS:02x}", "slot": "0x00", "function": f"0x{gfn:x}"}
        if gfn == 0 and len(spec.unit) > 1:
            ga["multifunction"] = "on"
        _el(hd, "address", **ga)
    ET.indent(dom, space="  ")
    return ET.tostring(dom, encoding="unicode") + "\n"
