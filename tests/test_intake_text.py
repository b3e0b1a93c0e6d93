"""intake.read_documents: one JSON document or JSON Lines, read line by line, with the
positions and errors of the simple reading (parse the whole text; on "Extra data", parse
each of text.splitlines())."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trustwatch.changes import EventError
from trustwatch.intake import read_documents


def simple_reading(text: str, source: str) -> list[tuple[str, Any]]:
    """The reference: what read_documents returns, spelled out the slow way."""

    def loads(part: str) -> Any:
        try:
            return json.loads(part, strict=False)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", part, 0) from None

    stripped = text.strip()
    if not stripped:
        return [("raise", f"{source}: empty input")]
    try:
        return [(source, repr(loads(stripped)))]
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            message = f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            return [("raise", message)]
    out: list[tuple[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:line {lineno}"
        try:
            out.append((where, repr(loads(line))))
        except json.JSONDecodeError as exc:
            out.append((where, f"{where}: invalid JSON at column {exc.colno}: {exc.msg}"))
    return out


def reading(text: str, source: str = "f.jsonl") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    try:
        for where, doc in read_documents(text, source):
            out.append((where, str(doc) if isinstance(doc, EventError) else repr(doc)))
    except EventError as exc:
        out.append(("raise", str(exc)))
    return out


RECORD = '{"eventSource": "iam.amazonaws.com", "eventName": "GetRole"}'


@pytest.mark.parametrize(
    "text",
    [
        f"{RECORD}\n{RECORD}\n",
        f"{RECORD}\r\n{RECORD}\r\n",  # CRLF
        f"{RECORD}\r{RECORD}",  # a lone CR breaks a line too
        f"{RECORD}\n\n\n{RECORD}",  # blank lines still count
        f"\n\n{RECORD}\n{RECORD}",  # leading blank lines
        f"{RECORD}\x0c{RECORD}\n{RECORD}",  # form feed: str.splitlines() breaks there
        f'{RECORD}\n{{"a": "x\u2028y"}}\n{RECORD}',  # U+2028 inside a string: two bad halves
        f'{RECORD}\n{{"a": "x\x85y"}}\n{RECORD}',
        f"{RECORD}\n{{broken\n{RECORD}",  # a bad line is reported, the next ones read
        f"{RECORD} {RECORD}\n{RECORD}",  # two documents on the first line
        '{"Records": [{"a": "raw\nnewline"}]}\n',  # one document spanning lines
        '{\n  "pretty": true\n}\n',
        f"{RECORD}\n   \n",  # one document and trailing whitespace
        f"{RECORD}\n\u00a0\n{RECORD}",  # a line of non-JSON whitespace is blank
        "\u00a0" + RECORD,
        "[1]\n2\n" + "[" * 2000 + "]" * 2000,  # too deep: that line is an error
        "",
        " \n\t\n",
    ],
)
def test_json_lines_read_as_the_simple_reading_does(text):
    assert reading(text) == simple_reading(text, "f.jsonl")


PIECES = [RECORD, "[1, 2]", '"s"', "12", '{"a":', "}", '{"a": NaN}', '{"a": "\x0c"}', ""]
BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", " ", "\u00a0"]


@settings(max_examples=300, derandomize=True, database=None)
@given(st.lists(st.sampled_from(PIECES) | st.sampled_from(BREAKS), max_size=12))
def test_any_mix_of_line_breaks_reads_as_the_simple_reading_does(parts):
    text = "".join(parts)
    assert reading(text) == simple_reading(text, "f.jsonl")
