"""How this host boots, decided once: which tool puts an argument on the next boot's kernel
command line, which regenerates the bootloader's configuration, which rebuilds the initramfs.

One object yields both the argv a fix runs and the steps a check prints (`sudo` + the same
argv), so the two cannot drift. Detected from the host (boot_config, early_load,
kernel_release), never assumed.
"""

from __future__ import annotations

import shlex

from doctor.datarecord import record
from doctor.facts import BootConfig, Facts
from doctor.passthrough import try_fact

# what goes into the initramfs / is loaded at boot for vfio-pci to bind early (remediations.early_load
# writes exactly these; vfio.early_load prints the same)
EARLY_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")
DRACUT_CONF = "/etc/dracut.conf.d/10-gpudoctor-vfio.conf"
MODULES_LOAD = "/etc/modules-load.d/vfio-pci.conf"
INITRAMFS_TOOLS_MODULES = "/etc/initramfs-tools/modules"
MKINITCPIO_CONF = "/etc/mkinitcpio.conf"


def dracut_conf_line() -> str:
    return f'force_drivers+=" {" ".join(EARLY_MODULES)} "'


def sudo(argv: tuple[str, ...]) -> str:
    return "sudo " + shlex.join(argv)


@record(frozen=True)
class BootStrategy:
    # grub (edit /etc/default/grub + regenerate), grubby, kernelstub, systemd-boot (/etc/kernel/cmdline
    # + kernel-install), unknown
    cmdline_tool: str
    regen_argv: tuple[str, ...] | None  # what makes an edited configuration take effect (None: nothing / unknown)
    grub_cfg: str | None  # the generated grub.cfg the regeneration writes
    initramfs_tool: str  # initramfs-tools, dracut, mkinitcpio, unknown
    initramfs_argv: tuple[str, ...] | None
    boot: BootConfig | None

    # --- argv (what a fix runs)

    def cmdline_argvs(self, add: list[str], remove: list[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """(argv, undo argv) for tools that edit the command line themselves (grubby, kernelstub)."""
        out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        if self.cmdline_tool == "kernelstub":
            out += [(("kernelstub", "-a", a), ("kernelstub", "-d", a)) for a in add]
            out += [(("kernelstub", "-d", r), ("kernelstub", "-a", r)) for r in remove]
        elif self.cmdline_tool == "grubby":
            if add:
                out.append((("grubby", "--update-kernel=ALL", f"--args={' '.join(add)}"),
                            ("grubby", "--update-kernel=ALL", f"--remove-args={' '.join(add)}")))
            if remove:
                out.append((("grubby", "--update-kernel=ALL", f"--remove-args={' '.join(remove)}"),
                            ("grubby", "--update-kernel=ALL", f"--args={' '.join(remove)}")))
        return out

    # --- steps (what a check prints): the same argv, with sudo

    def regen_steps(self) -> list[str]:
        if self.regen_argv is not None:
            return [sudo(self.regen_argv)]
        if self.cmdline_tool in ("grubby", "kernelstub"):
            return []
        if self.cmdline_tool == "systemd-boot":  # kernel-install, the running kernel's release unknown
            return ['sudo kernel-install add "$(uname -r)" "/boot/vmlinuz-$(uname -r)"']
        return ["# regenerate your bootloader configuration (bootloader not detected)"]

    def initramfs_step(self) -> str:
        if self.initramfs_argv is None:
            return "# rebuild your initramfs (initramfs tool not detected)"
        return sudo(self.initramfs_argv)

    def early_load_steps(self) -> list[str]:
        """Put vfio-pci (and what it needs) in the initramfs and load it at every boot: the files
        remediations.early_load writes, as commands, then the rebuild."""
        mods = " ".join(EARLY_MODULES)
        steps: list[str] = []
        if self.initramfs_tool == "initramfs-tools":
            steps.append(f"printf '%s\\n' {mods} | sudo tee -a {INITRAMFS_TOOLS_MODULES}")
        elif self.initramfs_tool == "dracut":
            steps.append(f"echo '{dracut_conf_line()}' | sudo tee {DRACUT_CONF}")
        elif self.initramfs_tool == "mkinitcpio":
            steps.append(f"edit {MKINITCPIO_CONF}: put {mods} first in MODULES=()")
        steps.append(f"echo vfio_pci | sudo tee -a {MODULES_LOAD}")
        steps.append(self.initramfs_step())
        return steps

    def cmdline_edit_steps(self, add: list[str], remove: list[str]) -> list[str]:
        """Exact steps to put `add` on (and take `remove` off) the next boot's command line."""
        steps: list[str] = []
        boot = self.boot
        if self.cmdline_tool in ("grubby", "kernelstub"):
            steps += [sudo(argv) for argv, _ in self.cmdline_argvs(add, remove)]
        elif self.cmdline_tool == "grub" and boot is not None:
            cur = boot.grub_linux if boot.grub_linux is not None else (boot.cmdline.raw if boot.cmdline else "")
            gone = {r.split("=", 1)[0] for r in remove}
            kept = [t for t in cur.split() if t not in remove and t.split("=", 1)[0] not in gone]
            new = " ".join(kept + [a for a in add if a not in kept])
            steps.append(f'edit /etc/default/grub: GRUB_CMDLINE_LINUX="{new}"' if cur else
                         f'edit /etc/default/grub: GRUB_CMDLINE_LINUX="{" ".join(add)}"')
            steps += self.regen_steps()
        elif self.cmdline_tool == "systemd-boot":
            what = [f"add {' '.join(add)}"] if add else []
            what += [f"remove {' '.join(remove)}"] if remove else []
            if what:
                steps.append(f"edit /etc/kernel/cmdline: {', '.join(what)}")
            steps += self.regen_steps()
        else:
            edit = ("add " + " ".join(add) + " to your bootloader's kernel command line" + (f" and remove {' '.join(remove)}" if remove else "")
                    if add else f"remove {' '.join(remove)} from your bootloader's kernel command line")
            steps.append(edit + " (no /etc/default/grub, /etc/kernel/cmdline or kernelstub found)")
        steps.append("sudo reboot")
        return steps


def _kernel_image(facts: Facts, rel: str) -> str:
    """Debian keeps the image in /boot, Fedora and Arch under /usr/lib/modules/<release>."""
    host = getattr(facts, "host", None)
    boot_img, lib_img = f"/boot/vmlinuz-{rel}", f"/usr/lib/modules/{rel}/vmlinuz"
    if host is not None and try_fact(lambda: host.exists(boot_img)) is False and try_fact(lambda: host.exists(lib_img)):
        return lib_img
    return boot_img


def boot_strategy(facts: Facts) -> BootStrategy:
    boot: BootConfig | None = try_fact(facts.boot_config)
    el = try_fact(facts.early_load)
    rel: str | None = try_fact(facts.kernel_release)
    itool = el.initramfs_tool if el is not None else "unknown"
    iargv: tuple[str, ...] | None = {
        "initramfs-tools": ("update-initramfs", "-u") + (("-k", rel) if rel else ()),
        "dracut": ("dracut", "-f") + (("--kver", rel) if rel else ()),
        "mkinitcpio": ("mkinitcpio", "-P"),
    }.get(itool)
    if boot is None:
        return BootStrategy("unknown", None, None, itool, iargv, None)
    tools = boot.tools
    if boot.kind == "kernelstub":
        return BootStrategy("kernelstub", None, None, itool, iargv, boot)
    if boot.kind == "systemd-boot":
        if "/usr/bin/kernel-install" in tools and rel:
            regen: tuple[str, ...] | None = ("kernel-install", "add", rel, _kernel_image(facts, rel))
        elif "/usr/bin/kernel-install" in tools:
            regen = None
        else:
            regen = ("bootctl", "update")
        return BootStrategy("systemd-boot", regen, None, itool, iargv, boot)
    if boot.kind == "grub":
        if "/usr/sbin/grubby" in tools and "/usr/sbin/update-grub" not in tools:
            return BootStrategy("grubby", None, None, itool, iargv, boot)
        if "/usr/sbin/update-grub" in tools:
            return BootStrategy("grub", ("update-grub",), "/boot/grub/grub.cfg", itool, iargv, boot)
        if "/usr/sbin/grub2-mkconfig" in tools:
            return BootStrategy("grub", ("grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"), "/boot/grub2/grub.cfg", itool, iargv, boot)
        return BootStrategy("grub", ("grub-mkconfig", "-o", "/boot/grub/grub.cfg"), "/boot/grub/grub.cfg", itool, iargv, boot)
    return BootStrategy(boot.kind, None, None, itool, iargv, boot)
