"""Azure rules: role assignment and access connector changes against the baseline.

Finding fields: `scope` is the subscription id (lower-case; for an assignment the
subscription of the assignment's scope). `identity` is the principal id (object id, lower
case) for role assignment rules, including `protected_scope`, where it is the principal who
gained access; it is the baseline `resource_id` (access connector or user-assigned
identity) for `azure.identity.changed`.

Role assignments compare semantically: role name, GUID and definition id are one role; ids
and scopes compare case-insensitively; an assignment at or below an expected scope, of a
role the expected one already includes (Storage Blob Data Reader under Contributor), grants
nothing new and is not drift. PIM eligibility and assignment requests are assignments.

What `protected_scope` guards (`targets`): each protected scope, reached by any role at or
below it and by a privileged role (roles.PRIVILEGED) at any scope above it (resource group,
subscription, management group, `/`; `elevateAccess` is User Access Administrator at `/`);
and each user-assigned identity of the baseline or of `actors.responder` (given there by
resource id), reached by a role that can act as it (roles.ACTS_AS_IDENTITY) at or above it.
Lighthouse delegations are judged the same way, per delegated role. A baseline identity's
own new assignment above a target is left to `azure.role_assignment.unexpected` (critical
for privileged roles): one grant, one finding. Inside a protected scope both rules fire,
as before.
Changes still `needs_enrichment` (Event Grid: no body) are left to the caller.

Storage accounts (`azure.storage.*`) are matched by subscription and account name (names
are globally unique; `resource_group` narrows it when given); `identity` is the account's
resource id as logged. Entra ID changes (`azure.sp.*`) are matched on the application or
service principal object id, or the application (client) id, of a baseline identity
(`principal_id` is its service principal's object id); `identity` is the baseline
identity's principal id and `scope` the tenant id.

Each rule reads its change's payload (trustwatch.azure.changes) by attribute, through
`change.payload_as`. `baseline_identity` finds the baseline identities a principal is,
`baseline_identity_at` the one a resource id names, and `mode_of` their mode override.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from trustwatch.azure.actions import beyond
from trustwatch.azure.baseline import AzureIdentity, AzureRoleAssignment, AzureStorageAccount
from trustwatch.azure.changes import (
    AccessConnectorIdentity,
    Authorization,
    EntraDirectoryChange,
    EntraTarget,
    FederatedCredential,
    LighthouseDelegation,
    PermissionBlock,
    ResourceRef,
    RoleAssignment,
    RoleDefinition,
    StorageAccountSettings,
)
from trustwatch.azure.roles import (
    ACTS_AS_IDENTITY,
    OWNER,
    PRIVILEGED,
    REACH_PROTECTED_SCOPE,
    STORAGE_WRITERS,
    UnknownRole,
    grants_no_more_than,
    normalize_guid,
    normalize_role,
    role_name,
)
from trustwatch.azure.scopes import management_group, norm_scope, reaches, within
from trustwatch.baseline import Baseline, Mode
from trustwatch.changes import Change
from trustwatch.engine import Hit, computed_once, rule
from trustwatch.findings import Severity
from trustwatch.frozen import frozen


def _detail(assignment: RoleAssignment) -> dict[str, str]:
    """What tells one assignment's drift from another's (the same for the Start and the
    Success record of one operation)."""
    detail = {
        "principal_id": assignment.principal_id,
        "role": assignment.role,
        "scope": norm_scope(assignment.scope),
    }
    return {**detail, "via": assignment.via} if assignment.via else detail


def _describe(assignment: RoleAssignment) -> dict[str, str]:
    return {
        "principal_id": assignment.principal_id,
        "role": role_name(assignment.role),
        "role_id": assignment.role,
        "scope": assignment.scope,
        "assignment_id": assignment.assignment_id,
    }


@frozen
class Owner:
    """A baseline identity, with where it sits in the file."""

    subscription: str
    name: str
    identity: AzureIdentity


@frozen
class Target:
    """What `protected_scope` guards: a protected scope or a user-assigned identity."""

    scope: str  # normalized
    written: str  # as the baseline spells it
    what: str  # "protected scope", "identity NAME", "responder identity"
    from_above: frozenset[str]  # roles that reach it from a scope above it
    groups: frozenset[str] | None  # management groups above its subscription; None: unknown
    mode: Mode | None = None  # a baseline identity's own mode: drift about it is its own

    @property
    def is_identity(self) -> bool:
        return self.what != "protected scope"


def role_key(ref: str) -> str:
    """A baseline role reference as a GUID; an unknown name keeps a key no GUID equals."""
    try:
        return normalize_role(ref)
    except UnknownRole:
        return "name:" + ref.strip().lower()


def assignment_of(change: Change) -> RoleAssignment | None:
    """The assignment a change grants or removes; None while it waits for its body, or for
    a failed call (which names only the resource)."""
    if change.needs_enrichment or change.failed:
        return None
    return change.payload_as(RoleAssignment)


def targets(baseline: Baseline) -> list[Target]:
    """Everything `protected_scope` guards, protected scopes first."""
    return computed_once("azure.targets", lambda: _targets(baseline))


def _targets(baseline: Baseline) -> list[Target]:
    tenant = (baseline.azure.tenant_id or "").strip().lower()
    groups_of: dict[str, frozenset[str] | None] = {}
    scopes: list[Target] = []
    identities: list[Target] = []
    for sub_id, sub in baseline.azure.subscriptions.items():
        groups = None
        if sub.management_groups is not None:
            # the tenant root group (its id is the tenant id) is above every subscription
            # ids, or their scopes (/providers/Microsoft.Management/managementGroups/ID)
            groups = frozenset(
                management_group(norm_scope(g)) or norm_scope(g) for g in sub.management_groups
            )
            groups |= {tenant} if tenant else frozenset()
        groups_of[sub_id.lower()] = groups
        scopes += [
            Target(norm_scope(p), p, "protected scope", REACH_PROTECTED_SCOPE, groups)
            for p in sub.protected_scopes
        ]
        identities += [
            Target(
                norm_scope(i.resource_id),
                i.resource_id,
                f"identity {name}",
                ACTS_AS_IDENTITY,
                groups,
                i.mode,
            )
            for name, i in sub.identities.items()
            if i.resource_id and _is_user_assigned(i.resource_id)
        ]
    for entry in baseline.actors.responder:
        if _is_user_assigned(entry):
            sub = norm_scope(entry).split("/")[2]
            groups = groups_of.get(sub)
            identities.append(
                Target(norm_scope(entry), entry, "responder identity", ACTS_AS_IDENTITY, groups)
            )
    return scopes + identities


def _is_user_assigned(resource_id: str) -> bool:
    scope = norm_scope(resource_id)
    return scope.startswith("/subscriptions/") and _USER_ASSIGNED in scope


_USER_ASSIGNED = "/providers/microsoft.managedidentity/userassignedidentities/"


def reach(scope: str, role: str, baseline: Baseline) -> tuple[Target, bool] | None:
    """The first target a `role` at normalized `scope` reaches, and whether from inside."""
    found = targets(baseline)
    for target in found:
        if not target.is_identity and within(scope, target.scope):
            return target, True
    for target in found:
        if role in target.from_above and reaches(scope, target.scope, target.groups):
            return target, False
    return None


def _how(scope: str, target: Target) -> str:
    """How access at `scope` reaches `target`, for a summary."""
    if target.is_identity:
        return f"which lets it act as {target.what} {target.written}"
    text = f"which reaches protected scope {target.written}"
    if management_group(scope) is not None and target.groups is None:
        text += " (the baseline lists no management_groups for its subscription: any may hold it)"
    return text


def baseline_identity(baseline: Baseline, principal_id: str) -> list[Owner]:
    """The baseline identities whose principal the change's subject is (one principal may
    be listed in several subscriptions)."""
    principal = normalize_guid(principal_id)
    return [
        Owner(sub_id, name, identity)
        for sub_id, sub in baseline.azure.subscriptions.items()
        for name, identity in sub.identities.items()
        if normalize_guid(identity.principal_id) == principal
    ]


def expected_of(owners: list[Owner]) -> list[tuple[str, str, AzureRoleAssignment]]:
    """(role key, normalized scope, the assignment as written) of every expected one."""
    return [
        (role_key(a.role), norm_scope(a.scope), a)
        for owner in owners
        for a in owner.identity.role_assignments
    ]


def covered(assignment: RoleAssignment, owners: list[Owner]) -> bool:
    return any(
        within(norm_scope(assignment.scope), scope) and grants_no_more_than(role, assignment.role)
        for role, scope, _ in expected_of(owners)
    )


def mode_of(owners: list[Owner]) -> Mode | None:
    return next((o.identity.mode for o in owners if o.identity.mode), None)


def _listed(owners: list[Owner]) -> list[dict[str, str]]:
    return [{"role": a.role, "scope": a.scope} for _, _, a in expected_of(owners)]


@rule(
    "azure.role_assignment.unexpected",
    "high",
    {"role_assignment.created"},
    "A baseline identity got a role assignment the baseline does not list",
)
def role_assignment_unexpected(change: Change, baseline: Baseline) -> Iterator[Hit]:
    assignment = assignment_of(change)
    if assignment is None:
        return
    owners = baseline_identity(baseline, assignment.principal_id)
    if not owners or covered(assignment, owners):
        return
    role = role_name(assignment.role)
    yield Hit(
        summary=f"{owners[0].name} ({assignment.principal_id}) was assigned {role} "
        f"at {assignment.scope}, which the baseline does not list",
        expected=_listed(owners),
        actual=_describe(assignment),
        detail=_detail(assignment),
        severity=Severity.critical if assignment.role in PRIVILEGED else None,
        identity=assignment.principal_id,
        remediation="delete_role_assignment",
        mode=mode_of(owners),
    )


@rule(
    "azure.role_assignment.protected_scope",
    "high",
    {"role_assignment.created", "access.elevated", "lighthouse.delegated", "lighthouse.assigned"},
    "A role that reaches a protected scope or identity was assigned or delegated outside the "
    "baseline",
)
def role_assignment_protected_scope(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.kind.startswith("lighthouse."):
        yield from _lighthouse_hits(change, baseline)
        return
    assignment = assignment_of(change)
    if assignment is None:
        return
    scope = norm_scope(assignment.scope)
    found = reach(scope, assignment.role, baseline)
    if found is None:
        return
    target, inside = found
    if target.is_identity and _is_responder(assignment.principal_id, baseline):
        return  # the responder given rights over its own identity acts as nobody else
    owners = baseline_identity(baseline, assignment.principal_id)
    if owners and covered(assignment, owners):
        return
    if owners and not inside and change.kind == "role_assignment.created":
        return  # a baseline identity's new access above: `unexpected` reports it (critical)
    role = role_name(assignment.role)
    where = f"inside protected scope {target.written}" if inside else _how(scope, target)
    if change.kind == "access.elevated":
        what = f"{assignment.principal_id} elevated its access to {role} at /"
    else:
        what = f"{assignment.principal_id} was assigned {role} at {assignment.scope}"
    key = "identity" if target.is_identity else "protected_scope"
    critical = assignment.role in PRIVILEGED | STORAGE_WRITERS or target.is_identity
    yield Hit(
        summary=f"{what}, {where}",
        expected={key: target.written, "assignments": _listed(owners)},
        actual=_describe(assignment),
        detail=_detail(assignment),
        severity=Severity.critical if critical else None,
        identity=assignment.principal_id,
        remediation="delete_role_assignment",
        mode=_acting_as_mode(baseline, mode_of(owners), target),
    )


def _acting_as_mode(baseline: Baseline, holder: Mode | None, target: Target) -> Mode | None:
    """A role that acts as a baseline identity is drift about that identity too: put back
    only when both its mode and the holder's say `remediate` (its federated credentials
    follow its mode alike)."""
    if not target.is_identity or target.mode is None:
        return holder
    both = {baseline.mode_for(holder), baseline.mode_for(target.mode)}
    return "remediate" if both == {"remediate"} else "alert"


def _is_responder(principal_id: str, baseline: Baseline) -> bool:
    return normalize_guid(principal_id) in {normalize_guid(r) for r in baseline.actors.responder}


def _lighthouse_hits(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.needs_enrichment:
        return
    delegation = change.payload_as(LighthouseDelegation)
    scope = norm_scope(delegation.scope)
    known = delegation.authorizations
    # an assignment that does not say what it delegates may delegate anything
    candidates = known if known is not None else (Authorization("", OWNER),)
    reaching: list[tuple[Authorization, Target]] = []
    for entry in candidates:
        found = reach(scope, entry.role, baseline)
        if found is not None:
            reaching.append((entry, found[0]))
    if not reaching:
        return
    tenant = delegation.managed_by_tenant or "another tenant"
    target = reaching[0][1]
    roles = ", ".join(role_name(e.role) for e, _ in reaching) if known is not None else None
    what = "Lighthouse " + ("assignment" if change.kind == "lighthouse.assigned" else "definition")
    delegated = f"delegates {roles}" if roles else "delegates roles it does not name"
    critical = known is None or any(e.role in PRIVILEGED or t.is_identity for e, t in reaching)
    yield Hit(
        summary=f"{what} {change.name} {delegated} over {delegation.scope} to {tenant}, "
        f"{_how(scope, target)}",
        expected={"identity" if target.is_identity else "protected_scope": target.written},
        actual={
            "resource_id": delegation.resource_id,
            "scope": delegation.scope,
            "managed_by_tenant": delegation.managed_by_tenant,
            "registration_definition_id": delegation.definition_id,
            "authorizations": [
                {"principal_id": e.principal_id, "role": role_name(e.role)} for e, _ in reaching
            ]
            if known is not None
            else None,
        },
        detail={
            "resource_id": norm_scope(delegation.resource_id),
            "authorizations": sorted(f"{e.principal_id}:{e.role}" for e, _ in reaching)
            if known is not None
            else "unknown",
        },
        severity=Severity.critical if critical else None,
        identity=delegation.managed_by_tenant or delegation.resource_id,
        remediation="delete_lighthouse_delegation",
    )


@rule(
    "azure.role_assignment.expected_removed",
    "medium",
    {"role_assignment.deleted"},
    "A role assignment the baseline expects was deleted",
)
def role_assignment_expected_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    assignment = assignment_of(change)
    if assignment is None:
        return
    owners = baseline_identity(baseline, assignment.principal_id)
    for role, scope, written in expected_of(owners):
        if role == assignment.role and scope == norm_scope(assignment.scope):
            yield Hit(
                summary=f"expected assignment of {written.role} to {owners[0].name} at "
                f"{written.scope} was deleted",
                expected={"role": written.role, "scope": written.scope},
                actual=None,
                detail=_detail(assignment),
                identity=assignment.principal_id,
                remediation="restore_role_assignment",
                mode=mode_of(owners),
            )
            return


@rule(
    "azure.identity.changed",
    "high",
    {"access_connector.written", "access_connector.deleted", "managed_identity.deleted"},
    "An access connector's identity was replaced or removed, or the connector deleted",
)
def identity_changed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.needs_enrichment:
        return
    resource = norm_scope(change.identity)
    for owner in baseline_identity_at(baseline, resource):
        hit = _identity_hit(change, owner, resource)
        if hit is not None:
            yield hit


def baseline_identity_at(baseline: Baseline, resource: str) -> Iterator[Owner]:
    """The baseline identities a (normalized) resource id names: an access connector or a
    user-assigned identity."""
    for sub_id, sub in baseline.azure.subscriptions.items():
        for name, identity in sub.identities.items():
            if identity.resource_id and norm_scope(identity.resource_id) == resource:
                yield Owner(sub_id, name, identity)


def _identity_hit(change: Change, owner: Owner, resource: str) -> Hit | None:
    expected = {
        "resource_id": owner.identity.resource_id,
        "principal_id": owner.identity.principal_id,
    }
    common: dict[str, Any] = {"identity": owner.identity.resource_id, "mode": owner.identity.mode}
    if change.kind != "access_connector.written":
        what = "access connector" if change.kind == "access_connector.deleted" else "identity"
        return Hit(
            summary=f"{what} {owner.name} ({owner.identity.resource_id}) was deleted",
            expected=expected,
            actual=None,
            detail={"resource_id": resource, "deleted": True},
            remediation="none",  # nothing to put back in place automatically
            **common,
        )
    connector = change.payload_as(AccessConnectorIdentity)
    kind = connector.identity_type
    # lists, as the finding has always shown them
    principals = list(connector.principal_ids) if connector.principal_ids is not None else None
    actual = {
        "identity_type": kind,
        "principal_ids": principals,
        "user_assigned_identities": list(connector.user_assigned_identities),
    }
    if kind == "None":
        summary = f"access connector {owner.name} lost its managed identity"
        detail: dict[str, Any] = {"resource_id": resource, "identity_type": "None"}
    elif principals is not None and set(principals) != {
        normalize_guid(owner.identity.principal_id)
    }:
        summary = (
            f"access connector {owner.name} now acts as {', '.join(principals) or 'no identity'} "
            f"instead of {owner.identity.principal_id}"
        )
        detail = {"resource_id": resource, "principal_ids": principals}
    else:
        return None
    return Hit(
        summary=summary,
        expected=expected,
        actual=actual,
        detail=detail,
        remediation="restore_access_connector_identity",
        **common,
    )


@rule(
    "azure.identity.federated_credential_added",
    "critical",
    {"federated_credential.written"},
    "A federated identity credential was added to a baseline or responder user-assigned identity",
)
def identity_federated_credential_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    credential = change.payload_as(FederatedCredential)
    uami = norm_scope(credential.identity_resource_id)
    if not uami:
        return
    owner = next(baseline_identity_at(baseline, uami), None)
    if owner is not None:
        name, written, mode = owner.name, owner.identity.resource_id or uami, owner.identity.mode
    else:
        written = next((r for r in baseline.actors.responder if norm_scope(r) == uami), "")
        if not written:
            return
        name, mode = "responder identity", None
    issuer, subject = credential.issuer or "?", credential.subject or "?"
    yield Hit(
        summary=f"federated credential {change.name} on {name} ({written}) lets tokens of "
        f"issuer {issuer} (subject {subject}) act as it",
        expected={"resource_id": written, "federated_credentials": []},
        actual={
            "credential_id": credential.resource_id,
            "issuer": credential.issuer,
            "subject": credential.subject,
            "audiences": list(credential.audiences),
        },
        detail={"credential_id": norm_scope(credential.resource_id)},
        identity=written,
        remediation="delete_federated_credential",
        mode=mode,
    )


@rule(
    "azure.role_definition.widened",
    "high",
    {"role_definition.written"},
    "A watched custom role definition gained actions or data actions",
)
def role_definition_widened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.needs_enrichment:
        return
    definition = change.payload_as(RoleDefinition)
    guid = definition.definition_id
    holders = [
        name
        for sub in baseline.azure.subscriptions.values()
        for name, identity in sub.identities.items()
        if any(role_key(a.role) == guid for a in identity.role_assignments)
    ]
    held = f", held by {', '.join(holders)}," if holders else ""
    spec = next(
        (
            s.custom_roles[guid]
            for s in baseline.azure.subscriptions.values()
            if guid in s.custom_roles
        ),
        None,
    )
    if spec is None:
        if not holders:
            return  # not a role the baseline watches
        # held but unlisted: what it may hold is unknown, so any rewrite may widen it
        actions = sorted({a for b in definition.permissions for a in b.actions})
        data_actions = sorted({a for b in definition.permissions for a in b.data_actions})
        summary = (
            f"custom role {change.name} ({guid}){held} was rewritten; the baseline lists no "
            f"custom_roles entry saying what it may hold"
        )
        expected: dict[str, Any] | None = None
    else:
        actions, data_actions = beyond(definition.permissions, spec.actions, spec.data_actions)
        if not actions and not data_actions:
            return
        summary = (
            f"custom role {change.name} ({guid}){held} now grants "
            f"{', '.join(actions + data_actions)}, beyond the baseline"
        )
        expected = {"actions": spec.actions, "data_actions": spec.data_actions}
    yield Hit(
        summary=summary,
        expected=expected,
        actual={
            "permissions": [_as_written(b) for b in definition.permissions],
            "beyond_baseline": {"actions": actions, "data_actions": data_actions},
        },
        detail={
            "definition_id": guid,
            "actions": sorted(a.lower() for a in actions),
            "data_actions": sorted(a.lower() for a in data_actions),
        },
        identity=guid,
        remediation="restore_role_definition",
        mode=spec.mode if spec is not None else None,
    )


def _as_written(block: PermissionBlock) -> dict[str, list[str]]:
    """A permissions block as findings have always shown it."""
    return {
        "actions": list(block.actions),
        "not_actions": list(block.not_actions),
        "data_actions": list(block.data_actions),
        "not_data_actions": list(block.not_data_actions),
    }


_STORAGE = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.storage/"
    r"storageaccounts/([^/]+)$"
)


@frozen
class WatchedAccount:
    subscription: str
    name: str
    spec: AzureStorageAccount


def watched_account(baseline: Baseline, resource_id: str) -> WatchedAccount | None:
    """The baseline entry of the storage account a resource id names, if it is watched."""
    m = _STORAGE.match(norm_scope(resource_id))
    if m is None:
        return None
    sub, group, name = m[1], m[2], m[3]
    for sub_id, subscription in baseline.azure.subscriptions.items():
        if sub_id.lower() != sub:
            continue
        spec = subscription.storage_accounts.get(name)
        if spec is None:
            continue
        if spec.resource_group is not None and spec.resource_group.lower() != group:
            continue
        return WatchedAccount(sub_id, name, spec)
    return None


def _account_change(
    change: Change, baseline: Baseline
) -> tuple[StorageAccountSettings, WatchedAccount] | None:
    if change.needs_enrichment or change.failed:
        return None
    settings = change.payload_as(StorageAccountSettings)
    account = watched_account(baseline, settings.resource_id)
    return (settings, account) if account is not None else None


def _settings(settings: StorageAccountSettings) -> dict[str, Any]:
    return {
        "resource_id": settings.resource_id,
        "allow_blob_public_access": settings.allow_blob_public_access,
        "allow_shared_key_access": settings.allow_shared_key_access,
        "network_default_action": settings.network_default_action,
        "public_network_access": settings.public_network_access,
    }


@rule(
    "azure.storage.public_access_opened",
    "critical",
    {"storage_account.written"},
    "A watched storage account allows blob public access or opens its network default action",
)
def storage_public_access_opened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _account_change(change, baseline)
    if found is None:
        return
    settings, account = found
    opened: list[str] = []
    if settings.allow_blob_public_access and not account.spec.allow_blob_public_access:
        opened.append("allow_blob_public_access")
    # networkAcls do not apply while public network access is disabled
    # ("Configure Azure Storage firewalls and virtual networks",
    # https://learn.microsoft.com/en-us/azure/storage/common/storage-network-security)
    if (
        account.spec.network_default_action == "Deny"
        and settings.network_default_action == "Allow"
        and (settings.public_network_access or "").lower() != "disabled"
    ):
        opened.append("network_default_action")
    if not opened:
        return
    what = " and ".join(
        "allows anonymous blob access" if o == "allow_blob_public_access" else
        "accepts traffic from any network (default action Allow)"
        for o in opened
    )  # fmt: skip
    yield Hit(
        summary=f"storage account {account.name} now {what}",
        expected={
            "allow_blob_public_access": account.spec.allow_blob_public_access,
            "network_default_action": account.spec.network_default_action,
        },
        actual=_settings(settings),
        detail={"resource_id": norm_scope(settings.resource_id), "opened": opened},
        identity=settings.resource_id,
        remediation="restore_storage_account_settings",
        mode=account.spec.mode,
    )


@rule(
    "azure.storage.shared_key_enabled",
    "high",
    {"storage_account.written"},
    "A watched storage account re-enables shared key access",
)
def storage_shared_key_enabled(change: Change, baseline: Baseline) -> Iterator[Hit]:
    found = _account_change(change, baseline)
    if found is None:
        return
    settings, account = found
    if account.spec.allow_shared_key_access is not False or not settings.allow_shared_key_access:
        return
    yield Hit(
        summary=f"storage account {account.name} accepts shared key (account key and SAS) "
        "authorization again",
        expected={"allow_shared_key_access": False},
        actual=_settings(settings),
        detail={"resource_id": norm_scope(settings.resource_id), "allow_shared_key_access": True},
        identity=settings.resource_id,
        remediation="restore_storage_account_settings",
        mode=account.spec.mode,
    )


@rule(
    "azure.storage.keys_listed",
    "high",
    {"storage_account.keys_listed"},
    "A principal not in the baseline listed a watched storage account's keys",
)
def storage_keys_listed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    if change.failed:
        return
    resource_id = change.payload_as(ResourceRef).resource_id
    account = watched_account(baseline, resource_id)
    if account is None:
        return
    readers = set(account.spec.key_readers)
    callers = {a.strip().lower() if "@" in a else normalize_guid(a) for a in change.actor_ids}
    if callers & readers:
        return
    action = change.event_name.rstrip("/").rsplit("/", 2)[-2]
    yield Hit(
        summary=f"{change.actor or 'an unknown caller'} called {action} on storage account "
        f"{account.name}, which the baseline's key_readers do not list",
        expected={"key_readers": account.spec.key_readers},
        actual={
            "resource_id": resource_id,
            "action": change.event_name,
            "caller": change.actor_ids,
        },
        # one finding per caller and account: a script listing keys every minute is one
        detail={
            "resource_id": norm_scope(resource_id),
            "caller": sorted(callers),
            "action": action.lower(),
        },
        identity=resource_id,
        remediation="none",  # the keys are out: rotating them is a decision for people
        mode=account.spec.mode,
    )


def entra_owners(baseline: Baseline, target: EntraTarget) -> list[Owner]:
    """The baseline identities an Entra application or service principal is."""
    out = []
    for sub_id, sub in baseline.azure.subscriptions.items():
        for name, identity in sub.identities.items():
            objects = {
                normalize_guid(i)
                for i in (
                    identity.principal_id,
                    identity.service_principal_object_id,
                    identity.application_object_id,
                )
                if i
            }
            app = identity.application_id
            if (target.object_id and target.object_id in objects) or (
                app and target.app_id and target.app_id == app
            ):
                out.append(Owner(sub_id, name, identity))
    return out


def _entra_hits(change: Change, baseline: Baseline, what: str, remediation: str) -> Iterator[Hit]:
    entry = change.payload_as(EntraDirectoryChange)
    for target in entry.targets:
        owners = entra_owners(baseline, target)
        if not owners:
            continue
        owner = owners[0]
        label = "application" if target.type == "Application" else "service principal"
        shown = target.display_name or target.object_id or target.app_id
        added = ", ".join(entry.added) or "?"
        yield Hit(
            summary=f"{what} {label} {shown} of {owner.name} ({entry.activity}): {added}",
            expected={
                "principal_id": owner.identity.principal_id,
                "application_id": owner.identity.application_id,
                "application_object_id": owner.identity.application_object_id,
                "service_principal_object_id": owner.identity.service_principal_object_id,
            },
            actual={
                "activity": entry.activity,
                "target": {
                    "object_id": target.object_id,
                    "type": target.type,
                    "display_name": target.display_name,
                    "app_id": target.app_id,
                },
                "added": list(entry.added),
            },
            detail={
                "target": target.object_id or target.app_id,
                "added": sorted(a.lower() for a in entry.added),
            },
            identity=owner.identity.principal_id,
            remediation=remediation,
            mode=owner.identity.mode,
        )
        return  # one finding per record: its targets are one object (app or its SP)


@rule(
    "azure.sp.credential_added",
    "critical",
    {"entra.credential_added"},
    "A secret, certificate or federated credential was added to a baseline service principal "
    "or its application",
)
def sp_credential_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    yield from _entra_hits(change, baseline, "credential added to", "remove_credential")


@rule(
    "azure.sp.owner_added",
    "high",
    {"entra.owner_added"},
    "An owner was added to a baseline application or service principal",
)
def sp_owner_added(change: Change, baseline: Baseline) -> Iterator[Hit]:
    yield from _entra_hits(change, baseline, "owner added to", "remove_owner")
