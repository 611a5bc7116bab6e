"""A snapshot read into memory, as data: nothing is extracted, no link is followed.

`open_source(path)` takes a folder or an archive. The path itself must be one of those:
a FIFO, a device or a socket is refused before it is opened. A folder is walked from
its descriptor (doctor.mirror.walk: O_NOFOLLOW, links read as data, special files
refused) under the same caps as an archive.

`load_archive(path, fd)` reads a .tar, .tar.gz, .tar.bz2 or .tar.xz member by member
(tarfile parses the headers; we decompress, with every read bounded) into a
`MemTree`: regular files and folders become data, symlink members are kept as their
target string and resolved later inside the mirror. Anything else is refused with one
line naming the member and why: absolute or `..` names, a member below a symlink or a
file member, hard links, devices, FIFOs, sparse files, conflicting duplicates. Caps
(each error names its cap): archive size, member count, size of one member, total
uncompressed size, path depth and length, header size.
"""

from __future__ import annotations

import bz2
import lzma
import os
import stat
import tarfile
import zlib
from typing import Any

from doctor.errors import SnapshotError
from doctor.mirror import MemTree, NotRegular, describe_mode, open_regular, read_fd, walk

MiB = 1024 * 1024
MAX_ARCHIVE_BYTES = 64 * MiB  # the file as given (compressed)
MAX_TOTAL_BYTES = 256 * MiB  # everything it unpacks to
MAX_MEMBER_BYTES = 64 * MiB  # one file in it
MAX_MEMBERS = 20_000  # a live record of a large host holds a few thousand
MAX_DEPTH = 64  # path components of one member
MAX_NAME = 4096  # characters of one member name or link target
MAX_READ = 1 * MiB  # one read tarfile may ask for (headers, long names)

_CHUNK = 256 * 1024
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def _mib(n: int) -> str:
    return f"{n // MiB} MiB"


class _Stream:
    """The archive's uncompressed bytes, read forward only, every read bounded and counted."""

    def __init__(self, fd: int, label: str) -> None:
        self.fd = fd
        self.label = label
        self.raw = 0
        self.pos = 0
        self.buf = b""
        self.off = 0
        self.tail = b""
        self.raw_eof = False
        head = os.pread(fd, 6, 0)
        self.comp = ("gzip" if head[:2] == b"\x1f\x8b" else "bzip2" if head[:3] == b"BZh"
                     else "xz" if head[:6] == b"\xfd7zXZ\x00" else "tar")
        self.dec: Any = {"gzip": lambda: zlib.decompressobj(31), "bzip2": bz2.BZ2Decompressor,
                         "xz": lzma.LZMADecompressor, "tar": lambda: None}[self.comp]()

    def _raw(self, n: int) -> bytes:
        if self.raw_eof:
            return b""
        b = os.read(self.fd, n)
        if not b:
            self.raw_eof = True
        self.raw += len(b)
        if self.raw > MAX_ARCHIVE_BYTES:
            raise SnapshotError(f"{self.label}: the archive is larger than {_mib(MAX_ARCHIVE_BYTES)} (cap on archive size)")
        return b

    def _produce(self, n: int) -> bytes:
        """Up to n more uncompressed bytes; b'' at the end of the stream."""
        if self.dec is None:
            return self._raw(n)
        try:
            while not self.dec.eof:
                if self.comp == "gzip":
                    if not self.tail:
                        self.tail = self._raw(_CHUNK)
                    out = self.dec.decompress(self.tail, n)
                    self.tail = self.dec.unconsumed_tail
                else:
                    out = self.dec.decompress(self._raw(_CHUNK) if self.dec.needs_input else b"", n)
                if out:
                    return bytes(out)
                if self.raw_eof and not self.tail and not self.dec.eof:
                    raise SnapshotError(f"{self.label}: corrupt or truncated archive (the {self.comp} data ends early)")
        except (zlib.error, OSError, EOFError, lzma.LZMAError) as e:
            raise SnapshotError(f"{self.label}: corrupt or truncated archive ({self.comp}: {e})") from e
        return b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_READ:
            raise SnapshotError(f"{self.label}: an archive header or read larger than {_mib(MAX_READ)} (cap on header size)")
        if len(self.buf) - self.off >= n:  # the common case: a 512-byte header from the buffer
            out = self.buf[self.off:self.off + n]
            self.off += n
        else:
            parts = [self.buf[self.off:]]
            have = len(parts[0])
            self.buf, self.off = b"", 0
            while have < n:
                more = self._produce(max(n - have, 64 * 1024))
                if not more:
                    break
                parts.append(more)
                have += len(more)
            joined = b"".join(parts)
            out, self.buf = joined[:n], joined[n:]
        self.pos += len(out)
        if self.pos > MAX_TOTAL_BYTES:
            raise SnapshotError(f"{self.label}: the archive unpacks to more than {_mib(MAX_TOTAL_BYTES)} "
                                "(cap on total uncompressed size)")
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, off: int, whence: int = 0) -> int:
        if whence != 0 or off < self.pos:
            raise SnapshotError(f"{self.label}: the archive is not a plain sequential tar (it asks to read backwards)")
        while self.pos < off:
            if not self.read(min(MAX_READ, off - self.pos)):
                break
        return self.pos

    def drain(self) -> None:
        """Read to the end: a truncated compressed stream is an error, and what follows the
        tar's end marker counts toward the size caps."""
        while self.read(MAX_READ):
            pass


def _parts(label: str, name: str) -> tuple[str, ...]:
    if len(name) > MAX_NAME:
        raise SnapshotError(f"{label}: archive member {name[:80]!r}... has a name longer than {MAX_NAME} characters "
                            "(cap on path length)")
    if name.startswith("/") or ".." in name.split("/"):
        raise SnapshotError(f"{label}: archive member {name!r} points outside the snapshot")
    parts = tuple(p for p in name.split("/") if p and p != ".")
    if len(parts) > MAX_DEPTH:
        raise SnapshotError(f"{label}: archive member {name[:80]!r}... is nested deeper than {MAX_DEPTH} folders "
                            "(cap on path depth)")
    return parts


def _refusal(m: tarfile.TarInfo) -> str | None:
    if m.islnk():
        return f"is a hard link (to {m.linkname!r})"
    if m.ischr() or m.isblk():
        return "is a device"
    if m.isfifo():
        return "is a FIFO"
    if m.issparse():
        return "is a sparse file (gpudoctor record writes none)"
    if not (m.isdir() or m.issym() or m.type in _FILE_TYPES):
        return f"is of tar type {m.type!r}, not a file, folder or symlink"
    return None


class _Builder:
    def __init__(self, label: str) -> None:
        self.label = label
        self.t = MemTree()
        self.total = 0

    def _err(self, name: str, why: str) -> SnapshotError:
        return SnapshotError(f"{self.label}: archive member {name!r} {why}")

    def _parent(self, name: str, parts: tuple[str, ...]) -> None:
        """Every folder above a member must be a folder (implicit ones are made), never a
        symlink member or a file member."""
        t = self.t
        for i in range(len(parts) - 1, 0, -1):
            key = "/" + "/".join(parts[:i])
            if key in t.dirs:
                break
            if key in t.links:
                raise self._err(name, f"goes through the symlink member {key[1:]!r}")
            if key in t.files:
                raise self._err(name, f"goes through the file member {key[1:]!r}")
        for i in range(1, len(parts)):
            t.dirs.add("/" + "/".join(parts[:i]))

    def add(self, m: tarfile.TarInfo, parts: tuple[str, ...], data: bytes | None) -> None:
        t = self.t
        if not parts:
            if not m.isdir():
                raise self._err(m.name, "names the archive's top but is not a folder")
            return
        self._parent(m.name, parts)
        key = "/" + "/".join(parts)
        have = "dir" if key in t.dirs else "link" if key in t.links else "file" if key in t.files else None
        kind = "dir" if m.isdir() else "link" if m.issym() else "file"
        same = (have is None or (have == kind == "dir") or (have == kind == "link" and t.links[key] == m.linkname)
                or (have == kind == "file" and t.files[key] == data))
        if not same:
            how = f"as a {have} and as a {kind}" if have != kind else f"as two {kind}s of different content"
            raise self._err(m.name, f"appears twice, {how} (conflicting duplicate)")
        if kind == "dir":
            t.dirs.add(key)
        elif kind == "link":
            if len(m.linkname) > MAX_NAME:
                raise self._err(m.name, f"is a symlink whose target is longer than {MAX_NAME} characters (cap on path length)")
            t.links[key] = m.linkname
        else:
            assert data is not None
            t.files[key] = data


def _read_member(s: _Stream, b: _Builder, m: tarfile.TarInfo) -> bytes:
    if m.size > MAX_MEMBER_BYTES:
        raise b._err(m.name, f"is {m.size} bytes, more than {_mib(MAX_MEMBER_BYTES)} (cap on the size of one file)")
    b.total += m.size
    if b.total > MAX_TOTAL_BYTES:
        raise SnapshotError(f"{b.label}: the archive's files hold more than {_mib(MAX_TOTAL_BYTES)} "
                            "(cap on total uncompressed size)")
    s.seek(m.offset_data)
    chunks = []
    left = m.size
    while left:
        c = s.read(min(left, MAX_READ))
        if not c:
            raise SnapshotError(f"{b.label}: corrupt or truncated archive (member {m.name!r} ends early)")
        chunks.append(c)
        left -= len(c)
    return b"".join(chunks)


def load_archive(label: str, fd: int) -> MemTree:
    """The archive open at fd (a regular file) as a MemTree of its snapshot folder (the archive's
    top, or its one top folder). SnapshotError for anything refused.

    A plain archive (what `record` and Python's tarfile write) is read by `_load_plain`; anything it
    does not take as plain, it leaves whole to `load_with_tarfile`, which alone refuses and names."""
    size = os.fstat(fd).st_size
    if size > MAX_ARCHIVE_BYTES:
        raise SnapshotError(f"{label}: the archive is {size} bytes, more than {_mib(MAX_ARCHIVE_BYTES)} (cap on archive size)")
    tree = _load_plain(label, fd)
    if tree is not None:
        return tree
    os.lseek(fd, 0, os.SEEK_SET)
    return load_with_tarfile(label, fd)


def load_with_tarfile(label: str, fd: int) -> MemTree:
    """load_archive's reader for every archive: tarfile parses the headers."""
    s = _Stream(fd, label)
    b = _Builder(label)
    try:
        tf = tarfile.open(fileobj=s, mode="r:")  # type: ignore[call-overload]
    except tarfile.TarError as e:
        if s.comp == "tar":
            raise SnapshotError(f"{label} is neither a snapshot folder nor a .tar.gz archive") from e
        raise SnapshotError(f"{label}: corrupt or truncated archive ({e})") from e
    count = 0
    try:
        while True:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()  # we keep our own mirror, not 50,000 TarInfo objects
            count += 1
            if count > MAX_MEMBERS:
                raise SnapshotError(f"{label}: the archive holds more than {MAX_MEMBERS} members (cap on member count)")
            parts = _parts(label, m.name)
            why = _refusal(m)
            if why:
                raise b._err(m.name, why)
            data = _read_member(s, b, m) if m.type in _FILE_TYPES else None
            b.add(m, parts, data)
        s.drain()
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as e:
        raise SnapshotError(f"{label}: corrupt or truncated archive ({e})") from e
    return _top(label, b.t)


class _NotPlain(Exception):
    """Something `_load_plain` leaves to tarfile (and to its refusals)."""


_PLAIN_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE}
_PAX_KEYS = {"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
_OCTAL = frozenset(b"01234567")
_BLOCK = tarfile.BLOCKSIZE


def _octal(field: bytes) -> int:
    """A header number as tarfile's nti reads it, for plain octal digits only."""
    digits = field.split(b"\0", 1)[0].strip()
    if not _OCTAL.issuperset(digits) or field[:1] in (b"\x80", b"\xff"):
        raise _NotPlain
    return int(digits, 8) if digits else 0


def _ascii(field: bytes) -> str:
    text = field.split(b"\0", 1)[0]
    if not text.isascii():
        raise _NotPlain
    return text.decode("ascii")


def _header(buf: bytes) -> tarfile.TarInfo | None:
    """A plain ustar header as tarfile's frombuf reads it (None: the end-of-archive block)."""
    if len(buf) != _BLOCK:
        raise _NotPlain
    if not buf.strip(b"\0"):
        return None
    if _octal(buf[148:156]) != sum(buf[:148]) + 256 + sum(buf[156:]) or buf[257:265] != b"ustar\x0000":
        raise _NotPlain
    for a, b in ((100, 108), (108, 116), (116, 124), (136, 148), (329, 337), (337, 345)):
        _octal(buf[a:b])  # tarfile checks these too
    m = tarfile.TarInfo(_ascii(buf[0:100]))
    m.type, m.size, m.linkname = buf[156:157], _octal(buf[124:136]), _ascii(buf[157:257])
    _ascii(buf[265:329])
    prefix = _ascii(buf[345:500])
    if m.type == tarfile.AREGTYPE and m.name.endswith("/"):
        m.type = tarfile.DIRTYPE
    if m.isdir():
        m.name = m.name.rstrip("/")
    if prefix:
        m.name = prefix + "/" + m.name
    return m


def _pax(data: bytes) -> dict[str, str]:
    """Strict `LEN KEY=VALUE\\n` records, ASCII, of the keys tarfile applies or ignores plainly."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos, pos + 12)
        if sp <= pos or not data[pos:sp].isdigit():
            raise _NotPlain
        end = pos + int(data[pos:sp])
        rec = data[sp + 1:end]
        if end > len(data) or not rec.endswith(b"\n") or b"=" not in rec or not rec.isascii():
            raise _NotPlain
        key, value = rec[:-1].decode("ascii").split("=", 1)
        if key not in _PAX_KEYS or (key == "size" and not value.isdigit()):
            raise _NotPlain
        out[key] = value
        pos = end
    return out


def _load_plain(label: str, fd: int) -> MemTree | None:
    """The archive as a MemTree when every member is plain: ustar headers with valid checksums and
    octal numbers, ASCII names, files, folders and symlinks, pax records only of path, linkpath,
    size and times or owners, the end block. None for anything else (tarfile then reads it all):
    what this takes, tarfile reads to the same tree (tests/test_archive_plain.py)."""
    s = _Stream(fd, label)
    b = _Builder(label)
    try:
        count = 0
        while True:
            m = _header(s.read(_BLOCK))
            if m is None:
                break
            pax: dict[str, str] = {}
            if m.type == tarfile.XHDTYPE:
                if m.size > 64 * 1024:
                    raise _NotPlain
                pax = _pax(s.read(-(-m.size // _BLOCK) * _BLOCK)[:m.size])
                m = _header(s.read(_BLOCK))
                if m is None:
                    raise _NotPlain
            if m.type not in _PLAIN_TYPES:
                raise _NotPlain
            if "path" in pax:
                m.name = pax["path"].rstrip("/")
            if "linkpath" in pax:
                m.linkname = pax["linkpath"]
            if "size" in pax:
                m.size = int(pax["size"])
            count += 1
            if count > MAX_MEMBERS:
                raise _NotPlain
            m.offset_data = s.pos
            data = _read_member(s, b, m) if m.type in _FILE_TYPES else None
            if data is not None and len(s.read(-m.size % _BLOCK)) != -m.size % _BLOCK:
                raise _NotPlain
            b.add(m, _parts(label, m.name), data)
        s.drain()
        return _top(label, b.t)
    except (_NotPlain, SnapshotError, ValueError):
        return None


def _top(label: str, t: MemTree) -> MemTree:
    """The snapshot folder: the archive's top if manifest.json is there, else its only top
    entry, which must be a real folder."""
    if "/manifest.json" in t.files or "/manifest.json" in t.links:
        return t
    tops = t.names("/")
    if len(tops) == 1:
        k = "/" + tops[0]
        if k in t.links:
            raise SnapshotError(f"{label}: the archive's top folder {tops[0]!r} is a symlink member, not a folder: refused")
        if k in t.dirs:
            return t.sub(tops[0])
    raise SnapshotError(f"{label}: archive holds no manifest.json")


def open_source(path: str) -> MemTree:
    """The snapshot at path (a folder or an archive) as a MemTree of its snapshot folder."""
    label = repr(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise SnapshotError(f"snapshot {label} does not exist") from e
    except OSError as e:
        raise SnapshotError(f"snapshot {label} cannot be read ({e.strerror or e})") from e
    if stat.S_ISDIR(st.st_mode):
        return load_folder(label, path)
    try:
        fd = open_regular(path)
    except NotRegular as e:
        raise SnapshotError(f"{label} is {e.what}, not a snapshot folder or archive: refused without reading it") from e
    except OSError as e:
        raise SnapshotError(f"snapshot {label} cannot be read ({e.strerror or e})") from e
    try:
        return load_archive(label, fd)
    finally:
        os.close(fd)


def load_folder(label: str, path: str) -> MemTree:
    """A snapshot folder read whole, under the archive caps: files, folders and links (as
    their target string) only; anything else is refused, naming it."""
    t = MemTree()
    count = total = 0
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotError(f"snapshot {label} cannot be read ({e.strerror or e})") from e
    try:
        for ent in walk(top, max_depth=MAX_DEPTH):
            count += 1
            key = "/" + "/".join(ent.parts)
            if count > MAX_MEMBERS:
                raise SnapshotError(f"{label}: the folder holds more than {MAX_MEMBERS} entries (cap on member count)")
            mode = ent.st.st_mode
            if stat.S_ISDIR(mode):
                t.dirs.add(key)
            elif stat.S_ISLNK(mode):
                t.links[key] = os.readlink(ent.name, dir_fd=ent.dir_fd)
            elif stat.S_ISREG(mode):
                size = ent.st.st_size
                if size > MAX_MEMBER_BYTES:
                    raise SnapshotError(f"{label}: {key[1:]!r} is {size} bytes, more than {_mib(MAX_MEMBER_BYTES)} "
                                        "(cap on the size of one file)")
                fd = open_regular(ent.name, dir_fd=ent.dir_fd, follow=False)
                try:
                    data = read_fd(fd, MAX_MEMBER_BYTES)
                finally:
                    os.close(fd)
                total += len(data)
                if len(data) > MAX_MEMBER_BYTES:
                    raise SnapshotError(f"{label}: {key[1:]!r} grew past {_mib(MAX_MEMBER_BYTES)} while read "
                                        "(cap on the size of one file)")
                if total > MAX_TOTAL_BYTES:
                    raise SnapshotError(f"{label}: the folder's files hold more than {_mib(MAX_TOTAL_BYTES)} "
                                        "(cap on total size)")
                t.files[key] = data
            else:
                raise SnapshotError(f"{label}: {key[1:]!r} is {describe_mode(mode)}: a snapshot holds only files, "
                                    "folders and links (refused, not opened)")
    except NotRegular as e:
        raise SnapshotError(f"{label}: {e.filename!r} is {e.what}: refused, not read") from e
    except OSError as e:
        raise SnapshotError(f"{label}: cannot be read as a snapshot folder ({e.strerror or e}: {e.filename!r})") from e
    finally:
        os.close(top)
    return t
