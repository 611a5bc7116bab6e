"""Pasted text is a third source behind the same seam: typed partial facts, one run, evidence that names the paste."""

from __future__ import annotations

import pytest

from doctor import pasted as P
from doctor import runner
from doctor.errors import FactUnknown

LSPCI_NN = """00:00.0 Host bridge [0600]: Intel Corporation Device [8086:3e30] (rev 0d)
00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 0d)
01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [10de:1e84] (rev a1)
01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio [10de:10f8] (rev a1)
"""
GROUPS = """IOMMU Group 1:
\t00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 0d)
\t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [10de:1e84] (rev a1)
\t01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio [10de:10f8] (rev a1)
"""


def facts_of(text: str, name: str = "paste.txt") -> P.PastedFacts:
    return P.PastedFacts(P.evidence_from_text(text, name))


def by_id(run: P.PastedRun) -> dict[tuple[str, str | None], object]:
    return {(sr.result.check_id, sr.subject): sr.result for sr in run.report.results}


def test_a_driver_not_shown_is_unknown_not_a_sentinel_device() -> None:
    devs = facts_of(LSPCI_NN).pci_devices()
    assert sorted(devs) == ["0000:00:00.0", "0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]  # nothing invented
    gpu = devs["0000:01:00.0"]
    assert gpu.driver is None and gpu.driver_known is False
    assert "driver: not shown" in gpu.label()
    assert all(d.vendor != "ffff" for d in devs.values())


def test_a_group_not_shown_is_unknown_not_no_group() -> None:
    pf = facts_of(LSPCI_NN)
    with pytest.raises(FactUnknown):
        pf.group_members(pf.pci_devices()["0000:01:00.0"])
    pf = facts_of("ls: cannot access '/sys/kernel/iommu_groups/*/devices': No such file or directory\n" + LSPCI_NN)
    assert pf.group_members(pf.pci_devices()["0000:01:00.0"]) is None  # shown absent: no group


def test_the_suite_runs_once_per_paste(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = runner.run_checks

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr("doctor.pasted.run.run_checks", counting)
    P.run_pasted(facts_of(LSPCI_NN + "\n" + GROUPS), "x")
    assert len(calls) == 1


def test_unknown_driver_makes_viability_unknown_and_a_shown_blocker_fails() -> None:
    r = by_id(P.run_pasted(facts_of(LSPCI_NN + "\n" + GROUPS), "x"))[("vfio.group_viable", "0000:01:00.0")]
    assert r.status.value == "unknown" and "driver of 0000:01:00.0" in r.summary  # type: ignore[attr-defined]
    assert any("lspci -nnk -s 0000:01:00.0" in m for m in r.messages)  # type: ignore[attr-defined]


def test_evidence_names_the_pasted_file_and_line() -> None:
    text = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on\n\n" + LSPCI_NN.replace(
        "(rev a1)\n01:00.1", "(rev a1)\n\tKernel driver in use: vfio-pci\n01:00.1") + "\n" + GROUPS
    pf = facts_of(text)
    assert pf.cmdline().source == "paste.txt:1"
    assert pf.pci_devices()["0000:01:00.0"].source == "paste.txt:5"
    results = [sr.result for sr in P.run_pasted(pf, "x").report.results]
    sources = {e.source for r in results for e in r.evidence if e.value != "not in the evidence"}  # (unknowns name the fact)
    assert "paste.txt:1" in sources and "paste.txt:5" in sources
    assert "paste.txt:9-12" in sources  # the group listing, for gpu.group_isolated and iommu.groups_present
    live = [s for s in sources if s.startswith(("/proc/", "/sys/", "/dev/")) and not s.endswith("(not shown in the paste)")]
    assert not live, live


def test_a_filtered_list_without_a_gpu_is_unknown_not_no_gpu() -> None:
    run = P.run_pasted(facts_of("$ lspci | grep -i usb\n00:14.0 USB controller [0c03]: Intel Corporation Device [8086:a36d]\n"), "x")
    st = {k: r.status.value for k, r in by_id(run).items()}  # type: ignore[attr-defined]
    assert st[("gpu.candidate", None)] == "unknown"
    assert st[("vfio.group_viable", None)] == "unknown"
