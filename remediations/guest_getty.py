"""guest_getty: enable serial-getty@ttyS0.service in a shut-off guest's image, offline, through
libguestfs (a symlink in getty.target.wants, what `systemctl enable` makes). Journaled like every
fix: undo removes the link (and the folder, if the fix made it and it is empty again)."""

from __future__ import annotations

import os
from typing import Any

from doctor.datarecord import record
from doctor.plan import ACTION_TYPES, Action, ApplyError, Plan, UndoConflict
from doctor.system import System
from doctor.vm.guestfs import LINK, TEMPLATES, GuestfsError, Session, env_prefix

TARGET = TEMPLATES[0]  # /lib/systemd/system/serial-getty@.service, as `systemctl enable` writes it on Debian


@record
class GuestLink(Action):
    image: str = ""
    image_format: str = "raw"
    link: str = LINK
    target: str = TARGET

    kind = "guest_link"

    def describe(self) -> str:
        return f"in the guest image {self.image}: link {self.link} -> {self.target}"

    def preview(self) -> str:
        return (f"$ guestfish --rw --format={self.image_format} -a {self.image} -i -- mkdir-p {os.path.dirname(self.link)} : "
                f"ln-s {self.target} {self.link}")

    def undo_text(self) -> str:
        return f"remove {self.link} from the image (and {os.path.dirname(self.link)} if the fix created it and it is empty)"

    def _session(self, sysm: System) -> Session:
        try:
            return Session(lambda argv, t: sysm.run(argv, timeout=t), self.image, self.image_format, True, env_prefix())
        except GuestfsError as e:
            raise ApplyError(f"{e} (a running guest holds its image locked: shut it down first)") from e

    def apply(self, sysm: System, record: dict[str, Any]) -> None:
        s = self._session(sysm)
        try:
            if s.flag("is-symlink", self.link) or s.flag("exists", self.link):
                raise ApplyError(f"{self.link} exists in {self.image} since the check; run it again")
            d = os.path.dirname(self.link)
            if not s.flag("is-dir", d):
                s.must("mkdir-p", d)
                record["created_dir"] = d
            s.must("ln-s", self.target, self.link)
            record["created"] = True
            s.must("sync")
        except GuestfsError as e:
            raise ApplyError(str(e)) from e
        finally:
            s.close()

    def rollback(  # type: ignore[override]  # the signature of the journal that records intent and outcome
        self, sysm: System, record: dict[str, Any], force: bool = False, finished: bool = True
    ) -> str:
        """Remove the link this fix made. `finished` False (the process died between the journal's
        intent and its outcome, doctor/journal.py): whether the link was made is judged on the image,
        and a folder whose history is unknown is left in place."""
        if finished and not record.get("created"):
            return f"nothing to undo in {self.image}: the link was never made"
        s = self._session(sysm)
        done: list[str] = []
        try:
            if s.flag("is-symlink", self.link):
                now = s.must("readlink", self.link).strip()
                if now != self.target and not force:
                    raise UndoConflict(f"{self.link} in {self.image} now points to {now}, not {self.target}: "
                                       "rerun with --force to remove it anyway")
                s.must("rm", self.link)
                done.append(f"removed {self.link}")
            d = record.get("created_dir")
            if d and s.flag("is-dir", d) and not s.must("ls", d).strip():
                s.must("rmdir", d)
                done.append(f"removed the folder {d} it had made")
            s.must("sync")
        except GuestfsError as e:
            raise ApplyError(str(e)) from e
        finally:
            s.close()
        return f"undone in {self.image}: " + ("; ".join(done) or f"{self.link} was already gone")


ACTION_TYPES.setdefault(GuestLink.kind, GuestLink)  # so `gpudoctor undo` can read it back from a journal


def plan(image: str, image_format: str) -> Plan:
    return Plan([GuestLink(("guest.serial_getty",), "no getty on ttyS0: `virsh console` shows nothing after boot",
                           "next boot of the guest", image=image, image_format=image_format)])


