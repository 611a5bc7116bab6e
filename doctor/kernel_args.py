"""Kernel command-line arguments that do not do what they are meant to, read by the kernel's own parsers.

Pure functions of a parsed `Cmdline` (doctor.facts.Cmdline); checks/check_cmdline.py
(cmdline.iommu_args_meaningful) turns each finding into a message and one typed CmdlineEdit.

The parsers this follows (Linux 6.x):
- `intel_iommu=` (drivers/iommu/intel/iommu.c, intel_iommu_setup): a comma list, each item matched by
  prefix (strncmp) against on, off, igfx_off, forcedac, strict, sp_off, sm_on, sm_off, tboot_noforce; anything
  else logs `DMAR: Unknown option - '...'` and does nothing (older kernels also took ecs_off, pasid28;
  Debian's kernels intgpu_off or igpu_off, by version of its patch).
- `iommu=` (arch/x86/kernel/pci-dma.c, iommu_setup, and gart_parse_options in amd_gart_64.c): each item is
  tested against every prefix (strncmp, no else): off, force, noforce, biomerge, panic, nopanic, merge, nomerge,
  forcesac, allowdac, nodac, usedac, soft, pt, nopt, and GART's digits (aperture size), fullflush,
  nofullflush, noagp, noaperture, allowed, memaper (older kernels: calgary, group_mf, leak). An item that
  matches nothing is ignored without a word; `pti` starts with `pt`, so `iommu=pti` IS passthrough.
- A parameter name the kernel does not know and that has no dot (`vfio-pci-ids=`) goes to init as an
  environment variable (`Unknown kernel command line parameters ... will be passed to user space`); a bare
  word goes to init as an argument. Neither reaches a module.
"""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.facts import Cmdline

INTEL_IOMMU_OPTS = ("on", "off", "igfx_off", "forcedac", "strict", "sp_off", "sm_on", "sm_off", "tboot_noforce",
                    "ecs_off", "pasid28", "intgpu_off", "igpu_off")
X86_IOMMU_OPTS = ("off", "force", "noforce", "biomerge", "panic", "nopanic", "merge", "nomerge", "forcesac", "allowdac",
                  "nodac", "usedac", "soft", "pt", "nopt", "fullflush", "nofullflush", "noagp", "noaperture", "allowed",
                  "memaper", "calgary", "group_mf", "leak")

# parameter names (normalised: '-' as '_') people write for vfio-pci's ids, and the one the kernel knows
_IDS_MISSPELLED = ("vfio_pci_ids", "vfio_pci_id", "vfio_pci.id", "vfio.pci.ids", "vfio.ids", "vfio_ids", "vfio_pci:ids")
# module names that, alone on the command line, load and bind nothing
_BARE_MODULES = ("vfio_pci", "vfio", "vfio_iommu_type1", "vfio_virqfd", "pci_stub", "kvm", "kvm_intel", "kvm_amd",
                 "vendor_reset")
_ID_LIST = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(?::[0-9a-fA-F]{4}){0,4}(?:,[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(?::[0-9a-fA-F]{4}){0,4})*,?$")


@record(frozen=True)
class ArgFinding:
    """One argument that does not do what it is meant to: what is wrong, and the exact edit."""

    arg: str  # as written
    message: str
    remove: tuple[str, ...] = ()
    add: tuple[str, ...] = ()


def _norm(key: str) -> str:
    return key.replace("-", "_")


def _prefix_known(item: str, known: tuple[str, ...]) -> str | None:
    """The first option `item` starts with (the kernel's strncmp); None: the kernel does not know it."""
    return next((k for k in known if item.startswith(k)), None)


def intel_iommu_findings(c: Cmdline, vendor: str = "unknown") -> list[ArgFinding]:
    """On an AMD host nothing reads intel_iommu= (the Intel driver still parses it and logs an unknown value):
    the correction drops it, never writes a valid intel_iommu= in its place."""
    out: list[ArgFinding] = []
    for a in c.args:
        if _norm(a.key) != "intel_iommu" or a.value is None:
            continue
        items = [x for x in a.value.split(",") if x]
        bad = [x for x in items if _prefix_known(x, INTEL_IOMMU_OPTS) is None]
        if not bad:
            continue
        good = [x for x in items if x not in bad]
        add: list[str] = []
        if any(x.lower() in ("1", "y", "yes", "true", "enable", "enabled", "on", "pt") for x in bad) and "on" not in good:
            good.insert(0, "on")
        if "pt" in (x.lower() for x in bad):
            add.append("iommu=pt")
        if good and vendor != "amd":
            add.insert(0, f"intel_iommu={','.join(good)}")
        why = "; ".join(f"`{x}`" for x in bad)
        hint = " (`pt` belongs to `iommu=pt`)" if "pt" in (x.lower() for x in bad) else ""
        fix = ("; on this AMD host intel_iommu= is read by nothing (AMD-Vi is on by default): remove it" if vendor == "amd"
               else f": use `{' '.join(add)}`" if add else ": remove it")
        out.append(ArgFinding(str(a), f"`{a}`: the kernel does not know {why} (it logs `DMAR: Unknown option - '{bad[0]}'` "
                              f"and ignores it; it accepts {', '.join(INTEL_IOMMU_OPTS[:9])}){hint}{fix}", (str(a),), tuple(add)))
    return out


def x86_iommu_findings(c: Cmdline) -> list[ArgFinding]:
    out: list[ArgFinding] = []
    for a in c.args:
        if _norm(a.key) != "iommu" or a.value is None:
            continue
        for item in (x for x in a.value.split(",") if x):
            k = _prefix_known(item, X86_IOMMU_OPTS)
            if item[:1].isdigit():
                out.append(ArgFinding(str(a), f"`{a}`: a number after iommu= is the AMD GART aperture size; it does not turn the "
                                      "IOMMU on (intel_iommu=on does on Intel; AMD-Vi is on by default)", (str(a),)))
            elif k is None:
                fix = "intel_iommu=on" if item.lower() in ("on", "1", "yes", "true", "enable", "enabled") else None
                out.append(ArgFinding(str(a), f"`{a}`: the kernel's iommu= parser knows no `{item}` and ignores it without a word"
                                      + (" (it does not turn the IOMMU on: intel_iommu=on does on Intel, AMD-Vi is on by "
                                         "default)" if fix else ""), (str(a),), (fix,) if fix else ()))
            elif k == "pt" and item != "pt":
                out.append(ArgFinding(str(a), f"`{a}`: the kernel matches iommu= options by prefix, so `{item}` IS taken as "
                                      f"`pt` (passthrough is on); write `iommu=pt`" + (" (page-table isolation is `pti=on`, "
                                                                                      "a separate argument)" if item == "pti" else ""),
                                      (str(a),), ("iommu=pt",)))
    return out


def misplaced_findings(c: Cmdline) -> list[ArgFinding]:
    """Misspelled parameter names, stray module names, an argument split by a space."""
    out: list[ArgFinding] = []
    args = list(c.args)
    for i, a in enumerate(args):
        n = _norm(a.key)
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a.value is not None and n in _IDS_MISSPELLED:
            out.append(ArgFinding(str(a), f"`{a}` is not a parameter the kernel or vfio-pci knows (the kernel hands it to init "
                                  f"as an environment variable): vfio-pci never sees these ids; write `vfio-pci.ids={a.value}`",
                                  (str(a),), (f"vfio-pci.ids={a.value}",)))
        elif a.value is None and n in _BARE_MODULES:
            out.append(ArgFinding(str(a), f"`{a}` alone on the command line loads nothing (a bare word goes to init as an "
                                  "argument): load the module from the initramfs (vfio.early_load) and give its ids as "
                                  "`vfio-pci.ids=`", (str(a),)))
        elif a.value is None and a.key.endswith(".") and nxt is not None and nxt.value is not None and "." not in nxt.key:
            joined = f"{a.key}{nxt}"
            out.append(ArgFinding(f"{a} {nxt}", f"`{a} {nxt}`: a space after the dot splits one argument in two, and neither "
                                  f"half means anything to the kernel; write `{joined}`", (str(a), str(nxt)), (joined,)))
        elif a.value is None and _ID_LIST.match(a.key) and i > 0 and _norm(args[i - 1].key) in ("vfio_pci.ids", "pci_stub.ids"):
            prev = args[i - 1]
            joined = f"{prev.key}={(prev.value or '').rstrip(',')},{a.key}"
            out.append(ArgFinding(f"{prev} {a}", f"`{prev} {a}`: the space ends the argument, so `{a}` is not in the ids; "
                                  f"write `{joined}`", (str(prev), str(a)), (joined,)))
    return out


def iommu_pt_item(c: Cmdline | None) -> str | None:
    """The iommu= item that leaves passthrough on (the kernel's prefix rule: `pti` is `pt`; a later `nopt`
    turns it off again); None where none does."""
    state: str | None = None
    for v in c.values("iommu") if c is not None else []:
        for item in (v or "").split(","):
            if item.startswith("pt"):
                state = item
            elif item.startswith("nopt"):
                state = None
    return state


def stub_ids(c: Cmdline | None) -> list[str]:
    """vendor:device ids handed to pci-stub on this command line (pci-stub.ids= / pci_stub.ids=)."""
    out: list[str] = []
    for v in c.values("pci_stub.ids") if c is not None else []:
        for part in (v or "").split(","):
            f = part.strip().lower().split(":")
            if len(f) >= 2:
                out.append(f"{f[0]}:{f[1]}")
    return out


def findings(c: Cmdline, vendor: str = "unknown") -> list[ArgFinding]:
    return intel_iommu_findings(c, vendor) + x86_iommu_findings(c) + misplaced_findings(c)
