"""Record lab guests into fixtures/lab-<scenario>/ (real kernel, emulated hardware).

    python -m lab.record_fixtures intel-partial amd-partial intel-shared-group

Boots each scenario, runs `gpudoctor record` inside the guest (to its /tmp, then copied
back), unpacks it under fixtures/, writes PROVENANCE.md and expected.json (the verdicts of
`gpudoctor check` run live in the same guest, which the replay test then holds the snapshot to).
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


def record(name: str) -> None:
    out = REPO / "fixtures" / f"lab-{name}"
    with Lab.boot(name, timeout=180) as g:
        live = json.loads(g.gpudoctor(["check", "--json", "--gpu", CARD]).stdout)
        prov = f"gpudoctor lab scenario {name}: real Debian kernel, emulated hardware (QEMU TCG)"
        r = g.gpudoctor(["record", "-o", "/tmp/lab.tar.gz", "--provenance", prov], timeout=240)
        if r.rc != 0:
            raise SystemExit(f"record failed in {name}: {r.stderr}")
        data = g.read_bytes("/tmp/lab.tar.gz")
        kernel = g.run(["uname", "-r"], timeout=30).stdout.strip()
        qemu = " ".join(g.scenario.qemu_devices) if hasattr(g, "scenario") else ""
        desc = getattr(getattr(g, "scenario", None), "description", "")
    with tempfile.TemporaryDirectory() as d:
        tgz = Path(d) / "s.tar.gz"
        tgz.write_bytes(data)
        with tarfile.open(tgz) as tf:
            tf.extractall(d, filter="tar")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(Path(d) / "snapshot"), out)
    verdicts = {x["id"]: x["status"] for x in live["results"]}
    (out / "expected.json").write_text(json.dumps({
        "gpu": CARD, "verdicts": verdicts,
        "notes": "RECORDED in the lab; expected verdicts are those of `gpudoctor check` run live in the same guest "
                 "(tests/lab asserts the live ones against ground truth and QEMU's own behaviour)."}, indent=2) + "\n")
    (out / "PROVENANCE.md").write_text(
        f"# lab-{name}: a lab guest (recorded)\n\n"
        f"- RECORDED with `gpudoctor record` (redacted) inside the lab scenario `{name}` ({desc}).\n"
        f"- Real Linux kernel {kernel} (Debian's), real IOMMU driver and vfio code; the hardware is emulated by QEMU (TCG):\n"
        f"  `{qemu}`.\n"
        "- The userland is the development machine's, shared over 9p: no bootloader, no initramfs tools.\n"
        f"- Rebuild: `python -m lab.record_fixtures {name}`.\n")
    print(f"fixtures/lab-{name}: {sum(1 for _ in out.rglob('*'))} entries")


if __name__ == "__main__":
    for n in sys.argv[1:] or ["intel-partial", "amd-partial", "intel-shared-group"]:
        record(n)
