"""Planners for what baseline roles use: instance profiles, customer policy versions,
watched buckets' Block Public Access.

Like `restore_roles`: re-read, judge, then a `Plan` toward the baseline or `NothingToDo`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from trustwatch.aws import policy
from trustwatch.aws.baseline import iam_name_key
from trustwatch.aws.restore_roles import (
    ALERT_ONLY,
    arn_in,
    baseline_role,
    default_version,
    error_code,
    get_role,
    missing,
    policy_versions,
    short_name,
    version_document,
)
from trustwatch.baseline import Mode
from trustwatch.remediation import NothingToDo, Plan

if TYPE_CHECKING:
    from trustwatch.aws.remediate import Context


def _get_profile(iam: Any, names: list[str]) -> dict[str, Any] | None:
    """GetInstanceProfile by each spelling in turn; None: no such instance profile."""
    for name in dict.fromkeys(names):
        try:
            found: dict[str, Any] = iam.get_instance_profile(InstanceProfileName=name)[
                "InstanceProfile"
            ]
            return found
        except Exception as exc:
            if not missing(exc):
                raise
    return None


def _profile_roles(profile: dict[str, Any]) -> list[str]:
    return [str(r["RoleName"]) for r in profile.get("Roles", [])]


def restore_instance_profile_role(ctx: Context) -> Plan | NothingToDo:
    named = short_name(ctx.finding.identity)
    entry = ctx.account.instance_profile_named(named)
    if entry is None:
        return NothingToDo(f"instance profile {named} is not in the baseline", "none")
    baseline_name, profile = entry
    role_entry = baseline_role(ctx, profile.role)
    data = _get_profile(ctx.iam, [named, baseline_name])
    if data is None:
        return NothingToDo(
            f"instance profile {named} no longer exists: never recreated, {ALERT_ONLY}", "none"
        )
    name = str(data["InstanceProfileName"])
    roles = _profile_roles(data)
    expected_key = iam_name_key(profile.role)
    if [iam_name_key(r) for r in roles] == [expected_key]:
        return NothingToDo("the instance profile already holds its baseline role (stale event)")
    foreign = [r for r in roles if iam_name_key(r) != expected_key]
    role_data = None
    if not any(iam_name_key(r) == expected_key for r in roles):
        role_data = get_role(ctx.iam, [profile.role])
    add = str(role_data["RoleName"]) if role_data else None  # a deleted role is not recreated
    after = [r for r in roles if r not in foreign] + ([add] if add else [])

    def apply() -> None:
        for role_name in foreign:  # an instance profile holds one role: the foreign one first
            ctx.iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role_name)
        if add:
            ctx.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=add)

    def verify() -> str | None:
        back = _get_profile(ctx.iam, [name])
        held = _profile_roles(back) if back else []
        if [iam_name_key(r) for r in held] != [iam_name_key(r) for r in after]:
            return f"instance profile {name} holds {held or 'no role'}"
        return None

    return Plan(
        "restore_instance_profile_role",
        str(data["Arn"]),
        ctx.mode(role_entry[1] if role_entry else None),
        {"roles": roles},
        {"roles": after},
        apply,
        verify,
    )


# ---------------------------------------------------------------- customer policy versions


def _version_number(version_id: str) -> int:
    digits = version_id.removeprefix("v").split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _newest_first(versions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from sorted(
        versions,
        key=lambda v: (v["CreateDate"], _version_number(str(v["VersionId"]))),
        reverse=True,
    )


def _policy_mode(ctx: Context, arn: str) -> Mode | None:
    """remediate only if every baseline role holding the policy (or bounded by it) says so;
    None when no baseline role uses it (a findings file may name any policy)."""
    users = [
        r
        for r in ctx.account.roles.values()
        if arn_in(r.managed_policies, arn)
        or (r.permissions_boundary is not None and arn_in([r.permissions_boundary], arn))
    ]
    modes = {ctx.mode(r) for r in users}
    if not modes:
        return None
    return "remediate" if modes == {"remediate"} else "alert"


def restore_policy_version(ctx: Context) -> Plan | NothingToDo:
    arn = ctx.finding.identity
    mode = _policy_mode(ctx, arn)
    if mode is None:
        return NothingToDo(f"{arn} is not a policy of a baseline role: never touched", "none")
    versions = policy_versions(ctx.iam, arn)
    current = default_version(versions)
    actual = ctx.finding.actual if isinstance(ctx.finding.actual, dict) else {}
    offending = str(actual.get("default_version") or "")
    if offending and offending != "new" and offending != current:
        return NothingToDo(f"the default version is {current} now, not {offending} (stale event)")
    if current is None:
        return NothingToDo(f"{arn} has no default version", "failed")
    now = version_document(ctx.iam, arn, current)
    rejected, wider = [], []
    target = None
    judged = False
    for version in _newest_first([v for v in versions if v["VersionId"] != current]):
        version_id = str(version["VersionId"])
        doc = version_document(ctx.iam, arn, version_id)
        if policy.grants_admin(doc) or policy.document_escalations(doc):
            rejected.append(version_id)
            continue
        if not judged and not policy.compare_permissions(now, doc).widened:
            # a plan only narrows: a default that grants no more than the one before stays
            return NothingToDo(
                f"the default version {current} grants nothing {version_id} does not: not reverted"
            )
        judged = True
        if policy.compare_permissions(doc, now).widened:
            # an attacker's leftover version (other grants, neither admin nor escalation):
            # making it the default would widen access elsewhere
            wider.append(version_id)
            continue
        target = version_id
        break
    if target is None:
        reasons = []
        if rejected:
            reasons.append(
                f"({', '.join(rejected)}) grants administrator access or a privilege escalation"
            )
        if wider:
            reasons.append(f"grants what the default version does not ({', '.join(wider)})")
        why = (
            "every other version " + ", or ".join(reasons) if reasons else "it has no other version"
        )
        return NothingToDo(f"no earlier version of {arn} to go back to: {why}", "failed")

    def apply() -> None:
        ctx.iam.set_default_policy_version(PolicyArn=arn, VersionId=target)

    def verify() -> str | None:
        back = default_version(policy_versions(ctx.iam, arn))
        return None if back == target else f"the default version is {back}"

    return Plan(
        "restore_policy_version",
        arn,
        mode,
        {"default_version": current},
        {"default_version": target},
        apply,
        verify,
    )


# ---------------------------------------------------------------- buckets

# All four Block Public Access settings on: what `public_access_block: required` expects
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html).
ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _public_access_block(s3: Any, bucket: str) -> dict[str, bool] | None:
    """The bucket's Block Public Access settings; None when it has none."""
    try:
        found = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except Exception as exc:
        if error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    return {key: bool(found.get(key)) for key in ALL_BLOCKED}


def restore_public_access_block(ctx: Context) -> Plan | NothingToDo:
    identity = ctx.finding.identity
    if ":s3:::" not in identity:  # the account's setting (S3 Control)
        return NothingToDo(
            f"the account-level Block Public Access is not automated: {ALERT_ONLY}", "none"
        )
    name = identity.split(":s3:::", 1)[1]
    bucket = ctx.account.buckets.get(name)  # bucket names compare exactly
    if bucket is None or bucket.public_access_block != "required":
        return NothingToDo(f"bucket {name} is not a watched bucket that must block", "none")
    current = _public_access_block(ctx.s3, name)
    if current == ALL_BLOCKED:
        return NothingToDo("Block Public Access is already all on (stale event)")

    def apply() -> None:
        ctx.s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=dict(ALL_BLOCKED)
        )

    def verify() -> str | None:
        back = _public_access_block(ctx.s3, name)
        return None if back == ALL_BLOCKED else f"Block Public Access is {back}"

    return Plan(
        "restore_public_access_block",
        identity,
        ctx.baseline.mode_for(bucket.mode),
        {"public_access_block": current},
        {"public_access_block": ALL_BLOCKED},
        apply,
        verify,
    )
