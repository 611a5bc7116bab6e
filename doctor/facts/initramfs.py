"""The initramfs image of the running kernel, read as data (cpio, compressed or not)."""

from __future__ import annotations

import re
from collections.abc import Callable

from doctor.datarecord import record
from doctor.errors import FactUnknown, NotCaptured
from doctor.facts.read import HostReader, fact


@record(frozen=True)
class InitramfsImage:
    path: str
    segments: tuple[str, ...]  # "cpio", "gzip", "zstd", ... in order
    names: frozenset[str]  # every path in the archive(s), without a leading "./" or "/"
    files: tuple[tuple[str, bytes], ...]  # contents of the small files we care about (modprobe.d, conf)
    undecoded: str | None = None  # a compression this Python cannot decode (the rest is unknown)

    def has_module(self, name: str) -> bool:
        want = {name.replace("-", "_"), name.replace("_", "-")}
        for n in self.names:
            base = n.rsplit("/", 1)[-1]
            for suf in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if base.endswith(suf) and base[: -len(suf)] in want:
                    return True
        return False

    def file(self, name: str) -> bytes | None:
        for n, data in self.files:
            if n == name:
                return data
        return None


_CPIO_KEEP = re.compile(r"^(usr/)?(etc|lib)/modprobe\.d/[^/]+\.conf$|^conf/modules$|^etc/modules-load\.d/[^/]+\.conf$"
                        r"|^scripts/(init-top|init-premount)/[^/]+$")


def _decompressor(data: bytes) -> tuple[str, Callable[[bytes], bytes] | None]:
    import bz2
    import gzip
    import lzma

    if data[:2] == b"\x1f\x8b":
        return "gzip", lambda b: gzip.decompress(b)
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz", lambda b: lzma.decompress(b, format=lzma.FORMAT_XZ)
    if data[:3] == b"\x5d\x00\x00":
        return "lzma", lambda b: lzma.decompress(b, format=lzma.FORMAT_ALONE)
    if data[:3] == b"BZh":
        return "bzip2", bz2.decompress
    if data[:4] == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14

            return "zstd", zstd.decompress
        except ImportError:
            try:
                import zstandard  # type: ignore[import-not-found]

                return "zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)
            except ImportError:
                return "zstd", _tool_decompressor("zstd")
    if data[:4] in (b"\x02\x21\x4c\x18", b"\x04\x22\x4d\x18"):
        try:
            import lz4.frame  # type: ignore[import-not-found]

            if data[:4] == b"\x04\x22\x4d\x18":
                return "lz4", lz4.frame.decompress
        except ImportError:
            pass
        return "lz4", _tool_decompressor("lz4")  # the legacy format (the kernel's lz4 -l) only the tool reads
    return "unknown", None


def _tool_decompressor(tool: str) -> Callable[[bytes], bytes] | None:
    """Where this Python has no decoder, the `zstd` / `lz4` program of the machine doing the
    analysis (not of the host analysed: this only decompresses bytes already read). Debian's
    python3 has no zstd module, but every host with a zstd initramfs has the zstd program."""
    import shutil
    import subprocess

    exe = shutil.which(tool)
    if exe is None:
        return None

    def run(b: bytes) -> bytes:
        # -dc reads concatenated frames; trailing data after the frames makes it fail, so
        # --no-check is not used and errors are reported as corrupt data by the caller.
        r = subprocess.run([exe, "-dc"], input=b, capture_output=True, timeout=120, check=False)
        if r.returncode != 0 and not r.stdout:
            raise ValueError(r.stderr.decode(errors="replace").strip() or f"{tool} -dc exited {r.returncode}")
        return r.stdout

    return run


def parse_initramfs(data: bytes, path: str) -> InitramfsImage:
    """Walk concatenated newc cpio archives, uncompressed or compressed (gzip, xz, lzma,
    bzip2; zstd/lz4 where this Python has a decoder): the early-microcode cpio first,
    then the main one. Raises ValueError for something that is not an initramfs."""
    names: set[str] = set()
    files: list[tuple[str, bytes]] = []
    segments: list[str] = []
    undecoded = None
    buf = data
    pos = 0
    while pos < len(buf):
        # skip the zero padding between archives
        while pos < len(buf) and buf[pos] == 0:
            pos += 1
        if pos >= len(buf):
            break
        if buf[pos : pos + 6] in (b"070701", b"070702"):
            segments.append("cpio")
            pos = _walk_cpio(buf, pos, names, files)
            continue
        kind, dec = _decompressor(buf[pos : pos + 8])
        if dec is None:
            if kind == "unknown" and not segments:
                raise ValueError(f"{path}: not a cpio archive or a known compression")
            undecoded = kind
            segments.append(kind)
            break
        segments.append(kind)
        try:
            out = dec(buf[pos:])
        except Exception as e:  # noqa: BLE001 - a corrupt image is reported, not raised
            raise ValueError(f"{path}: {kind} data does not decompress ({e})") from e
        # the decompressed stream is itself one or more cpio archives; nothing follows it we can find
        buf = out
        pos = 0
    if not segments:
        raise ValueError(f"{path}: empty")
    return InitramfsImage(path, tuple(segments), frozenset(names), tuple(files), undecoded)


def _walk_cpio(buf: bytes, pos: int, names: set[str], files: list[tuple[str, bytes]]) -> int:
    while pos + 110 <= len(buf):
        if buf[pos : pos + 6] not in (b"070701", b"070702"):
            raise ValueError(f"bad cpio header at offset {pos}")
        try:
            mode = int(buf[pos + 14 : pos + 22], 16)
            fsize = int(buf[pos + 54 : pos + 62], 16)
            nsize = int(buf[pos + 94 : pos + 102], 16)
        except ValueError as e:
            raise ValueError(f"bad cpio header at offset {pos}") from e
        name_start = pos + 110
        name = buf[name_start : name_start + nsize - 1].decode("utf-8", "replace")
        data_start = (name_start + nsize + 3) & ~3
        end = (data_start + fsize + 3) & ~3
        if name == "TRAILER!!!":
            return end
        n = name.lstrip("./").lstrip("/")
        if n:
            names.add(n)
            if (mode & 0o170000) == 0o100000 and fsize < 65536 and _CPIO_KEEP.match(n):
                files.append((n, buf[data_start : data_start + fsize]))
        pos = end
    return len(buf)


INITRAMFS_IMAGES = ("/boot/initrd.img-{release}", "/boot/initramfs-{release}.img", "/boot/initrd-{release}")


class InitramfsHostFacts(HostReader):
    @fact
    def initramfs(self) -> InitramfsImage:
        rel = self.kernel_release()
        settle = f"lsinitramfs /boot/initrd.img-{rel} | grep vfio  (dracut: lsinitrd | grep vfio)"
        for tmpl in INITRAMFS_IMAGES:
            p = tmpl.format(release=rel)
            try:
                data = self.host.read_bytes(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError as e:
                raise FactUnknown("initramfs image", f"{p}: {e.strerror or 'not readable'}", settle) from e
            except NotCaptured as e:
                raise FactUnknown("initramfs image", str(e), settle) from e
            try:
                return parse_initramfs(data, p)
            except ValueError as e:
                raise FactUnknown("initramfs image", str(e), settle) from e
        raise FactUnknown("initramfs image", f"none of {', '.join(t.format(release=rel) for t in INITRAMFS_IMAGES)} exists", settle)

