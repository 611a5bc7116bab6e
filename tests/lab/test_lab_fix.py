"""gpudoctor fix in the lab, on real kernels: the notes' partly bound card (Intel and AMD) is
made viable by `fix --all --apply --yes`, QEMU then starts where it said `group N is not
viable`, and `undo` gives every function back to its driver and every file back byte for byte.
The shared-group scenario: fix binds nothing and explains why.

The guest's root is a tmpfs overlay over this machine's userland: whatever fix writes under
/etc lands in the overlay and vanishes with the guest, never on the machine running the tests.
"""

from __future__ import annotations

import json

import pytest

from lab import CARD, CARD_FUNCTIONS

pytestmark = pytest.mark.lab

FILES = ("/etc/modprobe.d/vfio.conf", "/etc/modules-load.d/vfio-pci.conf", "/etc/initramfs-tools/modules",
         "/etc/default/grub")


def scenarios(*names):
    return pytest.mark.parametrize("guest", list(names), indirect=True)


def digests(guest) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for p in FILES:
        r = guest.run(["sh", "-c", f"sha256sum {p} 2>/dev/null || echo absent"], timeout=30)
        out[p] = r.stdout.split()[0] if r.stdout.strip() else "absent"
    return out


def check_json(guest) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = guest.gpudoctor(["check", "--json", "--gpu", CARD])
    doc = json.loads(r.stdout)
    return {x["id"]: x["status"] for x in doc["results"]}


@scenarios("intel-partial", "amd-partial")
def test_fix_makes_the_partial_group_viable_and_undo_restores_it(guest) -> None:  # type: ignore[no-untyped-def]
    before_drivers = {a: guest.drivers().get(a) for a in CARD_FUNCTIONS}
    before_files = digests(guest)
    assert check_json(guest)["vfio.group_viable"] == "fail"
    q = guest.try_qemu_vfio()
    assert "is not viable" in q.stdout + q.stderr

    plan = guest.gpudoctor(["fix", "--all", "--json", "--gpu", CARD])
    doc = json.loads(plan.stdout)
    binds = [a for a in doc["actions"] if a["kind"] == "bind"]
    assert {b["describe"].split()[1] for b in binds} == {"0000:01:00.2", "0000:01:00.3"}
    assert all("new_id" not in a["preview"] for a in doc["actions"])

    applied = guest.gpudoctor(["fix", "--all", "--apply", "--yes", "--json", "--gpu", CARD])
    out = json.loads(applied.stdout)
    assert out["applied"] is True, applied.stderr
    outcome = {o["check_id"]: o["outcome"] for o in out["outcomes"]}
    assert outcome["vfio.group_viable"] == "fixed now"
    # the ids and early-load files take effect at the next boot: never reported as fixed
    assert outcome.get("vfio.binding_persistent", "pending reboot") == "pending reboot"
    assert all(v != "fixed now" for k, v in outcome.items() if k in ("vfio.ids_configured", "vfio.early_load"))

    drivers = guest.drivers()
    assert all(drivers.get(a) == "vfio-pci" for a in CARD_FUNCTIONS), drivers
    assert check_json(guest)["vfio.group_viable"] == "pass"
    q = guest.try_qemu_vfio()
    assert "is not viable" not in q.stdout + q.stderr and q.rc == 0, q.stderr[-800:]

    u = guest.gpudoctor(["undo"])
    assert u.rc == 0, u.stderr
    assert {a: guest.drivers().get(a) for a in CARD_FUNCTIONS} == before_drivers
    assert digests(guest) == before_files
    assert check_json(guest)["vfio.group_viable"] == "fail"


NIC = "0000:02:00.0"  # the e1000e in the card's IOMMU group (intel-shared-group)


@scenarios("intel-shared-group")
def test_fix_binds_nothing_in_a_shared_group_and_says_why(guest) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: with the default route on the NIC that shares the card's group, `fix --all
    --apply --yes` writes nothing that names the NIC (no ids= with its id, no softdep before
    e1000e), and loading e1000e again (what udev does at the next boot) leaves the NIC on e1000e,
    so the route can be set up again."""
    iface = guest.run(f"ls /sys/bus/pci/devices/{NIC}/net", timeout=30, check=True).stdout.split()[0]
    guest.run(f"ip link set {iface} up && ip route add default dev {iface}", timeout=30, check=True)
    nic_id = guest.run(f"cat /sys/bus/pci/devices/{NIC}/vendor /sys/bus/pci/devices/{NIC}/device", timeout=30,
                       check=True).stdout.split()
    nic_ident = f"{nic_id[0][2:]}:{nic_id[1][2:]}"
    before = guest.drivers()
    r = guest.gpudoctor(["fix", "--all", "--json", "--gpu", CARD])
    doc = json.loads(r.stdout)
    assert not [a for a in doc["actions"] if a["kind"] == "bind"]
    why = " ".join(x["why"] for x in doc["not_fixable"])
    assert NIC in why and "no automatic fix" in why and "carries the default route" in why, why
    applied = guest.gpudoctor(["fix", "--all", "--apply", "--yes", "--json", "--gpu", CARD])
    assert guest.drivers() == before
    assert applied.rc in (0, 1)
    written = guest.run("cat /etc/modprobe.d/*.conf /etc/initramfs-tools/modules /etc/default/grub "
                        "/etc/initramfs-tools/scripts/init-top/* 2>/dev/null; true", timeout=30).stdout
    assert nic_ident not in written and "softdep e1000e" not in written and NIC not in written, written
    # the next boot: udev loads e1000e (and whatever softdep modprobe.d now asks for first)
    guest.run("modprobe -r e1000e && modprobe e1000e && sleep 1", timeout=60, check=True)
    assert guest.drivers().get(NIC) == "e1000e"
    iface = guest.run(f"ls /sys/bus/pci/devices/{NIC}/net", timeout=30, check=True).stdout.split()[0]
    guest.run(f"ip link set {iface} up && ip route add default dev {iface}", timeout=30, check=True)
    assert iface in guest.run("cat /proc/net/route", timeout=30, check=True).stdout
    guest.gpudoctor(["undo"])
