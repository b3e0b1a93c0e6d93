"""Azure rules: role assignment and access connector changes against the baseline.

Finding fields: `scope` is the subscription id (lower-case; for an assignment the
subscription of the assignment's scope). `identity` is the principal id (object id, lower
case) for role assignment rules, including `protected_scope`, where it is the principal who
gained access; it is the baseline `resource_id` (access connector or user-assigned
identity) for `azure.identity.changed`.

Role assignments compare semantically: role name, GUID and definition id are one role; ids
and scopes compare case-insensitively; an assignment at or below an expected scope, of a
role the expected one already includes (Storage Blob Data Reader under Contributor), grants
nothing new and is not drift. A protected scope covers itself and every scope below it.
Changes still `needs_enrichment` (Event Grid: no body) are left to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trustwatch.azure.baseline import AzureIdentity, AzureRoleAssignment
from trustwatch.azure.roles import (
    PRIVILEGED,
    UnknownRole,
    grants_no_more_than,
    normalize_guid,
    normalize_role,
    role_name,
)
from trustwatch.baseline import Baseline, Mode
from trustwatch.changes import Change
from trustwatch.engine import Hit, rule
from trustwatch.findings import Severity


@dataclass(frozen=True)
class Assignment:
    principal_id: str
    role: str  # lower-case GUID
    scope: str  # as logged
    assignment_id: str

    @property
    def key_scope(self) -> str:
        return norm_scope(self.scope)

    def detail(self) -> dict[str, str]:
        # the same for the Start and the Success record of one operation
        return {"principal_id": self.principal_id, "role": self.role, "scope": self.key_scope}

    def describe(self) -> dict[str, str]:
        return {
            "principal_id": self.principal_id,
            "role": role_name(self.role),
            "role_id": self.role,
            "scope": self.scope,
            "assignment_id": self.assignment_id,
        }


@dataclass(frozen=True)
class Owner:
    """A baseline identity, with where it sits in the file."""

    subscription: str
    name: str
    identity: AzureIdentity


def norm_scope(scope: str) -> str:
    return scope.strip().rstrip("/").lower()


def within(scope: str, parent: str) -> bool:
    """Is normalized `scope` equal to or below normalized `parent`?"""
    return scope == parent or scope.startswith(parent + "/")


def role_key(ref: str) -> str:
    """A baseline role reference as a GUID; an unknown name keeps a key no GUID equals."""
    try:
        return normalize_role(ref)
    except UnknownRole:
        return "name:" + ref.strip().lower()


def assignment_of(change: Change) -> Assignment | None:
    if change.needs_enrichment or "role" not in change.data:
        return None
    data = change.data
    return Assignment(data["principal_id"], data["role"], data["scope"], data["assignment_id"])


def owners_of(baseline: Baseline, principal_id: str) -> list[Owner]:
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


def covered(assignment: Assignment, owners: list[Owner]) -> bool:
    return any(
        within(assignment.key_scope, scope) and grants_no_more_than(role, assignment.role)
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
    owners = owners_of(baseline, assignment.principal_id)
    if not owners or covered(assignment, owners):
        return
    role = role_name(assignment.role)
    yield Hit(
        summary=f"{owners[0].name} ({assignment.principal_id}) was assigned {role} "
        f"at {assignment.scope}, which the baseline does not list",
        expected=_listed(owners),
        actual=assignment.describe(),
        detail=assignment.detail(),
        severity=Severity.critical if assignment.role in PRIVILEGED else None,
        identity=assignment.principal_id,
        remediation="delete_role_assignment",
        mode=mode_of(owners),
    )


@rule(
    "azure.role_assignment.protected_scope",
    "high",
    {"role_assignment.created"},
    "A role was assigned at a protected scope without being in the baseline",
)
def role_assignment_protected_scope(change: Change, baseline: Baseline) -> Iterator[Hit]:
    assignment = assignment_of(change)
    if assignment is None:
        return
    protected = [
        p
        for sub in baseline.azure.subscriptions.values()
        for p in sub.protected_scopes
        if within(assignment.key_scope, norm_scope(p))
    ]
    if not protected:
        return
    owners = owners_of(baseline, assignment.principal_id)
    if owners and covered(assignment, owners):
        return
    yield Hit(
        summary=f"{assignment.principal_id} was assigned {role_name(assignment.role)} at "
        f"{assignment.scope}, inside protected scope {protected[0]}",
        expected={"protected_scope": protected[0], "assignments": _listed(owners)},
        actual=assignment.describe(),
        detail=assignment.detail(),
        identity=assignment.principal_id,
        remediation="delete_role_assignment",
        mode=mode_of(owners),
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
    owners = owners_of(baseline, assignment.principal_id)
    for role, scope, written in expected_of(owners):
        if role == assignment.role and scope == assignment.key_scope:
            yield Hit(
                summary=f"expected assignment of {written.role} to {owners[0].name} at "
                f"{written.scope} was deleted",
                expected={"role": written.role, "scope": written.scope},
                actual=None,
                detail=assignment.detail(),
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
    for owner in _owners_by_resource(baseline, resource):
        hit = _identity_hit(change, owner, resource)
        if hit is not None:
            yield hit


def _owners_by_resource(baseline: Baseline, resource: str) -> Iterator[Owner]:
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
    kind = change.data.get("identity_type")
    principals = change.data.get("principal_ids")
    actual = {
        "identity_type": kind,
        "principal_ids": principals,
        "user_assigned_identities": change.data.get("user_assigned_identities", []),
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
