"""`@frozen`: a frozen dataclass that is cheaper to create, for everything on a function's path.

On Python 3.11 `dataclasses` compiles each generated method with its own `exec`, about
0.1 ms apiece; a frozen class gets six (`__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__`, `__delattr__`). A function's cold start creates some eighty classes, so
that was a third of it. `@frozen` generates only `__init__` and the two that keep the
instance frozen, and gives every class the same `__eq__`, `__hash__` and `__repr__`,
written once here, that behave as the generated ones do: equal when of the same class
with equal fields, hashed by the fields, shown as `Name(field=value, ...)`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


class _Shape:
    """One class's fields as the shared methods use them.

    Its field names; getters of the values it compares and hashes (as dataclass picks
    them: `compare`, `hash`); the names it shows (`repr`).
    """

    __slots__ = ("compared", "hashed", "names", "shown")

    def __init__(self, cls: type) -> None:
        fields = dataclasses.fields(cls)
        self.names = tuple(f.name for f in fields)
        self.compared = _getter(f.name for f in fields if f.compare)
        self.hashed = _getter(f.name for f in fields if (f.compare if f.hash is None else f.hash))
        self.shown = tuple(f.name for f in fields if f.repr)


def _getter(names: Iterable[str]) -> Callable[[Any], tuple[Any, ...]]:
    chosen = tuple(names)
    if len(chosen) > 1:
        return operator.attrgetter(*chosen)  # a tuple of the values, in C
    if chosen:
        name = chosen[0]
        return lambda obj: (getattr(obj, name),)
    return lambda _obj: ()


_shapes: dict[type, _Shape] = {}


def _shape(cls: type) -> _Shape:
    shape = _shapes.get(cls)
    if shape is None:
        shape = _shapes[cls] = _Shape(cls)
    return shape


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass, in order (kept per class)."""
    return _shape(cls).names


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    compared = _shape(type(self)).compared
    return compared(self) == compared(other)


def _hash(self: Any) -> int:
    return hash(_shape(type(self)).hashed(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in _shape(type(self)).shown)
    return f"{type(self).__qualname__}({shown})"


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[_T] | None = None, /, *, kw_only: bool = False, slots: bool = False) -> Any:
    """`@dataclasses.dataclass(frozen=True)`, the same to its users, less costly to create."""

    def wrap(klass: type[_T]) -> type[_T]:
        done = dataclasses.dataclass(
            klass, frozen=True, eq=False, repr=False, kw_only=kw_only, slots=slots
        )
        own = vars(klass)  # what the class body defines itself is kept, as dataclass keeps it
        if "__eq__" not in own:
            done.__eq__ = _eq  # type: ignore[assignment,method-assign]
            if own.get("__hash__") is None:
                done.__hash__ = _hash  # type: ignore[assignment,method-assign]
        if "__repr__" not in own:
            done.__repr__ = _repr  # type: ignore[assignment,method-assign]
        return done

    return wrap if cls is None else wrap(cls)
