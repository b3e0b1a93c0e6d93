"""intake.read_stream: files and stdin read a piece at a time, with exactly the documents,
positions and errors of reading the whole decoded text (the reading before streaming:
`_decode` the bytes, then `read_documents`), at every piece size; bytes that go bad part
way through JSON Lines give the lines before the damage, then the same error; memory
does not grow with the file."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustwatch import jsontext
from trustwatch.changes import EventError
from trustwatch.intake import parse_paths, read_documents, read_path, read_stream

SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PIECE_SIZES = [1, 2, 3, 5, 16, 64, 1 << 20]


def whole_reading(raw: bytes, source: str = "f.jsonl") -> list[tuple[str, Any]]:
    """The reference: the file decoded whole (as intake did before streaming), then read."""
    try:
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (EOFError, OSError, zlib.error) as exc:
                raise EventError(f"{source}: truncated or corrupt gzip ({exc})") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise EventError(f"{source}: not UTF-8 text (byte {exc.start})") from None
        return _listed(read_documents(text, source))
    except EventError as exc:
        return [("raise", str(exc))]


def _listed(documents: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    try:
        for where, doc in documents:
            out.append((where, str(doc) if isinstance(doc, EventError) else repr(doc)))
    except EventError as exc:
        out.append(("raise", str(exc)))
    return out


def streamed(raw: bytes, chunk: int, source: str = "f.jsonl") -> list[tuple[str, Any]]:
    return _listed(read_stream(io.BytesIO(raw), source, chunk))


# lines: records, blank and odd-break lines, numbers that outgrow 64 bits (and digit runs
# in strings), deep nesting, bad JSON, raw control characters, non-ASCII
LINE = st.one_of(
    st.sampled_from(
        [
            '{"eventSource": "iam.amazonaws.com", "eventName": "GetRole"}',
            '{"a":12345678901234567890}',
            '{"a": -12345678901234567890, "b": "x-1234567890123456789012"}',
            '{"s":"aws-go-sdk-1722375070115152000"}',
            "[1.5, 1e400, NaN]",
            "12345678901234567890123",
            '{"t": "a\tb"}',
            '{"u": "\\ud800"}',
            '{"é": "ü\u2028x"}',
            "[" * 950 + "]" * 950,
            "[" * 600 + "]" * 600,
            "{" * 1100 + "}" * 1100,
            '{"a": 1',
            "not json",
            "",
            "   ",
            "\x1f",
            "\u00a0",
            "{}\r",
            "[]\x0b[]",
            "{}\x1c{}",
            "[1]\x85[2]",
        ]
    ),
    st.from_regex(r'\{"k": "[a-z0-9 -]{0,30}", "n": -?[0-9]{1,22}\}', fullmatch=True),
    st.text(st.characters(codec="utf-8"), max_size=12),
)
TEXT = st.lists(LINE, min_size=0, max_size=8).map("\n".join)
JOINED = st.tuples(TEXT, st.sampled_from(["", "\n", "\r\n", "\n\n  \n"])).map("".join)


@SETTINGS
@given(JOINED, st.booleans(), st.booleans(), st.sampled_from(PIECE_SIZES))
def test_streamed_reading_is_the_whole_reading(text, bom, gzipped, chunk):
    raw = text.encode("utf-8", "surrogatepass")
    raw = b"\xef\xbb\xbf" + raw if bom else raw
    raw = gzip.compress(raw) if gzipped else raw
    assert streamed(raw, chunk) == whole_reading(raw)


@pytest.mark.parametrize("chunk", PIECE_SIZES)
def test_json_lines_with_every_line_kind(chunk):
    text = "\n".join(
        [
            '{"a": 1}',
            "",
            '{"a":12345678901234567890}',
            '{"s":"sdk-1722375070115152000", "n": 1}',
            "[" * 950 + "]" * 950,
            "{bad",
            '{"t": "raw\ttab"}',
            "{}\r",
            "{}\x0c{}",
            '{"x": "\u2028"}',
            "\u00a0",
            "[1e400]",
        ]
    )
    got = streamed(text.encode(), chunk)
    assert got == whole_reading(text.encode())
    assert ("f.jsonl:line 3", "{'a': 12345678901234567890}") in got  # an int, not a float


@pytest.mark.parametrize("chunk", PIECE_SIZES)
@pytest.mark.parametrize(
    "text",
    [
        '{"Records": [{"a": 1}, {"a": 2}]}',
        '{\n  "Records": [\n    {"a": 1}\n  ]\n}\n',
        '{"a": 1}\n\n\n   \n',
        '\n{"a": 1}\n{"a": 2}',
        '{"a": 1}\n{"a": 2',
        '{"a":\n1}\n{"a": 2}',
        "",
        "  \n ",
        "{",
    ],
)
def test_one_document_and_edge_shapes(text, chunk):
    raw = text.encode()
    assert streamed(raw, chunk) == whole_reading(raw)


def _lines(count: int) -> bytes:
    return b"".join(b'{"eventSource": "ec2.amazonaws.com", "n": %d}\n' % i for i in range(count))


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_a_bad_byte_mid_stream_ends_it_after_the_lines_before(chunk):
    good = _lines(50)
    raw = good + b'{"eventSource": "caf\xe9"}\n' + _lines(3)
    got = streamed(raw, chunk)
    assert (
        got[-1]
        == whole_reading(raw)[0]
        == ("raise", f"f.jsonl: not UTF-8 text (byte {len(good) + 20})")
    )
    assert got[:-1] == whole_reading(good)  # every line before the bad one, none after


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_a_truncated_gzip_mid_stream_ends_it_with_the_gzip_error(chunk):
    full = gzip.compress(_lines(5000), compresslevel=1)
    raw = full[: len(full) // 2]
    got = streamed(raw, chunk)
    (reference,) = whole_reading(raw)
    assert got[-1] == reference and "truncated or corrupt gzip" in reference[1]
    assert 0 < len(got) - 1 < 5000
    assert got[:-1] == whole_reading(full)[: len(got) - 1]


@pytest.mark.parametrize(
    "raw",
    [
        gzip.compress(b'{"Records": []}')[:-6],  # truncated
        gzip.compress(b'{"a": 1}\n{"a": 2}\n')[:-3],
        gzip.compress(b'{"a": 1}\n') + b"garbage",
        gzip.compress(b'{"a": 1}\n') + b"\x00\x00\x00",
        gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n'),  # two members
        b"\x1f\x8b",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03bad",
        b"\xff\xfe\x00",
        b"\xef\xbb\xbf\xef\xbb\xbf{}",
        b"\xef\xbb",
    ],
)
def test_damaged_and_odd_bytes_give_the_whole_readings_error(raw):
    assert streamed(raw, 4)[-1:] == whole_reading(raw)[-1:]


def test_unreadable_file_and_directory(tmp_path):
    with pytest.raises(EventError, match="cannot read file"):
        list(read_path(tmp_path / "missing.jsonl"))
    with pytest.raises(EventError, match="cannot read file"):
        list(read_path(tmp_path))


def test_stdin_is_streamed_like_a_file(monkeypatch):
    raw = gzip.compress(b'{"hello": "world"}\n{"eventSource": 1}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    errors = [str(p.error) for p in parse_paths(["-"])]
    assert errors[0].startswith("<stdin>:line 1: unknown record shape")
    assert errors[1].startswith("<stdin>:line 2: ")


def test_without_orjson_every_line_goes_to_json(monkeypatch):
    monkeypatch.setattr(jsontext, "orjson", None)
    raw = b'{"a": 12345678901234567890}\n[1e400]\n{bad\n'
    assert streamed(raw, 8) == whole_reading(raw)


def test_memory_does_not_grow_with_a_json_lines_file(tmp_path):
    """A 32 MB JSON Lines file is read holding a few pieces (1 MB each) at a time."""
    line = json.dumps({"eventSource": "ec2.amazonaws.com", "pad": "x" * 1000}).encode()
    path = tmp_path / "big.jsonl"
    with path.open("wb") as out:
        for _ in range(32):
            out.write((line + b"\n") * 1000)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_path(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 32_000
    assert peak < 12 * (1 << 20), peak
