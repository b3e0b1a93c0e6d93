"""AWS intake: every published corpus record reads; shapes and malformed fields."""

from __future__ import annotations

import json

import pytest
from awsevents import ALICE, envelope, iam_call, load
from conftest import corpus_files
from trustwatch.aws import events
from trustwatch.aws.changes import RoleCreated
from trustwatch.intake import parse_document, read_path

AWS_CORPUS = corpus_files("aws")


@pytest.mark.parametrize("path", AWS_CORPUS, ids=[p.name for p in AWS_CORPUS])
def test_every_corpus_record_reads(path, baseline):
    from trustwatch.engine import evaluate

    results = [p for where, doc in read_path(path) for p in parse_document(doc, where)]
    assert results
    for parsed in results:
        assert parsed.error is None, parsed.error
        assert parsed.changes or parsed.skipped is not None
        for change in parsed.changes:
            evaluate(change, baseline)  # must not raise


def test_corpus_identity_changes_are_recognized():
    kinds = {}
    for path in AWS_CORPUS:
        for where, doc in read_path(path):
            for parsed in parse_document(doc, where):
                for change in parsed.changes:
                    kinds[path.name] = change.kind
    assert kinds["cloudtrail-updateassumerolepolicy-stratus.json"] == "role.trust_updated"
    assert kinds["cloudtrail-createrole-stratus.json"] == "role.created"
    assert kinds["cloudtrail-attachrolepolicy-admin-stratus.json"] == "role.policy_attached"
    assert kinds["cloudtrail-assumerole-accessdenied-stratus.json"] == "role.assumed"
    assert "cloudtrail-ec2-runinstances-c7n.json" not in kinds
    assert "eventbridge-scheduled-event-c7n.json" not in kinds


def test_url_encoded_response_document_and_actor_aliases():
    record = load("cloudtrail-createrole-stratus")
    (change,) = events.parse(record)
    assert change.identity == "arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role"
    created = change.payload_as(RoleCreated)
    assert created.policy["Statement"][0]["Principal"]["AWS"].endswith("193672423079:root")
    assert created.boundary == "arn:aws:iam::aws:policy/AWSDenyAll"
    (change,) = events.parse(iam_call("DeleteRole", {"roleName": "r"}, ALICE))
    assert change.actor == ALICE["arn"]
    assert "arn:aws:iam::111122223333:role/dev" in change.actor_ids


def test_envelope_and_bare_record_give_the_same_change():
    record = iam_call("DeleteRole", {"roleName": "r"})
    assert events.parse(envelope(record)) == events.parse(record)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(requestParameters={"policyDocument": "{}"}), "roleName missing"),
        (lambda r: r["requestParameters"].update(roleName=42), "roleName is a int"),
        (lambda r: r.update(requestParameters="oops"), "requestParameters is a str"),
        (lambda r: r.update(eventName=None), "without string eventName"),
        (lambda r: r["requestParameters"].update(policyDocument="[1]"), "policyDocument"),
    ],
)
def test_malformed_records_raise_clear_errors(mutate, message):
    record = iam_call(
        "UpdateAssumeRolePolicy", {"roleName": "r", "policyDocument": json.dumps({"Statement": []})}
    )
    mutate(record)
    with pytest.raises(events.EventError, match=message):
        events.parse(record)


def test_failed_call_without_parameters_is_skipped():
    record = iam_call("DeleteRole", {})
    record.update(errorCode="AccessDenied", requestParameters=None)
    assert "failed" in events.parse(record).reason
