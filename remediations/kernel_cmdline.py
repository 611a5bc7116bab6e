"""Kernel command line: edit the place the host's bootloader really reads.

For grub, that is the last assignment of GRUB_CMDLINE_LINUX across
/etc/default/grub and /etc/default/grub.d/*.cfg: only that variable is touched,
keeping the other arguments, the quoting and any comment, never adding a
duplicate. The edit is validated by sourcing the files with sh, then the
configuration is regenerated with the tool the host uses (detected).
"""

from __future__ import annotations

import re

from doctor.bootstrategy import boot_strategy
from doctor.datarecord import record
from doctor.facts import BootConfig, Facts, parse_shell_assignments
from doctor.host import Host
from doctor.plan import NEXT_BOOT, Action, Command, FileEdit

VAR = "GRUB_CMDLINE_LINUX"
_ASSIGN = re.compile(rf"^(\s*(?:export\s+)?{VAR}=)(.*)$")


@record(frozen=True)
class Edited:
    path: str
    old: str
    new: str


def _key(tok: str) -> str:
    return tok.split("=", 1)[0].replace("-", "_")


def edit_tokens(tokens: list[str], add: list[str], remove: list[str]) -> list[str]:
    """Remove exact arguments, then add each one unless an equivalent is present."""
    out = [t for t in tokens if t not in remove]
    for a in add:
        k = _key(a)
        v = a.split("=", 1)[1] if "=" in a else None
        present = False
        for t in out:
            if _key(t) != k:
                continue
            tv = t.split("=", 1)[1] if "=" in t else None
            if tv == v or (v is not None and tv is not None and v in tv.split(",")):
                present = True
        if present:
            continue
        # a different value for the same single-valued key is replaced in place (last one wins in the kernel)
        idx = [i for i, t in enumerate(out) if _key(t) == k]
        if idx and k in ("iommu", "intel_iommu", "amd_iommu", "vfio_pci.ids"):
            out[idx[-1]] = a
        else:
            out.append(a)
    return out


def _split_rhs(rhs: str) -> tuple[str, str, str]:
    """(quote char or '', raw value inside the quotes, rest of the line after the value)."""
    if rhs.startswith('"'):
        i = 1
        while i < len(rhs):
            if rhs[i] == "\\" and i + 1 < len(rhs):
                i += 2
                continue
            if rhs[i] == '"':
                return '"', rhs[1:i], rhs[i + 1 :]
            i += 1
        raise ValueError("unterminated double quote in GRUB_CMDLINE_LINUX")
    if rhs.startswith("'"):
        j = rhs.find("'", 1)
        if j < 0:
            raise ValueError("unterminated single quote in GRUB_CMDLINE_LINUX")
        return "'", rhs[1:j], rhs[j + 1 :]
    m = re.match(r"(\S*)(.*)$", rhs)
    assert m is not None
    return "", m.group(1), m.group(2)


def _edit_line(line: str, add: list[str], remove: list[str]) -> str | None:
    """One assignment line with `remove` taken out and `add` put in; None if unchanged."""
    eol = "\n" if line.endswith("\n") else ""
    m = _ASSIGN.match(line.rstrip("\n"))
    assert m is not None
    prefix, rhs = m.group(1), m.group(2)
    quote, raw, rest = _split_rhs(rhs)
    tokens = raw.split()
    new_tokens = edit_tokens(tokens, add, remove)
    if new_tokens == tokens:
        return None
    # keep the original spacing where we only append
    if tokens and new_tokens[: len(tokens)] == tokens:
        new_raw = raw + ("" if raw.endswith(" ") or not raw else " ") + " ".join(new_tokens[len(tokens) :])
    else:
        new_raw = " ".join(new_tokens)
    q = quote or '"'
    if q == "'" and "'" in new_raw:
        q = '"'
    return f"{prefix}{q}{new_raw}{q}{rest}{eol}"


def edit_grub_files(files: list[tuple[str, str]], add: list[str], remove: list[str]) -> list[Edited]:
    """Edit GRUB_CMDLINE_LINUX across `files` (in grub's order): `remove` is taken out of
    every assignment (a later one may build on an earlier one through
    $GRUB_CMDLINE_LINUX), `add` goes into the last assignment only.

    Returns the files that change (none when nothing needs to). Raises ValueError
    where a value cannot be edited safely (unterminated quotes).
    """
    texts = [t for _, t in files]
    lines_of = [t.splitlines(keepends=True) for t in texts]
    last: tuple[int, int] | None = None
    for fi, lines in enumerate(lines_of):
        for li, line in enumerate(lines):
            if _ASSIGN.match(line.rstrip("\n")):
                last = (fi, li)
                if remove:
                    new = _edit_line(line, [], remove)
                    if new is not None:
                        lines[li] = new
    if last is None:
        if add:
            t = lines_of[0]
            text = "".join(t)
            sep = "" if text.endswith("\n") or not text else "\n"
            lines_of[0] = [text + sep + f'{VAR}="{" ".join(add)}"\n']
    elif add:
        fi, li = last
        new = _edit_line(lines_of[fi][li], add, [])
        if new is not None:
            lines_of[fi][li] = new
    out = []
    for (path, old), lines in zip(files, lines_of, strict=True):
        new_text = "".join(lines)
        if new_text != old:
            out.append(Edited(path, old, new_text))
    return out


def grub_files(host: Host) -> list[tuple[str, str]]:
    out = []
    t = host.read_text_or_none("/etc/default/grub")
    if t is not None:
        out.append(("/etc/default/grub", t))
    try:
        names = sorted(n for n in host.listdir("/etc/default/grub.d") if n.endswith(".cfg"))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for n in names:
        p = f"/etc/default/grub.d/{n}"
        t = host.read_text_or_none(p)
        if t is not None:
            out.append((p, t))
    return out


def intended_value(files: list[tuple[str, str]]) -> str:
    env: dict[str, str] = {}
    for _, t in files:
        env = parse_shell_assignments(t, env)
    return env.get(VAR, "")


def plan_cmdline(facts: Facts, host: Host, add: list[str], remove: list[str], checks: tuple[str, ...],
                 regenerate: bool = False) -> tuple[list[Action], str | None]:
    """Actions that put `add` on and take `remove` off the next boot's command line. With
    `regenerate`, the generated configuration is rebuilt even when no argument changes (a file
    edited but never regenerated, or a regeneration cut short)."""
    try:
        boot: BootConfig = facts.boot_config()
    except Exception as e:  # noqa: BLE001 - FactUnknown, NotCaptured
        return [], f"the bootloader could not be detected ({e}); add {' '.join(add)} by hand"
    strat = boot_strategy(facts)
    reason = ("add " + " ".join(add) if add else "") + (" remove " + " ".join(remove) if remove else "")
    reason = reason.strip() or "the configuration written"
    if strat.cmdline_tool in ("kernelstub", "grubby"):
        what = "(kernelstub)" if strat.cmdline_tool == "kernelstub" else "on every installed kernel (grubby, BLS entries)"
        return [Command(checks, f"{reason} {what}", NEXT_BOOT, boot_path=True, argv=argv, undo_argv=undo)
                for argv, undo in strat.cmdline_argvs(add, remove)], None
    if strat.cmdline_tool == "grub" and strat.regen_argv is not None and strat.grub_cfg is not None:
        files = grub_files(host)
        try:
            eds = edit_grub_files(files, add, remove)
        except ValueError as e:
            return [], f"/etc/default/grub cannot be edited safely: {e}"
        if not eds and not regenerate:
            return [], None
        changed = {e.path: e.new for e in eds}
        after = [(p, changed.get(p, t)) for p, t in files]
        want = intended_value(after)
        order = tuple(p for p, _ in after)
        acts: list[Action] = [FileEdit(checks, f"{reason} in {VAR}", NEXT_BOOT, boot_path=True, path=ed.path, old=ed.old.encode(),
                                       new=ed.new.encode(), shell_check=(order, VAR, want) if ed is eds[-1] else None) for ed in eds]
        cfg = strat.grub_cfg
        acts.append(Command(checks, f"regenerate {cfg} so the next boot uses it", NEXT_BOOT, boot_path=True, argv=strat.regen_argv,
                            undo_argv=strat.regen_argv, expect_in_file=(cfg, tuple(add)), syntax_check=("grub-script-check", cfg)))
        return acts, None
    if strat.cmdline_tool == "systemd-boot":
        old = host.read_text_or_none("/etc/kernel/cmdline") or ""
        toks = old.split()
        new_toks = edit_tokens(toks, add, remove)
        if new_toks == toks and not regenerate:
            return [], None
        new = " ".join(new_toks) + "\n"
        acts = [FileEdit(checks, f"{reason} in /etc/kernel/cmdline", NEXT_BOOT, boot_path=True, path="/etc/kernel/cmdline",
                         old=old.encode() if host.exists("/etc/kernel/cmdline") else None, new=new.encode())] if new_toks != toks else []
        if strat.regen_argv is not None and strat.regen_argv[0] == "kernel-install":
            acts.append(Command(checks, "install the boot entry with the new command line", NEXT_BOOT, boot_path=True,
                                argv=strat.regen_argv, undo_argv=strat.regen_argv))
        return acts, None
    return [], f"bootloader {boot.kind!r} is not supported for automatic edits; add {' '.join(add)} by hand"
