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

This module reads files and stdin (one JSON document, JSON Lines, `.gz` of either; JSON
Lines streamed a piece at a time, see read_stream) and routes each document to the cloud
that recognizes it, asking every registered cloud (trustwatch.clouds) in turn: a new cloud
is a new folder. A caller that only counts skips may let the Prefilter count a record of an
unwatched operation without parsing it further (parse_paths).
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
import traceback
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from trustwatch import clouds, jsontext
from trustwatch.changes import Change, EventError, Skipped, SubjectPrefilter
from trustwatch.clouds import EventsModule
from trustwatch.frozen import frozen
from trustwatch.jsontext import loads

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline

log = logging.getLogger("trustwatch")
# How much of a record an internal-error log line may quote: enough to find it, no more.
RECORD_PREFIX_CHARS = 120
# How much of a file is read at a time (a JSON Lines piece is this plus the rest of a line).
CHUNK_BYTES = 1 << 20


@frozen
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
    """The cloud that recognizes the document, and its events module: the clouds asked in
    registry order, each one's events module imported only when a document first gets
    that far (an AWS function's records never load the other clouds' parsers)."""
    routes = _ROUTES
    for found in routes:
        if found[1].recognizes(doc):
            return found
    names = clouds.names()
    while len(routes) < len(names):
        cloud = names[len(routes)]
        found = (cloud, events_module(cloud))
        routes.append(found)
        if found[1].recognizes(doc):
            return found
    return None


_ROUTES: list[tuple[str, EventsModule]] = []  # the clouds asked so far, in registry order
clouds.on_change(_ROUTES.clear)


def _first_route() -> tuple[str, EventsModule] | None:
    """The cloud every document is asked about first, and its events module."""
    if not _ROUTES:
        names = clouds.names()
        if not names:
            return None
        _ROUTES.append((names[0], events_module(names[0])))
    return _ROUTES[0]


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
        lineno = yield from _text_documents(lines, source, lineno)


def _breaks_further(segment: str) -> bool:
    """Does str.splitlines() split this newline-free text (CRLF, form feeds, U+2028...)?"""
    for mark in _ASCII_BREAKS:
        if mark in segment:
            return True
    return not segment.isascii() and any(mark in segment for mark in _OTHER_BREAKS)


def read_path(
    path: str | Path, line_filter: LinesFilter | None = None, *, noise_runs: bool = False
) -> Iterator[tuple[str, Any]]:
    """Yield (position, document) for a file, streamed (see read_stream)."""
    source = str(path)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed after its last document
    except OSError as exc:
        raise EventError(f"{source}: cannot read file: {exc.strerror or exc}") from None
    with stream:
        yield from read_stream(stream, source, line_filter=line_filter, noise_runs=noise_runs)


def read_stream(
    stream: BinaryIO,
    source: str,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    line_filter: LinesFilter | None = None,
    noise_runs: bool = False,
) -> Iterator[tuple[str, Any]]:
    """Yield (position, document) for a byte stream: plain or gzip (told by its magic
    bytes, as before), UTF-8 with or without a BOM, one JSON document or JSON Lines.

    JSON Lines are read a piece of whole lines at a time (about `chunk_bytes`), so memory
    does not grow with the file; a one-document file (`{"Records": [...]}`) is held whole,
    as it is one JSON value. Which of the two a stream is, and every position and error
    message, are read_documents' on the whole text. Bytes that go bad part-way through a
    JSON Lines stream (a truncated gzip, a byte that is not UTF-8) end it with the file's
    error, after the documents of the whole lines before the damage.

    `line_filter` (Prefilter.lines_filter) may tell from a JSON Lines line's bytes that
    its record is noise: such a line gives (`""`, PREFILTERED) instead of its document,
    or, with `noise_runs`, each run of such lines one (`""`, NoiseRun) of its length.
    """
    pieces = _pieces(stream, source, chunk_bytes)
    head: list[tuple[bytes, str]] = []
    decided: bool | None = None
    for piece in pieces:
        head.append(piece)
        if len(head) == 1:
            decided = _json_lines_decided(piece[1])
        elif not piece[1].isspace():  # the first text after the first line's blank ones
            decided = _starts_json_lines(head[0][1] + piece[1])
        if decided is not None:
            break
    if not decided:  # one document (or not JSON at all): held whole, read as before
        text = "".join([text for _, text in head] + [text for _, text in pieces])
        del head
        yield from read_documents(text, source)
        return
    lineno = 0
    for piece in _drained(head, pieces):
        lineno = yield from _piece_documents(piece, source, lineno, line_filter, noise_runs)


def _drained(
    head: list[tuple[bytes, str]], rest: Iterator[tuple[bytes, str]]
) -> Iterator[tuple[bytes, str]]:
    """The pieces read ahead, each dropped once given, then the rest."""
    head.reverse()
    while head:
        yield head.pop()
    yield from rest


def _json_lines_decided(text: str) -> bool | None:
    """_starts_json_lines told from the first piece of the text (which holds the first
    line whole), or None while only blank text follows the first line."""
    first_end = text.find("\n")
    if first_end >= 0 and not text[:1].isspace() and text[first_end:].isspace():
        return None  # read on: more lines may follow the blank ones
    return _starts_json_lines(text)


def _pieces(stream: BinaryIO, source: str, chunk_bytes: int) -> Iterator[tuple[bytes, str]]:
    """The stream's bytes, decompressed and checked to be UTF-8 (a BOM at the start
    dropped, as utf-8-sig does), as (bytes, text) pieces of whole lines: each ends with a line feed but the last, so no
    line straddles two. Damage (gzip, UTF-8) raises the file's error after the pieces
    before it (a piece with a bad byte gives its whole lines before that byte first)."""
    reader: Any = stream
    gzipped = False
    first = _read(stream, max(chunk_bytes, 2), source, gzipped)
    while len(first) == 1:  # a short read: the two magic bytes decide
        more = _read(stream, chunk_bytes, source, gzipped)
        if not more:
            break
        first += more
    if first[:2] == b"\x1f\x8b":
        replayed: Any = _Replayed(first, stream)
        reader, gzipped = gzip.GzipFile(fileobj=replayed, mode="rb"), True
        first = _read(reader, chunk_bytes, source, gzipped)
    while 0 < len(first) < 3 and b"\xef\xbb\xbf".startswith(first):
        more = _read(reader, chunk_bytes, source, gzipped)  # a short read: is it a BOM?
        if not more:
            break
        first += more
    if first[:3] == b"\xef\xbb\xbf":
        first = first[3:]  # utf-8-sig: one BOM at the start; positions count after it
    offset = 0  # where the next piece starts in the decoded bytes (for error positions)
    parts: list[bytes] = []  # the bytes after the last line feed seen
    chunk = first or _read(reader, chunk_bytes, source, gzipped)  # after a bare BOM
    while chunk:
        end = chunk.rfind(b"\n") + 1
        if end:
            # joined from a view of the chunk: one copy of its lines, not two
            raw = b"".join([*parts, memoryview(chunk)[:end]]) if parts else chunk[:end]
            parts = [chunk[end:]] if end < len(chunk) else []
            yield from _decoded(raw, offset, source)
            offset += len(raw)
        else:
            parts.append(chunk)
        chunk = _read(reader, chunk_bytes, source, gzipped)
    if parts:
        yield from _decoded(b"".join(parts), offset, source)


def _decoded(raw: bytes, offset: int, source: str) -> Iterator[tuple[bytes, str]]:
    """The piece and its text; a byte that is not UTF-8 raises the file's error, after
    the whole lines before it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: raw.rfind(b"\n", 0, exc.start) + 1]
        if good:
            yield good, good.decode("utf-8")
        raise EventError(f"{source}: not UTF-8 text (byte {offset + exc.start})") from None
    yield raw, text


def _read(reader: Any, size: int, source: str, gzipped: bool) -> bytes:
    """reader.read(size); an unreadable file or a corrupt gzip is the file's EventError
    (worded as when the file was read and decompressed whole)."""
    try:
        # read1: a gzip file's read() would drop what it decompressed before an error
        data: bytes = reader.read1(size) if gzipped else reader.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise EventError(f"{source}: truncated or corrupt gzip ({exc})") from None
    except OSError as exc:
        raise EventError(f"{source}: cannot read file: {exc.strerror or exc}") from None
    return data


class _Replayed:
    """A byte stream whose first bytes were read already (to see the gzip magic): read()
    gives them again, then the rest."""

    def __init__(self, first: bytes, stream: BinaryIO) -> None:
        self._first, self._stream = first, stream

    def read(self, size: int = -1) -> bytes:
        if not self._first:
            return self._stream.read(size)
        if size < 0:
            out, self._first = self._first + self._stream.read(), b""
        else:
            out, self._first = self._first[:size], self._first[size:]
        return out


def _piece_documents(
    piece: tuple[bytes, str],
    source: str,
    lineno: int,
    line_filter: LinesFilter | None = None,
    noise_runs: bool = False,
) -> Generator[tuple[str, Any], None, int]:
    """The documents of one piece of JSON Lines, its lines numbered on from `lineno` as
    text.splitlines() numbers them; returns the number of its last line.

    Most pieces hold only line feeds: their lines go to `line_filter` first (which reads
    any JSON as json does; the lines it calls noise give PREFILTERED, or NoiseRun), then
    to orjson as bytes (jsontext.loads_line), and only a line orjson rejects, that nests
    deeply or may hold an integer beyond 64 bits (which orjson reads as a float) is
    decoded and read by jsontext.loads, which decides as json does."""
    raw, text = piece
    if _breaks_further(text) or not jsontext.reads_lines_fast():
        return (yield from _text_documents(text.splitlines(), source, lineno))
    loads_line, big_integers = jsontext.loads_line, jsontext.integers_beyond_64_bits
    listed, count = (line_filter or _every_line)(raw)
    after = -1  # the index of the last line listed
    for index, start, end in listed:
        if index > after + 1:  # the lines between are noise
            yield from _noise(index - after - 1, noise_runs)
        after = index
        line = raw[start:end]
        if not line or line.isspace():
            continue
        number = lineno + index + 1
        try:
            doc = _SLOW if big_integers(line) else loads_line(line)
        except ValueError:  # orjson's error or deep nesting: json decides
            doc = _SLOW
        if doc is _SLOW:
            yield from _text_documents((line.decode("utf-8"),), source, number - 1)
        else:
            yield f"{source}:line {number}", doc
    if count > after + 1:
        yield from _noise(count - after - 1, noise_runs)
    return lineno + count


def _every_line(raw: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """A LinesFilter that calls no line noise."""
    listed, start = [], 0
    for index, line in enumerate(
        raw[:-1].split(b"\n") if raw.endswith(b"\n") else raw.split(b"\n")
    ):
        listed.append((index, start, start + len(line)))
        start += len(line) + 1
    return listed, len(listed)


def _noise(count: int, runs: bool) -> Iterator[tuple[str, Any]]:
    """`count` noise lines in a row: one PREFILTERED each, or one NoiseRun."""
    if runs:
        yield "", NoiseRun(count)
    else:
        yield from repeat(_NOISE_LINE, count)


class NoiseRun:
    """read_stream's document (with `noise_runs`) for this many noise lines in a row."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count


_SLOW = object()  # a line json must read
PREFILTERED = object()  # read_stream's document for a line its line_filter called noise
_NOISE_LINE = ("", PREFILTERED)
LineNoise = Callable[[bytes], bool]
LinesFilter = Callable[[bytes], tuple[list[tuple[int, int, int]], int]]  # routing_filter's
ShapeReader = Callable[[bytes | memoryview], tuple[str, ...] | None]  # jsontext.shape_reader


def _text_documents(
    lines: Iterable[str], source: str, lineno: int
) -> Generator[tuple[str, Any], None, int]:
    """(position, document or EventError) of each non-blank line after line `lineno`;
    returns the last line number."""
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
    return lineno


def parse_paths(
    paths: Iterable[str | Path], *, skip_reasons: bool = True, baseline: Baseline | None = None
) -> Iterator[Parsed]:
    """Every record of every file ('-' is stdin, streamed as a file is), in order; an
    unreadable file is one error and the next file is still read.

    `skip_reasons=False` (a caller that only counts skips, as `trustwatch replay` does)
    lets the Prefilter give a record of an unwatched operation as NOISE, without parsing
    it further: the same count of records, skips, findings and errors, without the skip's
    position and reason. Given the `baseline` the records are judged against, it also
    gives as NOISE a record its cloud's PREFILTER_SUBJECT calls irrelevant to it (a
    record the full path would evaluate to no finding: more skips, the same findings
    and errors)."""
    prefilter = None if skip_reasons else Prefilter(baseline)
    for path in paths:
        try:
            line_filter = None if prefilter is None else prefilter.lines_filter()
            if str(path) == "-":
                documents = read_stream(
                    sys.stdin.buffer, "<stdin>", line_filter=line_filter, noise_runs=True
                )
            else:
                documents = read_path(path, line_filter, noise_runs=True)
            if prefilter is None:
                for where, doc in documents:
                    yield from parse_document(doc, where)
                continue
            noise = prefilter.noise
            for where, doc in documents:
                if type(doc) is NoiseRun:
                    yield from repeat(NOISE, doc.count)
                elif noise(doc):
                    yield NOISE
                else:
                    yield from parse_document(doc, where)
        except EventError as exc:
            yield Parsed(str(path), [], error=exc)


NOISE = Parsed("", [], skipped=Skipped("not a watched operation (prefiltered)"))


class Prefilter:
    """Tells, from a document's routing fields alone, that its cloud's parser would skip it.

    A cloud's events module may declare `PREFILTER_KEYS = (service_key, operation_key,
    unless_keys)`: its promise that parse() returns a Skipped (never raises, never gives a
    change) for a record it recognizes that has none of `unless_keys` and whose
    `service_key` and `operation_key` are strings naming no operation of
    watched_operations(). The cloud is the one parse_document would route the document to
    (the first that recognizes it); a document the prefilter cannot decide is parsed in
    full. tests/test_prefilter.py holds each declaring cloud to its promise.
    """

    def __init__(self, baseline: Baseline | None = None) -> None:
        self._rules: dict[str, _Rule | None] = {}
        self._lines_filter: object = _UNBUILT
        self._baseline = baseline  # for the cloud's PREFILTER_SUBJECT (line_noise)

    def rule(self, cloud: str) -> _Rule | None:
        """The cloud's keys and watched operations, or None if it declares no keys (built
        on first use: a cloud whose records never come costs nothing)."""
        if cloud not in self._rules:
            keys = getattr(events_module(cloud), "PREFILTER_KEYS", None)
            if keys is None:
                self._rules[cloud] = None
            else:
                service_key, operation_key, unless = keys
                watched = clouds.get(cloud).watched_operations()
                operations = {service: frozenset(ops) for service, ops in watched.items()}
                self._rules[cloud] = (service_key, operation_key, tuple(unless), operations)
        return self._rules[cloud]

    def lines_filter(self) -> LinesFilter | None:
        """`noise` told from the bytes of a piece's JSON Lines lines (jsontext.routing_filter:
        the indexes of the lines to parse in full, the others noise), for the first cloud
        parse_document asks (no other cloud can claim a record it recognizes), if it
        declares `PREFILTER_RECOGNIZED`, keys whose presence makes its recognizes() true,
        and the line reader is available (msgspec). A line is noise only where noise()
        would say so of json's document: an object holding every recognized key, none of
        the `unless_keys`, and strings naming an unwatched operation; any line it cannot
        decide (not JSON too, to be reported) is parsed in full.

        Given a baseline, a line of the watched operation that cloud's `PREFILTER_SUBJECT`
        (trustwatch.changes.SubjectPrefilter) names is noise too when the fields it
        declares have its shapes and its `unwatched` says so of the subject. Built once."""
        if self._lines_filter is not _UNBUILT:
            return self._lines_filter  # type: ignore[return-value]
        self._lines_filter = None
        first = _first_route()
        if first is None:
            return None
        cloud, module = first
        recognized = getattr(module, "PREFILTER_RECOGNIZED", None)
        rule = self.rule(cloud)
        if rule is None or recognized is None:
            return None
        service_key, operation_key, unless, watched = rule
        needed = tuple(k for k in recognized if k not in (service_key, operation_key))
        irrelevant = self._subject_reader(module, (service_key, operation_key))
        keys = (service_key, operation_key)
        self._lines_filter = jsontext.routing_filter(keys, needed, unless, watched, irrelevant)
        return self._lines_filter

    def line_noise(self) -> LineNoise | None:
        """lines_filter's answer for one line: is it noise?"""
        parse_these = self.lines_filter()
        if parse_these is None:
            return None
        return lambda line: not parse_these(line)[0]

    def _subject_reader(
        self, module: EventsModule, keys: tuple[str, str]
    ) -> Callable[[memoryview, tuple[str, str]], bool] | None:
        """For lines_filter: is this line, of the (service, operation) routing_filter read,
        irrelevant to the baseline? None unless the cloud declares PREFILTER_SUBJECT and
        the baseline is known."""
        declared: tuple[SubjectPrefilter, ...] = getattr(module, "PREFILTER_SUBJECT", ())
        if not declared or self._baseline is None:
            return None
        checks: dict[tuple[str, ...], list[tuple[ShapeReader, Callable[[str], bool]]]] = {}
        for each in declared:
            paths = ((keys[0],), (keys[1],), each.subject)
            read = jsontext.shape_reader(paths, each.objects, each.nulls)
            if read is None:
                return None
            call = (each.service, each.operation)
            checks.setdefault(call, []).append((read, each.unwatched(self._baseline)))

        def irrelevant(line: memoryview, call: tuple[str, str]) -> bool:
            # the same line routing_filter read (so not nesting deeply): its fields again,
            # with the subject's, the call checked again as the same bytes read it
            for read, unwatched in checks.get(call, ()):
                found = read(line)
                if found is not None and found[:2] == call and unwatched(found[2]):
                    return True
            return False

        return irrelevant

    def noise(self, doc: Any) -> bool:
        """Would parse_document give exactly one record, skipped? (False: cannot tell.)"""
        if type(doc) is not dict:
            return False
        try:
            found = _recognized(doc)
        except Exception:  # parse_document reports it, as the record's error
            return False
        if found is None:
            return False
        rule = self._rules[found[0]] if found[0] in self._rules else self.rule(found[0])
        if rule is None:
            return False
        service_key, operation_key, unless, watched = rule
        for key in unless:
            if key in doc:
                return False
        service = doc.get(service_key)
        operation = doc.get(operation_key)
        if type(service) is not str or type(operation) is not str:
            return False
        return operation not in watched.get(service, ())


_UNBUILT = object()
# (service key, operation key, keys that make a record something else, watched operations)
_Rule = tuple[str, str, tuple[str, ...], dict[str, frozenset[str]]]


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
