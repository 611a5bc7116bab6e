"""LiveHost reads the kernel log from /dev/kmsg as `dmesg` prints it, instead of running `dmesg`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from doctor.host import LiveHost, kmsg_line, read_kmsg


def test_records_are_formatted_as_dmesg_prints_them() -> None:
    assert kmsg_line(b"6,339,5081262,-;DMAR: IOMMU enabled\n") == "[    5.081262] DMAR: IOMMU enabled"
    assert kmsg_line(b"4,1,0,-,caller=T1;x\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:02.0\n") == "[    0.000000] x"
    assert kmsg_line(b"4,2,123456789012,c;a\\x0ab\\x5cz\\xZZ\n") == (
        "[123456.789012] a\n" + " " * 16 + "b\\z\\xZZ")  # escapes decoded, a bad one kept, further lines indented
    assert kmsg_line(b"6,3,1,-;caf\xc3\xa9 \xff\n") == "[    0.000001] caf\u00e9 \ufffd"
    for junk in (b"", b"no separator", b"6,x,1,-;text", b"6,1;short head"):
        assert kmsg_line(junk) is None


def test_unreadable_device_is_none_never_an_error(tmp_path) -> None:
    assert read_kmsg(str(tmp_path / "nope")) is None
    link = tmp_path / "link"
    link.symlink_to("/dev/kmsg")
    assert read_kmsg(str(link)) is None  # never follows a link


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK) or shutil.which("dmesg") is None,
                    reason="needs a readable /dev/kmsg and dmesg (root, or dmesg_restrict=0)")
def test_same_text_as_dmesg_on_this_machine() -> None:
    """The claim, on the real kernel: what LiveHost.dmesg() reads equals what `dmesg` prints (records
    logged between the two reads are the only allowed difference: compare the common part)."""
    ours = read_kmsg()
    assert ours is not None
    theirs = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    a, b = ours.splitlines(), theirs.splitlines()
    n = min(len(a), len(b))
    assert n > 0 and a[:n] == b[:n]
    r = LiveHost().dmesg()
    assert r.ok and r.argv == ("dmesg",) and r.stdout.splitlines()[:n] == b[:n]
