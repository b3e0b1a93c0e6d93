"""Admin and privilege escalation: grants as good as owning the account.

- `grants_admin`: an Allow of "*" or all of iam:* on resources that include IAM ones.
- `escalations`: permissions that let a principal rewrite its own (or another role's)
  permissions or trust, or run code as any role (Rhino Security Labs' methods):
  `ESCALATION_ACTIONS`, NotAction on every resource, iam:PassRole on "*" with one of
  `COMPUTE_ACTIONS`, sts:AssumeRole on "*" (any role that trusts the account).
- AWS managed policies known to be either (`managed_policy_is_admin`,
  `managed_policy_escalates`), so that an attachment needs no policy read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from trustwatch.aws.policy.document import Document, load_document, normalize
from trustwatch.aws.policy.permissions import item_dict, resource_part, statement_items
from trustwatch.aws.policy.principals import infer_partition
from trustwatch.aws.policy.wildcards import glob_covers


def _reaches_iam(resource: str) -> bool:
    """Could this resource pattern name an IAM resource ("*", arn:aws:iam::..., arn:*:*...)?"""
    parts = resource.split(":")
    if len(parts) < 3:
        return "*" in resource
    return "*" in parts[0] + parts[1] or glob_covers(parts[2], "iam")


def grants_admin(doc: Document) -> bool:
    """Does any Allow grant "*" or all of "iam:*" on resources that include IAM ones?

    Admin means "can rewrite IAM, hence anything": an action pattern covering iam:* ("*",
    "iam:*", "i*", "iam:*" via NotAction lists that do not exclude iam:*). Conditions are
    ignored (conservative). NotAction ["iam:*", ...] (PowerUserAccess) is not admin.
    """
    loaded = load_document(doc)
    for stmt in normalize(loaded, infer_partition([loaded])):
        if stmt.effect != "Allow":
            continue
        if stmt.actions is not None:
            iam_all = any(glob_covers(a, "iam:*") for a in stmt.actions)
        else:
            iam_all = not any(glob_covers(n, "iam:*") for n in stmt.not_actions or ())
        resources, not_resources = resource_part(stmt)
        reaches = not_resources is not None or any(_reaches_iam(r) for r in resources or ())
        if iam_all and reaches:
            return True
    return False


# AWS managed policies that grant "*" or "iam:*" (policy name -> what it grants). Deliberately
# not listed: PowerUserAccess (Allow NotAction [iam:*, organizations:*, account:*] plus a few
# iam reads/service-linked-role calls: everything but IAM, so not iam:*), and
# AdministratorAccess-Amplify / -AWSElasticBeanstalk (broad, but name iam actions one by one).
# Rules treat those as an ordinary unexpected attachment.
ADMIN_MANAGED_POLICIES: dict[str, str] = {
    "AdministratorAccess": "Allow * on *",
    "IAMFullAccess": "Allow iam:* on *",
}

_AWS_MANAGED_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::aws:policy/([^/]+)")


def managed_policy_is_admin(arn: str) -> bool:
    """Is this an AWS managed policy (any partition) known to grant "*" or "iam:*"?"""
    found = _AWS_MANAGED_ARN.fullmatch(arn.strip())
    # policy names are not distinguished by case (IAM quotas page)
    return found is not None and found.group(1).lower() in _lowered_names(ADMIN_MANAGED_POLICIES)


def _lowered_names(table: dict[str, str]) -> set[str]:
    return {name.lower() for name in table}


# ---------------------------------------------------------------- privilege escalation

# Permissions as good as admin: with them a principal rewrites its own (or another role's)
# permissions or trust, or runs code as any role. Sources: Rhino Security Labs, "AWS IAM
# Privilege Escalation - Methods and Mitigation" (methods 1-21,
# https://rhinosecuritylabs.com/aws/aws-privilege-escalation-methods-mitigation/) and the
# IAM actions reference (https://docs.aws.amazon.com/service-authorization/latest/reference/list_identityandaccessmanagement.html).
ESCALATION_ACTIONS: frozenset[str] = frozenset(
    a.lower()
    for a in (
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
        "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy",
        "iam:PutRolePolicy", "iam:PutUserPolicy", "iam:PutGroupPolicy",
        "iam:UpdateAssumeRolePolicy", "iam:AddUserToGroup",
        "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
        "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary",
        "lambda:UpdateFunctionCode", "glue:UpdateDevEndpoint",
    )
)  # fmt: skip
# Actions that start code running as a role passed with iam:PassRole (Rhino methods 3, 15-21).
COMPUTE_ACTIONS: frozenset[str] = frozenset(
    a.lower()
    for a in (
        "ec2:RunInstances", "lambda:CreateFunction", "glue:CreateDevEndpoint",
        "cloudformation:CreateStack", "datapipeline:CreatePipeline",
        "ecs:RunTask", "sagemaker:CreateNotebookInstance", "codebuild:CreateProject",
    )
)  # fmt: skip


def _action_reaches(item: dict[str, Any], action: str) -> bool:
    if "action" in item:
        return glob_covers(item["action"], action)
    return not any(glob_covers(n, action) for n in item.get("not_action", ()))


def _wide_resource(item: dict[str, Any]) -> bool:
    """Resource "*" or NotResource: reaches resources nobody listed."""
    return "not_resource" in item or item.get("resource") == "*"


def escalations(items: Iterable[dict[str, Any]], context: Document | None = None) -> list[str]:
    """Why Allow items (PermissionDiff entries) are privilege-escalation equivalent.

    `context` is the whole document the items belong to: iam:PassRole on "*" escalates when
    it, or the items, also hold a compute-creating action.
    """
    items = [i for i in items if i.get("effect", "Allow") == "Allow"]
    reasons: set[str] = set()
    for item in items:
        if "not_action" in item and _wide_resource(item):
            reasons.add("NotAction on every resource")
        hits = sorted(a for a in ESCALATION_ACTIONS if _action_reaches(item, a))
        if hits and "not_action" not in item:
            reasons.add("can write IAM policies or credentials: " + ", ".join(hits[:4]))
    # sts:AssumeRole on "*": every role whose trust names this account (its root) admits
    # the principal on its own IAM permission alone, admin roles included
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html)
    if any(
        _action_reaches(i, "sts:assumerole") and _wide_resource(i) and "not_action" not in i
        for i in items
    ):
        reasons.add("sts:AssumeRole on * (any role that trusts the account)")
    pass_role = [i for i in items if _action_reaches(i, "iam:passrole") and _wide_resource(i)]
    if pass_role:
        pool = list(items)
        if context is not None:
            loaded = load_document(context)
            for stmt in normalize(loaded, infer_partition([loaded])):
                if stmt.effect == "Allow":
                    pool += [item_dict(i) for i in statement_items(stmt)]
        compute = sorted(a for a in COMPUTE_ACTIONS if any(_action_reaches(i, a) for i in pool))
        if compute:
            reasons.add("iam:PassRole on * with " + ", ".join(compute[:3]))
    return sorted(reasons)


def document_escalations(doc: Document) -> list[str]:
    """escalations() of every Allow of a document."""
    loaded = load_document(doc)
    items = [
        item_dict(i)
        for stmt in normalize(loaded, infer_partition([loaded]))
        if stmt.effect == "Allow"
        for i in statement_items(stmt)
    ]
    return escalations(items)


# AWS managed policies that are escalation equivalent without being admin.
ESCALATION_MANAGED_POLICIES: dict[str, str] = {
    "PowerUserAccess": "Allow NotAction [iam:*, organizations:*, account:*] on *",
}


def managed_policy_escalates(arn: str) -> bool:
    """Is this an AWS managed policy known to be admin or escalation equivalent?"""
    found = _AWS_MANAGED_ARN.fullmatch(arn.strip())
    names = _lowered_names(ADMIN_MANAGED_POLICIES) | _lowered_names(ESCALATION_MANAGED_POLICIES)
    return found is not None and found.group(1).lower() in names
