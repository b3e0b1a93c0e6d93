"""The compiled baseline: the validated baseline as plain JSON, loaded without validation.

`trustwatch package` validates the bundled baseline once, with the full model and its
precise errors, and writes `baseline.compiled.json` beside `baseline.yaml`: every model
node of the validated baseline with all its field values (defaults and normalizations
included) and the class it is, a format version, and the sha256 of the YAML it came from.
A function builds the same dataclasses the rules read from it (`trustwatch.schema`),
without parsing YAML, running checks or importing pydantic (on a cold start those cost
more than the event). A compiled file that does not match its YAML (another hash, format
or set of fields) is refused with a `CompiledBaselineError`; the caller then validates the
YAML.

Encoding: a model is `{"$model": "module:Class", "fields": {...}}`;
a mapping with a key beginning with `$` is wrapped as `{"$dict": {...}}`; an enum member is
`{"$enum": "module:Class", "value": ...}`; lists, strings, numbers, booleans and null are
themselves. Nothing else is a baseline value: compiling anything else is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from trustwatch import clouds
from trustwatch.baseline import Baseline, baseline_model
from trustwatch.schema import Model, model_fields

FORMAT = "trustwatch-compiled-baseline"
FORMAT_VERSION = 2  # 2: dataclasses, no "set" (the fields given) per model
SUFFIX = ".compiled.json"


class CompiledBaselineError(ValueError):
    """A compiled baseline that cannot be used as it is (stale, tampered, other format)."""


def compiled_path(source: Path) -> Path:
    """Where the compiled form of the baseline at `source` lives: beside it."""
    return source.with_name(source.stem + SUFFIX)


def source_digest(source: bytes) -> str:
    """The sha256 (hex) a compiled baseline names its YAML source by."""
    return hashlib.sha256(source).hexdigest()


def compile_baseline(baseline: Baseline, source: bytes) -> bytes:
    """The compiled form (UTF-8 JSON) of a baseline validated from the YAML `source`."""
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_digest(source),
        "baseline": _encode(baseline),
    }
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def load_compiled(compiled: bytes, source: bytes, where: str = "<compiled baseline>") -> Baseline:
    """The baseline of a compiled file, if it is the compiled form of `source`.

    Raises CompiledBaselineError naming `where` and the reason otherwise.
    """
    try:
        document = json.loads(compiled)
    except ValueError as exc:
        raise CompiledBaselineError(f"{where}: not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CompiledBaselineError(f"{where}: not a compiled trustwatch baseline")
    if document.get("format_version") != FORMAT_VERSION:
        raise CompiledBaselineError(
            f"{where}: format version {document.get('format_version')!r}, "
            f"this trustwatch reads {FORMAT_VERSION}"
        )
    if document.get("source_sha256") != source_digest(source):
        raise CompiledBaselineError(
            f"{where}: compiled from another baseline (its source_sha256 does not match)"
        )
    baseline_model()  # loads every registered cloud's section models
    try:
        baseline = _decode(document.get("baseline"), _baseline_modules())
    except CompiledBaselineError as exc:
        raise CompiledBaselineError(f"{where}: {exc}") from None
    if type(baseline) is not baseline_model():
        raise CompiledBaselineError(f"{where}: does not hold a baseline")
    return baseline  # type: ignore[no-any-return]


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any) -> Any:
    if isinstance(value, Model):
        fields = {name: _encode(getattr(value, name)) for name in model_fields(type(value))}
        return {"$model": _name(type(value)), "fields": fields}
    if isinstance(value, enum.Enum):
        return {"$enum": _name(type(value)), "value": value.value}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise CompiledBaselineError("a mapping with a key that is not a string")
        out = {key: _encode(item) for key, item in value.items()}
        return {"$dict": out} if any(key.startswith("$") for key in out) else out
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return value
    raise CompiledBaselineError(f"cannot compile a value of type {type(value).__name__}")


def _decode(value: Any, modules: set[str]) -> Any:
    if isinstance(value, list):
        return [_decode(item, modules) for item in value]
    if not isinstance(value, dict):
        return value
    if "$model" in value:
        cls = _model_class(value["$model"], modules)
        fields = value.get("fields")
        if not isinstance(fields, dict):
            raise CompiledBaselineError(f"model {value['$model']!r} without fields")
        if set(fields) != set(model_fields(cls)):  # compiled by a trustwatch of other models
            raise CompiledBaselineError(f"{value['$model']} has other fields than this one's")
        return cls(**{name: _decode(item, modules) for name, item in fields.items()})
    if "$enum" in value:
        enum_cls = _class(value["$enum"])
        if not issubclass(enum_cls, enum.Enum):
            raise CompiledBaselineError(f"{value['$enum']!r} is not an enum")
        try:
            return enum_cls(value.get("value"))
        except ValueError:
            raise CompiledBaselineError(f"{value.get('value')!r} is no {value['$enum']}") from None
    if "$dict" in value:
        inner = value["$dict"]
        if not isinstance(inner, dict):
            raise CompiledBaselineError("$dict without a mapping")
        return {key: _decode(item, modules) for key, item in inner.items()}
    return {key: _decode(item, modules) for key, item in value.items()}


def _model_class(name: Any, modules: set[str]) -> type[Model]:
    if name == _name(Baseline):  # the assembled model (one field per cloud) carries its name
        return baseline_model()
    cls = _class(name)
    # only the baseline's own classes: a finding or a secret reference is a Model too, and
    # Model itself is no dataclass (model_construct never ran anything; __init__ may)
    if not (issubclass(cls, Model) and dataclasses.is_dataclass(cls) and cls.__module__ in modules):
        raise CompiledBaselineError(f"{name!r} is not a baseline model")
    return cls


def _baseline_modules() -> set[str]:
    """The modules the baseline's classes live in: the core's and each cloud section's."""
    return {Baseline.__module__} | {
        cloud.baseline_section().__module__ for cloud in clouds.registered()
    }


def _class(name: Any) -> type:
    """A class of a loaded trustwatch module, by `module:qualname`; nothing else."""
    module_name, _, qualname = str(name).partition(":")
    if not (module_name == "trustwatch" or module_name.startswith("trustwatch.")) or not qualname:
        raise CompiledBaselineError(f"{name!r} is not a trustwatch class")
    found: Any = sys.modules.get(module_name)  # the model modules baseline_model() loaded
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is None:
        raise CompiledBaselineError(f"no class {name!r} in this trustwatch")
    if not isinstance(found, type):
        raise CompiledBaselineError(f"{name!r} is not a class")
    return found
