"""guest.serial_getty's judgement of a guest image (pure: a GuestView in, findings out)."""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.facts import parse_grub_cfg_default_linux, parse_shell_assignments
from doctor.model import Status
from doctor.vm.guestfs import LINK, MASK, GuestView

CONSOLE = re.compile(r"(?:^|\s)console=ttyS0(?:,\S*)?(?=\s|$)")


@record(frozen=True)
class GettyJudgement:
    status: Status
    summary: str
    evidence: tuple[tuple[str, str], ...]
    fixable: bool  # guest_getty can enable the unit offline


def kernel_console(v: GuestView) -> tuple[str, str] | None:
    """(where, the line) of a console=ttyS0 on the guest kernel's command line, the generated config first."""
    for cfg in ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"):
        if cfg in v.files:
            args = parse_grub_cfg_default_linux(v.files[cfg]) or ""
            if CONSOLE.search(args):
                return cfg, args
            return None  # the generated file decides; /etc/default/grub edits after it are not in effect
    for ln in v.bls.splitlines():
        if ln.strip().startswith("options") and CONSOLE.search(ln):
            return "/boot/loader/entries/*.conf", ln.strip()
    kc = v.files.get("/etc/kernel/cmdline")
    if kc and CONSOLE.search(kc):
        return "/etc/kernel/cmdline", kc.strip()
    dg = v.files.get("/etc/default/grub")
    if dg:
        env = parse_shell_assignments(dg)
        line = f"{env.get('GRUB_CMDLINE_LINUX', '')} {env.get('GRUB_CMDLINE_LINUX_DEFAULT', '')}"
        if CONSOLE.search(line):
            return "/etc/default/grub", line.strip()
    return None


def judge(v: GuestView) -> GettyJudgement:
    if v.masked:
        return GettyJudgement(Status.FAIL, f"{MASK} is masked (-> /dev/null): no login on ttyS0 whatever the command line says",
                              ((MASK, "-> /dev/null"),), False)
    if v.link is not None:
        ok = v.link.endswith("/serial-getty@.service") and v.template
        return GettyJudgement(Status.PASS if ok else Status.FAIL,
                              f"serial-getty@ttyS0.service enabled (-> {v.link})" if ok else
                              f"{LINK} points to {v.link}, which is not an installed serial-getty@.service",
                              ((LINK, f"-> {v.link}"),), False)
    kc = kernel_console(v)
    if kc is not None:
        return GettyJudgement(Status.PASS, f"console=ttyS0 on the guest kernel's command line ({kc[0]}): systemd starts "
                              "serial-getty@ttyS0 by itself", ((kc[0], kc[1]),), False)
    if not v.template:
        return GettyJudgement(Status.FAIL, "no serial-getty@.service in the image (not a systemd guest?): "
                              "enable a getty on ttyS0 the way its init does", ((LINK, "absent"),), False)
    return GettyJudgement(Status.FAIL, "no getty on ttyS0: `virsh console` stays blank after boot (serial-getty@ttyS0 "
                          "not enabled, no console=ttyS0 on the guest kernel's command line)",
                          ((LINK, "absent"), *((f, "no console=ttyS0") for f in v.files)), True)
