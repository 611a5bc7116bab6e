"""What goes to a guest with a GPU, and what the card needs from the guest's definition.

Pure decisions over Facts, shared by `vm create` (doctor/vm/cli.py) and the vm.* checks
(checks/check_vm_guest.py): the XML a fix writes and the verdict a check gives cannot drift.
"""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured, OptionRomUnreadable
from doctor.facts import Facts, PciDevice, parse_option_rom


def passthrough_unit(facts: Facts, gpu: PciDevice) -> list[PciDevice]:
    """Every function that goes to the guest with `gpu`: its passthrough unit (doctor.passthrough:
    the card's own audio, USB-C and serial functions; never an APU's SoC functions)."""
    from doctor.passthrough import passthrough_unit as unit

    u = unit(facts, gpu)
    if u.groups_unknown is not None:  # unknown, not absent: what shares the groups decides the unit's safety
        raise u.groups_unknown
    return list(u.functions)


# NVIDIA's consumer drivers before R465 (March 2021) stopped with Code 43 when they saw a
# hypervisor (the KVM CPUID signature) on a GeForce / Quadro / TITAN card; R465+ allow it. A guest
# may still install an older driver, so we hide KVM for these cards. Datacenter cards (Tesla, A/H/L
# series) were always supported in VMs, and AMD's driver never checked: no hiding there (hiding KVM
# costs the guest its paravirtual clock and spinlock hints).
_DATACENTER = re.compile(r"\b(Tesla|A100|A800|A30|A40|A16|A10G?|A2|H100|H200|H800|L4|L40S?|GH200|B200|Data ?Center)\b", re.I)
_CONSUMER = re.compile(r"\b(GeForce|Quadro|TITAN|NVS|RTX)\b", re.I)


@record(frozen=True)
class HidingNeed:
    needed: bool
    reason: str


def kvm_hiding(gpu: PciDevice) -> HidingNeed:
    """Whether the guest must hide KVM (`<kvm><hidden state='on'/>` + a Hyper-V `vendor_id`)."""
    if gpu.vendor != "10de":
        return HidingNeed(False, f"{gpu.ident} is not an NVIDIA card: its guest driver does not check for a hypervisor")
    name = gpu.name or ""
    if _DATACENTER.search(name) and not _CONSUMER.search(name):
        return HidingNeed(False, f"{name}: an NVIDIA datacenter card, supported in VMs by every driver")
    what = name or f"NVIDIA {gpu.ident} (model name unknown)"
    return HidingNeed(True, f"{what}: NVIDIA's GeForce/Quadro drivers before 465 stop with Code 43 when they see "
                            "KVM; hiding KVM and setting a Hyper-V vendor_id lets any driver version load")


def rom_unreadable(facts: Facts, gpu: PciDevice) -> str | None:
    """Why the card's ROM cannot be given to the guest (gpu.rom_readable's unreadable / empty /
    invalid cases, where QEMU says `Cannot read device rom`), or None where it is readable or unknown."""
    try:
        data = facts.option_rom(gpu.address)
    except OptionRomUnreadable as e:
        return e.reason
    except (FactUnknown, NotCaptured):
        return None
    if not data:
        return "the ROM read back empty"
    try:
        parse_option_rom(data)
    except ValueError as e:
        return f"the ROM image is not valid: {e}"
    return None
