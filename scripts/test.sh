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
  local rc=${1:-$?}
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
# The whole suite, on both cores. The disk images (debootstrap, then TCG boots that mostly run on one
# core: a fresh machine spent ~30 min on them first) are built in the background, and the reboot tests
# (which need them, ~17 min) run there as soon as they are built, while the lint, the unit tests and the
# direct-kernel lab (which need no disk image, ~27 min) run here. Their log is printed when both are done.
phase "$CURRENT"; CURRENT="lint + pytest -m 'not reboot' (disk images, then -m reboot, beside it)"
BGLOG="$(mktemp -t gpudoctor-reboot-lab.XXXXXX)"
(
  set -e
  start=$(date +%s)
  bash lab/setup_disk.sh
  echo "== disk images ready after $(( $(date +%s) - start ))s; pytest -m reboot starts =="
  .venv/bin/python -m pytest -ra --durations=15 -m reboot
  echo "== disk images + pytest -m reboot: $(( $(date +%s) - start ))s =="
) >"$BGLOG" 2>&1 &
BGPID=$!
stop_bg() { pkill -P "$BGPID" 2>/dev/null || true; kill "$BGPID" 2>/dev/null || true; }
# on a failure in front: stop the background job, show its log so far, then the phase times. (The trap
# used to run `(exit $rc)` under set -e, which ended the trap there: a failed run printed no phase times.)
on_exit() {
  local rc=$?
  if kill -0 "$BGPID" 2>/dev/null; then
    stop_bg
    echo "== the background job (disk images, pytest -m reboot) was stopped; its log so far: =="
    cat "$BGLOG" || true
  fi
  report "$rc"
}
trap on_exit EXIT
.venv/bin/ruff check doctor checks remediations tests lab benchmarks fixtures
.venv/bin/mypy
.venv/bin/python -m pytest -ra --durations=15 -m "not reboot"
phase "$CURRENT"; CURRENT="waiting for the disk images and pytest -m reboot"
bgrc=0
wait "$BGPID" || bgrc=$?
trap report EXIT
echo "== the background job: disk images (lab/setup_disk.sh) and pytest -m reboot (exit $bgrc) =="
cat "$BGLOG"
if [ "$bgrc" -ne 0 ]; then
  echo "test.sh: the disk images or the reboot tests failed (see above)" >&2
  exit "$bgrc"
fi
