"""Trust grants: who a trust policy lets assume the role, and under which conditions.

A grant is (principal, assume actions, conditions), one per principal after normalization:
- An Allow with NotPrincipal counts as "*".
- An account root (or "*") constrained by a positive aws:PrincipalArn condition
  (ArnLike/ArnEquals/StringLike/StringEquals, not IfExists) is the principal(s) the
  condition names: root of A + ArnLike aws:PrincipalArn=arn:aws:iam::A:role/X == role/X
  (the Unity Catalog self-assume shape). "*" + StringEquals aws:PrincipalAccount=A == root of A.
  Every such clause of a statement applies (conditions are ANDed): "*" + PrincipalAccount A
  + ArnLike PrincipalArn arn:aws:iam::*:role/X == arn:aws:iam::A:role/X.
- Deny statements only narrow: the one Deny credited against an Allow is the provable
  "Deny Principal * unless aws:PrincipalAccount / aws:PrincipalArn is X" (one negated
  condition, nothing else): it leaves only X. Any other Deny is ignored here, so adding a
  Deny never widens (conservative); `trust` checks dropped Denies and breakage.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trustwatch.aws.policy.conditions import ConditionClause, clause_sort_key, render_conditions
from trustwatch.aws.policy.document import (
    Document,
    Statement,
    load_document,
    normalize,
    sort_text,
)
from trustwatch.aws.policy.principals import (
    infer_partition,
    is_account_root,
    principal_covers,
    split_arn,
)
from trustwatch.aws.policy.wildcards import glob_covers, has_wildcard
from trustwatch.frozen import frozen


@frozen
class TrustGrant:
    """One principal allowed to assume the role, with the conditions that bind it."""

    principal: str  # canonical, see the module docstring
    actions: frozenset[str]  # lower-cased, e.g. "sts:assumerole"; may hold patterns ("sts:*")
    external_ids: frozenset[str] | None  # None: no ExternalId condition really constrains it
    conditions: frozenset[ConditionClause]  # all remaining clauses, ExternalId one included

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "actions": sorted(self.actions),
            "external_id": sorted_or_none(self.external_ids),
            "conditions": render_conditions(self.conditions),
        }


def sorted_or_none(values: Iterable[str] | None) -> list[str] | None:
    """JSON-friendly values: sorted, or None kept as None."""
    return None if values is None else sorted(values)


def _external_ids(conditions: frozenset[ConditionClause]) -> frozenset[str] | None:
    """Values of the ExternalId test, None when absent, IfExists, or a bare wildcard."""
    for op in ("StringEquals", "StringLike", "StringEqualsIgnoreCase"):
        for clause in conditions:
            if clause.key == "sts:externalid" and clause.operator == op:
                if all(set(v) <= {"*", "?"} for v in clause.values):
                    return None  # StringLike "*" only asks that some ExternalId is sent
                return clause.values
    return None


_PRINCIPAL_ARN_OPS = {"ArnLike", "ArnEquals", "StringLike", "StringEquals"}


def _narrowing_values(clause: ConditionClause, partition: str) -> list[str] | None:
    """The principals a positive aws:PrincipalArn / aws:PrincipalAccount clause admits."""
    if clause.key == "aws:principalarn" and clause.operator in _PRINCIPAL_ARN_OPS:
        return sorted(clause.values)
    if clause.key == "aws:principalaccount" and clause.operator == "StringEquals":
        return [f"arn:{partition}:iam::{a}:root" for a in sorted(clause.values)]
    return None


def _meet(current: str, value: str) -> str | None:
    """A principal (pattern) covering everything both admit; None when provably disjoint.

    Exact where one contains the other; for two overlapping patterns it keeps `current`,
    a superset of the intersection (reports more, never less).
    """
    if current == "*":
        return value
    if split_arn(current) is None and not current.startswith("arn:"):
        return None  # service/federated/canonical principals have no aws:PrincipalArn
    if is_account_root(current):
        return _within_account(current, value)
    if is_account_root(value):
        return _within_account(value, current)  # the pattern, inside that account
    if principal_covers(value, current):
        return current
    if principal_covers(current, value):
        return value
    if not has_wildcard(current) and not has_wildcard(value):
        return None  # two different literal principals never meet
    a, b = split_arn(current), split_arn(value)
    if a and b and not has_wildcard(a[2] + b[2]) and a[2] != b[2]:
        return None  # different accounts
    return current


def _narrow(
    principal: str, conditions: frozenset[ConditionClause], partition: str
) -> list[tuple[str, frozenset[ConditionClause]]]:
    """Replace a root or "*" principal by the principals its conditions name.

    A statement's conditions are all required ("Creating a condition with multiple keys or
    values", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html):
    every narrowing clause applies, so "*" + aws:PrincipalAccount A + ArnLike
    aws:PrincipalArn role/X is role/X.
    """
    if principal != "*" and not is_account_root(principal):
        return [(principal, conditions)]
    candidates = [principal]
    rest = set(conditions)
    for clause in sorted(conditions, key=clause_sort_key):
        values = _narrowing_values(clause, partition)
        if values is None:
            continue
        rest.discard(clause)
        candidates = sorted(
            {m for c in candidates for v in values if (m := _meet(c, v)) is not None}
        )
    return [(c, frozenset(rest)) for c in candidates]


def _within_account(root: str, value: str) -> str | None:
    """`value` (an ARN or pattern) restricted to the account of `root`; None if disjoint."""
    if root == "*":
        return value
    arn = split_arn(value)
    if arn is None:
        return root  # not an ARN ("*"): no narrowing, keep the root
    root_arn = split_arn(root)
    assert root_arn is not None  # callers pass "*" or an account root
    r_partition, r_account = root_arn[0], root_arn[2]
    if not (glob_covers(arn[0], r_partition) and glob_covers(arn[2], r_account)):
        return None
    parts = value.split(":", 5)
    parts[1], parts[4] = r_partition, r_account
    return ":".join(parts)


# Negated operators whose Deny admits only the listed principals (the rest is denied).
_EXCLUDING_OPS = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _deny_admits(stmt: Statement, partition: str) -> list[str] | None:
    """The only principals a Deny leaves able to act, when that is provable.

    Provable: Principal "*", one condition, a negated test on aws:PrincipalAccount or
    aws:PrincipalArn (Deny unless the caller is one of these). An explicit Deny overrides
    any Allow ("Policy evaluation logic",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
    Anything else (more conditions, other keys) is not credited: conservative.
    """
    if stmt.effect != "Deny" or stmt.principals != frozenset({"*"}) or len(stmt.conditions) != 1:
        return None
    (clause,) = stmt.conditions
    prefix, op, _ = clause.parts
    if prefix or op not in _EXCLUDING_OPS:
        return None
    if clause.key == "aws:principalaccount" and op in ("StringNotEquals", "StringNotLike"):
        return [f"arn:{partition}:iam::{a}:root" for a in sorted(clause.values)]
    if clause.key == "aws:principalarn":
        return sorted(clause.values)
    return None


def _apply_denies(
    grants: list[TrustGrant], stmts: list[Statement], partition: str
) -> list[TrustGrant]:
    """Narrow grants by Denies that provably exclude every principal but a few."""
    narrowed = False
    for stmt in stmts:
        admits = _deny_admits(stmt, partition)
        if admits is None:
            continue
        narrowed = True
        out = []
        for g in grants:
            denied = frozenset(a for a in g.actions if _deny_covers_action(stmt, a))
            if not denied:
                out.append(g)
                continue
            if g.actions - denied:
                out.append(
                    TrustGrant(g.principal, g.actions - denied, g.external_ids, g.conditions)
                )
            for who in sorted({m for v in admits if (m := _meet(g.principal, v)) is not None}):
                out.append(TrustGrant(who, denied, g.external_ids, g.conditions))
        grants = out
    # no Deny narrowed them: still the distinct, sorted grants they came as
    return _sorted_grants(set(grants)) if narrowed else grants


def _deny_covers_action(stmt: Statement, action: str) -> bool:
    if stmt.actions is not None:
        return any(glob_covers(p, action) for p in stmt.actions)
    return not any(glob_covers(n, action) or glob_covers(action, n) for n in stmt.not_actions or ())


def trust_grants(stmts: list[Statement], partition: str) -> list[TrustGrant]:
    """The grants of normalized trust statements: Allows merged per (principal, conditions),
    narrowed by their conditions and by the provable Denies."""
    merged: dict[tuple[str, frozenset[ConditionClause]], set[str]] = {}
    for stmt in stmts:
        if stmt.effect != "Allow":
            continue
        if stmt.not_principals is not None:
            principals: frozenset[str] = frozenset({"*"})  # everyone but a few
        elif stmt.principals is not None:
            principals = stmt.principals
        else:
            continue  # a trust statement without a principal admits no one
        # NotAction in a trust Allow: conservatively any action
        actions = stmt.actions if stmt.actions is not None else frozenset({"*"})
        for principal in principals:
            for who, conditions in _narrow(principal, stmt.conditions, partition):
                merged.setdefault((who, conditions), set()).update(actions)
    grants = [
        TrustGrant(who, frozenset(actions), _external_ids(conds), conds)
        for (who, conds), actions in merged.items()
    ]
    return _apply_denies(_sorted_grants(grants), stmts, partition)


def _sorted_grants(grants: Iterable[TrustGrant]) -> list[TrustGrant]:
    found = list(grants)
    return found if len(found) < 2 else sorted(found, key=grant_key)  # one: no key to render


def grant_key(grant: TrustGrant) -> str:
    """A stable sort key (frozenset reprs depend on insertion history)."""
    return sort_text(grant.as_dict())


def trust_principals(doc: Document, *, partition: str | None = None) -> list[TrustGrant]:
    """Who may assume the role, after normalization (Allow statements; Denies ignored)."""
    loaded = load_document(doc)
    part = partition or infer_partition([loaded])
    return trust_grants(normalize(loaded, part), part)
