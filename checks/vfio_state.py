"""What the vfio.* checks read about the passthrough unit's binding: pci-stub, a built-in vfio-pci, which
driver won at this boot, where vfio-pci is loaded early, the override steps. Kept apart from
check_vfio.py, which holds the checks themselves."""

from __future__ import annotations

import re

from checks.common import (
    VIABLE_DRIVERS,
    IdsConfig,
    cmdline_edit_steps,
    endpoints,
    ids_config,
    initramfs_update_command,
    pci_evidence,
    try_fact,
)
from doctor.checkapi import Context
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts import Facts, ModuleState, PciDevice
from doctor.model import (
    CmdlineEdit,
    Evidence,
    Remedy,
    Status,
    Verdict,
    VfioIds,
    verdict,
)

_STUB_ARG = re.compile(r"(?<!\S)pci[-_]stub\.ids=\S*")


def on_pci_stub(ctx: Context, eps: list[PciDevice], want: list[str]) -> Verdict | None:
    """Functions of the unit shown bound to pci-stub: they are not on vfio-pci, whatever the modprobe.d files say
    (pci-stub claimed them first at this boot). QEMU's `-device vfio-pci` cannot take them (`error getting device from
    group N` / `Verify all devices in group N are bound to vfio-<bus> or pci-stub`); libvirt's managed hostdevs rebind
    them itself. The correction: the same ids to vfio-pci, pci-stub.ids= off the command line."""
    stubbed = [d for d in eps if d.driver_known and d.driver == "pci-stub"]
    if not stubbed:
        return None
    facts = ctx.facts
    now = try_fact(facts.cmdline)
    ev = [pci_evidence(d) for d in stubbed]
    tokens = _STUB_ARG.findall(now.raw) if now is not None else []
    if now is not None and tokens:
        ev.append(Evidence(now.source, " ".join(tokens)))
    add = [f"vfio-pci.ids={','.join(want)}"]
    steps = cmdline_edit_steps(facts, add, tokens) if tokens else [
        f"echo 'options vfio-pci ids={','.join(want)}' | sudo tee -a /etc/modprobe.d/vfio.conf", initramfs_update_command(facts),
        "# and take the ids off pci-stub wherever they are given to it (pci-stub.ids= on the command line, options pci_stub ids=)"]
    where = f" ({' '.join(tokens)} on the running command line)" if tokens else ""
    return verdict(
        Status.FAIL, f"{', '.join(d.address for d in stubbed)} on pci-stub, not vfio-pci{where}", ev,
        [f"{', '.join(sorted({d.ident for d in stubbed}))} handed to pci-stub"
         + (f" ({now.source})" if now is not None and tokens else "")
         + f": pci-stub keeps the host drivers off (group {stubbed[0].iommu_group or 'N'} stays viable), but QEMU's vfio-pci device "
         "needs the device on vfio-pci: by hand QEMU fails with `vfio: error getting device from group N` "
         "(libvirt's managed='yes' hostdevs rebind it to vfio-pci at start)",
         f"correction: replace pci-stub.ids= by vfio-pci.ids={','.join(want)} (or `options vfio-pci ids={','.join(want)}`)"],
        Remedy(f"Give the ids to vfio-pci instead of pci-stub: vfio-pci.ids={','.join(want)}" + (f", and remove {' '.join(tokens)}" if tokens else ""),
               tuple(steps), CmdlineEdit(add=tuple(add), remove=tuple(tokens)) if tokens else VfioIds(tuple(want))),
    )


def bound_at_runtime(facts: Facts, gpu: PciDevice, eps: list[PciDevice]) -> bool:
    """Every function of the unit is on vfio-pci now and nothing else in its group blocks it: QEMU
    accepts the group until the next boot. One fact (the binding is not made at boot), one severity:
    WARN, as vfio.binding_persistent says."""
    from doctor.errors import FactUnknown, NotCaptured

    try:
        if gpu.iommu_group is None or not eps or any(d.driver != "vfio-pci" for d in eps):
            return False
        return all(d.driver is None or d.driver in VIABLE_DRIVERS for d in endpoints(facts, gpu))
    except (FactUnknown, NotCaptured):  # not known to be accepted: the stricter verdict stands
        return False


def ids_grab_twins(cfg: IdsConfig, twins: dict[str, list[PciDevice]]) -> bool:
    """An ids= line that also names a twin's id grabs the twin whatever the overrides say."""
    named = set(cfg.ids) | set(cfg.cmdline_now) | set(cfg.cmdline_next or ())
    return any(i in named for i in twins)


def early_load_unknown(facts: Facts) -> FactUnknown | None:
    """Why the early-load configuration is unknown (None: it is known)."""
    try:
        facts.early_load()
    except (FactUnknown, NotCaptured) as e:
        return e if isinstance(e, FactUnknown) else FactUnknown("early module loading configuration", str(e))
    return None


def early_sources(facts: Facts) -> tuple[list[Evidence], bool, bool]:
    """(evidence, in initramfs config, in modules-load.d) for vfio-pci."""
    el = try_fact(facts.early_load)
    ev: list[Evidence] = []
    initramfs = modules_load = False
    if el is None:
        return ev, False, False
    for ln in el.modules_load:
        if re.search(r"\bvfio[-_]pci\b", ln.text):
            modules_load = True
            ev.append(Evidence(ln.where, ln.text))
    for ln in el.initramfs:
        if re.search(r"\bvfio[-_]pci\b", ln.text):
            initramfs = True
            ev.append(Evidence(ln.where, ln.text))
    return ev, initramfs, modules_load


def vfio_builtin(mods: ModuleState | None) -> bool | None:
    """Whether vfio-pci is built into the kernel: modules.builtin; not built in where it is loaded as a module, or where
    /sys/module is known and has no vfio_pci (a built-in vfio-pci has parameters, so it is there); None: not shown."""
    if mods is None:
        return None
    b = mods.is_builtin("vfio_pci")
    if b is not None:
        return b
    if "vfio_pci" in mods.loaded or (mods.sysfs and "vfio_pci" not in mods.sysfs):
        return False
    return None


def native_won(facts: Facts, eps: list[PciDevice], mods: ModuleState | None) -> str | None:
    """'ADDR on DRIVER, ...' where a function whose id vfio-pci is given (vfio-pci.ids= on the running command line, or
    modprobe.d options while vfio-pci is a loadable module) is on its native driver: vfio-pci did not claim it first
    at this boot. None where none is. FactUnknown where the ids are only in modprobe.d and whether vfio-pci is built in
    (a built-in vfio-pci never reads them) is not known."""
    cfg = ids_config(facts)
    on_native = [d for d in eps if d.driver_known and d.driver is not None and d.driver not in VIABLE_DRIVERS]
    held = [d for d in on_native if d.ident in set(cfg.cmdline_now)]
    by_modprobe = [d for d in on_native if d.ident in set(cfg.ids) and d not in held]
    if by_modprobe:
        builtin = vfio_builtin(mods)
        if builtin is False:
            held += by_modprobe
        elif not held and builtin is None:
            raise FactUnknown("whether vfio-pci is built into the kernel (then it loads first, but never reads modprobe.d's ids)",
                              "not in the evidence", "grep vfio /lib/modules/$(uname -r)/modules.builtin; lsmod | grep vfio")
    return ", ".join(f"{d.address} on {d.driver}" for d in held) or None


def override_steps(devs: list[PciDevice]) -> list[str]:
    addrs = " ".join(d.address for d in devs)
    return [
        "# now (lost at reboot):",
        *[f"echo vfio-pci | sudo tee /sys/bus/pci/devices/{d.address}/driver_override" for d in devs],
        *[f"[ -e /sys/bus/pci/devices/{d.address}/driver ] && echo {d.address} | sudo tee /sys/bus/pci/devices/{d.address}/driver/unbind"
          for d in devs],
        *[f"echo {d.address} | sudo tee /sys/bus/pci/drivers_probe" for d in devs],
        "# at every boot, before udev loads any driver (`gpudoctor fix` writes this for initramfs-tools):",
        f"printf '#!/bin/sh\\n[ \"$1\" = prereqs ] && exit 0\\nfor d in {addrs}; do echo vfio-pci > /sys/bus/pci/devices/$d/driver_override; done\\n"
        "modprobe vfio-pci\\n' | sudo tee /etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override",
        "sudo chmod +x /etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override && sudo update-initramfs -u",
        "# dracut / mkinitcpio: the same loop in a script run from `install vfio-pci ...` (modprobe.d), included in the image "
        "(dracut: install_items+=; mkinitcpio: FILES=())",
    ]
