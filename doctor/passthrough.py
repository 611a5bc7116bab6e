"""The passthrough domain, below both checks and remediations: what belongs to a GPU's
passthrough unit, what the host runs on, and the one guard every fix plan goes through.

- The *unit* is derived, not assumed: the GPU function plus the functions that belong to the
  card in the same slot, judged by class and vendor:
  - class: a graphics card carries display functions, HD audio (HDMI/DP), USB (USB-C /
    VirtualLink) and serial functions (the USB-C UCSI controller; a serial port); never a
    storage, network, bridge, encryption or system-peripheral function;
  - vendor: on an AMD APU one slot also holds the SoC's Platform Security Processor (1080),
    USB controllers, audio co-processor (0480) and HD audio: the SoC's functions carry AMD's
    CPU vendor id 1022, the graphics' carry ATI's 1002, so a 1022 function in a 1002 GPU's slot
    is the SoC's even where its class could be a card's. (Board partners' and emulated cards
    mix vendors on their own functions, so a different vendor alone does not exclude one.)
  Everything else in the IOMMU group is an *intruder*.
- What the host *keeps*: the controller of every mounted filesystem and every bridge above it,
  the NIC of the default route or of any configured interface (and the bridges above it), the
  boot display while it is the only display. No plan configures one of these for vfio-pci, at
  runtime or at the next boot, not even with --force.
"""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts import Facts, PciDevice, parse_modprobe

# display-class functions a user may name with --gpu: VGA, 3D controller, other display controller
GPU_CLASSES = {0x0300: "VGA compatible controller", 0x0302: "3D controller", 0x0380: "display controller"}
# functions a graphics card carries besides its display function (class code >> 8)
COMPANION_CLASSES = {
    0x0403: "HD audio (HDMI/DP)",
    0x0c03: "USB controller (USB-C / VirtualLink)",
    0x0c80: "serial bus controller (USB-C UCSI)",
    0x0700: "serial controller",
}
# GPU vendor -> the vendor id of the SoC functions that share an integrated GPU's slot
SOC_VENDORS = {"1002": "1022"}
# what `lspci` calls a class, for error messages (a few, the rest by number)
CLASS_NAMES = {
    0x0600: "host bridge", 0x0604: "PCI bridge", 0x0601: "ISA bridge", 0x0106: "SATA controller",
    0x0108: "NVMe controller", 0x0200: "Ethernet controller", 0x0280: "network controller",
    0x0403: "audio device", 0x0c03: "USB controller", 0x0c05: "SMBus", 0x1080: "encryption controller",
    0x0480: "multimedia controller", 0x0c80: "serial bus controller", 0x0880: "system peripheral",
}  # fmt: skip


# --- what a vfio-pci configuration for a unit holds (checks print it, remediations write it)

# Drivers the kernel accepts in a viable group besides vfio (drivers/vfio/group.c).
VIABLE_DRIVERS = ("vfio-pci", "pci-stub", "pcieport")


def wanted_ids(eps: list[PciDevice]) -> list[str]:
    out: list[str] = []
    for d in eps:
        if d.ident not in out:
            out.append(d.ident)
    return out


def ids_line(eps: list[PciDevice]) -> str:
    return "options vfio-pci ids=" + ",".join(wanted_ids(eps))


def native_modules(dev: PciDevice) -> list[str]:
    """Kernel modules that would claim dev on the host (not vfio)."""
    mods = [m for m in dev.kernel_modules if m.replace("-", "_") != "vfio_pci"]
    if dev.driver and dev.driver not in VIABLE_DRIVERS and not mods:
        mods = [dev.driver]
    return mods


def softdep_line(module: str) -> str:
    return f"softdep {module} pre: vfio-pci"


def identical_devices(facts: Facts, eps: list[PciDevice]) -> dict[str, list[PciDevice]]:
    """Devices outside `eps` with the same vendor:device as one of them (an ids= line grabs them too)."""
    mine = {d.address for d in eps}
    twins: dict[str, list[PciDevice]] = {}
    for d in eps:
        for o in facts.pci_devices().values():
            if o.ident == d.ident and o.address not in mine and not o.is_bridge:
                twins.setdefault(d.ident, []).append(o)
    return twins


def class_name(dev: PciDevice) -> str:
    c = dev.class_code >> 8
    return GPU_CLASSES.get(c) or CLASS_NAMES.get(c) or f"class {c:04x}"


def is_gpu(dev: PciDevice) -> bool:
    return (dev.class_code >> 8) in GPU_CLASSES


def try_fact(fn, default=None):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except (FactUnknown, NotCaptured, PermissionError):
        return default


# ---------------------------------------------------------------------------
# the passthrough unit


def companion_reason(gpu: PciDevice, dev: PciDevice) -> str | None:
    """Why dev belongs to gpu's card (None: it does not)."""
    if dev.address == gpu.address:
        return "the GPU"
    if dev.slot != gpu.slot:
        return None
    if SOC_VENDORS.get(gpu.vendor) == dev.vendor:
        return None
    c = dev.class_code >> 8
    if c in GPU_CLASSES:
        return "another display function of the card"
    return COMPANION_CLASSES.get(c)


def outsider_reason(gpu: PciDevice, dev: PciDevice) -> str:
    """Why a member of gpu's group is not the GPU's (for messages)."""
    if dev.slot != gpu.slot:
        return "another slot"
    if SOC_VENDORS.get(gpu.vendor) == dev.vendor:
        return f"same slot, but vendor {dev.vendor} marks the SoC's {class_name(dev)}, not the GPU's {gpu.vendor}"
    return f"same slot, but a {class_name(dev)} is not a graphics card's function"


@record(frozen=True)
class Unit:
    """The functions that go to the guest as the GPU, and what else its group holds."""

    gpu: PciDevice
    functions: tuple[PciDevice, ...]  # the GPU first, then its companions by address
    intruders: tuple[PciDevice, ...]  # group endpoints that are not the GPU's
    bridges: tuple[PciDevice, ...]  # bridges in the group (stay on pcieport)
    grouped: bool  # False: no IOMMU group known (the unit is judged on the slot)
    groups_unknown: FactUnknown | None = None  # the source does not show a function's group: intruders unknown

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(d.address for d in self.functions)

    def describe_intruders(self) -> str:
        return "; ".join(f"{d.address} [{d.class_hex}] {d.name or d.ident} (driver: {driver_text(d)}; "
                         f"{outsider_reason(self.gpu, d)})" for d in self.intruders)


def passthrough_unit(facts: Facts, gpu: PciDevice) -> Unit:
    """The card's functions (the GPU's slot, judged by companion_reason), and every other
    endpoint of the IOMMU groups they are in. Where ACS gives each function a group of its own
    the unit still spans them: the card's audio goes to the guest with its GPU."""
    funcs = [d for d in facts.slot_functions(gpu) if companion_reason(gpu, d)]
    if gpu.address not in {d.address for d in funcs}:
        funcs.append(gpu)
    funcs.sort(key=lambda d: (d.address != gpu.address, d.address))
    mine = {d.address for d in funcs}
    members: dict[str, PciDevice] = {}
    grouped = False
    open_: FactUnknown | None = None
    for d in funcs:
        try:
            ms = facts.group_members(d)
        except FactUnknown as e:  # the functions stand; what else their group holds is unknown
            open_ = open_ or e
            continue
        if ms is not None:
            grouped = True
            members.update((m.address, m) for m in ms)
    rest = sorted((m for m in members.values() if m.address not in mine), key=lambda m: m.address)
    # a member the source names by address alone (a group listing of links, no lspci line for it): bridge or not is unknown
    unseen = [m for m in rest if m.vendor == "????" and m.class_code == 0]
    intruders = tuple(m for m in rest if not m.is_bridge and m not in unseen)
    bridges = tuple(m for m in rest if m.is_bridge)
    if unseen and not intruders and open_ is None:
        open_ = FactUnknown(f"what {unseen[0].address} in the group is (only its address is shown; a bridge is harmless, an endpoint "
                            "is not)", "not in the evidence", f"lspci -nnk -s {unseen[0].address}")
    return Unit(gpu, tuple(funcs), intruders, bridges, grouped, open_)


def driver_text(dev: PciDevice) -> str:
    """The device's driver for a message: its name, "no driver", or "driver not shown" where the source does not say."""
    return dev.driver or ("no driver" if dev.driver_known else "driver not shown")


def unknown_driver(dev: PciDevice, settle: str = "lspci -nnk") -> FactUnknown:
    """The FactUnknown for a device whose driver the source does not show."""
    return FactUnknown(f"driver of {dev.address}", "not in the evidence", f"{settle} -s {dev.address}")


# ---------------------------------------------------------------------------
# what the host runs on


def _pci_chain(sysfs_path: str) -> list[str]:
    """Every PCI function on a sysfs device path, root port first."""
    return [p for p in sysfs_path.split("/") if _PCI.match(p)]


_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")


def mount_controllers(facts: Facts, chain: bool = False) -> dict[str, list[str]]:
    """PCI address -> mounted filesystems on a disk behind it ("/ (/dev/nvme0n1p2)"). With
    chain, every bridge above the controller is listed too."""
    mounts = facts.mounts()
    blocks = facts.block_devices()
    by_dm = {b.dm_name: b.name for b in blocks.values() if b.dm_name}

    def pci_of(name: str, depth: int = 0) -> set[str]:
        b = blocks.get(name)
        if b is None or depth > 8:
            return set()
        if b.pci_address:
            return set(_pci_chain(b.sysfs)) if chain else {b.pci_address}
        out: set[str] = set()
        for s in b.slaves:
            out |= pci_of(s, depth + 1)
        return out

    out: dict[str, list[str]] = {}
    for m in mounts:
        if not m.source.startswith("/dev/"):
            continue
        name = m.source[5:]
        if name.startswith("mapper/"):
            name = by_dm.get(name[7:], name)
        for addr in pci_of(name.rsplit("/", 1)[-1] if "/" in name else name):
            out.setdefault(addr, []).append(f"{m.target} ({m.source}, {m.fstype})")
    return out


def route_nics(facts: Facts, chain: bool = False, configured: bool = False) -> dict[str, list[str]]:
    """PCI address -> default-route interfaces carried by it (through bridges, bonds, vlans).
    With configured, every interface with a route of its own counts, not only the default
    route's; with chain, the bridges above the NIC are listed too."""
    ifs = facts.net_interfaces()
    out: dict[str, list[str]] = {}

    def walk(name: str, via: str, depth: int = 0) -> None:
        i = ifs.get(name)
        if i is None or depth > 8:
            return
        if i.pci_address:
            label = via if via == name else f"{via} via {name}"
            for a in _pci_chain(i.sysfs) if chain else [i.pci_address]:
                if label not in out.setdefault(a, []):
                    out[a].append(label)
            return
        for lo in i.lowers:
            walk(lo, via, depth + 1)

    names = list(facts.default_route_ifaces())
    if configured:
        names += [n for n in facts.routed_ifaces() if n not in names]
    for name in names:
        walk(name, name)
    return out


@record(frozen=True)
class Kept:
    """A device the host runs on. certain: a mounted filesystem, a configured interface, the
    only display (never configured for vfio-pci). Otherwise a possibility --force may override."""

    address: str
    certain: bool
    why: str


def host_keeps(facts: Facts) -> dict[str, Kept]:
    """Every PCI function the host runs on (or may be running on), with why."""
    out: dict[str, Kept] = {}

    def add(k: Kept) -> None:
        if k.address not in out or (k.certain and not out[k.address].certain):
            out[k.address] = k

    devs = try_fact(facts.pci_devices, {}) or {}
    mounts = try_fact(lambda: mount_controllers(facts, chain=True))
    for addr, fs in (mounts or {}).items():
        add(Kept(addr, True, f"{addr} holds mounted filesystems{_bridge(devs, addr, 'disk controller')}: {', '.join(fs[:3])}"))
    routes = try_fact(lambda: route_nics(facts, chain=True))
    configured = try_fact(lambda: route_nics(facts, chain=True, configured=True))
    for addr, via in (routes or {}).items():
        add(Kept(addr, True, f"{addr} carries the default route{_bridge(devs, addr, 'NIC')} ({', '.join(via)})"))
    for addr, via in (configured or {}).items():
        add(Kept(addr, True, f"{addr} carries a configured interface{_bridge(devs, addr, 'NIC')} ({', '.join(via)})"))
    displays = [d for d in devs.values() if d.is_display]
    serial = serial_console(facts)
    for d in displays:
        if d.boot_vga and all(o.slot == d.slot for o in displays):
            if serial:  # the kernel's console is on a serial port: the screen is not the only way in
                add(Kept(d.address, False, f"{d.address} is the boot display and the host's only display "
                                           f"(its kernel console is on {serial})"))
            else:
                add(Kept(d.address, True, f"{d.address} is the boot display and the host's only display (its console)"))
        elif d.boot_vga:
            add(Kept(d.address, False, f"{d.address} is the boot display the host may be using"))
    for d in devs.values():
        if d.base_class == 0x01 and mounts is None:
            add(Kept(d.address, False, f"{d.address} is a storage controller and the mounts could not be read"))
        elif d.base_class == 0x02 and (routes is None or configured is None):
            add(Kept(d.address, False, f"{d.address} is a network controller and the routes could not be read"))
    return out


def serial_console(facts: Facts) -> str | None:
    """The serial port the kernel's console is on (console=ttyS0,115200 on the command line), or None."""
    c = try_fact(facts.cmdline)
    for v in reversed(c.values("console") if c is not None else []):
        name = (v or "").split(",", 1)[0]
        if name.startswith(("ttyS", "ttyAMA", "ttyUSB", "hvc", "ttysclp")):
            return name
    return None


def _bridge(devs: dict[str, PciDevice], addr: str, what: str) -> str:
    d = devs.get(addr)
    return f" (a bridge above the {what})" if d is not None and d.is_bridge else ""


def refusal(facts: Facts, gpu: PciDevice, force: bool = False, runtime: bool = False) -> str | None:
    """Why nothing may be planned for gpu's group (None: the unit may be configured). What the host
    may be running on (a boot display beside another one, a controller whose use is unknown) blocks
    a runtime bind without --force; the next boot's configuration leaves the host time to move."""
    if not is_gpu(gpu):
        return f"{gpu.address} is a {class_name(gpu)}, not a GPU (classes 0300, 0302, 0380): nothing is configured"
    unit = passthrough_unit(facts, gpu)
    choices = ("choices: put the card in another slot (one wired to the CPU's own root port usually has its own group), "
               "a board or firmware with ACS on that port, or a different card")
    if unit.intruders:
        keeps = host_keeps(facts)
        runs_on = [keeps[d.address].why for d in unit.intruders if d.address in keeps]
        return (f"group {gpu.iommu_group} also holds {unit.describe_intruders()}: they are not the GPU's and would leave "
                "the host with it" + (" (" + "; ".join(runs_on) + ")" if runs_on else "")
                + f"; nothing is written for this group ({choices})")
    if unit.groups_unknown is not None:
        # unknown, not absent: the group may hold devices the host runs on
        return (f"what else the IOMMU group of {gpu.address} holds is unknown ({unit.groups_unknown}): "
                "nothing is written for this group")
    keeps = host_keeps(facts)
    hits = [keeps[a] for a in sorted(unit.addresses) if a in keeps]
    certain = [k.why for k in hits if k.certain]
    if certain:
        return "refusing: " + "; ".join(certain) + " (never, not even with --force; keep a second display, "\
               "a serial console or remote access for the host, or pass another card)"
    if hits and runtime and not force:
        return "refusing without --force: " + "; ".join(k.why for k in hits)
    return None


# ---------------------------------------------------------------------------
# the guard: what a planned action hands to vfio-pci


PCI_ADDRESS = _ADDR = re.compile(r"\b[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]\b")
_CMDLINE_IDS = re.compile(r"\bvfio[-_]pci\.ids=([0-9a-fA-F:,]+)")


def _ids(value: str) -> set[str]:
    out = set()
    for part in value.split(","):
        f = part.strip().lower().split(":")
        if len(f) >= 2 and f[0] and f[1]:
            out.add(f"{f[0]}:{f[1]}")
    return out


def configured_targets(path: str, text: str, devs: dict[str, PciDevice], old: str | None = None) -> dict[str, tuple[str, bool]]:
    """PCI address -> (how, strong): how the content of file `path` hands that device to vfio-pci.
    Strong: ids= lines (every device with the id), vfio-pci.ids= on a kernel command line, a PCI
    address in a boot script, udev rule or install line. Weak: a softdep this content adds before
    the device's driver (it orders loading and binds nothing by itself)."""
    out: dict[str, tuple[str, bool]] = {}
    ids: set[str] = set()
    softdeps: set[str] = set()
    if path.startswith(("/etc/modprobe.d/", "/lib/modprobe.d/", "/usr/lib/modprobe.d/", "/run/modprobe.d/")):
        had = {ln.module for ln in parse_modprobe(old or "", path) if ln.command == "softdep" and "vfio" in ln.rest}
        for ln in parse_modprobe(text, path):
            if ln.command == "options" and ln.module == "vfio_pci":
                for tok in ln.rest.split():
                    if tok.startswith("ids="):
                        ids |= _ids(tok[4:])
            elif ln.command == "softdep" and "vfio" in ln.rest and ln.module not in had:
                softdeps.add(ln.module)
            elif ln.command == "install":
                for a in _ADDR.findall(ln.rest):
                    out[a.lower()] = (f"{path}: an install line names it", True)
    else:
        live = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        for m in _CMDLINE_IDS.finditer(live):
            ids |= _ids(m.group(1))
        if "vfio" in live:
            for a in _ADDR.findall(live):
                out[a.lower()] = (f"{path} hands it to vfio-pci by address", True)
    for d in devs.values():
        if d.ident in ids and not d.is_bridge:
            out.setdefault(d.address, (f"{path}: ids= takes every {d.ident}", True))
        mods = {m.replace("-", "_") for m in d.kernel_modules} | ({d.driver.replace("-", "_")} if d.driver else set())
        if mods & softdeps:
            out.setdefault(d.address, (f"{path}: softdep puts vfio-pci before its driver {sorted(mods & softdeps)[0]}", False))
    return out


@record(frozen=True)
class Blocked:
    index: int  # the action's index in the plan
    address: str
    why: str  # the rule it breaks
    how: str  # how the action would configure it


def guard(actions: list, facts: Facts, units: list[Unit], force: bool = False) -> list[Blocked]:  # type: ignore[type-arg]
    """Every device the planned actions would hand to vfio-pci must be a function of one of
    `units` and not something the host runs on. Returns what breaks that rule (empty: safe)."""
    from doctor.plan import Bind, FileEdit

    devs = try_fact(facts.pci_devices, {}) or {}
    allowed = {a for u in units for a in u.addresses}
    keeps = host_keeps(facts)
    out: list[Blocked] = []
    for i, act in enumerate(actions):
        targets: dict[str, tuple[str, bool]] = {}
        if isinstance(act, Bind):
            targets[act.address] = ("runtime bind (driver_override)", True)
        elif isinstance(act, FileEdit) and act.new is not None:
            old = act.old.decode("utf-8", "replace") if act.old is not None else None
            targets = configured_targets(act.path, act.new.decode("utf-8", "replace"), devs, old)
        for addr, (how, strong) in sorted(targets.items()):
            k = keeps.get(addr)
            # a softdep binds nothing by itself: it counts only before the driver of a device the
            # host certainly runs on (what the next boot's modprobe of that driver would reorder)
            if k is not None and (k.certain or (isinstance(act, Bind) and not force)):
                out.append(Blocked(i, addr, k.why, how))
            elif strong and addr not in allowed:
                d = devs.get(addr)
                what = f"{addr} [{d.class_hex}] {d.name or d.ident}" if d else addr
                out.append(Blocked(i, addr, f"{what} is not a function of a GPU's passthrough unit", how))
    return out


# ---------------------------------------------------------------------------
# whose IOMMU this is


_DMAR_LOG = re.compile(r"\bDMAR(-IR)?:")
_AMDVI_LOG = re.compile(r"\bAMD-Vi:")


@record(frozen=True)
class IommuVendor:
    """Which IOMMU a host has: decided by the firmware table (DMAR: Intel VT-d, IVRS: AMD-Vi),
    then by the kernel log's DMAR / AMD-Vi lines, the CPU vendor only as a fallback (QEMU's
    intel-iommu on an AMD CPU is the usual nested setup)."""

    vendor: str  # intel, amd, other, unknown
    basis: str  # "ACPI DMAR table", "kernel log (DMAR: lines)", "CPU vendor (GenuineIntel)", ...
    cpu: str  # the CPU's vendor: intel, amd, other, unknown

    @property
    def disagreement(self) -> str | None:
        """A note when the IOMMU and the CPU are not the same vendor's (None when they agree)."""
        if self.cpu in ("unknown", self.vendor) or self.vendor == "unknown" or self.basis.startswith("CPU"):
            return None
        names = {"intel": "Intel VT-d", "amd": "AMD-Vi"}
        return (f"the IOMMU is {names.get(self.vendor, self.vendor)} ({self.basis}) on an {self.cpu.upper() if self.cpu == 'amd' else self.cpu.capitalize()} "
                f"CPU: the {'intel_iommu=' if self.vendor == 'intel' else 'amd_iommu='} arguments apply, not the CPU's")


def iommu_vendor(facts: Facts) -> IommuVendor:
    cpu_info = try_fact(facts.cpu)
    cpu = "unknown" if cpu_info is None else "intel" if cpu_info.is_intel else "amd" if cpu_info.is_amd else "other"
    tables = try_fact(facts.acpi_tables)
    if tables is not None:
        has_dmar, has_ivrs = "DMAR" in tables, "IVRS" in tables
        if has_dmar != has_ivrs:
            return IommuVendor("intel" if has_dmar else "amd", f"ACPI {'DMAR' if has_dmar else 'IVRS'} table", cpu)
    log = try_fact(facts.kernel_log)
    if log is not None:
        dmar, amdvi = bool(log.grep(_DMAR_LOG)), bool(log.grep(_AMDVI_LOG))
        if dmar != amdvi:
            return IommuVendor("intel" if dmar else "amd", f"kernel log ({'DMAR' if dmar else 'AMD-Vi'}: lines)", cpu)
    return IommuVendor(cpu, f"CPU vendor ({cpu_info.vendor})" if cpu_info is not None else "CPU vendor (unknown)", cpu)
