"""The sweep row's stand-in account: 10,000 roles served as IAM pages them.

`tests/iamserver.py` (the tests' IAM paging stand-in) serves GetAccountAuthorizationDetails
over loopback in pages of varying size, as IAM may, so the AWS state read makes the calls
it would make against IAM (moto answers one page whatever MaxItems says, and loads 10,000
roles slowly). The account is examples/baseline.yaml's 111122223333: its three baseline
roles as the baseline expects them, and the rest untracked roles, one in a hundred of them
trusting Databricks (those are the findings), with customer managed policies beside them.

Cloud Custodian's reference figure is counted from its source, not measured: its
`iam-role` resource lists roles with `ListRoles` (IAM's default page of 100) and then
calls `GetRole` once per role (`detail_spec`, c7n/resources/iam.py `Role.resource_type`,
applied per resource by c7n/query.py `DescribeSource.augment` / `_scalar_augment`); its
`has-inline-policy` and `has-specific-managed-policy` filters add one `ListRolePolicies`
and one `ListAttachedRolePolicies` per role (c7n/resources/iam.py, cloud-custodian commit
df800e9e94): a sweep judging trust, inline and managed policies makes at least
1/100 + 3 calls per role there (inline documents would need a GetRolePolicy more each).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "111122223333"
C7N_CALLS_PER_ROLE = 1 / 100 + 3  # ListRoles page share + GetRole + the two list filters
PAGE_SIZES = (1000, 713, 1000, 388, 1000, 947)  # IAM may return fewer than MaxItems
POLICIES = 500


def _trust(principal: dict[str, Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": principal,
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def account(roles: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(RoleDetailList, Policies, findings expected) of the stand-in account."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "shared"))
    from iamserver import role_detail
    from trustwatch.aws import templates
    from trustwatch.baseline import load_baseline

    baseline = load_baseline(ROOT / "examples" / "baseline.yaml")
    section = baseline.aws.accounts[ACCOUNT]
    assert baseline.databricks is not None
    details = []
    for name, role in section.roles.items():
        trust = templates.expected_trust(
            role.trust,
            partition="aws",
            account_id=ACCOUNT,
            role_name=name,
            databricks_account_id=baseline.databricks.account_id,
        )[0]
        inline = {
            policy_name: templates.expected_policy(spec, partition="aws", account_id=ACCOUNT)
            for policy_name, spec in role.inline_policies.items()
        }
        profiles = [p for p, v in section.instance_profiles.items() if v.role == name]
        details.append(
            role_detail(
                name,
                trust,
                account=ACCOUNT,
                managed=role.managed_policies,
                inline=inline,
                instance_profiles=profiles,
            )
        )
    ec2 = _trust({"Service": "ec2.amazonaws.com"})
    databricks = _trust({"AWS": "arn:aws:iam::414351767826:root"})
    findings = 0
    for i in range(roles - len(details)):
        shadow = i % 100 == 0
        findings += shadow
        details.append(
            role_detail(
                f"app-role-{i:05}",
                databricks if shadow else ec2,
                account=ACCOUNT,
                managed=[f"arn:aws:iam::{ACCOUNT}:policy/app-policy-{i % POLICIES:03}"],
                inline={"app": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::app-{i}/*"}
                ]}},
            )
        )  # fmt: skip
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
    ]}  # fmt: skip
    names = [f"app-policy-{i:03}" for i in range(POLICIES)]
    names += ["databricks-uc-metastore-access", "databricks-cluster-data-read"]
    policies = [
        {
            "PolicyName": name,
            "Arn": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
            "DefaultVersionId": "v1",
            "PolicyVersionList": [{"Document": document, "VersionId": "v1", "IsDefaultVersion": True}],
        }
        for name in names
    ]  # fmt: skip
    return details, policies, findings


def serve(roles: int) -> Any:
    """The stand-in server (a context manager) and the findings a sweep of it must give."""
    details, policies, findings = account(roles)
    from iamserver import IamPagingServer

    return IamPagingServer(details, policies, page_sizes=PAGE_SIZES), findings
