"""Trust comparison (`compare_trust`): does ACTUAL trust let in anyone EXPECTED does not?

Both documents become grants (`grants`); then, against the closest expected alternative:
- principals_added: an actual principal no expected grant covers (incl. "*").
- external_id_missing: covered, but the expected sts:ExternalId clause has no ExternalId
  clause at all in actual.
- condition_weakened: the ExternalId changed, wildcarded (StringLike) or made ...IfExists;
  another expected condition removed or weakened; new assume actions for an expected
  principal ("actions_added"); a baseline Deny with no equally broad Deny in actual.
- expected_principals_removed: an expected principal/action no actual grant covers any more
  (or that an unconditional actual Deny blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trustwatch.aws.policy.conditions import ConditionClause, render_conditions, unimplied
from trustwatch.aws.policy.document import Document, Statement, load_document, normalize
from trustwatch.aws.policy.grants import TrustGrant, grant_key, sorted_or_none, trust_grants
from trustwatch.aws.policy.permissions import dropped_denies, item_dict, ordered_entries
from trustwatch.aws.policy.principals import infer_partition, named_partition, principal_covers
from trustwatch.aws.policy.wildcards import glob_covers, has_wildcard
from trustwatch.frozen import frozen


@frozen
class TrustDiff:
    """ACTUAL trust vs the closest EXPECTED alternative; each entry is a JSON-friendly dict."""

    principals_added: list[dict[str, Any]]
    external_id_missing: list[dict[str, Any]]
    condition_weakened: list[dict[str, Any]]
    expected_principals_removed: list[dict[str, Any]]

    @property
    def widened(self) -> bool:
        return bool(self.principals_added or self.external_id_missing or self.condition_weakened)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "principals_added": self.principals_added,
            "external_id_missing": self.external_id_missing,
            "condition_weakened": self.condition_weakened,
            "expected_principals_removed": self.expected_principals_removed,
        }


def _weakness_reason(actual_xid: list[ConditionClause]) -> str:
    if all(c.parts[2] for c in actual_xid):
        return "external_id_if_exists"
    if any(has_wildcard(v) for c in actual_xid for v in c.values):
        return "external_id_wildcard"
    return "external_id_changed"


def _check_grant(
    grant: TrustGrant,
    expected: list[TrustGrant],
    missing: list[dict[str, Any]],
    weakened: list[dict[str, Any]],
) -> bool:
    """Record how `grant` exceeds `expected`; False when no expected principal covers it."""
    candidates = [e for e in expected if principal_covers(e.principal, grant.principal)]
    if not candidates:
        return False
    base = grant.as_dict()
    new_actions = sorted(
        a
        for a in grant.actions
        if not any(glob_covers(p, a) for e in candidates for p in e.actions)
    )
    if new_actions:
        weakened.append({**base, "actions": new_actions, "reason": "actions_added"})
    # For each covered action, find an expected grant whose conditions actual implies;
    # failing that, report against the closest one (fewest unmet clauses).
    shortfalls: dict[TrustGrant, list[str]] = {}
    for action in sorted(grant.actions - set(new_actions)):
        fitting = [e for e in candidates if any(glob_covers(p, action) for p in e.actions)]
        if any(not unimplied(grant.conditions, e.conditions) for e in fitting):
            continue
        best = min(
            fitting, key=lambda e: (len(unimplied(grant.conditions, e.conditions)), grant_key(e))
        )
        shortfalls.setdefault(best, []).append(action)
    for best, actions in shortfalls.items():
        unmet = unimplied(grant.conditions, best.conditions)
        item = {
            **base,
            "actions": actions,
            "expected_principal": best.principal,
            "expected_external_id": sorted_or_none(best.external_ids),
            "expected_conditions": render_conditions(best.conditions),
        }
        xid_unmet = [c for c in unmet if c.key == "sts:externalid"]
        other_unmet = [c for c in unmet if c.key != "sts:externalid"]
        if xid_unmet:
            actual_xid = [c for c in grant.conditions if c.key == "sts:externalid"]
            if not actual_xid:
                missing.append(item)
            else:
                weakened.append({**item, "reason": _weakness_reason(actual_xid)})
        if other_unmet:
            keys = {c.key for c in grant.conditions}
            removed = all(c.key not in keys for c in other_unmet)
            weakened.append(
                {
                    **item,
                    "reason": "condition_removed" if removed else "condition_weakened",
                    "condition": render_conditions(other_unmet),
                }
            )
    return True


def _denied(stmts: list[Statement], principal: str, action: str) -> bool:
    """An unconditional Deny in `stmts` blocks `principal` from `action`."""
    for s in stmts:
        if s.effect != "Deny" or s.conditions or s.principals is None:
            continue
        if not any(principal_covers(p, principal) for p in s.principals):
            continue
        if s.actions is not None and any(glob_covers(p, action) for p in s.actions):
            return True
        if s.not_actions is not None and not any(glob_covers(p, action) for p in s.not_actions):
            return True
    return False


def _lost(
    principal: str,
    action: str,
    act: list[TrustGrant],
    actual: list[Statement],
    expected: list[Statement],
) -> bool:
    """Can an expected principal no longer perform an assume action it could before?"""
    if _denied(expected, principal, action):
        return False  # the baseline itself blocks it: nothing to lose
    allowed = any(
        principal_covers(g.principal, principal) and any(glob_covers(p, action) for p in g.actions)
        for g in act
    )
    return not allowed or _denied(actual, principal, action)


def _diff_trust(
    actual: list[Statement],
    expected: list[Statement],
    partition: str,
    exp: list[TrustGrant] | None = None,
) -> TrustDiff:
    act = trust_grants(actual, partition)
    exp = trust_grants(expected, partition) if exp is None else exp
    added: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    weakened: list[dict[str, Any]] = []
    for grant in act:
        if not _check_grant(grant, exp, missing, weakened):
            added.append(grant.as_dict())
    for item in dropped_denies(actual, expected):
        weakened.append(
            {
                "principal": item.principal or "*",
                "actions": [item.action] if item.action else sorted(item.not_action or ()),
                "reason": "deny_removed",
                "statement": item_dict(item),
            }
        )
    removed = []
    for e in exp:
        gone = sorted(a for a in e.actions if _lost(e.principal, a, act, actual, expected))
        if gone:
            removed.append(
                {
                    "principal": e.principal,
                    "actions": gone,
                    "expected_external_id": sorted_or_none(e.external_ids),
                    "expected_conditions": render_conditions(e.conditions),
                }
            )
    return TrustDiff(
        ordered_entries(added),
        ordered_entries(missing),
        ordered_entries(weakened),
        ordered_entries(removed),
    )


def _diff_size(diff: TrustDiff) -> tuple[bool, int, int]:
    widening = (
        len(diff.principals_added) + len(diff.external_id_missing) + len(diff.condition_weakened)
    )
    return diff.widened, widening, len(diff.expected_principals_removed)


class ExpectedTrust:
    """Expected trust documents made ready to compare against, again and again.

    The expected side is the baseline's: the same for every event on a role, so a caller
    that keeps this (trustwatch.engine.computed_per_baseline) normalizes it and computes
    its grants once per partition instead of per event.
    """

    def __init__(self, expected: Sequence[Document]) -> None:
        self.documents = [load_document(d) for d in expected]
        # the partition their ARNs name, if any: compare_trust's default before the actual's
        self.partition = named_partition(self.documents)
        self._sides: dict[str, list[tuple[list[Statement], list[TrustGrant]]]] = {}

    def sides(self, partition: str) -> list[tuple[list[Statement], list[TrustGrant]]]:
        """(normalized statements, grants) of each document, in `partition`."""
        found = self._sides.get(partition)
        if found is None:
            found = []
            for doc in self.documents:
                statements = normalize(doc, partition)
                found.append((statements, trust_grants(statements, partition)))
            self._sides[partition] = found
        return found


def compare_trust(
    actual: Document,
    expected: Sequence[Document] | ExpectedTrust,
    *,
    partition: str | None = None,
    checked: bool = False,
) -> TrustDiff:
    """ACTUAL against alternative EXPECTED documents; the diff of the closest alternative.

    `expected` lists documents any one of which is acceptable (the Unity Catalog template
    has two shapes), or is those documents prepared (ExpectedTrust). An empty list means
    no one may assume. `partition` is only for bare account ids and defaults to the one
    the documents' ARNs use, the expected ones first. `checked`: `actual` is what
    load_document returned (an event's payload, trustwatch.aws.changes), not checked again.
    """
    prepared = expected if isinstance(expected, ExpectedTrust) else ExpectedTrust(expected)
    actual_doc = actual if checked and isinstance(actual, dict) else load_document(actual)
    part = partition or prepared.partition or infer_partition([actual_doc])
    act = normalize(actual_doc, part)
    diffs = [_diff_trust(act, stmts, part, grants) for stmts, grants in prepared.sides(part)]
    return min(diffs or [_diff_trust(act, [], part)], key=_diff_size)
