"""gpudoctor fix on copies of recorded hosts (never on the machine running the tests):
plans, apply with a journal, rollback on failure, crash + undo, undo conflicts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doctor.facts import HostFacts
from doctor.fixer import build_plan
from doctor.host import CommandResult
from doctor.journal import Journal, apply_plan, undo
from doctor.plan import Bind, Command, FileEdit
from doctor.runner import run_checks
from doctor.snapshot import SnapshotHost
from doctor.system import RootedSystem, run_sh_print_var
from remediations.kernel_cmdline import edit_grub_files, intended_value

REPO = os.path.join(os.path.dirname(__file__), "..")
FIX = os.path.join(REPO, "fixtures")
IDS = "options vfio-pci ids=10de:1e84,10de:10f8,10de:1ad8,10de:1ad9"


def copy_fixture(tmp_path, name: str) -> str:  # type: ignore[no-untyped-def]
    dst = str(tmp_path / name)
    shutil.copytree(os.path.join(FIX, name), dst, symlinks=True)
    return dst


def tree_digest(root: str) -> dict[str, str]:
    """Every regular file and link under root (the journal excepted), with mode."""
    out = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        if rel.startswith(os.path.join("var", "lib", "gpudoctor")):
            continue
        for f in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, f)
            key = os.path.relpath(p, root)
            if key.startswith(os.path.join("var", "lib", "gpudoctor")):
                continue
            if os.path.islink(p):
                out[key] = "link:" + os.readlink(p)
            else:
                st = os.stat(p)
                out[key] = hashlib.sha256(open(p, "rb").read()).hexdigest() + f":{st.st_mode & 0o7777:o}"
    return out


def plan_for(snap: str):  # type: ignore[no-untyped-def]
    h = SnapshotHost(snap)
    rep = run_checks(HostFacts(h), h.source_info())
    return rep, build_plan(rep, h, advice=True)


def test_plan_for_the_notes_partial_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, plan = plan_for(os.path.join(FIX, "seed-partial"))
    kinds = [(type(a).__name__, getattr(a, "path", None) or getattr(a, "argv", None) or getattr(a, "address", None)) for a in plan.actions]
    assert ("FileEdit", "/etc/modprobe.d/vfio.conf") in kinds
    assert ("FileEdit", "/etc/initramfs-tools/modules") in kinds
    assert ("Command", ("update-initramfs", "-u", "-k", "5.0.0-27-generic")) in kinds
    assert ("FileEdit", "/etc/default/grub") in kinds and ("Command", ("update-grub",)) in kinds
    binds = [a for a in plan.actions if isinstance(a, Bind)]
    assert [b.address for b in binds] == ["0000:01:00.2", "0000:01:00.3"]
    assert all(not isinstance(a, Command) or "new_id" not in " ".join(a.argv) for a in plan.actions)
    grub = next(a for a in plan.actions if isinstance(a, FileEdit) and a.path == "/etc/default/grub")
    assert '+GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"' in grub.preview()
    # binds come after every boot-path change, the initramfs rebuild after the files it packs
    idx = {id(a): i for i, a in enumerate(plan.actions)}
    rebuild = next(a for a in plan.actions if isinstance(a, Command) and a.argv[0] == "update-initramfs")
    assert all(idx[id(f)] < idx[id(rebuild)] for f in plan.actions if isinstance(f, FileEdit) and f.takes_effect.startswith("next boot, once"))
    assert plan.needs_yes


def test_plan_for_a_host_without_an_iommu_adds_nothing_for_amd_and_never_amd_iommu_on() -> None:
    _, plan = plan_for(os.path.join(FIX, "seed-before"))
    text = json.dumps(plan.to_dict())
    assert "amd_iommu=on" not in text
    assert "intel_iommu=on" in text  # Ubuntu 5.0: build default off


def test_apply_then_undo_puts_every_byte_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    sysm = RootedSystem(root, snapshot=snap)
    rep, plan = plan_for(snap)
    j = Journal(sysm)
    apply_plan(plan, sysm, j)
    after = tree_digest(root)
    assert after != before
    vfio = open(os.path.join(root, "etc/modprobe.d/vfio.conf")).read()
    assert IDS in vfio and "softdep xhci_hcd pre: vfio-pci" in vfio
    assert ("update-grub",) in sysm.ran and ("update-initramfs", "-u", "-k", "5.0.0-27-generic") in sysm.ran
    assert ("/sys/bus/pci/devices/0000:01:00.2/driver_override", "vfio-pci") in sysm.sysfs
    # the grub file sources, with sh, to the intended value
    assert run_sh_print_var([os.path.join(root, "etc/default/grub")], "GRUB_CMDLINE_LINUX") == "intel_iommu=on iommu=pt"
    fix_id, log = undo(sysm)
    assert fix_id == j.fix_id and len(log) == len(plan.actions)
    assert tree_digest(root) == before
    # the bind was reverted through sysfs, back to the previous driver
    assert ("/sys/bus/pci/drivers/xhci_hcd/bind", "0000:01:00.2") in sysm.sysfs


def test_a_failing_regeneration_rolls_everything_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    sysm = RootedSystem(root, snapshot=snap, responses={("update-grub",): CommandResult(("update-grub",), 1, "", "grub-mkconfig: error: syntax error")})
    _, plan = plan_for(snap)
    j = Journal(sysm)
    with pytest.raises(Exception, match="syntax error"):
        apply_plan(plan, sysm, j)
    assert tree_digest(root) == before
    doc = json.load(open(j.path))
    assert doc["state"] == "rolled back"
    assert not any(isinstance(a, Bind) for a, e in zip(plan.actions, doc["entries"], strict=True) if e["state"] == "done")


def test_shell_validation_failure_restores_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    sysm = RootedSystem(root, snapshot=snap)
    _, plan = plan_for(snap)
    grub = next(a for a in plan.actions if isinstance(a, FileEdit) and a.path == "/etc/default/grub")
    assert grub.shell_check is not None
    grub.shell_check = (grub.shell_check[0], grub.shell_check[1], "something else")
    with pytest.raises(Exception, match="validation failed"):
        apply_plan(plan, sysm, Journal(sysm))
    assert tree_digest(root) == before


def gd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=120)


def test_kill_after_each_action_then_undo_restores_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, plan = plan_for(os.path.join(FIX, "seed-partial"))
    n = len(plan.actions)
    assert n >= 5
    for i in range(n):
        snap = copy_fixture(tmp_path / str(i), "seed-partial")
        root = os.path.join(snap, "root")
        before = tree_digest(root)
        p = gd("fix", "--all", "--advice", "--apply", "--yes", "--root", root, env={"GPUDOCTOR_TEST_CRASH_AFTER": str(i)})
        assert p.returncode == 137, (i, p.stdout, p.stderr)
        doc = Journal.list(RootedSystem(root))[-1]
        assert [e["state"] for e in doc["entries"]][: i + 1] == ["done"] * (i + 1)
        u = gd("undo", "--root", root)
        assert u.returncode == 0, (i, u.stdout, u.stderr)
        assert tree_digest(root) == before, f"not restored after a crash following action {i}"


def test_interrupt_gives_130_rolls_back_and_leaves_a_consistent_journal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    p = gd("fix", "--all", "--advice", "--apply", "--yes", "--root", root, env={"GPUDOCTOR_TEST_INTERRUPT_AFTER": "2"})
    assert p.returncode == 130, (p.stdout, p.stderr)
    assert "rolled back" in p.stderr
    assert tree_digest(root) == before
    doc = Journal.list(RootedSystem(root))[-1]
    assert doc["state"] == "interrupted, rolled back"
    assert all(e["state"] in ("rolled back", "planned") for e in doc["entries"]), [e["state"] for e in doc["entries"]]
    assert gd("undo", "--root", root).returncode == 2  # nothing left to undo: a clear message, not a crash


def test_without_yes_and_without_a_terminal_nothing_is_applied(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    p = gd("fix", "--all", "--apply", "--root", root)
    assert p.returncode == 2 and "--yes" in p.stderr
    assert tree_digest(root) == before


def test_undo_stops_when_a_file_changed_after_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = copy_fixture(tmp_path, "seed-partial")
    root = os.path.join(snap, "root")
    before = tree_digest(root)
    assert gd("fix", "--all", "--advice", "--apply", "--yes", "--root", root).returncode in (0, 1)
    conf = os.path.join(root, "etc/modprobe.d/vfio.conf")
    with open(conf, "a") as f:
        f.write("# my own later edit\n")
    p = gd("undo", "--root", root)
    assert p.returncode == 1 and "changed after the fix" in p.stderr and "my own later edit" in p.stderr
    assert "my own later edit" in open(conf).read()  # nothing was undone
    p = gd("undo", "--force", "--root", root)
    assert p.returncode == 0
    assert tree_digest(root) == before


def test_snapshot_fix_is_a_dry_run_only() -> None:
    p = gd("fix", "--all", "--snapshot", os.path.join(FIX, "seed-partial"))
    assert p.returncode == 0 and "Dry run" in p.stdout and "update-initramfs" in p.stdout
    assert "update-grub" not in p.stdout  # iommu=pt is advice: only with --advice or when named
    p = gd("fix", "--all", "--advice", "--snapshot", os.path.join(FIX, "seed-partial"))
    assert "update-grub" in p.stdout
    p = gd("fix", "--all", "--snapshot", os.path.join(FIX, "seed-partial"), "--apply")
    assert p.returncode == 2
    p = gd("fix", "--snapshot", os.path.join(FIX, "seed-partial"))
    assert p.returncode == 2 and "--all" in p.stderr


def test_fix_plan_json_is_versioned() -> None:
    p = gd("fix", "--all", "--snapshot", os.path.join(FIX, "seed-partial"), "--json")
    doc = json.loads(p.stdout)
    assert (doc["format"], doc["version"]) == ("gpudoctor.plan", 1)
    for a in doc["actions"]:
        assert {"kind", "checks", "reason", "describe", "preview", "takes_effect", "undo", "boot_path", "unbinds"} <= set(a)


def test_live_apply_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from doctor import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = cli.main(["fix", "--all", "--apply", "--yes"])
    err = capsys.readouterr().err
    assert code == 2 and "needs root" in err


def test_group_isolation_has_no_automatic_fix() -> None:
    from doctor.facts import PciDevice
    from doctor.model import SourceInfo
    from tests.factory import FakeFacts, card, root_port  # noqa: F401

    nic = PciDevice("0000:04:00.0", 0x020000, "10ec", "8168", None, "15", "r8169", "1")
    from tests.test_checks_unit import host

    f = host(pci=[root_port(), *card(drivers=("vfio-pci", "vfio-pci", "xhci_hcd", "vfio-pci")), nic])
    rep = run_checks(f, SourceInfo("test", "x"))
    plan = build_plan(rep, SnapshotHost(os.path.join(FIX, "seed-partial")))
    assert not any(isinstance(a, Bind) for a in plan.actions)
    why = dict(plan.explanations)
    assert "0000:04:00.0" in why["vfio.group_viable"] and "no automatic fix" in why["gpu.group_isolated"]


# --- the GRUB_CMDLINE_LINUX editor --------------------------------------------

ARG = st.sampled_from(["quiet", "splash", "root=/dev/sda1", "console=ttyS0,115200n8", "intel_iommu=off", "iommu=soft",
                       "nomodeset", "$GRUB_X", "${GRUB_X}", "a\\\"b", "rd.luks.uuid=luks-1"])
QUOTE = st.sampled_from(['"', "'", ""])
COMMENT = st.sampled_from(["", "  # a comment", " # intel_iommu=on is what guides say"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(ARG, max_size=5), QUOTE, COMMENT), min_size=0, max_size=3), st.booleans())
def test_grub_editor_keeps_other_arguments_and_sources_with_sh(tmp_path, assigns, split) -> None:  # type: ignore[no-untyped-def]
    lines = ['GRUB_X="gx"', "GRUB_DEFAULT=0", '# GRUB_CMDLINE_LINUX="commented out"']
    for args, q, c in assigns:
        if q == "'":
            args = [a for a in args if "'" not in a and "\\" not in a and "$" not in a]
        if q == "":
            args = [a for a in args if a.replace("=", "").replace("/", "").replace(",", "").replace(".", "").replace("-", "").isalnum()][:1]
        lines.append(f"GRUB_CMDLINE_LINUX={q}{' '.join(args)}{q}{c}")
    text = "\n".join(lines) + "\n"
    files = [("/etc/default/grub", text)]
    if split:
        files.append(("/etc/default/grub.d/50-x.cfg", 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0"\n'))
    d = tmp_path / str(abs(hash((text, split))))
    d.mkdir(exist_ok=True)
    paths = []
    for p, t in files:
        fp = d / os.path.basename(p)
        fp.write_text(t)
        paths.append(str(fp))
    old_value = run_sh_print_var(paths, "GRUB_CMDLINE_LINUX")
    assert old_value is not None
    eds = edit_grub_files(files, ["intel_iommu=on", "iommu=pt"], ["intel_iommu=off"])
    if not eds:
        return
    changed = {e.path: e.new for e in eds}
    new_files = [(p, changed.get(p, t)) for p, t in files]
    for (_p, t), fp in zip(new_files, paths, strict=True):
        open(fp, "w").write(t)
    got = run_sh_print_var(paths, "GRUB_CMDLINE_LINUX")
    assert got == intended_value(new_files)
    toks = got.split()
    assert toks.count("intel_iommu=on") == 1 and toks.count("iommu=pt") == 1 and "intel_iommu=off" not in toks
    # every other argument is kept, in order
    kept = [t for t in old_value.split() if t not in ("intel_iommu=off", "iommu=soft")]
    it = iter(toks)
    assert all(any(x == k for x in it) for k in kept), (old_value, got)
    # only assignment lines of GRUB_CMDLINE_LINUX changed, nothing else
    for e in eds:
        old_lines, new_lines = e.old.splitlines(), e.new.splitlines()
        for a, b in zip(old_lines, new_lines, strict=False):
            assert a == b or a.startswith("GRUB_CMDLINE_LINUX="), (a, b)
        assert all(x.startswith("GRUB_CMDLINE_LINUX=") for x in new_lines[len(old_lines):])
    # editing twice changes nothing more
    assert edit_grub_files(new_files, ["intel_iommu=on", "iommu=pt"], ["intel_iommu=off"]) == []


def _debian_with_initramfs(tmp_path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """distro-debian-grub with a gzip initramfs that has no vfio-pci (as the distribution built it)."""
    import gzip

    from tests.test_forecast import cpio

    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    with open(os.path.join(root, "boot", "initrd.img-6.1.0-56-amd64"), "wb") as f:
        f.write(gzip.compress(cpio([("usr/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko", b"\x7fELF")])))
    return snap, root


def test_a_fix_cut_short_before_update_initramfs_is_completed_by_a_second_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The reboot lab's scenario on a copy: the files are written, then the power goes before
    update-initramfs. The next `fix` sees a stale initramfs (boot.initramfs_current), plans the
    rebuild, says an earlier fix was cut short, and marks it completed; undo still reverts both."""
    snap, root = _debian_with_initramfs(tmp_path)
    before = tree_digest(root)
    p = gd("fix", "--all", "--json", "--root", root)
    acts = [a["describe"] for a in json.loads(p.stdout)["actions"]]
    cut_at = next(i for i, a in enumerate(acts) if "update-initramfs" in a) - 1
    p = gd("fix", "--all", "--apply", "--yes", "--root", root, env={"GPUDOCTOR_TEST_CRASH_AFTER": str(cut_at)})
    assert p.returncode == 137, (p.stdout, p.stderr)
    p = gd("check", "--snapshot", snap, "--json", "--only", "boot.initramfs_current")
    st = {r["id"]: r for r in json.loads(p.stdout)["results"]}["boot.initramfs_current"]
    assert st["status"] == "fail" and "does not contain vfio-pci.ko" in st["summary"], st
    p = gd("fix", "--all", "--json", "--root", root)
    doc = json.loads(p.stdout)
    assert "cut short" in p.stderr and doc["interrupted_fixes"], p.stderr
    second = [a["describe"] for a in doc["actions"]]
    assert any("update-initramfs" in a for a in second), second
    assert not any(a.startswith(("create", "edit")) for a in second), f"the files were already written: {second}"
    p = gd("fix", "--all", "--apply", "--yes", "--root", root)
    assert p.returncode in (0, 1), (p.stdout, p.stderr)
    states = [d["state"] for d in Journal.list(RootedSystem(root))]
    assert states[0].startswith("cut short, completed by ") and states[1] == "applied", states
    p = gd("fix", "--all", "--json", "--root", root)
    assert "cut short" not in p.stderr
    for _ in range(2):
        u = gd("undo", "--root", root)
        assert u.returncode == 0, (u.stdout, u.stderr)
    assert tree_digest(root) == before


def test_grub_edited_but_not_regenerated_plans_the_regeneration_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """/etc/default/grub edited (here: iommu=pt added by hand), update-grub never run: the
    plan runs update-grub and edits nothing."""
    snap = copy_fixture(tmp_path, "distro-debian-grub")
    root = os.path.join(snap, "root")
    grub = os.path.join(root, "etc", "default", "grub")
    text = open(grub).read().replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="iommu=pt"')
    open(grub, "w").write(text)
    doc = json.loads(gd("fix", "--all", "--json", "--root", root).stdout)
    boot = [a for a in doc["actions"] if "grub" in a["describe"]]
    assert [a["describe"] for a in boot] == ["run update-grub"], [a["describe"] for a in doc["actions"]]
    assert {"cmdline.iommu_enabled", "boot.config_in_effect"} <= set(boot[0]["checks"]), boot


def test_fix_all_lists_every_failure_it_cannot_fix_and_exits_1() -> None:
    """Issue 17: no "Nothing to change automatically." as if all were well; each manual step is shown."""
    p = gd("fix", "--all", "--snapshot", os.path.join(FIX, "dev-machine"))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Nothing to change automatically." not in p.stdout
    assert "5 failing checks that gpudoctor cannot fix here" in p.stdout
    assert "- firmware.iommu_table:" in p.stdout and "intel-iommu,intremap=on" in p.stdout
    assert "- cmdline.iommu_enabled:" in p.stdout and "follows from firmware.iommu_table: fix that first" in p.stdout
    doc = json.loads(gd("fix", "--all", "--snapshot", os.path.join(FIX, "dev-machine"), "--json").stdout)
    assert {m["check"] for m in doc["manual"]} >= {"firmware.iommu_table", "gpu.candidate", "iommu.active"}


def test_iommu_pt_advice_is_planned_under_its_own_check_id() -> None:
    p = gd("fix", "cmdline.iommu_passthrough", "--snapshot", os.path.join(FIX, "seed-bound"))
    assert "answers: cmdline.iommu_passthrough;" in p.stdout and "answers: cmdline.iommu_enabled" not in p.stdout
