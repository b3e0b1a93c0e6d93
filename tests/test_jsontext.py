"""jsontext.loads gives exactly json.loads(text, strict=False)'s value or error, with
orjson installed (the fast path) and without it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustwatch import jsontext


def outcome(parse: Any, text: str) -> tuple[Any, ...]:
    try:
        value = parse(text)
    except json.JSONDecodeError as exc:
        return ("error", exc.msg, exc.lineno, exc.colno)
    return ("value", repr(value))  # repr: 1 and 1.0, -0.0 and 0.0 differ


def json_loads(text: str) -> Any:
    try:
        return json.loads(text, strict=False)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


@pytest.fixture(params=["orjson", "json only"])
def loads(request, monkeypatch):
    if request.param == "json only":
        monkeypatch.setattr(jsontext, "orjson", None)
    elif jsontext.orjson is None:
        pytest.skip("orjson is not installed")
    return jsontext.loads


TEXTS = [
    '{"a": 1, "b": [true, false, null], "c": "d"}',
    '{"a": "raw\nnewline"}',  # CloudTrail samples: json's strict=False reads them
    '{"a": "\\ud800"}',  # a lone surrogate, escaped
    '"\ud800"',  # and raw
    '{"a": NaN, "b": Infinity, "c": -Infinity}',
    "1e400",
    "-0",
    "-0.0",
    "0.1",
    '{"a": 1, "a": 2}',
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",  # beyond 64 bits: orjson would read a float
    "18446744073709551615",
    "18446744073709551616",
    '{"n": [1, 123456789012345678901234567890]}',
    '{"n":\t-99999999999999999999}',
    '{"id": "1234567890123456789012345"}',  # digits in a string: the value is the same
    "[" * 499 + "]" * 499,  # short enough not to count its brackets
    "[" * 600 + "]" * 600,
    '{"a":' * 990 + "1" + "}" * 990,
    "[" * 1000 + "]" * 1000,  # too deep for json: an error, as before
    "[" * 100_000 + "]" * 100_000,
    '{"a": 1} x',
    '{"a": 1}\n{"b": 2}',
    "",
    "   ",
    "\ufeff{}",
    '{"a": "\u2028\x85"}',
    "[1, 2,]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_same_value_or_error_as_json(loads, text):
    assert outcome(loads, text) == outcome(json_loads, text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


# the fixture only picks the parser: the same for every example
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(json_values, st.booleans(), st.integers(min_value=0, max_value=40))
def test_any_json_text_parses_as_json_does(loads, value, ensure_ascii, cut):
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    assert outcome(loads, text) == outcome(json_loads, text)
    damaged = text[: len(text) - cut]  # and truncated: the same error, the same position
    assert outcome(loads, damaged) == outcome(json_loads, damaged)


# ------------------------------------------------- JSON Lines: loads_line on unflagged lines


def line_outcomes(lines: list[str]) -> list[tuple[Any, ...]]:
    """Each line as intake reads it: orjson (loads_line) unless integers_beyond_64_bits
    points into the line or loads_line raises; then loads. Must be json's outcome."""
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    flagged = jsontext.integers_beyond_64_bits(raw)
    out, start = [], 0
    for line in raw.split(b"\n"):
        end = start + len(line)
        text = line.decode("utf-8", "surrogatepass")
        result: tuple[Any, ...] | None = None
        if not any(start <= at < end for at in flagged):
            try:
                result = ("value", repr(jsontext.loads_line(line)))
            except ValueError:
                result = None
        out.append(result or outcome(jsontext.loads, text))
        start = end + 1
    return out


LINES = [
    '{"a": 12345678901234567890}',
    '{"a": -12345678901234567890}',
    '{"a": [1, 12345678901234567890123]}',
    '{"a":\t -9223372036854775809}',
    "18446744073709551616",
    '{"s": "sdk-1722375070115152000", "n": 1}',
    '{"s": "x 1234567890123456789012"}',
    '{"f": 1.12345678901234567890123}',
    '{"e": 1e1234567890123456789}',
    "[" * 600 + "]" * 600,
    "[" * 950 + "]" * 950,
    "{" * 1100 + "}" * 1100,
    '{"t": "raw\ttab"}',
    "[NaN]",
    "",
]


@pytest.mark.skipif(jsontext.orjson is None, reason="orjson is not installed")
def test_lines_read_by_orjson_are_read_as_json_reads_them():
    assert line_outcomes(LINES) == [outcome(json_loads, line) for line in LINES]
    assert line_outcomes(LINES)[0] == ("value", "{'a': 12345678901234567890}")


@pytest.mark.skipif(jsontext.orjson is None, reason="orjson is not installed")
@settings(max_examples=200, derandomize=True, database=None)
@given(st.lists(json_values, min_size=1, max_size=5), st.booleans())
def test_any_json_lines_read_by_orjson_are_read_as_json_reads_them(values, ensure_ascii):
    lines = [json.dumps(v, ensure_ascii=ensure_ascii) for v in values]
    assert line_outcomes(lines) == [outcome(json_loads, line) for line in lines]


# ------------------------------------------- line_may_nest_deeply: one count for most lines


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.lists(st.sampled_from(["array", "object"]), min_size=400, max_size=700),
    st.sampled_from(["", " "]),
)
def test_a_line_as_deep_as_the_limit_is_always_left_to_json(levels: list[str], space: str) -> None:
    """The one-count shortcut (a "[" count plus a fifth of the length bounds a JSON text's
    depth) never lets a line as deep as _SHALLOW_BRACKETS through: the tightest nesting,
    `{"":` and `[`, with no other text."""
    opened = "".join("[" + space if level == "array" else '{"":' + space for level in levels)
    closed = "".join("]" if level == "array" else "}" for level in reversed(levels))
    line = (opened + "1" + closed).encode()
    assert json.loads(line.decode(), strict=False) is not None  # what it bounds: JSON
    deep = len(levels) >= jsontext._SHALLOW_BRACKETS
    assert jsontext.line_may_nest_deeply(line) or not deep
    counted = line.count(b"[") + line.count(b"{") >= jsontext._SHALLOW_BRACKETS
    assert jsontext.line_may_nest_deeply(line) == (counted and len(line) >= 1000)
