"""Running the suite on pasted facts: once, through the normal runner, on the GPUs the evidence is about;
then each known error found in the evidence is tied to the checks that settle its causes."""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import BadInput, FactUnknown
from doctor.facts import normalize_pci_address
from doctor.model import Result, Status
from doctor.pasted.segment import _ADDR, KIND_NAMES, load_inputs, span
from doctor.pasted.texthost import PastedFacts
from doctor.runner import Report, run_checks

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any

_VFIO_DEV = re.compile(r"vfio-pci (" + _ADDR + r"):")


def _value(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except FactUnknown:
        return None


def configured_ids(pf: PastedFacts) -> list[str]:
    from checks.common import cmdline_vfio_ids, modprobe_vfio_ids

    ids: list[str] = []
    mp = _value(pf.modprobe_config) or ()
    for _, v in modprobe_vfio_ids(mp):
        ids += v
    ids += cmdline_vfio_ids(_value(pf.cmdline))
    boot = _value(pf.boot_config)
    if boot is not None:
        ids += cmdline_vfio_ids(boot.cmdline)
    return list(dict.fromkeys(i for i in ids if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", i)))


def target_gpus(pf: PastedFacts) -> tuple[list[str], str]:
    """The GPUs the per-GPU checks are about, and why (the evidence decides)."""
    try:
        devs = pf.pci_devices()
    except FactUnknown:
        return [], "no PCI devices in the evidence"
    gpus = [d for d in devs.values() if d.is_display]
    if not gpus:
        subjects = [a for a in pf.observed_subjects() if a in devs]
        if subjects:
            return subjects, "the device(s) a pasted error names (their class is not shown)"
        return [], "no display-class device in the evidence"
    ids = set(configured_ids(pf))
    named = pf.named_devices()
    dmesg_vfio = set()
    for _, d in pf.dmesg:
        for ln in d.lines:
            m = _VFIO_DEV.search(ln) if "vfio-pci " in ln else None
            if m:
                try:
                    dmesg_vfio.add(normalize_pci_address(m.group(1)))
                except ValueError:
                    pass
    slots_named = {a.rsplit(".", 1)[0] for a in named | dmesg_vfio}
    chosen = [g for g in gpus if g.driver == "vfio-pci" or g.ident in ids or g.slot in slots_named]
    why = "the GPU(s) the evidence sets up for vfio (bound to vfio-pci, in vfio-pci ids, or named in an error)"
    if not chosen:
        chosen = [g for g in gpus if not g.boot_vga]
        discrete = [g for g in chosen if not g.address.startswith("0000:00:")]
        if discrete and len(discrete) < len(chosen):
            chosen = discrete
            why = "every GPU not on bus 00 (an integrated GPU stays with the host); --gpu picks another"
        else:
            why = "every GPU the evidence shows that is not the boot display"
        if not chosen:
            chosen = gpus[:1]
    seen: set[str] = set()
    out = []
    for g in chosen:
        if g.slot not in seen:
            seen.add(g.slot)
            out.append(g.address)
    return out, why


@record
class PastedRun:
    report: Report
    facts: PastedFacts
    ties: list[dict[str, Any]]


def run_pasted(pf: PastedFacts, location: str, gpu: str | None = None, only: list[str] | None = None) -> PastedRun:
    """Run every check once on the facts the evidence shows; what it leaves open is unknown in the facts."""
    source = pf.source_info(location)
    if gpu is None:
        targets, why = target_gpus(pf)
    else:
        targets, why = [gpu], "chosen with --gpu"
    source.details["gpus checked"] = (", ".join(targets) or "none") + f" ({why})"
    report = run_checks(pf, source, gpu=gpu, only=only, subjects=None if gpu is not None else targets)
    ties = tie_errors(pf, report)
    report.errors_in_evidence = ties
    if ties:
        report.source.details["errors in evidence"] = " | ".join(
            f"{t['error']}: " + "; ".join(f"{c['cause']} → {c['verdict']}" for c in t["causes"]) for t in ties
        )
    return PastedRun(report, pf, ties)


def tie_errors(pf: PastedFacts, report: Report) -> list[dict[str, Any]]:
    """Each known error in the evidence, with what the evidence says of each cause."""
    by_check: dict[str, list[Result]] = {}
    for sr in report.results:
        by_check.setdefault(sr.result.check_id, []).append(sr.result)
    out: list[dict[str, Any]] = []
    for m, where in pf.error_matches():
        causes = []
        for c in m.error.causes:
            ids = [cid for cid in c.checks if cid in by_check]
            rs = [r for cid in ids for r in by_check.get(cid, [])]
            if not ids:
                verdict = "no check settles this: " + "; ".join(m.error.commands[:2])
            elif any(r.status.value in c.confirm_on for r in rs):
                hit = next(r for r in rs if r.status.value in c.confirm_on)
                verdict = f"confirmed by the evidence ({hit.check_id}: {hit.summary})"
            elif rs and all(r.status in (Status.PASS, Status.NOT_APPLICABLE) or (r.status == Status.WARN and "warn" not in c.confirm_on) for r in rs):
                verdict = "ruled out by the evidence (" + ", ".join(f"{r.check_id}: {r.status.value}" for r in rs) + ")"
            else:
                settle = [msg.split("collect: ", 1)[1] for r in rs for msg in r.messages if "collect: " in msg]
                verdict = "not settled by the evidence" + (f"; collect: {'; '.join(dict.fromkeys(settle))}" if settle else "")
            causes.append({"cause": c.text, "checks": ids, "verdict": verdict})
        out.append({"error": m.error.id, "title": m.error.title, "seen": m.text[:300], "where": where,
                    "meaning": m.error.meaning, "causes": causes})
    return out


def known_formats() -> str:
    """Every kind of output the reader recognises, in the words of its source lines, plus the kinds
    recognised line by line (observe.py): error messages, /proc/iomem, ls -l /dev/vfio."""
    kinds = [v for k, v in KIND_NAMES.items() if k not in ("unrecognised", "command", "groups_absent", "error")]
    return ", ".join(kinds + ["/proc/iomem (a framebuffer inside a BAR)", "ls -l /dev/vfio",
                             "QEMU / libvirt / kernel error messages"])


def _tried(pf: PastedFacts, path: str) -> str:
    """The lines of an input that nothing recognised: how many, and where each block starts."""
    blocks = [c for c in pf.chunks if c.file == path and c.kind == "unrecognised"]
    n = sum(c.end - c.start + 1 for c in blocks)
    if not n:
        return "nothing recognised (no text in it)"
    shown = ", ".join(f"{span(c.start, c.end)} ({c.lines[0].strip()[:40]!r})" for c in blocks[:3])
    return f"nothing recognised in its {n} line(s): {shown}" + (f" and {len(blocks) - 3} more block(s)" if len(blocks) > 3 else "")


def load_pasted(paths: list[str]) -> PastedFacts:
    """Read and recognise the inputs; BadInput when nothing in them is usable."""
    ev = load_inputs(paths)
    pf = PastedFacts(ev)
    if not pf.recognised_anything():
        why = "; ".join(f"{it.path}: {it.error or _tried(pf, it.path)}" for it in ev.inputs)
        raise BadInput(f"--from: none of the inputs holds an output gpudoctor knows: {why}. It knows: {known_formats()}")
    return pf


def to_json(run: PastedRun, redact: bool = True) -> dict[str, Any]:
    """The run's JSON document: the normal one (doctor.render), with errors_in_evidence."""
    from doctor.render import to_json as report_json

    return report_json(run.report, redact)
