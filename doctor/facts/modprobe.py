"""Module configuration: modprobe.d, modules-load.d and initramfs module lists, boot-time driver_override."""

from __future__ import annotations

import re

from doctor.datarecord import field, record
from doctor.facts.read import HostReader, fact


@record(frozen=True)
class ModprobeLine:
    file: str
    lineno: int
    text: str
    command: str  # options, softdep, blacklist, install, alias, remove
    module: str
    rest: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


@record(frozen=True)
class ConfigLine:
    file: str
    lineno: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


@record(frozen=True)
class EarlyLoadConfig:
    modules_load: tuple[ConfigLine, ...]  # modules-load.d and /etc/modules entries
    initramfs: tuple[ConfigLine, ...]  # initramfs-tools / dracut / mkinitcpio mentions
    initramfs_tool: str  # initramfs-tools, dracut, mkinitcpio, unknown


@record(frozen=True)
class BootOverride:
    """A PCI device that configuration hands to vfio-pci by address at boot (driver_override
    written by an initramfs script, a udev rule or a modprobe install command): the per-device
    way, which leaves an identical device with the host."""

    address: str
    file: str
    lineno: int
    kind: str  # "initramfs" (runs before udev loads any driver), "udev", "modprobe"
    text: str = field(default="", compare=False, repr=False)  # the whole file, to compare with the initramfs' copy

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


# Where boot-time driver_override writes live. initramfs-tools runs scripts/init-top before
# udev starts, so an override set there wins over every modular driver.
OVERRIDE_SCRIPT_DIRS = ("/etc/initramfs-tools/scripts/init-top", "/etc/initramfs-tools/scripts/init-premount")


UDEV_RULE_DIRS = ("/etc/udev/rules.d",)


_PCI_ADDR = re.compile(r"\b(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\b")


def parse_boot_overrides(text: str, path: str, kind: str) -> list[BootOverride]:
    """Devices a boot-time file sends to vfio-pci through driver_override. A file counts when
    it writes `vfio-pci` into a `driver_override`; every PCI address it names is then taken
    (scripts loop over a list: `for d in 0000:01:00.0 ...`). Commented lines are ignored."""
    live = [(n, ln.split("#", 1)[0] if kind != "udev" else (ln if not ln.lstrip().startswith("#") else ""))
            for n, ln in enumerate(text.splitlines(), 1)]
    body = "\n".join(ln for _, ln in live)
    if "driver_override" not in body or not re.search(r"vfio[-_]pci", body):
        return []
    out: dict[str, BootOverride] = {}
    for n, ln in live:
        for m in _PCI_ADDR.finditer(ln):
            addr = f"{(m.group(1) or '0000').lower()}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"
            out.setdefault(addr, BootOverride(addr, path, n, kind, text))
    return list(out.values())


def parse_modprobe(text: str, file: str) -> list[ModprobeLine]:
    out: list[ModprobeLine] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i]
        # modprobe.d allows a trailing backslash to continue a line
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(None, 2)
        cmd = parts[0]
        if cmd not in ("options", "softdep", "blacklist", "install", "alias", "remove") or len(parts) < 2:
            continue
        module = parts[1]
        rest = parts[2] if len(parts) > 2 else ""
        out.append(ModprobeLine(file, lineno, s, cmd, module.replace("-", "_"), rest))
    return out


def parse_module_list(text: str, file: str) -> list[ConfigLine]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s and not s.startswith(";"):
            out.append(ConfigLine(file, n, s))
    return out


MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")


MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d", "/usr/local/lib/modules-load.d", "/usr/lib/modules-load.d", "/lib/modules-load.d")


MODPROBE_SETTLE = "grep -rs . " + " ".join(MODPROBE_DIRS)
EARLY_LOAD_SETTLE = "cat /etc/modules-load.d/*.conf /etc/modules /etc/initramfs-tools/modules"
OVERRIDES_SETTLE = "grep -rl driver_override /etc/initramfs-tools/scripts /etc/udev/rules.d /etc/modprobe.d"


class ModprobeHostFacts(HostReader):
    """modprobe.d, modules-load.d and initramfs module lists, boot-time driver_override.

    Each of these facts is one answer built from several folders: a folder that does not exist
    adds nothing, but one that was not captured or cannot be read makes the whole fact unknown
    (a line in a file we could not see may be the one the check looks for)."""

    @fact
    def modprobe_config(self) -> tuple[ModprobeLine, ...]:
        out: list[ModprobeLine] = []
        for path, text in self._read_dir("modprobe configuration", MODPROBE_DIRS, ".conf", MODPROBE_SETTLE):
            out.extend(parse_modprobe(text, path))
        return tuple(out)

    @fact
    def early_load(self) -> EarlyLoadConfig:
        name, settle = "early module loading configuration", EARLY_LOAD_SETTLE
        ml: list[ConfigLine] = []
        for path, text in self._read_dir(name, MODULES_LOAD_DIRS, ".conf", settle):
            ml.extend(parse_module_list(text, path))
        t = self._text_or_none(name, "/etc/modules", settle)
        if t is not None:
            ml.extend(parse_module_list(t, "/etc/modules"))
        init: list[ConfigLine] = []
        tool = "unknown"
        t = self._text_or_none(name, "/etc/initramfs-tools/modules", settle)
        if t is not None or self._exists(name, "/usr/sbin/update-initramfs", "ls -l /usr/sbin/update-initramfs"):
            tool = "initramfs-tools"
            init.extend(parse_module_list(t or "", "/etc/initramfs-tools/modules"))
        dracut_settle = "cat /etc/dracut.conf /etc/dracut.conf.d/*.conf /usr/lib/dracut/dracut.conf.d/*.conf"
        dracut_files: list[tuple[str, str | None]] = [
            ("/etc/dracut.conf", self._text_or_none(name, "/etc/dracut.conf", dracut_settle))
        ]
        dracut_files += self._read_dir(name, ("/etc/dracut.conf.d", "/usr/lib/dracut/dracut.conf.d"), ".conf", dracut_settle)
        if any(t is not None for _, t in dracut_files) and tool == "unknown":
            tool = "dracut"
        for p, t in dracut_files:
            for n, line in enumerate((t or "").splitlines(), 1):
                s = line.split("#", 1)[0].strip()
                if re.match(r"^(add_drivers|force_drivers|drivers)\s*\+?=", s):
                    init.append(ConfigLine(p, n, s))
        mk_settle = "cat /etc/mkinitcpio.conf /etc/mkinitcpio.conf.d/*.conf"
        mk = self._text_or_none(name, "/etc/mkinitcpio.conf", mk_settle)
        mk_files = ([("/etc/mkinitcpio.conf", mk)] if mk is not None else []) + self._read_dir(
            name, ("/etc/mkinitcpio.conf.d",), ".conf", mk_settle
        )
        if mk_files and tool == "unknown":
            tool = "mkinitcpio"
        for p, t in mk_files:
            for n, line in enumerate(t.splitlines(), 1):
                s = line.split("#", 1)[0].strip()
                if s.startswith("MODULES="):
                    init.append(ConfigLine(p, n, s))
        return EarlyLoadConfig(tuple(ml), tuple(init), tool)

    @fact
    def boot_overrides(self) -> tuple[BootOverride, ...]:
        name = "boot-time driver_override configuration"
        out: list[BootOverride] = []
        for d in OVERRIDE_SCRIPT_DIRS:
            for n in self._listdir(name, d, OVERRIDES_SETTLE):
                try:
                    t = self._text_or_none(name, f"{d}/{n}", OVERRIDES_SETTLE)
                except (IsADirectoryError, UnicodeDecodeError):
                    continue  # a folder or a binary: no driver_override line
                if t is not None:
                    out += parse_boot_overrides(t, f"{d}/{n}", "initramfs")
        for path, text in self._read_dir(name, UDEV_RULE_DIRS, ".rules", OVERRIDES_SETTLE):
            out += parse_boot_overrides(text, path, "udev")
        # modprobe `install vfio-pci /path/script` (the Arch wiki's way) or an inline sh -c
        for ln in self.modprobe_config():
            if ln.command != "install":
                continue
            out += [BootOverride(o.address, ln.file, ln.lineno, "modprobe") for o in parse_boot_overrides(ln.rest, ln.file, "modprobe")]
            for tok in ln.rest.split():
                if tok.startswith("/") and not tok.startswith(("/sbin/modprobe", "/usr/sbin/modprobe", "/bin/", "/usr/bin/")):
                    # a script a snapshot does not record: read where it can be, not a reason for unknown
                    t = self._text_or_skip(tok)
                    if t is not None:
                        out += parse_boot_overrides(t, tok, "modprobe")
        return tuple(out)
