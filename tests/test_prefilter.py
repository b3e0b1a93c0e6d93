"""intake.Prefilter: a record it calls noise is one the full parse skips, and replaying
with it (`parse_paths(..., skip_reasons=False)`, as `trustwatch replay` does) gives the same
records, skips, findings and errors (with their positions) as the full parse, on the
corpus, on mutated records and on malformed lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE, ROOT, all_corpus_files
from fuzz.mutations import dumps, load_corpus, mutated_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustwatch import clouds
from trustwatch.baseline import load_baseline
from trustwatch.intake import NOISE, Prefilter, parse_document, parse_paths
from trustwatch.respond import Outcome, replay

DOCS = load_corpus(all_corpus_files(), ROOT / "examples" / "events")
BASELINE = load_baseline(EXAMPLE_BASELINE)
SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _watched_names() -> list[str]:
    return sorted(
        {op for p in clouds.registered() for ops in p.watched_operations().values() for op in ops}
    )


def _variants(doc: Any) -> list[Any]:
    """The record as given, and with its routing fields moved to every watched and some
    unwatched operation, of the wrong type, or beside an envelope's keys."""
    if not isinstance(doc, dict):
        return [doc]
    out = [doc]
    for key, values in {
        "eventName": [*_watched_names(), "GetObject", 7, None, ["AssumeRole"]],
        "eventSource": ["iam.amazonaws.com", "sts.amazonaws.com", "s3.amazonaws.com", 1],
        "eventType": ["AwsServiceEvent", 3],
        "detail-type": ["AWS API Call via CloudTrail"],
        "Records": [[], [doc], {}],
        "awsRegion": [None],
    }.items():
        for value in values:
            changed = dict(doc)  # top-level keys only: a shallow copy
            changed[key] = value
            out.append(changed)
    for key in ("eventName", "eventSource", "awsRegion"):
        if key in doc:
            out.append({k: v for k, v in doc.items() if k != key})
    return out


CASES = [(f"{name} #{i}", v) for name, doc in DOCS for i, v in enumerate(_variants(doc))]


def test_the_corpus_has_noise_and_watched_records():
    prefilter = Prefilter()
    calls = [prefilter.noise(doc) for _, doc in CASES]
    assert any(calls) and not all(calls)


@pytest.mark.parametrize(("name", "doc"), CASES, ids=[n for n, _ in CASES])
def test_noise_is_what_the_full_parse_skips(name, doc):
    check_noise(doc)


def check_noise(doc: Any) -> None:
    if not Prefilter().noise(doc):
        return
    parsed = list(parse_document(doc, "w"))
    assert len(parsed) == 1, parsed
    (only,) = parsed
    assert only.error is None and only.changes == [] and only.skipped is not None, only


@SETTINGS
@given(mutated_events(DOCS))
def test_noise_is_what_the_full_parse_skips_on_mutated_records(event):
    _, doc = event
    for variant in _variants(doc):
        check_noise(variant)


def outcome_of(path: Path, *, prefiltered: bool) -> tuple[Any, ...]:
    outcome: Outcome = replay(
        parse_paths([path], skip_reasons=not prefiltered), BASELINE, keep_skip_reasons=False
    )
    return (
        outcome.records,
        outcome.skips,
        outcome.internal_errors,
        sorted(f.to_json() for f in outcome.findings),
        outcome.errors,
        outcome.not_evaluated,
    )


def _jsonl(docs: list[Any], extra: list[str]) -> str:
    lines = [t for t in (dumps(d) for d in docs) if t is not None and "\n" not in t]
    return "\n".join(lines + extra) + "\n"


MALFORMED = [
    '{"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "awsRegion": "x"',
    '{"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "awsRegion": x}',
    "[1, 2]",
    '{"hello": "world"}',
    "",
    '{"eventSource": "ec2.amazonaws.com", "eventName": 5, "awsRegion": "x"}',
]


def test_prefiltered_replay_of_the_corpus_is_the_full_replay(tmp_path):
    docs = [v for _, doc in DOCS for v in _variants(doc)]
    path = tmp_path / "corpus.jsonl"
    path.write_text(_jsonl(docs, MALFORMED), encoding="utf-8", errors="surrogatepass")
    full = outcome_of(path, prefiltered=False)
    assert full == outcome_of(path, prefiltered=True)
    assert full[3] and full[4]  # findings and errors both happen


@SETTINGS
@given(st.lists(mutated_events(DOCS), min_size=1, max_size=6), st.lists(st.sampled_from(MALFORMED)))
def test_prefiltered_replay_of_mutated_lines_is_the_full_replay(tmp_path_factory, events, bad):
    path = tmp_path_factory.mktemp("prefilter") / "mutated.jsonl"
    text = _jsonl([doc for _, doc in events], bad)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert outcome_of(path, prefiltered=False) == outcome_of(path, prefiltered=True)


def test_a_prefiltered_record_is_counted_as_a_skip(tmp_path):
    record = {"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "x"}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    assert list(parse_paths([path], skip_reasons=False)) == [NOISE, NOISE]
    full = list(parse_paths([path]))
    assert [p.where for p in full] == [f"{path}:line 1", f"{path}:line 2"]
    assert all(p.skipped is not None for p in full)


def test_a_cloud_without_prefilter_keys_is_always_parsed_in_full():
    prefilter = Prefilter()
    for plugin in clouds.registered():
        declared = hasattr(clouds.get(plugin.name).events(), "PREFILTER_KEYS")
        assert (prefilter.rule(plugin.name) is not None) == declared
