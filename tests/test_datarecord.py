"""doctor.datarecord keeps the semantics of the `dataclasses` subset the code base used, side by side
with `dataclasses` on the same class bodies."""

from __future__ import annotations

import dataclasses
import pickle
from typing import ClassVar

import pytest

from doctor import datarecord
from doctor.datarecord import FrozenInstanceError, field, fields, record, replace


def _pair(frozen: bool) -> tuple[type, type]:
    @dataclasses.dataclass(frozen=frozen)
    class P:  # noqa: B903
        a: int
        b: str = "x"
        c: list[int] = dataclasses.field(default_factory=list)
        k: ClassVar[int] = 7
        hidden: str = dataclasses.field(default="", compare=False, repr=False)

    ref = P

    @record(frozen=frozen)
    class P:  # type: ignore[no-redef]
        a: int
        b: str = "x"
        c: list[int] = field(default_factory=list)
        k: ClassVar[int] = 7
        hidden: str = field(default="", compare=False, repr=False)

    return ref, P


@pytest.mark.parametrize("frozen", [True, False])
def test_same_behaviour_as_dataclasses(frozen: bool) -> None:
    ref, mine = _pair(frozen)
    for cls in (ref, mine):
        x = cls(1)
        assert (x.a, x.b, x.c, x.hidden) == (1, "x", [], "")
        assert cls(1).c is not cls(1).c  # a fresh list per instance
        assert cls(1, "y", [2], "h") == cls(1, "y", [2], "z")  # hidden is not compared
        assert cls(1) != cls(2)
        assert cls(a=1, b="q").b == "q"
        assert cls.k == 7 and "k" not in [f.name for f in (dataclasses.fields(cls) if cls is ref else fields(cls))]
        with pytest.raises(TypeError):
            cls()
        with pytest.raises(TypeError):
            cls(1, nope=2)
    assert repr(ref(1, "y", [2])) == repr(mine(1, "y", [2])) == "_pair.<locals>.P(a=1, b='y', c=[2])"
    assert (ref(1) == mine(1)) is False  # never equal across classes
    if frozen:
        assert hash(mine(1, "y", (), "a")) == hash(mine(1, "y", (), "b"))  # hidden is not hashed either
        with pytest.raises(FrozenInstanceError):
            mine(1).a = 2
        with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError, as in dataclasses
            del mine(1).a
    else:
        with pytest.raises(TypeError):
            hash(mine(1))
        m = mine(1)
        m.a = 5
        assert m.a == 5


SEEN: list[int] = []


@record(frozen=True)
class Base:
    x: int
    y: int = 2

    def __post_init__(self) -> None:
        SEEN.append(self.x)


@record(frozen=True)
class Child(Base):
    z: str = "z"


def test_replace_fields_post_init_inheritance_and_pickle() -> None:
    SEEN.clear()
    c = Child(1, 3, "q")
    assert (c.x, c.y, c.z) == (1, 3, "q") and [f.name for f in fields(Child)] == ["x", "y", "z"]
    d = replace(c, y=9)
    assert (d.x, d.y, d.z) == (1, 9, "q") and type(d) is Child and SEEN == [1, 1]
    assert Child.__match_args__ == ("x", "y", "z")
    assert pickle.loads(pickle.dumps(c)) == c
    assert {c, replace(c)} == {c}
    with pytest.raises(TypeError):
        replace(c, nope=1)
    with pytest.raises(TypeError, match="not a record"):
        fields(object())


def test_own_methods_win_and_bad_declarations_are_refused() -> None:
    @record(frozen=True)
    class Own:
        a: int

        def __repr__(self) -> str:
            return "own"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 1

    assert repr(Own(1)) == "own" and Own(1) == Own(2) and hash(Own(5)) == 1
    with pytest.raises(ValueError, match="mutable default"):
        record(type("M", (), {"__annotations__": {"a": "list[int]"}, "a": []}))
    with pytest.raises(TypeError, match="non-default argument"):
        record(type("O", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1}))
    with pytest.raises(TypeError, match="cannot mix"):
        record(type("Mixed", (record(frozen=True)(type("F", (), {"__annotations__": {"a": "int"}})),), {}))
    with pytest.raises(ValueError):
        field(default=1, default_factory=list)


def test_the_code_base_no_longer_builds_dataclasses_on_start() -> None:
    """The point of the module: importing the CLI and its checks declares no `dataclasses` class."""
    import subprocess
    import sys

    code = ("import dataclasses, sys\n"
            "n = [0]\n"
            "orig = dataclasses._process_class\n"
            "def count(*a, **k):\n    n[0] += 1\n    return orig(*a, **k)\n"
            "dataclasses._process_class = count\n"
            "import doctor.cli, doctor.registry\n"
            "doctor.registry.load_checks()\n"
            "print(n[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"
    assert datarecord.record is record
