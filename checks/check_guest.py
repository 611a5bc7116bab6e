"""The guest image: a login on the serial console."""

from __future__ import annotations

from doctor.checkapi import Context, check
from doctor.model import Evidence, GuestGetty, Remedy, Severity, Status, Verdict, verdict


@check("guest.serial_getty", "The guest image starts a login on its serial console (ttyS0)", severity=Severity.ADVICE)
def guest_serial_getty(ctx: Context) -> Verdict:
    """Read offline with libguestfs (read-only), only when asked (`gpudoctor vm getty NAME` or an image):
    serial-getty@ttyS0.service enabled, or console=ttyS0 on the guest kernel's command line (systemd
    then starts that getty by itself)."""
    image = ctx.options.get("image")
    if not image:
        return verdict(Status.NOT_APPLICABLE, "no guest image given (gpudoctor vm getty NAME, or --image PATH)")
    from doctor.vm.getty import judge
    from doctor.vm.guestfs import parse_read, read_argv

    host = getattr(ctx.facts, "host", None)
    if host is None:
        return verdict(Status.UNKNOWN, "unknown: no host to run libguestfs on")
    prefix = tuple(ctx.options.get("guestfs_env", "").split()) if ctx.options.get("guestfs_env") else ()
    argv = read_argv(image, ctx.options.get("image_format", "raw"), prefix)
    r = host.run(argv, timeout=600)
    src = Evidence(image, " ".join(argv[argv.index("guestfish"):][:6]) + " ...")
    if not r.ok:
        err = (r.stderr or r.stdout).strip().splitlines()
        return verdict(Status.UNKNOWN, f"unknown: the image could not be read: {r.describe()}", [src],
                       [*err[-3:], "libguestfs needs a kernel for its appliance (Debian: linux-image-amd64); where KVM "
                        "fails, LIBGUESTFS_BACKEND_SETTINGS=force_tcg"])
    try:
        view = parse_read(r.stdout)
    except ValueError as e:
        return verdict(Status.UNKNOWN, f"unknown: {e}", [src])
    j = judge(view)
    ev = [src, *(Evidence(w, v) for w, v in j.evidence)]
    remedy = None
    if j.fixable:
        target = ctx.options.get("vm") or f"--image {image}"
        remedy = Remedy("Enable serial-getty@ttyS0.service offline (a symlink in getty.target.wants), with the domain shut off.",
                        (f"sudo gpudoctor vm getty {target} --apply --yes",), GuestGetty())
    return verdict(j.status, j.summary, ev, [], remedy)
