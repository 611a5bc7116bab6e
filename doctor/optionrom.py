"""Reading a GPU's option ROM, only when asked (`gpudoctor check --read-rom` / `--rom FILE`).

The read is an action of the CLI (`LiveHost.read_option_rom`, called before the checks run), never
a fact accessor: the facts only hand the checks what the CLI read or loaded.

Reading sysfs `rom` means writing 1 to it first (the kernel then maps the ROM: it enables the
ROM BAR's decode, or points at the shadow copy at 0xC0000 for the boot display), reading it,
and writing 0 back. That changes the device's state for a moment and needs root, so gpudoctor
never does it on its own.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from doctor.errors import BadInput, FactUnknown, OptionRomUnreadable


class _Runs(Protocol):
    """What a ROM read needs of its host: the kernel's log (its words on a failed read)."""

    def dmesg(self) -> Any: ...  # noqa: E704

# The PCI spec's ROM BAR is at most 16 MiB; anything larger is not a ROM dump.
MAX_ROM = 16 * 1024 * 1024


def load_dump(path: str) -> bytes:
    """The bytes of a ROM dump given on the command line; BadInput (a clear one-line error) when
    the file cannot be used. An empty file is returned as b"": that is evidence (a failed
    `cat rom > dump` leaves one), judged by the check."""
    try:
        if os.path.isdir(path):
            raise BadInput(f"--rom {path}: is a folder, not a ROM dump")
        size = os.path.getsize(path)
        if size > MAX_ROM:
            raise BadInput(f"--rom {path}: {size} bytes, larger than any PCI option ROM (16 MiB): not a ROM dump")
        with open(path, "rb") as f:
            return f.read(MAX_ROM + 1)
    except FileNotFoundError:
        raise BadInput(f"--rom {path}: no such file") from None
    except PermissionError:
        raise BadInput(f"--rom {path}: not readable (permission denied)") from None
    except OSError as e:
        raise BadInput(f"--rom {path}: cannot read it: {e.strerror or e}") from None


def _kernel_rom_lines(host: _Runs, address: str) -> tuple[str, ...]:
    """What the kernel just said about this device's ROM (best effort: dmesg may be restricted)."""
    r = host.dmesg()  # Host.dmesg: /dev/kmsg on a live host, as the kernel_log fact reads it
    if not r.ok:
        return ()
    lines = [ln for ln in r.stdout.splitlines() if address in ln and ("PCI ROM header" in ln or "image in the PCI ROM" in ln)]
    return tuple(lines[-3:])


def read_live(host: _Runs, address: str) -> bytes:
    """Read /sys/bus/pci/devices/ADDRESS/rom the way the kernel asks: write 1, read, write 0.

    FactUnknown where the read cannot be tried (no attribute, not root); OptionRomUnreadable
    where the kernel refuses the ROM itself (`Input/output error`: no valid image)."""
    path = f"/sys/bus/pci/devices/{address}/rom"
    settle = f"sudo gpudoctor check --read-rom --gpu {address}"
    if not os.path.exists(path):
        raise FactUnknown(f"option ROM of {address}", f"{path} does not exist (no ROM for the kernel to show)", settle)
    try:
        with open(path, "wb", buffering=0) as f:
            f.write(b"1")
    except PermissionError:
        raise FactUnknown(f"option ROM of {address}", f"writing 1 to {path} needs root", settle) from None
    except OSError as e:
        raise FactUnknown(f"option ROM of {address}", f"writing 1 to {path} failed: {e.strerror or e}", settle) from None
    try:
        chunks: list[bytes] = []
        total = 0
        with open(path, "rb", buffering=0) as f:
            while total <= MAX_ROM:
                chunk = f.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise OptionRomUnreadable(path, e.strerror or str(e), _kernel_rom_lines(host, address)) from None
    finally:
        try:
            with open(path, "wb", buffering=0) as f:
                f.write(b"0")
        except OSError:
            pass
