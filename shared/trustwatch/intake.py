"""From bytes on disk (or a function's payload) to normalized Changes, whatever the cloud.

Each cloud's `events` module offers the same three functions:

- `recognizes(doc) -> bool`: does this JSON document belong to the cloud (in any shape)?
- `records(doc) -> Iterator[Any]`: unwrap delivery envelopes and batches into audit records.
- `parse(record) -> list[Change] | Skipped`: one audit record; raises EventError if malformed.

Whatever a document holds, each record ends in its own `Parsed`: changes, a skip, or an
error naming where it is. An exception other than EventError escaping a cloud's parser is
a bug in trustwatch, never the end of the batch: that record becomes an error marked
`internal` (message "…: internal error: …"), logged at ERROR on the "trustwatch" logger
with the code location and only a short prefix of the record.

This module reads files (one JSON document, JSON Lines, `.gz` of either) and routes each
document to the cloud that recognizes it, asking every registered cloud (trustwatch.clouds)
in turn: a new cloud is a new folder.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
import traceback
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustwatch import clouds
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.clouds import EventsModule
from trustwatch.jsontext import loads

log = logging.getLogger("trustwatch")
# How much of a record an internal-error log line may quote: enough to find it, no more.
RECORD_PREFIX_CHARS = 120


@dataclass(frozen=True)
class Parsed:
    """The outcome of one audit record: changes, a skip with its reason, or an error."""

    where: str  # "file:line 3 record 2" — for messages
    changes: list[Change]
    skipped: Skipped | None = None
    error: EventError | None = None
    internal: bool = False  # the error is a trustwatch bug (an unexpected exception)


_EVENTS_MODULES: dict[str, EventsModule] = {}
clouds.on_change(_EVENTS_MODULES.clear)


def events_module(cloud: str) -> EventsModule:
    """The cloud's `events` module, imported on first use: called for every record, so
    after that it is a dict lookup (import_module costs microseconds even when cached)."""
    module = _EVENTS_MODULES.get(cloud)
    if module is None:
        module = clouds.get(cloud).events()
        _EVENTS_MODULES[cloud] = module
    return module


def detect_cloud(doc: Any) -> str | None:
    found = _recognized(doc)
    return found[0] if found else None


def _recognized(doc: Any) -> tuple[str, EventsModule] | None:
    """The cloud that recognizes the document, and its events module."""
    for cloud in clouds.names():
        module = events_module(cloud)
        if module.recognizes(doc):
            return cloud, module
    return None


def _decode(raw: bytes, source: str) -> str:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise EventError(f"{source}: truncated or corrupt gzip ({exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EventError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def read_documents(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """Yield (position, document) for one JSON document or JSON Lines text."""
    if _starts_json_lines(text):
        yield from _json_lines(text, source)
        return
    stripped = text.strip()
    if not stripped:
        raise EventError(f"{source}: empty input")
    try:
        yield source, loads(stripped)
        return
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise EventError(
                f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    yield from _json_lines(text, source)


def _starts_json_lines(text: str) -> bool:
    """JSON Lines, told from the first line: a complete document there and more text after
    it is exactly what makes the whole text fail to parse as one document ("Extra data"),
    without copying and parsing a large file to find that out."""
    first_end = text.find("\n")
    if first_end < 0 or text[:1].isspace():
        return False  # one line, or leading blank lines: the general case decides
    try:
        loads(text[:first_end])
    except json.JSONDecodeError:
        return False
    end = len(text)
    while end > first_end and text[end - 1].isspace():
        end -= 1
    return end > first_end


# What str.splitlines() breaks a line at besides "\n" (JSON Lines positions count them).
_ASCII_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_OTHER_BREAKS = ("\x85", "\u2028", "\u2029")


def _json_lines(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """One document per line, lines numbered as text.splitlines() numbers them; read a
    line at a time (splitting a large file at once would hold a second copy of it)."""
    lineno, start, size = 0, 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            end = size
        segment = text[start:end]
        if _breaks_further(segment):
            # with its "\n": "x\x0b\n" is two lines, "x\r\n" one
            lines: Sequence[str] = text[start : end + 1].splitlines()
        else:
            lines = (segment,)
        start = end + 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            where = f"{source}:line {lineno}"
            try:
                yield where, loads(line)
            except json.JSONDecodeError as exc:
                # a bad line is its own error; the next lines are still read
                yield where, EventError(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}")


def _breaks_further(segment: str) -> bool:
    """Does str.splitlines() split this newline-free text (CRLF, form feeds, U+2028...)?"""
    for mark in _ASCII_BREAKS:
        if mark in segment:
            return True
    return not segment.isascii() and any(mark in segment for mark in _OTHER_BREAKS)


def read_path(path: str | Path) -> Iterator[tuple[str, Any]]:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise EventError(f"{source}: cannot read file: {exc.strerror or exc}") from None
    text = _decode(raw, source)
    del raw  # a JSON Lines file can be large: keep only its text while it is read
    yield from read_documents(text, source)


def parse_paths(paths: Iterable[str | Path]) -> Iterator[Parsed]:
    """Every record of every file ('-' is stdin), in order; an unreadable file is one error
    and the next file is still read."""
    for path in paths:
        try:
            if str(path) == "-":
                documents = read_documents(sys.stdin.read(), "<stdin>")
            else:
                documents = read_path(path)
            for where, doc in documents:
                yield from parse_document(doc, where)
        except EventError as exc:
            yield Parsed(str(path), [], error=exc)


def parse_document(doc: Any, where: str) -> Iterator[Parsed]:
    """Route one document to its cloud and parse every record it holds."""
    if isinstance(doc, EventError):
        yield Parsed(where, [], error=doc)
        return
    try:
        found = _recognized(doc)
        if found is None:
            yield Parsed(where, [], error=EventError(f"{where}: {_unknown_shape(doc)}"))
            return
        _, module = found
        records = list(module.records(doc))
    except EventError as exc:
        yield Parsed(where, [], error=EventError(f"{where}: {exc}"))
        return
    except Exception as exc:  # a bug in unwrapping: the document's error, not the batch's end
        yield internal_error(exc, where, doc, "reading")
        return
    if len(records) == 1:  # the usual case: the document's position is the record's
        yield _parse_record(module, records[0], where)
        return
    for index, record in enumerate(records):
        yield _parse_record(module, record, f"{where} record {index}")


def _parse_record(module: EventsModule, record: Any, where: str) -> Parsed:
    try:
        outcome = module.parse(record)
    except EventError as exc:
        return Parsed(where, [], error=EventError(f"{where}: {exc}"))
    except Exception as exc:  # the one guard: a parser bug ends this record only
        return internal_error(exc, where, record, "parsing")
    if isinstance(outcome, Skipped):
        return Parsed(where, [], skipped=outcome)
    return Parsed(where, outcome)


def internal_error(exc: BaseException, where: str, record: Any, stage: str) -> Parsed:
    """The record's error for an unexpected exception, logged as the bug it is."""
    at = code_location(exc)
    log.error(
        "internal error %s %s: %s at %s (record starts %r)",
        stage,
        where,
        short_exception(exc),
        at,
        record_prefix(record),
    )
    message = f"{where}: internal error {stage} the record: {short_exception(exc)} at {at}"
    return Parsed(where, [], error=EventError(message), internal=True)


def short_exception(exc: BaseException, limit: int = 200) -> str:
    """`Type: message`, cut short: an exception message may quote the record."""
    text = str(exc)
    text = text if len(text) <= limit else text[:limit] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def code_location(exc: BaseException) -> str:
    """Where in trustwatch it was raised: `gcp/events.py:263 in _deltas`."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "trustwatch" in f.filename] or frames
    if not ours:
        return "?"
    frame = ours[-1]
    name = frame.filename.replace("\\", "/").rsplit("trustwatch/", 1)[-1]
    return f"{name}:{frame.lineno} in {frame.name}"


def record_prefix(record: Any, limit: int = RECORD_PREFIX_CHARS) -> str:
    """The first characters of the record as JSON (never the whole of it)."""
    try:
        text = json.dumps(record, ensure_ascii=True, default=lambda o: type(o).__name__)
    except (RecursionError, ValueError, TypeError):
        return f"<a {type(record).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def _unknown_shape(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(sorted(map(str, doc))[:8])
        known = ", ".join(clouds.names())
        return f"unknown record shape (not an audit event of {known}; keys: {keys})"
    return f"unknown record shape: a JSON {type(doc).__name__}, expected an object"
