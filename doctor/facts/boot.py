"""The bootloader: /etc/default/grub (and grub.d), grub.cfg, BLS entries, kernelstub, /etc/kernel/cmdline."""

from __future__ import annotations

import re

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.kernel import Cmdline, parse_cmdline
from doctor.facts.read import HostReader, _exists_quiet, fact


@record(frozen=True)
class BootConfig:
    """What the bootloader will give the kernel at the next boot, as configured."""

    kind: str  # grub, systemd-boot, kernelstub, unknown
    cmdline: Cmdline | None  # configured next-boot command line (None: not found)
    files: tuple[str, ...] = ()
    generated: Cmdline | None = None  # from the generated grub.cfg, if readable
    generated_source: str = ""
    tools: tuple[str, ...] = ()  # regeneration tools present on the host
    notes: tuple[str, ...] = ()
    grub_linux: str | None = None  # GRUB_CMDLINE_LINUX alone (the variable a fix edits)
    generated_unknown: str = ""  # why no generated grub.cfg could be read (not captured, not readable); "" if none


_SHELL_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def parse_shell_assignments(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Evaluate simple `VAR=value` lines the way `sh` would for /etc/default/grub.

    Supports quoting, escapes, comments and $VAR / ${VAR} references to earlier
    assignments. Lines that are not plain assignments are ignored. Raises
    ValueError on unbalanced quotes.
    """
    env = dict(env or {})
    for line in text.splitlines():
        m = _SHELL_ASSIGN.match(line)
        if not m:
            continue
        name, rhs = m.group(1), m.group(2)
        env[name] = _shell_value(rhs, env)
    return env


def _shell_value(rhs: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    n = len(rhs)
    while i < n:
        c = rhs[i]
        if c in " \t":
            break  # end of the word; the rest is a command or a comment
        if c == "#" and not out:
            break
        if c == "'":
            j = rhs.find("'", i + 1)
            if j < 0:
                raise ValueError("unterminated single quote")
            out.append(rhs[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            buf: list[str] = []
            while i < n and rhs[i] != '"':
                if rhs[i] == "\\" and i + 1 < n and rhs[i + 1] in '"\\$`\n':
                    buf.append(rhs[i + 1])
                    i += 2
                    continue
                buf.append(rhs[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated double quote")
            i += 1
            out.append(_expand("".join(buf), env, raw=buf))
        elif c == "\\" and i + 1 < n:
            out.append(rhs[i + 1])
            i += 2
        elif c == "$":
            m = _VAR_REF.match(rhs, i)
            if m:
                out.append(env.get(m.group(1) or m.group(2), ""))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _expand(s: str, env: dict[str, str], raw: list[str]) -> str:
    return _VAR_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), s)


_GRUB_LINUX = re.compile(r"^\s*linux(?:efi|16)?\s+(\S+)\s*(.*)$")


def parse_grub_cfg_default_linux(text: str) -> str | None:
    """Arguments of the first `linux` line in a generated grub.cfg (the default entry)."""
    for line in text.splitlines():
        m = _GRUB_LINUX.match(line)
        if m:
            return m.group(2).strip()
    return None


@record(frozen=True)
class BootEntry:
    """A Boot Loader Specification entry (/boot/loader/entries/*.conf)."""

    path: str
    title: str
    version: str
    options: str


def parse_bls_entry(text: str, path: str, env: dict[str, str] | None = None) -> BootEntry:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        k, _, v = s.partition(" ")
        keys.setdefault(k, []).append(v.strip())
    opts = " ".join(keys.get("options", []))
    if env:
        opts = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: (env or {}).get(m.group(1), m.group(0)), opts)
    return BootEntry(path, (keys.get("title") or [""])[0], (keys.get("version") or [""])[0], opts)


def parse_grubenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v
    return out


BLS_DIRS = ("/boot/loader/entries", "/boot/efi/loader/entries", "/efi/loader/entries")


BOOT_TOOLS = (
    "/usr/sbin/update-grub",
    "/usr/sbin/grub-mkconfig",
    "/usr/sbin/grub2-mkconfig",
    "/usr/sbin/grubby",
    "/usr/bin/kernelstub",
    "/usr/bin/bootctl",
    "/usr/bin/kernel-install",
    "/usr/sbin/update-initramfs",
    "/usr/bin/dracut",
    "/usr/sbin/dracut",
    "/usr/bin/mkinitcpio",
)


GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


class BootHostFacts(HostReader):
    @fact
    def boot_config(self) -> BootConfig:
        h = self.host
        tools = tuple(t for t in BOOT_TOOLS if _exists_quiet(h, t))
        notes: list[str] = []
        # systemd-boot / kernel-install: /etc/kernel/cmdline is the source of truth
        name, settle = "bootloader configuration", "cat /etc/default/grub /etc/kernel/cmdline"
        kc = self._text_or_none(name, "/etc/kernel/cmdline", settle)
        # kernelstub (Pop!_OS)
        ks = self._text_or_none(name, "/etc/kernelstub/configuration", "cat /etc/kernelstub/configuration")
        grub_text = self._text_or_none(name, "/etc/default/grub", settle)
        if ks is not None and "/usr/bin/kernelstub" in tools:
            import json

            try:
                conf = json.loads(ks)
                opts = conf.get("user", {}).get("kernel_options", [])
                return BootConfig(
                    "kernelstub",
                    parse_cmdline(" ".join(map(str, opts)), "/etc/kernelstub/configuration"),
                    ("/etc/kernelstub/configuration",),
                    tools=tools,
                )
            except (ValueError, AttributeError):
                notes.append("/etc/kernelstub/configuration is not valid JSON")
        if grub_text is not None:
            files = ["/etc/default/grub"]
            try:
                env = parse_shell_assignments(grub_text)
                for p, t in self._read_dir(name, ("/etc/default/grub.d",), ".cfg", "cat /etc/default/grub.d/*.cfg"):
                    files.append(p)
                    env = parse_shell_assignments(t, env)
            except ValueError as e:
                raise FactUnknown(
                    "bootloader configuration", f"/etc/default/grub does not parse: {e}", "sh -n /etc/default/grub"
                ) from e
            configured = " ".join(
                x for x in (env.get("GRUB_CMDLINE_LINUX", ""), env.get("GRUB_CMDLINE_LINUX_DEFAULT", "")) if x
            )
            generated = None
            gsrc = ""
            unread: list[str] = []
            for cfg in GRUB_CFGS:
                try:
                    cfg_text = h.read_text_or_none(cfg)
                except PermissionError:
                    notes.append(f"{cfg} is not readable")
                    unread.append(f"{cfg} is not readable (permission denied)")
                    continue
                except NotCaptured as e:
                    unread.append(str(e))
                    continue
                if cfg_text is not None:
                    unread = []
                    args = parse_grub_cfg_default_linux(cfg_text)
                    if args is not None:
                        generated = parse_cmdline(args, cfg)
                        gsrc = cfg
                    break
            next_cmdline = parse_cmdline(configured, " + ".join(files))
            if env.get("GRUB_ENABLE_BLSCFG") == "true":
                # BLS hosts (Fedora, RHEL): grub reads each kernel's own entry; grubby edits those
                entry = self._default_bls_entry()
                if entry is not None:
                    next_cmdline = parse_cmdline(entry.options, entry.path)
                    notes.append(f"BLS: the next boot's arguments come from {entry.path}, not from /etc/default/grub")
            return BootConfig(
                "grub",
                next_cmdline,
                tuple(files),
                generated=generated,
                generated_source=gsrc,
                tools=tools,
                notes=tuple(notes),
                grub_linux=env.get("GRUB_CMDLINE_LINUX", ""),
                generated_unknown="; ".join(unread) if gsrc == "" else "",
            )
        if kc is not None:
            return BootConfig("systemd-boot", parse_cmdline(kc, "/etc/kernel/cmdline"), ("/etc/kernel/cmdline",), tools=tools)
        raise FactUnknown(
            "bootloader configuration",
            "no /etc/default/grub, /etc/kernel/cmdline or kernelstub configuration on this host",
            "ls /etc/default/grub /etc/kernel/cmdline /boot/loader/entries",
        )

    @fact
    def boot_entries(self) -> tuple[BootEntry, ...]:
        env: dict[str, str] = {}
        for p in ("/boot/grub2/grubenv", "/boot/grub/grubenv"):
            try:
                t = self.host.read_text_or_none(p)
            except (PermissionError, NotCaptured):
                t = None
            if t is not None:
                env = parse_grubenv(t)
                break
        out: list[BootEntry] = []
        for d in BLS_DIRS:
            try:
                names = self.host.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (PermissionError, NotCaptured) as e:
                raise FactUnknown("boot loader entries", str(e), f"sudo ls {d}") from e
            for n in names:
                if n.endswith(".conf"):
                    t = self._text_or_none("boot loader entries", f"{d}/{n}", f"sudo cat {d}/{n}")
                    if t is not None:
                        out.append(parse_bls_entry(t, f"{d}/{n}", env))
        return tuple(out)

    def _default_bls_entry(self) -> BootEntry | None:
        """The entry of the running kernel, else the newest one; None where there is none."""
        try:
            entries = self.boot_entries()
            rel = self.kernel_release()
        except (FactUnknown, NotCaptured):
            return None
        if not entries:
            return None
        for e in entries:
            if e.version == rel or e.path.endswith(f"-{rel}.conf"):
                return e
        return sorted(entries, key=lambda e: e.version)[-1]

