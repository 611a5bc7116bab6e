"""`gpudoctor vm getty NAME | --image PATH [--apply --yes]`: guest.serial_getty, and its fix guest_getty."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from doctor.errors import BadInput, DoctorError
from doctor.model import Status


def add_getty_parser(vs: Any) -> None:
    g = vs.add_parser("getty", help="is there a login on the guest's ttyS0 (read offline); --apply --yes enables one")
    g.add_argument("name", nargs="?", metavar="NAME", help="a shut-off domain (its first disk)")
    g.add_argument("--image", metavar="PATH", help="a guest disk image instead of a domain")
    g.add_argument("--connect", metavar="URI", default="qemu:///system")
    g.add_argument("--apply", action="store_true", help="enable serial-getty@ttyS0.service offline (journaled; gpudoctor undo)")
    g.add_argument("--yes", action="store_true")


class Refused(DoctorError):
    exit_code = 1


def _domain_image(args: argparse.Namespace) -> str:
    from doctor.vm import libvirt_api as lv
    from doctor.vm.args import valid_name

    valid_name(args.name)
    conn = lv.connect(args.connect)
    dom = lv.lookup(conn, args.name)
    if dom is None:
        raise BadInput(f"no domain named {args.name} at {args.connect}")
    if dom.isActive():
        raise Refused(f"{args.name} is {lv.state_of(dom)}: libguestfs refuses to open a live domain's disk read-write, and a "
                      "read of a running guest's disk is not consistent; shut it down first (virsh shutdown "
                      f"{args.name})")
    disks = [src for kind, src in lv.definition(dom).disks if kind == "disk"]
    if not disks:
        raise BadInput(f"{args.name} has no disk")
    src = disks[0]
    if src.startswith("/"):
        return src
    pool_name, vol = src.split("/", 1)
    try:
        return str(lv.pool(conn, pool_name).storageVolLookupByName(vol).path())
    except Exception as e:  # noqa: BLE001 - libvirt's own error, one line
        raise BadInput(f"{args.name}'s disk {src}: {e}") from e


def _image_in_use(image: str) -> str | None:
    """The running domain that has this image as a disk (read from libvirtd's status files), if any."""
    import os

    from doctor.facts import HostFacts
    from doctor.host import LiveHost
    from doctor.vm.domains import inventory

    try:
        inv = inventory(HostFacts(LiveHost()))
    except DoctorError:
        return None
    real = os.path.realpath(image)
    for d in inv.domains:
        if d.state and any(os.path.realpath(src) == real for _, src in d.disks if src.startswith("/")):
            return d.name
    return None


def cmd_getty(args: argparse.Namespace) -> int:
    from doctor.registry import check_func

    guest_serial_getty = check_func("guest.serial_getty")
    from doctor.facts import HostFacts
    from doctor.host import LiveHost
    from doctor.registry import Context
    from doctor.vm.args import regular_file as _regular_file
    from doctor.vm.guestfs import env_prefix, sniff_format

    if bool(args.name) == bool(args.image):
        raise BadInput("give a shut-off domain NAME or --image PATH (one of them)")
    image = _domain_image(args) if args.name else _regular_file("--image", args.image)
    if args.image:
        user = _image_in_use(image)
        if user:
            raise Refused(f"{image} is a disk of the running domain {user}: shut it down first")
    try:
        fmt = sniff_format(image)
    except (OSError, ValueError) as e:
        raise BadInput(f"{image}: {e}") from e
    opts = {"image": image, "image_format": fmt, "guestfs_env": " ".join(env_prefix()), "vm": args.name or ""}
    v = guest_serial_getty(Context(HostFacts(LiveHost()), None, opts))
    print(f"{v.status.glyph} guest.serial_getty: {v.summary}")
    for ev in v.evidence:
        print(f"    {ev.source}: {ev.value}")
    for m in v.messages:
        print(f"    {m}")
    if v.status != Status.FAIL:
        return 0 if v.status in (Status.PASS, Status.NOT_APPLICABLE, Status.WARN) else 1
    if v.remedy is None or v.remedy.fix_id != "guest_getty":
        return 1
    from remediations.guest_getty import plan

    p = plan(image, fmt)
    for a in p.actions:
        print(f"  {a.describe()}\n    {a.preview()}\n    undo: {a.undo_text()}")
    if not args.apply:
        print(f"Dry run: nothing was changed. Apply with: gpudoctor vm getty {args.name or '--image ' + image} --apply --yes",
              file=sys.stderr)
        return 1
    if not args.yes:
        raise BadInput("--apply writes into the guest image: add --yes")
    from doctor.journal import Journal, apply_plan
    from doctor.system import LiveSystem

    sysm = LiveSystem()
    j = Journal(sysm)
    try:
        for line in apply_plan(p, sysm, j):
            print(line)
    except DoctorError as e:
        print(f"gpudoctor: error: {e}\ngpudoctor: rolled back (journal {j.path})", file=sys.stderr)
        return 1
    print(f"Applied as fix {j.fix_id} (undo: gpudoctor undo {j.fix_id})")
    after = guest_serial_getty(Context(HostFacts(LiveHost()), None, opts))
    print(f"{after.status.glyph} guest.serial_getty: {after.summary}")
    return 0 if after.status == Status.PASS else 1
