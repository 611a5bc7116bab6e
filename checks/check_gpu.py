"""The GPU itself: a candidate, its group, its memory, reset and option ROM."""

from __future__ import annotations

import re

from checks.common import (
    VENDOR_RESET_IDS,
    configured_ids,
    driver_text,
    endpoints,
    fb_remedy,
    mount_controllers,
    no_group_verdict,
    observed,
    observed_evidence,
    pci_evidence,
    pci_where,
    route_nics,
    try_fact,
    unknown_verdict,
)
from doctor.checkapi import Context, check
from doctor.errors import FactUnknown, NotCaptured, OptionRomUnreadable
from doctor.facts import Facts, IomemRange, PciDevice, parse_option_rom, parse_pcie_flr
from doctor.model import Evidence, Remedy, Severity, Status, Verdict, verdict
from doctor.passthrough import passthrough_unit


@check("gpu.candidate", "A GPU that can be handed to a guest")
def gpu_candidate(ctx: Context) -> Verdict:
    """Every display-class device (0300 VGA, 0302 3D, 0380 display), its functions,
    group, driver and boot_vga; the chosen one should not be the host's boot display."""
    facts = ctx.facts
    gpus = facts.gpus()
    if not gpus:
        devs = facts.pci_devices()
        unlisted = facts.unlisted_devices()
        if unlisted is not None:
            raise unlisted
        return verdict(
            Status.FAIL,
            f"no GPU: none of the {len(devs)} PCI devices is display-class (0300, 0302, 0380)",
            [Evidence("/sys/bus/pci/devices", f"{len(devs)} devices, no class 03xx")],
            remedy=Remedy("Install a GPU (or check that it is seated and powered); nothing to pass through yet."),
        )
    ev: list[Evidence] = []
    for g in gpus:
        funcs = facts.slot_functions(g)
        bv = {True: "boot display", False: "not the boot display", None: "boot_vga unknown"}[g.boot_vga]
        grp = f"IOMMU group {g.iommu_group}" if g.iommu_group is not None else "no IOMMU group"
        ev.append(pci_evidence(g))
        ev.append(Evidence(pci_where(g), f"{bv}; {grp}; {len(funcs)} function(s): "
                           + ", ".join(f"{f.address} [{f.class_hex}] {f.ident} ({driver_text(f)})" for f in funcs)))
    chosen = ctx.gpu
    if chosen is None:
        return verdict(Status.FAIL, "no GPU selected", ev)
    # VGA class: sysfs has boot_vga, the source did not show it; that only moves PASS to WARN, so a note
    note = ([f"whether {chosen.address} is the host's boot display is not shown (if it is, the host loses its console when it is "
             "handed over); to settle it, collect: grep . /sys/bus/pci/devices/*/boot_vga"] if chosen.boot_vga is None and chosen.class_code >> 8 == 0x0300 else [])
    if chosen.boot_vga:
        return verdict(
            Status.WARN,
            f"{chosen.address} is the host's boot display: the host loses its console when it is handed over",
            ev,
            ["Passing the boot GPU works on many hosts but needs care: framebuffer/console release, and another way to reach the host."],
            Remedy("Prefer a second GPU for the guest, or make sure you can reach the host over the network before binding the boot display."),
        )
    others = [g.address for g in gpus if g.slot != chosen.slot]
    extra = f" ({len(others)} other GPU(s) stay with the host)" if others else ""
    return verdict(Status.PASS, f"{chosen.address} {chosen.name or chosen.ident} is a passthrough candidate{extra}", ev, note)


@check("gpu.group_isolated", "GPU's IOMMU group holds only the GPU's own functions", per_gpu=True)
def gpu_group_isolated(ctx: Context) -> Verdict:
    """Bridges excepted, every device in the GPU's group is a function of the GPU's card: its
    passthrough unit (doctor.passthrough: same slot, the GPU's vendor, display/audio/USB-C
    classes). On an APU the SoC's PSP, USB and audio functions share the slot but are not the GPU's."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    members = facts.group_members(gpu)
    if members is None:
        return no_group_verdict(facts, gpu)
    ev = [Evidence(facts.where("iommu_groups", f"/sys/kernel/iommu_groups/{gpu.iommu_group}/devices"), ", ".join(m.address for m in members))]
    ev += [pci_evidence(m) for m in members]
    unit = passthrough_unit(facts, gpu)
    if unit.groups_unknown is not None:
        raise unit.groups_unknown
    others = list(unit.intruders)
    if not others:
        return verdict(Status.PASS, f"group {gpu.iommu_group} holds only {gpu.slot}'s {len(unit.functions)} function(s)"
                       + (" and bridges" if unit.bridges else ""), ev)
    names = unit.describe_intruders()
    return verdict(
        Status.FAIL,
        f"group {gpu.iommu_group} also holds {len(others)} unrelated device(s): {names}",
        ev,
        [
            "Everything in a group goes to the guest together: these devices would have to leave the host too.",
            "No automatic fix: the group is decided by the hardware topology and ACS support.",
        ],
        Remedy(
            "Move the GPU to another slot (one wired to the CPU's own root port usually has its own group), "
            "or use a board/firmware with ACS on that port. The pcie_acs_override kernel patch only hides the "
            "problem: devices can still talk to each other behind the IOMMU's back.",
            ("# list groups: for d in /sys/kernel/iommu_groups/*/devices/*; do echo \"$(basename $(dirname $(dirname $d))) $(lspci -nns ${d##*/})\"; done",),
        ),
    )


def _kernel_version(facts: Facts) -> tuple[int, int] | None:
    rel = try_fact(facts.kernel_release)
    m = re.match(r"^(\d+)\.(\d+)", rel or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


# ---------------------------------------------------------------------------
# 4. group safety

_ACS_LOG = re.compile(r"ACS overrides? enabled|pcie_acs_override", re.IGNORECASE)


def _plan_devices(facts: Facts, gpu: PciDevice) -> tuple[list[PciDevice], list[str]]:
    """The GPU's group endpoints plus every group a configured ids= would bind."""
    devs = facts.pci_devices()
    plan = {d.address: d for d in endpoints(facts, gpu)}
    notes = []
    conf = configured_ids(facts)
    for d in devs.values():
        if d.ident in conf and d.address not in plan and not d.is_bridge:
            for m in endpoints(facts, d):
                if m.address not in plan:
                    plan[m.address] = m
            notes.append(f"{d.address} ({d.ident}) is bound too by the configured ids; its group is included")
    return sorted(plan.values(), key=lambda d: d.address), notes


@check("gpu.group_safe", "Handing over the GPU's group leaves the host its disks, network and display", per_gpu=True)
def gpu_group_safe(ctx: Context) -> Verdict:
    """The group (and any group the configured ids would bind) holds no controller of a mounted
    filesystem, no NIC of the default route, not the host's only display; `pcie_acs_override`
    means the groups shown are not real isolation."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    if facts.group_members(gpu) is None:  # FactUnknown where the source does not show the group
        return no_group_verdict(ctx.facts, gpu)
    plan, notes = _plan_devices(facts, gpu)
    addrs = {d.address for d in plan}
    ev = [pci_evidence(d) for d in plan]
    msgs = list(notes)
    fails: list[str] = []
    warns: list[str] = []
    foreign = [d for d in plan if d.slot != gpu.slot]
    unknown: list[str] = []
    try:
        for addr, fs in mount_controllers(facts).items():
            if addr in addrs:
                fails.append(f"{addr} holds mounted filesystems: {', '.join(fs[:4])}")
                ev.append(Evidence("/proc/self/mounts", f"{addr}: {', '.join(fs[:4])}"))
    except (FactUnknown, NotCaptured) as e:
        unknown.append(f"mounted filesystems ({e})")
    try:
        for addr, via in route_nics(facts).items():
            if addr in addrs:
                fails.append(f"{addr} carries the default route ({', '.join(via)})")
                ev.append(Evidence("/proc/net/route", f"default route via {', '.join(via)} on {addr}"))
    except (FactUnknown, NotCaptured) as e:
        unknown.append(f"default route ({e})")
    displays = [d for d in facts.pci_devices().values() if d.is_display]
    left = [d for d in displays if d.address not in addrs]
    if displays and not left:
        warns.append("it holds the host's only display: the host keeps no console on a screen")
    c = try_fact(facts.cmdline)
    log = try_fact(facts.kernel_log)
    acs = []
    if c is not None and c.has("pcie_acs_override"):
        acs.append(Evidence(c.source, "pcie_acs_override=" + str(c.last("pcie_acs_override"))))
    if log is not None:
        acs += [Evidence(log.source, ln.strip()) for ln in log.grep(_ACS_LOG)[:2]]
    if acs:
        ev += acs
        warns.append("pcie_acs_override is in effect: the groups shown are not real isolation (devices can still reach "
                     "each other behind the IOMMU's back)")
    remedy = Remedy(
        "Do not hand these devices over: move the GPU to a slot with its own group (a CPU root port), or the disk/NIC "
        "to another controller; keep a second display or remote access for the host.",
        ("# list groups: for d in /sys/kernel/iommu_groups/*/devices/*; do echo \"$(basename $(dirname $(dirname $d))) $(lspci -nns ${d##*/})\"; done",),
    )
    if fails:
        return verdict(Status.FAIL, "handing over the group takes from the host: " + "; ".join(fails), ev,
                       msgs + warns + ["Binding vfio-pci to a controller under a mounted filesystem pulls the disk from under "
                                       "it (I/O errors, data loss); the default-route NIC takes the host off the network."], remedy)
    if unknown and foreign:
        return unknown_verdict(f"unknown: could not check {', '.join(unknown)} for {', '.join(d.address for d in foreign)}",
                        "cat /proc/self/mounts /proc/net/route; ls -l /sys/class/block /sys/class/net", ev, msgs + warns)
    if unknown:
        msgs.append("not checked: " + "; ".join(unknown) + " (the group holds only the GPU's own functions)")
    if warns:
        return verdict(Status.WARN, "; ".join(warns), ev, msgs,
                       Remedy("Keep another way into the host (second GPU, serial console, SSH); with pcie_acs_override "
                              "know that isolation is not enforced.", ("sudo systemctl enable --now ssh",)))
    return verdict(Status.PASS, f"group {gpu.iommu_group}: no mounted disk, default-route NIC or only display among "
                   f"{len(plan)} device(s)", ev, msgs)


# ---------------------------------------------------------------------------
# 1. boot framebuffer in the GPU's memory

# Names of firmware framebuffers in /proc/iomem: sysfb's "BOOTFB" resource (x86 sysfb_simplefb.c),
# and the drivers that request it (efifb, vesafb, simplefb, simpledrm).
FB_NAMES = ("bootfb", "efifb", "vesafb", "simplefb", "simpledrm", "simple-framebuffer", "vesa-framebuffer")


def _fb_ranges(iomem: tuple[IomemRange, ...], bars: list) -> list[IomemRange]:  # type: ignore[type-arg]
    return [r for r in iomem if r.name.lower().split(".")[0] in FB_NAMES and any(r.overlaps(b.start, b.end) for b in bars)]


def _evicts_on_bind(facts: Facts, gpu: PciDevice) -> tuple[bool | None, str]:
    """Whether binding vfio-pci removes a firmware framebuffer from the GPU's BARs.

    Since Linux 6.0, vfio_pci_core_register_device() -> vfio_pci_vga_init() calls
    aperture_remove_conflicting_pci_devices() ("vfio/pci: Remove console drivers", Alex
    Williamson, commit d173780620792c725506b0f3c5ec52c7fbac1db0; in linux-next from
    next-20220628 next to "drm: Implement DRM aperture helpers under video/", merged for 6.0;
    Debian's 6.1.0 vfio-pci-core.ko imports the symbol). Proven in the lab
    (tests/lab/test_lab_forecast.py, intel-efifb-on-card): on Debian's 6.1, `c0000000-c03e7fff :
    efifb` in the card's BAR 0 vanishes from /proc/iomem when vfio-pci binds ("Console: switching
    to colour dummy device"), no `can't reserve`, QEMU maps the BARs. Only for VGA-class devices: vfio_pci_is_vga() is
    `(pdev->class >> 8) == PCI_CLASS_DISPLAY_VGA` (0x0300). A 3D (0302) or display (0380)
    controller keeps its framebuffer, which is why simpledrm still blocks such GPUs on 6.18
    (siderolabs/talos#14356: `BAR 0: can't reserve`)."""
    v = _kernel_version(facts)
    if v is None:
        return None, "kernel version unknown"
    if v < (6, 0):
        return False, f"kernel {v[0]}.{v[1]} < 6.0: vfio-pci does not remove console drivers"
    if gpu.class_code >> 8 != 0x0300:
        return False, f"class {gpu.class_hex} is not VGA (0300): vfio-pci only evicts framebuffers from VGA-class devices"
    return True, f"kernel {v[0]}.{v[1]} >= 6.0 and class 0300: vfio-pci evicts firmware framebuffers when it binds"


@check("gpu.framebuffer_free", "No boot framebuffer or console sits in the GPU's memory", per_gpu=True)
def gpu_framebuffer_free(ctx: Context) -> Verdict:
    """A /proc/iomem range named BOOTFB, efifb, vesafb, simplefb or simpledrm inside one of the
    GPU's BARs makes vfio-pci's BAR reservation fail (`BAR 0: can't reserve [mem ...]`, QEMU
    `Failed to mmap ... BAR`), unless this kernel evicts it on bind (6.0+, VGA class only)."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    seen = _seen_framebuffer(facts, gpu)
    if seen is not None:
        return seen
    bars = [b for b in facts.pci_bars(gpu.address) if b.is_mem and b.index < 6]
    ev = [pci_evidence(gpu)] + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/resource", str(b)) for b in bars]
    cons = try_fact(facts.consoles)
    fb_console = cons is not None and any(b and "frame buffer" in n for _, n, b in cons.vtconsoles)
    if cons is not None:
        ev += [Evidence("/proc/fb", ln) for ln in cons.framebuffers[:4]]
    iomem = facts.iomem()
    hits = _fb_ranges(iomem, bars)
    ev += [Evidence("/proc/iomem", str(r)) for r in hits]
    if not hits:
        drmfb = cons is not None and gpu.driver and any(gpu.driver in ln for ln in cons.framebuffers)
        if drmfb and fb_console:
            return verdict(
                Status.WARN,
                f"the console is drawn on {gpu.driver}'s framebuffer on this GPU: it must be released before the driver unbinds",
                ev,
                ["Depends on the driver: most release it on unbind; where one does not, the unbind hangs or the host's console dies."],
                Remedy("Release the console before unbinding the native driver.",
                       ("for v in /sys/class/vtconsole/vtcon*; do grep -q 'frame buffer' $v/name && echo 0 | sudo tee $v/bind; done",)),
            )
        return verdict(Status.PASS, f"no firmware framebuffer in {gpu.address}'s BARs", ev)
    names = {r.name.lower().split(".")[0] for r in hits}
    evicts, why = _evicts_on_bind(facts, gpu)
    remedy = fb_remedy(names, facts)
    where = ", ".join(f"{r.name} at {r.start:#x}-{r.end:#x}" for r in hits)
    if gpu.driver == "vfio-pci":
        return verdict(Status.FAIL, f"{where} still sits in {gpu.address}'s BAR while it is on vfio-pci: QEMU cannot reserve it",
                       ev, [why, "The kernel will log `vfio-pci ...: BAR N: can't reserve [mem ...]` and QEMU `Failed to mmap ... BAR`."], remedy)
    if evicts:
        return verdict(Status.PASS, f"{where} in {gpu.address}'s BAR; this kernel removes it when vfio-pci binds", ev,
                       [why, "The host loses that console when vfio-pci binds."])
    if evicts is None:
        return verdict(Status.WARN, f"{where} in {gpu.address}'s BAR; whether this kernel evicts it on bind is unknown ({why})", ev,
                       [], remedy)
    return verdict(Status.FAIL, f"{where} sits in {gpu.address}'s BAR and stays there when vfio-pci binds", ev,
                   [why, "vfio-pci will log `BAR N: can't reserve [mem ...]` and QEMU `Failed to mmap ... BAR` / the guest driver fails."],
                   remedy)


def _seen_framebuffer(facts: Facts, gpu: PciDevice) -> Verdict | None:
    """A pasted `BAR N: can't reserve` on this card fails the check; a framebuffer the kernel log shows on its
    BAR (`BAR 1: assigned to efifb`) is judged as one found in /proc/iomem."""
    mine = [o for o in observed(facts, "gpu.bar_reserve", "gpu.fb_on_bar") if o.address and o.address.rsplit(".", 1)[0] == gpu.slot]
    if not mine:
        return None
    ev = [pci_evidence(gpu)] + observed_evidence(mine)
    names = {n for o in mine for n in ("efifb", "vesafb", "simpledrm", "simplefb", "bootfb") if n in o.text.lower()} or {"efifb", "simpledrm"}
    remedy = fb_remedy(names, facts)
    reserve = [o for o in mine if o.kind == "gpu.bar_reserve"]
    if reserve:
        return verdict(Status.FAIL, f"BAR {reserve[0].detail} of {reserve[0].address} could not be reserved (the kernel said so): "
                       "something on the host holds it, nearly always the firmware framebuffer", ev,
                       ["The pasted error settles it; /proc/iomem shows what holds the range: grep -iE -B1 -A1 'bootfb|efifb|simple' /proc/iomem"],
                       remedy)
    evicts, why = (None, "the device's class is not shown") if gpu.vendor == "????" else _evicts_on_bind(facts, gpu)
    what = f"{mine[0].text[:120]} ({mine[0].where})"
    if gpu.driver == "vfio-pci" or evicts is False:
        return verdict(Status.FAIL, f"a firmware framebuffer sits in {gpu.address}'s BAR {mine[0].detail} and stays when vfio-pci binds: {what}",
                       ev, [why], remedy)
    if evicts:
        return verdict(Status.PASS, f"a firmware framebuffer sits in {gpu.address}'s BAR; this kernel removes it when vfio-pci binds", ev, [why])
    return verdict(Status.WARN, f"a firmware framebuffer sits in {gpu.address}'s BAR {mine[0].detail}; whether this kernel evicts it "
                   f"on bind is unknown ({why})", ev, ["to settle it, collect: uname -r; lspci -nn -s " + gpu.address], remedy)


@check("gpu.reset_capable", "The GPU can be reset between guest runs", severity=Severity.ADVICE, per_gpu=True)
def gpu_reset_capable(ctx: Context) -> Verdict:
    """reset_method (5.15+), FLR in the PCI Express capability, ids known to need vendor-reset
    (AMD Polaris, Vega, Navi 10/12/14) with vendor_reset loaded and `device_specific` selected."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    ev = [pci_evidence(gpu)]
    rm = facts.reset_method(gpu.address)
    ev.append(Evidence(f"/sys/bus/pci/devices/{gpu.address}/reset_method", " ".join(rm) if rm else "(absent)" if rm is None else "(empty)"))
    cfg = try_fact(lambda: facts.pci_config(gpu.address))
    flr = parse_pcie_flr(cfg) if cfg is not None else None
    if cfg is not None:
        if len(cfg) > 0x0E and cfg[0x0E] in (0x7F, 0xFF) and cfg[:4] == b"\xff\xff\xff\xff":
            return verdict(Status.FAIL, f"{gpu.address}'s config space reads all ones: the device is not responding",
                           ev + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/config", "ff ff ff ff ...")],
                           ["This is what QEMU reports as `Unknown PCI header type '127'`: a reset left the device dead. Power-cycle the host."])
        ev.append(Evidence(f"/sys/bus/pci/devices/{gpu.address}/config",
                           "PCIe DevCap: FLReset+" if flr else "PCIe DevCap: FLReset-" if flr is False else f"{len(cfg)} bytes (capabilities not readable)"))
    msgs: list[str] = []
    if gpu.vendor == "1002" and gpu.device in VENDOR_RESET_IDS:
        mods = try_fact(facts.modules)
        loaded = mods is not None and mods.present("vendor_reset")
        selected = rm is None or (bool(rm) and rm[0] == "device_specific")
        ev.append(Evidence("/proc/modules", "vendor_reset loaded" if loaded else "vendor_reset not loaded"))
        if loaded and selected:
            return verdict(Status.PASS, f"{gpu.ident} needs vendor-reset: loaded" + (" and device_specific selected" if rm else ""), ev)
        steps = ["# install gnif/vendor-reset (dkms), then:", "echo vendor-reset | sudo tee /etc/modules-load.d/vendor-reset.conf"]
        if rm is not None:
            steps.append(f"echo device_specific | sudo tee /sys/bus/pci/devices/{gpu.address}/reset_method  # at every boot: vendor-reset's udev rule")
        return verdict(
            Status.WARN,
            f"{gpu.ident} (AMD Polaris/Vega/Navi 1x) does not reset without vendor-reset"
            + ("" if not loaded else "; loaded but device_specific is not selected in reset_method"),
            ev,
            ["After the first guest shutdown the card stays dirty: the next start fails with `vfio: Cannot reset device` or "
             "QEMU `Unknown PCI header type '127'` (the card answers all ones), and the host may need a power cycle.",
             "Whether this bites depends on the card and the guest driver (a warning, not a certainty)."],
            Remedy("Use vendor-reset for this card (and on 5.15+ select its method).", tuple(steps)),
        )
    if rm:
        if "flr" in rm:
            return verdict(Status.PASS, f"reset by {rm[0]} (FLR available)", ev)
        devs = try_fact(facts.pci_devices) or {}
        bus = gpu.address.rsplit(":", 1)[0]
        others = [d for d in devs.values() if d.address.rsplit(":", 1)[0] == bus and d.slot != gpu.slot]
        if "bus" in rm and not others:
            return verdict(Status.PASS, f"reset by {' then '.join(rm)}: no FLR, but the GPU is alone on its bus (secondary bus reset)", ev)
        msgs.append("A bus reset resets everything on the bus: vfio can do it only when it owns all of it "
                    "(`vfio: Cannot reset device ..., depends on group N which is not owned`).")
        return verdict(Status.WARN, f"no FLR; reset only by {' '.join(rm)}" + (f", shared with {', '.join(d.address for d in others)}" if others else ""),
                       ev, msgs)
    if rm is not None:  # present and empty
        return verdict(Status.WARN, "the kernel has no reset method for this GPU", ev,
                       ["QEMU logs `vfio: Cannot reset device ..., no available reset mechanism`; the guest then sees "
                        "the card as the last guest left it (depends on the card and its guest driver)."])
    if flr:
        return verdict(Status.PASS, "FLR supported (PCI Express capability)", ev)
    if flr is False:
        return verdict(Status.WARN, "no FLR in the PCI Express capability: only a bus reset can reset this GPU", ev,
                       ["Depends on the topology: a bus reset needs every device on the bus in the guest."])
    return unknown_verdict("unknown: no reset_method attribute (kernel < 5.15) and the PCIe capability was not readable",
                    f"sudo lspci -vvv -s {gpu.address} | grep -i flreset", ev)


# ---------------------------------------------------------------------------
# 10. option ROM

# drivers/pci/rom.c (pci_get_rom_size): what the kernel says about a ROM it will not map
ROM_COMPLAINT = r".*(Invalid PCI ROM header signature|No more image in the PCI ROM)"


@check("gpu.rom_readable", "The GPU's option ROM is present and valid", severity=Severity.ADVICE, per_gpu=True)
def gpu_rom_readable(ctx: Context) -> Verdict:
    """The ROM BAR exists; its image starts 0x55AA, has a PCI data structure and an EFI image.
    The image comes from a dump (`check --rom FILE`) or, on request, from sysfs `rom`
    (`check --read-rom`: writing 1 to it first changes the device's state, so never by default).

    A ROM the kernel will not map (drivers/pci/rom.c: `Invalid PCI ROM header signature`, the
    sysfs read fails with EIO) is also what vfio-pci hands QEMU: the ROM region's size is 0 and
    QEMU says `vfio-pci: Cannot read device rom at ADDR` when the guest's firmware probes it
    (hw/vfio/pci.c vfio_pci_load_rom), then goes on without a ROM. Advice: the VM starts; a UEFI
    guest just gets no boot screen from the card until its own driver loads."""
    facts = ctx.facts
    gpu = ctx.gpu
    assert gpu is not None
    seen = [o for o in observed(facts, "gpu.rom_unreadable") if o.address and o.address.rsplit(".", 1)[0] == gpu.slot]
    if seen and try_fact(lambda: facts.pci_bars(gpu.address)) is None:  # a pasted kernel/QEMU line says the ROM is unreadable
        return verdict(Status.WARN, f"{gpu.address}'s ROM cannot be read (the kernel or QEMU said so): the guest gets no ROM from the card",
                       [pci_evidence(gpu)] + observed_evidence(seen), ["Advice: QEMU still starts; a UEFI guest shows no boot screen on "
                       "this card until its own driver loads."], Remedy("Hide the ROM (rombar=0) or give QEMU a good dump (romfile=)."))
    bars = facts.pci_bars(gpu.address)
    rom = [b for b in bars if b.index == 6]
    ev = [pci_evidence(gpu)] + [Evidence(f"/sys/bus/pci/devices/{gpu.address}/resource", str(b)) for b in rom]
    remedy = Remedy(
        "If the guest shows no picture before its driver loads: hide the ROM (`rombar=0`, libvirt <rom bar='off'/>) or give "
        "QEMU a known-good dump (`romfile=/usr/share/vgabios/gpu.rom`, libvirt <rom file='...'/>).",
        (f"sudo gpudoctor check --read-rom --gpu {gpu.address} --only gpu.rom_readable",
         f"# or dump it yourself: sudo sh -c 'cd /sys/bus/pci/devices/{gpu.address} && echo 1 > rom && cat rom > /tmp/{gpu.address}.rom; echo 0 > rom'",
         f"# and check the dump: gpudoctor check --rom /tmp/{gpu.address}.rom --gpu {gpu.address} --only gpu.rom_readable"),
    )
    fix_unreadable = Remedy(
        f"Hide the card's ROM from the guest (`-device vfio-pci,host={gpu.address},rombar=0`, libvirt <rom bar='off'/>) or give "
        "QEMU a good dump of this card's ROM (`romfile=/path/to/gpu.rom`, libvirt <rom file='/path/to/gpu.rom'/>), e.g. one "
        "read while another GPU was the boot display, or the vendor's image for this exact board.",
    )
    if not rom:
        return verdict(Status.WARN, f"{gpu.address} exposes no ROM BAR: a UEFI guest gets no GOP driver from the card", ev,
                       ["Depends on the guest: its own driver still works; only the boot screen needs the ROM."], remedy)
    shadow = [b for b in rom if b.start == 0xC0000]
    shadow_note = ([f"The kernel shows {gpu.address}'s ROM as the shadow copy at 0xc0000 (it is the boot display): after UEFI "
                    "firmware (no CSM) that region holds no option ROM image."] if shadow else [])
    source = "sysfs `rom`"
    try:
        data: bytes = ctx.facts.option_rom(gpu.address)
        dumps = getattr(ctx.facts, "rom_dumps", {})
        if gpu.address in dumps:
            source = f"the dump {dumps[gpu.address][0]}"
    except OptionRomUnreadable as e:
        klog = list(e.kernel_lines) or _rom_kernel_lines(facts, gpu.address)
        ev += [Evidence(e.source, e.reason)] + [Evidence("kernel log", ln) for ln in klog]
        return verdict(Status.WARN, f"{gpu.address}'s ROM cannot be read ({e.reason}): QEMU will say "
                       f"`vfio-pci: Cannot read device rom at {gpu.address}` and the guest gets no ROM from the card", ev,
                       [*(f"the kernel: {ln}" for ln in klog), *shadow_note,
                        "QEMU still starts (advice, not a blocker): a UEFI guest shows no boot screen on this card until its own "
                        "driver loads, and a guest driver that needs the ROM fails."],
                       fix_unreadable)
    except (FactUnknown, NotCaptured) as e:
        reason = e.reason if isinstance(e, FactUnknown) else str(e)
        if reason.startswith("not read"):
            return verdict(Status.UNKNOWN, "ROM not read: reading it changes the device's state (writing 1 to sysfs `rom`)", ev,
                           ["Opt in with `gpudoctor check --read-rom` (root), or check a dump with `--rom FILE`.",
                            "Many GPUs (NVIDIA especially) return a ROM whose image the guest then rejects; `rombar=0` or a `romfile` fixes that."],
                           remedy)
        return verdict(Status.UNKNOWN, f"ROM not read: {reason}", ev, [], remedy)
    ev.append(Evidence(source, f"{len(data)} bytes" + (f", starts {data[:2].hex(' ')}" if data else "")))
    if not data:
        klog = _rom_kernel_lines(facts, gpu.address)
        ev += [Evidence("kernel log", ln) for ln in klog]
        return verdict(Status.WARN, f"the ROM from {source} is empty: the kernel could not map it, QEMU will say "
                       f"`vfio-pci: Cannot read device rom at {gpu.address}`", ev,
                       [*(f"the kernel: {ln}" for ln in klog), *shadow_note,
                        "An empty dump is what `cat rom` leaves when the read fails with `Input/output error`."],
                       fix_unreadable)
    try:
        images = parse_option_rom(data)
    except ValueError as e:
        return verdict(Status.WARN, f"the ROM from {source} is not valid: {e}", ev,
                       [*shadow_note, "The guest's firmware rejects this image: no boot screen from the card until the guest's driver loads."],
                       fix_unreadable)
    if "EFI" not in images:
        return verdict(Status.WARN, f"ROM images: {', '.join(images)}; no EFI image (a UEFI guest gets no boot screen)", ev, [], remedy)
    return verdict(Status.PASS, f"ROM valid: {', '.join(images)}", ev)


def _rom_kernel_lines(facts: Facts, address: str) -> list[str]:
    """drivers/pci/rom.c's complaints about this device's ROM in the kernel log."""
    log = try_fact(facts.kernel_log)
    return log.grep(re.escape(address) + ROM_COMPLAINT)[-3:] if log is not None else []
