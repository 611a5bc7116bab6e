"""Record lab guests into fixtures/ (real kernel, emulated hardware).

    python -m lab.record_fixtures intel-partial amd-partial intel-shared-group intel-on-amd-cpu

Boots each scenario, runs `gpudoctor record` inside the guest (to its /tmp, then copied
back), unpacks it under fixtures/<folder>/ (RECORDED below), writes PROVENANCE.md and
expected.json: the verdicts of `gpudoctor check` run live in the same guest, which the replay
test then holds the snapshot to, except where TRUE_VERDICTS says the live verdict is wrong
(a known doctor bug: expected.json holds the true verdict, tests/test_fixtures_replay.py
marks that check xfail, strict, until the bug is fixed).
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from lab import CARD, Lab

REPO = Path(__file__).resolve().parents[1]

# scenario -> fixture folder
RECORDED = {
    "intel-partial": "lab-intel-partial",
    "amd-partial": "lab-amd-partial",
    "intel-shared-group": "lab-intel-shared-group",
    "intel-on-amd-cpu": "lab-intel-iommu-amd-cpu",
}
# scenario -> check id -> (true status, why the live one differs)
TRUE_VERDICTS: dict[str, dict[str, tuple[str, str]]] = {
    "intel-on-amd-cpu": {
        "cmdline.iommu_enabled": (
            "fail",
            "intel_iommu=off disables the only IOMMU there is (ACPI DMAR: Intel VT-d); the doctor picks the "
            "argument by the CPU vendor (AMD) and says PASS 'AMD-Vi is on unless disabled' (issue 13 point 3)",
        ),
    },
}


def record(name: str) -> None:
    folder = RECORDED.get(name, f"lab-{name}")
    out = REPO / "fixtures" / folder
    with Lab.boot(name, timeout=180) as g:
        live = json.loads(g.gpudoctor(["check", "--json", "--gpu", CARD]).stdout)
        prov = f"gpudoctor lab scenario {name}: real Debian kernel, emulated hardware (QEMU TCG)"
        r = g.gpudoctor(["record", "-o", "/tmp/lab.tar.gz", "--provenance", prov], timeout=240)
        if r.rc != 0:
            raise SystemExit(f"record failed in {name}: {r.stderr}")
        data = g.read_bytes("/tmp/lab.tar.gz")
        kernel = g.run(["uname", "-r"], timeout=30).stdout.strip()
        qemu = " ".join(g.scenario.qemu_devices)
        desc = g.scenario.description
    with tempfile.TemporaryDirectory() as d:
        tgz = Path(d) / "s.tar.gz"
        tgz.write_bytes(data)
        with tarfile.open(tgz) as tf:
            tf.extractall(d, filter="tar")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(Path(d) / "snapshot"), out)
    verdicts = {x["id"]: x["status"] for x in live["results"]}
    truths = TRUE_VERDICTS.get(name, {})
    wrong = {cid: (verdicts.get(cid), want, why) for cid, (want, why) in truths.items() if verdicts.get(cid) != want}
    verdicts.update({cid: want for cid, (_, want, _) in wrong.items()})
    notes = ("RECORDED in the lab; expected verdicts are those of `gpudoctor check` run live in the same guest "
             "(tests/lab asserts the live ones against ground truth and QEMU's own behaviour)")
    if wrong:
        notes += "; except " + "; ".join(f"{cid}: live {live_s}, true {want} ({why})" for cid, (live_s, want, why) in wrong.items())
    (out / "expected.json").write_text(json.dumps({"gpu": CARD, "verdicts": verdicts, "notes": notes + "."}, indent=2) + "\n")
    corrected = "".join(f"- `{cid}`: expected **{want}**, the doctor said {live_s} live: {why}.\n"
                        for cid, (live_s, want, why) in wrong.items())
    (out / "PROVENANCE.md").write_text(
        f"# {folder}: a lab guest (recorded)\n\n"
        f"- RECORDED with `gpudoctor record` (redacted) inside the lab scenario `{name}` ({desc}).\n"
        f"- Real Linux kernel {kernel} (Debian's), real IOMMU driver and vfio code; the hardware is emulated by QEMU (TCG):\n"
        f"  `{qemu}`.\n"
        "- The userland is the development machine's, shared over 9p: no bootloader, no initramfs tools.\n"
        f"- Rebuild: `python -m lab.record_fixtures {name}`.\n"
        + (f"\nexpected.json holds the true verdicts; where the doctor was wrong when this was recorded:\n\n{corrected}"
           if corrected else ""))
    print(f"fixtures/{folder}: {sum(1 for _ in out.rglob('*'))} entries"
          + (f"; live verdicts corrected: {', '.join(wrong)}" if wrong else ""))


if __name__ == "__main__":
    for n in sys.argv[1:] or list(RECORDED):
        record(n)
