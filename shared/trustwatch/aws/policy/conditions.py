"""Condition clauses: their canonical form, and when one implies another.

A Condition block becomes a set of `ConditionClause`s (ANDed; the values of one clause are
ORed). Operators and keys are case-insensitive (operators take AWS's spelling, keys are
lower-cased, e.g. "sts:externalid"); values are case-sensitive. Reading the block out of
a document (and rejecting a malformed one) is `document`'s job; this module holds what the
comparisons ask of clauses:

ACTUAL's conditions must imply EXPECTED's (`unimplied` lists the expected clauses that fail):
each expected clause is implied by an actual clause on the same key (same or fewer values
for StringEquals-like operators, patterns inside patterns for *Like, CIDRs inside CIDRs,
more excluded values for negated operators, non-IfExists implies IfExists). Extra actual
clauses only narrow.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from trustwatch.aws.policy.wildcards import glob_covers, has_wildcard
from trustwatch.frozen import frozen

_OPERATORS = {
    op.lower(): op
    for op in (
        "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
        "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
        "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals",
        "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
        "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress", "NotIpAddress",
        "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
    )
}  # fmt: skip
_SET_PREFIXES = ("ForAnyValue:", "ForAllValues:")
# Operators whose values are patterns (ArnEquals matches wildcards exactly like ArnLike).
_PATTERN_OPS = {"StringLike", "ArnLike", "ArnEquals"}
# Operators where fewer values mean stricter (the request must match one of them).
_SUBSET_OPS = {"StringEquals", "NumericEquals", "DateEquals", "Bool", "BinaryEquals", "Null"}
# Negated operators where more values mean stricter (more is excluded).
_NEGATED_OPS = {
    "StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals",
    "ArnNotLike", "NotIpAddress", "NumericNotEquals", "DateNotEquals",
}  # fmt: skip


@frozen
class ConditionClause:
    """One operator/key test of a Condition block; several clauses are ANDed."""

    operator: str  # canonical spelling: "StringEquals", "ForAnyValue:StringLike", "BoolIfExists"
    key: str  # lower-cased: condition keys are case-insensitive
    values: frozenset[str]  # ORed; booleans and numbers as JSON text ("true", "5")

    @property
    def parts(self) -> tuple[str, str, bool]:
        """(set prefix, base operator, IfExists)."""
        op = self.operator
        prefix = next((p for p in _SET_PREFIXES if op.startswith(p)), "")
        op = op[len(prefix) :]
        if_exists = op.endswith("IfExists")
        return prefix, op.removesuffix("IfExists"), if_exists


# The longest real operator, ForAnyValue:StringNotEqualsIgnoreCaseIfExists, has 45
# characters: only strings that short are kept (an event's junk operators stay small).
_CACHED_OPERATOR_LENGTH = 64


def canonical_operator(op: str) -> str:
    """AWS's spelling of an operator in any case: stringlikeifexists -> StringLikeIfExists."""
    if len(op) <= _CACHED_OPERATOR_LENGTH:
        return _canonical_operator_cached(op)
    return _canonical_operator(op)


def _canonical_operator(op: str) -> str:
    rest = op.strip()
    prefix = next((p for p in _SET_PREFIXES if rest.lower().startswith(p.lower())), "")
    rest = rest[len(prefix) :]
    suffix = ""
    if rest.lower().endswith("ifexists") and rest.lower() != "ifexists":
        suffix, rest = "IfExists", rest[: -len("IfExists")]
    return prefix + _OPERATORS.get(rest.lower(), rest) + suffix


# a few operators, again and again; at most 1024 of them kept, each at most 64 characters
_canonical_operator_cached = functools.lru_cache(maxsize=1024)(_canonical_operator)


def clause_sort_key(clause: ConditionClause) -> tuple[str, str, list[str]]:
    """A stable order of clauses (frozenset order depends on insertion history)."""
    return clause.operator, clause.key, sorted(clause.values)


def render_conditions(clauses: Iterable[ConditionClause]) -> dict[str, dict[str, list[str]]]:
    """Clauses back to an IAM-like Condition block (values as sorted lists): JSON-friendly."""
    out: dict[str, dict[str, list[str]]] = {}
    for clause in sorted(clauses, key=clause_sort_key):
        out.setdefault(clause.operator, {})[clause.key] = sorted(clause.values)
    return out


def _cidr_within(inner: str, outer: str) -> bool:
    try:
        a = ipaddress.ip_network(inner, strict=False)
        b = ipaddress.ip_network(outer, strict=False)
    except ValueError:
        return inner == outer
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _clause_implies(a: ConditionClause, e: ConditionClause) -> bool:
    """True when every request satisfying actual clause `a` also satisfies expected `e`."""
    if a.key != e.key:
        return False
    if a == e:
        return True
    a_prefix, a_op, a_if_exists = a.parts
    e_prefix, e_op, e_if_exists = e.parts
    if a_prefix != e_prefix or (a_if_exists and not e_if_exists):
        return False
    if e_op in _PATTERN_OPS:
        return a_op in _PATTERN_OPS | {"StringEquals"} and all(
            any(glob_covers(ev, av) for ev in e.values) for av in a.values
        )
    if e_op == "StringEquals":
        literal = a_op in _PATTERN_OPS and not any(has_wildcard(v) for v in a.values)
        return (a_op == "StringEquals" or literal) and a.values <= e.values
    if e_op == "StringEqualsIgnoreCase":
        lowered = {v.lower() for v in e.values}
        return a_op in ("StringEquals", e_op) and {v.lower() for v in a.values} <= lowered
    if e_op == "IpAddress":
        return a_op == e_op and all(any(_cidr_within(av, ev) for ev in e.values) for av in a.values)
    if a_op != e_op:
        return False
    if e_op in _NEGATED_OPS:
        return a.values >= e.values
    if e_op in _SUBSET_OPS:
        return a.values <= e.values
    return a.values == e.values  # ordering operators (NumericLessThan ...): only the same bound


def unimplied(
    actual: frozenset[ConditionClause], expected: frozenset[ConditionClause]
) -> list[ConditionClause]:
    """Expected clauses that no actual clause implies (empty: actual is at least as strict)."""
    return [e for e in expected if not any(_clause_implies(a, e) for a in actual)]
