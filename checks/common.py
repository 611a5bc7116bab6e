"""Derivations shared by several checks (and, later, by remediations)."""

from __future__ import annotations

from doctor.bootstrategy import boot_strategy
from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts import BootConfig, BootOverride, Cmdline, Facts, ModprobeLine, Observed, PciDevice
from doctor.kernel_args import stub_ids
from doctor.model import CmdlineEdit, Evidence, Remedy, Status, Verdict, verdict
from doctor.passthrough import (
    VIABLE_DRIVERS,
    driver_text,
    identical_devices,
    ids_line,
    iommu_vendor,
    mount_controllers,
    native_modules,
    passthrough_unit,
    route_nics,
    softdep_line,
    unknown_driver,
    wanted_ids,
)

# the passthrough domain lives in doctor.passthrough (remediations import it from there); checks keep these names
__all__ = ["VIABLE_DRIVERS", "driver_text", "identical_devices", "ids_line", "mount_controllers", "native_modules",
           "route_nics", "softdep_line", "unknown_driver", "wanted_ids"]

VFIO_DRIVERS = ("vfio-pci",)


def try_fact(fn, default=None):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except (FactUnknown, NotCaptured):
        return default


def observed(facts: Facts, *kinds: str) -> list[Observed]:
    """Error (and proof) lines the source saw of these kinds (a pasted QEMU / libvirt / kernel line); [] where unknown."""
    return [o for o in try_fact(facts.observed, ()) if o.kind in kinds]


def observed_evidence(obs: list[Observed], n: int = 3) -> list[Evidence]:
    return [Evidence(o.where, o.text) for o in obs[:n]]


def endpoints(facts: Facts, gpu: PciDevice) -> list[PciDevice]:
    """The devices that must go to the guest together: every non-bridge member
    of the GPU's IOMMU group, or the functions of its slot where it has none."""
    members = facts.group_members(gpu)
    if members is None:
        members = facts.slot_functions(gpu)
    return [d for d in members if not d.is_bridge]


def unit_functions(facts: Facts, gpu: PciDevice) -> list[PciDevice]:
    """The GPU's passthrough unit: what ids=, early loading and binding are judged against."""
    return list(passthrough_unit(facts, gpu).functions)


def pci_where(dev: PciDevice) -> str:
    """Where the source showed the device: its sysfs folder, or the pasted line (`lspci.txt:12`)."""
    return dev.source or f"/sys/bus/pci/devices/{dev.address}"


def pci_evidence(dev: PciDevice) -> Evidence:
    return Evidence(pci_where(dev), dev.label())


@record(frozen=True)
class IdsConfig:
    ids: tuple[str, ...]  # in order, lowercase vendor:device (duplicates kept)
    lines: tuple[ModprobeLine, ...]  # modprobe.d options lines with ids=
    cmdline_now: tuple[str, ...]  # vfio-pci.ids= on /proc/cmdline
    cmdline_next: tuple[str, ...] | None  # on the next boot's command line (None: unknown)
    cmdline_source: str = "/proc/cmdline"  # where cmdline_now was read


def _ids_from_value(v: str) -> list[str]:
    out = []
    for part in v.split(","):
        part = part.strip().lower()
        if not part:
            continue
        # vendor:device[:subvendor:subdevice[:class[:class_mask]]]
        f = part.split(":")
        if len(f) >= 2:
            out.append(f"{f[0]}:{f[1]}")
        else:
            out.append(part)
    return out


def modprobe_vfio_ids(lines: tuple[ModprobeLine, ...]) -> list[tuple[ModprobeLine, list[str]]]:
    out = []
    for ln in lines:
        if ln.command == "options" and ln.module == "vfio_pci":
            for tok in ln.rest.split():
                if tok.startswith("ids="):
                    out.append((ln, _ids_from_value(tok[4:])))
    return out


def cmdline_vfio_ids(c: Cmdline | None) -> list[str]:
    if c is None:
        return []
    out: list[str] = []
    for v in c.values("vfio_pci.ids"):
        if v:
            out.extend(_ids_from_value(v))
    return out


def next_boot_cmdline(facts: Facts) -> Cmdline | None:
    boot: BootConfig | None = try_fact(facts.boot_config)
    return boot.cmdline if boot else None


def ids_config(facts: Facts) -> IdsConfig:
    mp = modprobe_vfio_ids(facts.modprobe_config())
    ids: list[str] = []
    for _, v in mp:
        ids.extend(v)
    nxt = next_boot_cmdline(facts)
    now = try_fact(facts.cmdline)
    return IdsConfig(
        tuple(ids),
        tuple(ln for ln, _ in mp),
        tuple(cmdline_vfio_ids(now)),
        tuple(cmdline_vfio_ids(nxt)) if nxt is not None else None,
        now.source if now is not None else "/proc/cmdline",
    )


def regen_commands(facts: Facts) -> list[str]:
    """The command this host uses to make a bootloader change take effect (doctor.bootstrategy)."""
    return boot_strategy(facts).regen_steps()


def cmdline_edit_steps(facts: Facts, add: list[str], remove: list[str]) -> list[str]:
    """Exact steps to put `add` on (and take `remove` off) the next boot's command line."""
    return boot_strategy(facts).cmdline_edit_steps(add, remove)


def initramfs_update_command(facts: Facts) -> str:
    return boot_strategy(facts).initramfs_step()


# --- per-device binding at boot (driver_override): vfio.ids_configured, vfio.binding_persistent,
# vfio.ids_unique_to_card


def boot_overrides(facts: Facts) -> dict[str, BootOverride]:
    """PCI address -> the boot-time configuration that hands it to vfio-pci ({} where unknown)."""
    return {o.address: o for o in try_fact(facts.boot_overrides) or ()}


def override_evidence(ov: dict[str, BootOverride], devs: list[PciDevice]) -> list[Evidence]:
    return [Evidence(ov[d.address].where, f"{d.address} -> vfio-pci (driver_override at boot)") for d in devs if d.address in ov]


# -- shared by the checks of several areas -------------------------------

def vendor_of(facts: Facts) -> str:
    """The IOMMU's vendor: the firmware table first, the CPU only as a fallback (doctor.passthrough)."""
    return iommu_vendor(facts).vendor


def iommu_on(facts: Facts) -> bool | None:
    """Whether the IOMMU is active, from the same evidence iommu.active reads: sysfs (groups, units), then what
    the source saw (a paste's `Adding to iommu group`, /dev/vfio/N, a device on vfio-pci prove it; QEMU's
    `no iommu_group found` disproves it where nothing proves it)."""
    groups = try_fact(facts.iommu_groups)
    cls = try_fact(facts.iommu_class)
    if groups or cls or observed(facts, "iommu.proof"):
        return True
    if groups is None and cls is None:
        return False if observed(facts, "iommu.missing") else None
    return False


def no_group_verdict(facts: Facts, gpu: PciDevice) -> Verdict:
    """A GPU without an IOMMU group: not applicable, and why (no IOMMU active, or one that does not cover it)."""
    why = ("the IOMMU is active (see iommu.active) but does not cover this device, or the evidence disagrees"
           if iommu_on(facts) else "IOMMU not active: see iommu.active")
    return verdict(Status.NOT_APPLICABLE, f"{gpu.address} has no IOMMU group ({why})", [pci_evidence(gpu)])


def unknown_verdict(summary: str, settle: str, ev: list[Evidence] | None = None, msgs: list[str] | None = None) -> Verdict:
    return verdict(Status.UNKNOWN, summary, ev or [], (msgs or []) + [f"to settle it, collect: {settle}"])


def configured_ids(facts: Facts) -> dict[str, list[str]]:
    """vendor:device -> where it is configured for vfio-pci (modprobe.d, now, next boot)."""
    cfg = ids_config(facts)
    out: dict[str, list[str]] = {}
    for ln in cfg.lines:
        for tok in ln.rest.split():
            if tok.startswith("ids="):
                for part in tok[4:].split(","):
                    f = part.strip().lower().split(":")
                    if len(f) >= 2:
                        out.setdefault(f"{f[0]}:{f[1]}", []).append(ln.where)
    for i in cfg.cmdline_now:
        out.setdefault(i, []).append("/proc/cmdline")
    for i in cfg.cmdline_next or ():
        out.setdefault(i, []).append("next boot command line")
    return {k: sorted(set(v)) for k, v in out.items()}


def stub_held_ids(facts: Facts) -> dict[str, list[str]]:
    """vendor:device -> where it is handed to pci-stub (`pci-stub.ids=` now / next boot, `options pci_stub ids=`)."""
    out: dict[str, list[str]] = {}
    for c in (try_fact(facts.cmdline), next_boot_cmdline(facts)):
        for i in stub_ids(c):
            out.setdefault(i, []).append(c.source if c is not None else "")
    for ln in try_fact(facts.modprobe_config) or ():
        if ln.command == "options" and ln.module == "pci_stub":
            for tok in ln.rest.split():
                if tok.startswith("ids="):
                    for i in _ids_from_value(tok[4:]):
                        out.setdefault(i, []).append(ln.where)
    return {k: sorted(set(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------
# 5. reset

# gnif/vendor-reset src/device-db.h: AMD Polaris 10/11/12, Vega 10/20, Navi 10/12/14, Arcturus.
VENDOR_RESET_IDS = frozenset(
    "67c0 67c1 67c2 67c4 67c7 67d0 67df 67c8 67c9 67ca 67cc 67cf 6fdf "  # Polaris 10
    "67e0 67e3 67e8 67eb 67ef 67ff 67e1 67e7 67e9 "  # Polaris 11
    "6980 6981 6985 6986 6987 6995 6997 699f "  # Polaris 12
    "6860 6861 6862 6863 6864 6867 6868 6869 686a 686b 686c 686d 686e 686f 687f "  # Vega 10
    "66a0 66a1 66a2 66a3 66a4 66a7 66af "  # Vega 20
    "7310 7312 7318 7319 731a 731b 731e 731f 1681 "  # Navi 10
    "7340 7341 7347 734f 7360 7362 738c".split()  # Navi 14, Navi 12, Arcturus
)


# ---------------------------------------------------------------------------
# gpu.framebuffer_free: the arguments that keep a firmware framebuffer off the GPU

def fb_args_in_effect(facts: Facts) -> dict[str, str]:
    """initcall_blacklist=sysfb_init / video=efifb:off / video=vesafb:off on the running command line (or the kernel
    log's `blacklisting initcall sysfb_init`) -> where it is shown."""
    out: dict[str, str] = {}
    c = try_fact(facts.cmdline)
    if c is not None:
        if any("sysfb_init" in (v or "").split(",") for v in c.values("initcall_blacklist")):
            out["initcall_blacklist=sysfb_init"] = c.source
        for v in c.values("video"):
            if v in ("efifb:off", "vesafb:off"):
                out[f"video={v}"] = c.source
    log = try_fact(facts.kernel_log)
    if log is not None and "initcall_blacklist=sysfb_init" not in out:
        shown = log.grep(r"blacklisting initcall sysfb_init")
        if shown:
            out["initcall_blacklist=sysfb_init"] = f"the kernel log: {shown[0].strip()}"
    return out


def fb_remedy(names: set[str], facts: Facts) -> Remedy:
    """Add what keeps these framebuffers off the GPU (BOOTFB / simpledrm / simplefb: the sysfb device; efifb;
    vesafb), less what the command line already holds; where it holds them all, say so."""
    args = []
    if names & {"bootfb", "simpledrm", "simplefb", "simple-framebuffer"}:
        args.append("initcall_blacklist=sysfb_init")
    if "efifb" in names:
        args.append("video=efifb:off")
    if "vesafb" in names or "vesa-framebuffer" in names:
        args.append("video=vesafb:off")
    have = fb_args_in_effect(facts)
    add = [a for a in args if a not in have]
    held = "; ".join(f"{a} ({w})" for a, w in have.items() if a in args)
    if not add:
        return Remedy(f"The command line already holds {held}, yet a framebuffer sits in the BAR: it was registered anyway (or "
                      "the evidence was taken before that boot). Boot the host on another display (firmware: primary display "
                      "on the other GPU or the iGPU), or use a kernel where vfio-pci evicts it (6.0+, VGA class).")
    return Remedy(f"Keep the firmware framebuffer off the GPU: add {' '.join(add)} to the kernel command line and reboot "
                  "(or boot the host on another display)." + (f" Already there: {held}." if held else ""),
                  tuple(cmdline_edit_steps(facts, add, [])), CmdlineEdit(add=tuple(add)))
