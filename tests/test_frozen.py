"""trustwatch.frozen: @frozen classes behave as `@dataclass(frozen=True)` ones do."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, field

import pytest
from trustwatch.frozen import field_names, frozen


@frozen
class Point:
    x: int
    y: int = 0
    note: str = field(default="", compare=False)  # as SweepState's version
    secret: str = field(default="", repr=False)  # as SmtpTarget's password


@frozen(slots=True, kw_only=True)
class Tagged:
    name: str
    tags: frozenset[str] = frozenset()


@frozen
class Own:
    value: int

    def __eq__(self, other: object) -> bool:  # the class's own, kept
        return isinstance(other, Own) and abs(self.value) == abs(other.value)

    def __hash__(self) -> int:
        return hash(abs(self.value))

    def __repr__(self) -> str:
        return "Own!"


@dataclasses.dataclass(frozen=True)
class Stdlib:
    x: int
    y: int = 0
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


def test_equality_and_hash_are_by_compared_fields_and_class() -> None:
    assert Point(1, 2, note="a") == Point(1, 2, note="b")
    assert hash(Point(1, 2, note="a")) == hash(Point(1, 2, note="b"))
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Stdlib(1, 2)  # another class is never equal, as dataclass says
    assert {Point(1), Point(1), Point(2)} == {Point(1), Point(2)}
    assert Tagged(name="a", tags=frozenset({"x"})) == Tagged(name="a", tags=frozenset({"x"}))


def test_repr_is_the_dataclass_one_and_leaves_out_repr_false_fields() -> None:
    shown = repr(Point(1, 2, note="n", secret="hunter2"))
    assert shown == repr(Stdlib(1, 2, note="n", secret="hunter2")).replace("Stdlib", "Point")
    assert "hunter2" not in shown


def test_instances_stay_frozen() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del point.x  # type: ignore[misc]
    tagged = Tagged(name="a")
    with pytest.raises(FrozenInstanceError):
        tagged.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Tagged("a")  # type: ignore[misc]  # kw_only, as asked


def test_methods_a_class_defines_itself_are_kept() -> None:
    assert Own(-3) == Own(3) and hash(Own(-3)) == hash(Own(3)) and repr(Own(1)) == "Own!"


def test_it_is_a_dataclass_to_the_standard_library() -> None:
    assert dataclasses.is_dataclass(Point) and field_names(Point) == ("x", "y", "note", "secret")
    assert dataclasses.replace(Point(1, 2), y=5) == Point(1, 5)
    assert dataclasses.asdict(Point(1)) == {"x": 1, "y": 0, "note": "", "secret": ""}
    assert not hasattr(Tagged(name="a"), "__dict__")  # slots=True
