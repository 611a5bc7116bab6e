"""libvirt inside the guest: the error users actually see, from virsh start with managed hostdevs;
then gpudoctor's own `vm create` / `check` / `vm cleanup` against that real libvirtd, and a nested
guest kernel that lists the card on its serial console.

(libvirtd runs in the guest against the guest's kernel; namespaces = [] in qemu.conf.) All tests
here share one intel-partial boot, so libvirt's first QEMU capability probe (~30 s) is paid once.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from lab import CARD, CARD_FUNCTIONS, load_kernel
from lab.nested import direct_kernel, parse_probe, probe_initrd

pytestmark = pytest.mark.lab

V = "virsh -c qemu:///system"
# The lab card's functions as any guest kernel must list them (lab/scenarios.py: CARD_DEVICES).
CARD_IDS = {"0": "1234:1111", "1": "8086:293e", "2": "1b36:000d", "3": "1b36:0002"}
NATIVE = {"0000:01:00.2": "xhci_hcd", "0000:01:00.3": "serial"}  # intel-partial leaves them on the host
CREATE = ["--gpu", CARD, "--virt-type", "qemu", "--firmware", "bios", "--network", "none", "--memory", "256",
          "--vcpus", "1"]  # fmt: skip
VM_CHECKS = ["vm.hostdevs_cover_unit", "vm.machine_q35", "vm.not_wedged", "vm.guest_sees_gpu"]


@pytest.mark.parametrize("guest", ["intel-partial"], indirect=True)
def test_libvirt_managed_hostdev_not_viable_then_whole_card_starts(guest):
    before = guest.drivers()
    group = guest.group_of(CARD)
    guest.start_libvirt()
    try:
        one = guest.libvirt_start_domain("lab-one", [CARD])
        assert one.rc != 0, one
        assert f"vfio {CARD}: group {group} is not viable" in one.stderr, one
        assert (
            "Please ensure all devices within the iommu_group are bound to their vfio bus driver."
            in one.stderr
        )

        whole = guest.libvirt_start_domain("lab-whole", CARD_FUNCTIONS)
        assert whole.rc == 0, whole
        assert "Domain 'lab-whole' started" in whole.stdout, whole
        during = guest.drivers()
        assert all(during[a] == "vfio-pci" for a in CARD_FUNCTIONS), during
    finally:
        guest.libvirt_destroy_domain("lab-whole")
        guest.libvirt_destroy_domain("lab-one")
    # managed='yes': libvirt gives 01:00.2 and 01:00.3 back to their drivers.
    after = guest.drivers()
    if after != before:
        guest.close()  # leave no surprise for later tests of this scenario (the pool reboots)
    assert after == before, (before, after)


def _domains(guest) -> list[str]:
    r = guest.run(f"{V} list --all --name", timeout=60, check=True)
    return [n for n in r.stdout.split() if n]


def _vm_checks(guest, name: str, want_bars: bool = True) -> dict[str, dict]:
    """`gpudoctor check --json --vm NAME --only vm.*` in the guest; asked again (up to 3 times, 5 s apart) only
    while vm.guest_sees_gpu says the firmware has not programmed the BARs yet (a guest just started)."""
    for attempt in range(3):
        r = guest.gpudoctor(["check", "--json", "--no-redact", "--vm", name, "--only", *VM_CHECKS], timeout=180)
        try:
            by_id = {x["id"]: x for x in json.loads(r.stdout)["results"]}
        except (ValueError, KeyError) as e:
            pytest.fail(f"gpudoctor check --json did not print its JSON ({e}):\n{r}", pytrace=False)
        if not want_bars or by_id["vm.guest_sees_gpu"]["status"] != "warn" or attempt == 2:
            return by_id
        time.sleep(5)
    raise AssertionError("unreachable")


def _assert_sees_whole_card(by_id: dict[str, dict], name: str) -> None:
    for cid in ("vm.hostdevs_cover_unit", "vm.machine_q35", "vm.not_wedged", "vm.guest_sees_gpu"):
        assert by_id[cid]["status"] == "pass", json.dumps(by_id[cid], indent=1)
    # query-pci: each of the four functions on the guest's bus with its ids and a programmed BAR
    ev = [e["value"] for e in by_id["vm.guest_sees_gpu"]["evidence"]]
    for fn, ids in CARD_IDS.items():
        line = [v for v in ev if v.startswith(f"{name}: 0000:01:00.{fn} -> guest ")]
        assert len(line) == 1, ev
        assert f"[{ids}]" in line[0] and "BAR" in line[0] and "@0x" in line[0], line


def _cleanup(guest, name: str):
    """`vm cleanup NAME --apply --yes` (asserted by the caller, after its finally: an assertion
    raised here would hide the test's own failure)."""
    return guest.gpudoctor(["vm", "cleanup", name, "--apply", "--yes"], timeout=180, keep_children=True)


def _assert_cleaned(guest, name: str, r) -> None:
    assert r.rc == 0, r
    assert "undefined" in r.stdout and f": {name}" in r.stdout, r
    assert name not in _domains(guest), r


@pytest.mark.parametrize("guest", ["intel-partial"], indirect=True)
def test_vm_create_start_check_cleanup_moves_and_returns_the_host_functions(guest):
    """intel-partial: .0/.1 on vfio-pci, .2/.3 on xhci_hcd/serial. `vm create --start` takes the whole
    card (libvirt moves .2/.3 to vfio-pci), the doctor sees the guest's PCI bus from query-pci, and
    `vm cleanup` leaves no domain and gives .2/.3 back to their drivers, .0/.1 stay on vfio-pci."""
    before = guest.drivers()
    assert {a: before[a] for a in CARD_FUNCTIONS} == {
        "0000:01:00.0": "vfio-pci", "0000:01:00.1": "vfio-pci", **NATIVE}, before  # fmt: skip
    guest.start_libvirt()
    try:
        t0 = time.monotonic()
        r = guest.gpudoctor(["vm", "create", "lab-gd", *CREATE, "--apply", "--yes", "--start"], timeout=240,
                            keep_children=True)
        print(f"[lab] vm create --apply --yes --start: {time.monotonic() - t0:.1f}s")
        assert r.rc == 0, r
        assert "defined lab-gd at qemu:///system" in r.stdout and "started lab-gd (running)" in r.stdout, r
        during = guest.drivers()
        assert all(during[a] == "vfio-pci" for a in CARD_FUNCTIONS), during
        by_id = _vm_checks(guest, "lab-gd")
        _assert_sees_whole_card(by_id, "lab-gd")
    finally:
        t0 = time.monotonic()
        out = _cleanup(guest, "lab-gd")
        print(f"[lab] vm cleanup --apply --yes: {time.monotonic() - t0:.1f}s")
    _assert_cleaned(guest, "lab-gd", out)
    after = guest.drivers()
    assert after == before, (before, after)
    for a, drv in NATIVE.items():
        assert f"{a}: now on {drv}" in out.stdout, out
    assert "0000:01:00.0: now on vfio-pci" in out.stdout, out


@pytest.mark.parametrize("guest", ["intel-partial"], indirect=True)
def test_nested_guest_kernel_lists_the_card_and_cleanup_keeps_vfio(guest):
    """intel-bound's state (all four on vfio-pci, bound the way its setup binds them), in the same boot:
    a domain from `vm create`, turned into a direct-kernel boot of Debian's kernel with a busybox
    initramfs that prints the PCI ids it enumerated on ttyS0 (a file) and powers off. The nested kernel
    (TCG inside TCG) lists the card's four functions in one slot; `vm cleanup` leaves all four on vfio-pci."""
    try:
        guest.bind_vfio(list(NATIVE))
        before = guest.drivers()
        assert all(before[a] == "vfio-pci" for a in CARD_FUNCTIONS), before
        guest.start_libvirt()
        kernel = load_kernel().vmlinuz
        boot, log = "/var/lib/libvirt/boot", "/var/log/libvirt/qemu/lab-nested-serial.log"
        gpath, hpath = guest.share_path("lab-nested-probe.gz")
        hpath.write_bytes(probe_initrd())
        guest.run(f"mkdir -p {boot} && cp -- {kernel} {boot}/vmlinuz && cp -- {gpath} {boot}/probe.gz && rm -f {log}",
                  timeout=120, check=True)
        r = guest.gpudoctor(["vm", "create", "lab-nested", *CREATE, "--apply", "--yes"], timeout=240, keep_children=True)
        assert r.rc == 0, r
        xml = guest.run(f"{V} dumpxml --inactive lab-nested", timeout=60, check=True).stdout
        guest.write_file("/tmp/lab-nested.xml", direct_kernel(xml, f"{boot}/vmlinuz", f"{boot}/probe.gz", log))
        t0 = time.monotonic()
        s = guest.run(f"{V} define /tmp/lab-nested.xml && {V} start lab-nested", timeout=180, keep_children=True)
        assert s.rc == 0, s
        _assert_sees_whole_card(_vm_checks(guest, "lab-nested"), "lab-nested")
        w = guest.run(f"for i in $(seq 480); do grep -q '^LAB-NESTED-PCI-END' {log} 2>/dev/null && break; sleep 1; done; "
                      f"cat {log}", timeout=600)
        up = re.search(r"^LAB-NESTED-PCI-BEGIN \S+ uptime ([\d.]+)", w.stdout, re.M)
        print(f"[lab] nested guest kernel listed its PCI bus {time.monotonic() - t0:.1f}s after start "
              f"(its uptime then: {up.group(1) if up else '?'}s)")
        listed = parse_probe(w.stdout)
        assert listed is not None, f"the nested guest did not finish its PCI listing; serial log:\n{w.stdout[-4000:]}"
        slots = {a.rsplit(".", 1)[0] for a, (ids, _) in listed.items() if ids == CARD_IDS["1"]}
        assert len(slots) == 1, listed
        slot = slots.pop()
        got = {fn: listed.get(f"{slot}.{fn}", ("absent", ""))[0] for fn in CARD_IDS}
        assert got == CARD_IDS, (got, w.stdout)
        st = guest.run(f"for i in $(seq 60); do {V} domstate lab-nested | grep -q 'shut off' && break; sleep 1; done; "
                       f"{V} domstate lab-nested", timeout=120)
        assert "shut off" in st.stdout, st  # /init powered the nested guest off
    finally:
        out = _cleanup(guest, "lab-nested")
        after = guest.drivers()
        listed_domains = _domains(guest)
        guest.close()  # .2/.3 are on vfio-pci now: later intel-partial tests get a fresh boot
    assert out.rc == 0 and "lab-nested" not in listed_domains, (out, listed_domains)
    # managed hostdevs that were on vfio-pci before start stay there
    assert all(after[a] == "vfio-pci" for a in CARD_FUNCTIONS), after
