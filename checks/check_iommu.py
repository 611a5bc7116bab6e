"""Firmware IOMMU table, kernel command line, IOMMU active, groups."""

from __future__ import annotations

import re

from checks.common import cmdline_edit_steps, try_fact
from doctor.facts import Cmdline, Facts
from doctor.model import Evidence, Remedy, Severity, Status, Verdict, verdict
from doctor.passthrough import iommu_vendor
from doctor.registry import Context, check

INTEL_ON = re.compile(r"DMAR: IOMMU enabled|Intel\(R\) Virtualization Technology for Directed I/O")
AMD_ON = re.compile(r"AMD-Vi: (Found IOMMU|Interrupt remapping enabled|IOMMU performance counters|Lazy IO/TLB)|AMD-Vi:.*(Extended features|Found IOMMU)")
IOMMU_OFF = re.compile(r"DMAR: IOMMU disabled|AMD-Vi: AMD IOMMUv2 functionality not available|No IOMMU found|IOMMU not enabled|AMD-Vi: Unknown option|DMAR: Disable")


def _vendor(facts: Facts) -> str:
    """The IOMMU's vendor: the firmware table first, the CPU only as a fallback (doctor.passthrough)."""
    return iommu_vendor(facts).vendor


@check("firmware.iommu_table", "Firmware exposes an IOMMU (ACPI DMAR / IVRS)")
def firmware_iommu_table(ctx: Context) -> Verdict:
    """VT-d / AMD-Vi on in firmware: the ACPI DMAR (Intel) or IVRS (AMD) table exists."""
    tables = ctx.facts.acpi_tables()
    vendor = _vendor(ctx.facts)
    found = [t for t in ("DMAR", "IVRS", "IORT") if t in tables]
    ev = [Evidence(ctx.facts.where("acpi_tables", "/sys/firmware/acpi/tables"), " ".join(sorted(t for t in tables if t.isupper())) or "(no tables)")]
    if found:
        note = iommu_vendor(ctx.facts).disagreement
        return verdict(Status.PASS, f"ACPI {found[0]} table present: the firmware describes an IOMMU", ev, [note] if note else [])
    cpu = try_fact(ctx.facts.cpu)
    setting = {"intel": "Intel VT-d ('VT for Directed I/O')", "amd": "AMD-Vi / IOMMU (and SVM)"}.get(vendor, "the IOMMU (VT-d / AMD-Vi)")
    table = "DMAR" if vendor == "intel" else "IVRS" if vendor == "amd" else "DMAR/IVRS"
    msgs = ["No kernel argument can help: without this table the kernel has no IOMMU to turn on."]
    if cpu is not None and "hypervisor" in cpu.flags:
        # a VM guest: its "firmware" is the hypervisor's, so the fix is on the hypervisor, not in a setup screen
        ev.append(Evidence("/proc/cpuinfo", "flags: hypervisor present (this host is itself a virtual machine)"))
        viommu = ("-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on" if vendor != "amd"
                  else "-machine q35,kernel-irqchip=split -device amd-iommu,intremap=on")
        return verdict(
            Status.FAIL,
            f"no ACPI {table} table: this VM guest's hypervisor gives it no virtual IOMMU",
            ev,
            msgs + ["A firmware setting inside this guest cannot add one: the hypervisor that runs it must."],
            Remedy("Give this VM a virtual IOMMU on the hypervisor that runs it (QEMU: a q35 machine, "
                   "a split irqchip and an emulated IOMMU with interrupt remapping; libvirt: <iommu model='intel'> "
                   "with <driver intremap='on' caching_mode='on'/> and <ioapic driver='qemu'/>), then boot it again; "
                   "or run gpudoctor on the bare-metal host that owns the GPU.",
                   (f"qemu-system-x86_64 {viommu} ...  # on the hypervisor",)),
        )
    return verdict(
        Status.FAIL,
        f"no ACPI {table} table: the IOMMU is off in firmware (or absent)",
        ev,
        msgs,
        Remedy(f"Enable {setting} in the firmware setup, save and power-cycle.", (f"firmware setup: enable {setting}",)),
    )


def _firmware_has_no_iommu(facts: Facts) -> bool:
    """True only where the ACPI tables were read and hold no IOMMU table (unknown is not absent)."""
    tables = try_fact(facts.acpi_tables)
    return tables is not None and not any(t in tables for t in ("DMAR", "IVRS", "IORT"))


def _build_default_on(facts: Facts) -> tuple[bool | None, Evidence | None]:
    """Whether the running kernel turns the Intel IOMMU on without an argument."""
    cfg = try_fact(facts.kernel_config)
    if cfg is None:
        return None, None
    rel = try_fact(facts.kernel_release) or "?"
    for key in ("CONFIG_INTEL_IOMMU_DEFAULT_ON", "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF"):
        if cfg.get(key) == "y":
            return True, Evidence(f"/boot/config-{rel}", f"{key}=y")
    if cfg.get("CONFIG_INTEL_IOMMU") in (None, "n"):
        return False, Evidence(f"/boot/config-{rel}", "CONFIG_INTEL_IOMMU is not set")
    return False, Evidence(f"/boot/config-{rel}", "CONFIG_INTEL_IOMMU_DEFAULT_ON is not set")


def _iommu_active(facts: Facts) -> bool | None:
    groups = try_fact(facts.iommu_groups)
    cls = try_fact(facts.iommu_class)
    if groups is None and cls is None:
        return None
    return bool(groups) or bool(cls)


def _state(c: Cmdline | None, vendor: str, default_on: bool | None) -> tuple[str, str]:
    """(state, why) for one command line: on, off, default, missing, unknown."""
    if c is None:
        return "unknown", "not known"
    if vendor == "amd":
        if "off" in c.option_values("amd_iommu") or c.last("iommu") == "off":
            return "off", "amd_iommu=off" if "off" in c.option_values("amd_iommu") else "iommu=off"
        return "on", "AMD-Vi is on unless disabled"
    opts = c.option_values("intel_iommu")
    if opts and opts[-1] == "off" or "off" in opts:
        return "off", "intel_iommu=off"
    if c.last("iommu") == "off":
        return "off", "iommu=off"
    if "on" in opts:
        return "on", "intel_iommu=on"
    if default_on:
        return "default", "on by the kernel's build default"
    if default_on is None:
        return "unknown-default", "no intel_iommu=on and the kernel's build default is unknown"
    return "missing", "no intel_iommu=on and the kernel's build default is off"


@check("cmdline.iommu_enabled", "Kernel command line enables the IOMMU (now and at next boot)", fix="kernel_cmdline")
def cmdline_iommu_enabled(ctx: Context) -> Verdict:
    """intel_iommu=on where the kernel's build default leaves it off; nothing
    disables it; next boot's configured command line agrees with /proc/cmdline."""
    facts = ctx.facts
    live = facts.cmdline()
    vendor = _vendor(facts)
    boot = try_fact(facts.boot_config)
    nxt = boot.cmdline if boot else None
    default_on, dev = _build_default_on(facts) if vendor == "intel" else (None, None)
    active = _iommu_active(facts)
    ev = [Evidence(live.source, live.raw or "(empty)")]
    if nxt is not None:
        ev.append(Evidence(nxt.source, nxt.raw or "(no arguments configured)"))
    if boot is not None and boot.generated is not None:
        ev.append(Evidence(boot.generated_source, f"default entry: {boot.generated.raw}"))
    if dev is not None:
        ev.append(Evidence(dev.source, dev.value))
    if active is not None:
        ev.append(Evidence(facts.where("iommu_groups", "/sys/kernel/iommu_groups"), "IOMMU groups present" if active else "no IOMMU groups"))
    msgs: list[str] = []
    note = iommu_vendor(facts).disagreement
    if note:
        msgs.append(note)
    if nxt is None:
        msgs.append("next boot: unknown (no bootloader configuration found on this host)")
    amd_bogus = vendor == "amd" and "on" in live.option_values("amd_iommu")
    if amd_bogus:
        msgs.append("`amd_iommu=on` is not an option the kernel knows (it logs `AMD-Vi: Unknown option`); AMD-Vi is on by default. Remove it.")
    if vendor == "unknown":
        off = [a for a in ("intel_iommu=off", "amd_iommu=off", "iommu=off") if a in live.raw.split()]
        if off:
            return verdict(Status.FAIL, f"IOMMU disabled on the running kernel by {off[0]}", ev, msgs,
                           Remedy(f"Remove {off[0]} from the kernel command line and reboot.", fix_id="kernel_cmdline",
                                  params=(("remove", off[0]),)))
        if "on" in live.option_values("intel_iommu"):
            return verdict(Status.PASS, "intel_iommu=on and nothing disables the IOMMU (on an AMD CPU, AMD-Vi is on by default)", ev, msgs)
        return verdict(Status.UNKNOWN, "unknown: the CPU vendor decides which argument applies", ev,
                       msgs + ["to settle it, collect: grep -m1 vendor_id /proc/cpuinfo"])
    if vendor not in ("intel", "amd"):
        return verdict(Status.NOT_APPLICABLE, f"CPU vendor {vendor}: no x86 IOMMU argument applies", ev, msgs)
    now, why_now = _state(live, vendor, default_on)
    then, why_then = _state(nxt, vendor, default_on)
    key = "intel_iommu=on" if vendor == "intel" else ""
    remove = [a for a in ("intel_iommu=off", "amd_iommu=off", "iommu=off") if a in (nxt.raw.split() if nxt else live.raw.split())]
    if now == "off":
        pending = then in ("on", "default")
        summary = f"IOMMU disabled on the running kernel by {why_now}" + ("; the next boot's configuration no longer disables it (reboot pending)" if pending else "")
        return verdict(
            Status.FAIL, summary, ev, msgs,
            Remedy(f"Remove {why_now} from the kernel command line" + (" and reboot" if not pending else ": reboot"),
                   tuple(cmdline_edit_steps(facts, [key] if key and not default_on else [], remove)) if not pending else ("sudo reboot",),
                   "kernel_cmdline", (("remove", " ".join(remove)),)),
        )
    if now in ("missing", "unknown-default") and not active and then != "on" and _firmware_has_no_iommu(facts):
        # one fact, one fix: firmware.iommu_table says no argument can help, so this check defers to it
        return verdict(
            Status.FAIL, "no intel_iommu=on, but adding it cannot help yet: the firmware exposes no IOMMU (firmware.iommu_table)",
            ev, msgs,
            Remedy("First give this host an IOMMU (see firmware.iommu_table); once the ACPI DMAR table is there, "
                   "add intel_iommu=on to the kernel command line and reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], [])), "", (("after", "firmware.iommu_table"),)),
        )
    if now == "missing" and not active:
        if then == "on":
            return verdict(
                Status.WARN, f"reboot pending: intel_iommu=on is configured in {nxt.source if nxt else '?'} but not on the running kernel", ev, msgs,
                Remedy("Reboot to boot with the configured command line.", ("sudo reboot",), "kernel_cmdline"),
            )
        return verdict(
            Status.FAIL, "intel_iommu=on is missing and this kernel's build default leaves the Intel IOMMU off", ev, msgs,
            Remedy("Add intel_iommu=on (and iommu=pt) to the kernel command line, regenerate the bootloader configuration, reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on", "iommu=pt"], [])), "kernel_cmdline", (("add", "intel_iommu=on iommu=pt"),)),
        )
    if now == "unknown-default" and active is None:
        return verdict(Status.UNKNOWN, "unknown: no intel_iommu=on, and neither the kernel's build default nor the IOMMU state is known",
                       ev, msgs + ["to settle it, collect: grep INTEL_IOMMU_DEFAULT_ON /boot/config-$(uname -r); ls /sys/class/iommu"])
    if now == "unknown-default" and not active:
        return verdict(
            Status.FAIL, "no intel_iommu=on on the command line and the IOMMU is not active", ev, msgs,
            Remedy("Add intel_iommu=on (and iommu=pt) to the kernel command line and reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on", "iommu=pt"], [])), "kernel_cmdline", (("add", "intel_iommu=on iommu=pt"),)),
        )
    # on now (explicitly, by default, or the IOMMU is demonstrably active)
    why = why_now if now in ("on", "default") else "no argument needed: the IOMMU is active"
    if then == "off":
        return verdict(
            Status.FAIL, f"IOMMU on now ({why}) but the next boot's configuration disables it ({why_then} in {nxt.source if nxt else '?'})", ev, msgs,
            Remedy(f"Remove {why_then} from the bootloader configuration.", tuple(cmdline_edit_steps(facts, [], [why_then])), "kernel_cmdline",
                   (("remove", why_then),)),
        )
    if then == "missing" and now == "on" and vendor == "intel":
        return verdict(
            Status.FAIL, f"intel_iommu=on is on the running kernel but not in the next boot's configuration ({nxt.source if nxt else '?'}): it will be lost at reboot", ev, msgs,
            Remedy("Add intel_iommu=on to the bootloader configuration.", tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], [])), "kernel_cmdline",
                   (("add", "intel_iommu=on"),)),
        )
    if boot is not None and boot.generated is not None and nxt is not None:
        def _iommu_args(c: Cmdline) -> set[str]:
            return {str(a) for a in c.args if a.key.replace("-", "_") in ("intel_iommu", "amd_iommu", "iommu", "vfio_pci.ids")}
        if _iommu_args(boot.generated) != _iommu_args(nxt):
            msgs.append(
                f"{boot.generated_source} was not regenerated after /etc/default/grub changed: it has "
                f"{' '.join(sorted(_iommu_args(boot.generated))) or 'no IOMMU arguments'}, /etc/default/grub has "
                f"{' '.join(sorted(_iommu_args(nxt))) or 'none'}"
            )
            return verdict(Status.WARN, "bootloader configuration edited but not regenerated", ev, msgs,
                           Remedy("Regenerate the bootloader configuration.", tuple(cmdline_edit_steps(facts, [], [])[:-1]) or ("sudo update-grub",), "kernel_cmdline",
                                  (("regenerate", "1"),)))
    if amd_bogus:
        return verdict(Status.WARN, "AMD-Vi on; `amd_iommu=on` on the command line does nothing", ev, msgs,
                       Remedy("Remove amd_iommu=on from the kernel command line.", tuple(cmdline_edit_steps(facts, [], ["amd_iommu=on"])), "kernel_cmdline",
                              (("remove", "amd_iommu=on"),)))
    return verdict(Status.PASS, f"IOMMU enabled on the kernel command line ({why})", ev, msgs)


@check("cmdline.iommu_passthrough", "iommu=pt for host devices (advice)", severity=Severity.ADVICE, fix="kernel_cmdline")
def cmdline_iommu_passthrough(ctx: Context) -> Verdict:
    """iommu=pt keeps host devices on identity mappings; advised, not required."""
    facts = ctx.facts
    live = facts.cmdline()
    boot = try_fact(facts.boot_config)
    nxt = boot.cmdline if boot else None
    ev = [Evidence(live.source, live.raw or "(empty)")]
    if nxt is not None:
        ev.append(Evidence(nxt.source, nxt.raw or "(no arguments configured)"))
    pt_now = live.last("iommu") == "pt" or "pt" in live.option_values("amd_iommu") or "pt" in live.option_values("intel_iommu")
    pt_next = nxt is not None and (nxt.last("iommu") == "pt")
    if pt_now:
        return verdict(Status.PASS, "iommu=pt is set", ev)
    if pt_next:
        return verdict(Status.WARN, f"iommu=pt configured in {nxt.source if nxt else '?'}, reboot pending", ev,
                       remedy=Remedy("Reboot.", ("sudo reboot",), "kernel_cmdline"))
    return verdict(
        Status.WARN,
        "iommu=pt not set (advice: host devices then skip IOMMU translation; it does not turn the IOMMU on)",
        ev,
        remedy=Remedy("Add iommu=pt to the kernel command line.", tuple(cmdline_edit_steps(facts, ["iommu=pt"], [])), "kernel_cmdline",
                      (("add", "iommu=pt"),)),
    )


@check("iommu.active", "IOMMU active in the running kernel")
def iommu_active(ctx: Context) -> Verdict:
    """The kernel log shows DMAR/AMD-Vi coming up and /sys/class/iommu has units;
    if the log is unreadable, sysfs decides and the report says so."""
    facts = ctx.facts
    vendor = _vendor(facts)
    cls = try_fact(facts.iommu_class)
    groups = try_fact(facts.iommu_groups)
    if cls is None and groups is None:
        facts.iommu_class()  # raises: neither sysfs view is known, so the verdict is unknown
    ev = [Evidence(facts.where("iommu_class", "/sys/class/iommu"), "unknown" if cls is None else " ".join(cls) if cls else "(empty)")]
    if groups is not None:
        ev.append(Evidence(facts.where("iommu_groups", "/sys/kernel/iommu_groups"), f"{len(groups)} groups"))
    msgs: list[str] = []
    log = try_fact(facts.kernel_log)
    on_lines: list[str] = []
    off_lines: list[str] = []
    if log is None:
        from doctor.errors import FactUnknown

        try:
            facts.kernel_log()
        except FactUnknown as e:
            msgs.append(f"kernel log not readable ({e.reason}); decided from sysfs")
        except Exception:  # noqa: BLE001
            msgs.append("kernel log not readable; decided from sysfs")
        ev.append(Evidence("kernel log", "not readable"))
    else:
        on_lines = log.grep(INTEL_ON if vendor == "intel" else AMD_ON if vendor == "amd" else re.compile(f"{INTEL_ON.pattern}|{AMD_ON.pattern}"))
        off_lines = log.grep(IOMMU_OFF)
        for ln in (on_lines[:3] + off_lines[:3]):
            ev.append(Evidence(log.source, ln.strip()))
        if not on_lines and not off_lines:
            ev.append(Evidence(log.source, "no DMAR / AMD-Vi lines (the log may have rotated)"))
    active = bool(cls) or bool(groups)
    if active:
        units = cls or ()
        kind = "VT-d (DMAR)" if any(c.startswith("dmar") for c in units) else "AMD-Vi" if any(c.startswith("ivhd") for c in units) else "IOMMU"
        return verdict(Status.PASS, f"{kind} active: {len(units) if cls is not None else 'unknown number of'} unit(s), "
                       f"{len(groups or {})} groups", ev, msgs)
    if cls is None or groups is None:
        which = "/sys/class/iommu" if cls is None else "/sys/kernel/iommu_groups"
        return verdict(Status.UNKNOWN, f"unknown: {which} is not known and the other view shows no IOMMU", ev,
                       msgs + [f"to settle it, collect: ls {which}"])
    hint = "Check the firmware setting (firmware.iommu_table) and the command line (cmdline.iommu_enabled)."
    return verdict(
        Status.FAIL,
        "no IOMMU active: /sys/class/iommu is empty" + (" although the log mentions it" if on_lines else ""),
        ev,
        msgs,
        Remedy(hint),
    )


@check("iommu.groups_present", "IOMMU groups exist")
def iommu_groups_present(ctx: Context) -> Verdict:
    """/sys/kernel/iommu_groups holds groups (what vfio hands to QEMU)."""
    groups = ctx.facts.iommu_groups()
    where = ctx.facts.where("iommu_groups", "/sys/kernel/iommu_groups")
    if groups:
        sizes = sorted(len(v) for v in groups.values())
        return verdict(
            Status.PASS,
            f"{len(groups)} IOMMU groups",
            [Evidence(where, f"{len(groups)} groups, largest has {sizes[-1]} device(s)")],
        )
    return verdict(
        Status.FAIL,
        "no IOMMU groups under /sys/kernel/iommu_groups",
        [Evidence(where, "(empty or absent)")],
        ["Without groups vfio cannot hand any device to a VM (QEMU: `No IOMMU detected` / libvirt: `host doesn't support passthrough of host PCI devices`)."],
        Remedy("Enable the IOMMU: see firmware.iommu_table and cmdline.iommu_enabled."),
    )
