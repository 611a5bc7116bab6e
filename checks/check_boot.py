"""The next boot: the configuration it uses, the initramfs it loads, the modules Secure Boot lets load."""

from __future__ import annotations

import re

from checks.common import (
    VENDOR_RESET_IDS,
    boot_overrides,
    cmdline_edit_steps,
    initramfs_update_command,
    regen_commands,
    try_fact,
    unknown_verdict,
)
from doctor.checkapi import Context, check
from doctor.facts import GRUB_CFGS, Cmdline, Facts, PciDevice, parse_modprobe
from doctor.model import CmdlineEdit, EarlyLoad, Evidence, Remedy, Severity, Status, Verdict, verdict

# ---------------------------------------------------------------------------
# 2. configuration in effect

_BUILTIN_CONFIG = {
    "vfio_pci": "CONFIG_VFIO_PCI", "vfio": "CONFIG_VFIO", "vfio_iommu_type1": "CONFIG_VFIO_IOMMU_TYPE1",
    "vfio_pci_core": "CONFIG_VFIO_PCI_CORE", "kvm": "CONFIG_KVM", "kvm_intel": "CONFIG_KVM_INTEL", "kvm_amd": "CONFIG_KVM_AMD",
}  # fmt: skip
# systemd.machine_id: kernel-install (systemd >= 250) appends it to every BLS entry it writes,
# /etc/kernel/cmdline never has it
_IGNORED_ARGS = {"BOOT_IMAGE", "root", "ro", "rw", "initrd", "rootflags", "rootfstype", "systemd.machine_id"}


def _relevant(key: str) -> bool:
    k = key.replace("-", "_")
    return k.startswith(("vfio", "intel_iommu", "amd_iommu", "iommu", "pcie_acs", "video", "initcall_blacklist",
                         "modprobe.blacklist", "module_blacklist", "rd.driver", "kvm", "intremap", "hugepage",
                         "default_hugepagesz", "isolcpus", "pci"))


def _builtin(facts: Facts, module: str) -> tuple[bool | None, str]:
    mods = try_fact(facts.modules)
    b = mods.is_builtin(module) if mods else None
    if b:
        return True, "modules.builtin"
    cfg = try_fact(facts.kernel_config)
    key = _BUILTIN_CONFIG.get(module)
    if cfg is not None and key:
        if cfg.get(key) == "y":
            return True, f"{key}=y"
        if cfg.get(key) in ("m", "n"):
            return False, f"{key}={cfg.get(key)}"
    return b, "modules.builtin" if b is not None else ""


def _arg_set(c: Cmdline) -> set[str]:
    # grub.cfg lines carry grub variables ($vt_handoff on Ubuntu) that /etc/default/grub never has
    return {str(a) for a in c.args if a.key not in _IGNORED_ARGS and not a.key.startswith("$")}


def _effective_next(facts: Facts) -> tuple[Cmdline | None, str, str]:
    """(what the bootloader will really use, where from, the configured source) for the next boot."""
    boot = try_fact(facts.boot_config)
    if boot is None:
        return None, "", ""
    if boot.kind == "grub" and boot.generated is not None:
        return boot.generated, f"{boot.generated_source} (default entry)", boot.cmdline.source if boot.cmdline else ""
    if boot.kind in ("grub", "systemd-boot"):
        entries = try_fact(facts.boot_entries) or ()
        rel = try_fact(facts.kernel_release) or ""
        pick = [e for e in entries if rel and (e.version == rel or rel in e.path)] or list(entries)
        if pick:
            from doctor.facts import parse_cmdline

            e = sorted(pick, key=lambda e: e.path)[-1]
            return parse_cmdline(e.options, e.path), e.path, boot.cmdline.source if boot.cmdline else ""
    return None, "", boot.cmdline.source if boot.cmdline else ""


@check("boot.config_in_effect", "The vfio configuration written is the one the next boot uses")
def boot_config_in_effect(ctx: Context) -> Verdict:
    """Options for a built-in module (modules.builtin, CONFIG_...=y) in modprobe.d are never read;
    the next boot's command line is what the bootloader really uses (the generated grub.cfg
    default entry, BLS entries), not only what /etc/default/grub or /etc/kernel/cmdline says."""
    facts = ctx.facts
    ev: list[Evidence] = []
    msgs: list[str] = []
    fails: list[str] = []
    warns: list[str] = []
    steps: list[str] = []
    regen = False
    # built-in modules with options in modprobe.d
    for ln in try_fact(facts.modprobe_config) or ():
        if ln.command != "options" or ln.module not in _BUILTIN_CONFIG:
            continue
        b, how = _builtin(facts, ln.module)
        if b:
            args = " ".join(f"{ln.module.replace('_', '-') if ln.module == 'vfio_pci' else ln.module}.{o}" for o in ln.rest.split())
            ev += [Evidence(ln.where, ln.text), Evidence(how, f"{ln.module} is built into the kernel")]
            fails.append(f"{ln.where}: `{ln.text}` is never read ({ln.module} is built in, {how})")
            steps += [f"# {ln.where}: move to the kernel command line:"] + cmdline_edit_steps(facts, args.split(), [])[:-1]
    # what the bootloader really uses
    boot = try_fact(facts.boot_config)
    eff, eff_src, conf_src = _effective_next(facts)
    if boot is not None and boot.cmdline is not None and eff is not None:
        conf = _arg_set(boot.cmdline)
        real = _arg_set(eff)
        ev.append(Evidence(boot.cmdline.source, boot.cmdline.raw or "(no arguments)"))
        ev.append(Evidence(eff_src, eff.raw or "(no arguments)"))
        missing = sorted(conf - real)
        stale = sorted(real - conf)
        if missing or stale:
            rel_diff = [a for a in missing + stale if _relevant(a.split("=", 1)[0])]
            what = (f"{conf_src} was edited but {eff_src} was not regenerated: "
                    + (f"the next boot lacks {' '.join(missing)}" if missing else "")
                    + ("; " if missing and stale else "")
                    + (f"it still has {' '.join(stale)}" if stale else ""))
            (fails if rel_diff else warns).append(what)
            regen = True
            steps += regen_commands(facts) or ["sudo grubby --update-kernel=ALL --args=\"" + " ".join(missing) + "\""]
    elif boot is not None and boot.kind == "grub" and eff is None:
        msgs.append("the generated grub.cfg was not readable or has no linux line: the next boot's real command line is unknown")
    live = try_fact(facts.cmdline)
    if live is not None and eff is not None:
        pend = sorted(a for a in _arg_set(eff) ^ _arg_set(live) if _relevant(a.split("=", 1)[0]))
        if pend:
            msgs.append(f"reboot pending: the next boot changes {' '.join(pend)} against /proc/cmdline")
    remedy = Remedy("Make the written configuration the one in effect.", tuple(dict.fromkeys(steps)), CmdlineEdit(regenerate=regen)) if steps else None
    if fails:
        return verdict(Status.FAIL, "; ".join(fails), ev, msgs + warns, remedy)
    if warns:
        return verdict(Status.WARN, "; ".join(warns), ev, msgs, remedy)
    if boot is None and not ev:
        return unknown_verdict("unknown: no bootloader configuration found", "ls /etc/default/grub /boot/grub*/grub.cfg /boot/loader/entries", ev, msgs)
    if eff is None and boot is not None and boot.kind == "grub" and boot.generated_unknown:
        return unknown_verdict(f"unknown: the generated grub.cfg could not be read ({boot.generated_unknown})",
                        "sudo cat " + " ".join(GRUB_CFGS), ev, msgs)
    if eff is None and boot is not None and boot.kind in ("grub", "systemd-boot") and try_fact(facts.boot_entries) is None:
        facts.boot_entries()  # the boot loader entries are unknown, not absent
    if eff is None:
        return verdict(Status.PASS if not msgs else Status.WARN,
                       "no options for built-in modules; the bootloader's generated entries were not found to compare"
                       if boot is not None else "no options for built-in modules in modprobe.d", ev, msgs)
    return verdict(Status.PASS, f"the next boot uses what is configured ({eff_src})", ev, msgs)


@check("boot.initramfs_current", "The initramfs holds vfio-pci and the current vfio configuration")
def boot_initramfs_current(ctx: Context) -> Verdict:
    """Where vfio-pci is a module loaded from the initramfs, the current image (early-microcode
    cpio, then gzip/xz/zstd/lz4) has vfio-pci and the same modprobe.d vfio files as /etc."""
    facts = ctx.facts
    el = try_fact(facts.early_load)
    mp_known = try_fact(facts.modprobe_config)
    mp = mp_known or ()
    vfio_lines = [ln for ln in mp if ln.module == "vfio_pci" or re.search(r"\bvfio[-_]pci\b", ln.rest)]
    wants_initramfs = el is not None and any(re.search(r"\bvfio[-_]pci\b", ln.text) for ln in el.initramfs)
    if not vfio_lines and not wants_initramfs:
        # "none" only from reads that succeeded: an unknown configuration raises its FactUnknown
        if mp_known is None:
            facts.modprobe_config()
        if el is None:
            facts.early_load()
        return verdict(Status.NOT_APPLICABLE, "no vfio-pci configuration that the initramfs would carry")
    b, how = _builtin(facts, "vfio_pci")
    img = facts.initramfs()
    ev = [Evidence(img.path, " + ".join(img.segments) + f"; {len(img.names)} paths read")]
    cmd = initramfs_update_command(facts)
    remedy = Remedy("Rebuild the initramfs so it carries vfio-pci and the current configuration.", (cmd,), EarlyLoad())
    probs: list[str] = []
    if not b and wants_initramfs and img.undecoded is None and not img.has_module("vfio_pci"):
        probs.append("the initramfs configuration asks for vfio-pci but the image does not contain vfio-pci.ko")
    files = sorted({ln.file for ln in vfio_lines})
    for f in files:
        live = [ln.text for ln in mp if ln.file == f]
        inside = img.file(f.lstrip("/")) or img.file("usr/" + f.lstrip("/"))
        if inside is None:
            if img.undecoded is None and (img.has_module("vfio_pci") or wants_initramfs):
                probs.append(f"{f} is not in the image: vfio-pci loads from the initramfs without its ids/softdeps")
            continue
        ev.append(Evidence(f"{img.path}:{f.lstrip('/')}", inside.decode("utf-8", "replace").strip()[:200]))
        if [ln.text for ln in parse_modprobe(inside.decode("utf-8", "replace"), f)] != live:
            probs.append(f"{f} in the image differs from /etc (the image is older than the configuration)")
    # per-device binding scripts (initramfs-tools scripts/init-top): in the image, as written
    for o in {o.file: o for o in boot_overrides(facts).values() if o.kind == "initramfs"}.values():
        inner = o.file.removeprefix("/etc/initramfs-tools/")
        inside = img.file(inner)
        if img.undecoded is not None:
            continue
        if inside is None:
            probs.append(f"{o.file} is not in the image: the card is not bound by address at the next boot")
        elif inside.decode("utf-8", "replace") != o.text:
            probs.append(f"{o.file} in the image differs from /etc (the image is older than the configuration)")
        else:
            ev.append(Evidence(f"{img.path}:{inner}", "present"))
    if probs:
        return verdict(Status.FAIL, "; ".join(probs), ev, [f"vfio-pci: {how or 'module'}"], remedy)
    if img.undecoded:
        return unknown_verdict(f"unknown: {img.path} is {img.undecoded}-compressed and this Python has no {img.undecoded} decoder",
                        f"lsinitramfs {img.path} | grep -E 'vfio|modprobe.d'", ev)
    return verdict(Status.PASS, f"{img.path} carries vfio-pci" + (" and the current modprobe.d vfio files" if files else ""), ev)


# ---------------------------------------------------------------------------
# 8. Secure Boot and lockdown


def _oot_modules(facts: Facts, gpu: PciDevice | None) -> list[str]:
    need = []
    if gpu is not None and gpu.vendor == "1002" and gpu.device in VENDOR_RESET_IDS:
        need.append("vendor_reset")
    for d in (try_fact(facts.pci_devices) or {}).values():
        if d.is_display and (d.driver == "nvidia" or "nvidia" in d.kernel_modules) and "nvidia" not in need:
            need.append("nvidia")
    return need


@check("boot.secure_boot_modules", "Out-of-tree modules the plan needs can load (Secure Boot, lockdown)", severity=Severity.ADVICE)
def boot_secure_boot_modules(ctx: Context) -> Verdict:
    """With Secure Boot on, lockdown, or module.sig_enforce, unsigned modules (vendor-reset,
    nvidia) are refused: `Loading of unsigned module is rejected` / `Key was rejected by service`."""
    facts = ctx.facts
    need = _oot_modules(facts, ctx.gpu)
    if not need:
        return verdict(Status.NOT_APPLICABLE, "the plan needs no out-of-tree module (vendor-reset, nvidia)")
    sec = facts.security()
    ev = [Evidence(s, v) for s, v in sec.sources]
    strict = bool(sec.secure_boot) or sec.lockdown in ("integrity", "confidentiality") or bool(sec.sig_enforce)
    mods = try_fact(facts.modules)
    loaded = [m for m in need if mods is not None and mods.present(m)]
    if not strict:
        return verdict(Status.PASS, f"no Secure Boot, lockdown or signature enforcement: {', '.join(need)} can load", ev)
    why = ", ".join(x for x in ("Secure Boot on" if sec.secure_boot else "", f"lockdown={sec.lockdown}" if sec.lockdown not in (None, "none") else "",
                                "module.sig_enforce=Y" if sec.sig_enforce else "") if x)
    missing = [m for m in need if m not in loaded]
    if not missing:
        return verdict(Status.PASS, f"{why}, and {', '.join(loaded)} is loaded (so its signature is trusted)", ev)
    return verdict(
        Status.WARN, f"{why}: unsigned {', '.join(missing)} will be refused", ev,
        ["modprobe then fails with `Key was rejected by service` (the kernel logs `Loading of unsigned module is rejected`).",
         "Depends on how the module was built: a DKMS build signed with an enrolled MOK loads."],
        Remedy("Sign the module with a Machine Owner Key and enroll it (or turn Secure Boot off).",
               ("sudo mokutil --import /var/lib/dkms/mok.pub  # DKMS's key; reboot and confirm in MokManager",)),
    )
