"""gpudoctor run inside the lab's guests, against their real kernels.

EXPECTED is the one table to adjust: check id -> scenario -> allowed status(es). Scenarios a
check is not listed for are not asserted (but every result must still be well-formed).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from lab import CARD, SCENARIOS, LabError

pytestmark = pytest.mark.lab

ALL = list(SCENARIOS)
STATUSES = {"pass", "warn", "fail", "not_applicable", "unknown", "error"}

P, W, F = "pass", "warn", "fail"
NA_OR_UNKNOWN = ("not_applicable", "unknown")

EXPECTED: dict[str, dict[str, str | tuple[str, ...]]] = {
    "iommu.active": {
        "intel-unbound": P, "intel-partial": P, "intel-bound": P, "amd-partial": P,
        "intel-iommu-off": F, "intel-shared-group": P, "intel-dmesg-restricted": P,
        "intel-on-amd-cpu": F,
    },
    "iommu.groups_present": {
        "intel-unbound": P, "intel-partial": P, "intel-bound": P, "amd-partial": P,
        "intel-iommu-off": F, "intel-shared-group": P, "intel-dmesg-restricted": P,
        "intel-on-amd-cpu": F,
    },
    "gpu.group_isolated": {
        "intel-unbound": P, "intel-partial": P, "intel-bound": P, "amd-partial": P,
        "intel-shared-group": F, "intel-dmesg-restricted": P,
    },
    "vfio.group_viable": {
        "intel-unbound": F, "intel-partial": F, "intel-bound": P, "amd-partial": F,
        "intel-iommu-off": NA_OR_UNKNOWN,
        # All four functions are on vfio-pci, but the NIC in the group is on e1000e.
        "intel-shared-group": F,
        "intel-dmesg-restricted": F,
    },
    "vfio.binding_persistent": {
        "intel-bound": W,  # bound at runtime through driver_override; nothing configured
    },
    "firmware.iommu_table": {
        "intel-unbound": P, "amd-partial": P, "intel-iommu-off": P, "intel-on-amd-cpu": P,
    },
    "cpu.virtualization": {
        # TCG emulates SVM but not VMX: the Intel scenarios look like VT-x disabled in firmware.
        "amd-partial": P, "intel-partial": F, "intel-on-amd-cpu": P,
    },
}  # fmt: skip


def scenarios(*names):
    return pytest.mark.parametrize("guest", list(names), indirect=True)


def _by_id(report: dict) -> dict[str, dict]:
    return {r["id"]: r for r in report["results"]}


def _text(result: dict) -> str:
    return json.dumps(result)


@scenarios(*ALL)
def test_envelope_and_exit_code(guest, doctor):
    report, r = doctor
    assert report["format"] == "gpudoctor.check" and report["version"] == 1, report
    assert r.stderr.strip() == "" or "Traceback" not in r.stderr, r.stderr
    statuses = []
    for res in report["results"]:
        assert res["status"] in STATUSES, res
        assert isinstance(res["summary"], str) and res["summary"], res
        for ev in res.get("evidence", []):
            assert "source" in ev and "value" in ev, res
        statuses.append(res["status"])
    want_rc = 3 if "error" in statuses else 1 if "fail" in statuses else 0
    assert r.rc == want_rc, (r.rc, statuses)
    assert "error" not in statuses, [x for x in report["results"] if x["status"] == "error"]


@scenarios(*ALL)
def test_expected_statuses(guest, doctor):
    """Every EXPECTED entry for this scenario; all mismatches reported together."""
    results = _by_id(doctor[0])
    name = guest.scenario.name
    problems = []
    for check_id, per in EXPECTED.items():
        if name not in per:
            continue
        want = (per[name],) if isinstance(per[name], str) else per[name]
        res = results.get(check_id)
        if res is None:
            problems.append(f"{check_id}: missing (got {sorted(results)})")
        elif res["status"] not in want:
            problems.append(
                f"{check_id}: {res['status']}, want {'/'.join(want)}: {res['summary']}\n"
                f"    {json.dumps(res)[:1500]}"
            )
    assert not problems, f"{name}:\n" + "\n".join(problems)


@scenarios("intel-partial", "amd-partial", "intel-dmesg-restricted")
def test_partial_names_the_functions_left_on_host_drivers(guest, doctor):
    res = _by_id(doctor[0])["vfio.group_viable"]
    text = _text(res)
    assert "0000:01:00.2" in text and "0000:01:00.3" in text, res
    # The functions that are on vfio-pci are not blamed in the summary.
    assert "0000:01:00.1" not in res["summary"], res


@scenarios("intel-partial", "amd-partial")
def test_not_viable_group_number_matches_the_kernel(guest, doctor):
    """The doctor's group number is the one QEMU really complains about."""
    res = _by_id(doctor[0])["vfio.group_viable"]
    qemu = guest.try_qemu_vfio()
    m = re.search(r"group (\d+) is not viable", qemu.stderr)
    assert m, qemu
    assert re.search(rf"\bgroup {m.group(1)}\b", _text(res)), (m.group(0), res)


@scenarios("intel-shared-group")
def test_shared_group_names_the_intruder(guest, doctor):
    res = _by_id(doctor[0])["gpu.group_isolated"]
    assert "0000:02:00.0" in _text(res), res
    viable = _by_id(doctor[0])["vfio.group_viable"]
    assert "0000:02:00.0" in _text(viable), viable


@scenarios("intel-dmesg-restricted")
def test_unreadable_kernel_log_is_reported(guest, doctor):
    res = _by_id(doctor[0])["iommu.active"]
    assert res["status"] == "pass"
    assert re.search(r"(kernel log|dmesg|kmsg)", _text(res), re.I), res
    assert re.search(
        r"(not readable|unreadable|not permitted|permission|denied|restrict)", _text(res), re.I
    ), res


@scenarios("intel-partial")
def test_doctor_sees_the_guest_not_the_host(guest, doctor):
    report, _ = doctor
    assert report["host"]["kernel"] == guest.kernel.kver, report["host"]


@scenarios(*ALL)
def test_record_in_guest_replays_identically_on_host(guest, doctor, tmp_path):
    """gpudoctor record in the guest, then check --snapshot on the host: same status for every id."""
    # Record on the guest's tmpfs (every file operation on the 9p share is a slow round trip
    # under TCG), then bring the one archive back through the share.
    gtmp = f"/tmp/snap-{guest.scenario.name}.tar.gz"
    try:
        rec = guest.gpudoctor(["record", "-o", gtmp], timeout=240)
    except LabError as e:
        pytest.fail(str(e), pytrace=False)
    assert rec.rc == 0, rec
    hpath = tmp_path / "snap.tar.gz"
    hpath.write_bytes(guest.read_bytes(gtmp))
    live = _by_id(doctor[0])  # the live check in this guest (statuses do not depend on redaction)
    doctor_bin = guest.doctor_path()
    out = subprocess.run(
        [doctor_bin, "check", "--snapshot", str(hpath), "--json", "--gpu", CARD],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        replay = _by_id(json.loads(out.stdout))
    except ValueError:
        pytest.fail(
            f"replay printed no JSON (rc={out.returncode}):\n{out.stdout}\n{out.stderr}", pytrace=False
        )
    diff = {
        cid: (live.get(cid, {}).get("status"), replay.get(cid, {}).get("status"))
        for cid in sorted(set(live) | set(replay))
        if live.get(cid, {}).get("status") != replay.get(cid, {}).get("status")
    }
    assert not diff, f"live vs replay differ (id: (live, replay)): {diff}"
