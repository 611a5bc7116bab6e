#!/usr/bin/env bash
# Set up gpudoctor's lab on a Debian/Ubuntu machine. Idempotent; run as root (or with sudo):
#   bash lab/setup.sh
# 1. apt-get installs what the lab needs on the host (and, through the shared root, in the guest).
# 2. Downloads the distribution kernel package with `apt-get download` and unpacks it with
#    `dpkg -x` into the lab cache ($GPUDOCTOR_LAB_CACHE or ~/.cache/gpudoctor-lab of the user
#    who ran sudo). The kernel is never installed on this machine.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

PACKAGES=(
  qemu-system-x86   # the lab VM, and QEMU inside the guest (vfio-pci attempts)
  ovmf              # UEFI firmware for the scenarios with firmware="ovmf" (efifb in the card's BAR)
  busybox-static    # the guest's first stage (initramfs)
  kmod              # modinfo/depmod for the guest's module tree, lsmod inside
  pciutils          # lspci inside the guest
  util-linux        # setpriv (dropping CAP_SYSLOG in intel-dmesg-restricted), mount tools
  xz-utils zstd     # compressed kernel modules (.ko.xz / .ko.zst)
  python3           # the lab itself (stdlib only) and the agent inside the guest
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients  # libvirtd/virsh, run inside the guest
  ca-certificates
)

say() { echo "[lab/setup] $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
    say "not root and no sudo: cannot apt-get install"; exit 1; fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
say "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install -y ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "packages already installed: ${PACKAGES[*]}"
fi

PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"

# Fetch the kernel as the user who will run the tests (sudo's caller), so the cache lands in
# their home unless GPUDOCTOR_LAB_CACHE says otherwise.
AS_USER=()
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "${SUDO_USER}" != root ]; then
  AS_USER=(sudo -u "$SUDO_USER" --preserve-env=GPUDOCTOR_LAB_CACHE,GPUDOCTOR_LAB_KERNEL_PKG)
fi
say "caching the guest kernel (apt-get download + dpkg -x, not installed) with $PY"
(cd "$REPO" && "${AS_USER[@]}" env PYTHONPATH="$REPO" "$PY" -m lab fetch-kernel)
say "building the initramfs"
(cd "$REPO" && "${AS_USER[@]}" env PYTHONPATH="$REPO" "$PY" -m lab build-initrd)
say "scenarios:"
(cd "$REPO" && env PYTHONPATH="$REPO" "$PY" -m lab list | sed 's/^/  /')
say "done. Try: python -m lab boot intel-partial -- lspci -nnk -s 01:"
