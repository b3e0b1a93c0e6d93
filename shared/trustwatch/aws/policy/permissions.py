"""Permission comparison (`compare_permissions`): what ACTUAL allows that EXPECTED does not.

Each Allow is split into (principal?, action, resource, conditions) items
(`statement_items`); an actual item is covered by one expected Allow that covers its
action, resource and principal and whose conditions its own conditions imply. NotAction /
NotResource are conservative: covered only by an expected statement with the identical
NotAction (NotResource) list, or by Action "*" (Resource "*"); a literal action outside an
expected NotAction list is covered. A baseline Deny that actual lacks is reported in
`added` with effect "Deny" (its absence allows more; `dropped_denies`, which trust
comparison uses too). `removed` ignores conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trustwatch.aws.policy.conditions import ConditionClause, render_conditions, unimplied
from trustwatch.aws.policy.document import (
    Document,
    Statement,
    load_document,
    normalize,
    sort_text,
)
from trustwatch.aws.policy.principals import infer_partition, principal_covers
from trustwatch.aws.policy.wildcards import glob_covers, has_wildcard
from trustwatch.frozen import frozen


def ordered_entries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Diff entries without duplicates, in a stable order (by their JSON text)."""
    if len(items) < 2:  # most diff lists: nothing to order, no text to render
        return list(items)
    unique = {sort_text(i): i for i in items}
    return [unique[k] for k in sorted(unique)]


@frozen
class Item:
    """One Allow/Deny of a statement: a single principal, action and resource."""

    effect: str
    principal: str | None
    not_principal: frozenset[str] | None
    action: str | None
    not_action: frozenset[str] | None
    resource: str | None
    not_resource: frozenset[str] | None
    conditions: frozenset[ConditionClause]


def statement_items(stmt: Statement) -> Iterator[Item]:
    """One item per (principal, action, resource) of a statement; NotX lists stay whole."""
    if stmt.principals is not None and not stmt.principals:
        return  # Principal {} / {"AWS": []} names no one: the statement grants nothing
    principals: list[str | None] = [*sorted(stmt.principals)] if stmt.principals else [None]
    actions: list[str | None] = [*sorted(stmt.actions)] if stmt.actions is not None else [None]
    if stmt.resources is None and stmt.not_resources is None:
        resources: list[str | None] = ["*"]  # no Resource: whatever the policy is attached to
    else:
        resources = [*sorted(stmt.resources)] if stmt.resources is not None else [None]
    for principal in principals:
        for action in actions:
            for resource in resources:
                yield Item(
                    stmt.effect,
                    principal,
                    stmt.not_principals,
                    action,
                    stmt.not_actions,
                    resource,
                    stmt.not_resources,
                    stmt.conditions,
                )


def _part_covered(
    value: str | None,
    not_values: frozenset[str] | None,
    positive: frozenset[str] | None,
    negative: frozenset[str] | None,
) -> bool:
    """Is the item's (value | NotX list) inside the statement's (positive | NotX list)?"""
    if value is not None:
        if positive is not None:
            return any(glob_covers(p, value) for p in positive)
        # a literal outside every excluded pattern is allowed by a NotX statement
        return not has_wildcard(value) and not any(glob_covers(n, value) for n in negative or ())
    if positive is not None:
        return "*" in positive
    return not_values == negative


def resource_part(stmt: Statement) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(Resource, NotResource) of a statement; no Resource at all means "*"."""
    if stmt.resources is None and stmt.not_resources is None:
        return frozenset({"*"}), None
    return stmt.resources, stmt.not_resources


def _covered(item: Item, stmt: Statement, conditions: str) -> bool:
    """Is `item` inside `stmt`? conditions: "implies" (item's imply stmt's) or "ignore".

    "implies" reads the same for Allow and Deny: whenever the item applies, so does `stmt`.
    """
    if stmt.effect != item.effect:
        return False
    if item.not_principal is not None or stmt.not_principals is not None:
        if item.not_principal != stmt.not_principals:
            return False
    elif item.principal is not None:
        if stmt.principals is None or not any(
            principal_covers(p, item.principal) for p in stmt.principals
        ):
            return False
    elif stmt.principals is not None and "*" not in stmt.principals:
        return False
    if not _part_covered(item.action, item.not_action, stmt.actions, stmt.not_actions):
        return False
    resources, not_resources = resource_part(stmt)
    if not _part_covered(item.resource, item.not_resource, resources, not_resources):
        return False
    if conditions == "implies":
        return not unimplied(item.conditions, stmt.conditions)
    return True


def dropped_denies(actual: list[Statement], expected: list[Statement]) -> list[Item]:
    """Baseline Deny items no actual Deny covers (same or broader scope, same or fewer conditions)."""
    denies = [s for s in actual if s.effect == "Deny"]
    return [
        item
        for stmt in expected
        if stmt.effect == "Deny"
        for item in statement_items(stmt)
        if not any(_covered(item, d, "implies") for d in denies)
    ]


def item_dict(item: Item) -> dict[str, Any]:
    """An item as a JSON-friendly diff entry (see PermissionDiff)."""
    out: dict[str, Any] = {"effect": item.effect}
    if item.principal is not None:
        out["principal"] = item.principal
    if item.not_principal is not None:
        out["not_principal"] = sorted(item.not_principal)
    if item.action is not None:
        out["action"] = item.action
    else:
        out["not_action"] = sorted(item.not_action or ())
    if item.resource is not None:
        out["resource"] = item.resource
    else:
        out["not_resource"] = sorted(item.not_resource or ())
    if item.conditions:
        out["condition"] = render_conditions(item.conditions)
    return out


@frozen
class PermissionDiff:
    """What ACTUAL allows beyond EXPECTED (`added`), and what it no longer allows (`removed`).

    Entries: {"effect", "action" | "not_action", "resource" | "not_resource",
    ["principal"], ["condition"]}. An `added` entry with effect "Deny" is a baseline Deny
    that ACTUAL dropped.
    """

    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]

    @property
    def widened(self) -> bool:
        return bool(self.added)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {"added": self.added, "removed": self.removed}


def compare_permissions(actual: Document, expected: Document | None) -> PermissionDiff:
    """What ACTUAL allows that EXPECTED does not (None: nothing is expected)."""
    actual_doc = load_document(actual)
    expected_doc = load_document(expected) if expected is not None else None
    docs = [actual_doc] if expected_doc is None else [expected_doc, actual_doc]
    part = infer_partition(docs)
    act = normalize(actual_doc, part)
    exp = normalize(expected_doc, part) if expected_doc is not None else []
    exp_allows = [s for s in exp if s.effect == "Allow"]
    act_allows = [s for s in act if s.effect == "Allow"]
    added = [
        item_dict(item)
        for stmt in act_allows
        for item in statement_items(stmt)
        if not any(_covered(item, e, "implies") for e in exp_allows)
    ]
    added += [item_dict(item) for item in dropped_denies(act, exp)]
    removed = [
        item_dict(item)
        for stmt in exp_allows
        for item in statement_items(stmt)
        if not any(_covered(item, a, "ignore") for a in act_allows)
    ]
    return PermissionDiff(ordered_entries(added), ordered_entries(removed))
