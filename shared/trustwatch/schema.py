"""Frozen dataclasses that pydantic validates at the boundary, and only there.

The baseline, the finding and the alert routing are stdlib dataclasses: a function builds
them from its compiled baseline, its events and its environment without importing
pydantic (on a cold start, pydantic's import and model classes cost more than the event).
Where input comes from outside (a baseline or routing file, a findings file) the class's
`model_validate` builds a pydantic `TypeAdapter` for it, once per class, and pydantic
checks it as it checks a model: types, `Literal`s, unknown fields, and the checks declared
here, which only pydantic runs:

- `Before(fn)` / `After(fn)` on a field (`Annotated` metadata, like pydantic's
  `BeforeValidator` / `AfterValidator`): `fn` gets the value and returns it, or raises
  ValueError;
- `Constrained(ge=0, pattern=...)`: the number or string limits of pydantic's core schema;
- `Tagged("type")`: a union of models told apart by that field (pydantic's discriminator);
- `_before(data)` (a classmethod) and `_check(self)` on a class: before and after the
  whole object is validated (pydantic's `model_validator`).

The method names are pydantic's (`model_validate`, `model_dump`, `model_copy`), so a caller
reads the same whichever side of the boundary it is on.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from trustwatch.frozen import field_names

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, TypeAdapter
    from pydantic_core import CoreSchema, ErrorDetails


class _FieldCheck:
    """A check on one field that pydantic runs (`Annotated` metadata).

    Before or after pydantic validates the value, as its own `BeforeValidator` /
    `AfterValidator` do.
    """

    __slots__ = ("check",)
    _wrapper: ClassVar[str]  # the pydantic_core.core_schema function that wraps the field

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        wrap = getattr(core_schema, self._wrapper)
        return wrap(self.check, handler(source))  # type: ignore[no-any-return]


class Before(_FieldCheck):
    """Runs `check` on a field's raw input before pydantic validates it."""

    __slots__ = ()
    _wrapper = "no_info_before_validator_function"


class After(_FieldCheck):
    """Runs `check` on a field's validated value."""

    __slots__ = ()
    _wrapper = "no_info_after_validator_function"


class Constrained:
    """Limits of a number or string field: `ge`, `gt`, `le`, `lt`, `pattern`, ….

    They are the keys of its pydantic core schema, so the errors are pydantic's own.
    """

    __slots__ = ("limits",)

    def __init__(self, **limits: Any) -> None:
        self.limits = limits

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = dict(handler(source))
        schema.update(self.limits)
        return schema


class Tagged:
    """A union of models told apart by the value of one field (`type: slack`, …)."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic import Discriminator

        return Discriminator(self.field).__get_pydantic_core_schema__(source, handler)


_adapters: dict[type, TypeAdapter[Any]] = {}


def adapter(cls: type) -> TypeAdapter[Any]:
    """The pydantic TypeAdapter of a Model class (built on first use, then kept)."""
    found = _adapters.get(cls)
    if found is None:
        from pydantic import TypeAdapter

        found = _adapters[cls] = TypeAdapter(cls)
    return found


class Model:
    """The base of every validated dataclass: unknown fields are errors.

    Subclasses are declared `@frozen` (trustwatch.frozen); building one directly runs no
    check, so code builds them from values it has already checked.
    """

    __slots__ = ()
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        schema = handler(source)
        if "_check" in _declared(cls):
            schema = core_schema.no_info_after_validator_function(cls._check, schema)
        if "_before" in _declared(cls):
            schema = core_schema.no_info_before_validator_function(cls._before, schema)
        return schema

    def _check(self) -> Self:
        return self

    @classmethod
    def _before(cls, data: Any) -> Any:
        return data

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """`data` checked as this class (pydantic.ValidationError when it is not)."""
        return adapter(cls).validate_python(data)  # type: ignore[no-any-return]

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> Self:
        """JSON text checked as this class."""
        return adapter(cls).validate_json(text)  # type: ignore[no-any-return]

    def model_dump(
        self, mode: Literal["python", "json"] = "python", *, exclude_none: bool = False
    ) -> dict[str, Any]:
        """The fields as a dict, nested models too.

        `exclude_none` leaves out each model's fields that are None. In "json" mode enums
        are their values and tuples lists (what `json.dumps` takes).
        """
        return dump(self, mode == "json", exclude_none)  # type: ignore[no-any-return]

    def model_copy(self, update: dict[str, Any] | None = None) -> Self:
        """A copy with the fields in `update` replaced.

        No pydantic check, as pydantic's model_copy; the class's `__post_init__` runs
        (Finding's, SecretRef's).
        """
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]

    def _omit(self, data: dict[str, Any]) -> dict[str, Any]:
        """What `model_dump` leaves out of this object's dict (nothing by default)."""
        return data


def _declared(cls: type) -> set[str]:
    """The hooks a class or its bases below Model define."""
    return {name for klass in cls.__mro__ if klass is not Model for name in vars(klass)}


# Leaves that are themselves in every mode: most of a finding's `expected` and `actual`.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def dump(value: Any, json_mode: bool, exclude_none: bool = False) -> Any:
    """A Model, or anything holding Models, as plain dicts and lists."""
    if type(value) in _PLAIN:  # first: it is the common case (a finding dumps per alert)
        return value
    if isinstance(value, Model):
        data = {}
        for name in field_names(type(value)):
            item = getattr(value, name)
            if not (exclude_none and item is None):
                data[name] = dump(item, json_mode, exclude_none)
        return value._omit(data)
    if isinstance(value, dict):
        return {key: dump(item, json_mode, exclude_none) for key, item in value.items()}
    if isinstance(value, list):
        return [dump(item, json_mode, exclude_none) for item in value]
    if isinstance(value, (tuple, set, frozenset)):
        items = [dump(item, json_mode, exclude_none) for item in value]
        return items if json_mode else type(value)(items)
    if json_mode and isinstance(value, enum.Enum):
        return value.value
    return value


def to_json(value: Any) -> str:
    """`value` (a Model, or data holding Models) as compact JSON text.

    What `json.dumps(dump(value, True))` gives, with the walk through plain data done by
    the json module's C encoder, which hands only models and enums back here.
    """
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Model):
        return value._omit({name: getattr(value, name) for name in field_names(type(value))})
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def log_json_default(value: Any) -> Any:
    """json.dumps' `default` for log records.

    Models (a finding in `extra`) become their JSON, anything else its str, as the log
    formatters did (powertools', logjson's).
    """
    try:
        return _json_default(value)
    except TypeError:
        return str(value)


def error_message(err: ErrorDetails) -> str:
    """A validation error's message as pydantic words it for a model.

    pydantic words two errors of a dataclass otherwise ("Unexpected keyword argument",
    "Input should be a dictionary or an instance of X"); the baseline and routing files'
    users know the model's words, which their error messages always gave.
    """
    if err["type"] == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    if err["type"] == "dataclass_type":
        return f"Input should be a valid dictionary or instance of {err['ctx']['class_name']}"
    return str(err["msg"]).removeprefix("Value error, ")


def model_fields(cls: type[Model]) -> tuple[str, ...]:
    """The field names of a Model class, in order."""
    return field_names(cls)
