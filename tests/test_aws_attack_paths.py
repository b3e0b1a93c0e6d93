"""Issue 11 (AWS): attack paths that used to raise no finding, and their near-misses.

Each category has cases that must fire and cases that must stay quiet (equivalent,
stricter, failed, unrelated), checked in every delivery shape: the bare CloudTrail record,
its EventBridge envelope and a CloudTrail log file {"Records": [...]}.
"""

from __future__ import annotations

import itertools
import json

import pytest
from awsevents import (
    ACCOUNT,
    ALICE,
    ATTACKER_ROOT,
    CROSS_ACCOUNT_TRUST,
    DATABRICKS,
    DBX_EXTERNAL_ID,
    RESPONDER,
    UC_EXTERNAL_ID,
    UC_MASTER,
    allow,
    external_id,
    findings,
    fired,
    iam_call,
    load,
    session,
    trust,
)
from conftest import DATA, EXAMPLE_BASELINE
from trustwatch.aws import policy as aws_policy
from trustwatch.aws.templates import POLICY_TYPES, crossaccount_policy
from trustwatch.baseline import BaselineError, parse_baseline

XACCT = "databricks-cross-account"
UC = "databricks-uc-metastore"
CLUSTER = "databricks-cluster-data"
UC_ARN = f"arn:aws:iam::{ACCOUNT}:role/{UC}"
XACCT_ARN = f"arn:aws:iam::{ACCOUNT}:role/{XACCT}"
CLUSTER_ARN = f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}"
RESPONDER_ARN = f"arn:aws:iam::{ACCOUNT}:role/trustwatch-responder"
ATTACKER_ACCOUNT = ATTACKER_ROOT.split(":")[4]
DBX_ROOT = f"arn:aws:iam::{DATABRICKS}:root"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/databricks-boundary"

# IAM: names of roles, instance profiles and policies "are not distinguished by case"
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
QUOTAS_DOC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"


def rules(record, baseline) -> list[str]:
    return [r for r, _ in fired(record, baseline)]


def update_trust(role: str, doc: dict, actor=None) -> dict:
    return iam_call(
        "UpdateAssumeRolePolicy", {"roleName": role, "policyDocument": json.dumps(doc)}, actor
    )


def create_role(role: str, doc: dict) -> dict:
    return iam_call("CreateRole", {"roleName": role, "assumeRolePolicyDocument": json.dumps(doc)})


def failed(record: dict) -> dict:
    return record | {"errorCode": "AccessDenied", "errorMessage": "not authorized"}


# ---------------------------------------------------------------- names are case-insensitive

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
BACKDOOR_TRUST = trust(*CROSS_ACCOUNT_TRUST["Statement"], allow({"AWS": ATTACKER_ROOT}))


def _attach(role: str, arn: str) -> dict:
    return iam_call("AttachRolePolicy", {"roleName": role, "policyArn": arn})


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda n: update_trust(n(XACCT), BACKDOOR_TRUST), ["aws.trust.principal_added"]),
        (lambda n: _attach(n(CLUSTER), ADMIN), ["aws.policy.managed_attached"]),
        (lambda n: iam_call("DeleteRole", {"roleName": n(UC)}), ["aws.role.deleted"]),
        (
            lambda n: iam_call(
                "AddRoleToInstanceProfile", {"instanceProfileName": n(CLUSTER), "roleName": "admin"}
            ),
            ["aws.instance_profile.changed"],
        ),
        (
            lambda n: iam_call(
                "DetachRolePolicy",
                {"roleName": n(UC), "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/{n(UC)}-access"},
            ),
            ["aws.policy.managed_detached"],
        ),
        # a baseline role re-created: judged as that role, not as an untracked one
        (
            lambda n: create_role(n(XACCT), trust(allow({"AWS": DBX_ROOT}))),
            ["aws.trust.external_id_missing"],
        ),
    ],
)
@pytest.mark.parametrize("spelling", [str, str.upper, str.title])
def test_other_case_fires_like_the_exact_case(make, expected, spelling, baseline):
    """Role and instance-profile names differ by case only in spelling (QUOTAS_DOC)."""
    assert rules(make(spelling), baseline) == expected


@pytest.mark.parametrize(
    "record",
    [
        # the expected policy re-attached, its name in another case
        _attach(CLUSTER.upper(), f"arn:aws:iam::{ACCOUNT}:policy/Databricks-Cluster-Data-Read"),
        # the expected role put back into its profile, both names in another case
        iam_call(
            "AddRoleToInstanceProfile",
            {"instanceProfileName": CLUSTER.upper(), "roleName": CLUSTER.title()},
        ),
        # UC trust naming the role itself in another case than the call does
        update_trust(
            UC.upper(),
            trust(
                allow(
                    {"AWS": [UC_MASTER, UC_ARN.replace(UC, UC.title())]},
                    external_id(UC_EXTERNAL_ID),
                )
            ),
        ),
        # the baseline cross-account trust, written to the role in upper case
        update_trust(XACCT.upper(), CROSS_ACCOUNT_TRUST),
    ],
)
def test_other_case_equivalent_stays_quiet(record, baseline):
    assert rules(record, baseline) == []


def test_truly_different_role_stays_untracked(baseline):
    # one character more is another role: it trusts Databricks' root, so it is reported as
    # an untracked role, not as the baseline one
    assert rules(update_trust(XACCT + "-2", BACKDOOR_TRUST), baseline) == [
        "aws.role.untracked_trusts_databricks"
    ]
    assert rules(update_trust(XACCT + "-2", trust(allow({"AWS": ATTACKER_ROOT}))), baseline) == []
    assert rules(_attach(CLUSTER + "x", ADMIN), baseline) == []


def test_baseline_roles_differing_only_by_case_are_an_error():
    text = EXAMPLE_BASELINE.read_text()
    doubled = text.replace(
        "        databricks-cluster-data:\n          trust:",
        "        DATABRICKS-CLUSTER-DATA:\n          trust:\n            template: ec2\n"
        "        databricks-cluster-data:\n          trust:",
    )
    assert doubled != text
    with pytest.raises(BaselineError, match="differ only by case"):
        parse_baseline(doubled)
    # an instance profile may name its role in any case
    parse_baseline(text.replace("role: databricks-cluster-data", "role: Databricks-Cluster-Data"))


def test_arn_keys_keep_documented_case_rules():
    """The name part compares case-insensitively; account, partition and path keep case."""
    key = aws_policy.iam_arn_key
    assert key("arn:aws:iam::111122223333:role/CI/DBX-XACCT") == key(
        "arn:aws:iam::111122223333:role/CI/dbx-xacct"
    )
    assert key("arn:aws:iam::111122223333:role/CI/x") != key("arn:aws:iam::111122223333:role/ci/x")
    assert key("arn:aws:s3:::Bucket") == "arn:aws:s3:::Bucket"  # not an IAM name
    covers = aws_policy.principal_covers
    assert covers(f"arn:aws:iam::{ACCOUNT}:role/X", f"arn:aws:iam::{ACCOUNT}:role/x")
    assert covers(f"arn:aws:iam::{ACCOUNT}:role/X", f"arn:aws:sts::{ACCOUNT}:assumed-role/x/s")
    assert not covers(f"arn:aws:iam::{ACCOUNT}:role/X", "arn:aws:iam::444455556666:role/x")


# ---------------------------------------------------------------- permission boundaries


@pytest.fixture
def bounded():
    """The example baseline with a customer managed policy as the cluster role's boundary."""
    text = EXAMPLE_BASELINE.read_text().replace(
        "            - arn:aws:iam::111122223333:policy/databricks-cluster-data-read\n",
        "            - arn:aws:iam::111122223333:policy/databricks-cluster-data-read\n"
        f"          permissions_boundary: {BOUNDARY}\n",
    )
    loaded = parse_baseline(text)
    assert loaded.aws.accounts[ACCOUNT].roles[CLUSTER].permissions_boundary == BOUNDARY
    return loaded


def _new_version(arn: str, document: dict, default: bool) -> dict:
    return iam_call(
        "CreatePolicyVersion",
        {"policyArn": arn, "policyDocument": json.dumps(document), "setAsDefault": default},
        responseElements={"policyVersion": {"versionId": "v2", "isDefaultVersion": default}},
    )


WIDE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def test_boundary_policy_new_default_version_fires(bounded):
    """CreatePolicyVersion (setAsDefault) / SetDefaultPolicyVersion on the boundary policy:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html"""
    created = _new_version(BOUNDARY, WIDE, True)
    assert fired(created, bounded) == [("aws.policy.version_changed", "high")]
    (finding,) = findings(created, bounded)
    assert "permissions boundary" in finding.summary
    switched = iam_call("SetDefaultPolicyVersion", {"policyArn": BOUNDARY, "versionId": "v1"})
    assert rules(switched, bounded) == ["aws.policy.version_changed"]
    # the policy name in another case is the same policy (QUOTAS_DOC)
    other_case = BOUNDARY.replace("databricks-boundary", "Databricks-Boundary")
    assert rules(_new_version(other_case, WIDE, True), bounded) == ["aws.policy.version_changed"]


def test_boundary_policy_quiet_cases(bounded, baseline):
    assert rules(_new_version(BOUNDARY, WIDE, False), bounded) == []  # not the default
    assert rules(failed(_new_version(BOUNDARY, WIDE, True)), bounded) == []  # failed
    unrelated = f"arn:aws:iam::{ACCOUNT}:policy/databricks-boundary-2"
    assert rules(_new_version(unrelated, WIDE, True), bounded) == []  # another policy
    assert rules(_new_version(BOUNDARY, WIDE, True), baseline) == []  # no boundary in baseline


def _boundary_calls(boundary: str) -> list[dict]:
    put = {"roleName": CLUSTER, "permissionsBoundary": boundary}
    create = {"roleName": CLUSTER, "assumeRolePolicyDocument": json.dumps(trust(allow("*")))}
    return [
        iam_call("PutRolePermissionsBoundary", put),
        iam_call("CreateRole", create | ({"permissionsBoundary": boundary} if boundary else {})),
    ]


def test_boundary_removed_or_changed_on_a_bounded_role_fires(bounded):
    removed = iam_call("DeleteRolePermissionsBoundary", {"roleName": CLUSTER.upper()})
    (finding,) = findings(removed, bounded)
    assert finding.rule == "aws.role.boundary_removed"
    assert finding.actual == {"permissions_boundary": None}
    assert finding.summary == f"Permissions boundary of role {CLUSTER.upper()} removed"
    other = f"arn:aws:iam::{ACCOUNT}:policy/open-boundary"
    for record in _boundary_calls(other):
        hits = [f for f in findings(record, bounded) if f.rule == "aws.role.boundary_removed"]
        assert [f.actual for f in hits] == [{"permissions_boundary": other}], record["eventName"]
        assert hits[0].remediation.action == "restore_permissions_boundary"
    # re-created without a boundary: the boundary is gone
    (created,) = [f for f in findings(_boundary_calls("")[1], bounded) if "boundary" in f.rule]
    assert created.actual == {"permissions_boundary": None}


def test_boundary_kept_or_role_unbounded_stays_quiet(bounded, baseline):
    same_in_other_case = BOUNDARY.replace("databricks-boundary", "Databricks-Boundary")
    for record in _boundary_calls(BOUNDARY) + _boundary_calls(same_in_other_case):
        assert "aws.role.boundary_removed" not in rules(record, bounded), record["eventName"]
    removed = iam_call("DeleteRolePermissionsBoundary", {"roleName": CLUSTER})
    assert rules(removed, baseline) == []  # the baseline sets no boundary on the role
    assert rules(failed(removed), bounded) == []


# ---------------------------------------------------------------- untracked roles


@pytest.mark.parametrize(
    ("doc", "severity"),
    [
        (trust(allow({"AWS": "*"})), "critical"),
        (trust(allow("*")), "critical"),
        (trust(allow({"AWS": "*"}, external_id("anything"))), "critical"),
        # a principal pattern that includes Databricks' account
        (
            trust(allow("*", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::41435176*:root"}})),
            "critical",
        ),
        # a pattern that is not a whole ARN still matches every principal ARN
        (trust(allow("*", {"StringLike": {"aws:PrincipalArn": "arn:*"}})), "critical"),
        # "*" narrowed to Databricks' account, with an ExternalId: the exact-principal case
        (
            trust(
                allow(
                    "*",
                    {
                        "StringEquals": {
                            "aws:PrincipalAccount": DATABRICKS,
                            "sts:ExternalId": "x",
                        }
                    },
                )
            ),
            "high",
        ),
    ],
)
@pytest.mark.parametrize("call", ["CreateRole", "UpdateAssumeRolePolicy"])
def test_untracked_role_trusting_everyone_counts_as_trusting_databricks(
    doc, severity, call, baseline
):
    """Principal "*" / {"AWS": "*"} is everyone, Databricks included:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-anonymous"""
    record = create_role("shadow", doc) if call == "CreateRole" else update_trust("shadow", doc)
    assert fired(record, baseline) == [("aws.role.untracked_trusts_databricks", severity)]


@pytest.mark.parametrize(
    "doc",
    [
        # conditions provably exclude Databricks: another account, another account's role
        trust(allow("*", {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})),
        trust(
            allow({"AWS": "*"}, {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/*"}})
        ),
        trust(allow({"AWS": ATTACKER_ROOT})),
        trust(allow({"Service": "lambda.amazonaws.com"})),
    ],
)
def test_untracked_role_that_excludes_databricks_stays_quiet(doc, baseline):
    assert rules(create_role("shadow", doc), baseline) == []


def test_untracked_wildcard_trust_failed_or_ignored_stays_quiet(baseline):
    assert rules(failed(create_role("shadow", trust(allow("*")))), baseline) == []
    text = EXAMPLE_BASELINE.read_text().replace("untracked_roles: alert", "untracked_roles: ignore")
    assert rules(create_role("shadow", trust(allow("*"))), parse_baseline(text)) == []


# ---------------------------------------------------------------- backdoors in use

CLOUDTRAIL_STS_DOC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html"


def assume(
    role_arn: str,
    identity: dict,
    *,
    name: str = "AssumeRole",
    params: dict | None = None,
    error: str | None = None,
) -> dict:
    """A successful (or failed) STS call into role_arn, shaped as CLOUDTRAIL_STS_DOC shows."""
    record = load("cloudtrail-assumerole-crossaccount-caller-awsdocs")
    record.update(
        eventName=name,
        requestParameters={"roleArn": role_arn, "roleSessionName": "s", **(params or {})},
        recipientAccountId=ACCOUNT,
        userIdentity=identity,
    )
    if error:
        record.update(errorCode=error, errorMessage="not authorized", responseElements=None)
    return record


def account_caller(account: str) -> dict:
    return {"type": "AWSAccount", "principalId": "AIDAEXAMPLE", "accountId": account}


def service_caller(service: str) -> dict:
    return {"type": "AWSService", "invokedBy": service}


SAML = {
    "type": "SAMLUser",
    "principalId": "SampleUkh1i4+ExamplexL/jEvs=:SamlExample",
    "userName": "SamlExample",
    "identityProvider": "bdGOnTesti4+ExamplexL/jEvs=",
}
WEB = {
    "type": "WebIdentityUser",
    "principalId": "accounts.google.com:app.apps.googleusercontent.com:user",
    "userName": "user",
    "identityProvider": "accounts.google.com",
}
SAML_PROVIDER = f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta"
UNEXPECTED = ("aws.assume_role.unexpected_principal", "critical")


@pytest.mark.parametrize(
    "record",
    [
        # another account, with the right ExternalId (it leaked): the trust was widened
        assume(XACCT_ARN, account_caller(ATTACKER_ACCOUNT), params={"externalId": DBX_EXTERNAL_ID}),
        # cross-account caller logged with its ARN (userIdentity.accountId differs)
        assume(
            XACCT_ARN,
            session("admin", "x", account=ATTACKER_ACCOUNT),
            params={"externalId": DBX_EXTERNAL_ID},
        ),
        assume(UC_ARN, ALICE, params={"externalId": UC_EXTERNAL_ID}),  # a user of the account
        assume(CLUSTER_ARN, service_caller("lambda.amazonaws.com")),  # not ec2
        assume(CLUSTER_ARN, account_caller(DATABRICKS)),  # Databricks on an ec2-only role
        assume(
            XACCT_ARN,
            SAML,
            name="AssumeRoleWithSAML",
            params={"principalArn": SAML_PROVIDER, "sAMLAssertionID": "_c0046c"},
        ),
        assume(UC_ARN, WEB, name="AssumeRoleWithWebIdentity"),
        assume(f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER.upper()}", ALICE),  # name case
    ],
)
def test_successful_assume_by_unexpected_principal_fires(record, baseline):
    assert fired(record, baseline) == [UNEXPECTED]


@pytest.mark.parametrize(
    "record",
    [
        # Databricks' own account with the right ExternalId (CLOUDTRAIL_STS_DOC's
        # cross-account shape: only the account is logged)
        assume(XACCT_ARN, account_caller(DATABRICKS), params={"externalId": DBX_EXTERNAL_ID}),
        assume(UC_ARN, account_caller(DATABRICKS), params={"externalId": UC_EXTERNAL_ID}),
        # the UC master role's session, and the UC role assuming itself (self-assume)
        assume(
            UC_ARN,
            session(UC_MASTER.rsplit("/", 1)[-1], "uc", account=DATABRICKS),
            params={"externalId": UC_EXTERNAL_ID},
        ),
        assume(UC_ARN, session(UC, "self"), params={"externalId": UC_EXTERNAL_ID}),
        assume(UC_ARN, session(UC.upper(), "self"), params={"externalId": UC_EXTERNAL_ID}),
        # EC2 assuming the instance profile role
        assume(CLUSTER_ARN, service_caller("ec2.amazonaws.com")),
        # an unwatched role
        assume(f"arn:aws:iam::{ACCOUNT}:role/app", account_caller(ATTACKER_ACCOUNT)),
    ],
)
def test_expected_assume_stays_quiet(record, baseline):
    assert fired(record, baseline) == []


def test_failed_assume_stays_with_external_id_rule(baseline):
    wrong = assume(
        XACCT_ARN,
        account_caller(ATTACKER_ACCOUNT),
        params={"externalId": "guess"},
        error="AccessDenied",
    )
    assert rules(wrong, baseline) == ["aws.assume_role.external_id_mismatch"]
    right = assume(
        XACCT_ARN,
        account_caller(ATTACKER_ACCOUNT),
        params={"externalId": DBX_EXTERNAL_ID},
        error="AccessDenied",
    )
    assert rules(right, baseline) == []
    saml = assume(
        XACCT_ARN,
        SAML,
        name="AssumeRoleWithSAML",
        params={"principalArn": SAML_PROVIDER},
        error="AccessDenied",
    )
    assert rules(saml, baseline) == []


def test_federated_callers_allowed_by_a_literal_trust(baseline):
    text = EXAMPLE_BASELINE.read_text().replace(
        "        databricks-cluster-data:\n          trust:\n            template: ec2\n",
        "        databricks-cluster-data:\n          trust:\n"
        "            Statement:\n"
        "              - {Effect: Allow, Action: sts:AssumeRoleWithSAML,"
        f" Principal: {{Federated: '{SAML_PROVIDER}'}}}}\n"
        "              - {Effect: Allow, Action: sts:AssumeRoleWithWebIdentity,"
        " Principal: {Federated: accounts.google.com}}\n",
    )
    literal = parse_baseline(text)
    saml = assume(
        CLUSTER_ARN, SAML, name="AssumeRoleWithSAML", params={"principalArn": SAML_PROVIDER}
    )
    web = assume(CLUSTER_ARN, WEB, name="AssumeRoleWithWebIdentity")
    assert fired(saml, literal) == [] and fired(web, literal) == []
    other = assume(
        CLUSTER_ARN,
        SAML,
        name="AssumeRoleWithSAML",
        params={"principalArn": f"arn:aws:iam::{ACCOUNT}:saml-provider/Other"},
    )
    assert fired(other, literal) == [UNEXPECTED]
    # the SAML provider may not AssumeRole (another action) with the same trust
    assert fired(assume(CLUSTER_ARN, service_caller("ec2.amazonaws.com")), literal) == [UNEXPECTED]


# ---------------------------------------------------------------- conditions combine

LOGIC_DOC = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
    "reference_policies_condition-logic-multiple-context-keys-or-values.html"
)
EVALUATION_DOC = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html"
)


def uc_self_statement(arn_pattern: str, account: str = ACCOUNT) -> dict:
    return allow(
        "*",
        {
            "StringEquals": {"aws:PrincipalAccount": account, "sts:ExternalId": UC_EXTERNAL_ID},
            "ArnLike": {"aws:PrincipalArn": arn_pattern},
        },
    )


@pytest.mark.parametrize(
    "doc",
    [
        # "*" + aws:PrincipalAccount + ArnLike aws:PrincipalArn == the role itself (LOGIC_DOC:
        # all conditions of a statement must hold)
        trust(allow({"AWS": UC_MASTER}, external_id(UC_EXTERNAL_ID)), uc_self_statement(UC_ARN)),
        # an ArnLike over any account's role of that name, ANDed with the account: still itself
        trust(
            allow({"AWS": UC_MASTER}, external_id(UC_EXTERNAL_ID)),
            uc_self_statement(f"arn:aws:iam::*:role/{UC}"),
        ),
    ],
)
def test_anded_conditions_equivalent_stays_quiet(doc, baseline):
    assert rules(update_trust(UC, doc), baseline) == []


def test_anded_conditions_wider_fires(baseline):
    wider = trust(
        allow({"AWS": UC_MASTER}, external_id(UC_EXTERNAL_ID)),
        uc_self_statement(f"arn:aws:iam::{ACCOUNT}:role/*"),
    )
    assert rules(update_trust(UC, wider), baseline) == ["aws.trust.principal_added"]
    other_account = trust(
        allow({"AWS": UC_MASTER}, external_id(UC_EXTERNAL_ID)),
        uc_self_statement("arn:aws:iam::*:role/*", account=ATTACKER_ACCOUNT),
    )
    # the attacker's roles instead of the role itself: added, and self-assume lost
    assert rules(update_trust(UC, other_account), baseline) == [
        "aws.trust.expected_principal_removed",
        "aws.trust.principal_added",
    ]


def _deny_unless(condition: dict) -> dict:
    return {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole", "Condition": condition}


def test_deny_that_excludes_everyone_but_databricks_is_credited(baseline):
    """An explicit Deny overrides an Allow (EVALUATION_DOC): Allow "*" + Deny unless the
    caller's account is Databricks' == Allow Databricks' root."""
    doc = trust(
        allow("*", external_id(DBX_EXTERNAL_ID)),
        _deny_unless({"StringNotEquals": {"aws:PrincipalAccount": DATABRICKS}}),
    )
    assert rules(update_trust(XACCT, doc), baseline) == []
    by_arn = trust(
        allow({"AWS": "*"}, external_id(DBX_EXTERNAL_ID)),
        _deny_unless({"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{DATABRICKS}:*"}}),
    )
    assert rules(update_trust(XACCT, by_arn), baseline) == []


def test_deny_that_is_not_provable_stays_conservative(baseline):
    # excludes everyone but the attacker: Databricks lost, the attacker added
    attacker_only = trust(
        allow("*", external_id(DBX_EXTERNAL_ID)),
        _deny_unless({"StringNotEquals": {"aws:PrincipalAccount": ATTACKER_ACCOUNT}}),
    )
    assert rules(update_trust(XACCT, attacker_only), baseline) == [
        "aws.trust.expected_principal_removed",
        "aws.trust.principal_added",
    ]
    # a second condition makes the Deny apply less often: not credited
    two_conditions = trust(
        allow("*", external_id(DBX_EXTERNAL_ID)),
        _deny_unless(
            {
                "StringNotEquals": {"aws:PrincipalAccount": DATABRICKS},
                "Bool": {"aws:SecureTransport": "true"},
            }
        ),
    )
    assert rules(update_trust(XACCT, two_conditions), baseline) == ["aws.trust.principal_added"]
    # a Deny on another action does not narrow sts:AssumeRole
    other_action = trust(
        allow("*", external_id(DBX_EXTERNAL_ID)),
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sts:TagSession",
            "Condition": {"StringNotEquals": {"aws:PrincipalAccount": DATABRICKS}},
        },
    )
    assert rules(update_trust(XACCT, other_action), baseline) == ["aws.trust.principal_added"]


def test_conditions_combine_in_the_policy_comparison():
    expected = [trust(allow({"AWS": f"arn:aws:iam::{ACCOUNT}:role/x"}))]
    both = trust(
        allow(
            "*",
            {
                "StringEquals": {"aws:PrincipalAccount": ACCOUNT},
                "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"},
            },
        )
    )
    assert not aws_policy.compare_trust(both, expected).widened
    for alone in (
        trust(allow("*", {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})),
        trust(allow("*", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"}})),
    ):
        assert aws_policy.compare_trust(alone, expected).principals_added
    # disjoint conditions admit no one
    never = trust(
        allow(
            "*",
            {
                "StringEquals": {"aws:PrincipalAccount": ACCOUNT},
                "ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::444455556666:role/x"},
            },
        )
    )
    assert aws_policy.trust_principals(never) == []


# ---------------------------------------------------------------- the provider's own output

# The provider's own restricted document: the expectedJSON of
# TestDataAwsCrossAccountRestrictedPolicyRoles in databricks/terraform-provider-databricks
# aws/data_aws_crossaccount_policy_test.go @ 684f4424982431d3433e5c23353c6b208b263e75
# (region us-west-2, vpc-abcdefg12345, sg-12345678), transcribed in tests/data/aws.
PROVIDER_PARAMS = {
    "region": "us-west-2",
    "vpc_id": "vpc-abcdefg12345",
    "security_group_id": "sg-12345678",
}


def provider_restricted() -> dict:
    """The provider's document, for this test account (its own is 123456789012)."""
    text = (
        DATA / "aws" / "policies" / "terraform-provider-crossaccount-restricted.json"
    ).read_text()
    assert json.dumps(
        crossaccount_policy("restricted", account_id="123456789012", **PROVIDER_PARAMS), indent=2
    ) == text.rstrip("\n")  # fmt: skip
    return json.loads(text.replace("123456789012", ACCOUNT))


def restricted_baseline(**params: str):
    extra = "".join(f"\n              {k}: {v}" for k, v in params.items())
    return parse_baseline(
        EXAMPLE_BASELINE.read_text().replace(
            "policy_type: customer", "policy_type: restricted" + extra
        )
    )


def put_inline(document: dict) -> dict:
    return iam_call(
        "PutRolePolicy",
        {
            "roleName": XACCT,
            "policyName": "databricks-cross-account-policy",
            "policyDocument": json.dumps(document, indent=2),
        },
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"region": "us-west-2"}, PROVIDER_PARAMS],
    ids=["no parameters", "region only", "all parameters"],
)
def test_terraform_apply_of_the_restricted_policy_is_quiet(params):
    assert rules(put_inline(provider_restricted()), restricted_baseline(**params)) == []


def test_restricted_policy_outside_the_given_parameters_fires():
    other_region = crossaccount_policy(
        "restricted", account_id=ACCOUNT, **(PROVIDER_PARAMS | {"region": "eu-west-1"})
    )
    assert rules(put_inline(other_region), restricted_baseline(**PROVIDER_PARAMS)) == [
        "aws.policy.inline_changed"
    ]
    assert rules(put_inline(other_region), restricted_baseline()) == []


def test_template_parameters_are_checked():
    with pytest.raises(BaselineError, match="vpc_id must begin with 'vpc-'"):
        restricted_baseline(vpc_id="0abc12345678")
    with pytest.raises(BaselineError, match="takes no region"):
        parse_baseline(
            EXAMPLE_BASELINE.read_text().replace(
                "template: ec2", "template: ec2\n            region: us-east-1"
            )
        )


OPTIONAL = {"region": "us-gov-west-1", "vpc_id": "vpc-0abc", "security_group_id": "sg-0abc"}


@pytest.mark.parametrize("partition", ["aws", "aws-us-gov", "aws-us-gov-dod"])
@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_a_missing_parameter_only_widens(policy_type, partition):
    """Exhaustive over parameter subsets: the template rendered with a parameter absent
    grants at least what it grants with the parameter given (the project's own comparison).

    pass_roles and policy_type are not unknowns but choices (what the provider emits
    without them), and the trust templates have no optional parameters.
    """
    names = [*OPTIONAL, "account_id"]
    values = {**OPTIONAL, "account_id": "123456789012"}

    def render(given: tuple[str, ...]) -> dict:
        return crossaccount_policy(
            policy_type, partition=partition, **{k: values[k] for k in given}
        )

    for size in range(len(names) + 1):
        for given in itertools.combinations(names, size):
            full = render(given)
            for missing in given:
                fewer = tuple(n for n in given if n != missing)
                diff = aws_policy.compare_permissions(full, render(fewer))
                assert not diff.widened, (policy_type, given, missing, diff.added)


# ---------------------------------------------------------------- severity follows reach

TEMPLATE = crossaccount_policy("customer", account_id=ACCOUNT)


def _with(*statements: dict) -> dict:
    return {**TEMPLATE, "Statement": [*TEMPLATE["Statement"], *statements]}


@pytest.mark.parametrize(
    ("extra", "severity"),
    [
        # iam:PassRole on * with ec2:RunInstances (already in the template): Rhino method 3
        ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "Action": "iam:*", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "Action": "iam:CreatePolicyVersion", "Resource": "*"}, "critical"),
        (
            {"Effect": "Allow", "Action": "iam:UpdateAssumeRolePolicy", "Resource": "*"},
            "critical",
        ),
        # any role trusting the account root admits a caller with sts:AssumeRole on it
        # (IAM User Guide, "Cross-account policy evaluation logic")
        ({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}, "critical"),
        ({"Effect": "Allow", "Action": "sts:*", "Resource": "*"}, "critical"),
        # narrower additions stay high
        (
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": f"arn:aws:iam::{ACCOUNT}:role/x",
            },
            "high",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": f"arn:aws:iam::{ACCOUNT}:role/one-role",
            },
            "high",
        ),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, "high"),
    ],
)
def test_inline_escalation_is_critical(extra, severity, baseline):
    assert fired(put_inline(_with(extra)), baseline) == [("aws.policy.inline_changed", severity)]


def test_passrole_alone_without_compute_is_high(baseline):
    doc = {"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}
    record = iam_call(
        "PutRolePolicy",
        {"roleName": CLUSTER, "policyName": "extra", "policyDocument": json.dumps(doc)},
    )
    assert fired(record, baseline) == [("aws.policy.inline_changed", "high")]
    with_lambda = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["iam:PassRole", "lambda:CreateFunction"],
                "Resource": "*",
            }
        ]
    }
    record = iam_call(
        "PutRolePolicy",
        {"roleName": CLUSTER, "policyName": "extra", "policyDocument": json.dumps(with_lambda)},
    )
    assert fired(record, baseline) == [("aws.policy.inline_changed", "critical")]


def test_provider_template_reput_stays_quiet(baseline):
    # its Spot statement holds iam:PutRolePolicy on the Spot service-linked role only
    assert fired(put_inline(TEMPLATE), baseline) == []


def test_managed_escalation_policy_is_critical(baseline):
    power = _attach(CLUSTER, "arn:aws:iam::aws:policy/PowerUserAccess")
    assert fired(power, baseline) == [("aws.policy.managed_attached", "critical")]
    readonly = _attach(CLUSTER, "arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert fired(readonly, baseline) == [("aws.policy.managed_attached", "high")]


def test_policy_version_with_escalation_is_critical(baseline):
    arn = f"arn:aws:iam::{ACCOUNT}:policy/databricks-uc-metastore-access"
    doc = {"Statement": [{"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "*"}]}
    assert fired(_new_version(arn, doc, True), baseline) == [
        ("aws.policy.version_changed", "critical")
    ]
    assert fired(_new_version(arn, WIDE, True), baseline) == [
        ("aws.policy.version_changed", "high")
    ]


def test_escalation_set_names_its_sources():
    assert "iam:passrole" not in aws_policy.ESCALATION_ACTIONS  # only with compute
    assert {"iam:putrolepolicy", "iam:attachrolepolicy", "iam:createpolicyversion",
            "iam:updateassumerolepolicy"} <= aws_policy.ESCALATION_ACTIONS  # fmt: skip
    assert "ec2:runinstances" in aws_policy.COMPUTE_ACTIONS
    assert aws_policy.escalations([{"effect": "Allow", "action": "s3:*", "resource": "*"}]) == []


# ---------------------------------------------------------------- the responder is protected


@pytest.mark.parametrize(
    "record",
    [
        update_trust("trustwatch-responder", trust(allow({"AWS": ATTACKER_ROOT}))),
        _attach("TrustWatch-Responder", ADMIN),
        iam_call(
            "PutRolePolicy",
            {
                "roleName": "trustwatch-responder",
                "policyName": "x",
                "policyDocument": json.dumps(WIDE),
            },
        ),
        iam_call("DeleteRolePermissionsBoundary", {"roleName": "trustwatch-responder"}),
    ],
)
def test_change_to_the_responder_role_by_someone_else_fires(record, baseline):
    assert fired(record, baseline) == [("aws.responder.identity_changed", "critical")]


def test_responder_quiet_cases(baseline):
    own = update_trust(
        "trustwatch-responder", trust(allow({"Service": "lambda.amazonaws.com"})), RESPONDER
    )
    assert fired(own, baseline) == []  # the responder's own change (loop guard)
    denied = failed(_attach("trustwatch-responder", ADMIN))
    assert fired(denied, baseline) == []
    other = _attach("trustwatch-responder-2", ADMIN)
    assert fired(other, baseline) == []
    # the responder role assumed by Lambda, its service
    assert fired(assume(RESPONDER_ARN, service_caller("lambda.amazonaws.com")), baseline) == []
    assert fired(assume(RESPONDER_ARN, ALICE, error="AccessDenied"), baseline) == []


def test_assume_into_the_responder_by_anyone_else_fires(baseline):
    assert fired(assume(RESPONDER_ARN, ALICE), baseline) == [UNEXPECTED]
    assert fired(assume(RESPONDER_ARN, account_caller(ATTACKER_ACCOUNT)), baseline) == [UNEXPECTED]


def test_every_aws_rule_is_in_the_readme_table():
    from trustwatch.engine import all_rules

    readme = (DATA.parent.parent / "README.md").read_text()
    missing = [r.id for r in all_rules() if r.cloud == "aws" and f"| `{r.id}` |" not in readme]
    assert missing == []


# --- a Unity Catalog role with an IAM path ------------------------------------------------
# A role's ARN holds its path (arn:aws:iam::ACCOUNT:role/PATH/NAME,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html), so the
# self-assume principal Databricks documents for a pathed UC role names the path too.


def _uc_trust(self_arn: str) -> dict:
    return trust(allow({"AWS": [UC_MASTER, self_arn]}, external_id(UC_EXTERNAL_ID)))


def _uc_update(doc: dict) -> dict:
    return iam_call(
        "UpdateAssumeRolePolicy",
        {"roleName": "databricks-uc-metastore", "policyDocument": json.dumps(doc)},
    )


def test_a_pathed_uc_role_is_quiet_when_the_baseline_names_its_path():
    pathed = parse_baseline(
        EXAMPLE_BASELINE.read_text().replace(
            "        databricks-uc-metastore:\n",
            "        databricks-uc-metastore:\n          path: /databricks/\n",
        )
    )
    with_path = f"arn:aws:iam::{ACCOUNT}:role/databricks/databricks-uc-metastore"
    without = f"arn:aws:iam::{ACCOUNT}:role/databricks-uc-metastore"
    assert fired(_uc_update(_uc_trust(with_path)), pathed) == []
    # the path is part of the ARN: the unpathed self-principal is another role
    assert ("aws.trust.principal_added", "critical") in fired(
        _uc_update(_uc_trust(without)), pathed
    )
    with pytest.raises(BaselineError, match="not an IAM path"):
        parse_baseline(
            EXAMPLE_BASELINE.read_text().replace(
                "        databricks-uc-metastore:\n",
                "        databricks-uc-metastore:\n          path: databricks\n",
            )
        )
