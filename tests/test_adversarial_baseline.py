"""Adversarial baseline files: every invalid variant gives a clear error naming the field.

The valid baselines (examples/baseline.yaml, the handbook's baseline.example.yaml) are
mutated as data (a field dropped, retyped, renamed, given a bad value; an unknown field
added) and as text (truncated, a stray character, a tab, broken quoting). Each variant
either loads, or raises BaselineError whose message names the file and the field;
nothing else may escape parse_baseline.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from conftest import EXAMPLE_BASELINE, HANDBOOK_BASELINE
from fuzz.mutations import get, paths
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from trustwatch.baseline import MAX_EXPANDED_NODES, Baseline, BaselineError, parse_baseline
from worksteps import count_steps

SOURCES = [p for p in (EXAMPLE_BASELINE, HANDBOOK_BASELINE) if p.is_file()]
TEXTS = {p.name: p.read_text() for p in SOURCES}
DATA = {name: yaml.safe_load(text) for name, text in TEXTS.items()}

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
DEFAULT = settings(max_examples=60, derandomize=True, database=None, **_COMMON)
SLOW = settings(max_examples=3000, **_COMMON)

BAD_VALUES = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "x" * 10_000,
    "\u202e\ud800",
    [],
    [1, None],
    {},
    {"k": "v"},
    "destroy",
]


def load(text: str, source: str = "fuzz.yaml") -> Baseline | BaselineError:
    """parse_baseline's result or its BaselineError; anything else fails the test."""
    try:
        return parse_baseline(text, source)
    except BaselineError as exc:
        message = str(exc)
        assert message.startswith(f"{source}: invalid baseline"), message
        assert exc.problems and all(p.strip() for p in exc.problems), exc.problems
        return exc


def field_names(path: tuple[Any, ...]) -> list[str]:
    """The names an error may use for the field at `path`: its key, else its list's key."""
    keys = [str(k) for k in path if isinstance(k, str)]
    return keys[-1:] or ["(top)", "mapping at the top"]


@st.composite
def data_variants(draw: st.DrawFn) -> tuple[str, dict[str, Any], tuple[Any, ...], str]:
    """(source, mutated data, the mutated path, what was done)."""
    name = draw(st.sampled_from(sorted(DATA)))
    data = copy.deepcopy(DATA[name])
    path = draw(st.sampled_from(paths(data)[1:]))
    parent, key = get(data, path[:-1]), path[-1]
    op = draw(st.sampled_from(["drop", "retype", "unknown_field", "rename"]))
    if op == "drop":
        del parent[key]
    elif op == "retype":
        parent[key] = draw(st.sampled_from(BAD_VALUES))
    elif op == "unknown_field":
        target = get(data, path)
        if not isinstance(target, dict):
            reject()
        target["unexpected_fuzz_field"] = 1
        path = (*path, "unexpected_fuzz_field")
    else:
        if not isinstance(parent, dict):
            reject()
        parent[f"{key}_renamed"] = parent.pop(key)
        op = f"rename:{key}"
        path = (*path[:-1], f"{key}_renamed")
    return name, data, path, op


def check_data_variant(variant: tuple[str, dict[str, Any], tuple[Any, ...], str]) -> None:
    _, data, path, op = variant
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        reject()  # no YAML for it (a lone surrogate): the text tests cover odd bytes
    result = load(text)
    if isinstance(result, Baseline):
        return
    message = str(result)
    # the field itself, or (inside a policy document, or a field that needed a dropped or
    # renamed one) the enclosing field; a rename may also be reported by its old name
    names = [*field_names(path), *field_names(path[:-1])]
    if op.startswith("rename:"):
        names.append(op.split(":", 1)[1])
    assert any(n in message for n in names), f"{op} at {'.'.join(map(str, path))}: {message}"


@DEFAULT
@given(data_variants())
def test_invalid_baseline_data_names_the_field(variant):
    check_data_variant(variant)


@pytest.mark.slow
@SLOW
@given(data_variants())
def test_invalid_baseline_data_names_the_field_at_scale(variant):
    check_data_variant(variant)


@st.composite
def text_variants(draw: st.DrawFn) -> str:
    text = TEXTS[draw(st.sampled_from(sorted(TEXTS)))]
    at = draw(st.integers(0, len(text)))
    op = draw(st.sampled_from(["truncate", "insert", "delete"]))
    if op == "truncate":
        return text[:at]
    if op == "delete":
        return text[:at] + text[at + draw(st.integers(1, 20)) :]
    junk = draw(
        st.sampled_from(
            [
                "\t",
                '"',
                "'",
                ":",
                "- ",
                "{",
                "[",
                "&a",
                "*a",
                "!!python/object:os.system",
                "\x00",
                "\ufeff",
                "%",
                "\n  ",
                "? ",
            ]
        )
    )
    return text[:at] + junk + text[at:]


def check_text_variant(text: str) -> None:
    result = load(text)
    if isinstance(result, BaselineError):
        where = ("line ", "position ", "mapping at the top")
        assert any(w in str(result) for w in where), str(result)


@DEFAULT
@given(text_variants())
def test_damaged_baseline_text_gives_a_clear_error(text):
    check_text_variant(text)


@pytest.mark.slow
@SLOW
@given(text_variants())
def test_damaged_baseline_text_at_scale(text):
    check_text_variant(text)


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    keys = dotted.split("|")
    node = data
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()
ROLE = "aws|accounts|111122223333|roles|databricks-uc-metastore"
INVALID = [
    # (field path with "|", new value, a name the error must contain)
    ("version", 2, "version"),
    ("surprise", 1, "surprise"),
    ("defaults|mode", "destroy", "defaults.mode"),
    ("defaults|min_severity", "urgent", "defaults.min_severity"),
    ("actors|responder", "arn:aws:iam::111122223333:role/x", "actors.responder"),
    ("aws|partition", "aws-cn", "aws.partition"),
    ("aws|accounts|111122223333|untracked_roles", "maybe", "untracked_roles"),
    (f"{ROLE}|trust|template", "ec3", "trust"),
    (f"{ROLE}|trust|external_id", _DELETE, "external_id"),
    (f"{ROLE}|managed_policies", "arn:aws:iam::aws:policy/x", "managed_policies"),
    (f"{ROLE}|managed_policies", ["not-an-arn"], "managed_policies"),
    (f"{ROLE}|mode", "fix", "mode"),
    (f"{ROLE}|trust", '{"Statement": ', "trust"),
    (f"{ROLE}|trust", {"Version": "2012-10-17"}, "trust"),
    (
        "aws|accounts|111122223333|instance_profiles|databricks-cluster-data|role",
        "nope",
        "instance_profiles",
    ),
    ("databricks", _DELETE, "databricks.account_id"),
    (
        "azure|subscriptions|9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e|identities|terraform-sp|principal_id",
        _DELETE,
        "principal_id",
    ),
    (
        "azure|subscriptions|9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e|identities|terraform-sp|role_assignments",
        [{"role": "Contributor"}],
        "scope",
    ),
    (
        "azure|subscriptions|9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e|identities|terraform-sp|role_assignments",
        [{"role": "Not A Real Role", "scope": "/"}],
        "role",
    ),
    (
        "gcp|projects|dbx-prod-4821|service_accounts|databricks-compute@dbx-prod-4821.iam.gserviceaccount.com|user_managed_keys",
        "sometimes",
        "user_managed_keys",
    ),
    ("gcp|projects|dbx-prod-4821|buckets|dbx-uc-prod-4821|bindings", ["roles/x"], "bindings"),
]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    INVALID,
    ids=[i[0].split("|")[-1] + "-" + str(n) for n, i in enumerate(INVALID)],
)
def test_each_invalid_field_is_named(field, value, named):
    data = _set(DATA[EXAMPLE_BASELINE.name], field, value)
    with pytest.raises(BaselineError) as raised:
        parse_baseline(yaml.safe_dump(data), "bad.yaml")
    message = str(raised.value)
    assert message.startswith("bad.yaml: invalid baseline"), message
    assert named in message, message
    assert "line " in message, message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "[]",
        "- a\n- b",
        "just a string",
        "version: [1",
        "\ufeffversion: 1\n  x: 2",
        "a: b: c",
    ],
)
def test_not_a_baseline_at_all(text):
    result = load(text)
    assert isinstance(result, BaselineError)


# ------------------------------------------------------------------ regressions


def _alias_bomb(depth: int) -> str:
    """10 ** (depth + 1) scalars once expanded, in a few hundred bytes."""
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append(f"actors: {{responder: *a{depth}}}")
    return "\n".join(lines)


def _calls_to_reject(text: str) -> int:
    def run() -> None:
        with pytest.raises(BaselineError, match="expands to more than 100000 YAML nodes"):
            parse_baseline(text)

    # Twice the node limit: the walk that enforces it is one call per node.
    return count_steps(run, budget=2 * MAX_EXPANDED_NODES)


def test_regression_yaml_alias_bomb_is_rejected_quickly():
    # A bomb of 10**8 nodes is refused after a bounded walk, not expanded: the work done
    # stays within the limit and does not grow with the bomb (100 times larger here).
    calls_small, calls_large = _calls_to_reject(_alias_bomb(5)), _calls_to_reject(_alias_bomb(7))
    assert calls_large < 1.1 * calls_small
