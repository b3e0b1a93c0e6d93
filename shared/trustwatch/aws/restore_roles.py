"""Planners for a baseline role: its trust policy, managed and inline policies, boundary.

Each takes the remediator's `Context` (trustwatch.aws.remediate), re-reads the role with
GetRole / ListAttachedRolePolicies / GetRolePolicy and judges what it reads with the same
comparison the rules use (`trustwatch.aws.policy`): a `Plan` that puts the baseline back,
or `NothingToDo` (already back: skipped; never automated: none). The helpers above the
planners are shared with `restore_resources`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsRole
from trustwatch.findings import Finding
from trustwatch.frozen import frozen
from trustwatch.remediation import NothingToDo, Plan

if TYPE_CHECKING:
    from trustwatch.aws.remediate import Context

ALERT_ONLY = "alert only"


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def missing(exc: Exception) -> bool:
    return error_code(exc) == "NoSuchEntity"


def short_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


@frozen
class RoleNow:
    """A baseline role as IAM holds it now."""

    baseline_name: str
    role: AwsRole
    name: str  # IAM's spelling
    data: dict[str, Any]  # GetRole's Role


def baseline_role(ctx: Context, name: str) -> tuple[str, AwsRole] | None:
    return ctx.account.role_named(name)


def get_role(iam: Any, names: list[str]) -> dict[str, Any] | None:
    """GetRole by each spelling in turn (the event's, the baseline's); None: no such role."""
    for name in dict.fromkeys(names):
        try:
            role: dict[str, Any] = iam.get_role(RoleName=name)["Role"]
            return role
        except Exception as exc:
            if not missing(exc):
                raise
    return None


def _role_now(ctx: Context) -> RoleNow | NothingToDo:
    named = short_name(ctx.finding.identity)
    entry = baseline_role(ctx, named)
    if entry is None:
        return NothingToDo(f"role {named} is not in the baseline: never touched", "none")
    data = get_role(ctx.iam, [named, entry[0]])
    if data is None:
        return NothingToDo(f"role {named} no longer exists: never recreated, {ALERT_ONLY}", "none")
    return RoleNow(entry[0], entry[1], str(data["RoleName"]), data)


def _expected_trust(ctx: Context, now: RoleNow) -> list[dict[str, Any]]:
    assert now.role.trust is not None
    databricks = ctx.baseline.databricks
    return templates.expected_trust(
        now.role.trust,
        partition=ctx.baseline.aws.partition,
        account_id=ctx.finding.scope,
        role_name=now.baseline_name,  # as the rules render it
        databricks_account_id=databricks.account_id if databricks else None,
        role_path=now.role.path,
    )


def _trust_document(data: dict[str, Any]) -> dict[str, Any]:
    return policy.load_document(data["AssumeRolePolicyDocument"])


def restore_trust_policy(ctx: Context) -> Plan | NothingToDo:
    now = _role_now(ctx)
    if isinstance(now, NothingToDo):
        return now
    if now.role.trust is None:
        return NothingToDo(f"the baseline pins no trust for {now.name}", "none")
    expected = _expected_trust(ctx, now)
    current = _trust_document(now.data)
    diff = policy.compare_trust(current, [*expected])
    if not diff.widened:
        if diff.expected_principals_removed:
            return NothingToDo(
                "the trust only lost expected principals: widening it back is not automated, "
                + ALERT_ONLY,
                "none",
            )
        return NothingToDo("the trust policy already matches the baseline (stale event)")
    target = expected[0]  # the first shape: what the provider's data source renders

    def apply() -> None:
        ctx.iam.update_assume_role_policy(RoleName=now.name, PolicyDocument=json.dumps(target))

    def verify() -> str | None:
        after = get_role(ctx.iam, [now.name])
        if after is None:
            return "the role is gone"
        back = policy.compare_trust(_trust_document(after), [*expected])
        if back.widened or back.expected_principals_removed:
            return f"trust policy still differs: {json.dumps(back.as_dict(), sort_keys=True)}"
        return None

    return Plan(
        "restore_trust_policy", now.data["Arn"], ctx.mode(now.role), current, target, apply, verify
    )


def _attached(iam: Any, role_name: str) -> list[str]:
    pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name)
    return [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]]


def arn_in(arns: list[str], arn: str) -> bool:
    key = policy.iam_arn_key(arn)
    return any(policy.iam_arn_key(a) == key for a in arns)


def detach_role_policy(ctx: Context) -> Plan | NothingToDo:
    now = _role_now(ctx)
    if isinstance(now, NothingToDo):
        return now
    arn = (
        str(ctx.finding.actual.get("attached", "")) if isinstance(ctx.finding.actual, dict) else ""
    )
    if not arn:
        return NothingToDo("the finding names no attached policy", "failed")
    if arn_in(now.role.managed_policies, arn):
        return NothingToDo(f"{arn} is in the baseline now: nothing to detach")
    attached = _attached(ctx.iam, now.name)
    current = [a for a in attached if policy.iam_arn_key(a) == policy.iam_arn_key(arn)]
    if not current:
        return NothingToDo(f"{arn} is no longer attached (stale event)")

    def apply() -> None:
        for attached_arn in current:
            ctx.iam.detach_role_policy(RoleName=now.name, PolicyArn=attached_arn)

    def verify() -> str | None:
        still = [a for a in _attached(ctx.iam, now.name) if arn_in(current, a)]
        return f"still attached: {', '.join(still)}" if still else None

    after = [a for a in attached if not arn_in(current, a)]
    return Plan(
        "detach_role_policy",
        now.data["Arn"],
        ctx.mode(now.role),
        {"attached_policies": attached},
        {"attached_policies": after},
        apply,
        verify,
    )


def _inline(iam: Any, role_name: str, policy_name: str) -> dict[str, Any] | None:
    try:
        response = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)
    except Exception as exc:
        if missing(exc):
            return None
        raise
    return policy.load_document(response["PolicyDocument"])


def _policy_name(finding: Finding) -> str:
    actual = finding.actual if isinstance(finding.actual, dict) else {}
    name = actual.get("policy") or actual.get("deleted") or ""
    return name if isinstance(name, str) else ""


def delete_role_policy(ctx: Context) -> Plan | NothingToDo:
    now = _role_now(ctx)
    if isinstance(now, NothingToDo):
        return now
    name = _policy_name(ctx.finding)
    if not name:
        return NothingToDo("the finding names no inline policy", "failed")
    if name in now.role.inline_policies:
        return NothingToDo(f"inline policy {name} is in the baseline now: not deleted")
    # IAM policy names are "not distinguished by case" (the quotas page): deleting this
    # name could delete the baseline's own policy
    namesake = [n for n in now.role.inline_policies if n.lower() == name.lower()]
    if namesake:
        return NothingToDo(
            f"inline policy {name} differs only by case from the baseline's {namesake[0]}: "
            f"not deleted, {ALERT_ONLY}",
            "none",
        )
    current = _inline(ctx.iam, now.name, name)
    if current is None:
        return NothingToDo(f"inline policy {name} no longer exists (stale event)")
    if not policy.compare_permissions(current, None).widened:
        return NothingToDo(f"inline policy {name} grants nothing now (stale event)")

    def apply() -> None:
        ctx.iam.delete_role_policy(RoleName=now.name, PolicyName=name)

    def verify() -> str | None:
        return None if _inline(ctx.iam, now.name, name) is None else f"{name} still exists"

    return Plan(
        "delete_role_policy",
        now.data["Arn"],
        ctx.mode(now.role),
        {"policy": name, "document": current},
        {"policy": name, "document": None},
        apply,
        verify,
    )


def restore_inline_policy(ctx: Context) -> Plan | NothingToDo:
    now = _role_now(ctx)
    if isinstance(now, NothingToDo):
        return now
    name = _policy_name(ctx.finding)
    spec = now.role.inline_policies.get(name)
    if spec is None:
        return NothingToDo(f"the baseline has no inline policy {name!r}", "none")
    expected = templates.expected_policy(
        spec, partition=ctx.baseline.aws.partition, account_id=ctx.finding.scope
    )
    current = _inline(ctx.iam, now.name, name)
    if current is None:
        if ctx.finding.rule == "aws.policy.inline_deleted":
            return NothingToDo(
                f"re-creating the deleted inline policy {name} would widen access: " + ALERT_ONLY,
                "none",
            )
        return NothingToDo(f"inline policy {name} no longer exists: it grants nothing")
    if not policy.compare_permissions(current, expected).widened:
        return NothingToDo(f"inline policy {name} grants no more than the baseline (stale event)")

    def apply() -> None:
        ctx.iam.put_role_policy(
            RoleName=now.name, PolicyName=name, PolicyDocument=json.dumps(expected)
        )

    def verify() -> str | None:
        back = _inline(ctx.iam, now.name, name)
        if back is None:
            return f"{name} is gone"
        added = policy.compare_permissions(back, expected).added
        return f"{name} still grants {json.dumps(added)}" if added else None

    return Plan(
        "restore_inline_policy",
        now.data["Arn"],
        ctx.mode(now.role),
        {"policy": name, "document": current},
        {"policy": name, "document": expected},
        apply,
        verify,
    )


def policy_versions(iam: Any, arn: str) -> list[dict[str, Any]]:
    pages = iam.get_paginator("list_policy_versions").paginate(PolicyArn=arn)
    return [v for page in pages for v in page["Versions"]]


def version_document(iam: Any, arn: str, version_id: str) -> dict[str, Any]:
    found = iam.get_policy_version(PolicyArn=arn, VersionId=version_id)
    return policy.load_document(found["PolicyVersion"]["Document"])


def default_version(versions: list[dict[str, Any]]) -> str | None:
    return next((str(v["VersionId"]) for v in versions if v.get("IsDefaultVersion")), None)


def _default_document(iam: Any, arn: str) -> dict[str, Any] | None:
    """A managed policy's default document; None when it cannot be read."""
    try:
        version = default_version(policy_versions(iam, arn))
        return version_document(iam, arn, version) if version else None
    except Exception:  # an AWS managed policy outside the grant, say: judged unknown
        return None


def _boundary(data: dict[str, Any]) -> str | None:
    found = data.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    return str(found) if found else None


def restore_permissions_boundary(ctx: Context) -> Plan | NothingToDo:
    now = _role_now(ctx)
    if isinstance(now, NothingToDo):
        return now
    expected = now.role.permissions_boundary
    if expected is None:
        return NothingToDo(f"the baseline sets no permissions boundary for {now.name}", "none")
    current = _boundary(now.data)
    if current is not None and arn_in([expected], current):
        return NothingToDo("the permissions boundary already matches the baseline (stale event)")
    if current is not None:  # changed, not removed: a narrower boundary stays
        new, old = _default_document(ctx.iam, current), _default_document(ctx.iam, expected)
        if new is not None and old is not None and not policy.compare_permissions(new, old).widened:
            return NothingToDo(
                f"the boundary {current} allows nothing {expected} does not: not replaced"
            )

    def apply() -> None:
        ctx.iam.put_role_permissions_boundary(RoleName=now.name, PermissionsBoundary=expected)

    def verify() -> str | None:
        after = get_role(ctx.iam, [now.name])
        back = _boundary(after) if after else None
        return None if back and arn_in([expected], back) else f"the boundary is {back}"

    return Plan(
        "restore_permissions_boundary",
        now.data["Arn"],
        ctx.mode(now.role),
        {"permissions_boundary": current},
        {"permissions_boundary": expected},
        apply,
        verify,
    )
