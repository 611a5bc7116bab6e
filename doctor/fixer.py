"""gpudoctor fix: from failing results to a Plan, and from an applied plan to
per-check outcomes (fixed now, pending reboot, still failing)."""

from __future__ import annotations

from typing import Any

from doctor.datarecord import record
from doctor.errors import BadInput, FactUnknown, NotCaptured
from doctor.facts import Facts, PciDevice
from doctor.host import Host
from doctor.model import CmdlineEdit, FixParams, RebootPending, Result, Status
from doctor.passthrough import PCI_ADDRESS, guard, identical_devices, passthrough_unit, refusal, wanted_ids
from doctor.plan import INITRAMFS, NOW, Action, FileEdit, Plan
from doctor.runner import Report

FIXABLE = (Status.FAIL, Status.WARN)


def _wanted(report: Report, only: list[str] | None, advice: bool = False) -> list[tuple[str, str | None, Any]]:
    """Failing and warning results to fix. Advice (iommu=pt, ...) is fixed only when named or
    asked for: `--all` changes nothing the host works without (a healthy host gets no bootloader edit)."""
    from doctor.model import Severity
    from doctor.registry import load_checks

    specs = load_checks()
    out = []
    for sr in report.results:
        r = sr.result
        if r.status not in FIXABLE:
            continue
        if only and r.check_id not in only:
            continue
        spec = specs.get(r.check_id)
        if not only and not advice and spec is not None and spec.severity is Severity.ADVICE:
            continue
        out.append((r.check_id, sr.subject, r))
    return out


def build_plan(report: Report, host: Host, only: list[str] | None = None, force: bool = False, advice: bool = False) -> Plan:
    """The plan that answers the failing results: each result's remedy carries typed parameters
    (doctor.model.FixParams) of a fix family that doctor.registry.FIXES pairs with its check; the
    families are planned here, host-wide ones (the command line) once for all checks."""
    from doctor.registry import FIXES, MANUAL, remediation

    facts: Facts = report.facts
    if only:
        known = {sr.result.check_id for sr in report.results}
        bad = [c for c in only if c not in known]
        if bad:
            raise BadInput(f"unknown check id(s): {', '.join(bad)} (see `gpudoctor list`)")
    plan = Plan()
    wanted = _wanted(report, only, advice)
    gpus = {g.address: g for g in report.gpus}

    def gpu_of(subject: str | None) -> PciDevice | None:
        return gpus.get(subject) if subject else None

    def params_of(cid: str, r: Result) -> FixParams | None:
        """The remedy's parameters where the table pairs their family with the check; else None."""
        p = r.remedy.params if r.remedy else None
        if p is None or not p.family:
            return None
        if p.family not in FIXES.get(cid, ()):
            plan.explanations.append((cid, f"its remedy is for fix {p.family}, which the fix table does not pair with "
                                           f"{cid}: nothing done (a bug: please report it)"))
            return None
        return p

    # one guard for every per-GPU remedy: a group that holds anything but the GPU's unit, or a
    # unit the host runs on, gets nothing written (doctor.passthrough.refusal)
    refused: dict[str, str | None] = {}
    first: dict[str, str] = {}

    def refused_for(gpu: PciDevice, cid: str) -> bool:
        if gpu.address not in refused:
            refused[gpu.address] = refusal(facts, gpu, force)
        why = refused[gpu.address]
        if why and gpu.address not in first:
            first[gpu.address] = cid
            plan.explanations.append((cid, f"{gpu.address}: {why}"))
        elif why:
            named = sorted(set(PCI_ADDRESS.findall(why)) - {gpu.address})
            plan.explanations.append((cid, f"{gpu.address}: nothing written for its group ({', '.join(named)}; "
                                           f"see {first[gpu.address]})"))
        return bool(why)

    # 1. kernel command line (host-wide): every CmdlineEdit merged into one edit
    add: list[str] = []
    remove: list[str] = []
    cmd_checks: list[str] = []
    regen = False
    for cid, _, r in wanted:
        p = params_of(cid, r)
        if isinstance(p, CmdlineEdit):
            add += [a for a in p.add if a not in add]
            remove += [a for a in p.remove if a not in remove]
            regen = regen or p.regenerate
            cmd_checks.append(cid)
        elif isinstance(p, RebootPending):
            plan.explanations.append((cid, "already configured: only a reboot is missing"))
    # vfio-pci built into the kernel: ids go on the command line
    builtin_vfio = False
    try:
        builtin_vfio = bool(facts.modules().is_builtin("vfio_pci"))
    except (FactUnknown, NotCaptured):
        pass
    # the checks answered by configuring the binding at boot: ids (or addresses) and early loading
    at_boot = tuple(c for c, fams in FIXES.items() if "vfio_conf" in fams and "early_load" in fams)
    per_gpu_files: list[Action] = []
    early: list[Action] = []
    binds: list[Action] = []
    seen_conf: set[str] = set()
    for cid, subject, r in wanted:
        gpu = gpu_of(subject)
        if cid in MANUAL:
            plan.explanations.append((cid, MANUAL[cid] + "; " + (r.remedy.text if r.remedy else "")))
            continue
        p = params_of(cid, r)
        fam = p.family if p is not None else ""
        if gpu is None or fam in ("", "kernel_cmdline"):
            continue
        if refused_for(gpu, cid):
            continue
        if fam == "vfio_conf" and gpu.address not in seen_conf:
            seen_conf.add(gpu.address)
            eps = list(passthrough_unit(facts, gpu).functions)
            twins = identical_devices(facts, eps)
            answers = tuple(c for c, s, _ in wanted if s == subject and "vfio_conf" in FIXES.get(c, ()))
            if twins:
                plan.explanations.append((cid, "no ids= line: it would also take " + ", ".join(
                    t.address for ts in twins.values() for t in ts) + " from the host; the card is bound by address (driver_override)"))
                acts, why = remediation("vfio_override").plan_override(facts, host, eps, answers or (cid,))
                per_gpu_files += acts
                if why:
                    plan.explanations.append((cid, why))
                continue
            if builtin_vfio:
                add.append("vfio-pci.ids=" + ",".join(wanted_ids(eps)))
                cmd_checks.extend(answers)
            else:
                per_gpu_files += remediation("vfio_conf").plan_vfio_conf(facts, host, gpu, answers or (cid,))
        elif fam == "early_load" or (fam == "vfio_conf" and cid in at_boot):
            if early:
                continue
            try:
                acts, why = remediation("early_load").plan_early_load(facts, host, tuple(dict.fromkeys((cid, *at_boot))))
            except (FactUnknown, NotCaptured) as e:
                acts, why = [], f"early loading configuration unknown: {e}"
            early += acts
            if why:
                plan.explanations.append((cid, why))
        elif fam == "pci_bind":
            acts, why = remediation("pci_bind").plan_bind(facts, gpu, (cid,), force=force)
            for a in acts:  # several checks ask for the same binding: one action answers them all
                same = next((b for b in binds if b.same_change(a)), None)
                if same is None:
                    binds.append(a)
                elif cid not in same.checks:
                    same.checks = same.checks + (cid,)
            if why:
                plan.explanations.append((cid, why))
    plan.actions += per_gpu_files + early
    # the image is rebuilt when the plan changes what goes into it, or when it is already stale
    # (a configuration written by hand, or a fix cut short during update-initramfs)
    stale = any(c == "boot.initramfs_current" for c, _, _ in wanted)
    if stale or any(isinstance(a, FileEdit) and a.takes_effect == INITRAMFS for a in plan.actions):
        try:
            rb = remediation("early_load").initramfs_rebuild(facts, tuple(sorted({c for a in plan.actions for c in a.checks})))
        except (FactUnknown, NotCaptured):
            rb = None
        if rb is not None:
            plan.actions.append(rb)
        elif not any(c == "vfio.early_load" for c, _ in plan.explanations):
            plan.explanations.append(("vfio.early_load", "no initramfs tool detected: rebuild your initramfs by hand"))
    if add or remove or regen:
        # the checks that asked for it, by their own ids (iommu=pt advice is cmdline.iommu_passthrough's)
        asked = tuple(dict.fromkeys(cmd_checks)) or ("cmdline.iommu_enabled",)
        acts, why = remediation("kernel_cmdline").plan_cmdline(facts, host, add, remove, asked, regenerate=regen)
        plan.actions += acts
        if why:
            plan.explanations += [(cid, why) for cid in asked]
    plan.actions += binds
    _guard(plan, facts, [passthrough_unit(facts, g) for a, g in gpus.items() if not refused.get(a)], force)
    plan.explanations = list(dict.fromkeys(plan.explanations))
    return plan


def _guard(plan: Plan, facts: Facts, units: list, force: bool) -> None:  # type: ignore[type-arg]
    """The last word on every plan: an action that would hand to vfio-pci anything outside the
    GPUs' units, or anything the host runs on, is dropped with the reason (each remediation
    refuses such groups itself; this catches what one of them missed)."""
    blocked = guard(plan.actions, facts, units, force)
    if not blocked:
        return
    drop = {b.index for b in blocked}
    for b in blocked:
        a = plan.actions[b.index]
        plan.explanations.append((a.checks[0] if a.checks else "fix", f"not done: {a.describe()} ({b.how}): {b.why}"))
    plan.actions = [a for i, a in enumerate(plan.actions) if i not in drop]


@record(frozen=True)
class Outcome:
    check_id: str
    subject: str | None
    before: str
    after: str
    outcome: str  # "fixed now" | "pending reboot" | "still failing"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def outcomes(plan: Plan, before: Report, after: Report) -> list[Outcome]:
    effects: dict[str, set[str]] = {}
    for a in plan.actions:
        for c in a.checks:
            effects.setdefault(c, set()).add(a.takes_effect)
    b = {(sr.result.check_id, sr.subject): sr.result for sr in before.results}
    out = []
    for sr in after.results:
        cid = sr.result.check_id
        if cid not in effects:
            continue
        prev = b.get((cid, sr.subject))
        eff = effects[cid]
        now = sr.result.status
        if eff - {NOW}:
            when = sorted(eff - {NOW})
            outcome = "pending reboot"
            detail = f"takes effect at the {' / '.join(when)}; now: {now.word} — {sr.result.summary}"
        elif now in (Status.PASS,) and cid == "vfio.group_viable" and (gap := _not_on_vfio(after, sr.subject)):
            # viable is not enough: QEMU opens every function of the unit through vfio-pci
            outcome, detail = "still failing", gap
        elif now in (Status.PASS,):
            outcome, detail = "fixed now", sr.result.summary
        else:
            outcome, detail = "still failing", sr.result.summary
        out.append(Outcome(cid, sr.subject, prev.status.value if prev else "?", now.value, outcome, detail))
    return out


@record(frozen=True)
class ManualStep:
    """A failing check the plan does not answer: what a person must do, or which cause it follows from."""

    name: str  # check.id or check.id[subject]
    summary: str
    text: str
    steps: tuple[str, ...]
    follows_from: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "summary": self.summary, "fix": self.text, "steps": list(self.steps),
                "follows_from": list(self.follows_from)}


def manual_steps(plan: Plan, report: Report, only: list[str] | None = None) -> list[ManualStep]:
    """Every FAIL (or ERROR) result, among those asked for, that no action of the plan answers. Causes
    first; a result that follows from a cause names it instead of repeating a fix that cannot work yet."""
    from doctor.causes import analyse, name

    answered = {c for a in plan.actions for c in a.checks}
    an = analyse(report.results)
    order = {c.name: i for i, c in enumerate(an.causes)}
    out = []
    for sr in report.results:
        r = sr.result
        if r.status not in (Status.FAIL, Status.ERROR) or r.check_id in answered or (only and r.check_id not in only):
            continue
        nm = name(sr)
        ups = an.follows.get(nm, ())
        if ups and all(u.split("[")[0] in answered for u in ups):
            continue  # it follows from causes the plan answers: re-checked once they take effect
        rem = r.remedy
        text = rem.text if rem else ("a check that broke: run `gpudoctor check -v` and report it" if r.status is Status.ERROR
                                     else "no remedy known: see `gpudoctor check -v`")
        out.append(ManualStep(nm, r.summary, text, rem.steps if rem and not ups else (), ups))
    out.sort(key=lambda m: (bool(m.follows_from), order.get(m.name, len(order))))
    return out


def render_manual(manual: list[ManualStep]) -> str:
    if not manual:
        return ""
    n = len(manual)
    lines = [f"{n} failing check{'s' if n != 1 else ''} that gpudoctor cannot fix here (manual step{'s' if n != 1 else ''}):"]
    for m in manual:
        lines.append(f"- {m.name}: {m.summary}")
        if m.follows_from:
            lines.append(f"    follows from {', '.join(m.follows_from)}: fix that first")
            continue
        first, *rest = m.text.splitlines() or [""]
        lines.append(f"    manual step: {first}")
        lines += [f"      {r.strip()}" for r in rest]
        lines += [f"      {s}" for s in m.steps]
    return "\n".join(lines)


def _not_on_vfio(report: Report, subject: str | None) -> str:
    """What QEMU would still refuse after a bind: a function of the GPU's unit that is not on vfio-pci."""
    gpu = next((g for g in report.gpus if g.address == subject), None)
    if gpu is None:
        return ""
    try:
        funcs = passthrough_unit(report.facts, gpu).functions
    except (FactUnknown, NotCaptured) as e:
        return f"the functions of {subject} are unknown after the bind ({e})"
    off = [f"{d.address} on {d.driver or 'no driver'}" for d in funcs if d.driver != "vfio-pci"]
    if not off:
        return ""
    return (f"the group is viable, but QEMU needs every function on vfio-pci: {', '.join(off)} "
            f"(QEMU: `error getting device from group {gpu.iommu_group}: No such device`)")


def render_plan_text(plan: Plan, manual: list[ManualStep] | None = None) -> str:
    lines: list[str] = []
    if not plan.actions:
        lines.append("Nothing gpudoctor can change automatically." + ("" if manual else " No failing check asks for a change."))
    for i, a in enumerate(plan.actions, 1):
        lines.append(f"{i}. {a.describe()}")
        lines.append(f"   answers: {', '.join(a.checks)}; takes effect: {a.takes_effect}"
                     + ("; touches the boot path" if a.boot_path else "") + ("; unbinds a device" if a.unbinds else ""))
        lines.append(f"   why: {a.reason}")
        for ln in a.preview().splitlines():
            lines.append(f"   | {ln}")
        lines.append(f"   undo: {a.undo_text()}")
    for cid, why in plan.explanations:
        lines.append(f"- {cid}: {why}")
    if manual:
        lines += ["", render_manual(manual)]
    return "\n".join(lines)
