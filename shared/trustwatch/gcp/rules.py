"""GCP rules: IAM policy, service account, bucket and custom role changes vs the baseline.

Finding fields: `scope` is the project id (`folders/F` / `organizations/O` for grants made
there). `identity` is the baseline object concerned: the service account email for
`gcp.iam.*` and `gcp.sa.*` (for a project-level grant, each baseline account it reaches),
the bucket name for `gcp.bucket.*` (`gcp.bucket.public_access_opened`: one finding per
setting a watched bucket no longer holds, judged on the bucket's settings after the call,
read from the API when the entry lacks them), the custom role's full name
(`projects/P/roles/R`) for `gcp.role.custom_role_changed`.

Grants are read from `bindingDeltas` when logged, else from the full policy the call set,
which is then held against the baseline as a whole ("does it grant anything the baseline
does not?"). Members compare case-insensitively. Folder- and organization-level grants of
an impersonation role reach every baseline account (the hierarchy is not in the baseline).

Roles are judged by their permissions (`trustwatch.gcp.roles`): a role may impersonate
when it holds a permission to act as, mint a credential for, or grant itself access to a
service account; a role whose permissions are unknown may (a high finding, "permissions
unknown"): a custom role the baseline does not pin, or a predefined role outside the
doc-transcribed table whose id looks risky (owner, editor, an iam./resourcemanager./
storage. admin, one naming serviceAccount, ...). Other predefined roles outside the table
hold none of the watched permissions. Unknown never counts as bucket access. The responder's own service accounts (`actors.responder`)
are protected like baseline accounts: nobody may act as them, no key may be made for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from trustwatch.baseline import Baseline, Mode
from trustwatch.changes import Change
from trustwatch.engine import Hit, rule
from trustwatch.findings import Severity
from trustwatch.frozen import frozen
from trustwatch.gcp.baseline import GcpBucket, GcpCustomRole, GcpServiceAccount
from trustwatch.gcp.changes import (
    BucketSettings,
    CustomRoleChanged,
    CustomRoleUpdated,
    HmacKeyUpdated,
    PolicySet,
    ServiceAccountChanged,
    ServiceAccountKeyCreated,
)
from trustwatch.gcp.roles import BUCKET_PERMISSIONS, IMPERSONATION_PERMISSIONS, permissions_of

PUBLIC_MEMBERS = frozenset({"allusers", "allauthenticatedusers"})
# Google-managed service agents live in Google's projects (gcp-sa-*, and a few older
# ones); enabling an API grants them their roles/*.serviceAgent role, which often holds
# actAs: that is the platform, not a new impersonator.
# https://cloud.google.com/iam/docs/service-agents
_SERVICE_AGENT = re.compile(
    r"serviceaccount:service-\d+@(gcp-sa-[a-z0-9-]+|compute-system|container-engine-robot"
    r"|dataflow-service-producer-prod|dataproc-accounts|serverless-robot-prod"
    r"|gcf-admin-robot)\.iam\.gserviceaccount\.com"
)
POLICY_KINDS = (
    "resource.iam_policy_set",
    "service_account.iam_policy_set",
    "bucket.iam_policy_set",
)


@frozen
class Account:
    project: str
    email: str
    spec: GcpServiceAccount
    responder: bool = False  # one of trustwatch's own identities (actors.responder)


def norm_member(member: str) -> str:
    return member.strip().lower()


def accounts(baseline: Baseline) -> dict[str, Account]:
    return {
        email.lower(): Account(project_id, email, spec)
        for project_id, project in baseline.gcp.projects.items()
        for email, spec in project.service_accounts.items()
    }


def protected(baseline: Baseline) -> dict[str, Account]:
    """The baseline accounts and the responder's own: nobody unlisted may act as them."""
    out = {}
    for name in baseline.actors.responder:
        email = name.strip().lower()
        if email.endswith(".gserviceaccount.com") and "@" in email:
            domain = email.split("@", 1)[1]
            project = domain.split(".", 1)[0] if domain.endswith(".iam.gserviceaccount.com") else ""
            out[email] = Account(project, email, GcpServiceAccount(), responder=True)
    return out | accounts(baseline)  # listed under service_accounts: its spec stands


def is_responder(baseline: Baseline, member: str) -> bool:
    _, _, name = norm_member(member).partition(":")
    return name in {norm_member(r) for r in baseline.actors.responder}


def service_agent_grant(role: str, member: str) -> bool:
    """A Google-managed service agent given its own serviceAgent role."""
    return "serviceagent" in role.lower() and bool(_SERVICE_AGENT.fullmatch(norm_member(member)))


def baseline_identity(baseline: Baseline, member: str) -> Account | None:
    """The baseline service account an IAM member (`serviceAccount:EMAIL`) is, if any."""
    kind, _, email = norm_member(member).partition(":")
    return accounts(baseline).get(email) if kind == "serviceaccount" else None


def mode_of(found: Account | GcpBucket | GcpCustomRole) -> Mode | None:
    """The mode the baseline sets for what a rule found (None: the defaults' mode)."""
    return found.spec.mode if isinstance(found, Account) else found.mode


def bucket_of(baseline: Baseline, name: str) -> GcpBucket | None:
    return next(
        (p.buckets[name] for p in baseline.gcp.projects.values() if name in p.buckets), None
    )


def custom_role_of(baseline: Baseline, name: str) -> GcpCustomRole | None:
    for project_id, project in baseline.gcp.projects.items():
        for key, spec in project.custom_roles.items():
            full = key if "/" in key else f"projects/{project_id}/roles/{key}"
            if full == name:
                return spec
    return None


Condition = tuple[tuple[str, str], ...] | None


def granted(policy: PolicySet) -> list[tuple[str, str, Condition]]:
    """(role, member, condition) the call granted: its ADD deltas, else every binding of
    the policy (whose conditions the full policy does not keep apart: None)."""
    if policy.deltas is not None:
        return [(d.role, d.member, d.condition) for d in policy.deltas if d.action == "ADD"]
    return [(b.role, member, None) for b in policy.bindings or () for member in b.members]


def revoked(policy: PolicySet, expected: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Which of the `expected` (role, member) grants the call took away."""
    wanted = {(role, norm_member(m)): (role, m) for role, m in expected}
    if policy.deltas is not None:
        gone = {(d.role, norm_member(d.member)) for d in policy.deltas if d.action == "REMOVE"}
    else:
        present = {(b.role, norm_member(m)) for b in policy.bindings or () for m in b.members}
        gone = set(wanted) - present
    return [wanted[key] for key in wanted if key in gone]


def evaluable(change: Change) -> bool:
    return not change.needs_enrichment


def powerful(role: str) -> bool:
    return role in ("roles/owner", "roles/editor") or "admin" in role.rsplit("/", 1)[-1].lower()


def _binding(
    resource: str, role: str, member: str, condition: Condition = None
) -> dict[str, object]:
    """A finding's `actual`: the grant; a conditional one names its condition (which
    binding of the role it is, for remediation)."""
    out: dict[str, object] = {"resource": resource, "role": role, "member": norm_member(member)}
    if condition:
        out["condition"] = dict(condition)
    return out


def _expected_at(account: Account, policy: PolicySet, role: str) -> bool:
    """Is this grant one the baseline lists (a project role on the account's own project)?"""
    return policy.resource == f"projects/{account.project}" and role in account.spec.project_roles


@rule(
    "gcp.iam.binding_added",
    "high",
    POLICY_KINDS,
    "A baseline service account was granted a role the baseline does not list",
)
def iam_binding_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if not evaluable(change):
        return
    policy = change.payload_as(PolicySet)
    resource = policy.resource
    if change.kind == "bucket.iam_policy_set" and bucket_of(baseline, resource) is not None:
        return  # a watched bucket: gcp.bucket.binding_added judges it against its bindings
    for role, member, condition in granted(policy):
        account = baseline_identity(baseline, member)
        if account is None or _expected_at(account, policy, role):
            continue
        yield Hit(
            summary=f"{account.email} was granted {role} on {resource}, not in the baseline",
            expected={"project": account.project, "project_roles": account.spec.project_roles},
            actual=_binding(resource, role, member, condition),
            severity=Severity.critical if powerful(role) else None,
            identity=account.email,
            remediation="remove_iam_binding",
            mode=mode_of(account),
        )


@rule(
    "gcp.iam.impersonation_granted",
    "critical",
    ("resource.iam_policy_set", "service_account.iam_policy_set"),
    "A member not listed may now act as a baseline service account",
)
def iam_impersonation_granted(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if not evaluable(change):
        return
    policy = change.payload_as(PolicySet)
    resource = policy.resource
    for role, member, condition in granted(policy):
        held = permissions_of(role, baseline)
        if held is not None and not held & IMPERSONATION_PERMISSIONS:
            continue
        grantee = baseline_identity(baseline, member)
        if grantee is not None and _expected_at(grantee, policy, role):
            continue  # e.g. the automation account's own expected roles/owner
        if is_responder(baseline, member):
            continue  # trustwatch's own rights (to remediate): its changes are ignored too
        if service_agent_grant(role, member):
            continue
        why = "its permissions are unknown" if held is None else ", ".join(sorted(held))
        for account in _reached(change.kind, policy, baseline):
            allowed = {norm_member(m) for m in account.spec.impersonators}
            if norm_member(member) in allowed or norm_member(member).endswith(":" + account.email):
                continue
            whose = " (trustwatch's own identity)" if account.responder else ""
            yield Hit(
                summary=f"{member} may now act as {account.email}{whose} "
                f"({role} on {resource}: {why})",
                expected={"impersonators": account.spec.impersonators},
                actual=_binding(resource, role, member, condition),
                severity=Severity.high if held is None else None,
                identity=account.email,
                remediation="remove_iam_binding",
                mode=mode_of(account),
            )


def _reached(kind: str, policy: PolicySet, baseline: Baseline) -> list[Account]:
    """The baseline accounts a grant on this resource lets someone act as."""
    everyone = protected(baseline)
    resource = policy.resource
    if kind == "service_account.iam_policy_set":
        return [everyone[resource.lower()]] if resource.lower() in everyone else []
    if policy.resource_type == "project":
        return [a for a in everyone.values() if resource == f"projects/{a.project}"]
    return list(everyone.values())  # folder / organization: may hold any project


@rule(
    "gcp.iam.binding_removed",
    "medium",
    ("resource.iam_policy_set",),
    "A project role the baseline expects a service account to hold was removed",
)
def iam_binding_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if not evaluable(change):
        return
    policy = change.payload_as(PolicySet)
    if policy.resource_type != "project":
        return
    resource = policy.resource
    for account in accounts(baseline).values():
        if resource != f"projects/{account.project}":
            continue
        expected = [
            (role, f"serviceAccount:{account.email}") for role in account.spec.project_roles
        ]
        for role, member in revoked(policy, expected):
            yield Hit(
                summary=f"expected {role} of {account.email} on {resource} was removed",
                expected=_binding(resource, role, member),
                actual=None,
                identity=account.email,
                detail=_binding(resource, role, member),
                remediation="restore_iam_binding",
                mode=mode_of(account),
            )


@rule(
    "gcp.sa.key_created",
    "critical",
    (
        "service_account.key_created",
        "service_account.key_enabled",
        "service_account.hmac_key_created",
        "service_account.hmac_key_updated",
    ),
    "A user-managed or HMAC key was made or enabled for a service account whose baseline allows none",
)
def sa_key_created(change: Change, baseline: Baseline) -> Iterator[Hit]:
    key = change.payload_as(ServiceAccountKeyCreated)
    account = protected(baseline).get(key.email)
    if not evaluable(change) or account is None or account.spec.user_managed_keys:
        return
    key_id = key.key_id
    shown = key_id or "(id not logged)"
    if change.kind == "service_account.hmac_key_updated":
        # storage.hmacKeys.update to ACTIVE: a deactivated key signs requests again
        # https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
        if change.payload_as(HmacKeyUpdated).state != "ACTIVE":
            return  # INACTIVE / DELETED: stricter
        yield Hit(
            summary=f"HMAC key {shown} re-activated for {account.email}",
            expected={"user_managed_keys": False},
            actual={"hmac_access_id": key_id, "state": "ACTIVE"},
            # each re-activation is new drift (it may undo a deactivation remediation)
            detail={"hmac_access_id": key_id, "activated": change.event_id},
            identity=account.email,
            remediation="deactivate_hmac_key",
            mode=mode_of(account),
        )
        return
    if change.kind == "service_account.hmac_key_created":
        # https://cloud.google.com/storage/docs/authentication/hmackeys
        yield Hit(
            summary=f"HMAC key {shown} created for {account.email}",
            expected={"user_managed_keys": False},
            actual={"hmac_access_id": key_id},
            detail={"hmac_access_id": key_id or change.event_id},
            identity=account.email,
            remediation="deactivate_hmac_key",
            mode=mode_of(account),
        )
        return
    enabled = change.kind == "service_account.key_enabled"
    yield Hit(
        summary=f"user-managed key {shown} {'enabled' if enabled else 'created'} "
        f"for {account.email}",
        expected={"user_managed_keys": False},
        actual={"key_id": key_id, "enabled": True} if enabled else {"key_id": key_id},
        # each re-enabling is new drift (it may undo a disabled-key remediation)
        detail={"key_id": key_id, "enabled": change.event_id}
        if enabled
        else {"key_id": key_id or change.event_id},
        identity=account.email,
        remediation="disable_service_account_key",
        mode=mode_of(account),
    )


@rule(
    "gcp.sa.deleted_or_disabled",
    "high",
    ("service_account.deleted", "service_account.disabled"),
    "A baseline service account was deleted or disabled",
)
def sa_deleted_or_disabled(change: Change, baseline: Baseline) -> Iterator[Hit]:
    account = protected(baseline).get(change.payload_as(ServiceAccountChanged).email)
    if not evaluable(change) or account is None:
        return
    what = change.kind.rsplit(".", 1)[-1]
    yield Hit(
        summary=f"service account {account.email} was {what}",
        expected={"state": "enabled"},
        actual={"state": what},
        identity=account.email,
        remediation="undelete_service_account" if what == "deleted" else "enable_service_account",
        mode=mode_of(account),
    )


@rule(
    "gcp.bucket.binding_added",
    "high",
    ("bucket.iam_policy_set", "resource.iam_policy_set"),
    "A watched bucket grants (or a node above it passes down) a member or role the baseline "
    "does not list",
)
def bucket_binding_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.kind == "resource.iam_policy_set":
        yield from _inherited_bucket_grants(change, baseline)
        return
    policy = change.payload_as(PolicySet)
    bucket = bucket_of(baseline, policy.resource)
    if not evaluable(change) or bucket is None:
        return
    name = policy.resource
    for role, member, condition in granted(policy):
        if norm_member(member) in {norm_member(m) for m in bucket.bindings.get(role, [])}:
            continue
        public = norm_member(member) in PUBLIC_MEMBERS
        yield Hit(
            summary=f"bucket {name} grants {role} to {member}"
            + (" (public)" if public else "")
            + ", not in the baseline",
            expected={"bindings": bucket.bindings},
            actual=_binding(name, role, member, condition),
            severity=Severity.critical if public else None,
            identity=name,
            remediation="remove_bucket_binding",
            mode=mode_of(bucket),
        )


def _inherited_bucket_grants(change: Change, baseline: Baseline) -> Iterator[Hit]:
    """Storage permissions granted on a project, folder or organization reach every bucket
    below it: https://cloud.google.com/storage/docs/access-control/iam#policy-inheritance"""
    if not evaluable(change):
        return
    policy = change.payload_as(PolicySet)
    resource = policy.resource
    whole = policy.resource_type != "project"  # folder / org: may hold any project
    reached = [
        (name, bucket)
        for project_id, project in baseline.gcp.projects.items()
        if whole or resource == f"projects/{project_id}"
        for name, bucket in project.buckets.items()
    ]
    for role, member, condition in granted(policy) if reached else []:
        held = permissions_of(role, baseline) or frozenset()
        if not held & BUCKET_PERMISSIONS or is_responder(baseline, member):
            continue
        if service_agent_grant(role, member):
            continue
        public = norm_member(member) in PUBLIC_MEMBERS
        for name, bucket in reached:
            if norm_member(member) in {norm_member(m) for m in bucket.bindings.get(role, [])}:
                continue
            yield Hit(
                summary=f"{role} for {member} on {resource} reaches watched bucket {name}"
                + (" (public)" if public else "")
                + ", not in the baseline",
                expected={"bindings": bucket.bindings},
                actual=_binding(resource, role, member, condition),
                severity=Severity.critical if public else None,
                identity=name,
                remediation="remove_iam_binding",
                mode=mode_of(bucket),
            )


@rule(
    "gcp.bucket.binding_removed",
    "medium",
    ("bucket.iam_policy_set",),
    "An expected binding of a watched bucket was removed",
)
def bucket_binding_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    policy = change.payload_as(PolicySet)
    bucket = bucket_of(baseline, policy.resource)
    if not evaluable(change) or bucket is None:
        return
    name = policy.resource
    expected = [(role, m) for role, members in bucket.bindings.items() for m in members]
    for role, member in revoked(policy, expected):
        yield Hit(
            summary=f"expected {role} of {member} on bucket {name} was removed",
            expected=_binding(name, role, member),
            actual=None,
            detail=_binding(name, role, member),
            identity=name,
            remediation="restore_bucket_binding",
            mode=mode_of(bucket),
        )


@rule(
    "gcp.bucket.public_access_opened",
    "critical",
    ("bucket.settings_updated",),
    "A watched bucket no longer enforces public access prevention or uniform bucket-level access",
)
def bucket_public_access_opened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    """Public access prevention off (`inherited`: only an organization policy, if any, keeps
    `allUsers` / `allAuthenticatedUsers` out) lets anyone with setIamPolicy make the bucket
    public: https://cloud.google.com/storage/docs/public-access-prevention. Uniform
    bucket-level access off brings back object ACLs, which IAM policies and the baseline's
    bindings do not show: https://cloud.google.com/storage/docs/uniform-bucket-level-access
    """
    settings = change.payload_as(BucketSettings)
    bucket = bucket_of(baseline, settings.bucket)
    if not evaluable(change) or bucket is None:
        return
    name = settings.bucket
    pap = settings.public_access_prevention
    if bucket.public_access_prevention == "enforced" and pap is not None and pap != "enforced":
        yield Hit(
            summary=f"bucket {name}: public access prevention is {pap}, not enforced: "
            "it may be made public",
            expected={"public_access_prevention": "enforced"},
            actual={"public_access_prevention": pap},
            detail={"bucket": name, "public_access_prevention": pap},
            identity=name,
            remediation="enforce_public_access_prevention",
            mode=mode_of(bucket),
        )
    if (
        bucket.uniform_bucket_level_access == "required"
        and settings.uniform_bucket_level_access is False
    ):
        yield Hit(
            summary=f"bucket {name}: uniform bucket-level access disabled: object ACLs "
            "can grant access the IAM policy does not show",
            expected={"uniform_bucket_level_access": True},
            actual={"uniform_bucket_level_access": False},
            detail={"bucket": name, "uniform_bucket_level_access": False},
            identity=name,
            remediation="enable_uniform_bucket_level_access",
            mode=mode_of(bucket),
        )


@rule(
    "gcp.role.custom_role_changed",
    "high",
    ("custom_role.updated", "custom_role.deleted", "custom_role.undeleted"),
    "A watched custom role's permissions or launch stage changed (or the role was deleted)",
)
def role_custom_role_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    role = change.payload_as(CustomRoleChanged)
    name = role.role
    spec = custom_role_of(baseline, name)
    if not evaluable(change) or spec is None:
        return
    expected = {"permissions": spec.permissions} if spec.permissions is not None else {}
    if change.kind == "custom_role.deleted":
        yield Hit(
            summary=f"watched custom role {name} was deleted",
            expected=expected,
            actual=None,
            detail={"role": name, "deleted": True},
            identity=name,
            remediation="undelete_custom_role",
            mode=mode_of(spec),
        )
        return
    stage = _stage_change(role, spec)
    if stage is not None:
        yield stage
    if change.kind == "custom_role.undeleted":
        actual = _undeleted_permissions(role, spec)
    else:
        actual = _permission_change(change.payload_as(CustomRoleUpdated), spec)
    if actual is None:
        return
    yield Hit(
        summary=f"permissions of watched custom role {name} changed",
        expected=expected,
        actual=actual,
        identity=name,
        remediation="restore_custom_role",
        mode=mode_of(spec),
    )


def _stage_change(role: CustomRoleChanged, spec: GcpCustomRole) -> Hit | None:
    """A stage the baseline does not expect: DISABLED stops every binding of the role
    granting (breakage); leaving a pinned DISABLED re-enables them.
    https://cloud.google.com/iam/docs/creating-custom-roles#testing_and_deploying"""
    stage, name = role.stage, role.role
    if stage is None or stage == spec.stage or (spec.stage is None and stage != "DISABLED"):
        return None
    if stage == "DISABLED":
        summary = f"watched custom role {name} was disabled: its grants stop working"
    elif spec.stage == "DISABLED":
        summary = (
            f"watched custom role {name} was re-enabled (stage {stage}): its grants work again"
        )
    else:
        summary = f"watched custom role {name} moved to stage {stage}, not {spec.stage}"
    return Hit(
        summary=summary,
        expected={"stage": spec.stage or "any but DISABLED"},
        actual={"stage": stage},
        detail={"role": name, "stage": stage},
        identity=name,
        remediation="restore_custom_role",
        mode=mode_of(spec),
    )


def _undeleted_permissions(
    role: CustomRoleChanged, spec: GcpCustomRole
) -> dict[str, object] | None:
    """An undeleted role is back as it was: drift only against pinned permissions."""
    after = role.permissions
    if spec.permissions is None or after is None or set(after) == set(spec.permissions):
        return None
    pinned = set(spec.permissions)
    return {"added": sorted(set(after) - pinned), "removed": sorted(pinned - set(after))}


def _permission_change(role: CustomRoleUpdated, spec: GcpCustomRole) -> dict[str, object] | None:
    """What changed in the role's permissions against the baseline, or None if nothing."""
    added, removed, after = set(role.added), set(role.removed), role.permissions
    mask = role.update_mask
    if mask is not None and "included_permissions" not in mask and not (added or removed):
        return None  # title, description or stage only
    if spec.permissions is None:  # any permission change is drift
        if role.delta_logged or added or removed:
            return (
                {"added": sorted(added), "removed": sorted(removed)} if added or removed else None
            )
        return {"permissions": list(after)} if after is not None else None
    pinned = set(spec.permissions)
    if after is not None:
        if set(after) == pinned:
            return None
        return {"added": sorted(set(after) - pinned), "removed": sorted(pinned - set(after))}
    extra, lost = added - pinned, removed & pinned
    return {"added": sorted(extra), "removed": sorted(lost)} if extra or lost else None
