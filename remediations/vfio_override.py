"""vfio-pci for one card by PCI address at every boot, when an `ids=` line would also take an
identical device the host keeps (a second card of the same model, or q35's VGA beside a VGA
card with the same id).

initramfs-tools runs scripts/init-top before it starts udev, so a driver_override written
there is in place before any modular driver can bind; loading vfio-pci right after binds
exactly the devices whose override names it (vfio-pci's own id table matches nothing else).
The identical device keeps its driver. Built-in drivers bind before any script runs: the
doctor says so (vfio.early_load) rather than promise them.

dracut and mkinitcpio have no equivalent file gpudoctor writes yet: the plan explains the
manual way (vfio.ids_unique_to_card's remedy)."""

from __future__ import annotations

from doctor.facts import Facts, PciDevice
from doctor.host import Host
from doctor.plan import INITRAMFS, Action, FileEdit

SCRIPT = "/etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override"


def script_text(addresses: list[str]) -> str:
    addrs = " ".join(addresses)
    return f"""#!/bin/sh
# Written by gpudoctor (gpudoctor undo removes it): these PCI functions go to vfio-pci at boot,
# by address, so that identical devices stay with the host (no vfio-pci ids= line).
# init-top runs before udev loads any driver.
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
for dev in {addrs}; do
    if [ -w "/sys/bus/pci/devices/$dev/driver_override" ]; then
        echo vfio-pci > "/sys/bus/pci/devices/$dev/driver_override"
    else
        echo "gpudoctor-vfio-override: no PCI device $dev" >&2
    fi
done
modprobe -q vfio-pci || echo "gpudoctor-vfio-override: modprobe vfio-pci failed" >&2
exit 0
"""


def plan_override(facts: Facts, host: Host, devices: list[PciDevice], checks: tuple[str, ...]) -> tuple[list[Action], str | None]:
    """The init-top script for *devices* (merged with the addresses of one gpudoctor wrote
    before), or why there is none."""
    try:
        tool = facts.early_load().initramfs_tool
    except Exception:  # noqa: BLE001 - FactUnknown, NotCaptured
        tool = "unknown"
    if tool != "initramfs-tools":
        return [], (f"per-device binding at boot is written automatically for initramfs-tools only (this host: {tool}); "
                    "see vfio.ids_unique_to_card for the manual way")
    old = host.read_text_or_none(SCRIPT)
    addrs = [d.address for d in devices]
    if old is not None:
        from doctor.facts import parse_boot_overrides

        prev = [o.address for o in parse_boot_overrides(old, SCRIPT, "initramfs")]
        addrs = list(dict.fromkeys(prev + addrs))
    new = script_text(addrs)
    if old == new:
        return [], None
    return [FileEdit(checks, f"vfio-pci for {', '.join(d.address for d in devices)} by address at boot (driver_override in the "
                             "initramfs, before udev): an ids= line would also take the identical device(s)",
                     INITRAMFS, boot_path=True, path=SCRIPT, old=old.encode() if old is not None else None,
                     new=new.encode(), mode=0o755)], None
