"""A nested guest for the lab's libvirt tests: the lab guest's own libvirt boots Debian's kernel
(the lab's cached one) with a tiny busybox initramfs whose /init prints the PCI ids the nested
kernel enumerated on its serial console and powers off. So "the guest sees the GPU" is asked of
a real guest kernel, not only of QEMU's monitor.

Pure helpers (no guest needed): the initramfs bytes, the edit that turns a domain gpudoctor
defined into a direct-kernel boot with a serial log, and the parser of what the probe printed.
"""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET

from .cache import _busybox, _Cpio

MARK = "LAB-NESTED-PCI"
END = "LAB-NESTED-PCI-END"
# quiet: the nested kernel's log over an emulated UART inside TCG inside TCG costs seconds;
# panic=-1: a kernel that cannot run /init reboots at once (the test then times out on END,
# with the serial log in its message) instead of hanging.
CMDLINE = "console=ttyS0 quiet panic=-1 rdinit=/init"

PROBE_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "{MARK}-BEGIN $(uname -r) uptime $(cut -d' ' -f1 /proc/uptime)"
for d in /sys/bus/pci/devices/*; do
  v=$(cat "$d/vendor"); p=$(cat "$d/device"); c=$(cat "$d/class")
  echo "{MARK} ${{d##*/}} ${{v#0x}}:${{p#0x}} ${{c#0x}}"
done
echo "{END}"
sync
poweroff -f
"""

LINE_RE = re.compile(rf"^{MARK} ([0-9a-f]{{4}}:[0-9a-f]{{2}}:[0-9a-f]{{2}}\.[0-7]) ([0-9a-f]{{4}}:[0-9a-f]{{4}}) ([0-9a-f]{{6}})\s*$")


def probe_initrd() -> bytes:
    """gzip'ed newc cpio: the host's static busybox and PROBE_INIT as /init."""
    c = _Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)  # no devtmpfs on the initramfs: the kernel opens this for /init
    c.chardev("dev/null", 1, 3)
    c.file("bin/busybox", _busybox().read_bytes(), 0o755)
    c.file("init", PROBE_INIT.encode(), 0o755)
    return gzip.compress(c.finish(), compresslevel=1)


def direct_kernel(xml: str, kernel: str, initrd: str, serial_log: str, cmdline: str = CMDLINE) -> str:
    """The same domain, booting KERNEL/INITRD with CMDLINE, its serial port written to SERIAL_LOG
    (a file chardev; the console element follows the serial port, so it is dropped and libvirt adds
    it back). Everything else (the hostdevs, their guest addresses) is left as it was."""
    dom = ET.fromstring(xml)
    os_ = dom.find("os")
    if os_ is None:
        raise ValueError("domain has no <os>")
    for tag, text in (("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline)):
        for old in os_.findall(tag):
            os_.remove(old)
        ET.SubElement(os_, tag).text = text
    devices = dom.find("devices")
    if devices is None:
        raise ValueError("domain has no <devices>")
    for tag in ("serial", "console"):
        for old in devices.findall(tag):
            devices.remove(old)
    ser = ET.SubElement(devices, "serial", {"type": "file"})
    ET.SubElement(ser, "source", {"path": serial_log, "append": "off"})
    ET.SubElement(ser, "target", {"port": "0"})
    return ET.tostring(dom, encoding="unicode")


def parse_probe(console: str) -> dict[str, tuple[str, str]] | None:
    """PCI address -> (vendor:device, class) as the nested kernel listed them; None until END."""
    lines = console.replace("\r", "").split("\n")
    if END not in (ln.strip() for ln in lines):
        return None
    out: dict[str, tuple[str, str]] = {}
    for ln in lines:
        m = LINE_RE.match(ln.strip())
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out
