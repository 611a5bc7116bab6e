"""A fix is a plan before it is an action.

A remediation turns failing results into `Action`s. Each action can preview
itself (a unified diff, the exact argv, the sysfs writes), apply itself and
roll itself back. `apply_plan` writes a journal entry before every action
(what it will do, the old bytes, mode and owner, the previous driver), so
`undo` works after a crash or a reboot; a failure rolls back everything done
so far, in reverse order.
"""

from __future__ import annotations

import base64
import datetime as _dt
import difflib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from doctor.errors import DoctorError
from doctor.system import FileState, System, run_sh_print_var

NOW = "now"
NEXT_BOOT = "next boot"
INITRAMFS = "next boot, once the initramfs is rebuilt"

JOURNAL_FORMAT = "gpudoctor.journal"
PLAN_FORMAT = "gpudoctor.plan"
VERSION = 1


class ApplyError(DoctorError):
    exit_code = 1


class UndoConflict(DoctorError):
    exit_code = 1


@dataclass
class Action:
    checks: tuple[str, ...]  # the check ids this action answers
    reason: str
    takes_effect: str
    boot_path: bool = False  # touches the bootloader or the initramfs
    unbinds: bool = False  # takes a device away from a driver

    kind = "action"

    def describe(self) -> str:
        raise NotImplementedError

    def preview(self) -> str:
        raise NotImplementedError

    def undo_text(self) -> str:
        raise NotImplementedError

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "checks": list(self.checks),
            "reason": self.reason,
            "describe": self.describe(),
            "preview": self.preview(),
            "takes_effect": self.takes_effect,
            "undo": self.undo_text(),
            "boot_path": self.boot_path,
            "unbinds": self.unbinds,
        }


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


@dataclass
class FileEdit(Action):
    path: str = ""
    old: bytes | None = None  # the content the plan was made from (None: absent)
    new: bytes = b""
    mode: int = 0o644
    # Validation after writing: source these files with sh and expect var == value.
    shell_check: tuple[tuple[str, ...], str, str] | None = None

    kind = "file"

    def describe(self) -> str:
        return f"{'create' if self.old is None else 'edit'} {self.path}"

    def preview(self) -> str:
        a = (self.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        b = self.new.decode("utf-8", "replace").splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(a, b, f"a{self.path}" if self.old is not None else "/dev/null", f"b{self.path}"))
        return diff or "(no change)"

    def undo_text(self) -> str:
        return f"restore the old {self.path} byte for byte" if self.old is not None else f"remove {self.path}"

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        cur = sysm.file_state(self.path)
        if cur.data != self.old:
            raise ApplyError(f"{self.path} changed since the plan was made; run `gpudoctor fix` again")
        record["old"] = {"data": _b64(cur.data), "mode": cur.mode, "uid": cur.uid, "gid": cur.gid}
        record["new_sha"] = _sha(self.new)
        mode = cur.mode if cur.data is not None else self.mode
        sysm.write_atomic(self.path, self.new, mode, cur.uid if cur.data is not None else 0, cur.gid if cur.data is not None else 0)
        if self.shell_check is not None:
            files, var, want = self.shell_check
            got = run_sh_print_var([sysm.real(f) for f in files if os.path.exists(sysm.real(f))], var)
            if got != want:
                raise ApplyError(
                    f"validation failed: after editing {self.path}, sh gives {var}={got!r}, expected {want!r}; the old file is put back"
                )

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False) -> None:
        old = record.get("old")
        if old is None:
            return  # never written
        cur = sysm.file_state(self.path)
        if record.get("new_sha") and _sha(cur.data) != record["new_sha"] and not force:
            before = (cur.data or b"").decode("utf-8", "replace").splitlines(keepends=True)
            after = (_unb64(old["data"]) or b"").decode("utf-8", "replace").splitlines(keepends=True)
            diff = "".join(difflib.unified_diff(before, after, f"now{self.path}", f"undo{self.path}"))
            raise UndoConflict(f"{self.path} changed after the fix; undo would do:\n{diff}\nrerun with --force to undo anyway")
        sysm.restore(self.path, FileState(_unb64(old["data"]), old["mode"], old["uid"], old["gid"]))


def _sha(b: bytes | None) -> str:
    import hashlib

    return "absent" if b is None else hashlib.sha256(b).hexdigest()


@dataclass
class Command(Action):
    argv: tuple[str, ...] = ()
    undo_argv: tuple[str, ...] | None = None  # run on rollback (e.g. regenerate again)
    # after running: a file that must exist and contain every string
    expect_in_file: tuple[str, tuple[str, ...]] | None = None
    syntax_check: tuple[str, ...] | None = None  # argv whose success validates the output
    timeout: float = 900

    kind = "command"

    def describe(self) -> str:
        return "run " + " ".join(self.argv)

    def preview(self) -> str:
        return "$ " + " ".join(_q(a) for a in self.argv)

    def undo_text(self) -> str:
        return ("run " + " ".join(self.undo_argv)) if self.undo_argv else "nothing to undo by itself"

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        r = sysm.run(self.argv, timeout=self.timeout)
        record["rc"] = r.rc
        if not r.ok:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise ApplyError(f"{r.describe()}" + (": " + " / ".join(tail) if tail else ""))
        if self.syntax_check and sysm.live:
            c = sysm.run(self.syntax_check, timeout=60)
            if c.found and not c.ok:
                raise ApplyError(f"validation failed: {c.describe()}")
        if self.expect_in_file and sysm.live:
            path, needles = self.expect_in_file
            st = sysm.file_state(path)
            text = (st.data or b"").decode("utf-8", "replace")
            missing = [n for n in needles if n not in text]
            if st.data is None or missing:
                raise ApplyError(f"validation failed: {path} does not carry {' '.join(missing) or 'anything'} after `{' '.join(self.argv)}`")

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False) -> None:
        if self.undo_argv and "rc" in record:
            sysm.run(self.undo_argv, timeout=self.timeout)


def _q(a: str) -> str:
    import shlex

    return shlex.quote(a)


@dataclass
class LoadModule(Action):
    module: str = ""

    kind = "module"

    def describe(self) -> str:
        return f"load module {self.module}"

    def preview(self) -> str:
        return f"$ modprobe {self.module}"

    def undo_text(self) -> str:
        return "leave it loaded (harmless)"

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        r = sysm.run(("modprobe", self.module), timeout=60)
        if not r.ok:
            raise ApplyError(r.describe())

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False) -> None:
        return None


@dataclass
class Bind(Action):
    address: str = ""
    driver: str = "vfio-pci"
    previous_driver: str | None = None
    previous_override: str | None = None

    kind = "bind"

    def _dev(self, name: str) -> str:
        return f"/sys/bus/pci/devices/{self.address}/{name}"

    def describe(self) -> str:
        return f"bind {self.address} to {self.driver} (now on {self.previous_driver or 'no driver'})"

    def writes(self) -> list[tuple[str, str]]:
        w = [(self._dev("driver_override"), self.driver)]
        if self.previous_driver:
            w.append((self._dev("driver/unbind"), self.address))
        w.append(("/sys/bus/pci/drivers_probe", self.address))
        return w

    def preview(self) -> str:
        return "\n".join(f"echo {v} > {p}" for p, v in self.writes())

    def undo_text(self) -> str:
        back = self.previous_driver or "no driver"
        return f"clear driver_override, unbind from {self.driver}, give {self.address} back to {back}"

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        h = sysm.host()
        record["previous_driver"] = h.link_name(self._dev("driver")) if sysm.live else self.previous_driver
        ov = None
        if sysm.live:
            t = h.read_text_or_none(self._dev("driver_override"))
            ov = None if t is None or t.strip() in ("", "(null)") else t.strip()
        record["previous_override"] = ov if sysm.live else self.previous_override
        for p, v in self.writes():
            try:
                sysm.write_sysfs(p, v)
            except OSError as e:
                if p.endswith("/unbind") and not sysm.host().exists(self._dev("driver")):
                    continue  # already unbound
                raise ApplyError(f"writing {v!r} to {p} failed: {e.strerror or e}") from e
        if sysm.live:
            for _ in range(50):
                now = sysm.host().link_name(self._dev("driver"))
                if now == self.driver:
                    break
                time.sleep(0.05)
            else:
                raise ApplyError(f"{self.address} is on {now or 'no driver'} after the bind, not {self.driver}")

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False) -> None:
        if "previous_driver" not in record:
            return
        prev = record.get("previous_driver")
        ov = record.get("previous_override")
        steps = [(self._dev("driver_override"), ov if ov else "\n")]
        cur = sysm.host().link_name(self._dev("driver")) if sysm.live else self.driver
        if cur:
            steps.append((self._dev("driver/unbind"), self.address))
        if prev:
            steps.append((f"/sys/bus/pci/drivers/{prev}/bind", self.address))
        for p, v in steps:
            try:
                sysm.write_sysfs(p, v)
            except OSError:
                if p.endswith("/bind"):
                    sysm.write_sysfs("/sys/bus/pci/drivers_probe", self.address)
                else:
                    raise


ACTION_TYPES: dict[str, type[Action]] = {c.kind: c for c in (FileEdit, Command, LoadModule, Bind)}


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    explanations: list[tuple[str, str]] = field(default_factory=list)  # (check id, why no automatic fix)

    @property
    def needs_yes(self) -> bool:
        return any(a.boot_path or a.unbinds for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": VERSION,
            "actions": [a.to_dict() for a in self.actions],
            "not_fixable": [{"check": c, "why": w} for c, w in self.explanations],
        }


# ---------------------------------------------------------------------------
# journal


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


def _crash_hook(index: int) -> None:
    """Test hooks: GPUDOCTOR_TEST_CRASH_AFTER=N kills the process right after action N (as a
    power cut would); GPUDOCTOR_TEST_INTERRUPT_AFTER=N raises ^C there."""
    v = os.environ.get("GPUDOCTOR_TEST_CRASH_AFTER")
    if v is not None and v.isdigit() and int(v) == index:
        os._exit(137)
    v = os.environ.get("GPUDOCTOR_TEST_INTERRUPT_AFTER")
    if v is not None and v.isdigit() and int(v) == index:
        raise KeyboardInterrupt


def apply_plan(plan: Plan, sysm: System, journal: Journal) -> list[str]:
    """Apply every action; on failure roll back what was done and raise."""
    journal.start(plan)
    done: list[int] = []
    log: list[str] = []
    try:
        for i, a in enumerate(plan.actions):
            entry = journal.doc["entries"][i]
            entry["state"] = "started"
            journal.save()
            a.apply(sysm, entry["record"])
            entry["state"] = "done"
            journal.save()
            done.append(i)
            log.append(f"done: {a.describe()}")
            _crash_hook(i)
    except BaseException as e:
        # roll back in reverse order, including the action that was half done
        failed = [i for i in range(len(plan.actions)) if journal.doc["entries"][i]["state"] == "started"]
        _revert(plan.actions, journal, sorted(done + failed), force=True, final_state="rolled back")
        journal.doc["state"] = "rolled back" if not isinstance(e, KeyboardInterrupt) else "interrupted, rolled back"
        journal.save()
        raise
    journal.doc["state"] = "applied"
    journal.doc["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    journal.save()
    return log


def undo(sysm: System, fix_id: str | None = None, force: bool = False) -> tuple[str, list[str]]:
    """Revert the last (or the named) applied fix in reverse order."""
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
    # first pass: refuse before changing anything if a file changed after the fix
    if not force:
        for a, e in zip(actions, entries, strict=True):
            if isinstance(a, FileEdit) and e["state"] in ("done", "started") and e["record"].get("old") is not None:
                cur = sysm.file_state(a.path)
                if _sha(cur.data) != e["record"].get("new_sha"):
                    a.rollback(sysm, e["record"], force=False)  # raises UndoConflict with the diff
    todo = [i for i, e in enumerate(entries) if e["state"] in ("done", "started")]
    log = _revert(actions, j, todo, force=True, final_state="undone")
    j.doc["state"] = "undone"
    j.save()
    return fix_id, log


def _undoable(state: object) -> bool:
    """applied; applying (the process died mid-plan); cut short, then completed by a later fix."""
    return state in ("applied", "applying") or (isinstance(state, str) and state.startswith("cut short"))


def _revert(actions: list[Action], journal: Journal, indices: list[int], force: bool, final_state: str) -> list[str]:
    """Undo `indices` in reverse order, but run the regenerations (update-grub,
    update-initramfs, ...) last, once each: they must read the restored files."""
    sysm = journal.sysm
    entries = journal.doc["entries"]
    log: list[str] = []
    regen: list[int] = []
    for i in reversed(indices):
        a, e = actions[i], entries[i]
        if isinstance(a, Command) and a.undo_argv is not None and a.undo_argv == a.argv:
            regen.append(i)
            continue
        try:
            a.rollback(sysm, e["record"], force=force)
            e["state"] = final_state
            log.append(f"undone: {a.describe()}")
        except UndoConflict:
            raise
        except Exception as err:  # noqa: BLE001 - keep going: the journal says what is left
            e["state"] = f"rollback failed: {err}"
            log.append(f"FAILED to undo: {a.describe()}: {err}")
        journal.save()
    seen: set[tuple[str, ...]] = set()
    for i in sorted(regen):
        a, e = actions[i], entries[i]
        assert isinstance(a, Command)
        if a.argv not in seen:
            seen.add(a.argv)
            a.rollback(sysm, e["record"], force=force)
            log.append(f"regenerated from the restored files: {' '.join(a.argv)}")
        e["state"] = final_state
        journal.save()
    return log
