"""vfio-pci: ids, early loading, the group's binding now and after a reboot."""

from __future__ import annotations

import re

from checks.common import (
    VIABLE_DRIVERS,
    boot_overrides,
    configured_ids,
    driver_text,
    endpoints,
    identical_devices,
    ids_config,
    ids_line,
    initramfs_update_command,
    native_modules,
    no_group_verdict,
    observed,
    observed_evidence,
    override_evidence,
    pci_evidence,
    pci_where,
    softdep_line,
    stub_held_ids,
    try_fact,
    unit_functions,
    unknown_driver,
    wanted_ids,
)
from checks.vfio_state import (
    bound_at_runtime,
    early_load_unknown,
    early_sources,
    ids_grab_twins,
    native_won,
    on_pci_stub,
    override_steps,
    vfio_builtin,
)
from doctor.bootstrategy import boot_strategy
from doctor.checkapi import Context, check
from doctor.errors import FactUnknown
from doctor.facts import PciDevice
from doctor.model import (
    BindByAddress,
    EarlyLoad,
    Evidence,
    PciBind,
    Remedy,
    Status,
    Verdict,
    VfioIds,
    verdict,
)


def _group_or_na(ctx: Context) -> tuple[PciDevice, list[PciDevice]] | Verdict:
    gpu = ctx.gpu
    assert gpu is not None
    if ctx.facts.group_members(gpu) is None:  # FactUnknown where the source does not show the group
        return no_group_verdict(ctx.facts, gpu)
    return gpu, endpoints(ctx.facts, gpu)


@check("vfio.ids_configured", "vfio-pci ids cover every function of the GPU's passthrough unit", per_gpu=True)
def vfio_ids_configured(ctx: Context) -> Verdict:
    """`options vfio-pci ids=` (modprobe.d) or `vfio-pci.ids=` (command line) holds the
    vendor:device of every function of the passthrough unit (the GPU and its own audio/USB-C
    functions, doctor.passthrough), once, in one line. Nothing else in the group belongs there."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    eps = unit_functions(facts, gpu)
    want = wanted_ids(eps)
    stubbed = on_pci_stub(ctx, eps, want)
    if stubbed is not None:
        return stubbed
    cfg = ids_config(facts)
    mods = try_fact(facts.modules)
    builtin = mods.is_builtin("vfio_pci") if mods else None
    ev = [Evidence(ln.where, ln.text) for ln in cfg.lines]
    if cfg.cmdline_now:
        ev.append(Evidence(cfg.cmdline_source, "vfio-pci.ids=" + ",".join(cfg.cmdline_now)))
    if cfg.cmdline_next:
        ev.append(Evidence("next boot command line", "vfio-pci.ids=" + ",".join(cfg.cmdline_next)))
    ev += [Evidence(pci_where(d), f"{d.address} [{d.class_hex}] {d.ident}") for d in eps]
    correct = ids_line(eps)
    msgs: list[str] = []
    modprobe_ids = list(cfg.ids)
    usable_modprobe = not builtin  # options in modprobe.d are dead for a built-in vfio-pci
    if builtin and modprobe_ids:
        msgs.append("vfio-pci is built into this kernel (modules.builtin): modprobe.d options are never read; "
                    "the ids must go on the kernel command line as vfio-pci.ids=")
    configured = set((modprobe_ids if usable_modprobe else []) + list(cfg.cmdline_next or cfg.cmdline_now))
    missing = [i for i in want if i not in configured]
    others_on_host = {d.ident for d in (try_fact(facts.pci_devices) or {}).values()}
    stale = sorted({i for i in configured if i not in want and i not in others_on_host})
    dup = len(cfg.lines) > 1
    dup_ids = sorted({i for i in modprobe_ids if modprobe_ids.count(i) > 1})
    # replace any ids= line, keep everything else (the softdeps vfio.early_load adds): what remediations.vfio_conf writes
    remedy_steps = ("sudo sed -i '/^[[:space:]]*options[[:space:]]\\+vfio[-_]pci[[:space:]].*ids=/d' /etc/modprobe.d/vfio.conf 2>/dev/null; "
                    f"echo '{correct}' | sudo tee -a /etc/modprobe.d/vfio.conf", initramfs_update_command(facts)) if not builtin else (
        f"add vfio-pci.ids={','.join(want)} to the kernel command line",)
    remedy = Remedy(
        f"Use exactly this line (all {len(want)} function id(s) of the card, derived from this host):\n  {correct}",
        remedy_steps, VfioIds(tuple(want)),
    )
    twins = identical_devices(facts, eps)
    ov = boot_overrides(facts)
    if eps and all(d.address in ov for d in eps) and not ids_grab_twins(cfg, twins):
        ev += override_evidence(ov, eps)
        return verdict(Status.PASS, f"all {len(eps)} function(s) go to vfio-pci by address at boot (driver_override, "
                       f"{', '.join(sorted({ov[d.address].file for d in eps}))})" + ("; no ids= line, so identical devices stay" if twins else ""),
                       ev, msgs)
    if twins and not (cfg.ids or cfg.cmdline_now or cfg.cmdline_next):
        names = ", ".join(f"{t.address} ({i})" for i, ts in twins.items() for t in ts)
        return verdict(
            Status.WARN, f"no ids configured, and none should be: an ids= line would also take {names} from the host",
            ev, msgs + ["Bind this card per device with driver_override instead (see vfio.ids_unique_to_card)."],
            Remedy("Do not use vfio-pci ids here: set driver_override for the card's functions by address at every boot, "
                   "before udev loads drivers (initramfs-tools: a scripts/init-top script; see vfio.ids_unique_to_card).",
                   params=VfioIds()),
        )
    held = {i: w for i, w in stub_held_ids(facts).items() if i in missing}
    if held:
        msgs.append(f"{', '.join(held)} handed to pci-stub ({', '.join(sorted({x for w in held.values() for x in w}))}): pci-stub keeps the "
                    "host drivers off (the group is viable), but QEMU's vfio-pci device needs the device on vfio-pci; move "
                    "these ids to vfio-pci.ids= / `options vfio-pci ids=` and drop pci-stub.ids")
    if missing:
        summary = f"vfio-pci ids miss {', '.join(missing)}"
        if stale:
            summary += f"; configured {', '.join(stale)} match no device on this host (typo?)"
        if not configured:
            summary = f"no vfio-pci ids configured for {gpu.address}'s group ({', '.join(want)})"
        if not configured and bound_at_runtime(facts, gpu, eps):
            # bound by hand, nothing configured: works until the next boot (a wrong ids= line stays a FAIL:
            # at the next boot it hands over part of the unit, which QEMU refuses)
            return verdict(Status.WARN, summary + RUNTIME_NOTE, ev, msgs, remedy)
        return verdict(Status.FAIL, summary, ev, msgs, remedy)
    if builtin and not (cfg.cmdline_next or cfg.cmdline_now):
        return verdict(Status.FAIL, "ids are only in modprobe.d, which a built-in vfio-pci never reads", ev, msgs, remedy)
    if dup:
        msgs.append(f"{len(cfg.lines)} `options vfio-pci ids=` lines: modprobe passes all of them and the last ids= wins")
        return verdict(Status.FAIL, f"conflicting vfio-pci ids lines in {', '.join(sorted({ln.file for ln in cfg.lines}))}", ev, msgs, remedy)
    if builtin is None and not set(want) <= set(cfg.cmdline_next or cfg.cmdline_now):
        # the ids stand on modprobe.d, which a built-in vfio-pci never reads
        raise FactUnknown("whether vfio-pci is built into the kernel (modprobe.d options are dead for a built-in vfio-pci)",
                          "not in the evidence", "grep vfio /lib/modules/$(uname -r)/modules.builtin")
    if stale or dup_ids:
        if stale:
            msgs.append(f"ids that match no device on this host: {', '.join(stale)}")
        if dup_ids:
            msgs.append(f"ids listed twice: {', '.join(dup_ids)}")
        return verdict(Status.WARN, "every function covered, but the ids line has stale or repeated entries", ev, msgs, remedy)
    return verdict(Status.PASS, f"vfio-pci ids cover all {len(want)} function(s): {','.join(want)}", ev, msgs)


RUNTIME_NOTE = "; bound to vfio-pci now (QEMU accepts the group), a reboot loses it"


@check("vfio.early_load", "vfio-pci loads before the native drivers", per_gpu=True)
def vfio_early_load(ctx: Context) -> Verdict:
    """vfio-pci in the initramfs, or `softdep <driver> pre: vfio-pci` for every native
    driver of the group's functions; vfio_pci present and claiming the ids in the log."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    eps = unit_functions(facts, gpu)
    ev, in_initramfs, in_modules_load = early_sources(facts)
    mp = facts.modprobe_config()
    mods = try_fact(facts.modules)
    natives: dict[str, list[str]] = {}
    for d in eps:
        for m in native_modules(d):
            natives.setdefault(m.replace("-", "_"), []).append(d.address)
    softdeps = {ln.module: ln for ln in mp if ln.command == "softdep" and re.search(r"\bpre:.*\bvfio[-_]pci\b", ln.rest)}
    for m, ln in softdeps.items():
        if m in natives:
            ev.append(Evidence(ln.where, ln.text))
    missing_softdep = [m for m in natives if m not in softdeps]
    msgs: list[str] = []
    if mods is not None:
        present = mods.present("vfio_pci")
        ev.append(Evidence("/sys/module", "vfio_pci present" if present else "vfio_pci not loaded"))
        builtin_natives = [m for m in natives if mods.is_builtin(m)]
        if builtin_natives:
            msgs.append(
                "built into the kernel, so they bind before any module loads (neither ids= nor softdep can win at boot): "
                + ", ".join(f"{m} ({', '.join(natives[m])})" for m in builtin_natives)
            )
    log = try_fact(facts.kernel_log)
    if log is not None:
        for ln in log.grep(r"vfio_pci: add \[")[:8]:
            ev.append(Evidence(log.source, ln.strip()))
    el = try_fact(facts.early_load)
    strat = boot_strategy(facts)
    steps = strat.early_load_steps()
    steps[-1:-1] = [f"echo '{softdep_line(m)}' | sudo tee -a /etc/modprobe.d/vfio.conf" for m in missing_softdep]
    remedy = Remedy("Load vfio-pci before the native drivers: put it in the initramfs and add a softdep for each native driver.",
                    tuple(steps), EarlyLoad(tuple(missing_softdep)))
    unseen = [d for d in eps if not d.driver_known and not d.kernel_modules]
    # on vfio-pci with no module listed: its native driver is not shown (vfio.binding_persistent reads it the same way)
    hidden = [d for d in eps if d.driver == "vfio-pci" and not native_modules(d)]
    if not in_initramfs and unseen and (natives and not missing_softdep or not natives and in_modules_load):
        raise unknown_driver(unseen[0])  # its native driver may need a softdep too; none competes is not shown
    if in_initramfs or (natives and not missing_softdep and not hidden):
        how = "in the initramfs configuration" if in_initramfs else "softdep for every native driver"
        if missing_softdep and in_initramfs:
            msgs.append("no softdep for " + ", ".join(missing_softdep) + ": fine while those drivers are not in the initramfs too")
        return verdict(Status.PASS, f"vfio-pci loads early ({how})", ev, msgs)
    if not natives and not hidden and (in_modules_load or in_initramfs):
        return verdict(Status.PASS, "vfio-pci is loaded at boot and no native driver competes for the group", ev, msgs)
    if natives and not missing_softdep:
        raise unknown_driver(hidden[0])  # a softdep for every native shown, but this function's native is not shown
    if el is None:
        facts.early_load()  # unknown, not absent: raises the FactUnknown that says what would settle it
    if in_modules_load:
        return verdict(
            Status.WARN,
            "vfio-pci only in modules-load.d: it loads after udev, so "
            + (", ".join(f"{m} ({', '.join(a)})" for m, a in natives.items() if m in missing_softdep) or "native drivers")
            + " can claim their functions first",
            ev, msgs, remedy,
        )
    won = native_won(facts, eps, mods)
    builtin = vfio_builtin(mods)
    if builtin:
        if won:
            return verdict(Status.FAIL, f"vfio-pci is built into the kernel, yet the native driver won at this boot: {won}", ev, msgs)
        return verdict(Status.PASS, "vfio-pci is built into the kernel: it is there before any module loads", ev, msgs)
    if won is None and builtin is None:
        raise FactUnknown("whether vfio-pci is built into the kernel (then nothing needs to load it)", "not in the evidence",
                          "grep vfio /lib/modules/$(uname -r)/modules.builtin")
    summary = "nothing loads vfio-pci at boot (no initramfs entry, softdep or modules-load.d entry)"
    if won:
        summary += f"; the native driver won at this boot: {won}"
    if bound_at_runtime(facts, gpu, eps):
        return verdict(Status.WARN, summary + RUNTIME_NOTE, ev, msgs, remedy)
    return verdict(Status.FAIL, summary, ev, msgs, remedy)


@check("vfio.group_viable", "Every device in the GPU's group is on vfio-pci", per_gpu=True)
def vfio_group_viable(ctx: Context) -> Verdict:
    """Each endpoint of the group is bound to vfio-pci (or has no driver);
    otherwise QEMU says `group N is not viable`."""
    seen = _seen_not_viable(ctx)
    if seen is not None:
        return seen
    try:
        r = _group_or_na(ctx)
    except FactUnknown:
        card = _card_on_host_driver(ctx)
        if card is None:
            raise
        return card
    if isinstance(r, Verdict):
        return r
    gpu, eps = r
    ev = [pci_evidence(d) for d in eps]
    blocking = _on_host_driver(eps)
    unseen = [d for d in eps if not d.driver_known]
    if not blocking and unseen:
        raise unknown_driver(unseen[0])
    if not blocking:
        on = sum(1 for d in eps if d.driver == "vfio-pci")
        stub = sum(1 for d in eps if d.driver == "pci-stub")
        return verdict(Status.PASS, f"group {gpu.iommu_group} viable: {on} of {len(eps)} function(s) on vfio-pci"
                       + (f", {stub} on pci-stub (vfio-pci must take them before QEMU can: see vfio.ids_configured)" if stub else "")
                       + (", the rest unbound" if on + stub < len(eps) else ""), ev)
    names = ", ".join(f"{d.address} [{d.class_hex}] {d.ident} on {d.driver}" for d in blocking)
    steps = ["sudo modprobe vfio-pci"]
    for d in blocking:
        steps += [
            f"echo vfio-pci | sudo tee /sys/bus/pci/devices/{d.address}/driver_override",
            f"echo {d.address} | sudo tee /sys/bus/pci/devices/{d.address}/driver/unbind",
            f"echo {d.address} | sudo tee /sys/bus/pci/drivers_probe",
        ]
    return verdict(
        Status.FAIL,
        f"group {gpu.iommu_group} not viable: {names}",
        ev,
        [f"QEMU/libvirt will fail with: `vfio {gpu.address}: group {gpu.iommu_group} is not viable` / "
         "`Please ensure all devices within the iommu_group are bound to their vfio bus driver.`",
         "Bind with driver_override, never new_id: new_id also grabs every other device with the same id."],
        Remedy("Bind each blocking function to vfio-pci now (lost at reboot: see vfio.binding_persistent).", tuple(steps), PciBind(tuple(d.address for d in blocking))),
    )


def _on_host_driver(devs: list[PciDevice]) -> list[PciDevice]:
    """The endpoints among devs that a host driver holds: each keeps their group from being viable."""
    return [d for d in devs if not d.is_bridge and d.driver is not None and d.driver not in VIABLE_DRIVERS]


def _card_on_host_driver(ctx: Context) -> Verdict | None:
    """The group is not shown, but a function of the card is on a host driver: the group is not viable
    whatever else is missing. The GPU itself is in its own group by definition; the card's other
    functions share it unless the card isolates them with ACS, which GPUs do not (said as such)."""
    gpu = ctx.gpu
    assert gpu is not None
    blocking = _on_host_driver(try_fact(lambda: ctx.facts.slot_functions(gpu), []))
    if not blocking:
        return None
    own = [d for d in blocking if d.address == gpu.address]
    names = ", ".join(f"{d.address} [{d.class_hex}] {d.ident} on {d.driver}" for d in blocking)
    return verdict(
        Status.FAIL,
        f"{gpu.address}'s group (not shown) is not viable: {names}"
        + ("" if own else " (a function of the same card)" if len(blocking) == 1 else " (functions of the same card)"),
        [pci_evidence(d) for d in blocking],
        (["The GPU itself is on a host driver: its group cannot be viable, whatever else is in it."] if own else
         ["A card's functions share one IOMMU group unless the card isolates them with ACS (GPUs do not): "
          "this one keeps the GPU's group from being viable."])
        + [f"QEMU/libvirt will fail with: `vfio {gpu.address}: group N is not viable`",
           "to see the whole group, collect: ls -l /sys/kernel/iommu_groups/*/devices; lspci -nnk"],
        Remedy("Bind every function of the card (and the rest of its group) to vfio-pci: see vfio.ids_configured.",
               tuple(f"echo vfio-pci | sudo tee /sys/bus/pci/devices/{d.address}/driver_override" for d in blocking)),
    )


def _seen_not_viable(ctx: Context) -> Verdict | None:
    """QEMU's own `vfio ADDR: group N is not viable` for this GPU's card (or its group) settles it."""
    gpu = ctx.gpu
    assert gpu is not None
    seen = [o for o in observed(ctx.facts, "vfio.group_not_viable")
            if (o.address and o.address.rsplit(".", 1)[0] == gpu.slot) or (o.group and o.group == gpu.iommu_group)]
    if not seen:
        return None
    group = seen[0].group
    members = try_fact(lambda: ctx.facts.group_members(gpu))
    if members:
        blocking, likely = _on_host_driver(endpoints(ctx.facts, gpu)), []
    else:
        # The group's members are not shown, but the device QEMU named is in it by QEMU's own word:
        # on a host driver, it is a culprit. Its card's other functions share its group on nearly
        # every card (no ACS between functions): named as likely, not as certain.
        named = {o.address for o in seen if o.address}
        card = _on_host_driver(try_fact(lambda: ctx.facts.slot_functions(gpu), []))
        blocking = [d for d in card if d.address in named]
        likely = [d for d in card if d.address not in named]
    culprits = ", ".join(f"{d.address} on {d.driver}" + ("" if members else " (the device QEMU named)") for d in blocking)
    if likely:
        culprits += ("; " if culprits else "") + "likely " + ", ".join(f"{d.address} on {d.driver}" for d in likely) + " (same card)"
    return verdict(
        Status.FAIL,
        f"group {group} not viable (QEMU said so): devices on a host driver: {culprits or 'not shown in the evidence'}",
        observed_evidence(seen) + [pci_evidence(d) for d in blocking + likely],
        ["The pasted error settles it: vfio opens a group only when every device in it is on vfio-pci (or no driver)."]
        + ([] if members and blocking else
           [("the group's members are not shown; " if not members else "") + "to name every culprit, collect: "
            f"ls -l /sys/kernel/iommu_groups/{group}/devices; lspci -nnk"]),
        Remedy("Bind every device of the group to vfio-pci (see vfio.ids_configured), or give the VM the whole group.",
               (f"ls /sys/kernel/iommu_groups/{group}/devices", "lspci -nnk")),
    )


@check("vfio.binding_persistent", "The vfio-pci binding survives a reboot", per_gpu=True)
def vfio_binding_persistent(ctx: Context) -> Verdict:
    """ids configured for the next boot + early load cover every endpoint; a
    runtime-only binding is a warning naming what a reboot loses."""
    facts = ctx.facts
    r = _group_or_na(ctx)
    if isinstance(r, Verdict):
        return r
    gpu, eps = r
    cfg = ids_config(facts)
    mods = try_fact(facts.modules)
    listed_builtin = mods.is_builtin("vfio_pci") if mods else None  # modules.builtin only (not vfio_builtin's inference)
    next_ids = set(cfg.cmdline_next if cfg.cmdline_next is not None else cfg.cmdline_now)
    cfg_cmd = set(next_ids)
    if not listed_builtin:
        next_ids |= set(cfg.ids)
    ev_early, in_initramfs, in_ml = early_sources(facts)
    early_unknown = early_load_unknown(facts)
    softdeps = {ln.module for ln in facts.modprobe_config() if ln.command == "softdep" and "vfio" in ln.rest}
    ev = [pci_evidence(d) for d in eps] + ev_early
    lost: list[str] = []
    never: list[str] = []
    unsure: list[FactUnknown] = []  # fine or not, lost or never: the source does not show enough
    ov = boot_overrides(facts)
    ev += override_evidence(ov, eps)
    for d in eps:
        o = ov.get(d.address)
        configured = d.ident in next_ids or o is not None
        natives = [m.replace("-", "_") for m in native_modules(d)]
        builtin_native = [m for m in natives if mods is not None and mods.is_builtin(m)]
        if o is not None and o.kind == "initramfs":
            early_ok = True  # written before udev loads any driver (and the script loads vfio-pci)
        elif natives:
            early_ok = in_initramfs or all(m in softdeps for m in natives)
        elif d.driver == "vfio-pci" or not d.driver_known:
            # its native driver is unknown (bound to vfio now, or no `lspci -k`): only the initramfs wins for sure
            early_ok = in_initramfs
        else:
            early_ok = in_ml or in_initramfs
        ok = configured and early_ok and not builtin_native
        if ok:
            continue
        if configured and not builtin_native and early_unknown is not None:
            unsure.append(early_unknown)  # the early-load configuration the source does not show may load it
            continue
        if not d.driver_known:
            unsure.append(unknown_driver(d))  # lost at reboot (on vfio-pci now) or never bound: its driver decides
            continue
        why = []
        if not configured:
            why.append("id not in vfio-pci ids")
        elif not early_ok:
            why.append("vfio-pci not loaded early enough" + (
                " (or built in, and then modprobe.d's ids are never read)" if listed_builtin is None and d.ident not in cfg_cmd else ""))
        if builtin_native:
            why.append(f"native driver {', '.join(builtin_native)} is built in")
        entry = f"{d.address} ({d.ident}, {'; '.join(why)})"
        (lost if d.driver == "vfio-pci" else never).append(entry)
    if unsure and not never:
        raise unsure[0]
    if not lost and not never:
        return verdict(Status.PASS, f"all {len(eps)} function(s) of group {gpu.iommu_group} go to vfio-pci at every boot", ev)
    steps = (f"echo '{ids_line(eps)}' | sudo tee /etc/modprobe.d/vfio.conf",
             *[f"echo '{softdep_line(m)}' | sudo tee -a /etc/modprobe.d/vfio.conf" for m in sorted({m for d in eps for m in native_modules(d)})],
             initramfs_update_command(facts))
    remedy = Remedy("Configure ids and early loading so the binding is made at boot.", steps, VfioIds(tuple(wanted_ids(eps))))
    if lost and not never:
        return verdict(Status.WARN, "bound now only at runtime; a reboot loses " + "; ".join(lost), ev, remedy=remedy)
    return verdict(
        Status.FAIL,
        "not bound at boot: " + "; ".join(never) + ("; a reboot also loses " + "; ".join(lost) if lost else ""),
        ev,
        remedy=remedy,
    )


# ---------------------------------------------------------------------------
# 6. identical cards


@check("vfio.ids_unique_to_card", "vfio-pci ids match only the GPU's own functions", per_gpu=True)
def vfio_ids_unique_to_card(ctx: Context) -> Verdict:
    """Another device with the same vendor:device that stays with the host is also taken by
    `ids=` (modprobe.d or vfio-pci.ids=): the kernel binds every matching device. There the
    only way is per device: driver_override."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    eps = unit_functions(facts, gpu)
    twins = identical_devices(facts, eps)
    unlisted = facts.unlisted_devices()
    if not twins and unlisted is not None:
        raise unlisted
    if not twins:
        return verdict(Status.PASS, f"no other device on this host has the id of {gpu.address}'s function(s): "
                       + ",".join(sorted({d.ident for d in eps})), [pci_evidence(d) for d in eps])
    conf = configured_ids(facts)
    ev = [pci_evidence(d) for d in eps]
    for ident, ts in twins.items():
        ev += [Evidence(pci_where(t), f"same id {ident}: {t.label()}") for t in ts]
    for ident in twins:
        for where in conf.get(ident, []):
            ev.append(Evidence(where, f"vfio-pci ids include {ident}"))
    grabbed = [(i, t) for i, ts in twins.items() if i in conf for t in ts]
    staying = [(i, t) for i, t in grabbed if t.driver != "vfio-pci" and t.driver_override != "vfio-pci"]
    unseen = [t for _, t in grabbed if not t.driver_known and t.driver_override != "vfio-pci"]
    if unseen and not [t for _, t in staying if t.driver_known]:
        raise unknown_driver(unseen[0])  # taken from the host (FAIL) or already a guest's (WARN): its driver decides
    names = "; ".join(f"{t.address} ({driver_text(t)})" for _, t in (staying or grabbed))
    remedy = Remedy(
        "Remove these ids from the vfio-pci ids (modprobe.d and vfio-pci.ids=) and bind the GPU's functions per device "
        "with driver_override, by address.", tuple(override_steps(eps)), PciBind(tuple(d.address for d in eps), tuple(sorted({i for i, _ in grabbed} or twins))),
    )
    if staying:
        return verdict(
            Status.FAIL,
            f"the configured vfio-pci ids also take {names}, which stays with the host",
            ev,
            ["`ids=` matches by vendor:device: at boot vfio-pci claims every device with that id, so the host loses "
             + ", ".join(t.address for _, t in staying) + " too.",
             "Use driver_override by PCI address for the guest's card instead (no ids= for these ids)."],
            remedy,
        )
    if grabbed:
        return verdict(Status.WARN, f"ids= also takes {names} (already on vfio-pci: intended for a guest too?)", ev,
                       ["If that device should stay with the host, bind per device (driver_override) instead."], remedy)
    ov = boot_overrides(facts)
    if all(d.address in ov for d in eps):
        ev += override_evidence(ov, eps)
        return verdict(Status.PASS, f"no ids=: {gpu.slot}'s functions go to vfio-pci by address at boot, so "
                       + ", ".join(t.address for ts in twins.values() for t in ts) + " stays with the host", ev)
    remedy = Remedy(remedy.text, remedy.steps, BindByAddress(tuple(d.address for d in eps), tuple(sorted({i for i, _ in grabbed} or twins))))
    return verdict(
        Status.WARN,
        ", ".join(f"{t.address} ({driver_text(t)})" for ts in twins.values() for t in ts) + " has the same id as "
        f"{gpu.slot}'s functions: do not use ids= here",
        ev,
        ["An `options vfio-pci ids=` line (the usual advice, and vfio.ids_configured's remedy) would take that device too."],
        remedy,
    )
