"""gpu.rom_readable's opt-in: `check --rom FILE` (a dump, any host) and `check --read-rom` (sysfs).

Every bad input is one clear line and exit 2, or a verdict: never a traceback."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys

import pytest

from doctor import optionrom
from doctor.errors import BadInput, FactUnknown, OptionRomUnreadable
from doctor.host import CommandResult, LiveHost
from tests.test_forecast import rom_image

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
SNAP = os.path.join(FIX, "lab-intel-partial")  # the lab card at 01:00.0, ROM BAR at 0xfe800000
GPU = "0000:01:00.0"


def gd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doctor.cli", *args], capture_output=True, text=True, check=False, timeout=120)


def rom_check(*args: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    p = gd("check", "--snapshot", SNAP, "--gpu", GPU, "--only", "gpu.rom_readable", "--json", "--no-redact", *args)
    assert "Traceback" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    return doc["results"][0], p


def test_without_opt_in_the_rom_is_unknown() -> None:
    r, p = rom_check()
    assert r["status"] == "unknown" and "--read-rom" in " ".join(r["messages"])


def test_a_good_dump_passes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "gpu.rom"
    f.write_bytes(rom_image(0, False) + rom_image(3, True))
    r, p = rom_check("--rom", str(f))
    assert p.returncode == 0 and r["status"] == "pass" and "EFI" in r["summary"]
    assert any(str(f) in e["source"] for e in r["evidence"])


@pytest.mark.parametrize("data, needle", [
    (b"", "is empty"),
    (b"\x00" * 4096, "no 0x55AA signature at offset 0 (starts 00 00)"),
    (b"GARBAGE!" * 100, "no 0x55AA signature"),
    (b"\x55\xaa\x10", "cut off"),
])  # fmt: skip
def test_bad_dumps_warn_with_the_reason_and_the_qemu_remedy(tmp_path, data, needle) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "gpu.rom"
    f.write_bytes(data)
    r, p = rom_check("--rom", str(f))
    assert p.returncode == 0  # advice: warns, never fails the run
    assert r["status"] == "warn" and needle in r["summary"], r
    assert "rombar=0" in r["remedy"]["text"] and "romfile=" in r["remedy"]["text"]


@pytest.mark.parametrize("args, needle", [
    (["--rom", "/nonexistent/gpu.rom", "--gpu", GPU], "--rom /nonexistent/gpu.rom: no such file"),
    (["--rom", FIX, "--gpu", GPU], "is a folder, not a ROM dump"),
    (["--rom", "/dev/null"], "--rom needs --gpu ADDR"),
    (["--rom", "/dev/null", "--gpu", "zz:zz"], "--gpu:"),
    (["--read-rom", "--rom", "/dev/null", "--gpu", GPU], "cannot be used together"),
    (["--read-rom", "--snapshot", SNAP], "--read-rom reads this host's sysfs, not a snapshot"),
    (["--rom", "/dev/null", "--gpu", GPU, "--from", os.path.join(FIX, "pasted")], "do not work with --from"),
])  # fmt: skip
def test_bad_options_are_exit_2_with_one_clear_line(args, needle) -> None:  # type: ignore[no-untyped-def]
    p = gd("check", *args)
    assert p.returncode == 2, p
    assert needle in p.stderr and p.stderr.startswith("gpudoctor: error:"), p.stderr
    assert "Traceback" not in p.stderr


def test_load_dump_refuses_a_file_too_large_for_a_rom(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "big.rom"
    with open(f, "wb") as fh:
        fh.truncate(optionrom.MAX_ROM + 1)
    with pytest.raises(BadInput, match="larger than any PCI option ROM"):
        optionrom.load_dump(str(f))


# --- read_live: write 1, read, write 0 (sysfs faked: only the kernel can fail a read with EIO) -----


class FakeRom:
    """Stands in for sysfs `rom`: records what was written, fails the read like the kernel does."""

    def __init__(self, data: bytes | None, write_error: OSError | None = None) -> None:
        self.data, self.write_error, self.written = data, write_error, []

    def open(self, path, mode="r", buffering=-1):  # type: ignore[no-untyped-def]
        assert path == f"/sys/bus/pci/devices/{GPU}/rom"
        if "w" in mode:
            if self.write_error is not None:
                raise self.write_error
            rom = self

            class W(io.RawIOBase):
                def writable(self) -> bool:
                    return True

                def write(self, b) -> int:  # type: ignore[no-untyped-def,override]
                    rom.written.append(bytes(b))
                    return len(b)
            return W()
        if self.data is None:
            class R(io.RawIOBase):
                def readable(self) -> bool:
                    return True

                def read(self, n=-1):  # type: ignore[no-untyped-def,override]
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
            return R()
        return io.BytesIO(self.data)


class FakeLive(LiveHost):
    def __init__(self, log: str = "") -> None:
        super().__init__()
        self.log = log

    def dmesg(self) -> CommandResult:
        return CommandResult(("dmesg",), 0, self.log, "")

    def run(self, argv, timeout=10.0):  # type: ignore[no-untyped-def]
        raise AssertionError(f"a ROM read runs no command: {argv}")


@pytest.fixture
def sysfs_rom(monkeypatch):  # type: ignore[no-untyped-def]
    def install(rom: FakeRom) -> FakeRom:
        monkeypatch.setattr(optionrom, "open", rom.open, raising=False)
        monkeypatch.setattr(optionrom.os.path, "exists", lambda p: p == f"/sys/bus/pci/devices/{GPU}/rom")
        return rom
    return install


def test_read_live_writes_1_reads_and_writes_0(sysfs_rom) -> None:  # type: ignore[no-untyped-def]
    rom = sysfs_rom(FakeRom(rom_image(0, True)))
    assert optionrom.read_live(FakeLive(), GPU) == rom_image(0, True)
    assert rom.written == [b"1", b"0"]


def test_read_live_eio_is_unreadable_with_the_kernels_words_and_still_writes_0(sysfs_rom) -> None:  # type: ignore[no-untyped-def]
    rom = sysfs_rom(FakeRom(None))
    log = ("[1.3] pci 0000:01:00.0: ROM [mem 0xffff0000-0xffffffff pref]\n"
           "[12.0] vfio-pci 0000:01:00.0: Invalid PCI ROM header signature: expecting 0xaa55, got 0x4556\n")
    with pytest.raises(OptionRomUnreadable) as ei:
        optionrom.read_live(FakeLive(log), GPU)
    assert ei.value.reason == "Input/output error"
    assert ei.value.kernel_lines == ("[12.0] vfio-pci 0000:01:00.0: Invalid PCI ROM header signature: expecting 0xaa55, got 0x4556",)
    assert rom.written == [b"1", b"0"]


def test_read_live_without_root_is_unknown(sysfs_rom) -> None:  # type: ignore[no-untyped-def]
    sysfs_rom(FakeRom(b"", write_error=PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(FactUnknown, match="needs root"):
        optionrom.read_live(FakeLive(), GPU)


def test_read_live_without_a_rom_attribute_is_unknown(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(optionrom.os.path, "exists", lambda p: False)
    with pytest.raises(FactUnknown, match="does not exist"):
        optionrom.read_live(FakeLive(), GPU)
