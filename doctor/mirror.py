"""Mirror trees: a host's files kept as data, read without ever following a link by the OS.

A `Tree` answers for absolute logical paths ("/proc/cmdline") inside one namespace:
`kind` (file, dir, link, other or None) of a path whose links are already resolved,
`resolve` (links resolved inside the tree, absolute targets restart at the tree's own
root), `read`, `readlink` and `names`. Two kinds:

- `MemTree`: an archive read into memory (doctor.archive); links are strings.
- `FolderTree`: a folder on disk, walked one component at a time from the folder's
  descriptor with O_NOFOLLOW, so a link planted in the folder (or swapped in while we
  read) is never followed by the kernel; special files (FIFO, device, socket) are never
  opened, and reads are bounded.

`open_regular` opens a file named by the user (following the user's own link) only after
stat says it is a regular file, then checks the descriptor is that same file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import Protocol

from doctor.datarecord import field, record
from doctor.host import resolve_links, split_path

MAX_FILE_READ = 64 * 1024 * 1024  # one file of a snapshot or a folder host
_CHUNK = 1024 * 1024
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_DIR = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # a component missing, not a folder, or a link
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Tree(Protocol):
    """What SnapshotHost and DirHost read through (doctor.mirror: MemTree, FolderTree)."""

    def sub(self, name: str) -> Tree: ...
    def kind(self, path: str) -> str | None: ...
    def resolve(self, path: str, follow_last: bool = True) -> str: ...
    def read(self, path: str, limit: int = ...) -> bytes: ...
    def readlink(self, path: str) -> str: ...
    def names(self, path: str) -> list[str]: ...


def describe_mode(mode: int) -> str:
    """What a non-regular file is, in words ('a FIFO', 'a character device')."""
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "a special file"


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


class NotRegular(OSError):
    """A path that is not a regular file where one was needed; `what` says what it is."""

    def __init__(self, what: str, path: str) -> None:
        super().__init__(errno.EINVAL, f"{what}, not a regular file", path)
        self.what = what


def read_fd(fd: int, limit: int) -> bytes:
    """At most limit + 1 bytes from fd, in bounded chunks (more than limit: the caller's cap)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        b = os.read(fd, min(_CHUNK, limit + 1 - total))
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


def open_regular(path: str, dir_fd: int | None = None, follow: bool = True) -> int:
    """A descriptor of the regular file at path; NotRegular for anything else, found by stat
    before opening (opening a device can have effects) and checked again on the descriptor."""
    st = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        raise NotRegular(describe_mode(st.st_mode), path)
    flags = _FILE if not follow else _FILE & ~os.O_NOFOLLOW
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        got = os.fstat(fd)
        if not stat.S_ISREG(got.st_mode) or (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
            raise NotRegular(f"{describe_mode(got.st_mode)} (it changed while being opened)", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@record
class MemTree:
    """An in-memory mirror: file contents, link targets and folders by '/a/b' key."""

    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {""})
    prefix: str = ""

    def sub(self, name: str) -> MemTree:
        return MemTree(self.files, self.links, self.dirs, f"{self.prefix}/{name}")

    def _key(self, path: str) -> str:
        return self.prefix + ("" if path == "/" else path)

    def kind(self, path: str) -> str | None:
        k = self._key(path)
        if k in self.files:
            return "file"
        if k in self.links:
            return "link"
        if k in self.dirs:
            return "dir"
        return None

    def resolve(self, path: str, follow_last: bool = True) -> str:
        return resolve_links(path, lambda p: self._key(p) in self.links, self.readlink, follow_last)

    def read(self, path: str, limit: int = MAX_FILE_READ) -> bytes:
        try:
            return self.files[self._key(path)]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None

    def readlink(self, path: str) -> str:
        k = self._key(path)
        if k in self.links:
            return self.links[k]
        if k in self.files or k in self.dirs:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    def names(self, path: str) -> list[str]:
        k = self._key(path)
        if k not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        pre = k + "/"
        return sorted({x[len(pre):].split("/", 1)[0] for m in (self.files, self.links, self.dirs) for x in m
                       if x.startswith(pre)})


class FolderTree:
    """A folder on disk read as a tree: each component opened from its parent's descriptor
    with O_NOFOLLOW; links are resolved by `resolve` (inside the folder), never by the OS."""

    def __init__(self, root: str, sub: tuple[str, ...] = ()) -> None:
        self.root = root
        self._sub = sub

    def sub(self, name: str) -> FolderTree:
        return FolderTree(self.root, self._sub + (name,))

    def _open_dir(self, parts: list[str] | tuple[str, ...], flags: int = _DIR) -> int:
        """The folder at parts (below the tree's own root), every component opened with
        O_NOFOLLOW from its parent; the root itself is the caller's path."""
        comps = list(self._sub) + list(parts)
        first = os.O_RDONLY if flags == _LIST and not comps else _O_PATH
        fd = os.open(self.root, first | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, p in enumerate(comps):
                nfd = os.open(p, flags if i == len(comps) - 1 else _DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lstat(self, path: str) -> os.stat_result | None:
        parts = split_path(path)
        try:
            if not parts:
                fd = self._open_dir(())
                try:
                    return os.fstat(fd)
                finally:
                    os.close(fd)
            fd = self._open_dir(parts[:-1])
        except OSError as e:
            if e.errno in _MISSING:
                return None
            raise
        try:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(fd)

    def kind(self, path: str) -> str | None:
        st = self.lstat(path)
        return None if st is None else kind_of(st.st_mode)

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """resolve_links, walking descriptors: one lookup per component instead of one walk."""
        stack: list[int | None] = [self._open_dir(())]

        def close_to(n: int) -> None:
            while len(stack) > n:
                fd = stack.pop()
                if fd is not None:
                    os.close(fd)

        def lookup(name: str) -> os.stat_result | None:
            top = stack[-1]
            if top is None:
                return None
            try:
                return os.stat(name, dir_fd=top, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None

        def readlink(name: str) -> str:
            top = stack[-1]
            assert top is not None
            return os.readlink(name, dir_fd=top)

        try:
            return _walk_resolve(path, follow_last, lookup, readlink, stack, close_to)
        finally:
            close_to(0)

    def read(self, path: str, limit: int = MAX_FILE_READ) -> bytes:
        parts = split_path(path)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        try:
            pfd = self._open_dir(parts[:-1])
        except OSError as e:
            if e.errno in _MISSING:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from e
            raise
        try:
            fd = open_regular(parts[-1], dir_fd=pfd, follow=False)
        except NotRegular as e:
            raise PermissionError(errno.EACCES, f"{e.what}: not read", path) from e
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PermissionError(errno.EACCES, "a symbolic link where a file was read: not followed", path) from e
            raise
        finally:
            os.close(pfd)
        try:
            data = read_fd(fd, limit)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise PermissionError(errno.EFBIG, f"larger than {limit} bytes: not read", path)
        return data

    def readlink(self, path: str) -> str:
        parts = split_path(path)
        if not parts:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        try:
            fd = self._open_dir(parts[:-1])
        except OSError as e:
            if e.errno not in _MISSING:
                raise
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from e
        try:
            return os.readlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)

    def names(self, path: str) -> list[str]:
        parts = split_path(path)
        try:
            fd = self._open_dir(parts, _LIST)
        except OSError as e:
            if e.errno in _MISSING:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from e
            raise
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)


def _walk_resolve(path: str, follow_last: bool, lookup: Callable[[str], os.stat_result | None],
                  readlink: Callable[[str], str], stack: list[int | None], close_to: Callable[[int], None]) -> str:
    """host.resolve_links over a stack of directory descriptors (stack[i] is the folder of
    the first i resolved components, None where it is not a folder)."""
    parts = split_path(path)
    cur: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
                close_to(len(stack) - 1)
            continue
        st = lookup(p) if (parts or follow_last) else None
        if st is not None and stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = readlink(p)
            if target.startswith("/"):
                cur = []
                close_to(1)
            parts = [t for t in target.split("/") if t and t != "."] + parts
            continue
        cur.append(p)
        if not parts:
            break
        top = stack[-1]
        nfd: int | None = None
        if top is not None and st is not None and stat.S_ISDIR(st.st_mode):
            try:
                nfd = os.open(p, _DIR, dir_fd=top)
            except OSError:
                nfd = None
        stack.append(nfd)
    return "/" + "/".join(cur)


@record(frozen=True)
class Entry:
    """One thing met by `walk`: its path below the top, what lstat said, and the open
    descriptor of its folder (valid until the walk moves on)."""

    parts: tuple[str, ...]
    st: os.stat_result
    dir_fd: int

    @property
    def name(self) -> str:
        return self.parts[-1]


def walk(top_fd: int, skip: Callable[[str], bool] = lambda n: False, max_depth: int = 64,
         parts: tuple[str, ...] = ()) -> Iterator[Entry]:
    """Every entry below the folder top_fd, files before folders, sorted, depth first; folders
    are entered by descriptor with O_NOFOLLOW, links are reported, never followed."""
    if len(parts) >= max_depth:
        raise OSError(errno.ELOOP, f"folders nested deeper than {max_depth} levels (cap on path depth)", "/".join(parts)[:200])
    names = sorted(n for n in os.listdir(top_fd) if not skip(n))
    subdirs = []
    for n in names:
        try:
            st = os.stat(n, dir_fd=top_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append((n, st))
        else:
            yield Entry(parts + (n,), st, top_fd)
    for n, st in subdirs:
        yield Entry(parts + (n,), st, top_fd)
        try:
            fd = os.open(n, _LIST, dir_fd=top_fd)
        except OSError:
            continue
        try:
            yield from walk(fd, skip, max_depth, parts + (n,))
        finally:
            os.close(fd)
