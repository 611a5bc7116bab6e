"""Every kind of identifying value, planted in a recorded host and in a paste, in every
notation, is gone from every output: the recorded archive (members and their names),
`check --snapshot` as JSON, HTML and terminal text, `check --from` the same; one real value
gets one fake within one document; the facts the checks need survive redaction."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from doctor.facts import HostFacts
from doctor.host import CommandResult
from doctor.snapshot import DirHost, SnapshotHost, record

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "fixtures" / "lab-intel-shared-group"
GPU = "0000:01:00.0"

HOST_SHORT = "qz"  # a 2-letter hostname: the real one must go, ordinary words must stay
HOST_FQDN = "qz.ops-7731.internal"
MID = "4f0c2d9b8e7a41c3b5d6e7f8091a2b3c"
UUID = "5f1c2a9e-7b3d-4e21-9c8f-0a1b2c3d4e5f"
MAC = "3c:7c:3f:1a:2b:9d"
MAC2 = "52:54:00:ab:cd:ef"  # known only from /sys/class/net/*/address; seen bare in an interface name
IPV4 = "10.23.45.67"
GW4 = "10.23.45.1"
IPV6 = "fd12:3456:789a:1::42"
IPV6_FORMS = (IPV6, "FD12:3456:789A:0001:0000:0000:0000:0042", "fd12:3456:789a:1:0:0:0:42", "fd12:3456:789a:1::0.0.0.66")
DSN = "01-23-45-67-89-ab-cd-ef"
SERIALS = {"product_serial": "PF2XK9QZ", "board_serial": "BRD77Q1X", "disk": "S4EWNX0R123456"}
USER = "alice"


def mac_forms(mac: str) -> list[str]:
    h = mac.replace(":", "")
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [mac, mac.upper(), "-".join(pairs), "-".join(pairs).upper(), ".".join(h[i : i + 4] for i in range(0, 12, 4)), h]


def ip4_hex(ip: str) -> list[str]:
    b = ipaddress.IPv4Address(ip).packed
    return [b.hex(), b[::-1].hex()]


def forbidden() -> list[tuple[str, re.Pattern[bytes]]]:
    """(what, pattern) for every planted value in every notation, case-insensitive, text and hex."""
    out: list[tuple[str, str]] = [
        ("fqdn", re.escape(HOST_FQDN)),
        ("hostname", rf"(?<![A-Za-z0-9]){HOST_SHORT}(?![A-Za-z0-9])"),
        ("machine id", MID),
        ("uuid", UUID),
        ("uuid hex", UUID.replace("-", "")),
        ("ipv4", re.escape(IPV4) + r"(?!\d)"),
        ("gateway", re.escape(GW4) + r"(?!\d)"),
        ("dsn", DSN),
        ("dsn bytes", DSN.replace("-", "")),
        ("dsn bytes le", "".join(reversed(DSN.split("-")))),
        ("user", rf"(?<![A-Za-z0-9]){USER}(?![A-Za-z0-9])"),
    ]
    for m in (MAC, MAC2):
        out += [("mac", re.escape(f)) for f in mac_forms(m)]
    for ip in (IPV4, GW4):
        out += [("ipv4 hex", h) for h in ip4_hex(ip)]
    out += [("ipv6", re.escape(f)) for f in IPV6_FORMS]
    out += [("ipv6 hex", f"{int(ipaddress.IPv6Address(IPV6)):032x}")]
    out += [(f"serial {k}", v) for k, v in SERIALS.items()]
    return [(w, re.compile(p.encode(), re.I)) for w, p in out]


def leaks(data: bytes) -> list[str]:
    found = []
    for what, rx in forbidden():
        m = rx.search(data)
        if m:
            found.append(f"{what}: ...{data[max(0, m.start() - 40) : m.end() + 20]!r}")
    # DSN bytes as they sit in config space (binary, little-endian)
    if bytes(int(x, 16) for x in reversed(DSN.split("-"))) in data:
        found.append("dsn in binary config space")
    return found


CMDLINE = (
    f"BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=UUID={UUID} ro console=ttyS0 panic=-1 intel_iommu=on "
    f"systemd.machine_id={MID} ip={IPV4}::{GW4}:255.255.255.0:{HOST_SHORT.upper()}:eth0:off BOOTIF=01-{'-'.join(mac_forms(MAC)[2].split('-'))} "
    f"gd.u={{{UUID.upper()}}} gd.a={IPV6_FORMS[0]} gd.b={IPV6_FORMS[1]} gd.c={IPV6_FORMS[2]} gd.d={IPV6_FORMS[3]} "
    f"gd.m1={mac_forms(MAC)[0]} gd.m2={mac_forms(MAC)[3]} gd.m3={mac_forms(MAC)[4]} gd.h={HOST_FQDN.upper()} "
    f"gd.p=/home/{USER}/vfio.sh"
)


def _dmesg(base: str) -> str:
    lines = [
        f"[    0.000000] Command line: {CMDLINE}",
        f"[    0.000000] DMI: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16 {SERIALS['product_serial']} {SERIALS['board_serial']}",
        f"[    1.000000] e1000e 0000:02:00.0 eth0: (PCI Express:2.5GT/s:Width x1) {mac_forms(MAC)[1]}",
        f"[    1.100000] e1000e 0000:02:00.0 eth0: MAC {mac_forms(MAC)[2]} / {mac_forms(MAC)[4]} / {mac_forms(MAC)[5]}",
        f"[    1.200000] cdc_ether 2-1:1.0 enx{MAC2.replace(':', '')}: register 'cdc_ether'",
        f"[    1.300000] nvme nvme0: pci function 0000:03:00.0, serial {SERIALS['disk']}",
        f"[    2.000000] systemd[1]: Set hostname to <{HOST_FQDN}>.",
        f"[    2.100000] {HOST_SHORT.upper()} kernel: audit: {HOST_FQDN.title()} login by {USER} from /home/{USER}",
        *(f"[    3.00000{i}] IPv6: eth0: address {f} is ready" for i, f in enumerate(IPV6_FORMS)),
        f"[    4.000000] EXT4-fs (vda1): mounted filesystem {UUID.upper()} with ordered data mode; uuid {{{UUID}}}",
    ]
    return base + "\n".join(lines) + "\n"


def _config_with_dsn(cfg: bytes) -> bytes:
    """The GPU's config space, extended to 4 KiB with AER at 0x100 and the DSN at 0x148."""
    b = bytearray(cfg[:256].ljust(256, b"\0")) + bytearray(4096 - 256)
    b[0x100:0x104] = (0x0001 | 1 << 16 | 0x148 << 20).to_bytes(4, "little")  # AER, next 0x148
    b[0x148:0x14C] = (0x0003 | 1 << 16 | 0x000 << 20).to_bytes(4, "little")  # DSN, last
    b[0x14C:0x154] = bytes(int(x, 16) for x in reversed(DSN.split("-")))
    return bytes(b)


def planted_host(tmp: Path) -> DirHost:
    root = tmp / "root"
    shutil.copytree(BASE / "root", root, symlinks=True)
    man = json.loads((BASE / "manifest.json").read_text())
    cmds = {tuple(c["argv"]): CommandResult(tuple(c["argv"]), c["rc"], c["stdout"], c["stderr"]) for c in man["commands"]}
    cmds[("dmesg",)] = CommandResult(("dmesg",), 0, _dmesg(cmds[("dmesg",)].stdout), "")
    lspci = cmds[("lspci", "-Dnnk")].stdout + f"\tCapabilities: [148 v1] Device Serial Number {DSN}\n"
    cmds[("lspci", "-Dnnk")] = CommandResult(("lspci", "-Dnnk"), 0, lspci, "")
    w = lambda p, t: ((root / p.lstrip("/")).parent.mkdir(parents=True, exist_ok=True),  # noqa: E731
                      (root / p.lstrip("/")).write_bytes(t if isinstance(t, bytes) else t.encode()))
    w("/proc/sys/kernel/hostname", HOST_SHORT + "\n")
    w("/etc/hostname", HOST_FQDN + "\n")
    w("/etc/machine-id", MID + "\n")
    w("/etc/passwd", f"root:x:0:0:root:/root:/bin/bash\n{USER}:x:1000:1000:Alice:/home/{USER}:/bin/bash\n")
    w("/proc/cmdline", CMDLINE + "\n")
    w("/sys/class/dmi/id/product_serial", SERIALS["product_serial"] + "\n")
    w("/sys/class/dmi/id/board_serial", SERIALS["board_serial"] + "\n")
    net = root / "sys/devices/pci0000:00/0000:00:1c.1/0000:02:00.0/net/eth0"
    net.mkdir(parents=True, exist_ok=True)
    (net / "address").write_text(MAC + "\n")
    os.makedirs(root / "sys/devices/virtual/net/enx", exist_ok=True)
    (root / "sys/devices/virtual/net/enx/address").write_text(MAC2 + "\n")
    (root / "sys/class/net/enx").symlink_to("../../devices/virtual/net/enx")
    w("/sys/devices/pci0000:00/0000:00:1c.2/0000:03:00.0/nvme/nvme0/nvme0n1/device/serial", SERIALS["disk"] + "\n")
    os.makedirs(root / "sys/class/block", exist_ok=True)
    (root / "sys/class/block/nvme0n1").symlink_to("../../devices/pci0000:00/0000:00:1c.2/0000:03:00.0/nvme/nvme0/nvme0n1")
    w("/boot/loader/entries/" + f"{MID}-6.1.0-56-amd64.conf",
      f"title Debian\nversion 6.1.0-56-amd64\nmachine-id {MID}\nlinux /{MID}/6.1.0-56-amd64/linux\noptions {CMDLINE}\n")
    w("/etc/modprobe.d/vfio.conf", f"# written by /home/{USER}/vfio.sh on {HOST_FQDN}\noptions vfio-pci ids=10de:1e84\n")
    ip6 = f"{int(ipaddress.IPv6Address(IPV6)):032x}"
    w("/proc/net/route",
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      f"eth0\t00000000\t{ip4_hex(GW4)[1].upper()}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
      f"eth0\t{ip4_hex('10.23.45.0')[1].upper()}\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
      f"eth0\t{ip4_hex(IPV4)[1].upper()}\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0\n")
    w("/proc/net/ipv6_route",
      f"{'0' * 32} 00 {'0' * 32} 00 {ip6} 00000400 00000001 00000000 00000003     eth0\n"
      f"{ip6} 80 {'0' * 32} 00 {'0' * 32} 00000100 00000001 00000000 00000001     eth0\n"
      f"{'0' * 32} 00 {'0' * 32} 00 {'0' * 32} ffffffff 00000001 00000000 00200200       lo\n")
    cfg = root / "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/config"
    cfg.write_bytes(_config_with_dsn(cfg.read_bytes()))
    return DirHost(str(root), cmds)


# what the reports quote of the planted values (the cmdline is evidence); serials and the DSN
# are only in files and command outputs, checked in the archive
QUOTED = {"fqdn", "gateway", "hostname", "ipv4", "ipv6", "mac", "machine id", "user", "uuid"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False,
                       cwd=str(REPO), timeout=300)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return p


def _one_fake_each(doc: str, where: str) -> None:
    """One real value, one fake, within one document (where the planted forms are quoted)."""
    for keys in (("gd.a", "gd.b", "gd.c", "gd.d"), ("gd.m1", "gd.m2", "gd.m3")):
        seen = {k: re.findall(rf"{re.escape(k)}=(\S+?)(?=\s|\\|\"|<|$)", doc) for k in keys}
        vals = {k: v for k, v in seen.items() if v}
        assert len(vals) == len(keys), f"{where}: only {sorted(vals)} quoted"
        if keys[0] == "gd.a":
            canon = {ipaddress.IPv6Address(x).compressed for v in vals.values() for x in v}
        else:
            canon = {re.sub(r"[:.-]", "", x).lower() for v in vals.values() for x in v}
        assert len(canon) == 1, f"{where}: one real value got {canon}"
    uu = set(re.findall(r"root=UUID=(\S+?)(?=\s|\\|\"|$)", doc)) | {
        u.strip("{}").lower() for u in re.findall(r"gd\.u=(\S+?)(?=\s|\\|\"|$)", doc)}
    assert len(uu) <= 1, f"{where}: one UUID got {uu}"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DirHost]:
    tmp = tmp_path_factory.mktemp("planted")
    host = planted_host(tmp)
    out = tmp / "home" / USER / "snap.tar.gz"  # a user name in the path the reports name
    out.parent.mkdir(parents=True)
    record(str(out), host)
    return out, host


def test_recorded_archive_holds_no_planted_value(recorded: tuple[Path, DirHost]) -> None:
    out, _ = recorded
    bad = []
    with tarfile.open(out) as tf:
        for mem in tf.getmembers():
            bad += [f"member name {mem.name}: {x}" for x in leaks(mem.name.encode())]
            assert (mem.uname, mem.gname, mem.uid, mem.gid) == ("", "", 0, 0), mem.name  # not the recording user
            if mem.issym():
                bad += [f"link {mem.name} -> {mem.linkname}: {x}" for x in leaks(mem.linkname.encode())]
            f = tf.extractfile(mem) if mem.isfile() else None
            if f is not None:
                data = f.read()
                bad += [f"{mem.name}: {x}" for x in leaks(data)]
                if mem.name.endswith("manifest.json"):
                    manifest = data.decode()
    assert not bad, "\n".join(bad)
    m = json.loads(manifest)
    dmesg = next(c["stdout"] for c in m["commands"] if c["argv"] == ["dmesg"])
    _one_fake_each(dmesg, "recorded dmesg")
    fakes6 = {ipaddress.IPv6Address(x.split()[0]) for x in re.findall(r"address (\S+) is ready", dmesg)}
    assert len(fakes6) == 1, fakes6  # three notations, one fake
    assert "nvme0" in dmesg and "intel_iommu=on" in dmesg and "IOMMU" in dmesg  # ordinary words survive


def test_facts_survive_redaction(recorded: tuple[Path, DirHost]) -> None:
    out, host = recorded
    real, snap = HostFacts(host), SnapshotHost(str(out))
    try:
        red = HostFacts(snap)
        assert red.default_route_ifaces() == real.default_route_ifaces() == ("eth0",)
        cfg_real, cfg_red = real.pci_config(GPU), red.pci_config(GPU)
        assert len(cfg_red) == len(cfg_real) == 4096
        diff = [i for i in range(4096) if cfg_real[i] != cfg_red[i]]
        assert diff and min(diff) >= 0x14C and max(diff) < 0x154, diff  # only the DSN's 8 bytes changed
        assert [e.path for e in red.boot_entries()][0].startswith("/boot/loader/entries/")
        assert "intel_iommu=on" in red.cmdline().raw
    finally:
        snap.close()


@pytest.mark.parametrize("fmt", ["json", "html", "terminal"])
def test_check_snapshot_outputs_hold_no_planted_value(recorded: tuple[Path, DirHost], fmt: str, tmp_path: Path) -> None:
    out, _ = recorded
    # a snapshot recorded *without* redaction: the report's own redaction must catch everything
    raw = tmp_path / "home" / USER / "raw"
    raw.parent.mkdir(parents=True)
    record(str(raw), planted_host(tmp_path / "h"), redact=False)
    for snap in (out, raw):
        if fmt == "json":
            doc = _cli("check", "--snapshot", str(snap), "--gpu", GPU, "--json", "-v").stdout
            assert json.loads(doc)["redacted"] is True
        elif fmt == "html":
            html = tmp_path / f"r-{snap.name}.html"
            _cli("check", "--snapshot", str(snap), "--gpu", GPU, "--html", str(html), "--json")
            doc = html.read_text()
        else:
            doc = _cli("check", "--snapshot", str(snap), "--gpu", GPU, "-v").stdout
        assert not leaks(doc.encode()), (snap.name, leaks(doc.encode()))
        _one_fake_each(doc, f"{fmt} of {snap.name}")
    keep = _cli("check", "--snapshot", str(raw), "--gpu", GPU, "--json", "-v", "--no-redact").stdout
    assert QUOTED <= {x.split(":")[0] for x in leaks(keep.encode())}  # the planting is real: unredacted, it shows


PASTE = (
    f"{USER}@{HOST_SHORT}:~$ sudo dmesg\n" + _dmesg("")
    + f"{USER}@{HOST_SHORT}:~$ cat /proc/cmdline\n{CMDLINE}\n"
    + f"{USER}@{HOST_SHORT}:~$ sudo lspci -vvv\n"
    "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2080] [10de:1e84] (rev a1)\n"
    f"\tCapabilities: [148 v1] Device Serial Number {DSN}\n"
    f"\tProduct serial number: {SERIALS['product_serial']}\n\tSerial number: {SERIALS['board_serial']}\n"
    f"\tSerialNumber: {SERIALS['disk']}\n"
)


@pytest.mark.parametrize("fmt", ["json", "html", "terminal"])
def test_check_from_outputs_hold_no_planted_value(fmt: str, tmp_path: Path) -> None:
    d = tmp_path / "home" / USER
    d.mkdir(parents=True)
    paste = d / "paste.txt"
    paste.write_text(PASTE)
    if fmt == "json":
        doc = _cli("check", "--from", str(paste), "--json", "-v").stdout
        json.loads(doc)
    elif fmt == "html":
        html = tmp_path / "r.html"
        _cli("check", "--from", str(paste), "--html", str(html), "--json")
        doc = html.read_text()
    else:
        doc = _cli("check", "--from", str(paste), "-v").stdout
    assert not leaks(doc.encode()), leaks(doc.encode())
    _one_fake_each(doc, f"--from {fmt}")
    keep = _cli("check", "--from", str(paste), "--json", "-v", "--no-redact").stdout
    assert QUOTED <= {x.split(":")[0] for x in leaks(keep.encode())}


# ---------------------------------------------------------------------------
# notation: one real value, one fake, whatever the spelling


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from doctor.redact import Redactor, mac_key  # noqa: E402


@given(st.binary(min_size=6, max_size=6).filter(lambda b: b not in (b"\0" * 6, b"\xff" * 6) and b[0] != 2))
def test_a_mac_in_every_notation_gets_one_fake(b: bytes) -> None:
    mac = ":".join(f"{x:02x}" for x in b)
    forms = mac_forms(mac)
    red = Redactor()
    red.learn(f"link {forms[0]}")  # the bare form is only known once seen in another notation
    out = [red.text(f"x {f} y") for f in forms]
    fakes = {mac_key(o.split()[1]) for o in out}
    assert len(fakes) == 1 and None not in fakes, out
    assert not any(re.search(re.escape(f), o, re.I) for f in forms for o in out)


@given(st.integers(min_value=1, max_value=2**128 - 1).map(ipaddress.IPv6Address).filter(
    lambda ip: not (ip.is_loopback or ip in ipaddress.IPv6Network("2001:db8::/32"))))
def test_an_ipv6_address_in_every_notation_gets_one_fake(ip: ipaddress.IPv6Address) -> None:
    red = Redactor()
    mixed = ":".join(ip.exploded.split(":")[:6]) + ":" + str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    forms = {ip.compressed, ip.exploded, ip.exploded.upper(), ":".join(f"{int(g, 16):x}" for g in ip.exploded.split(":")), mixed}
    out = {red.text(f"addr {f} up").split()[1] for f in forms}
    assert len(out) == 1 and ipaddress.IPv6Address(out.pop()) in ipaddress.IPv6Network("2001:db8::/32"), forms


def test_a_short_hostname_goes_in_any_case_and_ordinary_words_stay() -> None:
    red = Redactor(["qz"])
    s = "qz QZ Qz booted; qz.local answers; qz.swappiness=10 kqz qzx sqz qz-2 my_qz /srv/qz/disk <qz>"
    assert red.text(s) == ("host-1 host-1 host-1 booted; host-1.local answers; qz.swappiness=10 kqz qzx sqz qz-2 my_qz "
                           "/srv/host-1/disk <host-1>")


def test_a_hostname_that_is_a_word_of_the_reports_goes_in_the_hosts_own_case() -> None:
    """A real VM named `vm`: 'VM' in the doctor's own words stays; the name as the host wrote it goes."""
    red = Redactor(["vm"])
    s = "vm VM Vm booted; vm.local answers; vm.swappiness=10 kvm vmx svm vm-2 my_vm /srv/vm/disk <vm>"
    assert red.text(s) == ("host-1 VM Vm booted; host-1.local answers; vm.swappiness=10 kvm vmx svm vm-2 my_vm "
                           "/srv/host-1/disk <host-1>")
