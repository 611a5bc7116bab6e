"""Forecasts against real kernels: the doctor's verdict first, then what the kernel or QEMU does.

Each test boots its own guest (the scenarios are in lab/scenarios_forecast.py), runs the
forecast check in it, then performs the step the check forecast about and compares.
The forecast checks are registered by importing checks.check_forecast in the guest's Python
(they are not yet in doctor.registry.load_checks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import Lab, LabError  # noqa: E402
from lab.scenarios_forecast import DISK_ADDR, FORECAST_SCENARIOS, disk_in_group  # noqa: E402

pytestmark = pytest.mark.lab

CARD = "0000:01:00.0"
HOST_DISPLAY = "0000:00:01.0"
RUN = "import sys, checks.check_forecast; from doctor.cli import main; sys.exit(main(sys.argv[1:]))"


def forecast(guest, check_id: str) -> dict:  # type: ignore[no-untyped-def]
    """Run one forecast check in the guest; its JSON result."""
    r = guest.run([sys.executable, "-c", RUN, "check", "--json", "--gpu", CARD, "--no-redact", "--only", check_id],
                  timeout=180, cwd=str(REPO))
    try:
        rep = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"no JSON from the doctor:\n{r}", pytrace=False)
    res = [x for x in rep["results"] if x["id"] == check_id]
    assert res, rep
    return res[0]


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
    with boot("intel-bound") as g:
        v = forecast(g, "iommu.interrupt_remapping")
        assert v["status"] == "pass", v
        q = g.try_qemu_vfio(timeout=150)
        print(f"doctor: {v['status']}: {v['summary']}\nqemu rc={q.rc}: {q.output.strip()[-400:]}")
        assert "Failed to set iommu for container" not in q.output
        assert q.rc == 0, q


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
