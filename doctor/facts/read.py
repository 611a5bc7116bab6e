"""What every HostFacts mixin stands on: the `fact` cache and the helpers that read a Host.

A read that fails is FactUnknown with the command that settles it; `NotCaptured` (a snapshot's
error) and `PermissionError` never leave this layer as a value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from doctor.errors import FactUnknown, NotCaptured
from doctor.host import Host

T = TypeVar("T")


def fact(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """Cache a fact per Facts object; cache FactUnknown too (parsed once)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Any) -> T:
        cache = self._cache
        if name in cache:
            v = cache[name]
            if isinstance(v, BaseException):
                raise v
            return v  # type: ignore[no-any-return]
        try:
            v = fn(self)
        except (FactUnknown, NotCaptured) as e:
            cache[name] = e
            raise
        cache[name] = v
        return v

    return wrapper


def _exists_quiet(h: Host, path: str) -> bool:
    try:
        return h.exists(path)
    except NotCaptured:
        return False



class HostReader:
    """The Host, the cache and the reading helpers every HostFacts mixin uses."""

    host: Host
    _cache: dict[str, Any]

    if TYPE_CHECKING:
        # facts one subject's mixin asks another's for (HostFacts composes them)
        def kernel_release(self) -> str: ...

    def _need(self, fact_name: str, path: str, settle: str) -> str:
        try:
            text = self.host.read_text(path)
        except FileNotFoundError as e:
            raise FactUnknown(fact_name, f"{path} does not exist", settle) from e
        except PermissionError as e:
            raise FactUnknown(fact_name, f"{path} is not readable (permission denied)", settle) from e
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e
        return text

    def _read_dir_files(self, dirs: tuple[str, ...], suffix: str) -> list[tuple[str, str]]:
        """(path, text) of each `*suffix` file, with systemd-style name override order."""
        seen: dict[str, str] = {}
        for d in dirs:
            try:
                names = self.host.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (PermissionError, NotCaptured):
                continue
            for n in names:
                if n.endswith(suffix) and n not in seen:
                    seen[n] = f"{d}/{n}"
        out = []
        for n in sorted(seen):
            try:
                t = self.host.read_text_or_none(seen[n])
            except (PermissionError, NotCaptured):
                continue
            if t is not None:
                out.append((seen[n], t))
        return out

    # -- forecast facts -------------------------------------------------------
    def _per(self, key: str, fn: Callable[[], T]) -> T:
        """Cache a per-argument fact (FactUnknown included), like @fact does."""
        if key in self._cache:
            v = self._cache[key]
            if isinstance(v, BaseException):
                raise v
            return v  # type: ignore[no-any-return]
        try:
            v = fn()
        except (FactUnknown, NotCaptured) as e:
            self._cache[key] = e
            raise
        self._cache[key] = v
        return v

    def _text_or_none(self, fact_name: str, path: str, settle: str) -> str | None:
        try:
            return self.host.read_text_or_none(path)
        except PermissionError as e:
            raise FactUnknown(fact_name, f"{path} is not readable (permission denied)", settle) from e
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e

    def _text_or_skip(self, path: str) -> str | None:
        try:
            return self.host.read_text_or_none(path)
        except (PermissionError, NotCaptured, IsADirectoryError, UnicodeDecodeError):
            return None

