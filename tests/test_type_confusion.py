"""Type confusion is a record error, never a crash (deterministic and exhaustive).

For every published sample of the three clouds (tests/data, plus TRUSTWATCH_CORPUS's extra
files) and every example event:

- every node of the document (walked to the leaves, into JSON text held in a string such
  as `policyDocument` or `requestbody`, and into base64 JSON such as a Pub/Sub
  `message.data`) is replaced in turn with each JSON type: null, true, a number, a
  fraction, a string, an empty string, [], [null], {}, an object, and deep nesting;
- every object node (to depth 5) also gets, one at a time, each field name the three
  `events` modules read, with a value of the wrong type (the samples lack most fields).

Each variant must end in a defined outcome per record — findings, a skip with its reason,
"not evaluated" with its reason, or a record error naming where — and never an exception
nor an internal error (a parser or rule bug the guard in intake/respond caught).
An outside fuzz run found `serviceData.policyDelta.bindingDeltas: 7` crashing
`gcp/events.py:_deltas`; that class is what this walks for.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE, ROOT, all_corpus_files
from trustwatch.baseline import load_baseline
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

BASELINE = load_baseline(EXAMPLE_BASELINE)
SAMPLES = [*all_corpus_files(), *sorted((ROOT / "examples" / "events").glob("*.json"))]
EVENTS_MODULES = [ROOT / "shared" / "trustwatch" / c / "events.py" for c in ("aws", "azure", "gcp")]


def deep(levels: int = 990) -> Any:
    """Nesting about as deep as JSON parsers read (json's limit is the recursion limit)."""
    value: Any = "end"
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


VALUES: list[Any] = [None, True, 7, -1.5, "x", "", [], [None], {}, {"x": 1}, deep()]
WRONG: list[Any] = [7, "x", [7], {"x": 7}]  # for inserted fields, one each in turn
JSON_TEXT, BASE64_JSON = "<json text>", "<base64 json>"


def field_names() -> list[str]:
    """The field names the events modules read (`.get("k")`, `_dict(x, "k")`, `["k"]`)."""
    pattern = re.compile(r'(?:get\(|_(?:dict|list|ci|body)\([^,()]+, |\[)"([A-Za-z@][\w@.-]*)"')
    names = {name for path in EVENTS_MODULES for name in pattern.findall(path.read_text())}
    assert {"bindingDeltas", "serviceAccountDelegationInfo", "requestbody"} <= names
    return sorted(names)


FIELDS = field_names()


def _inner(value: Any) -> tuple[str, Any] | None:
    """A JSON container held as JSON text or base64 JSON text in a string."""
    if not isinstance(value, str) or len(value) < 2:
        return None
    try:
        inner = json.loads(value, strict=False)
        kind = JSON_TEXT
    except ValueError:
        try:
            inner = json.loads(base64.b64decode(value, validate=True).decode(), strict=False)
            kind = BASE64_JSON
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
    return (kind, inner) if isinstance(inner, dict | list) else None


Path_ = tuple[Any, ...]


def node_paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from node_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from node_paths(value, (*prefix, index))
    elif (found := _inner(node)) is not None:
        yield from node_paths(found[1], (*prefix, found[0]))


def object_paths(node: Any, prefix: Path_ = (), depth: int = 0) -> Iterator[tuple[Path_, dict]]:
    if isinstance(node, dict):
        yield prefix, node
        if depth < 5:
            for key, value in node.items():
                yield from object_paths(value, (*prefix, key), depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node[:3]):
            yield from object_paths(value, (*prefix, index), depth + 1)
    elif (found := _inner(node)) is not None:
        yield from object_paths(found[1], (*prefix, found[0]), depth)


def put(node: Any, path: Path_, value: Any) -> Any:
    """A copy of `node` with the node at `path` replaced (copied along the path only)."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    if step in (JSON_TEXT, BASE64_JSON):
        found = _inner(node)
        assert found is not None
        try:
            text = json.dumps(put(found[1], rest, value))
        except RecursionError:  # too deep for JSON text here: deep text in its place
            text = "[" * 5_000
        return text if step == JSON_TEXT else base64.b64encode(text.encode()).decode()
    node = copy.copy(node)
    node[step] = put(node[step], rest, value)
    return node


def variants(doc: Any) -> Iterator[tuple[str, Any]]:
    for path in node_paths(doc):
        for value in VALUES:
            yield f"{list(path)} = {type(value).__name__}", put(doc, path, value)
    turn = 0
    for path, node in object_paths(doc):
        for name in FIELDS:
            if name not in node:
                value = WRONG[turn % len(WRONG)]
                turn += 1
                yield f"{list(path)} + {name} = {value!r}", put(doc, path, {**node, name: value})


def _empty_batch(doc: Any) -> bool:
    if isinstance(doc, dict):
        return any(doc.get(key) == [] for key in ("Records", "records", "value"))
    return False


def check(doc: Any, label: str) -> int:
    outcomes = list(evaluate_records(parse_document(doc, "doc"), BASELINE))
    assert outcomes or _empty_batch(doc), label  # only an empty batch holds no record
    for outcome in outcomes:
        assert outcome.internal_errors == 0, (label, outcome.errors)
        for error in outcome.errors:
            assert error.startswith(outcome.where) and outcome.where.startswith("doc"), error
        if outcome.skipped is not None:
            assert outcome.skipped.strip(), (label, "a skip needs a reason")
        if outcome.not_evaluated is not None:
            assert "not evaluated: " in outcome.not_evaluated, label
        for finding in outcome.findings:
            assert finding.to_json()
    return len(outcomes)


@pytest.mark.parametrize("path", SAMPLES, ids=[f"{p.parent.name}/{p.name}" for p in SAMPLES])
def test_every_field_of_every_sample_takes_every_json_type(path: Path) -> None:
    doc = json.loads(path.read_text(), strict=False)
    count = 0
    for label, variant in variants(doc):
        check(variant, f"{path.name}: {label}")
        count += 1
    assert count > len(VALUES)  # the walk reached inside the document


def test_the_reported_crash_is_a_record_error() -> None:
    """`bindingDeltas` given as a number (the outside fuzz run's TypeError), in a batch:
    the entries around it are still evaluated."""
    (entry_path,) = [
        p for p in SAMPLES if p.name == "auditlog-resourcemanager-setiampolicy-project-panther.json"
    ]
    entry = json.loads(entry_path.read_text())
    bad = copy.deepcopy(entry)
    bad["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] = 7
    outcomes = list(evaluate_records(parse_document([entry, bad, entry], "batch.json"), BASELINE))
    assert [o.where for o in outcomes] == [f"batch.json record {i}" for i in range(3)]
    (error,) = outcomes[1].errors
    assert error == (
        "batch.json record 1: serviceData.policyDelta.bindingDeltas is a int, expected a list"
    )
    assert outcomes[1].internal_errors == 0
    assert not outcomes[0].errors and not outcomes[2].errors


def _type_confused_records(count: int) -> Iterator[str]:
    """JSON Lines: every sample's variants in turn, as many as asked for (deep nesting
    left out: one line per record must stay under the JSON reader's depth limit)."""
    while True:
        for path in SAMPLES:
            doc = json.loads(path.read_text(), strict=False)
            for node in node_paths(doc):
                for value in VALUES[:-1]:
                    if count == 0:
                        return
                    count -= 1
                    yield json.dumps(put(doc, node, value))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_100k_type_confused_records_replay_without_a_traceback(tmp_path: Path) -> None:
    stream = tmp_path / "confused.jsonl"
    with stream.open("w") as out:
        for line in _type_confused_records(100_000):
            out.write(line.replace("\n", " ") + "\n")
    command = [sys.executable, "-m", "trustwatch", "replay", "--baseline", str(EXAMPLE_BASELINE)]
    proc = subprocess.run(
        [*command, str(stream)],
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    assert proc.returncode in (2, 4), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    errors = [line for line in io.StringIO(proc.stderr) if line.startswith("trustwatch: error: ")]
    assert errors and all(f"{stream}:line " in line for line in errors)
