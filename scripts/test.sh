#!/usr/bin/env bash
# Install everything the tests need and run the whole suite, lab included (used by .ci/run):
#   - Python packages into .venv (scripts/setup.sh)
#   - the lab: QEMU, busybox, libvirt and a Debian guest kernel (lab/setup.sh)
#   - openssh-server and openssh-client (apt, as root) for the --hosts proof over real SSH
#   - the disk-image lab: debootstrap and cached Debian 12 BIOS/GRUB and UEFI/systemd-boot images
#     (lab/setup_disk.sh)
# Lab tests never skip: if the lab cannot be set up, this script fails and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# check --hosts proof (tests/test_hosts_ansible.py): a throwaway sshd on 127.0.0.1 and an ssh client;
# ansible-core and lxml come with the `test` extra
if ! command -v ssh >/dev/null || ! [ -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
  else
    echo "test.sh: sshd/ssh missing; run as root or apt-get install openssh-server openssh-client" >&2; exit 1
  fi
fi
bash lab/setup.sh
bash lab/setup_disk.sh
.venv/bin/ruff check doctor checks remediations tests lab benchmarks fixtures
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
