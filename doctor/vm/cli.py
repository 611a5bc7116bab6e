"""`gpudoctor vm create|cleanup|getty`: dry run by default, like `fix`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from doctor.errors import BadInput, DoctorError
from doctor.model import Status
from doctor.vm.args import NAME_RE, valid_name
from doctor.vm.args import regular_file as _regular_file

MEMORY_MIB = (256, 4 * 1024 * 1024)
VCPUS = (1, 512)
DISK_GIB = (1, 65536)
# A GPU is refused when a host check fails for it; the VM's own checks do not count, nor the boot-time
# binding checks: a managed='yes' hostdev is moved to vfio-pci by libvirt when the VM starts (every
# function of the unit, so the group is viable then) and handed back when it stops.
NOT_HOST_CHECKS = ("vm.", "guest.")
MOOT_WITH_MANAGED = frozenset({"vfio.ids_configured", "vfio.early_load", "vfio.group_viable", "vfio.binding_persistent",
                               "boot.initramfs_current", "vfio.ids_unique_to_card"})
NOT_FOR_TCG = frozenset({"cpu.virtualization", "kvm.available"})  # --virt-type qemu: no KVM needed


def add_parser(sub: Any) -> None:
    v = sub.add_parser("vm", help="create a passthrough VM, clean a wedged one up, give a guest image a serial getty")
    vs = v.add_subparsers(dest="vm_cmd", metavar="VM_COMMAND")
    c = vs.add_parser("create", help="the domain XML for a GPU (dry run); --apply --yes defines it")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--gpu", metavar="ADDR", required=True, help="the GPU, e.g. 0000:01:00.0")
    c.add_argument("--iso", metavar="PATH", help="install ISO (a SATA CD-ROM, first to boot)")
    d = c.add_mutually_exclusive_group()
    d.add_argument("--disk", metavar="PATH", help="an existing disk image (never deleted by cleanup)")
    d.add_argument("--disk-size", metavar="GIB", type=int, help="create a qcow2 volume of this size in --pool")
    c.add_argument("--pool", metavar="POOL", default="default", help="storage pool for --disk-size (default: default)")
    c.add_argument("--memory", metavar="MIB", type=int, default=4096)
    c.add_argument("--vcpus", metavar="N", type=int, default=4)
    c.add_argument("--firmware", choices=("bios", "uefi"), default="uefi")
    c.add_argument("--network", metavar="NET", default="default", help="libvirt network, or 'none'")
    c.add_argument("--virt-type", choices=("kvm", "qemu"), default="kvm", help="qemu: TCG, for a host without KVM")
    c.add_argument("--connect", metavar="URI", default="qemu:///system")
    c.add_argument("--snapshot", metavar="PATH", help="plan from a recorded host (applies only to libvirt's test:/// driver)")
    c.add_argument("--apply", action="store_true", help="define the domain (needs --yes)")
    c.add_argument("--yes", action="store_true")
    c.add_argument("--start", action="store_true", help="with --apply, also start it")
    c.add_argument("--force", action="store_true", help="create it even though host checks fail for this GPU")
    k = vs.add_parser("cleanup", help="destroy and undefine a domain, delete only the volumes gpudoctor created for it")
    k.add_argument("name", metavar="NAME")
    k.add_argument("--connect", metavar="URI", default="qemu:///system")
    k.add_argument("--apply", action="store_true")
    k.add_argument("--yes", action="store_true")
    from doctor.vm.gettycli import add_getty_parser

    add_getty_parser(vs)


def cmd_vm(args: argparse.Namespace) -> int:
    if args.vm_cmd == "create":
        return cmd_create(args)
    if args.vm_cmd == "cleanup":
        return cmd_cleanup(args)
    if args.vm_cmd == "getty":
        from doctor.vm.gettycli import cmd_getty

        return cmd_getty(args)
    raise BadInput("say what to do: gpudoctor vm create|cleanup|getty (see gpudoctor vm -h)")


def _range(opt: str, v: int, lo_hi: tuple[int, int], unit: str) -> int:
    if not lo_hi[0] <= v <= lo_hi[1]:
        raise BadInput(f"{opt} {v}: must be between {lo_hi[0]} and {lo_hi[1]} {unit}")
    return v


def _iso(opt: str, path: str) -> str:
    path = _regular_file(opt, path)
    with open(path, "rb") as f:
        f.seek(0x8001)
        magic = f.read(5)
    if magic not in (b"CD001", b"BEA01"):
        raise BadInput(f"{opt} {path}: not an ISO 9660 / UDF image (no CD001 at byte 32769)")
    return path


def _disk_format(path: str) -> str:
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def _host(snapshot: str | None) -> Any:
    from doctor.host import LiveHost
    from doctor.snapshot import SnapshotHost

    return SnapshotHost(snapshot) if snapshot else LiveHost()


def plan_create(args: argparse.Namespace, facts: Any, source: Any) -> tuple[Any, list[str], list[str]]:
    """(DomainSpec, notes, failing host checks) from validated options and the host's facts."""
    from doctor.facts import normalize_pci_address
    from doctor.runner import run_checks
    from doctor.vm.domxml import CreatedVolume
    from doctor.vm.unit import kvm_hiding, passthrough_unit, rom_unreadable
    from doctor.vm.xml import DomainSpec, UnitFunction

    try:
        addr = normalize_pci_address(args.gpu)
    except ValueError as e:
        raise BadInput(f"--gpu: {e}") from e
    report = run_checks(facts, source, gpu=addr)  # BadInput where the address is not on this host
    gpu = facts.pci_devices()[addr]
    if not gpu.is_display:
        raise BadInput(f"--gpu {addr}: not a display device (class {gpu.class_hex}); give the GPU's function")
    unit = passthrough_unit(facts, gpu)
    ordered = [gpu] + [d for d in unit if d.address != gpu.address]
    kept = host_keeps(facts, [d.address for d in ordered])
    if kept:
        raise HostKeeps(f"refusing, even with --force: the host runs on {'; '.join(kept)}")
    hide = kvm_hiding(gpu)
    rom = rom_unreadable(facts, gpu)
    vol = CreatedVolume(args.pool, f"{args.name}-gpudoctor.qcow2") if args.disk_size else None
    spec = DomainSpec(
        args.name, args.memory, args.vcpus, args.firmware, tuple(UnitFunction(d.address, d.label()) for d in ordered),
        hide.needed, hide.reason, rom is not None, f"rom bar off: {rom} (QEMU would say `Cannot read device rom`)" if rom else "",
        args.iso, args.disk, _disk_format(args.disk) if args.disk else "qcow2", vol,
        None if args.network == "none" else args.network, args.virt_type,
    )
    notes = [f"passthrough unit: {', '.join(d.address for d in ordered)} (one multifunction device in the guest)",
             f"KVM {'hidden' if hide.needed else 'not hidden'}: {hide.reason}"]
    if rom:
        notes.append(f"<rom bar='off'/> on {gpu.address}: {rom}")
    failing = []
    for r in report.results:
        cid = r.result.check_id
        if r.result.status != Status.FAIL or cid.startswith(NOT_HOST_CHECKS):
            continue
        if args.virt_type == "qemu" and cid in NOT_FOR_TCG:
            notes.append(f"{cid} fails, not needed for this VM: --virt-type qemu runs it under TCG, without KVM")
        elif cid in MOOT_WITH_MANAGED:
            notes.append(f"{cid} fails, not needed for this VM: libvirt binds the unit to vfio-pci when it starts")
        else:
            failing.append(f"{cid}: {r.result.summary}")
    return spec, notes, failing


class HostKeeps(DoctorError):
    exit_code = 1


def host_keeps(facts: Any, addrs: list[str]) -> list[str]:
    """Functions of the unit the host runs on (a mounted filesystem, a configured interface, its only
    display: doctor.passthrough.host_keeps): a managed hostdev would take them when the VM starts."""
    from doctor.passthrough import host_keeps as keeps

    kept = keeps(facts)
    return [kept[a].why for a in addrs if a in kept and kept[a].certain]


def cmd_create(args: argparse.Namespace) -> int:
    from doctor.facts import HostFacts
    from doctor.vm.xml import build_xml

    valid_name(args.name)
    _range("--memory", args.memory, MEMORY_MIB, "MiB")
    _range("--vcpus", args.vcpus, VCPUS, "vCPUs")
    if args.disk_size is not None:
        _range("--disk-size", args.disk_size, DISK_GIB, "GiB")
    if args.iso:
        args.iso = _iso("--iso", args.iso)
    if args.disk:
        args.disk = _regular_file("--disk", args.disk)
    if args.network != "none" and not NAME_RE.fullmatch(args.network):
        raise BadInput(f"--network {args.network!r}: not a libvirt network name")
    if args.snapshot and args.apply and not args.connect.startswith("test:///"):
        raise BadInput("--snapshot plans only (or applies to libvirt's test:/// driver): a recorded host's GPU is not here")
    if args.start and not args.apply:
        raise BadInput("--start needs --apply --yes")
    host = _host(args.snapshot)
    try:
        facts = HostFacts(host)
        spec, notes, failing = plan_create(args, facts, host.source_info())
        xml = build_xml(spec)
        satisfied = satisfied_lines(xml, facts)
    finally:
        close = getattr(host, "close", None)
        if close:
            close()
    print(xml, end="")
    for n in notes:
        print(f"# {n}")
    for line in satisfied:
        print(f"# {line}")
    if failing:
        print(f"gpudoctor: {'--force: ' if args.force else ''}host checks fail for {spec.unit[0].address}:", file=sys.stderr)
        for f in failing:
            print(f"  ✗ {f}", file=sys.stderr)
        if not args.force:
            print("gpudoctor: error: refusing to create a VM for a GPU whose host checks fail (fix them: gpudoctor fix --all; "
                  "or --force)", file=sys.stderr)
            return 1
    if not args.apply:
        print(f"Dry run: nothing was defined. Define it with: gpudoctor vm create {args.name} ... --apply --yes", file=sys.stderr)
        return 0
    if not args.yes:
        raise BadInput("--apply defines a domain that takes these devices from the host on start: add --yes")
    return apply_create(args, spec, xml)


def satisfied_lines(xml: str, facts: Any) -> list[str]:
    """The vm.* checks run on the domain being defined (the same functions `check` runs)."""
    from doctor.vm.domxml import parse_domain
    from doctor.vm.judge import judge_definition

    return [f"{st.glyph} {cid}: {summary}" for cid, st, summary in judge_definition(parse_domain(xml, "(new domain)"), facts)]


def apply_create(args: argparse.Namespace, spec: Any, xml: str) -> int:
    from doctor.vm import libvirt_api as lv

    conn = lv.connect(args.connect)
    if lv.lookup(conn, spec.name) is not None:
        raise BadInput(f"a domain named {spec.name} already exists at {args.connect} (remove it: gpudoctor vm cleanup {spec.name})")
    rec = lv.Record.for_domain(args.connect, spec.name)
    vol = spec.disk_volume
    if vol is not None:
        path = lv.create_volume(conn, vol, args.disk_size)
        rec.save([vol])
        print(f"created volume {vol.pool}/{vol.name} ({args.disk_size} GiB) at {path}")
    try:
        dom = lv.define(conn, xml)
    except Exception:
        if vol is not None:
            lv.delete_volume(conn, vol)
            rec.remove()
            print(f"deleted volume {vol.pool}/{vol.name} again: the domain was not defined", file=sys.stderr)
        raise
    print(f"defined {spec.name} at {args.connect}")
    if args.start:
        try:
            lv.start(dom)
        except lv.LibvirtFailed as e:
            print(f"gpudoctor: error: {e}\ngpudoctor: {spec.name} stays defined; `gpudoctor explain '<the error>'` says why, "
                  f"`gpudoctor vm cleanup {spec.name} --apply --yes` removes it", file=sys.stderr)
            return 1
        print(f"started {spec.name} ({lv.state_of(dom)}); serial console: virsh -c {args.connect} console {spec.name}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from doctor.vm import libvirt_api as lv

    valid_name(args.name)
    conn = lv.connect(args.connect)
    dom = lv.lookup(conn, args.name)
    if dom is None:
        raise BadInput(f"no domain named {args.name} at {args.connect}")
    d = lv.definition(dom)
    active = bool(dom.isActive())
    st = lv.state_of(dom)
    rec = lv.Record.for_domain(args.connect, args.name)
    vols, kept = lv.deletable_volumes(d, rec.load())
    deleting = {f"{v.pool}/{v.name}" for v in vols}
    steps = ([f"destroy {args.name} (now {st}): libvirt hands its managed host devices back to their drivers"] if active else [])
    steps.append(f"undefine {args.name}" + (f" and remove its NVRAM {d.nvram}" if d.nvram else " (and its NVRAM, if any)"))
    steps += [f"delete volume {v.pool}/{v.name} (gpudoctor created it for {args.name})" for v in vols]
    kept += [f"{src}: {'install ISO' if kind == 'cdrom' else 'a disk gpudoctor did not create'}: kept"
             for kind, src in d.disks if src not in deleting]
    for s in steps:
        print(f"  {s}")
    for k in kept:
        print(f"  keep: {k}")
    if not args.apply:
        print(f"Dry run: nothing was changed. Apply with: gpudoctor vm cleanup {args.name} --apply --yes", file=sys.stderr)
        return 0
    if not args.yes:
        raise BadInput("--apply destroys and undefines the domain: add --yes")
    if active:
        lv.destroy(dom)
        print(f"destroyed {args.name}")
    print(f"{lv.undefine(dom, d.nvram is not None)}: {args.name}")
    for v in vols:
        lv.delete_volume(conn, v)
        print(f"deleted volume {v.pool}/{v.name}")
    if vols:
        rec.remove()
    for line in driver_report(args.connect, [h.source for h in d.hostdevs]):
        print(line)
    return 0


def driver_report(uri: str, addrs: list[str]) -> list[str]:
    """Where each function's driver ended (managed hostdevs go back to the driver they had before start)."""
    if not addrs:
        return []
    if uri.startswith("test:"):
        return [f"{a}: not read (libvirt's test driver touches no device)" for a in addrs]
    if "://" in uri and not uri.split("://", 1)[1].startswith("/"):
        return [f"{a}: not read (the domain ran on a remote host)" for a in addrs]
    from doctor.host import LiveHost

    h = LiveHost()
    out = []
    for a in addrs:
        try:
            drv = h.link_name(f"/sys/bus/pci/devices/{a}/driver")
        except OSError as e:
            out.append(f"{a}: driver unknown ({e})")
            continue
        out.append(f"{a}: now on {drv or 'no driver'}")
    return out
