"""vfio-pci loaded before the native drivers: in the initramfs with the tool
the host uses, plus a modules-load.d entry; then the initramfs is rebuilt."""

from __future__ import annotations

import re

from doctor.bootstrategy import (
    DRACUT_CONF,
    EARLY_MODULES,
    INITRAMFS_TOOLS_MODULES,
    MKINITCPIO_CONF,
    MODULES_LOAD,
    boot_strategy,
    dracut_conf_line,
)
from doctor.facts import Facts
from doctor.host import Host
from doctor.plan import INITRAMFS, Action, Command, FileEdit

MODULES = EARLY_MODULES


def _append_missing(old: str | None, names: tuple[str, ...], header: str) -> str | None:
    text = old or ""
    have = {ln.split("#", 1)[0].strip().replace("-", "_") for ln in text.splitlines()}
    missing = [n for n in names if n not in have]
    if not missing:
        return None
    sep = "" if not text or text.endswith("\n") else "\n"
    return text + sep + (header + "\n" if header not in text else "") + "".join(n + "\n" for n in missing)


def initramfs_rebuild(facts: Facts, checks: tuple[str, ...]) -> Command | None:
    argv = boot_strategy(facts).initramfs_argv
    if argv is None:
        return None
    return Command(checks, "rebuild the initramfs so vfio-pci and its options are in it", INITRAMFS, boot_path=True, argv=argv, undo_argv=argv)


def plan_early_load(facts: Facts, host: Host, checks: tuple[str, ...]) -> tuple[list[Action], str | None]:
    el = facts.early_load()
    acts: list[Action] = []
    header = "# loaded early for GPU passthrough (gpudoctor)"
    if el.initramfs_tool == "initramfs-tools":
        p = INITRAMFS_TOOLS_MODULES
        old = host.read_text_or_none(p)
        new = _append_missing(old, MODULES, header)
        if new is not None:
            acts.append(FileEdit(checks, "vfio-pci in the initramfs (initramfs-tools)", INITRAMFS, boot_path=True, path=p,
                                 old=old.encode() if old is not None else None, new=new.encode()))
    elif el.initramfs_tool == "dracut":
        p = DRACUT_CONF
        old = host.read_text_or_none(p)
        new = f"{header}\n{dracut_conf_line()}\n"
        if old != new:
            acts.append(FileEdit(checks, "vfio-pci in the initramfs (dracut force_drivers)", INITRAMFS, boot_path=True, path=p,
                                 old=old.encode() if old is not None else None, new=new.encode()))
    elif el.initramfs_tool == "mkinitcpio":
        p = MKINITCPIO_CONF
        old = host.read_text_or_none(p) or ""
        lines = old.splitlines(keepends=True)
        for i, ln in enumerate(lines):
            m = re.match(r"^(\s*MODULES=\()([^)]*)(\).*)$", ln.rstrip("\n"))
            if m:
                cur = m.group(2).split()
                missing = [x for x in MODULES if x not in cur]
                if missing:
                    lines[i] = f"{m.group(1)}{' '.join(missing + cur)}{m.group(3)}\n"
                    acts.append(FileEdit(checks, "vfio-pci first in MODULES (mkinitcpio)", INITRAMFS, boot_path=True, path=p,
                                         old=old.encode(), new="".join(lines).encode()))
                break
    else:
        return [], "no initramfs tool detected (initramfs-tools, dracut, mkinitcpio): put vfio-pci in your initramfs by hand"
    p = MODULES_LOAD
    old = host.read_text_or_none(p)
    new = _append_missing(old, ("vfio_pci",), header)
    if new is not None:
        acts.append(FileEdit(checks, "load vfio-pci at every boot (modules-load.d)", INITRAMFS, path=p,
                             old=old.encode() if old is not None else None, new=new.encode()))
    return acts, None
