"""The journal of an applied fix, `apply_plan` and `undo`.

For every action `apply_plan` saves the journal twice: the intent before anything changes (state
`started`: the old bytes, their hash, mode and owner, the hash of what will be written, the previous
driver) and the outcome after it (state `done`: the exit code). `undo` (and the rollback after a
failure) never trusts a missing outcome: a file is judged by its bytes on disk (new content: restore;
old content: nothing to do, and it says so); a regeneration (update-grub, update-initramfs) whose
intent was saved is run again once the files are restored. Every line `undo` returns is something it
did, or says that there was nothing to do.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from typing import Any

from doctor.errors import DoctorError
from doctor.plan import (
    ACTION_TYPES,
    JOURNAL_FORMAT,
    VERSION,
    Action,
    Command,
    FileEdit,
    Plan,
    UndoConflict,
    _b64,
    _unb64,
)
from doctor.system import System


def _action_to_json(a: Action) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": a.kind}
    for k, v in a.__dict__.items():
        if isinstance(v, bytes):
            d[k] = {"b64": _b64(v)}
        elif isinstance(v, tuple):
            d[k] = list(v)
        else:
            d[k] = v
    return d


def _action_from_json(d: dict[str, Any]) -> Action:
    cls = ACTION_TYPES[d["kind"]]
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "kind":
            continue
        if isinstance(v, dict) and "b64" in v:
            v = _unb64(v["b64"])
        kw[k] = v
    for k in ("checks", "argv", "undo_argv", "syntax_check"):
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    if kw.get("expect_in_file") is not None:
        kw["expect_in_file"] = (kw["expect_in_file"][0], tuple(kw["expect_in_file"][1]))
    if kw.get("shell_check") is not None:
        sc = kw["shell_check"]
        kw["shell_check"] = (tuple(sc[0]), sc[1], sc[2])
    return cls(**kw)


class Journal:
    """One folder per applied fix under the state dir: journal.json, rewritten
    atomically before and after each action."""

    def __init__(self, sysm: System, fix_id: str | None = None) -> None:
        self.sysm = sysm
        self.base = os.path.join(sysm.state_dir(), "journal")
        self.fix_id = fix_id or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        self.path = os.path.join(self.base, self.fix_id, "journal.json")
        self.doc: dict[str, Any] = {}
        self.rollback_log: list[str] = []  # what the rollback after a failed apply did, line by line

    def start(self, plan: Plan) -> None:
        self.doc = {
            "format": JOURNAL_FORMAT,
            "version": VERSION,
            "id": self.fix_id,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "state": "applying",
            "entries": [{"action": _action_to_json(a), "state": "planned", "record": {}} for a in plan.actions],
        }
        self.save()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def list(cls, sysm: System) -> list[dict[str, Any]]:
        base = os.path.join(sysm.state_dir(), "journal")
        out: list[dict[str, Any]] = []
        if not os.path.isdir(base):
            return out
        for name in sorted(os.listdir(base)):
            p = os.path.join(base, name, "journal.json")
            try:
                with open(p, encoding="utf-8") as f:
                    doc = json.load(f)
                if doc.get("format") == JOURNAL_FORMAT:
                    out.append(doc)
            except (OSError, ValueError):
                out.append({"id": name, "state": "unreadable journal", "entries": []})
        return out

    @classmethod
    def load(cls, sysm: System, fix_id: str) -> Journal:
        j = cls(sysm, fix_id)
        try:
            with open(j.path, encoding="utf-8") as f:
                j.doc = json.load(f)
        except FileNotFoundError as e:
            raise DoctorError(f"no applied fix with id {fix_id!r} (see `gpudoctor undo --list`)") from e
        except ValueError as e:
            raise DoctorError(f"journal {j.path} is corrupt: {e}") from e
        return j


CRASH_PHASES = ("before", "during", "after", "done")


def _crash_hook(index: int, phase: str = "done") -> None:
    """Test hooks, as a power cut or SIGKILL would strike (os._exit: no cleanup, no rollback).

    GPUDOCTOR_TEST_CRASH_AT=N:PHASE kills at action N in PHASE: `before` (the intent is saved,
    nothing written or run), `during` (while a command runs; while a file is written: its temporary
    file complete beside it, not yet renamed), `after` (written or
    run, the outcome not saved), `done` (the outcome saved). GPUDOCTOR_TEST_CRASH_AFTER=N is N:done;
    GPUDOCTOR_TEST_INTERRUPT_AFTER=N raises ^C after action N is done."""
    at = os.environ.get("GPUDOCTOR_TEST_CRASH_AT")
    if at is not None and at == f"{index}:{phase}":
        os._exit(137)
    v = os.environ.get("GPUDOCTOR_TEST_CRASH_AFTER")
    if phase == "done" and v is not None and v.isdigit() and int(v) == index:
        os._exit(137)
    v = os.environ.get("GPUDOCTOR_TEST_INTERRUPT_AFTER")
    if phase == "done" and v is not None and v.isdigit() and int(v) == index:
        raise KeyboardInterrupt


def apply_plan(plan: Plan, sysm: System, journal: Journal) -> list[str]:
    """Apply every action; on failure roll back what was done and raise.

    Per action: prepare (read the intent; ApplyError: nothing done) -> save `started` with the
    intent -> apply -> save `done` with the outcome."""
    journal.start(plan)
    done: list[int] = []
    log: list[str] = []
    try:
        for i, a in enumerate(plan.actions):
            entry = journal.doc["entries"][i]
            a.prepare(sysm, entry["record"])
            entry["state"] = "started"
            journal.save()
            _crash_hook(i, "before")
            sysm.during = _during(i)
            try:
                a.apply(sysm, entry["record"])
            finally:
                sysm.during = None
            _crash_hook(i, "after")
            entry["state"] = "done"
            journal.save()
            done.append(i)
            log.append(f"done: {a.describe()}")
            _crash_hook(i, "done")
    except BaseException as e:
        # roll back in reverse order, including the action that was half done
        failed = [i for i in range(len(plan.actions)) if journal.doc["entries"][i]["state"] == "started"]
        journal.rollback_log = _revert(plan.actions, journal, sorted(done + failed), force=True, final_state="rolled back")
        complete = not any(line.startswith("FAILED") for line in journal.rollback_log)
        journal.doc["state"] = ("" if not isinstance(e, KeyboardInterrupt) else "interrupted, ") + \
            ("rolled back" if complete else "rollback incomplete")
        journal.save()
        raise
    journal.doc["state"] = "applied"
    journal.doc["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    journal.save()
    return log


def _during(index: int) -> Callable[[], None]:
    return lambda: _crash_hook(index, "during")


def undo(sysm: System, fix_id: str | None = None, force: bool = False) -> tuple[str, list[str]]:
    """Revert the last (or the named) applied fix in reverse order; return the lines that say what
    was done, one per action that had started. The journal ends `undone`, or `undo incomplete`
    (still undoable) where a step failed."""
    docs = [d for d in Journal.list(sysm) if _undoable(d.get("state"))]
    if fix_id is None:
        if not docs:
            raise DoctorError("nothing to undo: no applied fix in the journal")
        fix_id = docs[-1]["id"]
    j = Journal.load(sysm, fix_id)
    if not _undoable(j.doc.get("state")):
        raise DoctorError(f"fix {fix_id} is {j.doc.get('state')!r}: nothing to undo")
    entries = j.doc["entries"]
    actions = [_action_from_json(e["action"]) for e in entries]
    todo = [i for i, e in enumerate(entries) if _to_revert(e.get("state"))]
    # first pass: refuse before changing anything if a file changed after the fix
    if not force:
        for i in todo:
            a = actions[i]
            if isinstance(a, FileEdit):
                diff = a.conflict(sysm, entries[i]["record"])
                if diff is not None:
                    raise UndoConflict(f"{a.path} changed after the fix; undo would do:\n{diff}\nrerun with --force to undo anyway")
    log = _revert(actions, j, todo, force=True, final_state="undone")
    j.doc["state"] = "undo incomplete" if any(line.startswith("FAILED") for line in log) else "undone"
    j.save()
    return fix_id, log


def _to_revert(state: object) -> bool:
    """started (intent saved, outcome maybe not), done, or a rollback that failed before."""
    return state in ("done", "started") or (isinstance(state, str) and state.startswith("rollback failed"))


def _undoable(state: object) -> bool:
    """applied; applying (the process died mid-plan); cut short, then completed by a later fix;
    an undo, or the rollback after a failed apply, that failed part way."""
    return state in ("applied", "applying", "undo incomplete") or (
        isinstance(state, str) and (state.startswith("cut short") or state.endswith("rollback incomplete")))


def _revert(actions: list[Action], journal: Journal, indices: list[int], force: bool, final_state: str) -> list[str]:
    """Undo `indices` in reverse order, but run the regenerations (update-grub,
    update-initramfs, ...) last, once each: they must read the restored files.
    A regeneration whose intent was saved runs again even if its outcome is missing:
    it may have been killed half way through its output."""
    sysm = journal.sysm
    entries = journal.doc["entries"]
    log: list[str] = []
    regen: list[int] = []
    for i in reversed(indices):
        a, e = actions[i], entries[i]
        if isinstance(a, Command) and a.regenerates:
            regen.append(i)
            continue
        _revert_one(a, e, sysm, force, final_state, log)
        journal.save()
    seen: set[tuple[str, ...]] = set()
    for i in sorted(regen):
        a, e = actions[i], entries[i]
        assert isinstance(a, Command)
        if a.argv in seen:
            e["state"] = final_state
            e["undo"] = f"regenerated once with the one above: {' '.join(a.argv)}"
        else:
            seen.add(a.argv)
            finished = all(_applied_state(entries[k]) == "done" for k in regen if actions[k].argv == a.argv)  # type: ignore[attr-defined]
            _revert_one(a, e, sysm, force, final_state, log, finished)
        journal.save()
    return log


def _revert_one(a: Action, e: dict[str, Any], sysm: System, force: bool, final_state: str, log: list[str],
                finished: bool | None = None) -> None:
    fin = _applied_state(e) == "done" if finished is None else finished
    try:
        line = a.rollback(sysm, e["record"], force=force, finished=fin)
        e["state"] = final_state
        e["undo"] = line
        log.append(line)
    except UndoConflict:
        raise
    except Exception as err:  # noqa: BLE001 - keep going: the journal says what is left
        e["applied_state"] = _applied_state(e)  # a later undo must know whether the outcome was recorded
        e["state"] = f"rollback failed: {err}"
        log.append(f"FAILED to undo: {a.describe()}: {err}")


def _applied_state(e: dict[str, Any]) -> str:
    """`done` or `started`: how far apply got, even after a failed rollback renamed the state."""
    return str(e.get("applied_state") or e["state"])
