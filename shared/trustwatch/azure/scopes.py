"""Azure scopes: normalized, and which scopes contain which.

A scope is `/`, a management group (`/providers/Microsoft.Management/managementGroups/G`),
a subscription, a resource group or a resource; access granted at a scope is inherited by
every scope below it ("Understand scope for Azure RBAC",
https://learn.microsoft.com/en-us/azure/role-based-access-control/scope-overview).
Scopes compare case-insensitively, without trailing or repeated slashes.

A management group's subscriptions cannot be read from a scope string: which management
groups sit above a subscription is what its baseline entry says (`management_groups`).
Without that list, a grant at any management group is taken to reach it (conservative:
a subscription always sits under some management group, at least the tenant root group).
"""

from __future__ import annotations

import re

ROOT = "/"
_MANAGEMENT_GROUP = re.compile(r"/providers/microsoft\.management/managementgroups/([^/]+)")
_SLASHES = re.compile(r"/{2,}")


def norm_scope(scope: str) -> str:
    """`/SUBSCRIPTIONS/S/resourceGroups/R/` -> `/subscriptions/s/resourcegroups/r`; `/` stays."""
    text = _SLASHES.sub("/", scope.strip().lower())
    stripped = text.rstrip("/")
    return stripped or (ROOT if text else "")


def within(scope: str, parent: str) -> bool:
    """Is normalized `scope` equal to or below normalized `parent`?"""
    if not scope or not parent:
        return False
    if parent == ROOT:
        return scope.startswith("/")
    return scope == parent or scope.startswith(parent + "/")


def management_group(scope: str) -> str | None:
    """The (lower-case) management group id of a normalized management group scope."""
    m = _MANAGEMENT_GROUP.fullmatch(scope)
    return m[1] if m else None


def reaches(grant: str, target: str, groups: frozenset[str] | None) -> bool:
    """Does access granted at normalized scope `grant` reach normalized scope `target`?

    `groups`: the management groups above the target's subscription (lower-case ids,
    including the tenant root group's, which is the tenant id), or None when unknown: then
    any management group may be above it.
    """
    if within(target, grant):
        return True
    group = management_group(grant)
    if group is None or not target.startswith("/subscriptions/"):
        return False
    return groups is None or group in groups
