"""The nested probe's pieces, without booting anything: the initramfs the nested guest kernel
unpacks, the domain edit that boots it, and the parser of what it prints on ttyS0."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET

import pytest

from doctor.vm.xml import DomainSpec, UnitFunction, build_xml
from lab.nested import CMDLINE, END, MARK, PROBE_INIT, direct_kernel, parse_probe, probe_initrd


def _cpio_names(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc cpio archive."""
    out, i = {}, 0
    while True:
        hdr = data[i : i + 110]
        assert hdr[:6] == b"070701", hdr[:6]
        f = [int(hdr[6 + 8 * k : 14 + 8 * k], 16) for k in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[i + 110 : i + 110 + namesize - 1].decode()
        i += 110 + namesize
        i += -i % 4
        body = data[i : i + size]
        i += size
        i += -i % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_probe_initrd_has_busybox_init_and_a_console():
    files = _cpio_names(gzip.decompress(probe_initrd()))
    mode, init = files["init"]
    assert mode == 0o100755 and init == PROBE_INIT.encode()
    assert files["bin/busybox"][1][:4] == b"\x7fELF"
    assert files["dev/console"][0] == 0o020600  # the kernel opens it for /init's stdout
    assert init.startswith(b"#!/bin/busybox sh\n") and b"poweroff -f" in init


def _gpudoctor_xml() -> str:
    unit = tuple(UnitFunction(f"0000:01:00.{f}", f"fn {f}") for f in range(4))
    return build_xml(DomainSpec("lab-nested", 256, 1, "bios", unit, network=None, virt_type="qemu"))


def test_direct_kernel_keeps_the_hostdevs_and_logs_the_serial_port():
    before = ET.fromstring(_gpudoctor_xml())
    after = ET.fromstring(direct_kernel(_gpudoctor_xml(), "/b/vmlinuz", "/b/probe.gz", "/l/serial.log"))
    assert after.findtext("os/kernel") == "/b/vmlinuz"
    assert after.findtext("os/initrd") == "/b/probe.gz"
    assert after.findtext("os/cmdline") == CMDLINE
    assert [ET.tostring(h) for h in after.iter("hostdev")] == [ET.tostring(h) for h in before.iter("hostdev")]
    (ser,) = after.findall("devices/serial")
    assert ser.get("type") == "file" and ser.find("source").get("path") == "/l/serial.log"
    assert after.findall("devices/console") == []


def test_direct_kernel_refuses_a_domain_without_os():
    with pytest.raises(ValueError, match="<os>"):
        direct_kernel("<domain><devices/></domain>", "k", "i", "l")


def test_parse_probe_waits_for_the_end_line_and_reads_each_function():
    lines = [
        "[    1.0] some kernel line",
        f"{MARK}-BEGIN 6.1.0-57-amd64",
        f"{MARK} 0000:00:01.0 1234:1111 030000\r",
        f"{MARK} 0000:01:00.1 8086:293e 040300",
        f"{MARK} garbage",
    ]
    assert parse_probe("\n".join(lines)) is None
    got = parse_probe("\n".join([*lines, END, "[    2.0] reboot: Power down"]))
    assert got == {"0000:00:01.0": ("1234:1111", "030000"), "0000:01:00.1": ("8086:293e", "040300")}
