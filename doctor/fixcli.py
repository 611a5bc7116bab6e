"""The `fix` and `undo` commands."""

from __future__ import annotations

import argparse
import json
import os
import sys

from doctor.errors import BadInput, DoctorError
from doctor.facts import HostFacts
from doctor.fixer import build_plan, manual_steps, outcomes, render_manual, render_plan_text
from doctor.host import Host
from doctor.journal import Journal, apply_plan, undo
from doctor.runner import run_checks
from doctor.system import LiveSystem, RootedSystem, System


def _system(root: str | None) -> System:
    if root:
        if not os.path.isdir(root):
            raise BadInput(f"--root {root!r} is not a folder")
        snap = os.path.dirname(os.path.abspath(root)) if os.path.basename(os.path.abspath(root)) == "root" and \
            os.path.exists(os.path.join(os.path.dirname(os.path.abspath(root)), "manifest.json")) else None
        return RootedSystem(os.path.abspath(root), snapshot=snap)
    return LiveSystem()


def cmd_fix(args: argparse.Namespace) -> int:
    if not args.checks and not args.all:
        raise BadInput("say which checks to fix (CHECK_ID ...) or --all")
    if args.snapshot and args.apply:
        raise BadInput("--snapshot plans only: a recorded host cannot be changed (drop --apply)")
    host: Host
    if args.snapshot:
        from doctor.snaphost import SnapshotHost

        host = SnapshotHost(args.snapshot)
        sysm: System | None = None
    else:
        sysm = _system(args.root)
        host = sysm.host()
    facts = HostFacts(host)
    before = run_checks(facts, host.source_info(), gpu=args.gpu)
    plan = build_plan(before, host, only=args.checks or None, force=args.force, advice=args.advice)
    manual = manual_steps(plan, before, only=args.checks or None)
    doc: dict = {**plan.to_dict(), "applied": False, "manual": [m.to_dict() for m in manual]}
    cut = _cut_short(sysm)
    if cut:
        doc["interrupted_fixes"] = cut
        print(f"gpudoctor: note: fix {', '.join(cut)} was cut short (power loss or kill) and never finished; this plan is made "
              "from the host as it is now, so it completes what is still missing; `gpudoctor undo "
              f"{cut[-1]}` would revert what had been done instead", file=sys.stderr)
    if not args.apply:
        if args.json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            print(render_plan_text(plan, manual))
            if plan.actions:
                print("\nDry run: nothing was changed. Apply with: gpudoctor fix " + (" ".join(args.checks) if args.checks else "--all")
                      + " --apply" + (" --yes" if plan.needs_yes else ""))
        return 1 if manual else 0  # a failure the plan leaves unaddressed is never "all is well"
    assert sysm is not None
    if sysm.live and os.geteuid() != 0:
        print("gpudoctor: error: --apply changes the system and needs root (try: sudo gpudoctor fix ... --apply)", file=sys.stderr)
        return 2
    if not plan.actions:
        if args.json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            print(render_plan_text(plan, manual))
        return 1 if manual else 0
    if plan.needs_yes and not args.yes:
        if sys.stdin is not None and sys.stdin.isatty():
            print(render_plan_text(plan))
            ans = input("\nThese changes touch the boot path or unbind devices. Apply them? [y/N] ")
            if ans.strip().lower() not in ("y", "yes"):
                print("gpudoctor: nothing applied")
                return 2
        else:
            print(render_plan_text(plan), file=sys.stderr)
            print("gpudoctor: error: the plan touches the boot path or unbinds a device: rerun with --yes; nothing was applied",
                  file=sys.stderr)
            return 2
    journal = Journal(sysm)
    try:
        log = apply_plan(plan, sysm, journal)
    except KeyboardInterrupt:
        print(f"gpudoctor: interrupted; {_rolled_back(journal)}", file=sys.stderr)
        return 130
    except DoctorError as e:
        print(f"gpudoctor: error: {e}\ngpudoctor: {_rolled_back(journal)}", file=sys.stderr)
        return 1
    for cid in cut:  # what they left undone is now done: stop warning about them; undo still works
        try:
            j = Journal.load(sysm, cid)
            j.doc["state"] = f"cut short, completed by {journal.fix_id}"
            j.save()
        except (DoctorError, OSError):
            pass
    host2 = sysm.host()
    after = run_checks(HostFacts(host2), host2.source_info(), gpu=args.gpu)
    outs = outcomes(plan, before, after)
    if args.json:
        doc.update({"applied": True, "fix_id": journal.fix_id, "outcomes": [o.to_dict() for o in outs]})
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for line in log:
            print(line)
        print(f"\nApplied as fix {journal.fix_id} (undo: gpudoctor undo {journal.fix_id})")
        for o in outs:
            subj = f"[{o.subject}]" if o.subject else ""
            print(f"  {o.outcome:<15} {o.check_id}{subj}: {o.detail}")
        if manual:
            print("\n" + render_manual(manual))
    failing = any(o.outcome == "still failing" for o in outs)
    return 1 if failing or manual else 0


def _rolled_back(journal: Journal) -> str:
    """What the rollback after a failed apply did, as it did it."""
    lines = "".join(f"gpudoctor:   {line}\n" for line in journal.rollback_log)
    if any(line.startswith("FAILED") for line in journal.rollback_log):
        return (f"the rollback did:\n{lines}gpudoctor: NOT every change was rolled back: fix the cause, then run "
                f"`gpudoctor undo {journal.fix_id}` (journal {journal.path})")
    return f"every change was rolled back (journal {journal.path})" + (f":\n{lines.rstrip()}" if lines else "")


def _cut_short(sysm: System | None) -> list[str]:
    """Fixes whose journal still says "applying": the process died mid-plan (a power cut,
    SIGKILL), so no rollback ran. Their finished actions are still in effect."""
    if sysm is None:
        return []
    try:
        return [str(d.get("id")) for d in Journal.list(sysm) if d.get("state") == "applying"]
    except OSError:
        return []


def cmd_undo(args: argparse.Namespace) -> int:
    import remediations.guest_getty  # noqa: F401  (registers its action kind, so a guest fix's journal reads back)

    sysm = _system(args.root)
    if args.list:
        docs = Journal.list(sysm)
        if not docs:
            print("no applied fixes")
        for d in docs:
            n = len(d.get("entries", []))
            print(f"{d.get('id')}  {d.get('state')}  {n} action(s)  started {d.get('started', '?')}")
        return 0
    if sysm.live and os.geteuid() != 0:
        print("gpudoctor: error: undo changes the system and needs root", file=sys.stderr)
        return 2
    fix_id, log = undo(sysm, args.id, force=args.force)
    for line in log:
        print(line)
    failed = [line for line in log if line.startswith("FAILED")]
    if failed:
        print(f"gpudoctor: error: fix {fix_id} is only partly undone: {len(failed)} step(s) failed (see above); "
              f"fix the cause and run `gpudoctor undo {fix_id}` again", file=sys.stderr)
        return 1
    print(f"fix {fix_id} undone")
    return 0
