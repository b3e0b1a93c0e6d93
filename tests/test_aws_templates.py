"""Databricks AWS templates (trustwatch.aws.templates), rendered per partition."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trustwatch.aws.baseline import TemplateRef
from trustwatch.aws.policy import (
    compare_permissions,
    compare_trust,
    grants_admin,
    load_document,
    trust_principals,
)
from trustwatch.aws.templates import (
    DATABRICKS_ACCOUNTS,
    UC_MASTER_ROLES,
    arn_partition,
    crossaccount_policy,
    databricks_principals,
    expected_policy,
    expected_trust,
    is_databricks_principal,
)

PARTITIONS = ["aws", "aws-us-gov", "aws-us-gov-dod"]
ACCOUNT = "111122223333"
ROLE = "uc-access"
DBX_ACCOUNT_ID = "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77"
UC_EXTERNAL_ID = "9d2b6c1e-3f4a-4e8b-a7c5-1b2d3e4f5a6b"
ATTACKER = "arn:aws:iam::193672423079:root"

UC = TemplateRef(template="databricks-unity-catalog", external_id=UC_EXTERNAL_ID)
CROSS = TemplateRef(template="databricks-cross-account")


def render(ref: Any, partition: str) -> list[dict[str, Any]]:
    return expected_trust(
        ref,
        partition=partition,
        account_id=ACCOUNT,
        role_name=ROLE,
        databricks_account_id=DBX_ACCOUNT_ID,
    )


def with_statement(document: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    return {**document, "Statement": [*document["Statement"], statement]}


def actions_of(document: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for stmt in document["Statement"]:
        actions = stmt.get("Action", [])
        out.update([actions] if isinstance(actions, str) else actions)
    return out


# ---------------------------------------------------------------- constants


def test_partitions_and_databricks_principals():
    assert [arn_partition(p) for p in PARTITIONS] == ["aws", "aws-us-gov", "aws-us-gov"]
    with pytest.raises(ValueError, match="unknown AWS partition"):
        arn_partition("aws-cn")
    assert databricks_principals("aws") == {
        "arn:aws:iam::414351767826:root",
        "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL",
    }
    assert databricks_principals("aws-us-gov-dod") == {
        "arn:aws-us-gov:iam::170661010020:root",
        "arn:aws-us-gov:iam::170661010020:role/unity-catalog-prod-UCMasterRole-1DI6DL6ZP26AS",
    }
    everything = databricks_principals()
    assert len(everything) == 6
    assert everything == set().union(*(databricks_principals(p) for p in PARTITIONS))
    for partition, role in UC_MASTER_ROLES.items():
        assert role.startswith(
            f"arn:{arn_partition(partition)}:iam::{DATABRICKS_ACCOUNTS[partition]}:"
        )


def test_is_databricks_principal():
    assert is_databricks_principal("arn:aws:iam::414351767826:role/anything")
    assert is_databricks_principal("arn:aws-us-gov:iam::044793339203:root")
    assert is_databricks_principal("414351767826")
    assert not is_databricks_principal("arn:aws-us-gov:iam::414351767826:root")  # wrong partition
    assert not is_databricks_principal(ATTACKER)
    assert not is_databricks_principal("service:ec2.amazonaws.com")


# ---------------------------------------------------------------- trust templates


@pytest.mark.parametrize("partition", PARTITIONS)
def test_cross_account_trust(partition):
    [document] = render(CROSS, partition)
    [grant] = trust_principals(document)
    arn = arn_partition(partition)
    assert grant.principal == f"arn:{arn}:iam::{DATABRICKS_ACCOUNTS[partition]}:root"
    assert grant.external_ids == frozenset({DBX_ACCOUNT_ID})
    assert grant.actions == frozenset({"sts:assumerole"})
    # the provider's databricks_aws_assume_role_policy output (commercial partition) is accepted
    provider = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::414351767826:root"},
                "Condition": {"StringEquals": {"sts:ExternalId": DBX_ACCOUNT_ID}},
            }
        ],
    }
    assert not compare_trust(provider, render(CROSS, "aws")).widened
    # dropping the ExternalId or adding a principal is caught
    bare = {"Statement": {**document["Statement"][0], "Condition": {}}}
    assert compare_trust(bare, [document]).external_id_missing
    assert compare_trust(
        with_statement(
            document,
            {"Effect": "Allow", "Principal": {"AWS": ATTACKER}, "Action": "sts:AssumeRole"},
        ),
        [document],
    ).principals_added


def test_cross_account_needs_the_databricks_account_id():
    with pytest.raises(ValueError, match=r"databricks\.account_id"):
        expected_trust(
            CROSS, partition="aws", account_id=ACCOUNT, role_name=ROLE, databricks_account_id=None
        )


@pytest.mark.parametrize("partition", PARTITIONS)
def test_unity_catalog_trust_has_two_accepted_shapes(partition):
    shapes = render(UC, partition)
    assert len(shapes) == 2
    arn = arn_partition(partition)
    self_arn = f"arn:{arn}:iam::{ACCOUNT}:role/{ROLE}"
    for shape in shapes:
        grants = trust_principals(shape)
        assert {g.principal for g in grants} == {UC_MASTER_ROLES[partition], self_arn}
        assert {g.external_ids for g in grants} == {frozenset({UC_EXTERNAL_ID})}
        # each shape is accepted against the template (and so against the other shape)
        diff = compare_trust(shape, shapes)
        assert not diff.widened and not diff.expected_principals_removed
        for other in shapes:
            assert not compare_trust(shape, [other]).widened
    shape_a, shape_b = shapes
    assert shape_a["Statement"][1]["Principal"] == {"AWS": f"arn:{arn}:iam::{ACCOUNT}:root"}
    assert shape_a["Statement"][1]["Condition"]["ArnLike"] == {"aws:PrincipalArn": self_arn}
    assert shape_b["Statement"][0]["Principal"] == {"AWS": [UC_MASTER_ROLES[partition], self_arn]}


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("shape_index", [0, 1], ids=["shape-a", "shape-b"])
def test_unity_catalog_third_party_is_detected(partition, shape_index):
    shapes = render(UC, partition)
    shape = shapes[shape_index]
    # a third party next to the expected principals, with the same ExternalId
    stmt = json.loads(json.dumps(shape["Statement"][0]))
    stmt["Principal"] = {"AWS": [UC_MASTER_ROLES[partition], ATTACKER]}
    stmt.pop("Sid", None)
    diff = compare_trust({"Statement": [*shape["Statement"][1:], stmt]}, shapes)
    assert [p["principal"] for p in diff.principals_added] == [ATTACKER]
    # the whole account instead of the role itself (the PrincipalArn narrowing dropped)
    widened = compare_trust(
        with_statement(
            shape,
            {
                "Effect": "Allow",
                "Principal": {"AWS": ACCOUNT},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": UC_EXTERNAL_ID}},
            },
        ),
        shapes,
    )
    assert [p["principal"] for p in widened.principals_added] == [
        f"arn:{arn_partition(partition)}:iam::{ACCOUNT}:root"
    ]


def test_unity_catalog_variants():
    shapes = render(UC, "aws")
    master = UC_MASTER_ROLES["aws"]
    condition = {"StringEquals": {"sts:ExternalId": UC_EXTERNAL_ID}}
    # the pre-2025 trust (no self-assume) is stricter: breakage only
    legacy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": master},
                "Action": "sts:AssumeRole",
                "Condition": condition,
            }
        ]
    }
    diff = compare_trust(legacy, shapes)
    assert not diff.widened
    assert [p["principal"] for p in diff.expected_principals_removed] == [
        f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
    ]
    # an older provider emitted the self statement without the ExternalId: flagged
    older = json.loads(json.dumps(shapes[0]))
    del older["Statement"][1]["Condition"]["StringEquals"]
    missing = compare_trust(older, shapes).external_id_missing
    assert [m["principal"] for m in missing] == [f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"]
    # a changed ExternalId is weakened, not accepted
    changed = json.loads(json.dumps(shapes[1]).replace(UC_EXTERNAL_ID, "other"))
    assert compare_trust(changed, shapes).condition_weakened


@pytest.mark.parametrize("partition", PARTITIONS)
def test_ec2_trust(partition):
    [document] = render(TemplateRef(template="ec2"), partition)
    [grant] = trust_principals(document)
    assert grant.principal == "service:ec2.amazonaws.com" and grant.external_ids is None
    assert not compare_trust(
        {
            "Statement": {
                "Effect": "Allow",
                "Principal": {"Service": ["ec2.amazonaws.com"]},
                "Action": ["sts:AssumeRole"],
            }
        },
        [document],
    ).widened
    lambda_too = with_statement(
        document,
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        },
    )
    assert compare_trust(lambda_too, [document]).principals_added


def test_literal_and_dict_refs():
    literal = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ATTACKER}, "Action": "sts:AssumeRole"}
        ],
    }
    assert render(literal, "aws") == [literal]
    assert render({"template": "ec2"}, "aws") == render(TemplateRef(template="ec2"), "aws")
    with pytest.raises(ValueError, match="needs 'external_id'"):
        render({"template": "databricks-unity-catalog"}, "aws")
    with pytest.raises(ValueError, match="not a trust template"):
        render({"template": "databricks-crossaccount-policy"}, "aws")
    with pytest.raises(ValueError, match="not a policy template"):
        expected_policy(UC, partition="aws", account_id=ACCOUNT)
    assert expected_policy(literal, partition="aws", account_id=ACCOUNT) == literal


# ---------------------------------------------------------------- cross-account policy

SPOT_SLR = {
    "Effect": "Allow",
    "Action": ["iam:CreateServiceLinkedRole", "iam:PutRolePolicy"],
    "Resource": "arn:aws:iam::*:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
    "Condition": {"StringLike": {"iam:AWSServiceName": "spot.amazonaws.com"}},
}
VPC_CREATION = {
    "ec2:CreateVpc",
    "ec2:DeleteVpc",
    "ec2:CreateSubnet",
    "ec2:CreateInternetGateway",
    "ec2:CreateNatGateway",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateVpcEndpoint",
    "ec2:AllocateAddress",
    "ec2:ModifyVpcAttribute",
}


def policy(policy_type: str | None = None, partition: str = "aws", **kwargs: Any) -> dict[str, Any]:
    ref = TemplateRef(template="databricks-crossaccount-policy", policy_type=policy_type)
    return expected_policy(ref, partition=partition, account_id=ACCOUNT, **kwargs)


def test_managed_policy_is_the_default_and_has_the_key_actions():
    managed = policy()
    assert managed == policy("managed")
    actions = actions_of(managed)
    assert {
        "ec2:RunInstances",
        "ec2:CreateVpc",
        "ec2:TerminateInstances",
        "ec2:CreateFleet",
    } <= actions
    assert actions >= VPC_CREATION
    assert managed["Statement"][1] == SPOT_SLR
    assert len(managed["Statement"]) == 2
    assert not grants_admin(managed)


def test_customer_policy_has_no_vpc_creation():
    customer = policy("customer")
    actions = actions_of(customer)
    assert "ec2:RunInstances" in actions and "ec2:AuthorizeSecurityGroupIngress" in actions
    assert not actions & VPC_CREATION
    assert customer["Statement"][1] == SPOT_SLR
    # customer is inside managed; managed exceeds customer by exactly the VPC actions
    assert not compare_permissions(customer, policy("managed")).widened
    added = {a["action"] for a in compare_permissions(policy("managed"), customer).added}
    assert added == {a.lower() for a in actions_of(policy("managed")) - actions}
    assert {a.lower() for a in VPC_CREATION} <= added


def test_restricted_policy_scopes_instances():
    restricted = policy("restricted", region="us-west-2")
    first = restricted["Statement"][0]
    assert "ec2:RunInstances" not in first["Action"] and "ec2:CreateVpc" not in first["Action"]
    sids = [s.get("Sid") for s in restricted["Statement"][2:]]
    assert "AllowEc2RunInstancePerVPCid" in sids and "VpcNonresourceSpecificActions" in sids
    per_vpc = next(
        s for s in restricted["Statement"] if s.get("Sid") == "AllowEc2RunInstancePerVPCid"
    )
    # no VPC id in the baseline: a pattern, tested with StringLike
    assert per_vpc["Condition"] == {
        "StringLike": {"ec2:vpc": f"arn:aws:ec2:us-west-2:{ACCOUNT}:vpc/*"}
    }
    # a concrete restricted policy (as the provider renders it for a real VPC) is inside it
    concrete = policy(
        "restricted", region="us-west-2", vpc_id="vpc-0abc", security_group_id="sg-0abc"
    )
    assert not compare_permissions(concrete, restricted).widened
    assert compare_permissions(policy("customer"), restricted).widened
    no_region = policy("restricted")
    assert "arn:aws:ec2:*:111122223333:instance/*" in json.dumps(no_region)


@pytest.mark.parametrize("partition", PARTITIONS)
def test_policies_render_per_partition(partition):
    arn = arn_partition(partition)
    for policy_type in ("managed", "customer", "restricted"):
        document = policy(policy_type, partition=partition, region="us-gov-west-1")
        load_document(document)
        assert document["Statement"][1]["Resource"].startswith(
            f"arn:{arn}:iam::*:role/aws-service-role/"
        )
        assert not compare_permissions(document, document).widened
    assert f"arn:{arn}:ec2:us-gov-west-1:{ACCOUNT}:instance/*" in json.dumps(
        policy("restricted", partition=partition, region="us-gov-west-1")
    )


@pytest.mark.parametrize(
    ("kwargs", "length"),
    [
        ({"policy_type": "managed"}, 3171),
        ({"policy_type": "customer"}, 2328),
        ({"policy_type": "managed", "pass_roles": ["a", "b", "c"]}, 3307),
        (
            {"policy_type": "restricted", "account_id": "123456789012", "vpc_id": "vpc-12345678",
             "region": "us-west-2", "security_group_id": "sg-12345678"},
            5725,
        ),
        (
            {"policy_type": "restricted", "partition": "aws-us-gov", "account_id": "123456789012",
             "vpc_id": "vpc-12345678", "region": "us-gov-west-1", "security_group_id": "sg-12345678"},
            5963,
        ),
        (
            {"policy_type": "restricted", "partition": "aws-us-gov-dod", "account_id": "123456789012",
             "vpc_id": "vpc-12345678", "region": "us-gov-west-1", "security_group_id": "sg-12345678"},
            5963,
        ),
    ],
)  # fmt: skip
def test_same_json_as_the_terraform_provider(kwargs, length):
    """The provider's own tests pin the length of json.MarshalIndent(policy, "", "  ")."""
    assert len(json.dumps(crossaccount_policy(**kwargs), indent=2)) == length


def test_pass_roles_statement():
    with_roles = policy("customer", pass_roles=["arn:aws:iam::111122223333:role/cluster"])
    assert with_roles["Statement"][2] == {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": ["arn:aws:iam::111122223333:role/cluster"],
    }
    assert compare_permissions(with_roles, policy("customer")).added == [
        {
            "effect": "Allow",
            "action": "iam:passrole",
            "resource": "arn:aws:iam::111122223333:role/cluster",
        }
    ]
    with pytest.raises(ValueError, match="policy_type"):
        crossaccount_policy("everything")


def test_example_baseline_renders(baseline):
    for account_id, account in baseline.aws.accounts.items():
        for name, role in account.roles.items():
            if role.trust is not None:
                for document in expected_trust(
                    role.trust,
                    partition=baseline.aws.partition,
                    account_id=account_id,
                    role_name=name,
                    databricks_account_id=baseline.databricks.account_id,
                ):
                    assert trust_principals(document)
            for spec in role.inline_policies.values():
                document = expected_policy(
                    spec, partition=baseline.aws.partition, account_id=account_id
                )
                assert not compare_permissions(document, document).widened
