"""guest.serial_getty and its fix guest_getty on a real ext4 guest image, read and written offline by
libguestfs (its appliance boots the lab's cached Debian kernel under TCG: ~40 s per start here), and
the judgement itself on hand-made views (no appliance)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from doctor.cli import main
from doctor.model import Status
from doctor.vm.getty import judge
from doctor.vm.guestfs import LINK, MARK, GuestView, parse_read, read_argv

SERVICE = "[Unit]\nDescription=Serial Getty on %I\n[Service]\nExecStart=-/sbin/agetty -o '-p -- \\\\u' --keep-baud 115200 %I $TERM\n"


def view(**kw: object) -> GuestView:
    base: dict[str, object] = {"link": None, "masked": False, "wants_dir": True, "template": True, "files": {}, "bls": ""}
    base.update(kw)
    return GuestView(**base)  # type: ignore[arg-type]


def test_console_on_the_guest_kernel_command_line_passes_without_the_link() -> None:
    cfg = "menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1.0 root=UUID=x ro console=tty0 console=ttyS0,115200n8\n}\n"
    assert judge(view(files={"/boot/grub/grub.cfg": cfg})).status is Status.PASS
    assert judge(view(files={"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet console=ttyS0"\n'})).status is Status.PASS
    assert judge(view(bls="title Fedora\noptions root=/dev/vda1 console=ttyS0\n")).status is Status.PASS
    assert judge(view(files={"/etc/kernel/cmdline": "root=/dev/vda1 console=ttyS0\n"})).status is Status.PASS


def test_a_generated_grub_cfg_without_the_console_decides_over_etc_default_grub() -> None:
    j = judge(view(files={"/boot/grub/grub.cfg": "linux /vmlinuz root=/dev/sda1 quiet\n",
                          "/etc/default/grub": 'GRUB_CMDLINE_LINUX="console=ttyS0"\n'}))
    assert j.status is Status.FAIL and j.fixable


def test_console_ttys1_or_a_lookalike_is_not_ttys0() -> None:
    for line in ("console=ttyS1", "xconsole=ttyS0", "console=ttyS01"):
        assert judge(view(files={"/etc/kernel/cmdline": line})).status is Status.FAIL, line


def test_masked_getty_fails_and_is_not_fixed_by_a_link() -> None:
    j = judge(view(masked=True, files={"/etc/kernel/cmdline": "console=ttyS0"}))
    assert j.status is Status.FAIL and not j.fixable and "masked" in j.summary


def test_enabled_link_to_an_installed_template_passes() -> None:
    assert judge(view(link="/lib/systemd/system/serial-getty@.service")).status is Status.PASS
    assert judge(view(link="/lib/systemd/system/serial-getty@.service", template=False)).status is Status.FAIL


def test_a_file_forging_guestfishs_markers_is_refused() -> None:
    good = "".join(f"{MARK}{n}\nfalse\n" for n in ("link", "mask", "wants", "template0", "template1"))
    files = f"{MARK}file0\ntrue\nGRUB=1\n{MARK}link\ntrue\n" + "".join(f"{MARK}file{i}\nfalse\n" for i in (1, 2, 3))
    with pytest.raises(ValueError):
        parse_read(good + files + f"{MARK}bls\n{MARK}end\n")


def test_read_argv_is_read_only_with_an_explicit_format() -> None:
    a = read_argv("/img", "raw")
    assert a[:6] == ("guestfish", "--ro", "--format=raw", "-a", "/img", "-i")
    assert "--rw" not in a and not any(c in a for c in ("ln-s", "rm", "write", "mkdir-p"))


# --- on a real image, through libguestfs


@pytest.fixture
def guestfs_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The appliance's kernel: the lab's cached Debian kernel (bash lab/setup.sh fetches it), never /boot;
    TCG because nested KVM here aborts QEMU (`failed to set MSR 0x10a`)."""
    from lab.cache import load_kernel

    k = load_kernel()
    monkeypatch.setenv("SUPERMIN_KERNEL", str(k.vmlinuz))
    monkeypatch.setenv("SUPERMIN_MODULES", str(k.moddir))
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    monkeypatch.setenv("GPUDOCTOR_STATE_DIR", str(tmp_path / "state"))


def make_image(tmp_path: Path) -> Path:
    """A tiny Debian-like root (no debootstrap needed: the check and the fix read and write a few files)."""
    root = tmp_path / "root"
    for d in ("etc/systemd/system/multi-user.target.wants", "lib/systemd/system", "etc/default", "bin", "usr/bin", "boot"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    (root / "etc/debian_version").write_text("12.8\n")
    (root / "etc/fstab").write_text("/dev/sda / ext4 errors=remount-ro 0 1\n")
    (root / "etc/default/grub").write_text('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    (root / "lib/systemd/system/serial-getty@.service").write_text(SERVICE)
    img = tmp_path / "guest.img"
    subprocess.run(["truncate", "-s", "24M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(img)], check=True, timeout=60)
    return img


def debugfs(img: Path, cmd: str) -> str:
    p = subprocess.run(["debugfs", "-R", cmd, str(img)], capture_output=True, text=True, check=False, timeout=60)
    return p.stdout + p.stderr


def test_getty_check_fails_fix_enables_check_passes_undo_restores(guestfs_env: None, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    img = make_image(tmp_path)
    before = debugfs(img, "ls -l /etc/systemd/system")
    assert "getty.target.wants" not in before
    rc = main(["vm", "getty", "--image", str(img), "--apply", "--yes"])  # check (FAIL), fix, check again
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("✗ guest.serial_getty: no getty on ttyS0"), out
    assert any(ln.startswith("✓ guest.serial_getty: serial-getty@ttyS0.service enabled") for ln in lines), out
    st = debugfs(img, f"stat {LINK}")
    assert "Type: symlink" in st and "/lib/systemd/system/serial-getty@.service" in st, st
    fix_id = re.search(r"Applied as fix (\S+)", out)
    assert fix_id is not None
    assert main(["undo", fix_id.group(1)]) == 0
    out, err = capsys.readouterr()
    assert "undone" in out, out + err
    after = debugfs(img, "ls -l /etc/systemd/system")
    assert "File not found" in debugfs(img, f"stat {LINK}")
    assert before_names(after) == before_names(before)  # the folder the fix made is gone too


def before_names(listing: str) -> list[str]:
    return [ln.split()[-1] for ln in listing.splitlines() if ln.strip() and not ln.startswith("debugfs")]


def test_getty_fix_is_refused_on_a_running_domain_before_libguestfs_is_tried(monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import libvirt

    monkeypatch.setenv("PATH", "/nonexistent")  # a guestfish run would fail differently: none is tried
    c = libvirt.open("test:///default")
    try:
        assert c.lookupByName("test").isActive()  # the test driver's own running domain
        rc = main(["vm", "getty", "test", "--connect", "test:///default", "--apply", "--yes"])
        _, err = capsys.readouterr()
        assert rc == 1 and "is running: libguestfs refuses" in err and "shut it down first" in err
    finally:
        c.close()
    assert os.environ["PATH"] == "/nonexistent"


def _fake_guest(tmp_path: Path, answers: dict[tuple[str, ...], str]):  # type: ignore[no-untyped-def]
    """A RootedSystem whose guestfish answers from a table (no appliance): the decisions of the fix."""
    from doctor.host import CommandResult
    from doctor.system import RootedSystem

    img = "/img.raw"
    listen = ("sh", "-c", 'exec "$@" 2>/dev/null', "sh", "guestfish", "--listen", "--rw", "--format=raw", "-a", img, "-i")
    resp = {listen: CommandResult(listen, 0, "GUESTFISH_PID=42; export GUESTFISH_PID\n", "")}
    for args, out in answers.items():
        argv = ("guestfish", "--remote=42", "--", *args)
        resp[argv] = CommandResult(argv, 0, out, "")
    return RootedSystem(str(tmp_path), responses=resp), img


def test_undo_refuses_a_link_changed_since_the_fix_and_judges_an_unfinished_one_on_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from doctor.plan import UndoConflict
    from remediations.guest_getty import TARGET, GuestLink

    for k in ("LIBGUESTFS_BACKEND_SETTINGS", "SUPERMIN_KERNEL", "SUPERMIN_MODULES", "LIBGUESTFS_BACKEND", "TMPDIR"):
        monkeypatch.delenv(k, raising=False)
    sysm, img = _fake_guest(tmp_path, {("is-symlink", LINK): "true\n", ("readlink", LINK): "/usr/lib/other.service\n"})
    a = GuestLink(("guest.serial_getty",), "r", "next boot", image=img)
    with pytest.raises(UndoConflict):
        a.rollback(sysm, {"created": True})
    assert ("guestfish", "--remote=42", "--", "rm", LINK) not in sysm.ran
    sysm, img = _fake_guest(tmp_path, {("is-symlink", LINK): "true\n", ("readlink", LINK): TARGET + "\n"})
    line = a.rollback(sysm, {}, finished=False)  # died between intent and outcome: the image decides
    assert ("guestfish", "--remote=42", "--", "rm", LINK) in sysm.ran and "removed" in line
    assert ("guestfish", "--remote=42", "--", "exit") in sysm.ran  # the appliance is always stopped
    sysm, img = _fake_guest(tmp_path, {})
    assert "never made" in a.rollback(sysm, {}) and sysm.ran == []
