"""Parsers take random and mutated input without crashing (hypothesis)."""

from __future__ import annotations

import os
import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doctor import facts as F

SAMPLE_LSPCI = """01:00.0 VGA compatible controller [0300]: NVIDIA Corporation Device [10de:1e84] (rev a1)
\tSubsystem: NVIDIA Corporation Device [10de:139f]
\tKernel modules: nvidiafb, nouveau
01:00.1 Audio device [0403]: NVIDIA Corporation Device [10de:10f8] (rev a1)
\tKernel driver in use: snd_hda_intel
"""
SAMPLE_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: X\nflags\t\t: fpu vmx\n"
SAMPLE_GRUB = 'GRUB_DEFAULT=0\n# comment\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX="intel_iommu=on"\n'


def mutate(sample: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda cut, junk, pos: (sample[:cut] + junk + sample[pos:]),
        st.integers(0, len(sample)),
        st.text(max_size=40),
        st.integers(0, len(sample)),
    )


texts = st.one_of(st.text(max_size=500), st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")))


@given(st.one_of(texts, mutate(SAMPLE_LSPCI)))
def test_lspci_parser_never_crashes(s: str) -> None:
    for e in F.parse_lspci_nnk(s):
        assert F.PCI_ADDR_RE.match(e.address)


def test_lspci_parser_reads_the_notes_output() -> None:
    es = F.parse_lspci_nnk(SAMPLE_LSPCI)
    assert [(e.address, e.vendor, e.device, e.driver) for e in es] == [
        ("0000:01:00.0", "10de", "1e84", None), ("0000:01:00.1", "10de", "10f8", "snd_hda_intel")]
    assert es[0].modules == ("nvidiafb", "nouveau") and es[0].subsystem == "10de:139f"


@given(st.one_of(texts, mutate(SAMPLE_CPUINFO)))
def test_cpuinfo_parser_raises_only_valueerror(s: str) -> None:
    try:
        c = F.parse_cpuinfo(s)
    except ValueError:
        return
    assert c.count >= 1


@given(st.one_of(texts, st.lists(st.sampled_from(["intel_iommu=on", 'x="a b"', "--", "iommu=pt", "=", '"', "vfio-pci.ids=10de:1e84"])).map(" ".join)))
def test_cmdline_parser_never_crashes(s: str) -> None:
    c = F.parse_cmdline(s, "x")
    for a in c.args:
        assert a.key is not None


def test_cmdline_last_occurrence_and_dash_underscore() -> None:
    c = F.parse_cmdline('BOOT_IMAGE=/vmlinuz intel_iommu=off intel_iommu=on,sm_on vfio-pci.ids=10de:1e84 x="a b"', "p")
    assert c.last("intel_iommu") == "on,sm_on"
    assert c.option_values("intel_iommu") == ["off", "on", "sm_on"]
    assert c.values("vfio_pci.ids") == ["10de:1e84"]
    assert c.last("x") == "a b"


@given(st.one_of(texts, mutate(SAMPLE_GRUB)))
def test_shell_parser_raises_only_valueerror(s: str) -> None:
    try:
        F.parse_shell_assignments(s)
    except ValueError:
        pass


# A lone "$" is left out: special parameters ($$, $1, $?) never appear in grub defaults and
# have no static value; references to earlier variables are generated as whole tokens.
VALUE_CHARS = st.sampled_from(list("abc=_-., \"'\\") + ["intel_iommu=on", "quiet", "$GRUB_X", "${GRUB_X}"])


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GRUB_X", "GRUB_CMDLINE_LINUX"]),
                          st.sampled_from(["dq", "sq", "bare"]),
                          st.lists(VALUE_CHARS, max_size=6).map("".join)), min_size=1, max_size=4))
def test_shell_parser_agrees_with_sh(assigns) -> None:  # type: ignore[no-untyped-def]
    lines = []
    for name, q, v in assigns:
        if q == "dq":
            v2 = v.replace("\\", "\\\\").replace('"', '\\"').replace("`", "")
            lines.append(f'{name}="{v2}"')
        elif q == "sq":
            lines.append(f"{name}='{v.replace(chr(39), '')}'")
        else:
            safe = "".join(ch for ch in v if ch.isalnum() or ch in "_-.=")
            lines.append(f"{name}={safe}")
    text = "\n".join(lines) + "\n"
    ours = F.parse_shell_assignments(text)
    p = subprocess.run(["sh", "-c", text + 'printf "%s\\0%s" "$GRUB_X" "$GRUB_CMDLINE_LINUX"'],
                       capture_output=True, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert p.returncode == 0
    gx, gc = p.stdout.decode().split("\0")
    assert ours.get("GRUB_X", "") == gx
    assert ours.get("GRUB_CMDLINE_LINUX", "") == gc


@given(texts)
def test_other_parsers_never_crash(s: str) -> None:
    F.parse_kernel_config(s)
    F.parse_os_release(s)
    F.parse_modprobe(s, "f")
    F.parse_module_list(s, "f")
    F.parse_grub_cfg_default_linux(s)
    F.parse_iommu_group_links(s.splitlines())


def test_truncated_dmesg_still_yields_lines() -> None:
    log = F.KernelLog(tuple("[    0.152653] DMAR: IOMMU enab".splitlines()), "dmesg")
    assert log.grep("DMAR") == ["[    0.152653] DMAR: IOMMU enab"]


@given(st.text(max_size=30))
def test_pci_address_normalizer(s: str) -> None:
    try:
        a = F.normalize_pci_address(s)
    except ValueError as e:
        assert "not a PCI address" in str(e)
        return
    assert F.PCI_ADDR_RE.match(a) and len(a) == 12
