"""JSON text -> Python values: exactly what `json.loads(text, strict=False)` gives, faster.

`trustwatch replay` spends much of its time parsing JSON, so it uses orjson when it is
installed (the `cli` extra) and the json module otherwise. Where the two disagree, json
decides:

- orjson rejects raw control characters inside strings (published CloudTrail samples carry
  raw line breaks, which json's strict=False reads), NaN/Infinity and lone surrogates:
  it raises, and json parses the text again (its own result, error message and position);
- orjson reads an integer beyond 64 bits as a float, silently: text that may hold one
  (a run of 19+ digits where a number can start) goes to json directly;
- orjson reads up to 1024 levels of nesting, json only as deep as the interpreter's
  recursion limit lets it (nearer 900), and deeper documents must stay an error: text
  with enough brackets to be that deep goes to json directly.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # optional: without it every text goes to json
    orjson = None  # type: ignore[assignment]

# Fewer "[" and "{" than this cannot nest as deep as json's limit (about 1000 minus the
# caller's stack); a record is a few dozen, a CloudTrail log file of many records more.
_SHALLOW_BRACKETS = 500

# For _may_hold_big_integer: digits -> "0", the characters a JSON value can follow -> ":",
# anything else -> "."; whitespace and minus signs deleted, so ": -1234..." reads ":01234".
_DIGIT_RUNS = bytes(
    ord("0") if chr(b) in "0123456789" else ord(":") if chr(b) in ":[," else ord(".")
    for b in range(256)
)
_DELETED = b" \t\r\n-"
_DIGITS_19 = b"0" * 19  # the shortest integer that may not fit 64 bits: -9223372036854775809
_VALUE_DIGITS_19 = b":" + _DIGITS_19


def loads(text: str) -> Any:
    """Parse JSON text as json.loads(text, strict=False) does; deep nesting is a
    JSONDecodeError, not a RecursionError."""
    if orjson is not None and _orjson_reads_as_json(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # json decides, and words the error
    try:
        return json.loads(text, strict=False)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _orjson_reads_as_json(text: str) -> bool:
    """Would orjson's value (or its error) be json's, as far as cheap checks can tell?"""
    return not _may_nest_deeply(text) and not _may_hold_big_integer(text)


def _may_nest_deeply(text: str) -> bool:
    # n levels take n "[" or "{" and n closing brackets: short text needs no count
    if len(text) < 2 * _SHALLOW_BRACKETS:
        return False
    return text.count("[") + text.count("{") >= _SHALLOW_BRACKETS


def _may_hold_big_integer(text: str) -> bool:
    """Is there a run of 19+ digits where a JSON number can start? (A few such runs sit
    inside strings: they only cost those texts the slower parse.)"""
    runs = text.encode("utf-8", "surrogatepass").translate(_DIGIT_RUNS, _DELETED)
    return _VALUE_DIGITS_19 in runs or runs.startswith(_DIGITS_19)
