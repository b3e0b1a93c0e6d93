"""The guard: a bug met on one record is that record's internal error, never the batch's end.

A parser bug is provoked with a record whose mapping methods raise (JSON never gives one,
which is the point: it stands for any exception the parsers do not expect); a rule bug
with a rule registered for the test that raises. Either way the other records (and the
other rules) are evaluated, the error is counted apart, and the log line says "internal
error", where in the code, and no more of the record than a short prefix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from awsevents import ATTACKER_ROOT, CROSS_ACCOUNT_TRUST, allow, iam_call, trust
from conftest import EXAMPLE_BASELINE
from trustwatch.baseline import load_baseline
from trustwatch.engine import REGISTRY, rule
from trustwatch.intake import RECORD_PREFIX_CHARS, parse_document
from trustwatch.respond import replay

BASELINE = load_baseline(EXAMPLE_BASELINE)
SECRET = "do-not-log-" * 400


def drift() -> dict[str, Any]:
    doc = trust(*CROSS_ACCOUNT_TRUST["Statement"], allow({"AWS": ATTACKER_ROOT}))
    return iam_call(
        "UpdateAssumeRolePolicy",
        {"roleName": "databricks-cross-account", "policyDocument": json.dumps(doc)},
    )


class Exploding(dict):
    """A record whose fields cannot be read: `get` raises what no parser expects."""

    def get(self, key: Any, default: Any = None) -> Any:
        raise RuntimeError(f"cannot read {key}: {SECRET}")


def test_a_parser_bug_is_the_records_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    broken = Exploding(drift())
    batch = {"Records": [drift(), broken, drift() | {"eventID": "e-3", "requestID": "r-3"}]}
    with caplog.at_level(logging.ERROR, logger="trustwatch"):
        outcome = replay(parse_document(batch, "trail.json"), BASELINE)
    assert [f.rule for f in outcome.findings] == ["aws.trust.principal_added"] * 2
    assert outcome.records == 3 and outcome.internal_errors == 1
    (error,) = outcome.errors
    assert error.startswith("trail.json record 1: internal error parsing the record: ")
    assert "RuntimeError: cannot read " in error and "aws/events.py" in error
    (logged,) = [r for r in caplog.records if r.name == "trustwatch"]
    message = logged.getMessage()
    assert logged.levelno == logging.ERROR and message.startswith("internal error parsing")
    assert "trail.json record 1" in message and "aws/events.py:" in message
    # the record text: a short prefix at most, in the log line and in the error
    assert SECRET not in message and SECRET not in error
    assert len(message) < 200 + 2 * RECORD_PREFIX_CHARS + 200


def test_fail_fast_stops_at_an_internal_error_too() -> None:
    batch = {"Records": [Exploding(drift()), drift()]}
    outcome = replay(parse_document(batch, "t"), BASELINE, fail_fast=True)
    assert outcome.stopped_early and outcome.findings == [] and outcome.internal_errors == 1


@pytest.fixture
def exploding_rule() -> Iterator[str]:
    rule_id = "aws.test.exploding"

    @rule(rule_id, "high", ["role.trust_updated"], "raises on every trust change")
    def _explode(change: Any, baseline: Any) -> list[Any]:
        raise KeyError(SECRET)

    try:
        yield rule_id
    finally:
        REGISTRY.rules.pop(rule_id)
        REGISTRY._by_kind.clear()


def test_a_rule_bug_keeps_the_other_rules_and_records(
    exploding_rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    batch = {"Records": [drift(), drift() | {"eventID": "e-2", "requestID": "r-2"}]}
    with caplog.at_level(logging.ERROR, logger="trustwatch"):
        outcome = replay(parse_document(batch, "t.json"), BASELINE)
    assert [f.rule for f in outcome.findings] == ["aws.trust.principal_added"] * 2
    assert outcome.internal_errors == 2 and len(outcome.errors) == 2
    for index, error in enumerate(outcome.errors):
        assert error.startswith(f"t.json record {index}: internal error: rule {exploding_rule}")
    logged = [r.getMessage() for r in caplog.records if r.name == "trustwatch"]
    assert len(logged) == 2 and all(m.startswith("internal error evaluating") for m in logged)
    assert not any(SECRET in text for text in [*logged, *outcome.errors])
