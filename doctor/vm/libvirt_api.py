"""The libvirt calls of `vm create` and `vm cleanup` (libvirt-python, the `vm` extra).

Every libvirt error becomes a DoctorError with libvirt's own words; nothing here decides what the
domain looks like (doctor/vm/xml.py does) or which volumes may go (`deletable_volumes`)."""

from __future__ import annotations

import json
import os
from typing import Any

from doctor.datarecord import record
from doctor.errors import BadInput, DoctorError
from doctor.vm.domxml import CreatedVolume, VmDomain, parse_domain

STATE_NAMES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down", 5: "shut off",
               6: "crashed", 7: "suspended (pmsuspended)"}


class LibvirtFailed(DoctorError):
    exit_code = 1


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as e:
        raise BadInput("libvirt-python is not installed: pip install 'gpudoctor[vm]' (it builds against libvirt-dev)") from e
    libvirt.registerErrorHandler(lambda *_: None, None)  # no stray "libvirt: ... error" lines on stderr
    return libvirt


def connect(uri: str) -> Any:
    lv = _libvirt()
    try:
        return lv.open(uri)
    except lv.libvirtError as e:
        raise BadInput(f"--connect {uri}: cannot connect: {e.get_error_message()}") from e


def _err(what: str, e: Any) -> LibvirtFailed:
    return LibvirtFailed(f"{what}: {e.get_error_message()}")


def lookup(conn: Any, name: str) -> Any | None:
    lv = _libvirt()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as e:
        if e.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return None
        raise _err(f"looking up domain {name}", e) from e


def state_of(dom: Any) -> str:
    st, _ = dom.state()
    return STATE_NAMES.get(st, f"state {st}")


def definition(dom: Any) -> VmDomain:
    lv = _libvirt()
    return parse_domain(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE), f"libvirt:{dom.name()}")


def pool(conn: Any, name: str) -> Any:
    lv = _libvirt()
    try:
        return conn.storagePoolLookupByName(name)
    except lv.libvirtError as e:
        raise BadInput(f"--pool {name}: {e.get_error_message()}") from e


def volume_exists(conn: Any, pool_name: str, vol: str) -> bool:
    lv = _libvirt()
    try:
        pool(conn, pool_name).storageVolLookupByName(vol)
        return True
    except lv.libvirtError:
        return False


def create_volume(conn: Any, v: CreatedVolume, size_gib: int) -> str:
    """A new qcow2 volume; refuses one that exists. Returns its path."""
    lv = _libvirt()
    p = pool(conn, v.pool)
    if volume_exists(conn, v.pool, v.name):
        raise BadInput(f"volume {v.name} already exists in pool {v.pool}: not overwriting it")
    xml = (f"<volume><name>{v.name}</name><capacity unit='GiB'>{size_gib}</capacity>"
           "<target><format type='qcow2'/></target></volume>")
    try:
        return str(p.createXML(xml, 0).path())
    except lv.libvirtError as e:
        raise _err(f"creating volume {v.name} in pool {v.pool}", e) from e


def delete_volume(conn: Any, v: CreatedVolume) -> None:
    lv = _libvirt()
    try:
        pool(conn, v.pool).storageVolLookupByName(v.name).delete(0)
    except lv.libvirtError as e:
        raise _err(f"deleting volume {v.pool}/{v.name}", e) from e


def define(conn: Any, xml: str) -> Any:
    lv = _libvirt()
    try:
        return conn.defineXML(xml)
    except lv.libvirtError as e:
        raise _err("defining the domain", e) from e


def start(dom: Any) -> None:
    lv = _libvirt()
    try:
        dom.create()
    except lv.libvirtError as e:
        raise _err(f"starting {dom.name()}", e) from e


def destroy(dom: Any) -> None:
    lv = _libvirt()
    try:
        dom.destroy()
    except lv.libvirtError as e:
        raise _err(f"destroying {dom.name()}", e) from e


def undefine(dom: Any, has_nvram: bool) -> str:
    """Undefine with its NVRAM and managed save. A driver that does not know the NVRAM flag (libvirt's
    test driver) is asked again without it only where the domain has no NVRAM file to remove."""
    lv = _libvirt()
    flags = lv.VIR_DOMAIN_UNDEFINE_NVRAM | lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    try:
        dom.undefineFlags(flags)
        return "undefined with its NVRAM"
    except lv.libvirtError as e:
        unsupported = e.get_error_code() in (lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_SUPPORT)
        if not unsupported or has_nvram:
            raise _err(f"undefining {dom.name()}", e) from e
    try:
        dom.undefineFlags(lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    except lv.libvirtError as e:
        raise _err(f"undefining {dom.name()}", e) from e
    return "undefined (it has no NVRAM file)"


def other_domains_using(conn: Any, name: str, path_or_vol: str) -> list[str]:
    lv = _libvirt()
    out = []
    for d in conn.listAllDomains(0):
        if d.name() == name:
            continue
        try:
            vd = parse_domain(d.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE), d.name())
        except ValueError:
            continue
        if any(src == path_or_vol for _, src in vd.disks):
            out.append(d.name())
    return out


@record(frozen=True)
class Record:
    """What `vm create` wrote down beside the domain's own metadata (a second witness: a volume is
    deleted only where both say gpudoctor created it for this domain)."""

    path: str

    @staticmethod
    def for_domain(uri: str, name: str) -> Record:
        base = os.environ.get("GPUDOCTOR_STATE_DIR", "/var/lib/gpudoctor")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{uri}__{name}")
        return Record(os.path.join(base, "vm", safe + ".json"))

    def load(self) -> list[CreatedVolume]:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            return [CreatedVolume(str(v["pool"]), str(v["name"])) for v in doc.get("volumes", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []

    def save(self, vols: list[CreatedVolume]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"format": "gpudoctor.vm", "version": 1, "volumes": [v.__dict__ for v in vols]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


def deletable_volumes(d: VmDomain, recorded: list[CreatedVolume]) -> tuple[list[CreatedVolume], list[str]]:
    """The volumes cleanup may delete: named in the domain's gpudoctor metadata AND in gpudoctor's
    record, attached to this domain as a disk (never a CD-ROM: an install ISO is never deleted)."""
    keep: list[CreatedVolume] = []
    why: list[str] = []
    attached = {src: kind for kind, src in d.disks}
    for v in d.created:
        key = f"{v.pool}/{v.name}"
        if v not in recorded:
            why.append(f"{key}: named in the domain's metadata but not in gpudoctor's record: kept")
        elif attached.get(key) != "disk":
            why.append(f"{key}: not attached to {d.name} as a disk: kept")
        else:
            keep.append(v)
    return keep, why
