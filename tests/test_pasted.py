"""`check --from`: pasted outputs become facts; no verdict is drawn from absence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doctor import pasted as P
from doctor.errors import BadInput, FactUnknown

HERE = os.path.dirname(__file__)
CORPUS = os.path.join(HERE, "..", "fixtures", "pasted")
SLUGS = sorted(d for d in os.listdir(CORPUS) if os.path.isdir(os.path.join(CORPUS, d)))


def run_dir(path: str, gpu: str | None = None):  # type: ignore[no-untyped-def]
    pf = P.load_pasted([path])
    return P.run_pasted(pf, path, gpu=gpu)


def results_by_id(run) -> dict[str, list]:  # type: ignore[no-untyped-def]
    out: dict[str, list] = {}
    for sr in run.report.results:
        out.setdefault(sr.result.check_id, []).append(sr)
    return out


# ---------------------------------------------------------------------------
# corpus replay


def test_corpus_has_at_least_20_real_entries() -> None:
    assert len(SLUGS) >= 20
    for s in SLUGS:
        meta = json.load(open(os.path.join(CORPUS, s, "expected.json")))
        assert meta["url"].startswith("https://") and meta["date"] and meta["established"]
        for cid, exp in meta["expected"].items():
            assert exp["basis"] in ("confirmed", "inferred"), (s, cid)
        assert set(meta.get("pending", {})) <= set(meta["expected"]), s
        assert all(len(why) > 40 for why in meta.get("pending", {}).values()), s  # each says why it is not given yet
        assert os.path.isfile(os.path.join(CORPUS, s, "SOURCE.md")), s


@pytest.mark.parametrize("slug", SLUGS)
def test_corpus_replay_gives_the_expected_verdicts(slug: str) -> None:
    d = os.path.join(CORPUS, slug)
    meta = json.load(open(os.path.join(d, "expected.json")))
    run = run_dir(os.path.join(d, "input"))
    by = results_by_id(run)
    for cid, exp in meta["expected"].items():
        assert cid in by, f"{slug}: no result for {cid}"
        rs = by[cid]
        if exp.get("subject"):
            rs = [r for r in rs if r.subject == exp["subject"]]
            assert rs, f"{slug}: {cid} not run for {exp['subject']} (subjects: {[r.subject for r in by[cid]]})"
        got = {r.result.status.value for r in rs}
        if cid in meta.get("pending", {}):
            # a verdict the thread settles that gpudoctor does not give yet, and why: the mark goes when it lands
            assert got != {exp["status"]}, f"{slug}: {cid} now gives {exp['status']}: remove it from 'pending'"
            continue
        assert got == {exp["status"]}, f"{slug}: {cid} expected {exp['status']} ({exp['why']}), got {got}: {[r.result.summary for r in rs]}"
    found = {t["error"] for t in run.ties}
    assert set(meta["errors"]) <= found, f"{slug}: errors {meta['errors']} not all found in {found}"
    # nothing silently dropped: every input is listed in the source details
    listed = " ".join(v for k, v in run.report.source.details.items() if k.startswith("input "))
    for name in os.listdir(os.path.join(d, "input")):
        assert name in listed


@pytest.mark.parametrize("slug", SLUGS)
def test_no_check_errors_on_any_corpus_entry(slug: str) -> None:
    run = run_dir(os.path.join(CORPUS, slug, "input"))
    errs = [sr.result for sr in run.report.results if sr.result.status.value == "error"]
    assert not errs, [(r.check_id, r.summary, r.messages) for r in errs]


# ---------------------------------------------------------------------------
# the facts layer: what a paste proves and what it does not

LSPCI_NNK = """00:00.0 Host bridge [0600]: Intel Corporation Device [8086:3e30] (rev 0d)
00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 0d)
\tKernel driver in use: pcieport
00:02.0 VGA compatible controller [0300]: Intel Corporation Device [8086:3e92]
\tKernel driver in use: i915
\tKernel modules: i915
00:14.0 USB controller [0c03]: Intel Corporation Device [8086:a36d] (rev 10)
\tKernel driver in use: xhci_hcd
00:17.0 SATA controller [0106]: Intel Corporation Device [8086:a352] (rev 10)
\tKernel driver in use: ahci
01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [10de:1e84] (rev a1)
\tKernel driver in use: vfio-pci
\tKernel modules: nouveau
01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio [10de:10f8] (rev a1)
\tKernel driver in use: vfio-pci
\tKernel modules: snd_hda_intel
"""
GROUPS = """IOMMU Group 1:
\t00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 0d)
\t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [10de:1e84] (rev a1)
\t01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio [10de:10f8] (rev a1)
IOMMU Group 2:
\t00:02.0 VGA compatible controller [0300]: Intel Corporation Device [8086:3e92]
"""


def facts_of(text: str) -> P.PastedFacts:
    return P.PastedFacts(P.evidence_from_text(text))


def statuses(text: str, gpu: str | None = None) -> dict[tuple[str, str | None], str]:
    pf = facts_of(text)
    run = P.run_pasted(pf, "<text>", gpu=gpu)
    return {(sr.result.check_id, sr.subject): sr.result.status.value for sr in run.report.results}


def test_facts_not_in_the_evidence_are_unknown_with_a_settle_command() -> None:
    pf = facts_of(LSPCI_NNK)
    with pytest.raises(FactUnknown) as e:
        pf.cmdline()
    assert e.value.reason == "not in the evidence" and e.value.settle == "cat /proc/cmdline"
    with pytest.raises(FactUnknown):
        pf.iommu_groups()
    with pytest.raises(FactUnknown):
        pf.iommu_class()


def test_lspci_without_k_leaves_drivers_unknown_not_absent() -> None:
    text = "\n".join(ln for ln in LSPCI_NNK.splitlines() if not ln.startswith("\t")) + "\n" + GROUPS
    st_ = statuses(text)
    assert st_[("vfio.group_viable", "0000:01:00.0")] == "unknown"
    assert st_[("gpu.group_isolated", "0000:01:00.0")] == "pass"


def test_a_known_blocking_driver_fails_even_when_other_drivers_are_unknown() -> None:
    text = GROUPS + "\n$ lspci -nnk -s 01:00.1\n01:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio [10de:10f8] (rev a1)\n\tKernel driver in use: snd_hda_intel\n"
    assert statuses(text)[("vfio.group_viable", "0000:01:00.0")] == "fail"


def test_groups_unknown_makes_group_checks_unknown_not_na() -> None:
    st_ = statuses(LSPCI_NNK)
    assert st_[("gpu.group_isolated", "0000:01:00.0")] == "unknown"
    assert st_[("vfio.group_viable", "0000:01:00.0")] == "unknown"


def test_host_igpu_on_its_driver_is_not_a_subject_and_bridges_are_fine() -> None:
    st_ = statuses(LSPCI_NNK + "\n" + GROUPS)
    assert not [k for k in st_ if k[1] == "0000:00:02.0"]
    assert st_[("vfio.group_viable", "0000:01:00.0")] == "pass"
    assert st_[("gpu.group_isolated", "0000:01:00.0")] == "pass"


def test_grepped_dmesg_without_iommu_enabled_line_does_not_prove_it_off() -> None:
    text = "$ dmesg | grep -i dmar\n[    0.01] ACPI: DMAR 0x000000007B7FD000 00030A (v01 INTEL)\n\nBOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n"
    st_ = statuses(text)
    assert st_[("firmware.iommu_table", None)] == "pass"
    assert st_[("iommu.active", None)] == "unknown"
    assert st_[("cmdline.iommu_enabled", None)] == "unknown"  # build default unknown, IOMMU state unknown


def test_no_groups_directory_is_evidence_of_no_groups() -> None:
    text = "ls: cannot access '/sys/kernel/iommu_groups/*/devices': No such file or directory\n"
    assert statuses(text)[("iommu.groups_present", None)] == "fail"


def test_3d_and_0380_controllers_are_gpus() -> None:
    text = "0000:3d:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 PCIe] [10de:2331] (rev a1)\n"
    pf = facts_of(text)
    assert [g.address for g in pf.gpus()] == ["0000:3d:00.0"]
    text2 = "00:02.0 Display controller [0380]: Intel Corporation HD Graphics 530 [8086:1912] (rev 06)\n"
    assert facts_of(text2).gpus()


def test_one_file_with_several_pastes_is_cut_into_each_kind() -> None:
    text = ("My setup:\n\n$ cat /proc/cmdline\nBOOT_IMAGE=/vmlinuz-6.1 root=/dev/nvme0n1p2 ro intel_iommu=on\n\n"
            + LSPCI_NNK + "\n" + GROUPS + "\n$ cat /etc/modprobe.d/vfio.conf\noptions vfio-pci ids=10de:1e84,10de:10f8\n"
            + "softdep nouveau pre: vfio-pci\n\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"\n"
            + "[    0.000000] Linux version 6.1.0 (gcc)\n[    0.1] DMAR: IOMMU enabled\n"
            + "qemu-system-x86_64: vfio 0000:01:00.0: group 1 is not viable\n")
    kinds = [c.kind for c in P.segment(text)]
    for k in ("cmdline", "lspci", "group", "modprobe", "grub", "dmesg", "error", "unrecognised"):
        assert k in kinds, (k, kinds)
    pf = facts_of(text)
    assert pf.cmdline().has("intel_iommu")
    assert pf.modprobe_config()[0].module == "vfio_pci"
    assert pf.boot_config().cmdline is not None


def test_journalctl_form_is_a_kernel_log_and_its_hostname_is_redacted() -> None:
    text = "Mar 03 10:00:01 secret-box kernel: DMAR: IOMMU enabled\nMar 03 10:00:01 secret-box kernel: pci 0000:01:00.0: vgaarb: setting as boot VGA device\n"
    pf = facts_of(text)
    assert "DMAR: IOMMU enabled" in pf.kernel_log().lines[0]
    run = P.run_pasted(pf, "x")
    doc = json.dumps(P.to_json(run, redact=True))
    assert "secret-box" not in doc


def test_error_in_evidence_is_tied_to_the_checks_that_predict_it() -> None:
    text = LSPCI_NNK.replace("vfio-pci\n\tKernel modules: snd_hda_intel", "snd_hda_intel\n\tKernel modules: snd_hda_intel") + "\n" + GROUPS + \
        "qemu-system-x86_64: -device vfio-pci,host=01:00.0: vfio 0000:01:00.0: group 1 is not viable\n"
    run = P.run_pasted(facts_of(text), "x")
    t = next(t for t in run.ties if t["error"] == "vfio.group_not_viable")
    verdicts = [c["verdict"] for c in t["causes"]]
    assert verdicts[0].startswith("confirmed")
    assert verdicts[1].startswith("ruled out")


# ---------------------------------------------------------------------------
# bad input


def test_bad_inputs_give_a_clear_message_or_a_partial_verdict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "latin1.txt").write_bytes("BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on\ncaf\xe9 \xff\n".encode("latin-1"))
    (tmp_path / "cut.txt").write_text("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GK104 [GeFo")
    pf = P.load_pasted([str(tmp_path)])
    run = P.run_pasted(pf, str(tmp_path))
    det = " ".join(run.report.source.details.values())
    assert "empty.txt: empty file" in det
    assert "junk.bin: binary data" in det
    assert "Latin-1" in det
    assert "cut off" in det
    assert pf.cmdline().has("intel_iommu")


def test_nothing_usable_is_bad_input_naming_each_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.bin").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(BadInput) as e:
        P.load_pasted([str(tmp_path / "a.bin")])
    assert "a.bin" in str(e.value) and "binary" in str(e.value)
    with pytest.raises(BadInput, match="no such file"):
        P.load_pasted([str(tmp_path / "missing.txt")])


def test_nothing_recognised_says_which_lines_it_tried_and_what_it_knows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "t.txt").write_text("hello world\nfoo bar\n\n\nsomething else\n")
    with pytest.raises(BadInput) as e:
        P.load_pasted([str(tmp_path / "t.txt")])
    msg = str(e.value)
    assert "\n" not in msg  # one line
    assert "nothing recognised in its 3 line(s): lines 1-2 ('hello world'), line 5 ('something else')" in msg, msg
    for known in ("lspci", "lshw -c display", "kernel log (dmesg)", "/etc/default/grub", "modprobe.d", "IOMMU group listing",
                  "ls -l /dev/vfio", "QEMU / libvirt / kernel error messages"):
        assert known in msg.split("It knows: ", 1)[1], (known, msg)


def test_a_line_read_on_its_own_is_named_not_called_unrecognised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # `ls -l /dev/vfio/` as pasted: the group node proves the IOMMU active; the container node proves nothing
    (tmp_path / "v.txt").write_text("crw------- 1 root root 243,   0 Jan  1 00:00 /dev/vfio/12\n\n"
                                    "crw-rw-rw- 1 root root  10, 196 Jan  1 00:00 /dev/vfio/vfio\n")
    run = P.run_pasted(P.load_pasted([str(tmp_path / "v.txt")]), "pasted")
    det = run.report.source.details["input 1"]
    assert "read line by line: line 1 (a line only an active IOMMU prints)" in det, det
    assert "not recognised: line 3 " in det and "lines 1-" not in det, det


def test_a_50_mb_log_is_read_in_bounded_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "huge.log"
    line = "[   12.345678] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n"
    with open(p, "w") as f:
        f.write("[    0.000000] Linux version 6.1.0 (gcc)\n[    0.000000] Command line: BOOT_IMAGE=/vmlinuz intel_iommu=on\n")
        f.write(line * (50 * 1024 * 1024 // len(line)))
        f.write("qemu-system-x86_64: vfio 0000:01:00.0: group 1 is not viable\n")
    t0 = time.perf_counter()
    pf = P.load_pasted([str(p)])
    run = P.run_pasted(pf, str(p))
    assert time.perf_counter() - t0 < 30
    det = " ".join(run.report.source.details.values())
    assert "only the first" in det  # says what was cut
    assert pf.cmdline().has("intel_iommu")
    assert any(t["error"] == "vfio.group_not_viable" for t in run.ties)  # the tail is kept


# ---------------------------------------------------------------------------
# fuzzing every recogniser

SAMPLES = [LSPCI_NNK, GROUPS, "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on\n",
           "[    0.000000] Linux version 6.1\n[    0.1] DMAR: IOMMU enabled\n",
           "/sys/kernel/iommu_groups/1/devices:\nlrwxrwxrwx 1 root root 0 Jan 1 00:00 0000:01:00.0 -> ../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0\n",
           "Module                  Size  Used by\nvfio_pci               16384  0\n",
           "Vendor ID:  GenuineIntel\nFlags:  fpu vmx\n", "INFO: /dev/kvm exists\nKVM acceleration can be used\n",
           "options vfio-pci ids=10de:1e84\nsoftdep nouveau pre: vfio-pci\n"]


def mutate(sample: str) -> st.SearchStrategy[str]:
    return st.builds(lambda cut, junk, pos: sample[:cut] + junk + sample[pos:],
                     st.integers(0, len(sample)), st.text(max_size=40), st.integers(0, len(sample)))


texts = st.one_of(st.text(max_size=400), st.binary(max_size=300).map(lambda b: P.decode_bytes(b)[0]),
                  st.sampled_from(SAMPLES).flatmap(mutate))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_every_recogniser_takes_random_and_mutated_input(s: str) -> None:
    for line in s.split("\n")[:50]:
        P.classify_line(line)
    chunks = P.segment(s)
    assert all(c.start <= c.end for c in chunks)
    P.parse_lspci_chunk(s)
    P.parse_group_listing(s)
    P.parse_group_ls(s)
    P.parse_dmesg(s, "dmesg | grep x")
    P.parse_lsmod(s)
    P.parse_kvm_ok(s)
    try:
        P.parse_lscpu(s)
    except ValueError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(texts, st.sampled_from(SAMPLES)), min_size=1, max_size=4).map("\n".join))
def test_checks_on_fuzzed_pastes_never_error(s: str) -> None:
    pf = facts_of(s)
    run = P.run_pasted(pf, "<fuzz>")
    assert not [sr for sr in run.report.results if sr.result.status.value == "error"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_decoding_any_bytes_never_raises(b: bytes) -> None:
    P.looks_binary(b)
    P.decode_bytes(b)


# ---------------------------------------------------------------------------
# the CLI


def gd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                          timeout=60, input=stdin, cwd=os.path.join(HERE, ".."))


JSON_KEYS = {"format", "version", "minor", "gpudoctor", "source", "host", "redacted", "gpus", "summary", "causes", "results",
             "errors_in_evidence"}


def test_check_from_json_keeps_the_check_contract_plus_errors_in_evidence() -> None:
    p = gd("check", "--from", "fixtures/pasted/gh-kubevirt-gpu-device-plugin-50/input", "--json")
    doc = json.loads(p.stdout)
    assert set(doc) == JSON_KEYS
    assert doc["source"]["kind"] == "pasted"
    assert doc["summary"]["exit_code"] == p.returncode == 1
    assert doc["errors_in_evidence"][0]["error"] == "vfio.group_not_viable"


def test_check_from_terminal_lists_inputs_and_errors() -> None:
    p = gd("check", "--from", "fixtures/pasted/gh-64kram-vga-passthrough-15/input")
    assert p.returncode in (0, 1), p.stderr
    assert "iommu-groups.txt" in p.stdout and "Errors in the evidence" in p.stdout


def test_check_from_html_says_pasted_and_lists_inputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.html"
    p = gd("check", "--from", "fixtures/pasted/gh-kubevirt-4226/input", "--html", str(out))
    assert p.returncode in (0, 1), p.stderr
    html = out.read_text()
    assert "pasted outputs, not a live host" in html and "dmesg-dmar.txt" in html


@pytest.mark.parametrize("args, needle", [
    (["check", "--from", "/nonexistent/paste.txt"], "/nonexistent/paste.txt"),
    (["check", "--from", "fixtures/pasted", "--snapshot", "fixtures/dev-machine"], "cannot be used together"),
])
def test_check_from_bad_input_is_exit_2(args: list[str], needle: str) -> None:
    p = gd(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_explain_recognised_text_exits_0_and_unknown_text_exits_1() -> None:
    p = gd("explain", "vfio 0000:01:00.0: group 1 is not viable")
    assert p.returncode == 0 and "gpu.group_isolated" in p.stdout and "likely causes" in p.stdout
    p = gd("explain", "-", stdin="kvm: disabled by bios\n")
    assert p.returncode == 0 and "cpu.virtualization" in p.stdout
    p = gd("explain", "the fan is loud")
    assert p.returncode == 1 and "lspci -nnk" in p.stdout
    p = gd("explain", "--json", "BAR 3: can't reserve [mem 0xc0000000-0xcfffffff 64bit pref]")
    assert p.returncode == 0 and json.loads(p.stdout)["errors"][0]["id"] == "vfio.bar_reserve"
