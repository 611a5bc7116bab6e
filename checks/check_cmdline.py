"""The kernel command line: the IOMMU on where the build default leaves it off, iommu=pt, and arguments
that do not do what they are meant to."""

from __future__ import annotations

from checks.common import cmdline_edit_steps, iommu_on, next_boot_cmdline, try_fact, vendor_of
from doctor import kernel_args
from doctor.checkapi import Context, check
from doctor.errors import FactUnknown
from doctor.facts import Cmdline, Facts
from doctor.kernel_args import ArgFinding
from doctor.model import (
    After,
    CmdlineEdit,
    Evidence,
    RebootPending,
    Remedy,
    Severity,
    Status,
    Verdict,
    verdict,
)
from doctor.passthrough import iommu_vendor


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


@check("cmdline.iommu_enabled", "Kernel command line enables the IOMMU (now and at next boot)")
def cmdline_iommu_enabled(ctx: Context) -> Verdict:
    """intel_iommu=on where the kernel's build default leaves it off; nothing
    disables it; next boot's configured command line agrees with /proc/cmdline."""
    facts = ctx.facts
    live = facts.cmdline()
    vendor = vendor_of(facts)
    boot = try_fact(facts.boot_config)
    nxt = boot.cmdline if boot else None
    default_on, dev = _build_default_on(facts) if vendor == "intel" else (None, None)
    active = iommu_on(facts)
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
                           Remedy(f"Remove {off[0]} from the kernel command line and reboot.", params=CmdlineEdit(remove=(off[0],))))
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
                   CmdlineEdit(remove=tuple(remove))),
        )
    if now in ("missing", "unknown-default") and not active and then != "on" and _firmware_has_no_iommu(facts):
        # one fact, one fix: firmware.iommu_table says no argument can help, so this check defers to it
        return verdict(
            Status.FAIL, "no intel_iommu=on, but adding it cannot help yet: the firmware exposes no IOMMU (firmware.iommu_table)",
            ev, msgs,
            Remedy("First give this host an IOMMU (see firmware.iommu_table); once the ACPI DMAR table is there, "
                   "add intel_iommu=on to the kernel command line and reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], [])), After("firmware.iommu_table")),
        )
    if now == "missing" and not active:
        if then == "on":
            return verdict(
                Status.WARN, f"reboot pending: intel_iommu=on is configured in {nxt.source if nxt else '?'} but not on the running kernel", ev, msgs,
                Remedy("Reboot to boot with the configured command line.", ("sudo reboot",), RebootPending()),
            )
        return verdict(
            Status.FAIL, "intel_iommu=on is missing and this kernel's build default leaves the Intel IOMMU off", ev, msgs,
            Remedy("Add intel_iommu=on (and iommu=pt) to the kernel command line, regenerate the bootloader configuration, reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on", "iommu=pt"], [])), CmdlineEdit(add=("intel_iommu=on", "iommu=pt"))),
        )
    if now == "unknown-default" and active is None:
        return verdict(Status.UNKNOWN, "unknown: no intel_iommu=on, and neither the kernel's build default nor the IOMMU state is known",
                       ev, msgs + ["to settle it, collect: grep INTEL_IOMMU_DEFAULT_ON /boot/config-$(uname -r); ls /sys/class/iommu"])
    if now == "unknown-default" and not active:
        return verdict(
            Status.FAIL, "no intel_iommu=on on the command line and the IOMMU is not active", ev, msgs,
            Remedy("Add intel_iommu=on (and iommu=pt) to the kernel command line and reboot.",
                   tuple(cmdline_edit_steps(facts, ["intel_iommu=on", "iommu=pt"], [])), CmdlineEdit(add=("intel_iommu=on", "iommu=pt"))),
        )
    # on now (explicitly, by default, or the IOMMU is demonstrably active)
    why = why_now if now in ("on", "default") else "no argument needed: the IOMMU is active"
    if then == "off":
        return verdict(
            Status.FAIL, f"IOMMU on now ({why}) but the next boot's configuration disables it ({why_then} in {nxt.source if nxt else '?'})", ev, msgs,
            Remedy(f"Remove {why_then} from the bootloader configuration.", tuple(cmdline_edit_steps(facts, [], [why_then])), CmdlineEdit(remove=(why_then,))),
        )
    if then == "missing" and now == "on" and vendor == "intel":
        return verdict(
            Status.FAIL, f"intel_iommu=on is on the running kernel but not in the next boot's configuration ({nxt.source if nxt else '?'}): it will be lost at reboot", ev, msgs,
            Remedy("Add intel_iommu=on to the bootloader configuration.", tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], [])), CmdlineEdit(add=("intel_iommu=on",))),
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
                           Remedy("Regenerate the bootloader configuration.", tuple(cmdline_edit_steps(facts, [], [])[:-1]) or ("sudo update-grub",), CmdlineEdit(regenerate=True)))
    if amd_bogus:
        return verdict(Status.WARN, "AMD-Vi on; `amd_iommu=on` on the command line does nothing", ev, msgs,
                       Remedy("Remove amd_iommu=on from the kernel command line.", tuple(cmdline_edit_steps(facts, [], ["amd_iommu=on"])), CmdlineEdit(remove=("amd_iommu=on",))))
    return verdict(Status.PASS, f"IOMMU enabled on the kernel command line ({why})", ev, msgs)


@check("cmdline.iommu_passthrough", "iommu=pt for host devices (advice)", severity=Severity.ADVICE)
def cmdline_iommu_passthrough(ctx: Context) -> Verdict:
    """iommu=pt keeps host devices on identity mappings; advised, not required."""
    facts = ctx.facts
    live = facts.cmdline()
    boot = try_fact(facts.boot_config)
    nxt = boot.cmdline if boot else None
    ev = [Evidence(live.source, live.raw or "(empty)")]
    if nxt is not None:
        ev.append(Evidence(nxt.source, nxt.raw or "(no arguments configured)"))
    pt_item = kernel_args.iommu_pt_item(live)
    pt_now = live.last("iommu") == "pt" or pt_item is not None or "pt" in live.option_values("amd_iommu") or "pt" in live.option_values("intel_iommu")
    pt_next = nxt is not None and (nxt.last("iommu") == "pt" or kernel_args.iommu_pt_item(nxt) is not None)
    if pt_now:
        if pt_item is not None and pt_item != "pt":
            return verdict(Status.PASS, f"iommu=pt is set (written `iommu={pt_item}`: the kernel matches iommu= options by prefix, so it "
                           "is taken as pt)", ev, ["cmdline.iommu_args_meaningful gives the exact spelling"])
        return verdict(Status.PASS, "iommu=pt is set", ev)
    if pt_next:
        return verdict(Status.WARN, f"iommu=pt configured in {nxt.source if nxt else '?'}, reboot pending", ev,
                       remedy=Remedy("Reboot.", ("sudo reboot",), RebootPending()))
    return verdict(
        Status.WARN,
        "iommu=pt not set (advice: host devices then skip IOMMU translation; it does not turn the IOMMU on)",
        ev,
        remedy=Remedy("Add iommu=pt to the kernel command line.", tuple(cmdline_edit_steps(facts, ["iommu=pt"], [])), CmdlineEdit(add=("iommu=pt",))),
    )


# ---------------------------------------------------------------------------
# 11. command-line advice that does not do what it says


def _amd_on_finding(c: Cmdline, vendor: str, default_on: bool | None) -> ArgFinding | None:
    """`amd_iommu=on`: no amd_iommu option is called `on` (AMD-Vi logs `Unknown option - 'on'` and is on by
    default), and on an Intel host amd_iommu= is not read at all: the argument does nothing on any host."""
    if "on" not in c.option_values("amd_iommu"):
        return None
    arg = next(str(a) for a in c.args if a.key.replace("-", "_") == "amd_iommu" and "on" in (a.value or "").split(","))
    if vendor == "amd":
        return ArgFinding(arg, f"`{arg}` is not an AMD option (the kernel logs `AMD-Vi: Unknown option - 'on'`); AMD-Vi is on by default", (arg,))
    need = () if "on" in c.option_values("intel_iommu") or default_on else ("intel_iommu=on",)
    if vendor == "intel":
        return ArgFinding(arg, f"`{arg}` does nothing on an Intel host: the Intel IOMMU's argument is intel_iommu=on", (arg,), need)
    return ArgFinding(arg, f"`{arg}` does nothing on any host: AMD-Vi knows no `on` (it is on by default) and an Intel host "
                      "does not read amd_iommu= (intel_iommu=on is its argument)", (arg,))


def _findings(live: Cmdline | None, nxt: Cmdline | None, vendor: str, default_on: bool | None) -> list[tuple[ArgFinding, str]]:
    """Each argument that does not do what it is meant to, with where it stands (now, next boot), once."""
    out: list[tuple[ArgFinding, str]] = []
    seen: set[str] = set()
    for c in (live, nxt):
        if c is None:
            continue
        amd = _amd_on_finding(c, vendor, default_on)
        # intel_iommu= and the x86 iommu= parser exist only on x86 (an ARM host has neither)
        x86 = kernel_args.findings(c, vendor) if vendor in ("intel", "amd", "unknown") else kernel_args.misplaced_findings(c)
        for f in x86 + ([amd] if amd else []):
            if f.arg not in seen:
                seen.add(f.arg)
                out.append((f, c.source))
    return out


@check("cmdline.iommu_args_meaningful", "IOMMU arguments do what they are meant to", severity=Severity.ADVICE)
def cmdline_iommu_args_meaningful(ctx: Context) -> Verdict:
    """Misspelled or misplaced arguments (doctor.kernel_args: `vfio-pci-ids=`, values intel_iommu= / iommu=
    do not accept, `iommu=pti` read as pt, a bare module name, `amd_iommu=on` on any host), each with the exact
    correction; `iommu=pt` does not turn the IOMMU on (on Intel with the build default off it needs
    intel_iommu=on); intel_iommu=on is not needed where CONFIG_INTEL_IOMMU_DEFAULT_ON=y."""
    facts = ctx.facts
    live = try_fact(facts.cmdline)
    nxt = next_boot_cmdline(facts)
    if live is None and nxt is None:
        facts.cmdline()  # raises: neither the running nor the next boot's command line is known
    c = live if live is not None else nxt
    assert c is not None
    vendor = vendor_of(facts)
    ev = [Evidence(c.source, c.raw or "(empty)")]
    default_on, cfg_ev = _build_default_on(facts) if vendor == "intel" else (None, None)
    found = _findings(live, nxt, vendor, default_on)
    if found:
        if nxt is not None and nxt is not c and any(src == nxt.source for _, src in found):
            ev.append(Evidence(nxt.source, nxt.raw or "(no arguments configured)"))
        log = try_fact(facts.kernel_log)
        ev += [Evidence(log.source, ln.strip()) for ln in (log.grep(r"Unknown (?:kernel command line parameters|option)") if log else [])[:2]]
        add = tuple(dict.fromkeys(a for f, _ in found for a in f.add))
        remove = tuple(dict.fromkeys(r for f, _ in found for r in f.remove))
        msgs = [f.message + ("" if live is not None and src == live.source else f" (in {src})") for f, src in found]
        summary = msgs[0] if len(found) == 1 else (f"{len(found)} kernel arguments do not do what they are meant to: "
                                                   + ", ".join(f"`{f.arg}`" for f, _ in found))
        return verdict(Status.WARN, summary, ev, msgs[1:] if len(found) == 1 else msgs,
                       Remedy("Correct the kernel command line: " + "; ".join(
                           [f"remove {' '.join(remove)}"] if remove else []) + ("; " if remove and add else "")
                              + (f"add {' '.join(add)}" if add else ""),
                              tuple(cmdline_edit_steps(facts, list(add), list(remove))), CmdlineEdit(add=add, remove=remove)))
    if live is None:
        facts.cmdline()  # raises: a wrong argument on the next boot's line is shown above; "none" needs the running one too
    pt_alone = c.last("iommu") == "pt" and "on" not in c.option_values("intel_iommu")
    if vendor not in ("intel", "amd") and pt_alone:
        raise FactUnknown("the IOMMU's vendor (what these arguments do depends on it)", "not in the evidence",
                          "ls /sys/firmware/acpi/tables; grep -m1 vendor_id /proc/cpuinfo")
    if vendor == "intel":
        if cfg_ev is not None:
            ev.append(cfg_ev)
        opts = c.option_values("intel_iommu")
        if pt_alone and default_on is None:
            active = iommu_on(facts)
            if active is None:
                return verdict(Status.UNKNOWN, "unknown: iommu=pt without intel_iommu=on, and the kernel's build default is unknown",
                               ev, ["to settle it, collect: grep INTEL_IOMMU_DEFAULT_ON /boot/config-$(uname -r)"])
            default_on = active
        if pt_alone and not default_on:
            return verdict(Status.WARN, "iommu=pt without intel_iommu=on: iommu=pt does not turn the Intel IOMMU on", ev,
                           ["iommu=pt only sets identity mapping for host devices once an IOMMU is on."],
                           Remedy("Add intel_iommu=on.", tuple(cmdline_edit_steps(facts, ["intel_iommu=on"], []))))
        if "on" in opts and default_on:
            return verdict(Status.PASS, "intel_iommu=on is harmless but not needed: this kernel's build default is on", ev,
                           [cfg_ev.value if cfg_ev else "the IOMMU is on by the kernel's build default"])
    return verdict(Status.PASS, "no IOMMU argument that does something other than intended", ev)
