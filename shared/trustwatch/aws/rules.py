"""AWS rules (Contract 3, `aws.*`): one small function per rule id, evaluated from the event.

Roles are matched to the baseline by account id and role name (CloudTrail names roles,
not ARNs, in most IAM calls), in any case: IAM role, instance-profile and policy names "are
not distinguished by case" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
The role's mode override travels in each Hit.

Each rule reads its change's payload (trustwatch.aws.changes) by attribute, through
`change.payload_as`. `baseline_identity` finds the baseline role a change concerns (its
account id and role name, in any case).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsAccount, AwsRole, TemplateRef, iam_name_key
from trustwatch.aws.changes import (
    BoundaryPut,
    FunctionRoleSet,
    InlinePolicyDeleted,
    InlinePolicyPut,
    InstanceProfileChanged,
    ManagedPolicyChanged,
    PolicyVersion,
    RoleAssumed,
    RoleCreated,
    TrustUpdated,
)
from trustwatch.aws.events import assumed_role
from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.engine import Hit, computed_once, computed_per_baseline, rule
from trustwatch.findings import Severity

TRUST_KINDS = ("role.trust_updated", "role.created")


def _account(change: Change, baseline: Baseline) -> AwsAccount | None:
    account: AwsAccount | None = baseline.aws.accounts.get(change.scope)
    return account


def _role_entry(baseline: Baseline, account_id: str, role_name: str) -> tuple[str, AwsRole] | None:
    """(baseline spelling of the name, role) for a role name in an account, in any case."""
    account: AwsAccount | None = baseline.aws.accounts.get(account_id)
    return account.role_named(role_name) if account else None


def baseline_identity(baseline: Baseline, account_id: str, role_name: str) -> AwsRole | None:
    """The baseline role a role name in an account is (names match in any case), if any."""
    found = _role_entry(baseline, account_id, role_name)
    return found[1] if found else None


def _expected_trust(change: Change, baseline: Baseline, role: AwsRole) -> list[dict[str, Any]]:
    assert role.trust is not None
    found = _role_entry(baseline, change.scope, change.name)
    return templates.expected_trust(
        role.trust,
        partition=baseline.aws.partition,
        account_id=change.scope,
        role_name=found[0] if found else change.name,
        databricks_account_id=baseline.databricks.account_id if baseline.databricks else None,
        role_path=role.path,
    )


def _arns_contain(arns: list[str], arn: str) -> bool:
    key = policy.iam_arn_key(arn)
    return any(policy.iam_arn_key(a) == key for a in arns)


def _trust_diff(change: Change, baseline: Baseline) -> tuple[AwsRole, policy.TrustDiff] | None:
    # the four trust rules judge the same diff: computed once per change
    return computed_once("aws.trust_diff", lambda: _compare_trust(change, baseline))


def _prepared_trust(change: Change, baseline: Baseline, role: AwsRole) -> policy.ExpectedTrust:
    """The role's expected trust, rendered and normalized once per baseline."""
    return computed_per_baseline(
        baseline,
        ("aws.expected_trust", change.scope, iam_name_key(change.name)),
        lambda: policy.ExpectedTrust([*_expected_trust(change, baseline, role)]),
    )


def _compare_trust(change: Change, baseline: Baseline) -> tuple[AwsRole, policy.TrustDiff] | None:
    role = baseline_identity(baseline, change.scope, change.name)
    if role is None or role.trust is None:
        return None
    expected = _prepared_trust(change, baseline, role)
    # the payload's policy was checked when the change was made (trustwatch.aws.changes)
    diff = policy.compare_trust(change.payload_as(TrustUpdated).policy, expected, checked=True)
    return role, diff


def _trust_hit(role: AwsRole, summary: str, expected: Any, actual: Any) -> Hit:
    return Hit(summary, expected, actual, remediation="restore_trust_policy", mode=role.mode)


@rule("aws.trust.principal_added", "critical", TRUST_KINDS, "Trust policy admits a new principal")
def trust_principal_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _trust_diff(change, baseline)
    if found and found[1].principals_added:
        role, diff = found
        who = ", ".join(sorted(p["principal"] for p in diff.principals_added))
        yield _trust_hit(
            role,
            f"Role {change.name} now trusts {who}, which the baseline does not allow",
            _trust_summary(change, baseline, role),
            diff.principals_added,
        )


@rule(
    "aws.trust.external_id_missing",
    "critical",
    TRUST_KINDS,
    "External principal may assume without the sts:ExternalId",
)
def trust_external_id_missing(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _trust_diff(change, baseline)
    if found and found[1].external_id_missing:
        role, diff = found
        yield _trust_hit(
            role,
            f"Role {change.name} can be assumed without the expected sts:ExternalId "
            "(confused-deputy exposure)",
            _trust_summary(change, baseline, role),
            diff.external_id_missing,
        )


@rule("aws.trust.condition_weakened", "critical", TRUST_KINDS, "Trust condition weakened")
def trust_condition_weakened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _trust_diff(change, baseline)
    if found and found[1].condition_weakened:
        role, diff = found
        yield _trust_hit(
            role,
            f"Role {change.name}'s trust conditions are weaker than the baseline",
            _trust_summary(change, baseline, role),
            diff.condition_weakened,
        )


@rule(
    "aws.trust.expected_principal_removed",
    "medium",
    TRUST_KINDS,
    "Expected principal can no longer assume the role",
)
def trust_expected_principal_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _trust_diff(change, baseline)
    if found and found[1].expected_principals_removed:
        role, diff = found
        yield _trust_hit(
            role,
            f"Role {change.name} no longer lets the expected principals assume it "
            "(Databricks access breaks)",
            diff.expected_principals_removed,
            _trust_summary(change, baseline, role, actual_only=True),
        )


def _trust_summary(
    change: Change, baseline: Baseline, role: AwsRole, *, actual_only: bool = False
) -> Any:
    """Who may assume, as a compact list: the readable half of expected-vs-actual."""
    if actual_only:
        return _grants(change.payload_as(TrustUpdated).policy)
    spec = role.trust
    document: Any = (
        spec if not isinstance(spec, TemplateRef) else None  # a template's is rendered
    )
    allowed = computed_per_baseline(  # the expected half is the baseline's: kept
        baseline,
        ("aws.expected_trust_principals", change.scope, iam_name_key(change.name)),
        lambda: policy.trust_principals(
            document if document is not None else _expected_trust(change, baseline, role)[0]
        ),
    )
    if isinstance(spec, TemplateRef):
        return {"template": spec.template, "allows": _principals(allowed)}
    return {"allows": _principals(allowed)}


def _grants(doc: Any) -> list[dict[str, Any]]:
    return _principals(policy.trust_principals(doc))


def _principals(grants: list[policy.TrustGrant]) -> list[dict[str, Any]]:
    return [
        {
            "principal": g.principal,
            "external_id": sorted(g.external_ids) if g.external_ids is not None else None,
        }
        for g in grants
    ]


@rule(
    "aws.role.untracked_trusts_databricks",
    "high",
    TRUST_KINDS,
    "A role outside the baseline trusts Databricks",
)
def role_untracked_trusts_databricks(change: Change, baseline: Baseline) -> Iterator[Hit]:
    account = _account(change, baseline)
    if account is None or account.untracked_roles == "ignore":
        return
    if account.role_named(change.name) is not None or _responder_role(change, baseline):
        return
    hits = [
        g
        for g in policy.trust_principals(change.payload_as(TrustUpdated).policy)
        if templates.includes_databricks(g.principal)
    ]
    if not hits:
        return
    without_external_id = [g for g in hits if g.external_ids is None]
    # "*", {"AWS": "*"} or an account pattern: Databricks and everyone else may assume
    pattern = [g for g in hits if not templates.is_databricks_principal(g.principal)]
    yield Hit(
        f"Role {change.name} is not in the baseline but trusts "
        + ("a principal pattern that includes Databricks" if pattern else "a Databricks principal")
        + (" without an sts:ExternalId" if without_external_id else ""),
        {"baseline": "role not listed"},
        [
            {"principal": g.principal, "external_id": sorted(g.external_ids or []) or None}
            for g in hits
        ],
        severity=Severity.critical if without_external_id or pattern else None,
    )


@rule("aws.policy.managed_attached", "high", ["role.policy_attached"], "Managed policy attached")
def policy_managed_attached(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    arn = change.payload_as(ManagedPolicyChanged).policy_arn
    if role is None or _arns_contain(role.managed_policies, arn):
        return
    admin = policy.managed_policy_is_admin(arn)
    escalates = policy.managed_policy_escalates(arn)
    yield Hit(
        f"{arn.rsplit('/', 1)[-1]} attached to role {change.name}"
        + (
            " (grants administrator access)"
            if admin
            else " (privilege-escalation equivalent)"
            if escalates
            else ""
        ),
        {"managed_policies": role.managed_policies},
        {"attached": arn},
        severity=Severity.critical if admin or escalates else None,
        remediation="detach_role_policy",
        mode=role.mode,
    )


@rule("aws.policy.managed_detached", "medium", ["role.policy_detached"], "Expected policy detached")
def policy_managed_detached(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    arn = change.payload_as(ManagedPolicyChanged).policy_arn
    if role is None or not _arns_contain(role.managed_policies, arn):
        return
    yield Hit(
        f"Expected policy {arn.rsplit('/', 1)[-1]} detached from role {change.name}",
        {"managed_policies": role.managed_policies},
        {"detached": arn},
        remediation="attach_role_policy",
        mode=role.mode,
    )


def _expected_inline(change: Change, baseline: Baseline, spec: Any) -> dict[str, Any]:
    return templates.expected_policy(
        spec, partition=baseline.aws.partition, account_id=change.scope
    )


@rule("aws.policy.inline_changed", "high", ["role.inline_put"], "Inline policy grants more")
def policy_inline_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    if role is None:
        return
    put = change.payload_as(InlinePolicyPut)
    name = put.policy_name
    spec = role.inline_policies.get(name)
    expected = _expected_inline(change, baseline, spec) if spec is not None else None
    diff = policy.compare_permissions(put.policy, expected)
    if not diff.widened:
        return
    admin = policy.grants_admin(put.policy)
    # judged on what was added: the provider's own Spot statement holds iam:PutRolePolicy
    escalation = [] if admin else policy.escalations(diff.added, put.policy)
    drift: dict[str, Any] = {"policy": name, "added": diff.added}
    actual = {**drift, "escalation": escalation} if escalation else drift
    yield Hit(
        f"Inline policy {name} on role {change.name} grants more than the baseline"
        + (
            " (administrator access)"
            if admin
            else " (privilege-escalation equivalent)"
            if escalation
            else ""
        ),
        {"policy": name, "baseline": "not allowed" if spec is None else "template or document"},
        actual,
        detail=drift,  # the finding id stays what it was before escalations were named
        severity=Severity.critical if admin or escalation else None,
        remediation="delete_role_policy" if spec is None else "restore_inline_policy",
        mode=role.mode,
    )


@rule(
    "aws.policy.inline_deleted", "medium", ["role.inline_deleted"], "Expected inline policy deleted"
)
def policy_inline_deleted(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    name = change.payload_as(InlinePolicyDeleted).policy_name
    if role is None or name not in role.inline_policies:
        return
    yield Hit(
        f"Expected inline policy {name} deleted from role {change.name}",
        {"inline_policies": sorted(role.inline_policies)},
        {"deleted": name},
        remediation="restore_inline_policy",
        mode=role.mode,
    )


def _roles_using(change: Change, baseline: Baseline, policy_arn: str) -> list[tuple[str, str]]:
    """(role, "attached" | "boundary") for baseline roles that hold the policy or use it as
    their permissions boundary (a new boundary version lifts the boundary's limit)."""
    account = _account(change, baseline)
    if account is None:
        return []
    out = []
    for name, r in account.roles.items():
        if _arns_contain(r.managed_policies, policy_arn):
            out.append((name, "attached"))
        elif r.permissions_boundary and _arns_contain([r.permissions_boundary], policy_arn):
            out.append((name, "boundary"))
    return sorted(out)


def _uses(roles: list[tuple[str, str]]) -> str:
    attached = [n for n, how in roles if how == "attached"]
    bounded = [n for n, how in roles if how == "boundary"]
    parts = [f"attached to {', '.join(attached)}"] if attached else []
    if bounded:
        parts.append(f"the permissions boundary of {', '.join(bounded)}")
    return " and ".join(parts)


@rule(
    "aws.policy.version_changed",
    "high",
    ["policy.version_created", "policy.default_version_set"],
    "Watched customer policy has a new default version",
)
def policy_version_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    version = change.payload_as(PolicyVersion)
    if not version.made_default:
        return  # a non-default version grants nothing until it is made default
    arn = version.policy_arn
    roles = _roles_using(change, baseline, arn)
    if not roles:
        return
    actual: dict[str, Any] = {"default_version": version.version_id or "new"}
    if version.policy is not None:
        actual["grants_admin"] = policy.grants_admin(version.policy)
    drift = dict(actual)
    if version.policy is not None and not actual["grants_admin"]:
        escalation = policy.document_escalations(version.policy)
        if escalation:
            actual["escalation"] = escalation
    yield Hit(
        f"Policy {change.name}, {_uses(roles)}, has a new default version",
        {"policy": arn, "default_version": "unchanged"},
        actual,
        detail=drift,  # the finding id stays what it was before escalations were named
        severity=Severity.critical
        if actual.get("grants_admin") or "escalation" in actual
        else None,
        remediation="restore_policy_version",
    )


@rule("aws.role.deleted", "high", ["role.deleted"], "Baseline role deleted")
def role_deleted(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if baseline_identity(baseline, change.scope, change.name) is None:
        return
    yield Hit(
        f"Baseline role {change.name} was deleted",
        {"role": change.name, "exists": True},
        {"role": change.name, "exists": False},
    )


@rule(
    "aws.role.boundary_removed",
    "high",
    ["role.boundary_deleted", "role.boundary_put", "role.created"],
    "Permissions boundary removed or changed",
)
def role_boundary_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    if role is None or role.permissions_boundary is None:
        return
    actual = _boundary_after(change)
    if actual is not None and _arns_contain([role.permissions_boundary], actual):
        return
    yield Hit(
        f"Permissions boundary of role {change.name} "
        + ("removed" if actual is None else f"changed to {actual}"),
        {"permissions_boundary": role.permissions_boundary},
        {"permissions_boundary": actual},
        remediation="restore_permissions_boundary",
        mode=role.mode,
    )


def _boundary_after(change: Change) -> str | None:
    """The permissions boundary the change leaves the role with (None: none)."""
    if change.kind == "role.boundary_deleted":
        return None
    if change.kind == "role.boundary_put":
        return change.payload_as(BoundaryPut).boundary
    return change.payload_as(RoleCreated).boundary


@rule(
    "aws.instance_profile.changed",
    "medium",
    ["instance_profile.role_added", "instance_profile.role_removed", "instance_profile.deleted"],
    "Watched instance profile's role changed",
)
def instance_profile_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    account = _account(change, baseline)
    found = account.instance_profile_named(change.name) if account else None
    if found is None:
        return
    profile = found[1]
    role = change.payload_as(InstanceProfileChanged).role_name
    same_role = iam_name_key(role) == iam_name_key(profile.role)
    expected = {"instance_profile": change.name, "role": profile.role}
    if change.kind == "instance_profile.role_added" and not same_role:
        yield Hit(
            f"Instance profile {change.name} now holds role {role} instead of {profile.role}",
            expected,
            {"instance_profile": change.name, "role_added": role},
            remediation="restore_instance_profile_role",
        )
    elif change.kind == "instance_profile.role_removed" and same_role:
        yield Hit(
            f"Role {role} removed from instance profile {change.name}",
            expected,
            {"instance_profile": change.name, "role_removed": role},
            remediation="restore_instance_profile_role",
        )
    elif change.kind == "instance_profile.deleted":
        yield Hit(
            f"Watched instance profile {change.name} deleted",
            expected,
            {"instance_profile": change.name, "deleted": True},
        )


# The responder's execution role is assumed by Lambda (deploy/aws/main.tf trusts
# lambda.amazonaws.com); anyone else using it acts with the responder's rights.
RESPONDER_SERVICES = frozenset({"service:lambda.amazonaws.com"})


def _responder_role(change: Change, baseline: Baseline) -> str | None:
    """The actors.responder entry naming the change's role (account + name in any case)."""
    if isinstance(change.payload, FunctionRoleSet):  # the subject is a function, not a role
        return None
    return responder_entry(baseline, change.scope, change.name)


def responder_entry(baseline: Baseline, account: str, role_name: str) -> str | None:
    """The actors.responder entry that is this role (account + name in any case), if any."""
    for entry in baseline.actors.responder:
        parts = entry.strip().split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam":
            continue
        if not parts[5].startswith("role/") or parts[4] != account:
            continue
        if iam_name_key(parts[5].rsplit("/", 1)[-1]) == iam_name_key(role_name):
            return entry
    return None


def _responder_role_arn(baseline: Baseline, role_arn: str) -> str | None:
    """The actors.responder entry a role ARN (any path, name in any case) is, if any."""
    parts = role_arn.strip().split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam":
        return None
    if not parts[5].startswith("role/"):
        return None
    return responder_entry(baseline, parts[4], parts[5].rsplit("/", 1)[-1])


def unwatched_role_arns(baseline: Baseline) -> Callable[[str], bool]:
    """Is an AssumeRole roleArn one no rule of role.assumed reads (events.PREFILTER_SUBJECT):
    a role ARN with its account, naming neither a baseline role nor the responder's (the
    two rules' first test, names in any case)? False where unsure: not a role ARN (an
    error the parser reports), no account (the record's own decides)."""

    @functools.lru_cache(maxsize=4096)  # a trail assumes the same few roles again and again
    def unwatched(arn: str) -> bool:
        subject = assumed_role(arn)
        if subject is None or not subject[0]:
            return False
        account, name = subject
        return (
            baseline_identity(baseline, account, name) is None
            and responder_entry(baseline, account, name) is None
        )

    return unwatched


RESPONDER_KINDS = (
    "role.created",  # re-created after a delete: whoever creates it owns it
    "role.trust_updated",
    "role.deleted",
    "role.policy_attached",
    "role.policy_detached",
    "role.inline_put",
    "role.inline_deleted",
    "role.boundary_put",
    "role.boundary_deleted",
    # a Lambda function given the responder's role runs as the responder: its changes
    # would pass the loop guard (engine.evaluate) as the responder's own
    "function.created",
    "function.configuration_updated",
    # the code or settings (TRUSTWATCH_BASELINE, TRUSTWATCH_REMEDIATION) of a function that
    # runs as the responder's role: whoever changes them acts as the responder
    "function.code_updated",
)


@rule(
    "aws.responder.identity_changed",
    "critical",
    RESPONDER_KINDS,
    "The responder's own role changed by someone else",
)
def responder_identity_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    # the responder's own calls never reach here (engine.evaluate's loop guard)
    if isinstance(change.payload, FunctionRoleSet):
        yield from _function_runs_as_responder(change, baseline, change.payload)
        return
    entry = _responder_role(change, baseline)
    if entry is None:
        return
    what = change.event_name
    yield Hit(
        f"{what} on the responder's role {change.name} by someone other than the responder: "
        "whoever controls its trust or permissions controls remediation",
        {"responder": entry, "changed_by": "the responder only"},
        {"call": what, **_call_detail(change.payload)},
    )


def _function_runs_as_responder(
    change: Change, baseline: Baseline, function: FunctionRoleSet
) -> Iterator[Hit]:
    """CreateFunction / UpdateFunctionConfiguration with the responder's role as the
    execution role: the function acts as the responder, unwatched."""
    entry = _responder_role_arn(baseline, function.role_arn)
    if entry is None:
        return
    if function.role_unchanged:
        changed = "code" if change.kind == "function.code_updated" else "configuration"
        yield Hit(
            f"Lambda function {change.name}, which runs as the responder's role, had its "
            f"{changed} changed ({change.event_name}) by someone other than the responder: "
            "what it runs now acts as the responder, its changes ignored as the responder's own",
            {"responder": entry, "changed_by": "the responder's deploy only"},
            {"call": change.event_name, "function": change.identity, "role": function.role_arn},
        )
        return
    yield Hit(
        f"Lambda function {change.name} now runs as the responder's role "
        f"({change.event_name} by someone other than the responder): its changes would be "
        "taken for the responder's own and ignored",
        {"responder": entry, "runs_as_responder": "the responder's function only"},
        {"call": change.event_name, "function": change.identity, "role": function.role_arn},
        # a new function is removed; an existing one gets back the role it ran as before
        # (not in the event: remediation would read it). Approved automation (the
        # responder's own deploy) is reported with remediation skipped.
        remediation=(
            "delete_function" if change.kind == "function.created" else "restore_function_role"
        ),
    )


def _call_detail(payload: object) -> dict[str, Any]:
    """What a call on a role set, as a finding shows it: names and ARNs, the policy last."""
    match payload:
        case RoleCreated(policy=document, boundary=boundary):
            return {"boundary": boundary, "policy": document}
        case TrustUpdated(policy=document):
            return {"policy": document}
        case ManagedPolicyChanged(policy_arn=arn):
            return {"policy_arn": arn}
        case InlinePolicyPut(policy_name=name, policy=document):
            return {"policy_name": name, "policy": document}
        case InlinePolicyDeleted(policy_name=name):
            return {"policy_name": name}
        case BoundaryPut(boundary=arn):
            return {"boundary": arn}
        case _:  # RoleDeleted, BoundaryDeleted: the call is all there is
            return {}


def _caller_allowed(assumed: RoleAssumed, grants: list[policy.TrustGrant]) -> bool:
    action = assumed.assume_action
    fitting = [g for g in grants if any(policy.glob_covers(a, action) for a in g.actions)]
    if assumed.callers:
        return any(
            policy.principal_covers(g.principal, c) or _same_provider(g.principal, c)
            for g in fitting
            for c in assumed.callers
        )
    account = assumed.caller_account
    # only the account is logged (cross-account AWSAccount callers): any trusted principal
    # of that account may have been the caller
    return bool(account) and any(
        g.principal == "*" or g.principal.split(":")[4:5] == [account] for g in fitting
    )


def _same_provider(granted: str, caller: str) -> bool:
    """An OIDC provider ARN in the trust vs the host CloudTrail logs for the caller."""
    if not (granted.startswith("federated:") and caller.startswith("federated:")):
        return False
    host = caller.removeprefix("federated:")
    return granted.endswith(f":oidc-provider/{host}") or granted.lower() == caller.lower()


@rule(
    "aws.assume_role.unexpected_principal",
    "critical",
    ["role.assumed"],
    "A watched role assumed by a principal its baseline trust does not allow",
)
def assume_role_unexpected_principal(change: Change, baseline: Baseline) -> Iterator[Hit]:
    """A successful AssumeRole* the baseline trust would refuse: the trust was widened,
    perhaps before trustwatch ran or through an event that was lost."""
    assumed = change.payload_as(RoleAssumed)
    callers = list(assumed.callers)
    who = ", ".join(callers) or f"account {assumed.caller_account or 'unknown'}"
    if _responder_role(change, baseline):
        if set(callers) & RESPONDER_SERVICES:
            return
        yield Hit(
            f"The responder's role {change.name} was assumed by {who}",
            {"assumed_by": sorted(RESPONDER_SERVICES)},
            {"assumed_by": callers or who, "call": change.event_name},
            detail={"callers": callers, "account": assumed.caller_account},
        )
        return
    role = baseline_identity(baseline, change.scope, change.name)
    if role is None or role.trust is None or (not callers and not assumed.caller_account):
        return
    grants = [
        g for doc in _expected_trust(change, baseline, role) for g in policy.trust_principals(doc)
    ]
    if _caller_allowed(assumed, grants):
        return
    yield Hit(
        f"Role {change.name} was assumed by {who}, which its baseline trust does not allow "
        "(the trust policy was widened)",
        _trust_summary(change, baseline, role),
        {"assumed_by": callers or who, "call": change.event_name},
        detail={"callers": callers, "account": assumed.caller_account},
        remediation="restore_trust_policy",
        mode=role.mode,
    )


def _expected_external_id(baseline: Baseline, role: AwsRole) -> str | None:
    spec = role.trust
    if not isinstance(spec, TemplateRef):
        return None
    if spec.template == "databricks-cross-account" and baseline.databricks:
        return baseline.databricks.account_id
    if spec.template == "databricks-unity-catalog":
        return spec.external_id
    return None


@rule(
    "aws.assume_role.external_id_mismatch",
    "high",
    ["role.assumed"],
    "AssumeRole with a wrong or absent ExternalId",
    on_failed=True,
)
def assume_role_external_id_mismatch(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = baseline_identity(baseline, change.scope, change.name)
    if role is None or change.event_name != "AssumeRole":
        return  # sts:ExternalId is a parameter of AssumeRole only
    expected = _expected_external_id(baseline, role)
    if expected is None:
        return
    assumed = change.payload_as(RoleAssumed)
    given = assumed.external_id
    if assumed.parameters_recorded:
        if given == expected:
            return
    elif assumed.caller_account == change.scope:
        return  # a same-account caller denied, parameters not logged: not a confused deputy
    yield Hit(
        f"AssumeRole on {change.name} with "
        + ("no ExternalId" if given is None else "a wrong ExternalId")
        + (f" ({change.error_code})" if change.error_code else ""),
        {"external_id": expected},
        {"external_id": given, "session_name": assumed.session_name},
        detail={"actor": change.actor, "external_id": given, "event_id": change.event_id},
    )


from trustwatch.aws import bucket_rules as _bucket_rules  # noqa: E402, F401  (aws.bucket.*)
