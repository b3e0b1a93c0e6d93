"""The baseline file (Contract 1): its dataclasses and a YAML loader with precise errors.

Core holds what every baseline has (version, databricks, defaults, actors); each cloud's
section (`aws:`, `azure:`, …) is the dataclass its folder declares
(`CloudPlugin.baseline_section`), assembled into one class by `baseline_model()`. They are
`trustwatch.schema` models: pydantic checks a baseline file (`parse_baseline`), and a
function that loads its compiled baseline (`trustwatch.compiled`) never imports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trustwatch import clouds
from trustwatch.findings import Severity
from trustwatch.frozen import frozen
from trustwatch.schema import Model, error_message

if TYPE_CHECKING:
    import yaml
    from pydantic_core import ErrorDetails

Mode = Literal["alert", "remediate"]


@frozen
class Databricks(Model):
    account_id: str


@frozen
class Defaults(Model):
    mode: Mode = "alert"
    min_severity: Severity = Severity.medium


@frozen
class Actors(Model):
    responder: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)


@frozen
class Baseline(Model):
    """The parts every baseline has; `baseline_model()` adds one field per cloud section,
    read as `baseline.<cloud name>` (each cloud's rules read their own)."""

    version: Literal[1] = 1
    databricks: Databricks | None = None
    defaults: Defaults = field(default_factory=Defaults)
    actors: Actors = field(default_factory=Actors)

    if TYPE_CHECKING:  # the cloud sections are fields of the assembled subclass

        def __getattr__(self, name: str) -> Any: ...

    def _check(self) -> Baseline:
        problems = [p for cloud in clouds.registered() for p in cloud.check_baseline(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def model_validate(cls, data: Any) -> Baseline:
        """Validate with every registered cloud's section (the assembled class)."""
        if cls is Baseline:
            return baseline_model().model_validate(data)
        return super().model_validate(data)

    def mode_for(self, override: Mode | None) -> Mode:
        return override or self.defaults.mode

    def section(self, cloud: str) -> Any:
        """The cloud's section (its own model, empty when the file has none)."""
        return getattr(self, cloud)


_assembled: type[Baseline] | None = None


def baseline_model() -> type[Baseline]:
    """Baseline with a field per registered cloud (rebuilt when the registry changes)."""
    global _assembled
    if _assembled is None:
        sections = []
        for cloud in clouds.registered():
            model = cloud.baseline_section()
            sections.append((cloud.name, model, field(default_factory=model)))
        assembled = dataclasses.make_dataclass(
            "Baseline", sections, bases=(Baseline,), frozen=True, eq=False, repr=False
        )
        assembled.__module__ = __name__  # its compiled form names it trustwatch.baseline
        _assembled = assembled
    return _assembled


def _reset_model() -> None:
    global _assembled
    _assembled = None


clouds.on_change(_reset_model)


class BaselineError(ValueError):
    """An unreadable or invalid baseline; the message names file, line and field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: invalid baseline:\n  " + "\n  ".join(problems)
            if len(problems) > 1
            else f"{source}: invalid baseline: {problems[0]}"
        )


# A baseline has hundreds of nodes; aliases can make a 300-byte file expand to billions.
MAX_EXPANDED_NODES = 100_000


class _TooLarge(Exception):
    """The composed YAML expands past MAX_EXPANDED_NODES."""


def _node_lines(
    node: yaml.Node,
    path: tuple[str, ...],
    out: dict[tuple[str, ...], int],
    budget: list[int] | None = None,
) -> None:
    """Map each field path to its 1-based line, for error messages."""
    import yaml

    budget = budget if budget is not None else [MAX_EXPANDED_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _node_lines(value, child, out, budget)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, str(index)), out, budget)


def describe_error(err: ErrorDetails) -> str:
    """A pydantic error as a sentence a user can act on (no pydantic jargon)."""
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {err.get('input')!r}"
    return error_message(err)


def _load_yaml(text: str, lines: dict[tuple[str, ...], int]) -> Any:
    """yaml.safe_load(text), parsing the text once: the nodes first give each field's line
    (and bound alias expansion), then the data is built from them."""
    import yaml  # only here: a function reading its compiled baseline never parses YAML

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _node_lines(node, (), lines)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_baseline(text: str, source: str = "<baseline>") -> Baseline:
    """Validate YAML text as a baseline; raises BaselineError with every problem found."""
    import yaml
    from pydantic import ValidationError

    lines: dict[tuple[str, ...], int] = {}
    try:
        data = _load_yaml(text, lines)
    except _TooLarge:
        raise BaselineError(
            source, [f"expands to more than {MAX_EXPANDED_NODES} YAML nodes (nested aliases?)"]
        ) from None
    except RecursionError:
        raise BaselineError(source, ["nested too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BaselineError(source, [f"{where}not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        sections = ", ".join(("version", *clouds.names()))
        raise BaselineError(source, [f"expected a mapping at the top ({sections} …)"])
    try:
        return baseline_model().model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = tuple(str(p) for p in err["loc"])
            line = _line_for(lines, path)
            dotted = ".".join(path) or "(top)"
            where = f"line {line}: " if line else ""
            problems.append(f"{where}{dotted}: {describe_error(err)}")
        raise BaselineError(source, problems) from None


def _line_for(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file from a local path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise BaselineError(str(path), ["not UTF-8 text"]) from None
    return parse_baseline(text, str(path))
