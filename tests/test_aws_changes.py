"""The typed AWS payloads (trustwatch.aws.changes): every change the events module builds
carries the payload its kind declares, succeeded or failed, and holds no list."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
import test_aws_rules
from awsevents import ACCOUNT, envelope, iam_call
from conftest import corpus_files
from trustwatch.aws import changes as payloads
from trustwatch.aws.changes import (
    BoundaryDeleted,
    BoundaryPut,
    FunctionRoleSet,
    InlinePolicyDeleted,
    InlinePolicyPut,
    InstanceProfileChanged,
    ManagedPolicyChanged,
    PolicyVersion,
    RoleAssumed,
    RoleCreated,
    RoleDeleted,
    TrustUpdated,
)
from trustwatch.aws.events import IAM_KINDS, LAMBDA_KINDS, STS_KINDS
from trustwatch.changes import Change
from trustwatch.intake import parse_document, read_path

PAYLOADS: dict[str, type] = {
    "role.trust_updated": TrustUpdated,
    "role.created": RoleCreated,
    "role.deleted": RoleDeleted,
    "role.policy_attached": ManagedPolicyChanged,
    "role.policy_detached": ManagedPolicyChanged,
    "role.inline_put": InlinePolicyPut,
    "role.inline_deleted": InlinePolicyDeleted,
    "role.boundary_put": BoundaryPut,
    "role.boundary_deleted": BoundaryDeleted,
    "policy.version_created": PolicyVersion,
    "policy.default_version_set": PolicyVersion,
    "instance_profile.role_added": InstanceProfileChanged,
    "instance_profile.role_removed": InstanceProfileChanged,
    "instance_profile.deleted": InstanceProfileChanged,
    "role.assumed": RoleAssumed,
    "function.created": FunctionRoleSet,
    "function.configuration_updated": FunctionRoleSet,
    "function.code_updated": FunctionRoleSet,
}
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/databricks-boundary"
# the calls no rule case makes
BOUNDARY_CALLS = [
    iam_call("PutRolePermissionsBoundary", {"roleName": "r", "permissionsBoundary": BOUNDARY}),
    iam_call("DeleteRolePermissionsBoundary", {"roleName": "r"}),
    # Lambda: a function's execution role (eventName versioned by CloudTrail)
    iam_call(
        "CreateFunction20150331",
        {"functionName": "f", "role": f"arn:aws:iam::{ACCOUNT}:role/r"},
        eventSource="lambda.amazonaws.com",
    ),
    iam_call(
        "UpdateFunctionConfiguration20150331v2",
        {"functionName": "f", "role": f"arn:aws:iam::{ACCOUNT}:role/r"},
        eventSource="lambda.amazonaws.com",
    ),
    iam_call(
        "UpdateFunctionCode20150331v2",
        {"functionName": "f"},
        eventSource="lambda.amazonaws.com",
        responseElements={"functionName": "f", "role": f"arn:aws:iam::{ACCOUNT}:role/r"},
    ),
]


def changes_of(doc: object) -> list[Change]:
    return [c for parsed in parse_document(doc, "test") for c in parsed.changes]


def every_change() -> Iterator[tuple[str, Change]]:
    """The changes of every rule case, bare, failed and in an envelope, and of the corpus."""
    records = [(name, record) for name, record, _ in test_aws_rules.CASES]
    records += [(r["eventName"], r) for r in BOUNDARY_CALLS]
    for name, record in records:
        failed = record | {"errorCode": "AccessDenied", "errorMessage": "not authorized"}
        for doc in (record, envelope(record), failed):
            for change in changes_of(doc):
                yield name, change
    for path in corpus_files("aws"):
        for where, doc in read_path(path):
            for change in changes_of(doc):
                yield f"{path.name} {where}", change


def test_every_kind_declares_its_payload():
    kinds = set(IAM_KINDS.values()) | set(STS_KINDS.values()) | set(LAMBDA_KINDS.values())
    assert set(PAYLOADS) == kinds


def test_payloads_are_frozen_slotted_dataclasses():
    classes = [
        c for c in vars(payloads).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
    ]
    assert set(classes) == set(PAYLOADS.values())
    for cls in classes:
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls


def test_every_change_carries_its_kinds_payload():
    seen: set[str] = set()
    failed: set[str] = set()
    for where, change in every_change():
        assert type(change.payload) is PAYLOADS[change.kind], (where, change)
        values = [getattr(change.payload, f.name) for f in dataclasses.fields(change.payload)]
        assert not [v for v in values if isinstance(v, list)], (where, change)  # tuples
        seen.add(change.kind)
        if change.failed:
            failed.add(change.kind)
    assert seen == set(PAYLOADS)
    assert failed == set(PAYLOADS)  # a failed call carries its kind's payload too


def test_role_created_is_read_as_a_trust_change():
    created = iam_call(
        "CreateRole",
        {
            "roleName": "r",
            "assumeRolePolicyDocument": json.dumps({"Statement": []}),
            "permissionsBoundary": BOUNDARY,
        },
    )
    (change,) = changes_of(created)
    assert change.payload_as(TrustUpdated).policy == {"Statement": []}
    assert change.payload_as(RoleCreated).boundary == BOUNDARY


def test_a_rule_reading_the_wrong_payload_is_told_so():
    (change,) = changes_of(BOUNDARY_CALLS[0])
    with pytest.raises(TypeError, match="carries BoundaryPut, expected TrustUpdated"):
        change.payload_as(TrustUpdated)
