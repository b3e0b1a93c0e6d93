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

`routing_filter` reads a few top-level fields of each line without building the rest
(msgspec, also in the `cli` extra): `trustwatch replay` tells most records of a trail,
the unwatched operations, from those fields alone (intake.Prefilter.lines_filter).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from operator import attrgetter
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


# For integers_beyond_64_bits: digits -> "0"; what may come just before a JSON number's
# digits (":", "[", ",", a line feed, a space or tab, a minus sign) -> ":"; the rest -> ".".
_NUMBER_RUNS = bytes(
    ord("0") if chr(b) in "0123456789" else ord(":") if chr(b) in ":[,\n \t-" else ord(".")
    for b in range(256)
)


def reads_lines_fast() -> bool:
    """Is orjson installed, for loads_line?"""
    return orjson is not None


def integers_beyond_64_bits(raw: bytes) -> list[int]:
    """Where in this UTF-8 text (lines split at line feeds) an integer may not fit 64 bits
    (a run of 19+ digits after a character that may come before a number): the lines
    holding these offsets go to loads(), the others may go to loads_line. (Some runs sit
    inside strings: they only cost their lines the slower way.)"""
    runs = raw.translate(_NUMBER_RUNS)
    found = [0] if runs.startswith(_DIGITS_19) else []
    at = runs.find(_VALUE_DIGITS_19)
    while at >= 0:
        if _may_start_number(raw, at):
            found.append(at + 1)
        at = runs.find(_VALUE_DIGITS_19, at + 20)
    return found


def _may_start_number(raw: bytes, at: int) -> bool:
    """raw[at] comes just before a run of digits: may the run be a number's? Not after a
    minus sign that follows a letter or digit ("sdk-1722375070115152000" is in a string)."""
    while at >= 0 and raw[at] in b" \t-":
        at -= 1
    return at < 0 or raw[at] in b":[,\n"


def line_may_nest_deeply(line: bytes) -> bool:
    """Enough "[" and "{" in this line to nest as deep as json's limit: json decides it.

    JSON text nests no deeper than its "[" count plus a fifth of its length (an object
    level takes at least `{"":` and `}`), so most lines need one count, not two; a line
    long enough to need both has its brackets counted at once. (Text that is not JSON may
    be misjudged: the parser asked then fails, and json decides.)"""
    size = len(line)
    if size < 2 * _SHALLOW_BRACKETS:
        return False
    if size // 5 < _SHALLOW_BRACKETS and line.count(b"[") + size // 5 < _SHALLOW_BRACKETS:
        return False
    return len(line.translate(None, _NOT_BRACKETS)) >= _SHALLOW_BRACKETS


# every byte but "[" and "{": what line_may_nest_deeply deletes to count both at once
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{")


def loads_line(line: bytes) -> Any:
    """orjson's value of one line that integers_beyond_64_bits did not point at, which is
    json's value of it; ValueError (orjson's, or for text that may nest deeply) where json
    must decide: then the caller reads the line's text with loads()."""
    if line_may_nest_deeply(line):
        raise ValueError("may nest deeply")
    return orjson.loads(line)


def routing_filter(
    keys: tuple[str, str],
    present: tuple[str, ...],
    absent: tuple[str, ...],
    watched: Mapping[str, Container[str]],
    irrelevant: Callable[[memoryview, tuple[str, str]], bool] | None = None,
) -> Callable[[bytes], tuple[list[tuple[int, int, int]], int]] | None:
    """Which lines of a piece of JSON Lines (split at line feeds only) are not noise, told
    from a few top-level fields of each without building the rest: (their (index, start,
    end) in the piece, in order; how many lines the piece holds). One call a piece.

    A line is noise when json reads it as an object whose two `keys` hold strings, a
    (service, operation) pair, that has every `present` key and no `absent` one, and
    `watched` holds no such operation of that service or, if it does, `irrelevant(line,
    pair)` says so. Every other line (blank, not such an object, not JSON, or text where
    the validator and json may disagree: NaN, lone surrogates, nesting that may be deep)
    is listed, and the caller parses it in full. The piece must be UTF-8 already checked
    (the validator does not check the strings it skips).

    msgspec (the `cli` extra) validates the whole line as JSON, skipping the fields not
    asked for without making Python objects of them; it reads duplicate keys as json
    does (the last one counts), and escaped keys. A line is read where it lies in the
    piece (a memoryview), so a noise line is never copied. None without msgspec.
    """
    try:
        import msgspec
    except ImportError:
        return None
    fields: list[tuple[str, Any, Any]] = [
        ("s0", str, msgspec.field(name=keys[0])),
        ("s1", str, msgspec.field(name=keys[1])),
    ]
    fields += [(f"p{i}", msgspec.Raw, msgspec.field(name=key)) for i, key in enumerate(present)]
    # an `absent` key holding anything (null too) fails the decode: the line is listed
    fields += [
        (f"a{i}", msgspec.UnsetType, msgspec.field(name=key, default=msgspec.UNSET))
        for i, key in enumerate(absent)
    ]
    decode: Callable[[memoryview], Any] = msgspec.json.Decoder(
        msgspec.defstruct("RoutingView", fields)
    ).decode
    failed = (msgspec.MsgspecError, RecursionError)
    operations_of = watched.get
    nothing: frozenset[str] = frozenset()
    long_line, shallow, few = 2 * _SHALLOW_BRACKETS, _SHALLOW_BRACKETS, _FEW_ARRAYS

    def parse_these(raw: bytes) -> tuple[list[tuple[int, int, int]], int]:
        listed: list[tuple[int, int, int]] = []
        view, find, size_raw = memoryview(raw), raw.find, len(raw)
        index, end = -1, -1
        while end < size_raw:
            start = end + 1
            end = find(b"\n", start)
            if end < 0:
                if start == size_raw and start:
                    break  # the piece ends with its last line's line feed
                end = size_raw
            index += 1
            size = end - start
            if size >= long_line:
                # line_may_nest_deeply, without counting the whole line where it holds a
                # few "[" (memchr finds them) and needs more to be suspect
                at, arrays = find(b"[", start, end), 0
                while at >= 0 and arrays < few:
                    arrays += 1
                    at = find(b"[", at + 1, end)
                if (at >= 0 or arrays + size // 5 >= shallow) and line_may_nest_deeply(
                    raw[start:end]
                ):
                    listed.append((index, start, end))
                    continue
            line = view[start:end]
            try:
                found = decode(line)
            except failed:
                listed.append((index, start, end))
                continue
            if found.s1 not in operations_of(found.s0, nothing):
                continue  # an unwatched operation
            if irrelevant is None or not irrelevant(line, (found.s0, found.s1)):
                listed.append((index, start, end))
        return listed, index + 1

    return parse_these


# routing_filter finds up to this many "[" in a long line one by one before counting them
_FEW_ARRAYS = 8


Path = tuple[str, ...]  # keys from the top-level object down


def shape_reader(
    strings: tuple[Path, ...], objects: tuple[Path, ...], nulls: tuple[str, ...] = ()
) -> Callable[[bytes | memoryview], tuple[str, ...] | None] | None:
    """A reader of a few fields, nested or not, of one JSON Lines line.

    For a line json reads as an object where every `strings` path leads to a string
    (through objects), every `objects` path leads, as far as it is there, to objects or
    null, and each `nulls` top-level key is null or not there, the reader gives those
    strings; for any other line, None. Duplicate keys count as in json (the last; an
    earlier value of the wrong type gives None, never another answer). Nesting is the
    caller's to check (line_may_nest_deeply), as are the strings' UTF-8 (see
    routing_filter). None without msgspec.
    """
    try:
        import msgspec
    except ImportError:
        return None
    # a `nulls` key holding anything but null fails the decode: None, the full path
    null_fields = [
        (f"n{i}", None | msgspec.UnsetType, msgspec.field(name=key, default=msgspec.UNSET))
        for i, key in enumerate(nulls)
    ]
    attributes: dict[Path, str] = {}
    view = _view_type(msgspec, "ShapeView", strings, objects, attributes, (), null_fields)
    decode = msgspec.json.Decoder(view).decode
    strings_of = attrgetter(*(attributes[path] for path in strings), "__class__")
    count = len(strings)
    failed = (msgspec.MsgspecError, RecursionError)

    def read(line: bytes | memoryview) -> tuple[str, ...] | None:
        try:
            found = decode(line)
        except failed:
            return None
        return strings_of(found)[:count]  # type: ignore[no-any-return]

    return read


def _view_type(
    msgspec: Any,
    label: str,
    strings: tuple[Path, ...],
    objects: tuple[Path, ...],
    attributes: dict[Path, str],
    at: Path,
    extra: list[tuple[str, Any, Any]],
) -> Any:
    """The Struct of the object at path `at`: the strings and objects below it, each
    nested object a Struct of its own (required where a string lies below it, else
    object or null where there); `attributes` gets each string's dotted attribute path."""
    keys = list(dict.fromkeys(p[0] for p in (*strings, *objects)))
    fields = list(extra)
    for i, key in enumerate(keys):
        name, path = f"f{i}", (*at, key)
        below_strings = tuple(p[1:] for p in strings if p[0] == key and len(p) > 1)
        below_objects = tuple(p[1:] for p in objects if p[0] == key and len(p) > 1)
        if (key,) in strings:
            if below_strings or below_objects:
                raise ValueError(f"{path!r} cannot be a string and an object")
            fields.append((name, str, msgspec.field(name=key)))
            attributes[path] = ".".join([*(attributes[at].split(".") if at else []), name])
            continue
        attributes[path] = f"{attributes[at]}.{name}" if at else name
        nested = _view_type(
            msgspec, f"{label}_{i}", below_strings, below_objects, attributes, path, []
        )
        if below_strings:
            fields.append((name, nested, msgspec.field(name=key)))
        else:
            fields.append((name, nested | None, msgspec.field(name=key, default=None)))
    return msgspec.defstruct(label, fields, kw_only=True)
