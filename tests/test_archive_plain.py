"""doctor.archive reads a plain archive (ustar headers, pax records of path/size/times/owners,
files, folders and symlinks: what `record` and Python's tarfile write) itself, and leaves anything
else to tarfile. Whatever the bytes, load_archive must give what the tarfile reader gives: the same
tree, or the same one-line refusal."""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import pytest

from doctor import archive
from doctor.errors import SnapshotError

FIX = Path(__file__).resolve().parent.parent / "fixtures"
SNAPSHOTS = sorted(p.name for p in FIX.iterdir() if (p / "manifest.json").is_file())


def _pack(src: Path, fmt: int, mode: str = "w:gz", extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        tf.add(src, arcname="snapshot")
        for ti in extra or []:
            tf.addfile(ti, io.BytesIO(b"x" * ti.size) if ti.isfile() else None)
    return buf.getvalue()


def _load(fn, data: bytes, tmp_path: Path) -> object:  # type: ignore[no-untyped-def]
    p = tmp_path / "a.tar"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        t = fn(repr(str(p)), fd)
        return ("tree", t.files if t else None, t.links if t else None, t.dirs if t else None, t.prefix if t else None)
    except SnapshotError as e:
        return ("refused", str(e))
    finally:
        os.close(fd)


def _same(data: bytes, tmp_path: Path) -> object:
    got = _load(archive.load_archive, data, tmp_path)
    assert got == _load(archive.load_with_tarfile, data, tmp_path)
    return got


def test_there_are_snapshots_to_pack() -> None:
    assert len(SNAPSHOTS) >= 5, SNAPSHOTS


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_recorded_snapshots_are_read_plainly_to_the_same_tree(name: str, tmp_path: Path) -> None:
    data = _pack(FIX / name, tarfile.PAX_FORMAT)  # what record writes (tarfile's default format, gzip)
    assert _load(archive._load_plain, data, tmp_path)[1] is not None, "a recorded snapshot should be plain"
    assert _same(data, tmp_path)[0] == "tree"


@pytest.mark.parametrize("fmt, mode", [(tarfile.USTAR_FORMAT, "w"), (tarfile.GNU_FORMAT, "w:bz2"),
                                        (tarfile.PAX_FORMAT, "w:xz"), (tarfile.GNU_FORMAT, "w")])
def test_other_formats_and_compressions_give_the_same_tree(fmt: int, mode: str, tmp_path: Path) -> None:
    long = tarfile.TarInfo("snapshot/root/" + "d" * 90 + "/" + "f" * 60)  # past ustar's 100: prefix or pax path
    long.size = 700
    link = tarfile.TarInfo("snapshot/root/lnk")
    link.type, link.linkname = tarfile.SYMTYPE, "d" * 90
    assert _same(_pack(FIX / "lab-intel-partial", fmt, mode, [long, link]), tmp_path)[0] == "tree"


def test_what_tarfile_refuses_or_names_is_still_refused_the_same_way(tmp_path: Path) -> None:
    cases = []
    for kind in (tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.DIRTYPE):
        ti = tarfile.TarInfo("snapshot/root/../../evil" if kind == tarfile.DIRTYPE else "snapshot/root/x")
        ti.type = kind
        ti.linkname = "snapshot/manifest.json" if kind == tarfile.LNKTYPE else ""
        cases.append(_pack(FIX / "lab-intel-partial", tarfile.PAX_FORMAT, "w", [ti]))
    ti = tarfile.TarInfo("snapshot/manifest.json")  # a conflicting duplicate
    ti.size = 3
    cases.append(_pack(FIX / "lab-intel-partial", tarfile.PAX_FORMAT, "w", [ti]))
    for data in cases:
        assert _same(data, tmp_path)[0] == "refused"


def test_damaged_archives_give_what_tarfile_gives(tmp_path: Path) -> None:
    """Random byte damage and truncation of an uncompressed archive, mostly in its headers."""
    good = _pack(FIX / "lab-intel-partial", tarfile.PAX_FORMAT, "w")
    rng = random.Random(16)
    outcomes = set()
    for i in range(400):
        data = bytearray(good)
        if i % 5 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            block = rng.randrange(len(data) // 512) * 512
            for _ in range(rng.randint(1, 3)):
                data[block + rng.choice([rng.randrange(512), rng.randrange(100), rng.randrange(100, 157),
                                         rng.randrange(329, 345)])] = rng.choice([rng.randrange(256), 0x80, 0x20, 0x38])
            if i % 2:  # a header damaged past its checksum: the checksum made to match again
                hdr = data[block:block + 512]
                hdr[148:156] = b" " * 8
                data[block + 148:block + 156] = b"%06o\0 " % sum(hdr)
        outcomes.add(_same(bytes(data), tmp_path)[0])
    assert outcomes == {"tree", "refused"}
