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

`routing_reader` reads a few top-level fields of a line without building the rest
(msgspec, also in the `cli` extra): `trustwatch replay` tells most records of a trail,
the unwatched operations, from those fields alone (intake.Prefilter.line_noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    level takes at least `{"":` and `}`), so most lines need one count, not two. (Text
    that is not JSON may be misjudged: the parser asked then fails, and json decides.)"""
    size = len(line)
    if size < 2 * _SHALLOW_BRACKETS:
        return False
    arrays = line.count(b"[")
    return arrays + size // 5 >= _SHALLOW_BRACKETS and (
        arrays + line.count(b"{") >= _SHALLOW_BRACKETS
    )


def loads_line(line: bytes) -> Any:
    """orjson's value of one line that integers_beyond_64_bits did not point at, which is
    json's value of it; ValueError (orjson's, or for text that may nest deeply) where json
    must decide: then the caller reads the line's text with loads()."""
    if line_may_nest_deeply(line):
        raise ValueError("may nest deeply")
    return orjson.loads(line)


def routing_reader(
    strings: tuple[str, ...], present: tuple[str, ...], absent: tuple[str, ...]
) -> Callable[[bytes], tuple[str, ...] | None] | None:
    """A reader of a few top-level fields of one JSON Lines line, without building the rest.

    For a line json reads as an object whose `strings` keys all hold strings, that has
    every `present` key and no `absent` one, the reader gives those strings. For any
    other line (not such an object, not JSON, or text where the validator and json may
    disagree: NaN, lone surrogates, nesting that may be deep) it gives None, and the
    caller parses the line in full. The line must be UTF-8 already checked (the validator
    does not check the strings it skips).

    msgspec (the `cli` extra) validates the whole line as JSON, skipping the fields not
    asked for without making Python objects of them; it reads duplicate keys as json
    does (the last one counts), and escaped keys. None without msgspec.
    """
    try:
        import msgspec
    except ImportError:
        return None
    unset = msgspec.UNSET
    fields: list[tuple[str, Any, Any]] = [
        (f"s{i}", str, msgspec.field(name=key)) for i, key in enumerate(strings)
    ]
    fields += [(f"p{i}", msgspec.Raw, msgspec.field(name=key)) for i, key in enumerate(present)]
    fields += [
        (f"a{i}", msgspec.Raw | msgspec.UnsetType, msgspec.field(name=key, default=unset))
        for i, key in enumerate(absent)
    ]
    decode = msgspec.json.Decoder(msgspec.defstruct("RoutingView", fields)).decode
    strings_of = attrgetter(*(f"s{i}" for i in range(len(strings))), "s0")  # always a tuple
    absent_of = attrgetter(*(f"a{i}" for i in range(len(absent))), "s0")
    none_there = (unset,) * len(absent)
    failed = (msgspec.MsgspecError, RecursionError)
    count = len(strings)

    def read(line: bytes) -> tuple[str, ...] | None:
        if line_may_nest_deeply(line):
            return None  # json may reach its recursion limit: it decides
        try:
            view = decode(line)
        except failed:
            return None
        if absent_of(view)[:-1] != none_there:
            return None
        return strings_of(view)[:count]  # type: ignore[no-any-return]

    return read


Path = tuple[str, ...]  # keys from the top-level object down


def shape_reader(
    strings: tuple[Path, ...], objects: tuple[Path, ...], nulls: tuple[str, ...] = ()
) -> Callable[[bytes], tuple[str, ...] | None] | None:
    """A reader of a few fields, nested or not, of one JSON Lines line.

    For a line json reads as an object where every `strings` path leads to a string
    (through objects), every `objects` path leads, as far as it is there, to objects or
    null, and each `nulls` top-level key is null or not there, the reader gives those
    strings; for any other line, None. Duplicate keys count as in json (the last; an
    earlier value of the wrong type gives None, never another answer). Nesting is the
    caller's to check (line_may_nest_deeply), as are the strings' UTF-8 (see
    routing_reader). None without msgspec.
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

    def read(line: bytes) -> tuple[str, ...] | None:
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
