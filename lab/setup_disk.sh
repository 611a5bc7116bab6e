#!/usr/bin/env bash
# Set up gpudoctor's disk-image lab (tests marked `reboot`) on a Debian/Ubuntu machine.
# Idempotent; run as root (or with sudo):
#   bash lab/setup_disk.sh [--force]
# 1. apt-get installs the host tools: debootstrap, sfdisk (fdisk), mkfs.ext4 (e2fsprogs),
#    mkfs.vfat (dosfstools), QEMU and OVMF (UEFI firmware).
# 2. Builds the Debian 12 BIOS/GRUB image (python3 -m lab.disk build) into
#    $GPUDOCTOR_LAB_CACHE/disk (default ~/.cache/gpudoctor-lab/disk of the user who ran sudo):
#    debootstrap --variant=minbase from the mirror in this machine's apt sources, a partition
#    table written with sfdisk on a plain file, mkfs.ext4 -d (no loop devices, no mounts), then a
#    first boot in QEMU that runs grub-install, update-initramfs (MODULES=dep) and update-grub,
#    and a second boot through GRUB to prove the image boots. Reused when already built.
# 3. Builds the UEFI/systemd-boot image (python3 -m lab.disk build --firmware uefi) the same way:
#    GPT with an EFI System Partition (mkfs.vfat -F 32 -s 1) and the ext4 root; its first boot
#    (OVMF) runs bootctl install --no-variables, update-initramfs and kernel-install add, and a
#    second boot through OVMF and systemd-boot proves it boots.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

PACKAGES=(
  debootstrap       # the image's root filesystem
  fdisk             # sfdisk: the partition table, on a plain file
  e2fsprogs         # mkfs.ext4 -d: fills the partition from a folder
  qemu-system-x86   # boots the image (TCG), SeaBIOS included
  qemu-utils        # qemu-img: per-run qcow2 overlays
  dosfstools        # mkfs.vfat: the UEFI image's EFI System Partition
  ovmf              # UEFI firmware for QEMU (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)
  debian-archive-keyring
  ca-certificates
  python3
)

say() { echo "[lab/setup_disk] $*"; }

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo --preserve-env=GPUDOCTOR_LAB_CACHE,GPUDOCTOR_LAB_MIRROR bash "$0" "$@"; fi
  say "debootstrap needs root and there is no sudo"; exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install -y ${missing[*]}"
  env DEBIAN_FRONTEND=noninteractive apt-get update -q
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "packages already installed: ${PACKAGES[*]}"
fi

# The cache goes where the tests will look for it: the home of sudo's caller unless
# GPUDOCTOR_LAB_CACHE says otherwise. The build runs as root (debootstrap), so hand the cache
# back to that user afterwards.
OWNER=""
if [ -z "${GPUDOCTOR_LAB_CACHE:-}" ] && [ -n "${SUDO_USER:-}" ] && [ "${SUDO_USER}" != root ]; then
  home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
  export GPUDOCTOR_LAB_CACHE="$home/.cache/gpudoctor-lab"
  OWNER="$SUDO_USER"
fi

PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
for fw in bios uefi; do
  say "building the $fw disk image with $PY (first time: a few minutes; cached afterwards)"
  start=$(date +%s)
  (cd "$REPO" && env PYTHONPATH="$REPO" "$PY" -m lab.disk build --firmware "$fw" "$@")
  say "$fw image done in $(( $(date +%s) - start ))s"
done
if [ -n "$OWNER" ]; then
  chown -R "$OWNER": "$GPUDOCTOR_LAB_CACHE/disk" 2>/dev/null || true
fi
say "run the reboot scenarios with: pytest -m reboot tests/lab/test_reboot.py tests/lab/test_reboot_uefi.py -v"
