"""The libvirt domains of a host, read through its Host (live, snapshot or a test folder): the
definitions in /etc/libvirt/qemu and libvirtd's status files of active domains in /run/libvirt/qemu.
No libvirt connection: a snapshot or a test feeds the same XML files."""

from __future__ import annotations

from doctor.datarecord import record, replace
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts import Facts
from doctor.vm.domxml import VmDomain, parse_domain, parse_status

DEFS = "/etc/libvirt/qemu"
STATUS = "/run/libvirt/qemu"


@record(frozen=True)
class Inventory:
    domains: tuple[VmDomain, ...]
    status_known: bool  # False: /run/libvirt/qemu could not be read (which domains run is unknown)
    unreadable: tuple[str, ...]  # files that did not parse


def _xml_files(host: object, d: str) -> list[tuple[str, str]]:
    try:
        names = host.listdir(d)  # type: ignore[attr-defined]
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for n in sorted(names):
        if n.endswith(".xml"):
            t = host.read_text_or_none(f"{d}/{n}")  # type: ignore[attr-defined]
            if t is not None:
                out.append((f"{d}/{n}", t))
    return out


def inventory(facts: Facts) -> Inventory:
    if "vm_inventory" in facts._cache:
        v = facts._cache["vm_inventory"]
        if isinstance(v, BaseException):
            raise v
        return v  # type: ignore[no-any-return]
    try:
        inv = _read(facts)
    except FactUnknown as e:
        facts._cache["vm_inventory"] = e
        raise
    facts._cache["vm_inventory"] = inv
    return inv


def _read(facts: Facts) -> Inventory:
    host = getattr(facts, "host", None)
    if host is None:
        raise FactUnknown("libvirt domains", "not in the evidence", f"sudo cat {DEFS}/*.xml {STATUS}/*.xml")
    try:
        defs = _xml_files(host, DEFS)
    except (PermissionError, NotCaptured) as e:
        raise FactUnknown("libvirt domain definitions", str(e), f"sudo cat {DEFS}/*.xml") from e
    bad: list[str] = []
    by_name: dict[str, VmDomain] = {}
    for path, text in defs:
        try:
            d = parse_domain(text, path)
        except ValueError:
            bad.append(path)
            continue
        by_name[d.name] = d
    status_known = True
    try:
        live = _xml_files(host, STATUS)
    except (PermissionError, NotCaptured):
        status_known, live = False, []
    for path, text in live:
        try:
            s = parse_status(text, path)
        except ValueError:
            bad.append(path)
            continue
        base = by_name.get(s.name)
        # the live XML carries the guest addresses and aliases libvirt assigned; keep the definition's file
        by_name[s.name] = replace(s, file=base.file if base else path, created=base.created if base else s.created)
    return Inventory(tuple(by_name.values()), status_known, tuple(bad))


def pid_alive(facts: Facts, pid: int) -> bool | None:
    host = getattr(facts, "host", None)
    if host is None:
        return None
    try:
        return bool(host.exists(f"/proc/{pid}"))
    except (NotCaptured, PermissionError):
        return None
