"""Build CloudTrail records for tests from real published records (tests/data/aws)."""

from __future__ import annotations

import copy
import json
from typing import Any

from conftest import DATA

ACCOUNT = "111122223333"
DATABRICKS = "414351767826"
DBX_EXTERNAL_ID = "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77"  # examples/baseline.yaml
UC_EXTERNAL_ID = "9d2b6c1e-3f4a-4e8b-a7c5-1b2d3e4f5a6b"
UC_MASTER = "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / "aws" / f"{name}.json").read_text(), strict=False)


def session(role: str, name: str, account: str = ACCOUNT) -> dict[str, Any]:
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLE:{name}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{name}",
        "accountId": account,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "arn": f"arn:aws:iam::{account}:role/{role}",
                "accountId": account,
                "userName": role,
            }
        },
    }


ALICE = session("dev", "alice")
TERRAFORM = session("terraform-ci", "run-1")
RESPONDER = session("trustwatch-responder", "fix")


def iam_call(name: str, params: dict[str, Any], actor: dict[str, Any] | None = None, **extra: Any):
    """A real stratus IAM record with its call, parameters and actor replaced."""
    record = copy.deepcopy(load("cloudtrail-updateassumerolepolicy-stratus"))
    record.update(
        eventName=name,
        requestParameters=params,
        recipientAccountId=ACCOUNT,
        userIdentity=copy.deepcopy(actor or ALICE),
        eventID=f"evt-{name}-{abs(hash(json.dumps(params, sort_keys=True))) % 10**8}",
    )
    record.update(extra)
    return record


def trust(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, condition: dict[str, Any] | None = None, action: Any = "sts:AssumeRole"):
    stmt: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        stmt["Condition"] = condition
    return stmt


def external_id(value: Any, op: str = "StringEquals") -> dict[str, Any]:
    return {op: {"sts:ExternalId": value}}


CROSS_ACCOUNT_TRUST = trust(
    allow({"AWS": f"arn:aws:iam::{DATABRICKS}:root"}, external_id(DBX_EXTERNAL_ID))
)


def envelope(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e0b6d7a1-0000-4000-8000-000000000000",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + record["eventSource"].split(".")[0],
        "account": ACCOUNT,
        "time": record["eventTime"],
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }


ATTACKER_ROOT = "arn:aws:iam::193672423079:root"  # the outside account stratus-red-team adds


def shapes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The three ways a record reaches trustwatch: bare, EventBridge, a CloudTrail file."""
    return [record, envelope(record), {"Records": [copy.deepcopy(record)]}]


def findings(doc: Any, baseline: Any) -> list[Any]:
    """Every finding of a document, through intake and the engine (no record may fail)."""
    from trustwatch.engine import evaluate
    from trustwatch.intake import parse_document

    out = []
    for parsed in parse_document(doc, "test"):
        assert parsed.error is None, parsed.error
        for change in parsed.changes:
            out.extend(evaluate(change, baseline))
    return out


def fired(record: dict[str, Any], baseline: Any) -> list[tuple[str, str]]:
    """(rule, severity) pairs; the same in every delivery shape."""
    results = [
        sorted((f.rule, f.severity.value) for f in findings(doc, baseline))
        for doc in shapes(record)
    ]
    assert results[0] == results[1] == results[2]
    return results[0]
