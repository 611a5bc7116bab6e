"""Disk-image scenarios: a real Debian 12 install booted through a real bootloader and initramfs.

Unlike the direct-kernel lab (lab/vm.py: ``-kernel`` + a busybox initramfs + the host's userland
over 9p), these guests boot a cached disk image: SeaBIOS -> GRUB (on the disk's MBR) -> the
image's own kernel and initramfs-tools initramfs -> systemd. Fixes that need a reboot are proven
across a real reboot. See lab/disk_README.md.

A second image boots the UEFI way: OVMF (through pflash) -> systemd-boot (on a FAT32 EFI System
Partition at /boot/efi, GPT) -> the loader entry kernel-install wrote from /etc/kernel/cmdline ->
the same kernel, initramfs-tools initramfs and systemd (``Machine(..., firmware="uefi")``).

Images (built once, cached): ``python -m lab.disk build [--firmware uefi]`` (or ``sudo bash
lab/setup_disk.sh``, which builds both)::

    <cache>/disk/debs/                 debootstrap --cache-dir (the .debs, reused on rebuilds)
    <cache>/disk/bios-<key>.raw        the base image: MBR, one ext4 partition, GRUB installed
    <cache>/disk/bios-<key>.json       what was built and how long each step took
    <cache>/disk/uefi-<key>.raw/.json  GPT, the ESP (vda1) and the ext4 root (vda2), systemd-boot
    <cache>/disk/prep/<name>-<key>.qcow2  a scenario's prepared first state (overlay on the base)

Each run works on its own ``qemu-img create -f qcow2 -b ... -F ...`` overlay in a temporary
folder, so the cached images are never written after they are built.

One boot is one QEMU process (``-no-reboot``): the guest's ``systemctl reboot`` ends the process
and the host starts the next boot from the same disk, with a fresh job. Every boot has its own
deadlines (boot to the runner, the job, the shutdown); QEMU is always killed on the way out.

The runner in the image (lab/disk_runner.py, run by a oneshot systemd unit, ``gpudoctor-lab.service``) mounts the 9p share
``labshare`` at each boot, runs ``job.json`` step by step (each step with its own timeout),
writes each step's output and a ``truth.json`` of ground truth read in the guest (/proc/cmdline,
driver links, IOMMU groups, the kernel log, file hashes) back to the share, then powers off or
reboots as the job says. It writes markers on the serial console (``GPUDOCTOR-LAB ...``) that the
host uses for timings and hang detection. The checkout under test is shared read-only as
``gpsrc`` and run with ``PYTHONPATH`` (python3, python3-rich, python3-packaging and
python3-pytest come from Debian).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import disk_runner
from .cache import cache_dir
from .errors import LabBootError, LabBootStalled, LabError, LabGuestDied, LabGuestHung, LabSetupError
from .proc import BOOT_STALL, BOOT_STALLS, StallWatch, kill_group, start_qemu

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SETUP_HINT = ("run `sudo bash lab/setup_disk.sh` (installs debootstrap/fdisk/dosfstools/qemu/ovmf and builds the "
              "BIOS and UEFI disk images)")

SUITE = "bookworm"
PACKAGES = [
    "linux-image-amd64", "systemd-sysv", "udev", "kmod", "pciutils", "zstd", "initramfs-tools",
    "grub-pc", "python3", "python3-rich", "python3-packaging", "python3-pytest",
]  # fmt: skip
IMAGE_SIZE = 3 * 1024**3  # sparse
PART_START = 1024 * 1024  # bytes (sector 2048)
BUILDER_VERSION = "5"  # bump when the image recipe changes (part of the cache key)
FIRMWARES = ("bios", "uefi")

# The UEFI image: GPT, an EFI System Partition (FAT32, mounted at /boot/efi) and the ext4 root,
# systemd-boot instead of GRUB. kernel-install writes the loader entry from /etc/kernel/cmdline.
UEFI_PACKAGES = ["systemd-boot" if p == "grub-pc" else p for p in PACKAGES]  # pulls systemd-boot-efi
UEFI_VERSION = "1"  # bump when the UEFI recipe changes (part of its cache key only)
ESP_SIZE = 256 * 1024**2
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# /etc/kernel/cmdline of the UEFI image (root= is filled in): what GRUB_CMDLINE_LINUX_DEFAULT
# gives the BIOS image, plus the root file system, which systemd-boot does not add by itself.
KERNEL_CMDLINE = "root=UUID={root} ro console=ttyS0,115200 quiet no_timer_check"
OVMF_CODE = Path(os.environ.get("GPUDOCTOR_LAB_OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd"))
OVMF_VARS = Path(os.environ.get("GPUDOCTOR_LAB_OVMF_VARS", "/usr/share/OVMF/OVMF_VARS_4M.fd"))

# The guest runner's own constants: the host reads its console markers and fills its share.
MARK = disk_runner.MARK
GUEST_SHARE = disk_runner.SHARE
GUEST_SRC = disk_runner.SRC

# Files a fix may touch on the BIOS image: after undo + reboot they must be byte-identical.
FIX_FILES = [
    "/etc/default/grub",
    "/boot/grub/grub.cfg",
    "/etc/modprobe.d/vfio.conf",
    "/etc/initramfs-tools/modules",
    "/etc/modules-load.d/vfio-pci.conf",
    "/etc/initramfs-tools/scripts/init-top/gpudoctor-vfio-override",
]
# Files whose bytes the scenarios compare across boots (sha256 in truth.json).
TRACKED_FILES = [*FIX_FILES, "/etc/initramfs-tools/initramfs.conf", "/etc/fstab"]

# The card for disk scenarios: three functions with *modular* drivers (bochs-drm, snd_hda_intel,
# xhci_pci), so vfio-pci can take all of them from the initramfs. The direct-kernel lab's 4th
# function, pci-serial, is driven by 8250_pci, built into Debian's kernel: it binds before any
# module loads and neither ids= nor a softdep can move it at boot.
DISK_CARD = "0000:01:00.0"
DISK_CARD_FUNCTIONS = ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"]
DISK_CARD_DEVICES = [
    "-device", "pcie-root-port,id=rp1,chassis=1,slot=1",
    "-device", "VGA,bus=rp1,addr=00.0,multifunction=on",
    "-device", "ich9-intel-hda,bus=rp1,addr=00.1",
    "-device", "qemu-xhci,bus=rp1,addr=00.2",
]  # fmt: skip
INTEL_PLATFORM = ["-cpu", "qemu64,vendor=GenuineIntel,-svm", "-device", "intel-iommu,intremap=on,caching-mode=on"]
AMD_PLATFORM = ["-cpu", "qemu64,vendor=AuthenticAMD,+svm", "-device", "amd-iommu,intremap=on"]


def _log(msg: str) -> None:
    print(f"[lab/disk] {msg}", file=sys.stderr, flush=True)


def disk_cache(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "disk"


# --------------------------------------------------------------------------- the image recipe


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources first, then sources.list)."""
    env = os.environ.get("GPUDOCTOR_LAB_MIRROR")
    if env:
        return env
    cands: list[Path] = [Path("/etc/apt/sources.list.d/debian.sources")]
    cands += sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) if Path("/etc/apt/sources.list.d").is_dir() else []
    for p in cands:
        try:
            text = p.read_text()
        except OSError:
            continue
        for para in re.split(r"\n\s*\n", text):
            if re.search(r"^Types:.*\bdeb\b", para, re.M) and re.search(r"^Suites:.*\b" + SUITE + r"\b", para, re.M):
                m = re.search(r"^URIs:\s*(\S+)", para, re.M)
                if m and "security" not in m.group(1):
                    return m.group(1)
    try:
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    except OSError:
        pass
    return "http://deb.debian.org/debian"


GRUB_DEFAULT = """\
# written by gpudoctor's lab (lab/disk.py)
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0,115200 quiet no_timer_check"
GRUB_CMDLINE_LINUX=""
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""

UNIT = """\
[Unit]
Description=gpudoctor lab job runner (9p share labshare)
After=local-fs.target systemd-modules-load.service systemd-udevd.service systemd-udev-trigger.service
Wants=systemd-udev-trigger.service
ConditionKernelCommandLine=!gpudoctor_lab.off

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 -u /usr/local/sbin/gpudoctor-lab-runner
StandardOutput=journal
StandardError=journal
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

RUNNER = HERE / "disk_runner.py"  # copied verbatim into the image: /usr/local/sbin/gpudoctor-lab-runner


def runner_text() -> str:
    """The runner's bytes as installed in the image (part of its cache key)."""
    return RUNNER.read_text()


def packages(firmware: str = "bios") -> list[str]:
    return UEFI_PACKAGES if firmware == "uefi" else PACKAGES


def image_key(firmware: str = "bios") -> str:
    if firmware not in FIRMWARES:
        raise LabSetupError(f"unknown firmware {firmware!r} (one of {', '.join(FIRMWARES)})")
    h = hashlib.sha256()
    parts: tuple[str, ...] = (BUILDER_VERSION, firmware, SUITE, " ".join(PACKAGES), GRUB_DEFAULT, UNIT, runner_text())
    if firmware == "uefi":  # the BIOS tuple above stays as it was: its images keep their key
        parts = (BUILDER_VERSION, UEFI_VERSION, firmware, SUITE, " ".join(UEFI_PACKAGES), KERNEL_CMDLINE,
                 str(ESP_SIZE), UNIT, runner_text())
    for part in parts:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:12]


@dataclass
class BaseImage:
    path: Path
    meta: dict

    @property
    def key(self) -> str:
        return self.meta["key"]


def _run(argv: list[str], what: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace", **kw)
    if r.returncode != 0:
        raise LabSetupError(
            f"{what} failed (rc={r.returncode}, {time.monotonic() - t0:.0f}s): {shlex.join(argv)}\n"
            f"--- stdout tail:\n{r.stdout[-3000:]}\n--- stderr tail:\n{r.stderr[-3000:]}"
        )
    return r


def _need_tools(firmware: str = "bios") -> None:
    tools = ["debootstrap", "sfdisk", "mkfs.ext4", "qemu-img", "qemu-system-x86_64"]
    if firmware == "uefi":
        tools.append("mkfs.vfat")
    missing = [t for t in tools if not shutil.which(t)]
    if firmware == "uefi":
        missing += [str(p) for p in (OVMF_CODE, OVMF_VARS) if not p.exists()]
    if missing:
        raise LabSetupError(f"missing tools: {' '.join(missing)}; {SETUP_HINT}")
    if os.geteuid() != 0:
        raise LabSetupError(f"building the disk image needs root (debootstrap); {SETUP_HINT}")


def load_image(cache: Path | None = None, firmware: str = "bios") -> BaseImage:
    d = disk_cache(cache)
    key = image_key(firmware)
    path = d / f"{firmware}-{key}.raw"
    meta = d / f"{firmware}-{key}.json"
    if not path.exists() or not meta.exists():
        others = sorted(p.name for p in d.glob(f"{firmware}-*.raw")) if d.is_dir() else []
        raise LabSetupError(
            f"no {firmware} disk image for recipe {key} in {d}"
            + (f" (older recipes there: {', '.join(others)})" if others else "")
            + f"; {SETUP_HINT}"
        )
    return BaseImage(path, json.loads(meta.read_text()))


def build_image(cache: Path | None = None, force: bool = False, firmware: str = "bios") -> BaseImage:
    """Build (or reuse) the cached base image: ``bios`` (MBR, GRUB) or ``uefi`` (GPT, an EFI System
    Partition, systemd-boot). Needs root and Debian's archive."""
    if not force:
        try:
            img = load_image(cache, firmware)
            _log(f"disk image already cached: {img.path}")
            return img
        except LabSetupError:
            pass
    _need_tools(firmware)
    d = disk_cache(cache)
    d.mkdir(parents=True, exist_ok=True)
    (d / "debs").mkdir(exist_ok=True)
    key = image_key(firmware)
    pkgs = packages(firmware)
    times: dict[str, float] = {}
    extra: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix=f"build-{firmware}-", dir=d))
    try:
        # The debootstrapped tree is kept (rootfs-<key>/) until an image is built from it, so a
        # failure in a later step does not cost another debootstrap.
        rootfs = d / f"rootfs-{key}"
        ok = d / f"rootfs-{key}.ok"
        mirror = apt_mirror()
        t0 = time.monotonic()
        if ok.exists() and rootfs.is_dir():
            _log(f"reusing the debootstrapped tree {rootfs}")
        else:
            shutil.rmtree(rootfs, ignore_errors=True)
            _log(f"debootstrap --variant=minbase {SUITE} from {mirror} (~2-4 min; ~125 MB of .debs the first time)")
            _run(["debootstrap", "--variant=minbase", f"--cache-dir={d / 'debs'}", f"--include={','.join(pkgs)}",
                  SUITE, str(rootfs), mirror], "debootstrap", env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            ok.write_text(mirror + "\n")
            times["debootstrap"] = time.monotonic() - t0
            _log(f"  debootstrap done in {times['debootstrap']:.0f}s")

        t0 = time.monotonic()
        fs_uuid = str(uuid.uuid4())
        esp_id = uuid.uuid4().hex[:8].upper()  # the FAT volume id: UUID=XXXX-XXXX
        esp_uuid = f"{esp_id[:4]}-{esp_id[4:]}"
        _configure_rootfs(rootfs, fs_uuid, firmware)
        if firmware == "uefi":
            _configure_uefi(rootfs, fs_uuid, esp_uuid)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise LabSetupError(f"no kernel/initrd in {rootfs}/boot after debootstrap: {os.listdir(rootfs / 'boot')}")
        kver = kernels[-1].name[len("vmlinuz-"):]
        machine_id = (rootfs / "etc/machine-id").read_text().strip()
        shutil.copy2(kernels[-1], work / "vmlinuz")
        shutil.copy2(initrds[-1], work / "initrd.img")
        raw = work / "image.raw"
        with open(raw, "wb") as f:
            f.truncate(IMAGE_SIZE)
        if firmware == "uefi":
            root_start, root_bytes = _partition_uefi(raw, work, esp_id)
        else:
            _run(["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)], "sfdisk",
                 input=f"label: dos\nstart={PART_START // 512}, type=83, bootable\n")
            root_start, root_bytes = PART_START, IMAGE_SIZE - PART_START
        _run(["mkfs.ext4", "-F", "-q", "-L", "gpudoctor-root", "-U", fs_uuid, "-d", str(rootfs),
              "-E", f"offset={root_start}", str(raw), f"{root_bytes // 1024}k"], "mkfs.ext4 -d")
        times["mkfs"] = time.monotonic() - t0
        _log(f"  partition + mkfs done in {times['mkfs']:.0f}s (kernel {kver})")

        # First boot with the image's own kernel and initrd: install the bootloader, build the
        # MODULES=dep initramfs, write the boot entry (grub.cfg / the loader entry). Then a second
        # boot through the firmware and the bootloader proves the disk boots on its own.
        t0 = time.monotonic()
        m = Machine(raw, name=f"build-{firmware}", platform=INTEL_PLATFORM, devices=DISK_CARD_DEVICES, overlay=False,
                    firmware=firmware,
                    kernel=(work / "vmlinuz", work / "initrd.img",
                            f"root=UUID={fs_uuid} ro console=ttyS0,115200 no_timer_check gpudoctor_lab.firstboot"))
        try:
            if firmware == "uefi":
                first = [
                    Step("bootctl-install", "bootctl install --no-variables", timeout=300),
                    # its post-update hook (/etc/initramfs/post-update.d/systemd-boot) runs
                    # kernel-install too, once bootctl is installed
                    Step("update-initramfs", "update-initramfs -u -k all", timeout=900),
                    Step("kernel-install", f"kernel-install add {kver} /boot/vmlinuz-{kver} /boot/initrd.img-{kver}",
                         timeout=300),
                    Step("entries", "bootctl list --no-pager; ls -l /boot/efi/loader/entries; "
                                    "cat /boot/efi/loader/entries/*.conf", timeout=60),
                ]
            else:
                first = [
                    Step("update-initramfs", "update-initramfs -u -k all", timeout=900),
                    Step("grub-install", "grub-install --target=i386-pc /dev/vda", timeout=300),
                    Step("update-grub", "update-grub", timeout=300),
                ]
            b = m.boot(first, then="poweroff", boot_timeout=300, truth=False)
            b.check()
            times["first_boot"] = time.monotonic() - t0
            _log(f"  first boot ({', '.join(s.name for s in first)}) done in {times['first_boot']:.0f}s: "
                 + ", ".join(f"{s.name} {s.duration:.0f}s" for s in b.steps))
            if firmware == "uefi":
                _log("  loader entries:\n" + b.step("entries").stdout)
            m.kernel = None
            t0 = time.monotonic()
            if firmware == "uefi":
                # systemd-boot sets LoaderInfo (a volatile EFI variable) even with --no-variables
                b = m.boot([Step("bootloader", "cat /sys/firmware/efi/efivars/LoaderInfo-* | tr -d '\\000'; echo; "
                                               "ls /boot/efi/loader/entries")], then="poweroff", boot_timeout=300)
                b.check()
                info = b.step("bootloader").stdout
                if "systemd-boot" not in info:
                    raise LabSetupError(f"the second boot did not come through systemd-boot: {info!r}; "
                                        f"/proc/cmdline {b.truth.get('cmdline')!r}")
                entries = [ln.strip() for ln in info.splitlines() if ln.strip().endswith(".conf")]
                if len(entries) != 1:
                    raise LabSetupError(f"expected one loader entry in /boot/efi/loader/entries, found {entries}")
                extra = {"machine_id": machine_id, "esp_uuid": esp_uuid, "loader_entry": f"/boot/efi/loader/entries/{entries[0]}"}
                times["uefi_boot"] = time.monotonic() - t0
                _log(f"  boot through OVMF and systemd-boot ok in {times['uefi_boot']:.0f}s (runner up after "
                     f"{b.ready_s:.1f}s): {b.truth.get('cmdline')}")
            else:
                b = m.boot([Step("true", "true")], then="poweroff", boot_timeout=300)
                b.check()
                times["grub_boot"] = time.monotonic() - t0
                _log(f"  boot through GRUB ok in {times['grub_boot']:.0f}s (runner up after {b.ready_s:.1f}s): "
                     f"{b.truth.get('cmdline')}")
        finally:
            m.close()
        final = d / f"{firmware}-{key}.raw"
        raw.rename(final)
        used = final.stat().st_blocks * 512
        meta = {"key": key, "firmware": firmware, "suite": SUITE, "mirror": mirror, "kver": kver, "fs_uuid": fs_uuid,
                "packages": pkgs, **extra, "times": times,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "used_bytes": used}
        (d / f"{firmware}-{key}.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(rootfs, ignore_errors=True)
        ok.unlink(missing_ok=True)
        for old in d.glob(f"{firmware}-*.raw"):
            if old != final:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
        _log(f"image {final} built: {used / 1e6:.0f} MB used; times {json.dumps({k: round(v) for k, v in times.items()})}")
        return BaseImage(final, meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _partition_uefi(raw: Path, work: Path, esp_id: str) -> tuple[int, int]:
    """GPT: the EFI System Partition at 1 MiB (FAT32, made as a file and copied in), the root
    partition after it up to the end. Returns the root partition's (offset, size) in bytes."""
    esp_sectors = ESP_SIZE // 512
    root_first = (PART_START + ESP_SIZE) // 512
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)], "sfdisk (gpt)",
         input=(f"label: gpt\nstart={PART_START // 512}, size={esp_sectors}, type={ESP_TYPE}, name=\"EFI System\"\n"
                f"start={root_first}, type={LINUX_TYPE}, name=root\n"))
    table = json.loads(_run(["sfdisk", "--json", str(raw)], "sfdisk --json").stdout)["partitiontable"]
    esp, root = table["partitions"]
    if esp["start"] * 512 != PART_START or esp["size"] != esp_sectors:
        raise LabSetupError(f"unexpected ESP in the partition table: {esp}")
    # One sector per cluster: with mkfs.vfat's default cluster size OVMF does not see the file system.
    esp_img = work / "esp.img"
    with open(esp_img, "wb") as f:
        f.truncate(ESP_SIZE)
    _run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", "-i", esp_id, str(esp_img)], "mkfs.vfat")
    with open(esp_img, "rb") as src, open(raw, "r+b") as dst:  # dd conv=notrunc, keeping holes
        pos = 0
        while chunk := src.read(1 << 20):
            if chunk.strip(b"\0"):
                dst.seek(PART_START + pos)
                dst.write(chunk)
            pos += len(chunk)
    esp_img.unlink()
    return root["start"] * 512, root["size"] * 512


def _configure_uefi(root: Path, fs_uuid: str, esp_uuid: str) -> None:
    """The UEFI image's differences: the ESP in fstab at /boot/efi and /etc/kernel/cmdline."""
    with open(root / "etc/fstab", "a") as f:
        f.write(f"UUID={esp_uuid} /boot/efi vfat umask=0077 0 0\n")
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    (root / "etc/kernel").mkdir(parents=True, exist_ok=True)
    (root / "etc/kernel/cmdline").write_text(KERNEL_CMDLINE.format(root=fs_uuid) + "\n")


def _configure_rootfs(root: Path, fs_uuid: str, firmware: str = "bios") -> None:
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("gpudoctor-lab\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 gpudoctor-lab\n")
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")  # no systemd-firstboot prompts
    if firmware == "bios":
        (root / "etc/default/grub").write_text(GRUB_DEFAULT)
    conf = root / "etc/initramfs-tools/initramfs.conf"
    conf.write_text(re.sub(r"^MODULES=.*$", "MODULES=dep", conf.read_text(), flags=re.M))
    sb = root / "usr/local/sbin/gpudoctor-lab-runner"
    sb.write_text(runner_text())
    sb.chmod(0o755)
    (root / "etc/systemd/system/gpudoctor-lab.service").write_text(UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "gpudoctor-lab.service"
    if not link.exists():
        link.symlink_to("/etc/systemd/system/gpudoctor-lab.service")
    # root without a password on the serial console (debugging by hand with GPUDOCTOR_LAB_KEEP)
    shadow = root / "etc/shadow"
    shadow.write_text(re.sub(r"^root:[^:]*:", "root::", shadow.read_text(), flags=re.M))
    # Nothing in the guest may wait for a network or a timer.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        for w in (root / "etc/systemd/system/timers.target.wants").glob(unit):
            w.unlink()
    (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


# --------------------------------------------------------------------------- booting


_live: weakref.WeakSet[Machine] = weakref.WeakSet()


def _kill_all() -> None:
    for m in list(_live):
        m.close()


atexit.register(_kill_all)


@dataclass
class Step:
    name: str
    sh: str
    timeout: float = 300
    stop_on_error: bool = True


@dataclass
class StepResult:
    name: str
    sh: str
    rc: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    ran: bool = True

    def json(self) -> dict | list:
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise LabError(f"step {self.name}: stdout is not JSON ({e}):\n{self}") from None

    def __str__(self) -> str:
        return (f"$ {self.sh}\n[rc={self.rc}{' TIMED OUT' if self.timed_out else ''} {self.duration:.1f}s]\n"
                f"--- stdout\n{self.stdout[-6000:]}--- stderr\n{self.stderr[-4000:]}")


@dataclass
class BootResult:
    machine: str
    index: int
    steps: list[StepResult]
    truth: dict
    truth_after: dict
    ready_s: float  # QEMU start -> runner's READY marker (boot to a usable command)
    total_s: float  # QEMU start -> QEMU exit
    console: str
    markers: list[tuple[float, str]] = field(default_factory=list)
    killed: bool = False  # QEMU was SIGKILLed by the host mid-job (Machine.boot's kill_on)

    def step(self, name: str) -> StepResult:
        for s in self.steps:
            if s.name == name:
                return s
        raise LabError(f"boot {self.index} of {self.machine}: no step {name!r}")

    def at(self, marker: str) -> float:
        """Seconds from QEMU's start to the first console marker starting with *marker*
        (e.g. "STEP 1 START", "STEP 0 END", "DONE"); the power-off is ``total_s``."""
        for t, line in self.markers:
            if line.startswith(f"{MARK} {marker}"):
                return t
        raise LabError(f"boot {self.index} of {self.machine}: no marker {marker!r} on the console")

    def check(self) -> BootResult:
        bad = [s for s in self.steps if s.rc != 0 or s.timed_out or not s.ran]
        if bad:
            raise LabError(f"boot {self.index} of {self.machine}: step {bad[0].name} failed:\n{bad[0]}\n"
                           f"--- console tail:\n{_tail_text(self.console)}")
        return self

    def summary(self) -> str:
        return (f"boot {self.index}: runner up {self.ready_s:.1f}s, total {self.total_s:.1f}s{' (KILLED)' if self.killed else ''}; "
                + ", ".join(f"{s.name} {s.duration:.1f}s rc={s.rc}" for s in self.steps))


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text[-20000:].splitlines()[-lines:])


def qemu_binary() -> str:
    return os.environ.get("GPUDOCTOR_LAB_QEMU", "qemu-system-x86_64")


class Machine:
    """A disk that boots again and again: ``m.boot(steps)`` is one power cycle (one QEMU process)."""

    def __init__(
        self,
        backing: Path,
        *,
        name: str,
        platform: list[str] = INTEL_PLATFORM,
        devices: list[str] = DISK_CARD_DEVICES,
        overlay: bool = True,
        backing_format: str = "raw",
        kernel: tuple[Path, Path, str] | None = None,
        memory: int = 1536,
        smp: int = 2,
        cache: str = "unsafe",
        firmware: str = "bios",
    ) -> None:
        if firmware not in FIRMWARES:
            raise LabError(f"unknown firmware {firmware!r} (one of {', '.join(FIRMWARES)})")
        self.name = name
        # "unsafe" (flushes ignored) is fast; a scenario that kills QEMU mid-write needs the
        # guest's flushes honoured ("writeback"), or it tests a disk that lies, not a power cut.
        self.cache = cache
        self.firmware = firmware
        self.platform = platform
        self.devices = devices
        self.kernel = kernel
        self.memory = memory
        self.smp = smp
        self.workdir = Path(tempfile.mkdtemp(prefix=f"gpudoctor-disk-{name}-"))
        self.share = self.workdir / "share"
        (self.share / "results").mkdir(parents=True)
        self.proc: subprocess.Popen | None = None
        self.boots: list[BootResult] = []
        self._closed = False
        self.efivars: Path | None = None
        if firmware == "uefi":
            # OVMF through pflash: the code read-only, this machine's own NVRAM (kept across its boots)
            missing = [str(p) for p in (OVMF_CODE, OVMF_VARS) if not p.exists()]
            if missing:
                shutil.rmtree(self.workdir, ignore_errors=True)
                raise LabSetupError(f"no OVMF firmware ({', '.join(missing)}); {SETUP_HINT}")
            self.efivars = self.workdir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, self.efivars)
        if overlay:
            self.disk = self.workdir / "disk.qcow2"
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", backing_format, str(self.disk)],
                 "qemu-img create overlay")
            self.disk_format = "qcow2"
        else:
            self.disk = backing
            self.disk_format = backing_format
        _live.add(self)

    def qemu_command(self, index: int) -> list[str]:
        cmd = [
            qemu_binary(),
            "-machine", "q35,kernel-irqchip=split",
            "-accel", "tcg",
            "-m", str(self.memory),
            "-smp", str(self.smp),
            "-display", "none",
            "-vga", "none",  # else q35 adds a VGA with the card's id (ids= would grab it too)
            "-nic", "none",
            "-no-reboot",  # a guest reboot ends this process; the next boot is a new one
            "-monitor", "none",
            "-serial", f"file:{self.workdir / f'console-{index}.log'}",
            "-drive", f"file={self.disk},format={self.disk_format},if=virtio,cache={self.cache}",
            *self.platform,
            *self.devices,
            "-virtfs", f"local,path={self.share},mount_tag=labshare,security_model=none,multidevs=remap",
            "-virtfs", f"local,path={REPO_ROOT},mount_tag=gpsrc,security_model=none,readonly=on,multidevs=remap",
        ]  # fmt: skip
        if self.efivars is not None:
            cmd += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,file={self.efivars}"]
        if self.kernel:
            k, i, append = self.kernel
            cmd += ["-kernel", str(k), "-initrd", str(i), "-append", append]
        return cmd

    def _kill(self) -> None:
        kill_group(self.proc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._kill()
        _live.discard(self)
        if os.environ.get("GPUDOCTOR_LAB_KEEP"):
            _log(f"{self.name}: keeping {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save_disk(self, dest: Path) -> None:
        """Copy the current overlay (powered off) to *dest* (a cached prepared state)."""
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(self.disk, tmp)
        tmp.rename(dest)

    def boot(self, steps: list[Step], stall: float | None = None, **kw: Any) -> BootResult:
        """Power on, wait for the runner, run *steps*, wait for the guest to power off/reboot
        (keywords: _boot's).

        A boot whose console stays silent for *stall* seconds (BOOT_STALL) before the runner starts
        (a TCG guest stopped in the kernel's init; no step has run) is killed, as a power cut, and
        booted once more with no stall limit; the second boot's failure is the one raised."""
        try:
            return self._boot(steps, stall=BOOT_STALL if stall is None else stall, **kw)
        except LabBootStalled as e:
            BOOT_STALLS.append(f"{self.name} boot {len(self.boots) + 1}: {e.summary}; booted again")
            _log(f"{self.name}: {e.summary}; booting it again")
            return self._boot(steps, stall=None, **kw)

    def _boot(
        self,
        steps: list[Step],
        *,
        then: str = "poweroff",
        boot_timeout: float = 240,
        shutdown_timeout: float = 120,
        truth: bool = True,
        truth_after: bool = False,
        files: list[str] = TRACKED_FILES,
        env: dict[str, str] | None = None,
        kill_on: str | None = None,
        kill_after: float = 0.0,
        stall: float | None = None,
    ) -> BootResult:
        """With *kill_on*, QEMU is SIGKILLed (a power cut) *kill_after* seconds after a console
        marker line containing it appears (a step writes ``GPUDOCTOR-LAB <kill_on>`` to
        /dev/ttyS0 when the moment comes); the result then has ``killed`` set and only the
        steps that had finished. *stall*: LabBootStalled when the console, once it printed,
        stays silent that long before the runner is ready."""
        if self._closed:
            raise LabError(f"{self.name}: machine closed")
        index = len(self.boots) + 1
        job = {"boot": index, "steps": [s.__dict__ for s in steps], "then": then, "files": files,
               "truth_before": truth, "truth_after": truth_after, "env": env or {}}
        tmp = self.share / ".job.tmp"
        tmp.write_text(json.dumps(job))
        tmp.rename(self.share / "job.json")
        console = self.workdir / f"console-{index}.log"
        cmd = self.qemu_command(index)
        (self.workdir / f"qemu-{index}.cmd").write_text(shlex.join(cmd) + "\n")
        t0 = time.monotonic()
        self.proc = start_qemu(cmd, self.workdir / f"qemu-{index}.log")
        markers: list[tuple[float, str]] = []
        seen = 0  # bytes of the console log already parsed (whole lines only)
        watch = StallWatch(stall, t0)  # before the runner is up only
        ready_at: float | None = None
        done_at: float | None = None
        kill_at: float | None = None
        killed = False
        step_deadline_total = sum(s.timeout for s in steps) + 90 + (120 if truth else 0) + (60 if truth_after else 0)
        out = self.share / "results" / str(index)

        def con() -> str:
            try:
                return console.read_bytes().decode("utf-8", "replace")
            except OSError:
                return ""

        def fail(exc: type[LabError], why: str) -> LabError:
            self._kill()
            return exc(f"{self.name} boot {index}: {why}\n--- console tail:\n{_tail_text(con())}\n"
                       f"--- qemu: {(self.workdir / f'qemu-{index}.log').read_text(errors='replace')[-1500:]}")

        try:
            while True:
                now = time.monotonic()
                rc = self.proc.poll()  # before reading, so the last lines are parsed after an exit
                try:
                    with open(console, "rb") as f:
                        f.seek(seen)
                        chunk = f.read()
                except OSError:
                    chunk = b""
                end = chunk.rfind(b"\n")
                if end >= 0:
                    seen += end + 1
                    for raw in chunk[: end + 1].split(b"\n"):
                        line = raw.decode("utf-8", "replace").strip()
                        if not line.startswith(MARK + " "):
                            continue
                        markers.append((now - t0, line))
                        if " READY " in line and ready_at is None:
                            ready_at = now
                        if line.startswith(MARK + " DONE") and done_at is None:
                            done_at = now
                        if "NOSHARE" in line or "NOJOB" in line or "RUNNER-ERROR" in line:
                            raise fail(LabBootError, f"runner said: {line}")
                        if kill_on and kill_at is None and kill_on in line:
                            kill_at = now + kill_after
                if rc is not None:
                    break
                if ready_at is None and watch.stalled(seen + len(chunk), now):
                    self._kill()
                    raise watch.error(f"{self.name} boot {index}", now, " before the runner started",
                                      (_tail_text(con()).splitlines() or [""])[-1].strip())
                if kill_at is not None and now >= kill_at:
                    self._kill()
                    killed = True
                    markers.append((time.monotonic() - t0, f"{MARK} KILLED by the host ({kill_on} + {kill_after:.0f}s)"))
                    break
                if ready_at is None and now - t0 > boot_timeout:
                    raise fail(LabBootError, f"the guest did not reach the lab runner within {boot_timeout:.0f}s "
                                             "(unbootable or hung; QEMU killed)")
                if ready_at is not None and done_at is None and now - ready_at > step_deadline_total:
                    raise fail(LabGuestHung, f"the job did not finish within {step_deadline_total:.0f}s of the runner "
                                             "starting (QEMU killed)")
                if done_at is not None and now - done_at > shutdown_timeout:
                    raise fail(LabGuestHung, f"the guest did not {then} within {shutdown_timeout:.0f}s of the job's end")
                time.sleep(0.1)
        except BaseException:
            self._kill()
            raise
        total = time.monotonic() - t0
        text = con()
        if ready_at is None or not ((out / "done.json").exists() or killed):
            raise LabGuestDied(f"{self.name} boot {index}: QEMU exited (rc={rc}) before the job was done\n"
                               f"--- console tail:\n{_tail_text(text)}")
        results: list[StepResult] = []
        for i, s in enumerate(steps):
            meta_p = out / f"{i}.json"
            if not meta_p.exists():
                results.append(StepResult(s.name, s.sh, None, "", "", 0.0, ran=False))
                continue
            meta = json.loads(meta_p.read_text())
            results.append(StepResult(
                s.name, s.sh, meta.get("rc"),
                (out / f"{i}.out").read_text(errors="replace"),
                (out / f"{i}.err").read_text(errors="replace") + (f"\n[runner] {meta['error']}" if meta.get("error") else ""),
                meta.get("duration", 0.0), bool(meta.get("timed_out")),
            ))
        def _j(p: Path) -> dict:
            return json.loads(p.read_text()) if p.exists() else {}
        b = BootResult(self.name, index, results, _j(out / "truth.json"), _j(out / "truth_after.json"),
                       ready_at - t0, total, text, markers, killed)
        self.boots.append(b)
        _log(f"{self.name}: {b.summary()}")
        return b


# --------------------------------------------------------------------------- ground truth helpers


def vfio_before_root(dmesg: str) -> tuple[bool, str]:
    """Whether the kernel log shows vfio-pci taking ids before the root filesystem was mounted
    (i.e. from the initramfs). Returns (answer, the two lines that decided it)."""
    lines = dmesg.splitlines()
    vfio = next((i for i, ln in enumerate(lines) if re.search(r"vfio_pci: add \[|vfio-pci 0000:", ln)), None)
    # vda1 on the BIOS image, vda2 on the UEFI one (the ESP is vda1)
    root = next((i for i, ln in enumerate(lines) if re.search(r"EXT4-fs \(vda\d+\): mounted filesystem", ln)), None)
    why = f"vfio: {lines[vfio] if vfio is not None else '(none)'} | root: {lines[root] if root is not None else '(none)'}"
    return (vfio is not None and root is not None and vfio < root), why


def signal_when_running(comm: str, marker: str) -> str:
    """A shell prefix for a step: in the background, wait until a process named *comm* runs,
    then write ``GPUDOCTOR-LAB <marker>`` on the console (for Machine.boot's kill_on)."""
    return (f"( while ! grep -qx {shlex.quote(comm)} /proc/[0-9]*/comm 2>/dev/null; do sleep 0.2; done; "
            f"printf '\n{MARK} {marker}\n' > /dev/ttyS0 ) & ")


def gpudoctor_sh(args: str) -> str:
    """Shell for running the checkout's gpudoctor in the guest (shared read-only over 9p)."""
    return f"python3 -c 'import sys; from doctor.cli import main; sys.exit(main())' {args}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lab.disk", description="gpudoctor's disk-image lab")
    sub = ap.add_subparsers(dest="action", required=True)
    bp = sub.add_parser("build", help="build (or reuse) the cached image (bios: GRUB; uefi: systemd-boot)")
    bp.add_argument("--force", action="store_true")
    bp.add_argument("--firmware", choices=FIRMWARES, default="bios")
    pa = sub.add_parser("path", help="print the cached image's path")
    pa.add_argument("--firmware", choices=FIRMWARES, default="bios")
    r = sub.add_parser("boot", help="boot the image once (overlay), run CMD (after --), print the output")
    r.add_argument("--firmware", choices=FIRMWARES, default="bios")
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("--append-grub", default="", help="GRUB_CMDLINE_LINUX for a first prepare boot")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    a = ap.parse_args(argv)
    try:
        if a.action == "build":
            t0 = time.monotonic()
            img = build_image(force=a.force, firmware=a.firmware)
            print(img.path)
            _log(f"total {time.monotonic() - t0:.0f}s")
            return 0
        if a.action == "path":
            print(load_image(firmware=a.firmware).path)
            return 0
        img = load_image(firmware=a.firmware)
        with Machine(img.path, name="adhoc", firmware=a.firmware) as m:
            b = m.boot([Step("cmd", shlex.join(cmd) if len(cmd) > 1 else (cmd[0] if cmd else "true"), a.timeout)])
            s = b.steps[0]
            sys.stdout.write(s.stdout)
            sys.stderr.write(s.stderr)
            print(f"[lab/disk] {b.summary()}", file=sys.stderr)
            print(f"[lab/disk] cmdline: {b.truth.get('cmdline')}", file=sys.stderr)
            return s.rc or 0
    except LabError as e:
        print(f"lab.disk: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
