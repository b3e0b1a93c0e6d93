"""Hypothesis strategies that damage real audit events the ways the wild does.

Start from a corpus file of any cloud, optionally put it in one of its cloud's delivery
envelopes (EventBridge, CloudTrail log file, Azure `records`, Event Grid array, Pub/Sub push
with base64 data, CloudEvent `data_base64`), then apply one to three mutations at random
places: drop a field, change its type, a huge string, deep nesting, unicode oddities,
numbers where strings belong, wrong base64, and policy documents (JSON text inside JSON)
that are invalid, truncated or themselves mutated.

Used by tests/test_adversarial*.py and by the atheris target in this folder.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

Path_ = tuple[Any, ...]  # keys and indexes from the root to a node

ODD_UNICODE = [
    "\ud800",  # lone surrogate: not encodable as UTF-8
    "\udfff\ud800",
    "\x00",
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200c\u200d\ufeff",  # zero-width characters and a BOM
    "e\u0301" * 50,  # combining accents (not NFC)
    "\U0001f600\U0010ffff",  # beyond the BMP
    "arn:aws:iam::111122223333:role/databr\u0456cks-cross-account",  # Cyrillic i
    "\r\n\t\x1b[31m",
    "\\u0000\\ud800",  # escaped text, not the character
]
HOSTILE_TEXT = [
    "",
    " ",
    "null",
    "{",
    "[]",
    "%7B%22Statement%22",  # URL-encoded, truncated
    '{"Statement": }',
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}',
    '{"Version": "2012-10-17", "Statement": "Allow"}',
    '"{\\"Statement\\": 1}"',  # double-encoded, wrong type inside
    "NaN",
    "1e999",
    "*",
    "arn:aws:iam::*:root",
    "arn:aws:iam::" + "*" * 60 + "#:role/x",  # wildcard runs: matching must stay linear
    "*a" * 30 + "*b",
]
BAD_BASE64 = ["!!!not base64!!!", "dGVzd", "====", "dGVzdA=x", "\u00e9\u00e9\u00e9\u00e9", "-_-_"]


def paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every node's path, the root included (bounded: huge documents are sampled)."""
    out = [prefix]
    if len(prefix) > 40:
        return out
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:50]):
            out += paths(value, (*prefix, index))
    return out


def get(node: Any, path: Path_) -> Any:
    for step in path:
        node = node[step]
    return node


def replace(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    get(doc, path[:-1])[path[-1]] = value
    return doc


def drop(doc: Any, path: Path_) -> Any:
    if not path:
        return {}
    parent = get(doc, path[:-1])
    del parent[path[-1]]
    return doc


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(ODD_UNICODE + HOSTILE_TEXT),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)


def _embedded_json(value: Any) -> Any | None:
    """A JSON object or array carried as text (policy documents), or None."""
    if not isinstance(value, str) or len(value) > 200_000:
        return None
    for text in (value, _unquote(value)):
        if text.lstrip()[:1] in ("{", "["):
            try:
                return json.loads(text, strict=False)
            except (ValueError, RecursionError):
                continue
    return None


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _embedded_base64(value: Any) -> Any | None:
    """The JSON inside a base64 string (Pub/Sub message data), or None."""
    if not isinstance(value, str) or len(value) < 8:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@st.composite
def mutation(draw: st.DrawFn, doc: Any, depth: int = 0) -> Any:
    """Apply one mutation at one place of `doc` (a deep copy is mutated)."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(paths(doc)))
    target = get(doc, path)
    ops: list[str] = ["retype", "huge", "deep", "unicode"]
    if path:
        ops.append("drop")
    if isinstance(target, str):
        ops += ["number", "hostile_text", "truncate"]
        if _embedded_json(target) is not None and depth < 2:
            ops += ["policy", "policy", "policy"]  # the documents rules parse: weight them
        if _embedded_base64(target) is not None:
            ops += ["base64", "base64"]
        elif len(target) >= 8 and target.rstrip("=").isalnum():
            ops.append("bad_base64")
    op = draw(st.sampled_from(ops))
    if op == "drop":
        return drop(doc, path)
    if op == "retype":
        return replace(doc, path, draw(json_values.filter(lambda v: type(v) is not type(target))))
    if op == "huge":
        size = draw(st.sampled_from([10_000, 100_000, 1_000_000]))
        return replace(doc, path, draw(st.sampled_from(["A", "\u00e9", "%", "{"])) * size)
    if op == "deep":
        levels = draw(st.sampled_from([50, 500, 5_000]))
        wrapped: Any = target
        for _ in range(levels):
            wrapped = [wrapped] if draw(st.booleans()) else {"a": wrapped}
        return replace(doc, path, wrapped)
    if op == "unicode":
        odd = draw(st.sampled_from(ODD_UNICODE))
        base = target if isinstance(target, str) else ""
        return replace(doc, path, draw(st.sampled_from([odd, base + odd, odd + base])))
    if op == "number":
        return replace(doc, path, draw(st.sampled_from([0, 1, -1, 3.5, 10**20, float("nan")])))
    if op == "hostile_text":
        return replace(doc, path, draw(st.sampled_from(HOSTILE_TEXT)))
    if op == "truncate":
        return replace(doc, path, target[: draw(st.integers(0, max(0, len(target) - 1)))])
    if op == "policy":
        inner = draw(mutation(_embedded_json(target), depth + 1))
        text = dumps(inner) or "[" * 5_000  # too deep for json.dumps: deep text instead
        encoded = draw(st.sampled_from(["json", "url", "double", "truncated"]))
        if encoded == "url":
            text = quote(text, errors="surrogatepass")  # lone surrogates too
        elif encoded == "double":
            text = json.dumps(text)
        elif encoded == "truncated":
            text = text[: len(text) // 2]
        return replace(doc, path, text)
    if op == "base64":
        inner = draw(mutation(_embedded_base64(target), depth + 1))
        raw = (dumps(inner) or "[" * 5_000).encode("utf-8", "surrogatepass")
        return replace(doc, path, base64.b64encode(raw).decode())
    return replace(doc, path, draw(st.sampled_from(BAD_BASE64)))  # bad_base64


# ------------------------------------------------------------------ delivery envelopes


def _eventbridge(record: Any) -> dict[str, Any]:
    source = record.get("eventSource") if isinstance(record, dict) else None
    return {
        "version": "0",
        "id": "6f1c2a3b-0000-4000-8000-00000000fuzz",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + (source if isinstance(source, str) else "iam").split(".")[0],
        "account": "111122223333",
        "time": "2026-11-27T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }


def _pubsub(entry: Any) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(entry).encode()).decode()
    return {
        "message": {"data": data, "messageId": "1", "publishTime": "2026-11-27T10:00:00Z"},
        "subscription": "projects/p/subscriptions/trustwatch",
    }


def _cloudevent_b64(entry: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "google.cloud.audit.log.v1.written",
        "source": "//cloudaudit.googleapis.com/projects/p/logs/activity",
        "id": "1",
        "data_base64": base64.b64encode(json.dumps(entry).encode()).decode(),
    }


def envelopes_for(name: str, doc: Any) -> list[Callable[[Any], Any]]:
    """The delivery shapes a corpus document of this kind can arrive in."""
    wraps: list[Callable[[Any], Any]] = [lambda d: d]
    if name.startswith("aws/cloudtrail-"):
        wraps += [_eventbridge, lambda d: {"Records": [d, d]}]
    elif name.startswith("azure/activitylog-"):
        wraps += [lambda d: {"records": [d]}]
    elif name.startswith("azure/eventgrid-"):
        wraps += [lambda d: [d] if isinstance(d, dict) else d]
    elif name.startswith("gcp/auditlog-"):
        wraps += [_pubsub, _cloudevent_b64, lambda d: [d, d]]
    return wraps


class Sample(tuple):
    """(corpus name, document): a tuple whose repr stays short and printable however deep
    or large the document is (hypothesis prints it when a test fails)."""

    def __new__(cls, name: str, doc: Any) -> Sample:
        return super().__new__(cls, (name, doc))

    def __repr__(self) -> str:
        name, doc = self
        text = dumps(doc) or f"<JSON nested {depth(doc)} levels deep>"
        if len(text) > 4000:
            text = text[:4000] + f"... <{len(text) - 4000} more characters>"
        return f"Sample({name!r}, {text})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@st.composite
def mutated_events(
    draw: st.DrawFn, corpus: list[tuple[str, Any]], max_mutations: int = 3
) -> Sample:
    """(corpus file name, the event in some envelope, mutated 0..max_mutations times)."""
    name, doc = draw(st.sampled_from(corpus))
    wrap = draw(st.sampled_from(envelopes_for(name, doc)))
    doc = wrap(copy.deepcopy(doc))
    for _ in range(draw(st.integers(0, max_mutations))):
        if depth(doc) > 100:
            break  # deeply nested already: copying it again would hit the recursion limit
        doc = draw(mutation(doc))
    return Sample(name, doc)


def depth(doc: Any) -> int:
    """Nesting depth, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack += [(v, level + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, level + 1) for v in node]
    return deepest


def load_corpus(files: Iterable[Path], examples: Path | None = None) -> list[tuple[str, Any]]:
    """Every corpus file given (`fuzz.corpus.all_corpus_files()`) as (cloud/file name,
    parsed JSON), then the example events."""
    out = []
    for path in files:
        out.append((f"{path.parent.name}/{path.name}", json.loads(path.read_text(), strict=False)))
    if examples is not None:
        for path in sorted(examples.glob("*.json")):
            name = path.name
            cloud = name.split("-", 1)[0]
            kind = {
                "aws": "eventbridge" if "eventbridge" in name else "cloudtrail",
                "azure": "example",  # already in its delivery shape
                "gcp": "auditlog" if "logentry" in name else "example",
            }.get(cloud, "example")
            doc = json.loads(path.read_text(), strict=False)
            out.append((f"{cloud}/{kind}-example-{name}", doc))
    return out


def dumps(doc: Any) -> str | None:
    """JSON text for a mutated document, None when it has no JSON text (too deep)."""
    try:
        return json.dumps(doc, ensure_ascii=False)
    except (RecursionError, ValueError):
        return None
