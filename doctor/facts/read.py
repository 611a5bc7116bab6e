"""What every HostFacts mixin stands on: the `fact` cache and the helpers that read a Host.

A read that fails is FactUnknown with the command that settles it; `NotCaptured` (a snapshot's
error) and `PermissionError` never leave this layer as a value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from doctor.errors import FactUnknown, NotCaptured
from doctor.host import Host

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any, TypeVar
    T = TypeVar("T")


def fact(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """Cache a fact per Facts object; cache FactUnknown too (parsed once).

    A `NotCaptured` that a fact let through becomes a FactUnknown here: checks never see a
    snapshot's error, and the cache never holds one."""
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
        except FactUnknown as e:
            cache[name] = e
            raise
        except NotCaptured as e:
            u = FactUnknown(name.replace("_", " "), str(e), "gpudoctor record (on the host itself)")
            cache[name] = u
            raise u from e
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

    def _read_dir(self, fact_name: str, dirs: tuple[str, ...], suffix: str, settle: str) -> list[tuple[str, str]]:
        """(path, text) of each `*suffix` file in dirs, with systemd-style name override order.

        A folder that does not exist on the host is absent (it adds nothing); a folder, or a file in
        it, that was not captured or cannot be read makes the whole fact unknown (FactUnknown with
        `settle`): a file we could not see may hold the very line the fact is about. Only a read
        that succeeded may say "none"."""
        seen: dict[str, str] = {}
        for d in dirs:
            for n in self._listdir(fact_name, d, settle):
                if n.endswith(suffix) and n not in seen:
                    seen[n] = f"{d}/{n}"
        out = []
        for n in sorted(seen):
            t = self._text_or_none(fact_name, seen[n], settle)
            if t is not None:  # gone between the listing and the read
                out.append((seen[n], t))
        return out

    def _listdir(self, fact_name: str, path: str, settle: str) -> list[str]:
        """The names in a folder, sorted; [] where it does not exist; FactUnknown where it was not
        captured or cannot be read."""
        try:
            return sorted(self.host.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as e:
            raise FactUnknown(fact_name, f"{path} is not readable (permission denied)", settle) from e
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e

    def _exists(self, fact_name: str, path: str, settle: str) -> bool:
        """Whether path exists; FactUnknown where a snapshot did not record it."""
        try:
            return self.host.exists(path)
        except NotCaptured as e:
            raise FactUnknown(fact_name, str(e), settle) from e

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
        except FactUnknown as e:
            self._cache[key] = e
            raise
        except NotCaptured as e:
            u = FactUnknown(key.split(":", 1)[0].replace("_", " "), str(e), "gpudoctor record (on the host itself)")
            self._cache[key] = u
            raise u from e
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

