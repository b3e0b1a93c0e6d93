"""intake.Prefilter.line_noise (issue #14, replay): a JSON Lines line of an unwatched
operation is recognized from its bytes (jsontext.routing_filter, msgspec) without building
its document; every line it cannot decide is parsed in full, so the replay's records,
skips, findings and errors (a malformed line with its position) are the full parse's.

tests/test_prefilter.py replays the corpus, its mutations and malformed lines both ways
(through line_noise too, msgspec being installed); this file holds the lines where a byte
reader and json could part: duplicate and escaped keys, NaN, lone surrogates, deep nesting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE, ROOT, all_corpus_files
from fuzz.mutations import load_corpus
from trustwatch import clouds, jsontext
from trustwatch.baseline import load_baseline
from trustwatch.intake import NOISE, PREFILTERED, Prefilter, _first_route, parse_paths, read_path
from trustwatch.respond import replay

BASELINE = load_baseline(EXAMPLE_BASELINE)
NOISE_RECORD = '"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "x"'
# the AWS responder's own watched call: a finding when it backdoors the baseline's role
WATCHED = json.loads((ROOT / "examples" / "events" / "aws-attach-admin.json").read_text())


def _outcome(path: Path, *, prefiltered: bool) -> tuple[Any, ...]:
    outcome = replay(
        parse_paths([path], skip_reasons=not prefiltered), BASELINE, keep_skip_reasons=False
    )
    findings = sorted(f.to_json() for f in outcome.findings)
    return outcome.records, outcome.skips, findings, outcome.errors, outcome.not_evaluated


def _watched_line(**override: Any) -> dict[str, Any]:
    return {**WATCHED, **override}


def _dup_last(first: str, last: str) -> str:
    """A line whose eventName is given twice: json keeps the last."""
    body = json.dumps(_watched_line())[1:-1]
    return f'{{"eventName": "{first}", {body}, "eventName": "{last}"}}'


LINES = {
    # json reads the last of duplicate keys: a watched name after an unwatched one counts
    "duplicate, watched last": _dup_last("RunInstances", WATCHED["eventName"]),
    "duplicate, noise last": _dup_last(WATCHED["eventName"], "RunInstances"),
    "escaped key": json.dumps(_watched_line()).replace('"eventName"', '"eventN\\u0061me"'),
    "escaped noise key": "{" + NOISE_RECORD.replace('"eventName"', '"event\\u004eame"') + "}",
    "NaN in a noise record": "{" + NOISE_RECORD + ', "n": NaN}',
    "lone surrogate": "{" + NOISE_RECORD + ', "s": "\\ud800"}',
    "raw control character": "{" + NOISE_RECORD + ', "s": "a\tb"}',
    "big integer": "{" + NOISE_RECORD + ', "n": 123456789012345678901234567890}',
    "deep nesting": "{" + NOISE_RECORD + ', "d": ' + "[" * 5000 + "]" * 5000 + "}",
    "shallow nesting": "{" + NOISE_RECORD + ', "d": ' + "[" * 100 + "]" * 100 + "}",
    "truncated noise": "{" + NOISE_RECORD,
    "trailing comma": "{" + NOISE_RECORD + ",}",
    "trailing garbage": "{" + NOISE_RECORD + "} x",
    "two objects": "{" + NOISE_RECORD + "}{}",
    "bad value inside": "{" + NOISE_RECORD + ', "a": [1, tru]}',
    "an array": "[{" + NOISE_RECORD + "}]",
    "operation not a string": '{"eventSource": "ec2.amazonaws.com", "eventName": 5, "awsRegion": 1}',
    "no region": '{"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"}',
    "an envelope key": "{" + NOISE_RECORD + ', "detail-type": "AWS API Call via CloudTrail"}',
    "records key": "{" + NOISE_RECORD + ', "Records": []}',
    "the noise record": "{" + NOISE_RECORD + "}",
}


@pytest.mark.parametrize("line", LINES.values(), ids=LINES.keys())
def test_each_line_replays_as_the_full_parse_does(tmp_path: Path, line: str) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(f"{line}\n{{{NOISE_RECORD}}}\n", encoding="utf-8", errors="surrogatepass")
    assert _outcome(path, prefiltered=True) == _outcome(path, prefiltered=False)


def test_the_lines_cover_findings_errors_and_noise(tmp_path: Path) -> None:
    """The cases above are not all one outcome: the comparison has something to catch."""
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(LINES.values()) + "\n", encoding="utf-8", errors="surrogatepass")
    _, skips, findings, errors, _ = _outcome(path, prefiltered=True)
    assert findings and errors and skips
    where = {e.split(": ", 1)[0] for e in errors}
    assert f"{path}:line {list(LINES).index('deep nesting') + 1}" in where


def _decided(line: str) -> bool:
    line_noise = Prefilter().line_noise()
    assert line_noise is not None
    return line_noise(line.encode("utf-8", "surrogatepass"))


def test_line_noise_decides_plain_noise_and_leaves_the_rest_to_the_full_parse() -> None:
    assert _decided(LINES["the noise record"])
    assert _decided(LINES["escaped noise key"])
    assert _decided(LINES["duplicate, noise last"])
    assert _decided(LINES["big integer"]) and _decided(LINES["shallow nesting"])
    for name in LINES.keys() - {
        "the noise record",
        "escaped noise key",
        "duplicate, noise last",
        "big integer",
        "shallow nesting",
    }:
        assert not _decided(LINES[name]), name


def test_a_decided_line_is_never_turned_into_a_document(tmp_path: Path) -> None:
    path = tmp_path / "two.jsonl"
    path.write_text("{" + NOISE_RECORD + "}\n" + json.dumps(WATCHED) + "\n")
    docs = [doc for _, doc in read_path(path, Prefilter().lines_filter())]
    assert docs[0] is PREFILTERED and docs[1] == WATCHED
    assert next(iter(parse_paths([path], skip_reasons=False))) is NOISE


def test_the_declared_recognition_keys_are_what_recognizes_needs() -> None:
    """PREFILTER_RECOGNIZED is a promise: every object holding those keys is recognized
    (whatever else it holds), and the declaring cloud is the first parse_document asks."""
    route = _first_route()
    assert route is not None
    first, module = route
    keys = module.PREFILTER_RECOGNIZED
    docs = [doc for _, doc in load_corpus(all_corpus_files(), ROOT / "examples" / "events")]
    shapes = [d for d in docs if isinstance(d, dict)] + [{}, {"records": []}, {"protoPayload": {}}]
    for doc in shapes:
        for value in ("x", 1, None, [], {}):
            assert module.recognizes({**doc, **dict.fromkeys(keys, value)}), doc
    for plugin in clouds.registered():
        if plugin.name != first:
            assert not hasattr(plugin.events(), "PREFILTER_RECOGNIZED")  # it would be unused


def test_without_msgspec_every_line_is_parsed_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError
    assert jsontext.routing_filter(("a", "b"), (), (), {}) is None
    assert Prefilter().line_noise() is None
    path = tmp_path / "two.jsonl"
    path.write_text("{" + NOISE_RECORD + "}\n" + json.dumps(WATCHED) + "\n")
    outcome = replay(parse_paths([path], skip_reasons=False), BASELINE, keep_skip_reasons=False)
    assert (outcome.records, outcome.skips, len(outcome.findings)) == (2, 1, 1)


@pytest.mark.parametrize("size", [999, 1000, 1500, 2499, 2500, 2600, 6000])
def test_a_long_line_is_noise_exactly_where_line_may_nest_deeply_says_no(size: int) -> None:
    """routing_filter finds a long line's first few "[" one at a time instead of counting
    them all: around that number, and around where the length alone is enough for one
    count to matter, its answer is line_may_nest_deeply's, whether the brackets nest or
    sit in a string."""
    line_noise = Prefilter().line_noise()
    assert line_noise is not None
    few, seen = jsontext._FEW_ARRAYS, set()
    for arrays in sorted({0, 1, few - 1, few, few + 1, 2 * few, 300, 499, 500, 501}):
        for nested in (True, False):
            brackets = ("[" * arrays + "]" * arrays or "0") if nested else json.dumps("[" * arrays)
            line = "{" + NOISE_RECORD + ', "d": ' + brackets + ', "pad": ""}'
            line = line[:-2] + "x" * (size - len(line)) + '"}'
            raw = line.encode()
            if len(raw) != size:
                continue  # too many brackets for this length
            assert json.loads(line)
            assert line_noise(raw) is not jsontext.line_may_nest_deeply(raw), (arrays, nested)
            seen.add(line_noise(raw))
    assert seen == ({True, False} if size >= 1000 else {True})  # both answers were asked


@pytest.mark.parametrize("value", ["null", "0", '""', "[]", "{}", "true", '"x"'])
@pytest.mark.parametrize("key", ["detail-type", "Records"])
def test_an_unless_key_holding_anything_leaves_the_line_to_the_full_parse(
    key: str, value: str
) -> None:
    """A PREFILTER_KEYS `unless` key (an envelope, a batch) makes the record something else
    whatever it holds, null too; first or last among duplicates."""
    assert not _decided("{" + NOISE_RECORD + f', "{key}": {value}}}')
    assert not _decided(f'{{"{key}": {value}, ' + NOISE_RECORD + "}")
    assert not _decided("{" + NOISE_RECORD + f', "{key}": {value}, "{key}": 1}}')
