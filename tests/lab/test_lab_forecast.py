"""Forecasts against real kernels: the doctor's verdict first, then what the kernel or QEMU does.

Each test boots its own guest (the scenarios are in lab/scenarios_forecast.py), runs the
forecast check in it, then performs the step the check forecast about and compares.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import Lab, LabError  # noqa: E402
from lab.scenarios import CARD_FUNCTIONS  # noqa: E402
from lab.scenarios_forecast import DISK_ADDR, FORECAST_SCENARIOS, disk_in_group  # noqa: E402

pytestmark = pytest.mark.lab

CARD = "0000:01:00.0"
HOST_DISPLAY = "0000:00:01.0"
RUN = "import sys; from doctor.cli import main; sys.exit(main(sys.argv[1:]))"


def forecast(guest, check_id: str, extra: tuple[str, ...] = ()) -> dict:  # type: ignore[no-untyped-def]
    """Run one forecast check in the guest; its JSON result."""
    return forecasts(guest, [check_id], extra)[check_id]


def forecasts(guest, check_ids: list[str], extra: tuple[str, ...] = ()) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Run forecast checks in the guest with one doctor run; their JSON results by id."""
    r = guest.run([sys.executable, "-c", RUN, "check", "--json", "--gpu", CARD, "--no-redact", "--only", *check_ids, *extra],
                  timeout=180, cwd=str(REPO))
    try:
        rep = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"no JSON from the doctor:\n{r}", pytrace=False)
    res = {x["id"]: x for x in rep["results"] if x["id"] in check_ids}
    assert set(res) == set(check_ids), rep
    return res


def boot(scenario):  # type: ignore[no-untyped-def]
    try:
        return Lab.boot(scenario, timeout=240)
    except LabError as e:
        pytest.fail(f"{type(e).__name__}: {e}\n(if the lab is not set up: sudo bash lab/setup.sh)", pytrace=False)


def test_no_interrupt_remapping_forecast_then_qemu_refuses_the_group(lab_ready) -> None:  # type: ignore[no-untyped-def]
    with boot(FORECAST_SCENARIOS["intel-no-intremap"]) as g:
        v = forecast(g, "iommu.interrupt_remapping")
        assert v["status"] == "fail", v
        assert "Failed to set iommu for container" in " ".join(v["messages"])
        q = g.try_qemu_vfio(timeout=150)
        log = g.run("dmesg", timeout=30).stdout
        print(f"doctor: {v['status']}: {v['summary']}\nqemu rc={q.rc}: {q.output.strip()[-400:]}")
        assert q.rc != 0
        assert "Failed to set iommu for container: Operation not permitted" in q.output
        assert "No interrupt remapping support" in log


def test_with_interrupt_remapping_forecast_pass_then_qemu_gets_past_vfio(lab_ready) -> None:  # type: ignore[no-untyped-def]
    """Also the ROM's contrast case (same boot): the card is not the boot display (SeaBIOS, q35's
    own VGA at 00:01.0), so its ROM BAR holds QEMU's VGA BIOS; `check --read-rom` reads it and
    QEMU, once the nested SeaBIOS probes it, loads it without complaint."""
    with boot("intel-bound") as g:
        t0 = time.monotonic()
        vs = forecasts(g, ["iommu.interrupt_remapping", "gpu.rom_readable"], ("--read-rom",))
        v, rom = vs["iommu.interrupt_remapping"], vs["gpu.rom_readable"]
        assert v["status"] == "pass", v
        q = g.try_qemu_vfio(timeout=240, firmware_s=150)
        klog = g.run(f"dmesg | grep '{CARD}.*ROM'", timeout=30).stdout
        qrom = [ln for ln in q.output.splitlines() if "rom" in ln.lower() or "size: 0x" in ln]
        print(f"doctor: {v['status']}: {v['summary']}\nqemu rc={q.rc}: {q.output.strip()[-400:]}\n"
              f"doctor: {rom['status']}: {rom['summary']}\nkernel: {klog.strip()}\nqemu: " + "\n  ".join(qrom) +
              f"\n[{time.monotonic() - t0:.1f}s]")
        assert "Failed to set iommu for container" not in q.output
        assert q.rc == 0, q
        assert "cannot be read" not in rom["summary"] and rom["status"] in ("pass", "warn"), rom
        assert "x86 (legacy BIOS)" in rom["summary"]  # QEMU's vgabios-stdvga.bin: one legacy image, no EFI one
        assert "vfio_pci_load_rom Device" in q.output and "size: 0x0," not in q.output  # the nested SeaBIOS read it
        assert "Cannot read device rom" not in q.output and "Invalid PCI ROM header" not in klog


def test_ids_line_grabs_the_hosts_identical_display_as_forecast(lab_ready) -> None:  # type: ignore[no-untyped-def]
    """The card's VGA and the host's boot display are both 1234:1111: an ids= line takes both."""
    with boot("intel-unbound") as g:
        ids = g.run("for f in 0 1 2 3; do d=/sys/bus/pci/devices/0000:01:00.$f; "
                    "echo $(cut -c3- $d/vendor):$(cut -c3- $d/device); done | sort -u | paste -sd,", timeout=30).stdout.strip()
        assert "1234:1111" in ids
        g.write_file("/etc/modprobe.d/vfio.conf", f"options vfio-pci ids={ids}\n")
        v = forecast(g, "vfio.ids_unique_to_card")
        assert v["status"] == "fail", v
        assert HOST_DISPLAY in v["summary"]
        assert any("driver_override" in s for s in v["remedy"]["steps"])
        # What boot then does: vfio-pci, loaded before the native drivers with these options,
        # claims every unbound device with a matching id.
        r = g.run("set -e; rmmod vfio_pci; "
                  f"for d in {HOST_DISPLAY} {CARD}; do echo $d > /sys/bus/pci/devices/$d/driver/unbind; done; "
                  "modprobe vfio-pci; sleep 1", timeout=60)
        assert r.rc == 0, r
        drivers = g.drivers()
        print(f"doctor: {v['status']}: {v['summary']}\nkernel: {HOST_DISPLAY} -> {drivers[HOST_DISPLAY]}, {CARD} -> {drivers[CARD]}")
        assert drivers[CARD] == "vfio-pci"
        assert drivers[HOST_DISPLAY] == "vfio-pci"  # the host's own display went to vfio-pci too


def test_group_with_a_mounted_disk_forecast_then_the_filesystem_loses_its_disk(lab_ready, tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    with boot(disk_in_group(img)) as g:
        groups = g.iommu_groups()
        grp = g.group_of(CARD)
        assert DISK_ADDR in groups[grp], groups
        r = g.run("set -e; modprobe virtio_blk; modprobe ext4; for i in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.2; done; "
                  "mkfs.ext4 -q -F /dev/vda; mkdir -p /run/data; mount /dev/vda /run/data; echo hello > /run/data/f; sync",
                  timeout=120)
        assert r.rc == 0, r
        v = forecast(g, "gpu.group_safe")
        assert v["status"] == "fail", v
        assert f"{DISK_ADDR} holds mounted filesystems: /run/data (/dev/vda" in v["summary"]
        # What handing the group over then does: the disk controller leaves the host under a mounted filesystem.
        d = f"/sys/bus/pci/devices/{DISK_ADDR}"
        g.run(f"echo vfio-pci > {d}/driver_override; echo {DISK_ADDR} > {d}/driver/unbind; echo {DISK_ADDR} > /sys/bus/pci/drivers_probe",
              timeout=60)
        w = g.run("echo again > /run/data/g && sync /run/data/g", timeout=60)
        log = g.run("dmesg | tail -20", timeout=30).stdout
        print(f"doctor: {v['status']}: {v['summary']}\nafter binding {DISK_ADDR}: driver={g.drivers()[DISK_ADDR]}, "
              f"write rc={w.rc} {w.stderr.strip()}\n{log}")
        assert g.drivers()[DISK_ADDR] == "vfio-pci"
        assert not g.run("test -b /dev/vda", timeout=30).rc == 0  # the block device is gone under the mount
        assert w.rc != 0 or "error" in log.lower()


# --- the boot framebuffer and the option ROM of the only display (OVMF, -vga none) -------------------
# One boot carries both: first the framebuffer forecast and the vfio-pci bind, then (the card now on
# vfio-pci) the ROM forecast and QEMU's own ROM probe.

EFIFB = FORECAST_SCENARIOS["intel-efifb-on-card"]
IOMEM_EFIFB = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) : efifb$", re.M)


@pytest.fixture(scope="module")
def efifb_guest(lab_ready):  # type: ignore[no-untyped-def]
    g = boot(EFIFB)
    yield g
    g.close()


def bar0(guest) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    start, end, _ = guest.read_file(f"/sys/bus/pci/devices/{CARD}/resource").splitlines()[0].split()
    return int(start, 16), int(end, 16)


def efifb_ranges(iomem: str) -> list[tuple[int, int]]:
    return [(int(a, 16), int(b, 16)) for a, b in IOMEM_EFIFB.findall(iomem)]


def test_efifb_in_the_cards_bar_forecast_then_vfio_pci_evicts_it(efifb_guest) -> None:  # type: ignore[no-untyped-def]
    """Debian's 6.1, the card's VGA the only display: OVMF's GOP and the kernel's efifb live in BAR 0.
    The doctor says binding vfio-pci removes it (vfio_pci_core_register_device ->
    aperture_remove_conflicting_pci_devices, VGA class, Linux 6.0+); the kernel then does exactly that."""
    g, t0 = efifb_guest, time.monotonic()
    v = forecast(g, "gpu.framebuffer_free")
    # ground truth before the bind
    s, e = bar0(g)
    iomem0, fb0 = g.read_file("/proc/iomem"), g.read_file("/proc/fb")
    vt0 = g.run("grep . /sys/class/vtconsole/*/name /sys/class/vtconsole/*/bind", timeout=30).stdout
    log0 = g.run("dmesg", timeout=30).stdout
    fbs = efifb_ranges(iomem0)
    assert fbs and all(s <= a and b <= e for a, b in fbs), (hex(s), hex(e), iomem0)  # efifb inside the card's BAR 0
    assert "EFI VGA" in fb0 and "(M) frame buffer device" in vt0
    assert f"efifb: framebuffer at {s:#x}" in log0
    g.bind_vfio(list(CARD_FUNCTIONS))
    iomem1, fb1 = g.read_file("/proc/iomem"), g.read_file("/proc/fb")
    log1 = g.run("dmesg", timeout=30).stdout
    q = g.try_qemu_vfio(timeout=150)
    log2 = g.run("dmesg", timeout=30).stdout
    new = [ln for ln in log2.splitlines() if ln not in set(log0.splitlines())]
    evicted = not efifb_ranges(iomem1) and "EFI VGA" not in fb1
    reserve_failed = "can't reserve" in log2
    qemu_ok = q.rc == 0 and "1234:1111" in q.output and "Failed to mmap" not in q.output
    print(f"doctor: {v['status']}: {v['summary']}\nbefore: /proc/iomem {[f'{a:x}-{b:x} : efifb' for a, b in fbs]} in BAR 0 "
          f"{s:x}-{e:x}; /proc/fb {fb0.strip()!r}\nafter the bind: efifb in /proc/iomem: {bool(efifb_ranges(iomem1))}, "
          f"/proc/fb {fb1.strip()!r}; kernel:\n  " + "\n  ".join(new[:12]) +
          f"\nqemu rc={q.rc}, `can't reserve` in dmesg: {reserve_failed}, `Failed to mmap`: {'Failed to mmap' in q.output}"
          f"\n[{time.monotonic() - t0:.1f}s]")
    assert "Console: switching to colour dummy device" in log1  # the fb console went with efifb
    # the forecast against what the kernel and QEMU did
    assert v["status"] == "pass" and "removes it when vfio-pci binds" in v["summary"], v
    assert evicted and not reserve_failed and qemu_ok, (iomem1, q)
    assert (v["status"] == "pass") == (evicted and not reserve_failed and qemu_ok)


def test_rom_of_the_boot_display_under_vfio_forecast_then_qemu_cannot_read_it(efifb_guest) -> None:  # type: ignore[no-untyped-def]
    """The card is the boot display: the kernel shows its ROM as the shadow copy at 0xc0000, which
    after OVMF holds no option ROM. `check --read-rom` warns; the kernel logs `Invalid PCI ROM header
    signature`, and QEMU, once the nested guest's SeaBIOS probes the ROM, `Cannot read device rom`."""
    g, t0 = efifb_guest, time.monotonic()
    if g.drivers()[CARD] != "vfio-pci":  # run alone: the framebuffer test did not bind it
        g.bind_vfio(list(CARD_FUNCTIONS))
    v = forecast(g, "gpu.rom_readable", ("--read-rom",))
    klog = g.run(f"dmesg | grep '{CARD}: Invalid PCI ROM header signature'", timeout=30).stdout
    t1 = time.monotonic()
    q = g.try_qemu_vfio(timeout=240, firmware_s=150)
    t_q = time.monotonic() - t1
    # the remedy: rombar=0 gives the nested guest no ROM BAR to probe
    q0 = g.try_qemu_vfio(timeout=150, device_opts=",rombar=0")
    qlines = [ln for ln in q.output.splitlines() if "rom" in ln.lower() and "info pci" not in ln]
    print(f"doctor: {v['status']}: {v['summary']}\n  " + "\n  ".join(v["messages"]) + f"\nkernel: {klog.strip()}\n"
          f"qemu (firmware ran {t_q:.1f}s) rc={q.rc}:\n  " + "\n  ".join(qlines) +
          f"\nqemu rombar=0: rc={q0.rc}, BAR6 listed: {'BAR6' in q0.output}\n[{time.monotonic() - t0:.1f}s]")
    assert v["status"] == "warn", v
    assert "Input/output error" in v["summary"] and f"Cannot read device rom at {CARD}" in v["summary"]
    assert "rombar=0" in v["remedy"]["text"] and "romfile=" in v["remedy"]["text"]
    assert "Invalid PCI ROM header signature" in " ".join(v["messages"])
    assert f"vfio-pci {CARD}: Invalid PCI ROM header signature: expecting 0xaa55" in klog
    assert f"vfio-pci: Cannot read device rom at {CARD}" in q.output, q
    assert "size: 0x0," in q.output  # vfio's ROM region: the kernel would not map the ROM (pci_map_rom failed)
    assert q0.rc == 0 and "1234:1111" in q0.output and "BAR6" not in q0.output, q0


def test_video_efifb_off_keeps_the_bar_free_and_the_check_passes(lab_ready) -> None:  # type: ignore[no-untyped-def]
    """The remedy the check names for efifb: `video=efifb:off` leaves BAR 0 free from boot on."""
    t0 = time.monotonic()
    try:
        g = Lab.boot(EFIFB, timeout=240, extra_append="video=efifb:off")
    except LabError as e:
        pytest.fail(f"{type(e).__name__}: {e}", pytrace=False)
    with g:
        v = forecast(g, "gpu.framebuffer_free")
        iomem, fb = g.read_file("/proc/iomem"), g.read_file("/proc/fb")
        cmdline = g.read_file("/proc/cmdline")
        print(f"doctor: {v['status']}: {v['summary']}\nefifb in /proc/iomem: {bool(efifb_ranges(iomem))}; /proc/fb {fb.strip()!r}"
              f"\n[{time.monotonic() - t0:.1f}s]")
        assert "video=efifb:off" in cmdline
        assert not efifb_ranges(iomem) and "EFI VGA" not in fb
        assert v["status"] == "pass" and "no firmware framebuffer" in v["summary"], v
