"""gpudoctor fix: from failing results to a Plan, and from an applied plan to
per-check outcomes (fixed now, pending reboot, still failing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor.errors import BadInput, FactUnknown, NotCaptured
from doctor.facts import Facts, PciDevice
from doctor.host import Host
from doctor.model import Status
from doctor.passthrough import PCI_ADDRESS, guard, passthrough_unit, refusal
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
    from remediations.early_load import initramfs_rebuild, plan_early_load
    from remediations.kernel_cmdline import plan_cmdline
    from remediations.pci_bind import plan_bind
    from remediations.vfio_conf import plan_vfio_conf

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

    # 1. kernel command line (host-wide)
    add: list[str] = []
    remove: list[str] = []
    cmd_checks: list[str] = []
    regen = False
    for cid, _, r in wanted:
        if r.remedy is None or r.remedy.fix_id != "kernel_cmdline":
            continue
        params = dict(r.remedy.params)
        for a in params.get("add", "").split():
            if a not in add:
                add.append(a)
        for a in params.get("remove", "").split():
            if a not in remove:
                remove.append(a)
        regen = regen or params.get("regenerate") == "1"
        if params:
            cmd_checks.append(cid)
        elif r.status is Status.WARN and "reboot pending" in r.summary:
            plan.explanations.append((cid, "already configured: only a reboot is missing"))
    # vfio-pci built into the kernel: ids go on the command line
    builtin_vfio = False
    try:
        builtin_vfio = bool(facts.modules().is_builtin("vfio_pci"))
    except (FactUnknown, NotCaptured):
        pass
    per_gpu_files: list[Action] = []
    early: list[Action] = []
    binds: list[Action] = []
    seen_conf: set[str] = set()
    for cid, subject, r in wanted:
        gpu = gpu_of(subject)
        fix = r.remedy.fix_id if r.remedy else ""
        if cid == "gpu.group_isolated":
            plan.explanations.append((cid, "no automatic fix: the group comes from the hardware topology and ACS; " + (r.remedy.text if r.remedy else "")))
            continue
        if gpu is None or not fix or fix == "kernel_cmdline":
            continue
        if refused_for(gpu, cid):
            continue
        if fix == "vfio_conf" and gpu.address not in seen_conf:
            seen_conf.add(gpu.address)
            from checks.common import identical_devices

            eps = list(passthrough_unit(facts, gpu).functions)
            twins = identical_devices(facts, eps)
            answers = tuple(c for c, s, _ in wanted if s == subject and c in ("vfio.ids_configured", "vfio.binding_persistent", "vfio.ids_unique_to_card"))
            if twins:
                from remediations.vfio_override import plan_override

                plan.explanations.append((cid, "no ids= line: it would also take " + ", ".join(
                    t.address for ts in twins.values() for t in ts) + " from the host; the card is bound by address (driver_override)"))
                acts, why = plan_override(facts, host, eps, answers or (cid,))
                per_gpu_files += acts
                if why:
                    plan.explanations.append((cid, why))
                continue
            if builtin_vfio:
                from checks.common import wanted_ids

                ids = "vfio-pci.ids=" + ",".join(wanted_ids(eps))
                add.append(ids)
                cmd_checks.extend(answers)
            else:
                per_gpu_files += plan_vfio_conf(facts, host, gpu, answers or (cid,))
        elif fix == "early_load" or (fix == "vfio_conf" and cid == "vfio.binding_persistent"):
            if early:
                continue
            try:
                acts, why = plan_early_load(facts, host, (cid,) + (("vfio.binding_persistent",) if cid != "vfio.binding_persistent" else ()))
            except (FactUnknown, NotCaptured) as e:
                acts, why = [], f"early loading configuration unknown: {e}"
            early += acts
            if why:
                plan.explanations.append((cid, why))
        elif fix == "pci_bind":
            acts, why = plan_bind(facts, gpu, (cid,), force=force)
            for a in acts:  # several checks ask for the same binding: one action answers them all
                same = next((b for b in binds if type(b) is type(a) and b.describe() == a.describe()), None)
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
            rb = initramfs_rebuild(facts, tuple(sorted({c for a in plan.actions for c in a.checks})))
        except (FactUnknown, NotCaptured):
            rb = None
        if rb is not None:
            plan.actions.append(rb)
        elif not any(c == "vfio.early_load" for c, _ in plan.explanations):
            plan.explanations.append(("vfio.early_load", "no initramfs tool detected: rebuild your initramfs by hand"))
    if add or remove or regen:
        acts, why = plan_cmdline(facts, host, add, remove, tuple(dict.fromkeys(cmd_checks)) or ("cmdline.iommu_enabled",),
                                 regenerate=regen)
        plan.actions += acts
        if why:
            plan.explanations.append(("cmdline.iommu_enabled", why))
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


@dataclass(frozen=True)
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
        elif now in (Status.PASS,):
            outcome, detail = "fixed now", sr.result.summary
        else:
            outcome, detail = "still failing", sr.result.summary
        out.append(Outcome(cid, sr.subject, prev.status.value if prev else "?", now.value, outcome, detail))
    return out


def render_plan_text(plan: Plan) -> str:
    lines: list[str] = []
    if not plan.actions:
        lines.append("Nothing to change automatically.")
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
    return "\n".join(lines)
