"""vfio-pci ids for every function of the GPU's passthrough unit, plus softdeps for the
native drivers, in /etc/modprobe.d/vfio.conf. Conflicting `ids=` lines in other
files are commented out with a marker, never deleted."""

from __future__ import annotations

import re

from doctor.facts import Facts, PciDevice
from doctor.host import Host
from doctor.passthrough import ids_line, native_modules, passthrough_unit, softdep_line
from doctor.plan import INITRAMFS, Action, FileEdit

TARGET = "/etc/modprobe.d/vfio.conf"
MARKER = "# disabled by gpudoctor (superseded by /etc/modprobe.d/vfio.conf): "
_IDS_LINE = re.compile(r"^\s*options\s+vfio[-_]pci\b.*\bids=")


def vfio_conf_text(old: str | None, eps: list[PciDevice]) -> str:
    want = ids_line(eps)
    mods = sorted({m.replace("-", "_") for d in eps for m in native_modules(d)})
    lines = (old or "").splitlines()
    out: list[str] = []
    placed = False
    for ln in lines:
        if _IDS_LINE.match(ln):
            if not placed:
                out.append(want)
                placed = True
            else:
                out.append(MARKER + ln)
            continue
        out.append(ln)
    if not placed:
        if not out:
            out.append("# vfio-pci claims every function of the GPU's IOMMU group (written by gpudoctor)")
        out.append(want)
    have = {re.sub(r"\s+", " ", ln.strip()) for ln in out}
    for m in mods:
        sd = softdep_line(m)
        if sd not in have:
            out.append(sd)
    return "\n".join(out) + "\n"


def plan_vfio_conf(facts: Facts, host: Host, gpu: PciDevice, checks: tuple[str, ...]) -> list[Action]:
    eps = list(passthrough_unit(facts, gpu).functions)
    old = host.read_text_or_none(TARGET)
    new = vfio_conf_text(old, eps)
    acts: list[Action] = []
    if new != old:
        acts.append(FileEdit(checks, f"vfio-pci ids for all {len(eps)} function(s) of {gpu.address}'s group, softdeps for their native drivers",
                             INITRAMFS, path=TARGET, old=old.encode() if old is not None else None, new=new.encode()))
    # other files with an ids= line: comment them out with a marker
    for ln in facts.modprobe_config():
        if ln.file == TARGET or not (ln.command == "options" and ln.module == "vfio_pci" and "ids=" in ln.rest):
            continue
        text = host.read_text_or_none(ln.file)
        if text is None:
            continue
        lines = text.splitlines(keepends=True)
        i = ln.lineno - 1
        if 0 <= i < len(lines) and _IDS_LINE.match(lines[i]):
            lines[i] = MARKER + lines[i]
            acts.append(FileEdit(checks, f"comment out the conflicting ids line {ln.where}", INITRAMFS, path=ln.file,
                                 old=text.encode(), new="".join(lines).encode()))
    return acts
