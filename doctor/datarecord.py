"""`@record`: the data classes of gpudoctor, without the cost of `dataclasses` at import.

Why not `dataclasses`: `check` builds about 60 of them while it starts, and `dataclasses` compiles
five to six methods per class with `exec` (plus `inspect.signature` for the docstring): 31 ms of a
120 ms run, measured with `benchmarks/bench_startup.py`, before any check ran. A record costs
about 20 us to declare: only `__init__` is compiled, and only when the first instance is made
(most classes a run declares are never instantiated); `__repr__`, `__eq__`, `__hash__` and the frozen
`__setattr__` are shared functions that read the class's field table.

What it keeps from `dataclasses` (the subset this code base uses, checked by tests/test_datarecord.py):
fields from annotations in MRO order, defaults and `field(default=, default_factory=, repr=,
compare=)`, `frozen=True` (assignment raises `FrozenInstanceError`, an AttributeError), `__eq__`
only between instances of the same class, `__hash__` from the compared fields when frozen and
unhashable when not (a class's own `__eq__`, `__hash__`, `__repr__` or `__init__` wins),
`__post_init__`, `__match_args__`, `replace()` and `fields()`. Type checkers see it through
`dataclass_transform` (PEP 681), so mypy checks constructors as it did.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

TYPE_CHECKING = False  # `typing` only for the type checker: importing it costs 2.4 ms of every start
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw: object) -> Callable[[Any], Any]:
        return lambda f: f

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
_MUTABLE = (list, dict, set)


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "repr", "compare")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool) -> None:  # noqa: A002
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, repr: bool = True,  # noqa: A002
          compare: bool = True) -> Any:
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare)


def fields(obj: Any) -> tuple[Field, ...]:
    try:
        return obj.__record_fields__  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of `obj` with `changes`, made through `__init__` (so `__post_init__` runs again)."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)  # type: ignore[no-any-return]


def _annotations(cls: type) -> dict[str, Any]:
    own = cls.__dict__.get("__annotations__")
    if own is None and "__annotate__" in cls.__dict__:  # Python 3.14: annotations are evaluated lazily
        own = cls.__annotations__
    return own or {}


def _is_classvar(tp: Any) -> bool:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", "") if tp is not None else ""
    return str(text).startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls: type) -> tuple[Field, ...]:
    table: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            table[f.name] = f
    for name, tp in _annotations(cls).items():
        if _is_classvar(tp):
            continue
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, Field):
            f = value
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        else:
            f = Field(value, _MISSING, True, True)
        if isinstance(f.default, _MUTABLE):
            raise ValueError(f"mutable default {type(f.default).__name__} for field {name} is not allowed: "
                             "use default_factory")
        f.name = name
        table[name] = f
    seen_default = ""
    for f in table.values():
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            seen_default = f.name
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument {seen_default!r}")
    return tuple(table.values())


def _compile_init(cls: type) -> Callable[..., None]:
    ns: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    args: list[str] = []
    body: list[str] = []
    for i, f in enumerate(cls.__record_fields__):  # type: ignore[attr-defined]
        value = f.name
        if f.default_factory is not _MISSING:
            ns[f"_factory{i}"] = f.default_factory
            args.append(f"{f.name}=_MISSING")
            value = f"_factory{i}() if {f.name} is _MISSING else {f.name}"
        elif f.default is not _MISSING:
            ns[f"_default{i}"] = f.default
            args.append(f"{f.name}=_default{i}")
        else:
            args.append(f.name)
        body.append(f"_set(self, {f.name!r}, {value})" if cls.__record_frozen__  # type: ignore[attr-defined]
                    else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    src = f"def __init__(self, {', '.join(args)}):\n    " + "\n    ".join(body or ["pass"])
    exec(compile(src, f"<record {cls.__qualname__}>", "exec"), ns)  # noqa: S102 - our own field names only
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _lazy_init(cls: type) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        real = _compile_init(cls)
        cls.__init__ = real  # type: ignore[misc]
        real(self, *args, **kwargs)
    return __init__


def _repr(self: Any) -> str:
    parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__ if f.repr)
    return f"{self.__class__.__qualname__}({parts})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = self.__record_key__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_key__(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _key(names: tuple[str, ...]) -> Callable[[Any], Any]:
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _process(cls: type, frozen: bool) -> type:
    for base in cls.__mro__[1:]:
        if "__record_frozen__" in base.__dict__ and base.__dict__["__record_frozen__"] != frozen:
            raise TypeError(f"{cls.__qualname__}: cannot mix frozen and non-frozen records ({base.__qualname__})")
    own = cls.__dict__
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    table = _collect(cls)
    cls.__record_fields__ = table  # type: ignore[attr-defined]
    cls.__record_frozen__ = frozen  # type: ignore[attr-defined]
    cls.__record_key__ = staticmethod(_key(tuple(f.name for f in table if f.compare)))  # type: ignore[attr-defined]
    cls.__match_args__ = tuple(f.name for f in table)  # type: ignore[attr-defined,misc]
    if "__init__" not in own:
        cls.__init__ = _lazy_init(cls)  # type: ignore[misc]
    if "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[assignment]
    if "__eq__" not in own:
        cls.__eq__ = _eq  # type: ignore[assignment]
    if frozen:
        if "__setattr__" in own or "__delattr__" in own:
            raise TypeError(f"{cls.__qualname__}: a frozen record cannot define __setattr__ or __delattr__")
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
    if not explicit_hash:
        cls.__hash__ = _hash if frozen else None  # type: ignore[assignment]
    return cls


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Decorate a class as a record (see the module's docstring); `@record` or `@record(frozen=True)`."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)
