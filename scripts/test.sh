#!/usr/bin/env bash
# Install everything the tests need and run the whole suite, lab included (used by .ci/run):
#   - Python packages into .venv (scripts/setup.sh); Chromium for the HTML report test
#   - the hostile-input and snapshot tests under the distribution's own /usr/bin/python3 too, in
#     .venv-debian (scripts/test_system_python.sh)
#   - the lab: QEMU, busybox, libvirt and a Debian guest kernel (lab/setup.sh)
#   - the guest side: virt-xml-validate (libvirt-clients, xmllint) and libguestfs's tools
#     (scripts/setup_guest.sh)
#   - openssh-server and openssh-client (apt, as root) for the --hosts proof over real SSH
#   - the disk-image lab: debootstrap and cached Debian 12 BIOS/GRUB and UEFI/systemd-boot images
#     (lab/setup_disk.sh)
# Lab tests never skip: if the lab cannot be set up, this script fails and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
# phase times, printed at the end whatever happens (CI's budget is watched phase by phase)
PHASES=()
T0=$(date +%s)
T=$T0
phase() { local now; now=$(date +%s); PHASES+=("$(printf '%-28s %5ss' "$1" $((now - T)))"); T=$now; }
report() {
  local rc=$?
  phase "${CURRENT:-pytest}"
  echo "== test.sh phase times (exit $rc) =="
  printf '  %s\n' "${PHASES[@]}"
  printf '  %-28s %5ss\n' "total" $(($(date +%s) - T0))
}
trap report EXIT
CURRENT="setup (.venv)"
bash scripts/setup.sh
phase "$CURRENT"; CURRENT="tests under /usr/bin/python3"
bash scripts/test_system_python.sh
phase "$CURRENT"; CURRENT="chromium, sshd"
# a real browser for the HTML report test (JavaScript off): Debian's chromium, as root, once
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test: chromium missing; run as root (apt-get install chromium) so the HTML report test can run" >&2
    exit 1
  fi
fi
# check --hosts proof (tests/test_hosts_ansible.py): a throwaway sshd on 127.0.0.1 and an ssh client;
# ansible-core and lxml come with the `test` extra
if ! command -v ssh >/dev/null || ! [ -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
  else
    echo "test.sh: sshd/ssh missing; run as root or apt-get install openssh-server openssh-client" >&2; exit 1
  fi
fi
phase "$CURRENT"; CURRENT="lab setup (kernel, initrd)"
bash lab/setup.sh
phase "$CURRENT"; CURRENT="guest tools (libguestfs)"
bash scripts/setup_guest.sh
if [ "$#" -gt 0 ]; then
  # a chosen subset: the plain sequence
  phase "$CURRENT"; CURRENT="disk images (cached)"
  bash lab/setup_disk.sh
  phase "$CURRENT"; CURRENT="ruff, mypy"
  .venv/bin/ruff check doctor checks remediations tests lab benchmarks fixtures
  .venv/bin/mypy
  phase "$CURRENT"; CURRENT="pytest (unit, lab, reboot)"
  .venv/bin/python -m pytest -ra --durations=15 "$@"
  exit 0
fi
# The whole suite. The disk images (debootstrap, then TCG boots that run mostly on one core: a
# fresh machine spends ~30 min here) are built in the background while the lint, the unit tests
# and the direct-kernel lab (which need no disk image) run; the reboot tests wait for them.
phase "$CURRENT"; CURRENT="lint + pytest -m 'not reboot' (disk images building beside it)"
DISKLOG="$(mktemp -t gpudoctor-setup-disk.XXXXXX)"
bash lab/setup_disk.sh >"$DISKLOG" 2>&1 &
DISKPID=$!
stop_disk() { kill "$DISKPID" 2>/dev/null || true; }
trap 'rc=$?; stop_disk; (exit $rc); report' EXIT
.venv/bin/ruff check doctor checks remediations tests lab benchmarks fixtures
.venv/bin/mypy
.venv/bin/python -m pytest -ra --durations=15 -m "not reboot"
phase "$CURRENT"; CURRENT="disk images (waiting for the build)"
if ! wait "$DISKPID"; then
  echo "test.sh: building the disk images failed (lab/setup_disk.sh); the last lines of its log ($DISKLOG):" >&2
  tail -n 60 "$DISKLOG" >&2
  exit 1
fi
grep -E "image done in|reusing|already" "$DISKLOG" | sed 's/^/  /' || true
trap report EXIT
phase "$CURRENT"; CURRENT="pytest -m reboot (disk images)"
.venv/bin/python -m pytest -ra --durations=15 -m reboot
