"""A fix is a plan before it is an action.

A remediation turns failing results into `Action`s. Each action can preview
itself (a unified diff, the exact argv, the sysfs writes), prepare (read what
its undo will need: the intent, saved before anything changes), apply itself
and roll itself back, returning the line that says what the rollback did.
The journal, `apply_plan` and `undo` are in doctor/journal.py.
"""

from __future__ import annotations

import base64
import difflib
import os
import time
from typing import Any

from doctor.datarecord import field, fields, record
from doctor.errors import DoctorError
from doctor.system import FileState, System, run_sh_print_var, temp_path

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


@record
class Action:
    checks: tuple[str, ...]  # the check ids this action answers
    reason: str
    takes_effect: str
    boot_path: bool = False  # touches the bootloader or the initramfs
    unbinds: bool = False  # takes a device away from a driver

    kind = "action"

    def same_change(self, other: Action) -> bool:
        """The same change to the host, whichever checks ask for it and in whatever words (the fixer
        merges such actions: several checks ask for one binding)."""
        mine = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("checks", "reason")}
        theirs = {f.name: getattr(other, f.name) for f in fields(other) if f.name not in ("checks", "reason")}
        return type(self) is type(other) and mine == theirs

    def describe(self) -> str:
        raise NotImplementedError

    def preview(self) -> str:
        raise NotImplementedError

    def undo_text(self) -> str:
        raise NotImplementedError

    def prepare(self, sysm: System, record: dict[str, Any]) -> None:
        """Read what the undo will need into `record` (the intent); change nothing. ApplyError
        here means nothing was done."""
        return None

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True) -> str:
        """Revert this action; return the line that says what was done. `finished`: the outcome was
        recorded (False: the process died between the intent and the outcome)."""
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


@record
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

    def prepare(self, sysm: System, record: dict[str, Any]) -> None:
        cur = sysm.file_state(self.path)
        if cur.data != self.old:
            raise ApplyError(f"{self.path} changed since the plan was made; run `gpudoctor fix` again")
        record["old"] = {"data": _b64(cur.data), "mode": cur.mode, "uid": cur.uid, "gid": cur.gid}
        record["old_sha"] = _sha(cur.data)
        record["new_sha"] = _sha(self.new)

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        old = record["old"]
        existed = old["data"] is not None
        sysm.write_atomic(self.path, self.new, old["mode"] if existed else self.mode, old["uid"] if existed else 0,
                          old["gid"] if existed else 0)
        if self.shell_check is not None:
            files, var, want = self.shell_check
            got = run_sh_print_var([sysm.real(f) for f in files if os.path.exists(sysm.real(f))], var)
            if got != want:
                raise ApplyError(
                    f"validation failed: after editing {self.path}, sh gives {var}={got!r}, expected {want!r}; the old file is put back"
                )

    def _old_state(self, sysm: System, record: dict[str, Any]) -> FileState:
        old = record.get("old")
        if old is not None:
            return FileState(_unb64(old["data"]), old["mode"], old["uid"], old["gid"])
        # a journal of an older gpudoctor saved no intent: the old bytes are the plan's (apply refused
        # any other); mode and owner are the file's now
        cur = sysm.file_state(self.path)
        return FileState(self.old, cur.mode if cur.data is not None else self.mode, cur.uid, cur.gid)

    def conflict(self, sysm: System, record: dict[str, Any]) -> str | None:
        """The diff undo would apply when the file on disk is neither the old nor the new content."""
        old = self._old_state(sysm, record)
        cur = sysm.file_state(self.path)
        if _sha(cur.data) in (_sha(old.data), record.get("new_sha", _sha(self.new))):
            return None
        before = (cur.data or b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = (old.data or b"").decode("utf-8", "replace").splitlines(keepends=True)
        return "".join(difflib.unified_diff(before, after, f"now{self.path}", f"undo{self.path}"))

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True) -> str:
        old = self._old_state(sysm, record)
        cur = sysm.file_state(self.path)
        if _sha(cur.data) == _sha(old.data):
            if finished:
                return f"nothing to undo: {self.path} already holds its old content again"
            what = "never created" if old.data is None else "never written: its old content is on disk"
            tmp = temp_path(self.path)
            if os.path.lexists(sysm.real(tmp)):  # killed between writing the temporary file and the rename
                os.unlink(sysm.real(tmp))
                return f"undone: removed {tmp}, the temporary file a kill left; {self.path} was {what}"
            return f"nothing to undo: {self.path} was {what} (cut short before the write)"
        diff = self.conflict(sysm, record)
        if diff is not None and not force:
            raise UndoConflict(f"{self.path} changed after the fix; undo would do:\n{diff}\nrerun with --force to undo anyway")
        sysm.restore(self.path, old)
        verb = f"removed {self.path}" if old.data is None else f"restored the old {self.path}"
        notes = []
        if not finished:
            notes.append("the write had landed; its outcome was not recorded")
        if diff is not None:
            notes.append("it had changed after the fix; --force")
        return f"undone: {verb}" + (f" ({'; '.join(notes)})" if notes else "")


def _sha(b: bytes | None) -> str:
    import hashlib

    return "absent" if b is None else hashlib.sha256(b).hexdigest()


@record
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

    @property
    def regenerates(self) -> bool:
        """update-grub, update-initramfs, ...: undone by running it again on the restored files."""
        return self.undo_argv is not None and self.undo_argv == self.argv

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

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True) -> str:
        """Run the inverse (or, for a regeneration, the command again). Where the outcome is missing
        the command may or may not have run; its inverse is then run all the same: the plan only
        adds what was absent and removes what was present, so the inverse of a step that never
        happened changes nothing."""
        if not self.undo_argv:
            return f"nothing to undo: {self.describe()} (it changes nothing by itself)"
        r = sysm.run(self.undo_argv, timeout=self.timeout)
        if not r.ok:
            why = r.describe()
            rc = record.get("rc")
            if self.regenerates and rc not in (None, 0):
                # update-grub, update-initramfs, dracut, mkinitcpio write their output aside and
                # rename it only on success: a run that failed during the fix replaced nothing
                return (f"nothing to undo: {' '.join(self.argv)} had failed during the fix (exit {rc}), so it "
                        f"replaced nothing; run again on the restored files, it failed too ({why})")
            raise ApplyError(why)
        note = "" if finished else " (it had been cut short: it may or may not have run)"
        if self.regenerates:
            return f"regenerated from the restored files: {' '.join(self.argv)}{note}"
        return f"undone: ran {' '.join(self.undo_argv)} (the inverse of {' '.join(self.argv)}){note}"


def _q(a: str) -> str:
    import shlex

    return shlex.quote(a)


@record
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

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True) -> str:
        return f"left as is: module {self.module} stays loaded (harmless; undo does not unload it)"


@record
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

    def prepare(self, sysm: System, record: dict[str, Any]) -> None:
        h = sysm.host()
        record["previous_driver"] = h.link_name(self._dev("driver")) if sysm.live else self.previous_driver
        ov = None
        if sysm.live:
            t = h.read_text_or_none(self._dev("driver_override"))
            ov = None if t is None or t.strip() in ("", "(null)") else t.strip()
        record["previous_override"] = ov if sysm.live else self.previous_override

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
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

    def rollback(self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True) -> str:
        if "previous_driver" not in record:
            return f"nothing to undo: {self.address} (no intent was recorded, so nothing was written)"
        prev = record.get("previous_driver")
        ov = record.get("previous_override")
        cur = sysm.host().link_name(self._dev("driver")) if sysm.live else self.driver
        if sysm.live and not finished and cur == prev:
            t = sysm.host().read_text_or_none(self._dev("driver_override"))
            if (None if t is None or t.strip() in ("", "(null)") else t.strip()) == ov:
                return f"nothing to undo: {self.address} is still on {prev or 'no driver'} (cut short before the bind)"
        steps = [(self._dev("driver_override"), ov if ov else "\n")]
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
        note = "" if finished else " (it had been cut short)"
        return f"undone: cleared driver_override, gave {self.address} back to {prev or 'no driver'}{note}"


ACTION_TYPES: dict[str, type[Action]] = {c.kind: c for c in (FileEdit, Command, LoadModule, Bind)}


@record
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

