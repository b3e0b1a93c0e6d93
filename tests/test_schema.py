"""trustwatch.schema: dataclasses that pydantic checks at the boundary, and only there."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Annotated, Literal

import pytest
from pydantic import ValidationError
from trustwatch.schema import After, Before, Constrained, Model, Tagged


def _lower(value: str) -> str:
    if value != value.lower():
        raise ValueError(f"{value!r} is not lower case")
    return value


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


@dataclass(frozen=True)
class Alpha(Model):
    type: Literal["alpha"]
    count: Annotated[int, Constrained(ge=0)] | None = None
    name: Annotated[str, Before(_strip), After(_lower)] = "x"

    def _check(self) -> Alpha:
        if self.count == 5:
            raise ValueError("five is not allowed")
        return self


@dataclass(frozen=True)
class Beta(Model):
    type: Literal["beta"]
    tags: list[str] = field(default_factory=list)

    @classmethod
    def _before(cls, data: object) -> object:
        if isinstance(data, dict) and "tag" in data:
            raise ValueError("it is `tags`")
        return data


@dataclass(frozen=True)
class Holder(Model):
    items: list[Annotated[Alpha | Beta, Tagged("type")]] = field(default_factory=list)


def _errors(data: object) -> list[tuple[str, tuple[object, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Holder.model_validate(data)
    return [(e["type"], e["loc"], e["msg"]) for e in caught.value.errors()]


def test_valid_input_builds_the_dataclasses() -> None:
    held = Holder.model_validate({"items": [{"type": "alpha", "name": " ok "}, {"type": "beta"}]})
    assert held == Holder(items=[Alpha(type="alpha", name="ok"), Beta(type="beta")])
    with pytest.raises(FrozenInstanceError):
        held.items[0].type = "beta"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "kind", "loc"),
    [
        (
            {"items": [{"type": "alpha", "count": -1}]},
            "greater_than_equal",
            ("items", 0, "alpha", "count"),
        ),
        (
            {"items": [{"type": "alpha", "name": "Up"}]},
            "value_error",
            ("items", 0, "alpha", "name"),
        ),
        ({"items": [{"type": "alpha", "count": 5}]}, "value_error", ("items", 0, "alpha")),
        ({"items": [{"type": "beta", "tag": "x"}]}, "value_error", ("items", 0, "beta")),
        (
            {"items": [{"type": "beta", "other": 1}]},
            "unexpected_keyword_argument",
            ("items", 0, "beta", "other"),
        ),
        ({"items": [{"type": "gamma"}]}, "union_tag_invalid", ("items", 0)),
        ({"items": [], "extra": 1}, "unexpected_keyword_argument", ("extra",)),
    ],
)
def test_each_check_runs_with_its_location(
    data: object, kind: str, loc: tuple[object, ...]
) -> None:
    assert [(k, where) for k, where, _ in _errors(data)] == [(kind, loc)]


def test_dump_and_copy() -> None:
    held = Holder(items=[Alpha(type="alpha", count=1)])
    assert held.model_dump(mode="json") == {"items": [{"type": "alpha", "count": 1, "name": "x"}]}
    assert held.model_copy(update={"items": []}) == Holder()


def test_importing_and_building_needs_no_pydantic() -> None:
    code = (
        "import sys, dataclasses\n"
        "from trustwatch.schema import Model, After\n"
        "from typing import Annotated\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class A(Model):\n"
        "    x: 'Annotated[int, After(abs)]' = 1\n"
        "A(x=2).model_dump(); A().model_copy(update={'x': 3})\n"
        "assert 'pydantic' not in sys.modules and 'pydantic_core' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
