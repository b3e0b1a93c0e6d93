"""IAM policy semantics (trustwatch.aws.policy): concrete cases, then properties."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from conftest import corpus_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustwatch.aws.policy import (
    PolicyError,
    compare_permissions,
    compare_trust,
    grants_admin,
    load_document,
    managed_policy_is_admin,
    principal_covers,
    trust_principals,
)

DBX = "414351767826"
DBX_ROOT = f"arn:aws:iam::{DBX}:root"
ACCOUNT = "111122223333"
ATTACKER = "arn:aws:iam::193672423079:root"
XID = "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77"
UC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/uc-access"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, condition: dict[str, Any] | None = None, action: Any = "sts:AssumeRole"):
    stmt: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        stmt["Condition"] = condition
    return stmt


def xid(value: Any = XID, op: str = "StringEquals") -> dict[str, Any]:
    return {op: {"sts:ExternalId": value}}


BASE = doc(allow({"AWS": DBX_ROOT}, xid()))


def trust_ok(actual: Any, expected: Any = BASE) -> bool:
    diff = compare_trust(actual, [expected])
    return not diff.widened and not diff.expected_principals_removed


# ---------------------------------------------------------------- loading


def test_load_accepts_dict_pretty_compact_and_url_encoded():
    pretty = json.dumps(BASE, indent=4)
    compact = json.dumps(BASE, separators=(",", ":"))
    for form in (
        BASE,
        pretty,
        compact,
        urllib.parse.quote(pretty),
        urllib.parse.quote_plus(pretty),
    ):
        assert load_document(form) == BASE
    assert load_document(json.dumps(compact)) == BASE  # JSON text stored as a JSON string


def _corpus_documents() -> list[tuple[str, str]]:
    found = []
    for path in corpus_files("aws"):
        record = json.loads(path.read_text(), strict=False)
        params = record.get("requestParameters") or {}
        role = (record.get("responseElements") or {}).get("role") or {}
        for text in (
            params.get("assumeRolePolicyDocument"),
            params.get("policyDocument"),
            role.get("assumeRolePolicyDocument"),
        ):
            if text:
                found.append((path.name, text))
    return found


def test_load_reads_every_policy_document_in_the_corpus():
    documents = _corpus_documents()
    assert len(documents) >= 4
    for name, text in documents:
        assert trust_principals(text), name


def test_url_encoded_response_equals_the_plain_request():
    path = next(p for p in corpus_files("aws") if p.name == "cloudtrail-createrole-stratus.json")
    record = json.loads(path.read_text(), strict=False)
    request = record["requestParameters"]["assumeRolePolicyDocument"]
    response = record["responseElements"]["role"]["assumeRolePolicyDocument"]
    assert response.startswith("%7B")
    assert load_document(response) == load_document(request)
    assert trust_ok(response, request) and trust_ok(request, response)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "must be a JSON object"),
        (42, "dict or JSON text"),
        ({"Version": "2012-10-17"}, "no 'Statement'"),
        ({"Statement": "Allow"}, "'Statement' must be an object or a list"),
        ({"Statement": ["x"]}, "Statement[0] must be an object"),
        ({"Statement": [{"Effect": "Permit", "Action": "s3:*"}]}, "Effect must be"),
        ({"Statement": [{"Effect": "Allow"}]}, "exactly one of 'Action' or 'NotAction'"),
        ({"Statement": [{"Effect": "Allow", "Action": 3}]}, "Statement[0].Action must be"),
        ({"Statement": [{"Effect": "Allow", "Action": ["a", 1]}]}, "list of strings"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "a", "Principal": {"Robot": "x"}}]},
            "unknown principal type 'Robot'",
        ),
        ({"Statement": [{"Effect": "Allow", "Action": "a", "Principal": 5}]}, "Principal must be"),
        ({"Statement": [{"Effect": "Allow", "Action": "a", "Condition": []}]}, "Condition must"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "a", "Condition": {"Bool": {"k": {}}}}]},
            "condition values",
        ),
    ],
)
def test_invalid_documents_raise_policy_error(document, message):
    with pytest.raises(PolicyError) as err:
        load_document(document)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_comparisons_reject_invalid_documents():
    with pytest.raises(PolicyError):
        compare_trust("{", [BASE])
    with pytest.raises(PolicyError):
        compare_permissions(BASE, "nope")
    with pytest.raises(PolicyError):
        grants_admin({"Statement": 1})


# ---------------------------------------------------------------- normalization


def test_equivalent_spellings_are_the_same_trust():
    spellings = [
        doc(allow({"AWS": DBX}, xid())),  # bare account id
        doc(allow({"AWS": [DBX_ROOT]}, {"StringEquals": {"sts:ExternalId": [XID]}})),
        doc({**allow({"AWS": DBX_ROOT}, xid(), ["STS:AssumeRole"]), "Sid": "Databricks"}),
        {"Statement": allow({"AWS": DBX_ROOT}, {"stringequals": {"STS:EXTERNALID": XID}})},
        json.dumps(BASE, separators=(",", ":")),
        urllib.parse.quote(json.dumps(BASE, indent=2)),
    ]
    for spelling in spellings:
        assert trust_ok(spelling), spelling
        assert trust_ok(BASE, spelling), spelling


def test_statement_order_and_sid_do_not_matter():
    a = doc({**allow({"Service": "ec2.amazonaws.com"}), "Sid": "A"}, allow({"AWS": DBX}, xid()))
    b = doc(
        allow({"AWS": DBX_ROOT}, xid()), {**allow({"Service": "EC2.amazonaws.com"}), "Sid": "B"}
    )
    assert trust_ok(a, b) and trust_ok(b, a)


def test_canonical_principals():
    grants = trust_principals(
        doc(
            allow({"AWS": [DBX, UC_ROLE, "*"]}),
            allow({"Service": "EC2.amazonaws.com", "Federated": "cognito-identity.amazonaws.com"}),
            allow({"CanonicalUser": "79a59df900b949e55d96a1e698fbaced"}),
        )
    )
    assert [g.principal for g in grants] == sorted(
        [
            "*",
            DBX_ROOT,
            UC_ROLE,
            "service:ec2.amazonaws.com",
            "federated:cognito-identity.amazonaws.com",
            "canonical:79a59df900b949e55d96a1e698fbaced",
        ]
    )
    assert {g.actions for g in grants} == {frozenset({"sts:assumerole"})}
    assert trust_principals(doc(allow("*")))[0].principal == "*"
    assert trust_principals(doc(allow({"AWS": "*"})))[0].principal == "*"


def test_bare_account_ids_take_the_documents_partition():
    gov = doc(allow({"AWS": "arn:aws-us-gov:iam::044793339203:root"}, xid()))
    assert trust_ok(doc(allow({"AWS": "044793339203"}, xid())), gov)
    assert trust_principals(doc(allow({"AWS": DBX})), partition="aws-us-gov")[0].principal == (
        f"arn:aws-us-gov:iam::{DBX}:root"
    )
    # the same account number in another partition is another principal
    diff = compare_trust(doc(allow({"AWS": f"arn:aws-us-gov:iam::{DBX}:root"}, xid())), [BASE])
    assert [p["principal"] for p in diff.principals_added] == [f"arn:aws-us-gov:iam::{DBX}:root"]


def test_condition_values_are_case_sensitive():
    diff = compare_trust(doc(allow({"AWS": DBX_ROOT}, xid(XID.upper()))), [BASE])
    assert [w["reason"] for w in diff.condition_weakened] == ["external_id_changed"]


# ---------------------------------------------------------------- trust: widening


def test_added_principal_is_reported():
    diff = compare_trust(doc(allow({"AWS": DBX_ROOT}, xid()), allow({"AWS": ATTACKER})), [BASE])
    assert diff.widened
    assert diff.principals_added == [
        {
            "principal": ATTACKER,
            "actions": ["sts:assumerole"],
            "external_id": None,
            "conditions": {},
        }
    ]
    assert not diff.external_id_missing and not diff.condition_weakened
    assert not diff.expected_principals_removed


@pytest.mark.parametrize(
    "principal", ["*", {"AWS": "*"}, {"AWS": ["*", DBX_ROOT]}], ids=["star", "aws-star", "list"]
)
def test_star_principal_is_added_even_with_the_external_id(principal):
    diff = compare_trust(doc(allow(principal, xid())), [BASE])
    assert "*" in [p["principal"] for p in diff.principals_added]


def test_not_principal_allow_counts_as_everyone():
    stmt = {"Effect": "Allow", "NotPrincipal": {"AWS": ATTACKER}, "Action": "sts:AssumeRole"}
    diff = compare_trust(doc(stmt), [BASE])
    assert [p["principal"] for p in diff.principals_added] == ["*"]


def test_dropped_external_id_is_missing():
    diff = compare_trust(doc(allow({"AWS": DBX})), [BASE])
    assert diff.widened and not diff.principals_added
    [item] = diff.external_id_missing
    assert item["principal"] == DBX_ROOT
    assert item["external_id"] is None
    assert item["expected_external_id"] == [XID]


def test_external_id_on_another_key_or_other_conditions_does_not_count():
    diff = compare_trust(
        doc(allow({"AWS": DBX}, {"Bool": {"aws:SecureTransport": "true"}})), [BASE]
    )
    assert diff.external_id_missing


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (xid("other"), "external_id_changed"),
        (xid([XID, "other"]), "external_id_changed"),
        (xid("*", "StringLike"), "external_id_wildcard"),
        (xid("7f3c*", "StringLike"), "external_id_wildcard"),
        (xid(XID, "StringEqualsIfExists"), "external_id_if_exists"),
        (xid(XID, "StringLikeIfExists"), "external_id_if_exists"),
        (xid(XID, "ForAnyValue:StringEquals"), "external_id_changed"),
    ],
)
def test_weakened_external_id(condition, reason):
    diff = compare_trust(doc(allow({"AWS": DBX_ROOT}, condition)), [BASE])
    assert [w["reason"] for w in diff.condition_weakened] == [reason]
    assert not diff.external_id_missing and not diff.principals_added
    assert diff.condition_weakened[0]["expected_external_id"] == [XID]


def test_if_exists_and_bare_wildcards_do_not_count_as_an_external_id():
    for condition in (xid(XID, "StringEqualsIfExists"), xid("*", "StringLike")):
        assert trust_principals(doc(allow({"AWS": DBX}, condition)))[0].external_ids is None
    assert trust_principals(doc(allow({"AWS": DBX}, xid("ab*", "StringLike"))))[
        0
    ].external_ids == frozenset({"ab*"})


def test_equivalent_or_stricter_external_id_tests_are_fine():
    assert trust_ok(doc(allow({"AWS": DBX}, xid(XID, "StringLike"))))  # no wildcard: equals
    two = doc(allow({"AWS": DBX_ROOT}, xid([XID, "second"])))
    assert trust_ok(BASE, two)  # fewer accepted ExternalIds is stricter
    assert compare_trust(two, [BASE]).widened
    # IfExists in the baseline is satisfied by a strict test
    loose = doc(allow({"AWS": DBX_ROOT}, xid(XID, "StringEqualsIfExists")))
    assert not compare_trust(BASE, [loose]).widened
    assert compare_trust(loose, [BASE]).widened


def test_new_assume_action_for_an_expected_principal():
    actual = doc(allow({"AWS": DBX_ROOT}, xid(), ["sts:AssumeRole", "sts:TagSession"]))
    diff = compare_trust(actual, [BASE])
    [item] = diff.condition_weakened
    assert item["reason"] == "actions_added" and item["actions"] == ["sts:tagsession"]
    assert not compare_trust(BASE, [doc(allow({"AWS": DBX_ROOT}, xid(), "sts:*"))]).widened


def test_dropping_a_baseline_deny_weakens():
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sts:AssumeRole",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }
    baseline = doc(allow({"AWS": DBX_ROOT}, xid()), deny)
    diff = compare_trust(BASE, [baseline])
    [item] = diff.condition_weakened
    assert item["reason"] == "deny_removed" and item["principal"] == "*"
    assert item["statement"]["effect"] == "Deny"
    # kept as is, broadened, or reworded: not weakened
    broader = {**deny, "Condition": {}, "Action": "sts:*"}
    for kept in (deny, broader, {**deny, "Action": ["STS:AssumeRole"], "Sid": "x"}):
        assert not compare_trust(doc(allow({"AWS": DBX}, xid()), kept), [baseline]).widened, kept
    # narrowed (an extra condition on the Deny means it denies less)
    narrower = {
        **deny,
        "Condition": {**deny["Condition"], "Bool": {"aws:MultiFactorAuthPresent": "false"}},
    }
    assert compare_trust(doc(allow({"AWS": DBX}, xid()), narrower), [baseline]).widened


def test_extra_deny_and_extra_conditions_are_never_widening():
    stricter = doc(
        allow(
            {"AWS": DBX_ROOT},
            {**xid(), "IpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}},
        ),
        {"Effect": "Deny", "Principal": {"AWS": ATTACKER}, "Action": "sts:*"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}},
    )  # fmt: skip
    diff = compare_trust(stricter, [BASE])
    assert not diff.widened and not diff.expected_principals_removed


def test_other_baseline_conditions_must_stay():
    baseline = doc(allow({"AWS": DBX_ROOT}, {**xid(), "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    diff = compare_trust(BASE, [baseline])
    [item] = diff.condition_weakened
    assert item["reason"] == "condition_removed"
    assert item["condition"] == {"IpAddress": {"aws:sourceip": ["10.0.0.0/8"]}}
    inside = doc(allow({"AWS": DBX_ROOT}, {**xid(), "IpAddress": {"aws:SourceIp": "10.1.0.0/16"}}))
    assert not compare_trust(inside, [baseline]).widened
    outside = doc(allow({"AWS": DBX_ROOT}, {**xid(), "IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}))
    assert [w["reason"] for w in compare_trust(outside, [baseline]).condition_weakened] == [
        "condition_weakened"
    ]


# ---------------------------------------------------------------- trust: principals and narrowing


def test_principal_arn_narrows_an_account_root():
    shape_a = doc(
        allow(
            {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            {**xid(), "ArnLike": {"aws:PrincipalArn": UC_ROLE}},
        )
    )
    shape_b = doc(allow({"AWS": UC_ROLE}, xid()))
    assert trust_ok(shape_a, shape_b) and trust_ok(shape_b, shape_a)
    assert [g.principal for g in trust_principals(shape_a)] == [UC_ROLE]
    # without the narrowing the whole account may assume
    whole = doc(allow({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, xid()))
    added = compare_trust(whole, [shape_b]).principals_added
    assert [p["principal"] for p in added] == [f"arn:aws:iam::{ACCOUNT}:root"]
    # ArnEquals and a path-wildcard pattern narrow too; a pattern is covered only by a wider one
    equals = doc(allow({"AWS": ACCOUNT}, {**xid(), "ArnEquals": {"aws:PrincipalArn": UC_ROLE}}))
    assert trust_ok(equals, shape_b)
    pattern = doc(
        allow(
            {"AWS": ACCOUNT},
            {**xid(), "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/uc-*"}},
        )
    )
    assert compare_trust(pattern, [shape_b]).principals_added
    assert not compare_trust(shape_b, [pattern]).widened
    # an ARN of another account can never match the root's callers: no grant at all
    other = doc(
        allow({"AWS": ACCOUNT}, {"ArnLike": {"aws:PrincipalArn": f"{ATTACKER[:-4]}role/x"}})
    )
    assert trust_principals(other) == []
    # IfExists does not narrow
    loose = doc(
        allow({"AWS": ACCOUNT}, {**xid(), "ArnLikeIfExists": {"aws:PrincipalArn": UC_ROLE}})
    )
    assert compare_trust(loose, [shape_b]).principals_added


def test_principal_account_narrows_star():
    narrowed = doc(
        allow("*", {**xid(), "StringEquals": {"sts:ExternalId": XID, "aws:PrincipalAccount": DBX}})
    )
    assert trust_ok(narrowed)


def test_principal_coverage():
    assert principal_covers(DBX_ROOT, f"arn:aws:iam::{DBX}:role/any")
    assert principal_covers(DBX_ROOT, f"arn:aws:sts::{DBX}:assumed-role/r/s")
    assert not principal_covers(DBX_ROOT, f"arn:aws-us-gov:iam::{DBX}:role/any")
    assert not principal_covers(f"arn:aws:iam::{DBX}:role/any", DBX_ROOT)
    assert principal_covers(UC_ROLE, f"arn:aws:sts::{ACCOUNT}:assumed-role/uc-access/session")
    assert not principal_covers(UC_ROLE, f"arn:aws:sts::{ACCOUNT}:assumed-role/other/session")
    assert principal_covers("*", "service:ec2.amazonaws.com")
    assert not principal_covers(DBX_ROOT, "*")
    assert not principal_covers(DBX_ROOT, "service:ec2.amazonaws.com")


def test_narrower_principal_in_actual_is_fine():
    role = doc(allow({"AWS": f"arn:aws:iam::{DBX}:role/databricks-worker"}, xid()))
    assert not compare_trust(role, [BASE]).widened


# ---------------------------------------------------------------- trust: breakage and alternatives


def test_expected_principal_removed():
    diff = compare_trust(doc(allow({"Service": "ec2.amazonaws.com"})), [BASE])
    assert [p["principal"] for p in diff.principals_added] == ["service:ec2.amazonaws.com"]
    assert diff.expected_principals_removed == [
        {
            "principal": DBX_ROOT,
            "actions": ["sts:assumerole"],
            "expected_external_id": [XID],
            "expected_conditions": {"StringEquals": {"sts:externalid": [XID]}},
        }
    ]


def test_unconditional_deny_removes_an_expected_principal():
    blocked = doc(
        allow({"AWS": DBX_ROOT}, xid()),
        {"Effect": "Deny", "Principal": {"AWS": DBX}, "Action": "sts:*"},
    )
    diff = compare_trust(blocked, [BASE])
    assert not diff.widened
    assert [p["principal"] for p in diff.expected_principals_removed] == [DBX_ROOT]


def test_alternatives_pick_the_closest():
    other = doc(allow({"AWS": ATTACKER}))
    assert not compare_trust(BASE, [other, BASE]).widened
    diff = compare_trust(doc(allow({"AWS": DBX})), [other, BASE])
    assert diff.external_id_missing and not diff.principals_added
    empty = compare_trust(BASE, [])
    assert [p["principal"] for p in empty.principals_added] == [DBX_ROOT]


def test_trust_diff_is_json_friendly():
    diff = compare_trust(doc(allow("*"), allow({"AWS": DBX}, xid("x"))), [BASE])
    json.dumps(diff.as_dict())
    assert diff.widened


# ---------------------------------------------------------------- permissions


def perms(*statements: dict[str, Any]) -> dict[str, Any]:
    return doc(*statements)


def grant(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


BUCKET = "arn:aws:s3:::dbx-root"


def test_action_wildcards():
    expected = perms(grant("s3:Get*", f"{BUCKET}/*"))
    assert not compare_permissions(perms(grant("s3:GetObject", f"{BUCKET}/*")), expected).widened
    assert not compare_permissions(perms(grant("S3:getobject", f"{BUCKET}/*")), expected).widened
    assert not compare_permissions(perms(grant("s3:Get*", f"{BUCKET}/*")), expected).widened
    wider = compare_permissions(perms(grant("s3:*", f"{BUCKET}/*")), expected)
    assert wider.added == [{"effect": "Allow", "action": "s3:*", "resource": f"{BUCKET}/*"}]
    assert compare_permissions(perms(grant("s3:Put*", f"{BUCKET}/*")), expected).widened
    # '?' is one character: s3:Get?bject does not cover s3:Get*
    exact = perms(grant("s3:Get?bject", f"{BUCKET}/*"))
    assert not compare_permissions(perms(grant("s3:GetObject", f"{BUCKET}/*")), exact).widened
    assert compare_permissions(perms(grant("s3:Get*", f"{BUCKET}/*")), exact).widened


def test_resource_wildcards_are_case_sensitive():
    expected = perms(grant("s3:GetObject", f"{BUCKET}/data/*"))
    assert not compare_permissions(
        perms(grant("s3:GetObject", f"{BUCKET}/data/x")), expected
    ).widened
    assert compare_permissions(perms(grant("s3:GetObject", f"{BUCKET}/*")), expected).widened
    assert compare_permissions(perms(grant("s3:GetObject", f"{BUCKET}/DATA/x")), expected).widened
    assert compare_permissions(perms(grant("s3:GetObject")), expected).widened


def test_string_and_list_forms_and_order():
    expected = perms(
        grant(["s3:GetObject", "s3:PutObject"], [f"{BUCKET}/*"]), grant("ec2:Describe*")
    )
    actual = json.dumps(
        {
            "Statement": [
                grant("ec2:DescribeInstances", ["*"]),
                {**grant("s3:PutObject", f"{BUCKET}/*"), "Sid": "S"},
            ]
        }
    )
    assert not compare_permissions(actual, expected).widened


def test_conditions_on_expected_narrow_it():
    tag = {"StringEquals": {"aws:RequestTag/Vendor": "Databricks"}}
    expected = perms(grant("ec2:RunInstances", Condition=tag))
    assert compare_permissions(perms(grant("ec2:RunInstances")), expected).widened
    assert not compare_permissions(
        perms(grant("ec2:RunInstances", Condition=tag)), expected
    ).widened
    extra = {**tag, "Bool": {"aws:SecureTransport": "true"}}
    assert not compare_permissions(
        perms(grant("ec2:RunInstances", Condition=extra)), expected
    ).widened
    other = {"StringEquals": {"aws:RequestTag/Vendor": "Someone"}}
    assert compare_permissions(perms(grant("ec2:RunInstances", Condition=other)), expected).widened


def test_not_action_is_conservative():
    not_iam = {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}
    listed = perms(grant(["s3:*", "ec2:*"]))
    diff = compare_permissions(perms(not_iam), listed)
    assert diff.added == [{"effect": "Allow", "not_action": ["iam:*"], "resource": "*"}]
    assert not compare_permissions(perms({**not_iam, "NotAction": "IAM:*"}), perms(not_iam)).widened
    assert not compare_permissions(perms(not_iam), perms(grant("*"))).widened
    # a literal action outside the expected NotAction list is covered; a wildcard is not
    assert not compare_permissions(perms(grant("s3:GetObject")), perms(not_iam)).widened
    assert compare_permissions(perms(grant("iam:PassRole")), perms(not_iam)).widened
    assert compare_permissions(perms(grant("s3:*")), perms(not_iam)).widened
    # a different NotAction list is not covered, even a longer one
    longer = {**not_iam, "NotAction": ["iam:*", "kms:*"]}
    assert compare_permissions(perms(longer), perms(not_iam)).widened


def test_not_resource_is_conservative():
    stmt = {"Effect": "Allow", "Action": "ec2:RunInstances", "NotResource": [f"{BUCKET}/x"]}
    diff = compare_permissions(perms(stmt), perms(grant("ec2:RunInstances", "arn:aws:ec2:*")))
    assert diff.added == [
        {"effect": "Allow", "action": "ec2:runinstances", "not_resource": [f"{BUCKET}/x"]}
    ]
    assert not compare_permissions(perms(stmt), perms(stmt)).widened
    assert not compare_permissions(perms(stmt), perms(grant("ec2:RunInstances"))).widened


def test_nothing_expected_and_removed():
    actual = perms(
        grant("s3:GetObject", BUCKET), {"Effect": "Deny", "Action": "*", "Resource": "*"}
    )
    diff = compare_permissions(actual, None)
    assert diff.added == [{"effect": "Allow", "action": "s3:getobject", "resource": BUCKET}]
    assert diff.removed == []
    narrower = compare_permissions(
        perms(grant("s3:GetObject", BUCKET)), perms(grant("s3:Get*", BUCKET))
    )
    assert not narrower.widened
    assert narrower.removed == [{"effect": "Allow", "action": "s3:get*", "resource": BUCKET}]


def test_actual_deny_never_widens_and_dropped_deny_does():
    deny = {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}
    expected = perms(grant("s3:*"), deny)
    assert not compare_permissions(perms(grant("s3:*"), deny), expected).widened
    assert not compare_permissions(
        perms(grant("s3:GetObject"), deny, {**deny, "Action": "*"}), expected
    ).widened
    diff = compare_permissions(perms(grant("s3:*")), expected)
    assert diff.added == [{"effect": "Deny", "action": "s3:deletebucket", "resource": "*"}]


def test_resource_policy_principals():
    expected = perms(grant("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": UC_ROLE}))
    same = perms(grant("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": [UC_ROLE]}))
    assert not compare_permissions(same, expected).widened
    public = compare_permissions(
        perms(grant("s3:GetObject", f"{BUCKET}/*", Principal="*")), expected
    )
    assert public.added[0]["principal"] == "*"


# ---------------------------------------------------------------- admin


POWER_USER = perms(
    {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"},
    grant(
        [
            "account:GetAccountInformation",
            "account:ListRegions",
            "iam:CreateServiceLinkedRole",
            "iam:DeleteServiceLinkedRole",
            "iam:ListRoles",
            "organizations:DescribeOrganization",
        ]
    ),
)


@pytest.mark.parametrize(
    ("document", "admin"),
    [
        (perms(grant("*")), True),
        (perms(grant("iam:*")), True),
        (perms(grant("IAM:*", "arn:aws:iam::111122223333:role/*")), True),
        (perms(grant("i*")), True),
        (perms(grant(["s3:GetObject", "*"], ["arn:aws:s3:::b", "*"])), True),
        (perms({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}), True),
        (
            perms({"Effect": "Allow", "Action": "iam:*", "NotResource": "arn:aws:iam::*:role/x"}),
            True,
        ),
        (POWER_USER, False),
        (perms(grant("*", "arn:aws:s3:::bucket/*")), False),
        (perms(grant("iam:PassRole")), False),
        (perms(grant("iam:Get*")), False),
        (perms({"Effect": "Deny", "Action": "*", "Resource": "*"}), False),
    ],
)
def test_grants_admin(document, admin):
    assert grants_admin(document) is admin
    assert grants_admin(json.dumps(document)) is admin


@pytest.mark.parametrize(
    ("arn", "admin"),
    [
        ("arn:aws:iam::aws:policy/AdministratorAccess", True),
        ("arn:aws-us-gov:iam::aws:policy/AdministratorAccess", True),
        ("arn:aws:iam::aws:policy/IAMFullAccess", True),
        ("arn:aws:iam::aws:policy/PowerUserAccess", False),
        ("arn:aws:iam::aws:policy/ReadOnlyAccess", False),
        ("arn:aws:iam::aws:policy/AdministratorAccess-Amplify", False),
        ("arn:aws:iam::111122223333:policy/AdministratorAccess", False),
        ("AdministratorAccess", False),
    ],
)
def test_managed_policy_is_admin(arn, admin):
    assert managed_policy_is_admin(arn) is admin


# ---------------------------------------------------------------- properties

ROOTS = ["111122223333", "414351767826", "444455556666"]
ROLES = [UC_ROLE, "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL"]
SERVICES = ["ec2.amazonaws.com", "lambda.amazonaws.com"]
ASSUME = ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
EXTERNAL_IDS = ["alpha", "beta", "Gamma"]


@st.composite
def trust_statements(draw: st.DrawFn, *, external_id: bool | None = None, deny: bool = True):
    """One trust statement over a small vocabulary (abstract: principals as (kind, name))."""
    principals = draw(
        st.lists(
            st.one_of(
                st.sampled_from(ROOTS).map(lambda a: ("root", a)),
                st.sampled_from(ROLES).map(lambda r: ("AWS", r)),
                st.sampled_from(SERVICES).map(lambda s: ("Service", s)),
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    condition: dict[str, dict[str, Any]] = {}
    if external_id if external_id is not None else draw(st.booleans()):
        ids = draw(st.lists(st.sampled_from(EXTERNAL_IDS), min_size=1, max_size=2, unique=True))
        condition.setdefault("StringEquals", {})["sts:ExternalId"] = ids
    if draw(st.booleans()):
        condition["IpAddress"] = {
            "aws:SourceIp": draw(st.sampled_from(["10.0.0.0/8", "10.1.0.0/16"]))
        }
    roots = [name for kind, name in principals if kind == "root"]
    if roots and len(principals) == 1 and draw(st.booleans()):
        condition["ArnLike"] = {"aws:PrincipalArn": f"arn:aws:iam::{roots[0]}:role/r-*"}
    effect = "Deny" if deny and draw(st.integers(0, 4)) == 0 else "Allow"
    return {
        "Effect": effect,
        "Principal": principals,  # rendered by render_trust
        "Action": draw(st.lists(st.sampled_from(ASSUME), min_size=1, max_size=2, unique=True)),
        **({"Condition": condition} if condition else {}),
    }


def render_trust(statements: list[dict[str, Any]], *, bare_ids: bool = False) -> dict[str, Any]:
    out = []
    for stmt in statements:
        principal: dict[str, list[str]] = {}
        for kind, name in stmt["Principal"]:
            if kind == "root":
                principal.setdefault("AWS", []).append(
                    name if bare_ids else f"arn:aws:iam::{name}:root"
                )
            else:
                principal.setdefault(kind, []).append(name)
        out.append({**stmt, "Principal": principal})
    return doc(*out)


def _flip(value: Any, flip: bool) -> Any:
    """One-element list <-> string."""
    if isinstance(value, list) and len(value) == 1 and flip:
        return value[0]
    if isinstance(value, str) and flip:
        return [value]
    return value


@st.composite
def reformatted(draw: st.DrawFn, document: dict[str, Any], *, actions_only_case: bool = True):
    """The same policy written differently: order, Sid, list/string, case, text encoding."""
    statements = list(document["Statement"])
    statements = draw(st.permutations(statements))
    out = []
    for stmt in statements:
        new: dict[str, Any] = {}
        if draw(st.booleans()):
            new["Sid"] = draw(st.sampled_from(["", "A", "Databricks", "x1"]))
        for key, value in stmt.items():
            if key == "Sid":
                continue
            if key in ("Action", "NotAction"):
                values = value if isinstance(value, list) else [value]
                case = draw(st.sampled_from([str.lower, str.upper, lambda s: s]))
                value = _flip([case(v) for v in values], draw(st.booleans()))
            elif key in ("Resource", "NotResource"):
                value = _flip(value, draw(st.booleans()))
            elif key == "Principal" and isinstance(value, dict):
                value = {
                    k: _flip(
                        [v[len("arn:aws:iam::") : -len(":root")] if v.endswith(":root") and draw(st.booleans()) else v
                         for v in (vs if isinstance(vs, list) else [vs])],
                        draw(st.booleans()),
                    )
                    for k, vs in value.items()
                }  # fmt: skip
            elif key == "Condition":
                value = {
                    (op.lower() if draw(st.booleans()) else op): {
                        (k.upper() if draw(st.booleans()) else k): _flip(v, draw(st.booleans()))
                        for k, v in tests.items()
                    }
                    for op, tests in value.items()
                }
            new[key] = value
        out.append(new)
        if draw(st.integers(0, 9)) == 0:
            out.append(dict(new))  # a duplicate statement adds nothing
    result: dict[str, Any] = {"Statement": out if len(out) != 1 or draw(st.booleans()) else out[0]}
    if draw(st.booleans()):
        result = {"Version": "2012-10-17", **result}
    encoding = draw(st.sampled_from(["dict", "compact", "pretty", "url"]))
    if encoding == "compact":
        return json.dumps(result, separators=(",", ":"))
    if encoding == "pretty":
        return json.dumps(result, indent=draw(st.integers(1, 4)))
    if encoding == "url":
        return urllib.parse.quote(json.dumps(result, indent=2))
    return result


TRUST = st.lists(trust_statements(), min_size=1, max_size=4).map(render_trust)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TRUST)
def test_a_trust_policy_never_grants_more_than_itself(policy):
    diff = compare_trust(policy, [policy])
    assert not diff.widened and not diff.expected_principals_removed, diff


@FAST
@given(st.data(), TRUST, TRUST)
def test_reformatting_never_changes_the_trust_verdict(data, actual, expected):
    reference = compare_trust(actual, [expected]).as_dict()
    again = compare_trust(data.draw(reformatted(actual)), [data.draw(reformatted(expected))])
    assert again.as_dict() == reference


@FAST
@given(
    TRUST,
    st.sampled_from(
        [
            "*",
            {"AWS": "*"},
            {"AWS": "999988887777"},
            {"AWS": "arn:aws:iam::999988887777:role/intruder"},
            {"Service": "ssm.amazonaws.com"},
            {"Federated": "accounts.google.com"},
        ]
    ),
    st.booleans(),
)
def test_adding_any_principal_is_detected(policy, principal, with_external_id):
    added = allow(principal, xid("alpha") if with_external_id else None)
    widened = doc(*policy["Statement"], added)
    diff = compare_trust(widened, [policy])
    assert diff.principals_added, diff
    assert not compare_trust(policy, [widened]).widened


@FAST
@given(st.data(), st.lists(trust_statements(external_id=True, deny=False), min_size=1, max_size=3))
def test_dropping_the_external_id_is_always_detected(data, statements):
    policy = render_trust(statements)
    index = data.draw(st.integers(0, len(statements) - 1))
    target = dict(statements[index])
    condition = {op: dict(tests) for op, tests in target["Condition"].items()}
    del condition["StringEquals"]["sts:ExternalId"]
    condition = {op: tests for op, tests in condition.items() if tests}
    target.pop("Condition")
    if condition:
        target["Condition"] = condition
    dropped = render_trust([*statements[:index], target, *statements[index + 1 :]])
    assert compare_trust(dropped, [policy]).external_id_missing


ACTIONS = ["s3:GetObject", "s3:Get*", "s3:*", "ec2:RunInstances", "ec2:Describe*", "sts:AssumeRole"]
RESOURCES = [
    "*",
    BUCKET,
    f"{BUCKET}/*",
    f"{BUCKET}/data/x",
    "arn:aws:ec2:us-east-1:111122223333:instance/*",
]


@st.composite
def permission_statements(draw: st.DrawFn):
    stmt: dict[str, Any] = {"Effect": "Deny" if draw(st.integers(0, 5)) == 0 else "Allow"}
    actions = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3, unique=True))
    stmt["NotAction" if draw(st.integers(0, 6)) == 0 else "Action"] = actions
    resources = draw(st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=2, unique=True))
    stmt["NotResource" if draw(st.integers(0, 6)) == 0 else "Resource"] = resources
    if draw(st.booleans()):
        stmt["Condition"] = {
            "StringEquals": {"aws:RequestTag/Vendor": draw(st.sampled_from(["Databricks", "x"]))}
        }
    return stmt


PERMS = st.lists(permission_statements(), min_size=1, max_size=4).map(lambda s: doc(*s))


@FAST
@given(PERMS)
def test_a_policy_never_grants_more_than_itself(policy):
    diff = compare_permissions(policy, policy)
    assert not diff.widened and not diff.removed, diff


@FAST
@given(st.data(), PERMS, PERMS)
def test_reformatting_never_changes_the_permission_verdict(data, actual, expected):
    reference = compare_permissions(actual, expected).as_dict()
    again = compare_permissions(data.draw(reformatted(actual)), data.draw(reformatted(expected)))
    assert again.as_dict() == reference
    assert grants_admin(data.draw(reformatted(actual))) == grants_admin(actual)


@FAST
@given(PERMS, st.sampled_from(["kms:Decrypt", "iam:PassRole"]))
def test_adding_an_uncovered_action_is_detected(policy, action):
    key_arn = "arn:aws:kms:us-east-1:111122223333:key/k"
    # Only an unconditional NotAction Allow on "*" (or a NotResource) reaches these actions.
    covered = any(
        s["Effect"] == "Allow"
        and "NotAction" in s
        and "Condition" not in s
        and "*"
        in s.get("Resource", []) + [r for r in ["*"] if "*" not in s.get("NotResource", ["*"])]
        for s in policy["Statement"]
    )
    widened = doc(*policy["Statement"], grant(action, key_arn))
    diff = compare_permissions(widened, policy)
    assert diff.widened is not covered
    if not covered:
        assert {"effect": "Allow", "action": action.lower(), "resource": key_arn} in diff.added


def test_condition_operators_are_spelled_as_aws_does_and_junk_is_not_kept():
    """An operator read in any case comes out as the IAM reference spells it
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html);
    the spelling is cached for operator-sized strings only: an event's long junk
    operators are spelled each time and never kept."""
    from trustwatch.aws.policy import conditions

    for _ in range(2):  # computed, then from the cache: the same answer
        assert conditions.canonical_operator("stringlikeifexists") == "StringLikeIfExists"
        assert (
            conditions.canonical_operator(" forallvalues:stringequalsignorecase ")
            == "ForAllValues:StringEqualsIgnoreCase"
        )
    kept = conditions._canonical_operator_cached.cache_info().currsize
    junk = "x" * 10_000 + "IfExists"
    assert conditions.canonical_operator(junk) == "x" * 10_000 + "IfExists"
    assert conditions._canonical_operator_cached.cache_info().currsize == kept
