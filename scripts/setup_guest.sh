#!/usr/bin/env bash
# What the guest-side tests need (tests/test_vm_*.py), idempotent, as root with apt:
#   libvirt-clients + libxml2-utils: virt-xml-validate (it runs xmllint) for the golden domain XML
#   libguestfs-tools + e2fsprogs: guestfish (guest.serial_getty, guest_getty) and mkfs.ext4 -d / debugfs
#     for the test image. The appliance's kernel is the lab's cached Debian kernel (lab/setup.sh fetches
#     it; tests point SUPERMIN_KERNEL/SUPERMIN_MODULES at it): no kernel is installed on this machine.
set -euo pipefail
PACKAGES=(libvirt-clients libxml2-utils libguestfs-tools e2fsprogs)
say() { echo "[setup_guest] $*"; }
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else say "not root and no sudo: cannot apt-get install"; exit 1; fi
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install -y ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "packages already installed: ${PACKAGES[*]}"
fi
# supermin lstat()s /lib/modules while it copies the appliance's modules, even with SUPERMIN_MODULES
# pointing elsewhere: a machine with no kernel installed (a CI container) has none ("lstat: No such file
# or directory: /lib/modules"). An empty folder is all it needs; no kernel is installed here.
[ -d /lib/modules ] || "${SUDO[@]}" mkdir -p /lib/modules
command -v virt-xml-validate >/dev/null && command -v xmllint >/dev/null && command -v guestfish >/dev/null || {
  say "virt-xml-validate, xmllint or guestfish still missing"; exit 1; }
