"""AWS remediation: put an `aws.*` finding's role, instance profile or policy back (boto3 IAM).

`remediator_from_env(environ)` gives the `Remediator` the core (trustwatch.remediation)
asks for a `Plan`. Every plan re-reads IAM first and judges what it reads with the same
comparison the rules use (`trustwatch.aws.policy`): a finding whose drift is gone (a
stale or out-of-order event) is `skipped`, and a plan only narrows toward the baseline:

| action | what it writes |
|---|---|
| restore_trust_policy | UpdateAssumeRolePolicy with the baseline's rendered trust document |
| detach_role_policy | DetachRolePolicy of a managed policy the baseline does not list |
| delete_role_policy | DeleteRolePolicy of an inline policy the baseline does not name |
| restore_inline_policy | PutRolePolicy of the baseline document over a widened one |
| restore_permissions_boundary | PutRolePermissionsBoundary with the baseline's boundary |
| restore_instance_profile_role | RemoveRoleFromInstanceProfile (foreign role), AddRoleToInstanceProfile (baseline role) |
| restore_policy_version | SetDefaultPolicyVersion to the newest other version without admin or escalation |
| restore_public_access_block | PutPublicAccessBlock, all four settings on, on a watched bucket |

Never automated (alert only), because each would widen access or recreate what someone
removed: a deleted role, instance profile or inline policy is not recreated, a detached
expected managed policy is not re-attached, a trust that only lost an expected principal
is not widened back (`attach_role_policy` and the breakage rules are alert only). The
account-level Block Public Access (S3 Control) and bucket policies, ACLs and ownership
controls are alert only too, for now.

The function acts in its own account (STS GetCallerIdentity, once). A finding of another
account fails, saying so, unless `TRUSTWATCH_AWS_REMEDIATION_ROLE` names a role to assume
there: an ARN template with `{account}` (`arn:aws:iam::{account}:role/trustwatch-remediator`);
its sessions are kept until five minutes before they expire.

IAM names are "not distinguished by case"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): the role
and instance profile are looked up by the event's spelling, then the baseline's, and
written under the spelling IAM returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsAccount, AwsRole, iam_name_key
from trustwatch.baseline import Baseline, Mode
from trustwatch.findings import Finding
from trustwatch.remediation import NothingToDo, Plan

# Every IAM call the plans below make, as IAM actions: deploy/aws grants READ_ACTIONS
# always (a dry run plans from them) and WRITE_ACTIONS only with remediation_enabled;
# tests/test_deploy.py holds both to the calls in this module.
READ_ACTIONS = (
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:GetInstanceProfile",
    "iam:ListPolicyVersions",
    "iam:GetPolicyVersion",
    "s3:GetBucketPublicAccessBlock",
)
WRITE_ACTIONS = (
    "iam:UpdateAssumeRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:SetDefaultPolicyVersion",
    "s3:PutBucketPublicAccessBlock",  # the action of the PutPublicAccessBlock call
)
# Not a call but a permission: AddRoleToInstanceProfile needs iam:PassRole on the role it
# adds (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html).
PASS_ROLE = "iam:PassRole"
ALERT_ONLY = "alert only"
ROLE_TEMPLATE_ENV = "TRUSTWATCH_AWS_REMEDIATION_ROLE"
SESSION_NAME = "trustwatch-remediation"
RENEW_BEFORE_S = 300  # an assumed session this close to expiry is renewed first


@dataclass(frozen=True)
class Session:
    """Credentials of the remediation role assumed in another account."""

    access_key: str
    secret_key: str
    token: str
    expires: float  # epoch seconds


class AwsRemediator:
    """Plans the put-back of `aws.*` findings with IAM, STS and S3 clients (lazy)."""

    def __init__(
        self,
        client_kwargs: Mapping[str, Any] | None = None,
        *,
        role_template: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client_kwargs = dict(client_kwargs or {})
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._sessions: dict[str, Session] = {}
        self._own_account: str | None = None
        self.role_template = role_template
        self._clock = clock

    def client(self, service: str, account: str | None = None) -> Any:
        """The boto3 client, created on first use (SDK defaults, botocore standard retries):
        with the function's own credentials, or the role assumed in `account`."""
        credentials: dict[str, str] = {}
        if account is not None:
            session = self._sessions.get(account)
            if session is None or session.expires - self._clock() < RENEW_BEFORE_S:
                session = self._assume(account)
            credentials = {
                "aws_access_key_id": session.access_key,
                "aws_secret_access_key": session.secret_key,
                "aws_session_token": session.token,
            }
        key = (account, service)
        if key not in self._clients:
            import boto3

            from trustwatch.aws.store import retry_config

            self._clients[key] = boto3.client(
                service, config=retry_config(), **{**self._client_kwargs, **credentials}
            )
        return self._clients[key]

    def _assume(self, account: str) -> Session:
        assert self.role_template is not None
        role_arn = self.role_template.replace("{account}", account)
        found = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)
        given = found["Credentials"]
        expiration = given["Expiration"]
        expires = expiration.timestamp() if hasattr(expiration, "timestamp") else 0.0
        session = Session(
            given["AccessKeyId"], given["SecretAccessKey"], given["SessionToken"], expires
        )
        self._sessions[account] = session
        for key in [k for k in self._clients if k[0] == account]:
            del self._clients[key]  # clients of the expired session
        return session

    def own_account(self) -> str:
        """The account the function's credentials act in (GetCallerIdentity needs no grant)."""
        if self._own_account is None:
            self._own_account = str(self.client("sts").get_caller_identity()["Account"])
        return self._own_account

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        """Re-read the role, profile or policy the finding names and plan its put-back."""
        action = finding.remediation.action
        planner = _PLANNERS.get(action)
        if planner is None:
            return NothingToDo(f"{action} is not automated: {ALERT_ONLY}", "none")
        account = baseline.aws.accounts.get(finding.scope)
        if account is None:
            return NothingToDo(f"account {finding.scope} is not in the baseline", "none")
        own = self.own_account()
        target: str | None = None
        if own != finding.scope:
            if not self.role_template:
                return NothingToDo(
                    f"the finding is in account {finding.scope}; the responder runs in {own} "
                    f"({ROLE_TEMPLATE_ENV} unset)",
                    "failed",
                )
            if "{account}" not in self.role_template:
                return NothingToDo(
                    f"{ROLE_TEMPLATE_ENV} has no {{account}}: cannot act in {finding.scope}",
                    "failed",
                )
            target = finding.scope
        return planner(Context(self, finding, baseline, account, target))


@dataclass(frozen=True)
class Context:
    """What each planner reads: the clients, the finding and its baseline account."""

    remediator: AwsRemediator
    finding: Finding
    baseline: Baseline
    account: AwsAccount
    target_account: str | None = None  # None: the function's own account

    @property
    def iam(self) -> Any:
        return self.remediator.client("iam", self.target_account)

    @property
    def s3(self) -> Any:
        return self.remediator.client("s3", self.target_account)

    def mode(self, role: AwsRole | None) -> Mode:
        return self.baseline.mode_for(role.mode if role else None)


Planner = Callable[[Context], "Plan | NothingToDo"]


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _missing(exc: Exception) -> bool:
    return _error_code(exc) == "NoSuchEntity"


def _short_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


# ---------------------------------------------------------------- roles


@dataclass(frozen=True)
class RoleNow:
    """A baseline role as IAM holds it now."""

    baseline_name: str
    role: AwsRole
    name: str  # IAM's spelling
    data: dict[str, Any]  # GetRole's Role


def _baseline_role(ctx: Context, name: str) -> tuple[str, AwsRole] | None:
    return ctx.account.role_named(name)


def _get_role(iam: Any, names: list[str]) -> dict[str, Any] | None:
    """GetRole by each spelling in turn (the event's, the baseline's); None: no such role."""
    for name in dict.fromkeys(names):
        try:
            role: dict[str, Any] = iam.get_role(RoleName=name)["Role"]
            return role
        except Exception as exc:
            if not _missing(exc):
                raise
    return None


def _role_now(ctx: Context) -> RoleNow | NothingToDo:
    named = _short_name(ctx.finding.identity)
    entry = _baseline_role(ctx, named)
    if entry is None:
        return NothingToDo(f"role {named} is not in the baseline: never touched", "none")
    data = _get_role(ctx.iam, [named, entry[0]])
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
        after = _get_role(ctx.iam, [now.name])
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


def _arn_in(arns: list[str], arn: str) -> bool:
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
    if _arn_in(now.role.managed_policies, arn):
        return NothingToDo(f"{arn} is in the baseline now: nothing to detach")
    attached = _attached(ctx.iam, now.name)
    current = [a for a in attached if policy.iam_arn_key(a) == policy.iam_arn_key(arn)]
    if not current:
        return NothingToDo(f"{arn} is no longer attached (stale event)")

    def apply() -> None:
        for attached_arn in current:
            ctx.iam.detach_role_policy(RoleName=now.name, PolicyArn=attached_arn)

    def verify() -> str | None:
        still = [a for a in _attached(ctx.iam, now.name) if _arn_in(current, a)]
        return f"still attached: {', '.join(still)}" if still else None

    after = [a for a in attached if not _arn_in(current, a)]
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
        if _missing(exc):
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
    if current is not None and _arn_in([expected], current):
        return NothingToDo("the permissions boundary already matches the baseline (stale event)")

    def apply() -> None:
        ctx.iam.put_role_permissions_boundary(RoleName=now.name, PermissionsBoundary=expected)

    def verify() -> str | None:
        after = _get_role(ctx.iam, [now.name])
        back = _boundary(after) if after else None
        return None if back and _arn_in([expected], back) else f"the boundary is {back}"

    return Plan(
        "restore_permissions_boundary",
        now.data["Arn"],
        ctx.mode(now.role),
        {"permissions_boundary": current},
        {"permissions_boundary": expected},
        apply,
        verify,
    )


# ---------------------------------------------------------------- instance profiles


def _get_profile(iam: Any, names: list[str]) -> dict[str, Any] | None:
    """GetInstanceProfile by each spelling in turn; None: no such instance profile."""
    for name in dict.fromkeys(names):
        try:
            found: dict[str, Any] = iam.get_instance_profile(InstanceProfileName=name)[
                "InstanceProfile"
            ]
            return found
        except Exception as exc:
            if not _missing(exc):
                raise
    return None


def _profile_roles(profile: dict[str, Any]) -> list[str]:
    return [str(r["RoleName"]) for r in profile.get("Roles", [])]


def restore_instance_profile_role(ctx: Context) -> Plan | NothingToDo:
    named = _short_name(ctx.finding.identity)
    entry = ctx.account.instance_profile_named(named)
    if entry is None:
        return NothingToDo(f"instance profile {named} is not in the baseline", "none")
    baseline_name, profile = entry
    role_entry = _baseline_role(ctx, profile.role)
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
        role_data = _get_role(ctx.iam, [profile.role])
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


def _versions(iam: Any, arn: str) -> list[dict[str, Any]]:
    pages = iam.get_paginator("list_policy_versions").paginate(PolicyArn=arn)
    return [v for page in pages for v in page["Versions"]]


def _default(versions: list[dict[str, Any]]) -> str | None:
    return next((str(v["VersionId"]) for v in versions if v.get("IsDefaultVersion")), None)


def _version_number(version_id: str) -> int:
    digits = version_id.removeprefix("v").split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _newest_first(versions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from sorted(
        versions,
        key=lambda v: (v["CreateDate"], _version_number(str(v["VersionId"]))),
        reverse=True,
    )


def _policy_mode(ctx: Context, arn: str) -> Mode:
    """remediate only if every baseline role holding the policy (or bounded by it) says so."""
    users = [
        r
        for r in ctx.account.roles.values()
        if _arn_in(r.managed_policies, arn)
        or (r.permissions_boundary is not None and _arn_in([r.permissions_boundary], arn))
    ]
    modes = {ctx.mode(r) for r in users} or {ctx.mode(None)}
    return "remediate" if modes == {"remediate"} else "alert"


def restore_policy_version(ctx: Context) -> Plan | NothingToDo:
    arn = ctx.finding.identity
    versions = _versions(ctx.iam, arn)
    current = _default(versions)
    actual = ctx.finding.actual if isinstance(ctx.finding.actual, dict) else {}
    offending = str(actual.get("default_version") or "")
    if offending and offending != "new" and offending != current:
        return NothingToDo(f"the default version is {current} now, not {offending} (stale event)")
    rejected = []
    target = None
    for version in _newest_first([v for v in versions if v["VersionId"] != current]):
        version_id = str(version["VersionId"])
        document = ctx.iam.get_policy_version(PolicyArn=arn, VersionId=version_id)
        doc = policy.load_document(document["PolicyVersion"]["Document"])
        if policy.grants_admin(doc) or policy.document_escalations(doc):
            rejected.append(version_id)
            continue
        target = version_id
        break
    if target is None:
        why = (
            f"every other version ({', '.join(rejected)}) grants administrator access or "
            "a privilege escalation"
            if rejected
            else "it has no other version"
        )
        return NothingToDo(f"no earlier version of {arn} to go back to: {why}", "failed")

    def apply() -> None:
        ctx.iam.set_default_policy_version(PolicyArn=arn, VersionId=target)

    def verify() -> str | None:
        back = _default(_versions(ctx.iam, arn))
        return None if back == target else f"the default version is {back}"

    return Plan(
        "restore_policy_version",
        arn,
        _policy_mode(ctx, arn),
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
        if _error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
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


_PLANNERS: dict[str, Planner] = {
    "restore_trust_policy": restore_trust_policy,
    "detach_role_policy": detach_role_policy,
    "delete_role_policy": delete_role_policy,
    "restore_inline_policy": restore_inline_policy,
    "restore_permissions_boundary": restore_permissions_boundary,
    "restore_instance_profile_role": restore_instance_profile_role,
    "restore_policy_version": restore_policy_version,
    "restore_public_access_block": restore_public_access_block,
}


def remediator_from_env(environ: Mapping[str, str]) -> AwsRemediator:
    """The AWS remediator; boto3 finds credentials, region and endpoint (AWS_ENDPOINT_URL).

    TRUSTWATCH_AWS_REMEDIATION_ROLE: the role to assume in another account, `{account}` in
    its ARN; unset, findings of other accounts fail.
    """
    return AwsRemediator(role_template=environ.get(ROLE_TEMPLATE_ENV, "").strip() or None)
