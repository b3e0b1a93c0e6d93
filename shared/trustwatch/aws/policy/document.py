"""IAM policy semantics: does ACTUAL grant anything BASELINE does not?

The question IAM Access Analyzer's check-no-new-access asks, answered offline by pure
functions (no I/O, no boto3).

Normalization, so that text never matters:
- A document is a dict, JSON text (pretty or compact) or URL-encoded JSON (CloudTrail
  responseElements). `Statement` may be one object or a list; Action/Resource/Principal
  values a string or a list. Sid and statement order are ignored.
- Actions are case-insensitive and reported lower-cased. Condition operators and keys are
  case-insensitive (keys are reported lower-cased, e.g. "sts:externalid"); condition values
  and resource ARNs are case-sensitive.
- Principals become canonical strings: "123456789012", "arn:<p>:iam::123456789012:root" and
  their {"AWS": ...} forms are "arn:<p>:iam::123456789012:root" (a bare id takes the
  partition of the ARNs in the documents compared, else "aws"); role/user ARNs stay as
  given; {"Service": S} -> "service:<s lower-cased>"; {"Federated": F} -> "federated:F";
  {"CanonicalUser": C} -> "canonical:C"; "*" and {"AWS": "*"} -> "*". An Allow with
  NotPrincipal counts as "*".
- An account root (or "*") constrained by a positive aws:PrincipalArn condition
  (ArnLike/ArnEquals/StringLike/StringEquals, not IfExists) is the principal(s) the
  condition names: root of A + ArnLike aws:PrincipalArn=arn:aws:iam::A:role/X == role/X
  (the Unity Catalog self-assume shape). "*" + StringEquals aws:PrincipalAccount=A == root of A.
  Every such clause of a statement applies (conditions are ANDed): "*" + PrincipalAccount A
  + ArnLike PrincipalArn arn:aws:iam::*:role/X == arn:aws:iam::A:role/X.
- IAM names compare case-insensitively in principal ARNs (role/DBX == role/dbx); paths,
  accounts and partitions keep their case (iam_arn_key).

Coverage (the one relation everything uses):
- principals: "*" covers all; an account root covers every iam/sts principal of that
  account; a role covers its assumed-role sessions; otherwise equality or ARN wildcards.
- actions and resources: IAM wildcards (* and ?) as pattern inclusion: s3:Get* covers
  s3:GetObject and s3:Get*; it does not cover s3:*.
- conditions: ACTUAL's conditions must imply EXPECTED's: each expected clause is implied
  by an actual clause on the same key (same or fewer values for StringEquals-like
  operators, patterns inside patterns for *Like, CIDRs inside CIDRs, more excluded values
  for negated operators, non-IfExists implies IfExists). Extra actual clauses only narrow.

Trust (compare_trust): a grant is (principal, assume actions, conditions).
- principals_added: an actual principal no expected grant covers (incl. "*").
- external_id_missing: covered, but the expected sts:ExternalId clause has no ExternalId
  clause at all in actual.
- condition_weakened: the ExternalId changed, wildcarded (StringLike) or made ...IfExists;
  another expected condition removed or weakened; new assume actions for an expected
  principal ("actions_added"); a baseline Deny with no equally broad Deny in actual.
- expected_principals_removed: an expected principal/action no actual grant covers any more
  (or that an unconditional actual Deny blocks).
Deny statements only narrow: besides the dropped-Deny and breakage checks, the one Deny
credited against an Allow is the provable "Deny Principal * unless aws:PrincipalAccount /
aws:PrincipalArn is X" (one negated condition, nothing else): it leaves only X. Any other
Deny is ignored, so adding a Deny never widens (conservative).

Permissions (compare_permissions): each Allow is split into (principal?, action, resource,
conditions) items; an actual item is covered by one expected Allow that covers its action,
resource and principal and whose conditions its own conditions imply. NotAction /
NotResource are conservative: covered only by an expected statement with the identical
NotAction (NotResource) list, or by Action "*" (Resource "*"); a literal action outside an
expected NotAction list is covered. A baseline Deny that actual lacks is reported in
`added` with effect "Deny" (its absence allows more). `removed` ignores conditions.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus


class PolicyError(ValueError):
    """An invalid policy document; the message says what is wrong and where."""


Document = str | dict[str, Any]

# ---------------------------------------------------------------- loading and validation

_PRINCIPAL_TYPES = ("AWS", "Service", "Federated", "CanonicalUser")


def load_document(doc: Document) -> dict[str, Any]:
    """Parse and check a policy document: a dict, JSON text, or URL-encoded JSON text."""
    if isinstance(doc, dict):
        parsed: Any = doc
    elif isinstance(doc, str):
        parsed = _parse_text(doc)
    else:
        raise PolicyError(f"policy document must be a dict or JSON text, got {_kind(doc)}")
    _validate(parsed)
    return parsed


def _parse_text(text: str) -> Any:
    text = text.strip()
    if not text:
        raise PolicyError("policy document is empty")
    candidates = [text]
    if "%" in text or "+" in text:
        # IAM and CloudTrail URL-encode documents (%20 for spaces; some tools use '+').
        candidates += [unquote(text), unquote_plus(text)]
    first_error: ValueError | None = None
    for candidate in candidates:
        try:
            # strict=False: published CloudTrail records carry raw newlines inside strings.
            value = json.loads(candidate, strict=False)
        except RecursionError:
            raise PolicyError("policy document is nested too deeply") from None
        except ValueError as exc:
            first_error = first_error or exc
            continue
        if isinstance(value, str):  # JSON text stored as a JSON string (double-encoded)
            with contextlib.suppress(ValueError, RecursionError):
                value = json.loads(value, strict=False)
        return value
    raise PolicyError(f"policy document is not valid JSON: {first_error}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)


def _validate(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise PolicyError(f"policy document must be a JSON object, got {_kind(doc)}")
    if "Statement" not in doc:
        raise PolicyError("policy document has no 'Statement'")
    for index, stmt in enumerate(_statement_list(doc)):
        where = f"Statement[{index}]"
        if not isinstance(stmt, dict):
            raise PolicyError(f"{where} must be an object, got {_kind(stmt)}")
        effect = stmt.get("Effect")
        if not isinstance(effect, str) or effect.lower() not in ("allow", "deny"):
            raise PolicyError(f"{where}.Effect must be 'Allow' or 'Deny', got {effect!r}")
        if ("Action" in stmt) == ("NotAction" in stmt):
            raise PolicyError(f"{where} needs exactly one of 'Action' or 'NotAction'")
        if "Resource" in stmt and "NotResource" in stmt:
            raise PolicyError(f"{where} has both 'Resource' and 'NotResource'")
        if "Principal" in stmt and "NotPrincipal" in stmt:
            raise PolicyError(f"{where} has both 'Principal' and 'NotPrincipal'")
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in stmt:
                _strings(stmt[key], f"{where}.{key}")
        for key in ("Principal", "NotPrincipal"):
            if key in stmt:
                _principal_entries(stmt[key], f"{where}.{key}")
        if "Condition" in stmt:
            _conditions(stmt["Condition"], f"{where}.Condition")


def _statement_list(doc: dict[str, Any]) -> list[Any]:
    stmts = doc["Statement"]
    if isinstance(stmts, dict):
        return [stmts]
    if not isinstance(stmts, list):
        raise PolicyError(f"'Statement' must be an object or a list of objects, got {_kind(stmts)}")
    return stmts


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise PolicyError(f"{where} must be a string or a list of strings, got {_kind(value)}")


def _principal_entries(value: Any, where: str) -> list[tuple[str, str]]:
    if value == "*":
        return [("*", "*")]
    if not isinstance(value, dict):
        raise PolicyError(f'{where} must be "*" or an object like {{"AWS": ...}}')
    out = []
    for kind, names in value.items():
        if kind not in _PRINCIPAL_TYPES:
            raise PolicyError(
                f"{where}: unknown principal type {kind!r}; expected one of "
                + ", ".join(_PRINCIPAL_TYPES)
            )
        out += [(kind, name.strip()) for name in _strings(names, f"{where}.{kind}")]
    return out


# ---------------------------------------------------------------- conditions

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


@dataclass(frozen=True)
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


def _canonical_operator(op: str) -> str:
    rest = op.strip()
    prefix = next((p for p in _SET_PREFIXES if rest.lower().startswith(p.lower())), "")
    rest = rest[len(prefix) :]
    suffix = ""
    if rest.lower().endswith("ifexists") and rest.lower() != "ifexists":
        suffix, rest = "IfExists", rest[: -len("IfExists")]
    return prefix + _OPERATORS.get(rest.lower(), rest) + suffix


def _condition_value(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise PolicyError(f"{where}: condition values must be strings, numbers or booleans")


def _conditions(block: Any, where: str) -> frozenset[ConditionClause]:
    if not isinstance(block, dict):
        raise PolicyError(f"{where} must be an object, got {_kind(block)}")
    out = set()
    for op, tests in block.items():
        if not isinstance(tests, dict):
            raise PolicyError(f"{where}.{op} must be an object of key: value(s)")
        for key, raw in tests.items():
            values = raw if isinstance(raw, list) else [raw]
            clause = ConditionClause(
                _canonical_operator(op),
                key.strip().lower(),
                frozenset(_condition_value(v, f"{where}.{op}.{key}") for v in values),
            )
            out.add(clause)
    return frozenset(out)


def _clause_sort_key(clause: ConditionClause) -> tuple[str, str, list[str]]:
    return clause.operator, clause.key, sorted(clause.values)


def render_conditions(clauses: Iterable[ConditionClause]) -> dict[str, dict[str, list[str]]]:
    """Clauses back to an IAM-like Condition block (values as sorted lists): JSON-friendly."""
    out: dict[str, dict[str, list[str]]] = {}
    for clause in sorted(clauses, key=_clause_sort_key):
        out.setdefault(clause.operator, {})[clause.key] = sorted(clause.values)
    return out


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


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
            any(_glob_covers(ev, av) for ev in e.values) for av in a.values
        )
    if e_op == "StringEquals":
        literal = a_op in _PATTERN_OPS and not any(_has_wildcard(v) for v in a.values)
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


def _unimplied(
    actual: frozenset[ConditionClause], expected: frozenset[ConditionClause]
) -> list[ConditionClause]:
    """Expected clauses that no actual clause implies (empty: actual is at least as strict)."""
    return [e for e in expected if not any(_clause_implies(a, e) for a in actual)]


# ---------------------------------------------------------------- wildcards and principals


# IAM caps ARNs and patterns at 2048 characters; longer strings are compared literally,
# which can only report more drift, never less.
_MAX_PATTERN = 2048


def _glob_covers(general: str, specific: str) -> bool:
    """True when everything `specific` (a literal or an IAM pattern) matches, `general` matches."""
    if general == specific:
        return True
    if len(general) > _MAX_PATTERN or len(specific) > _MAX_PATTERN:
        return False
    return _wildcard_match(general, specific)


def glob_covers(general: str, specific: str) -> bool:
    """IAM wildcard inclusion (public name for rules): s3:Get* covers s3:GetObject."""
    return _glob_covers(general, specific)


def _wildcard_match(pattern: str, text: str) -> bool:
    """Greedy '*'/'?' matching in O(len(pattern) * len(text)) at worst: a regex of many
    '.*' backtracks exponentially on attacker-written policies. '?' never stands for a
    '*' of `text`, which may be many characters."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == text[t] or (pattern[p] == "?" and text[t] != "*")):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


_ACCOUNT_ID = re.compile(r"\d{12}")
_ARN_PARTITION = re.compile(r"arn:(aws(?:-[a-z]+)*):")


def _split_arn(value: str) -> tuple[str, str, str, str] | None:
    """(partition, service, account, resource) of an ARN, None otherwise."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return parts[1], parts[2], parts[4], parts[5]


def _canonical_principal(kind: str, name: str, partition: str) -> str:
    if kind == "*" or (kind == "AWS" and name == "*"):
        return "*"
    if kind == "AWS":
        return f"arn:{partition}:iam::{name}:root" if _ACCOUNT_ID.fullmatch(name) else name
    if kind == "Service":
        return f"service:{name.lower()}"
    if kind == "Federated":
        return f"federated:{name}"
    return f"canonical:{name}"


def _is_account_root(principal: str) -> bool:
    arn = _split_arn(principal)
    return arn is not None and arn[1] == "iam" and arn[3] == "root" and not _has_wildcard(principal)


# IAM resources whose names "are not distinguished by case" (IAM quotas page,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html); paths,
# partitions, services and account ids keep their case.
_IAM_NAMED = ("role", "user", "group", "policy", "instance-profile")


def iam_arn_key(arn: str) -> str:
    """The comparison key of an IAM ARN: its name (the part after the last '/') lower-cased."""
    parts = _split_arn(arn.strip())
    if parts is None or parts[1] != "iam" or parts[3].split("/", 1)[0] not in _IAM_NAMED:
        return arn.strip()
    head, _, name = arn.strip().rpartition("/")
    return f"{head}/{name.lower()}"


def principal_covers(general: str, specific: str) -> bool:
    """True when trusting canonical principal `general` also trusts `specific`."""
    if general in ("*", specific):
        return True
    if specific == "*":
        return False
    g, s = _split_arn(general), _split_arn(specific)
    if g is None and s is not None and _has_wildcard(general):
        # a pattern that is not a whole ARN ("arn:*", from StringLike aws:PrincipalArn)
        return _glob_covers(general, specific)
    if g is None or s is None:
        return False  # service:/federated:/canonical: principals only match themselves
    if _is_account_root(general):
        # trusting an account delegates to every IAM principal of that account
        return s[0] == g[0] and s[2] == g[2] and s[1] in ("iam", "sts")
    if g[1] == "iam" and g[3].startswith("role/") and s[1] == "sts":
        session = s[3].split("/")
        if len(session) >= 2 and session[0] == "assumed-role" and (s[0], s[2]) == (g[0], g[2]):
            return session[1].lower() == g[3].rsplit("/", 1)[-1].lower()
    if not _has_wildcard(general) and iam_arn_key(general) == iam_arn_key(specific):
        return True  # role/DBX-XACCT is role/dbx-xacct
    return _glob_covers(general, specific)


def _infer_partition(docs: Iterable[dict[str, Any]]) -> str:
    for doc in docs:
        found = _ARN_PARTITION.search(json.dumps(doc))
        if found:
            return found.group(1)
    return "aws"


# ---------------------------------------------------------------- normalized statements


@dataclass(frozen=True)
class _Statement:
    effect: str  # "Allow" | "Deny"
    actions: frozenset[str] | None  # lower-cased; None when NotAction is used
    not_actions: frozenset[str] | None
    resources: frozenset[str] | None
    not_resources: frozenset[str] | None
    principals: frozenset[str] | None
    not_principals: frozenset[str] | None
    conditions: frozenset[ConditionClause]


def _lowered(raw: dict[str, Any], key: str, where: str) -> frozenset[str] | None:
    if key not in raw:
        return None
    return frozenset(a.strip().lower() for a in _strings(raw[key], f"{where}.{key}"))


def _as_set(raw: dict[str, Any], key: str, where: str) -> frozenset[str] | None:
    return frozenset(_strings(raw[key], f"{where}.{key}")) if key in raw else None


def _principal_set(
    raw: dict[str, Any], key: str, where: str, partition: str
) -> frozenset[str] | None:
    if key not in raw:
        return None
    entries = _principal_entries(raw[key], f"{where}.{key}")
    return frozenset(_canonical_principal(kind, name, partition) for kind, name in entries)


def _normalize(doc: dict[str, Any], partition: str) -> list[_Statement]:
    out: set[_Statement] = set()
    for index, raw in enumerate(_statement_list(doc)):
        where = f"Statement[{index}]"
        out.add(
            _Statement(
                effect=raw["Effect"].capitalize(),
                actions=_lowered(raw, "Action", where),
                not_actions=_lowered(raw, "NotAction", where),
                resources=_as_set(raw, "Resource", where),
                not_resources=_as_set(raw, "NotResource", where),
                principals=_principal_set(raw, "Principal", where, partition),
                not_principals=_principal_set(raw, "NotPrincipal", where, partition),
                conditions=_conditions(raw.get("Condition", {}), f"{where}.Condition"),
            )
        )
    return sorted(out, key=lambda s: json.dumps(_statement_dict(s), sort_keys=True))


def _statement_dict(stmt: _Statement) -> dict[str, Any]:
    """A normalized statement as JSON-friendly IAM syntax (lists sorted)."""
    out: dict[str, Any] = {"Effect": stmt.effect}
    for key, value in (
        ("Principal", stmt.principals),
        ("NotPrincipal", stmt.not_principals),
        ("Action", stmt.actions),
        ("NotAction", stmt.not_actions),
        ("Resource", stmt.resources),
        ("NotResource", stmt.not_resources),
    ):
        if value is not None:
            out[key] = sorted(value)
    if stmt.conditions:
        out["Condition"] = render_conditions(stmt.conditions)
    return out


# ---------------------------------------------------------------- trust


@dataclass(frozen=True)
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
            "external_id": _sorted_or_none(self.external_ids),
            "conditions": render_conditions(self.conditions),
        }


def _sorted_or_none(values: Iterable[str] | None) -> list[str] | None:
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
    if _split_arn(current) is None and not current.startswith("arn:"):
        return None  # service/federated/canonical principals have no aws:PrincipalArn
    if _is_account_root(current):
        return _within_account(current, value)
    if _is_account_root(value):
        return _within_account(value, current)  # the pattern, inside that account
    if principal_covers(value, current):
        return current
    if principal_covers(current, value):
        return value
    if not _has_wildcard(current) and not _has_wildcard(value):
        return None  # two different literal principals never meet
    a, b = _split_arn(current), _split_arn(value)
    if a and b and not _has_wildcard(a[2] + b[2]) and a[2] != b[2]:
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
    if principal != "*" and not _is_account_root(principal):
        return [(principal, conditions)]
    candidates = [principal]
    rest = set(conditions)
    for clause in sorted(conditions, key=_clause_sort_key):
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
    arn = _split_arn(value)
    if arn is None:
        return root  # not an ARN ("*"): no narrowing, keep the root
    root_arn = _split_arn(root)
    assert root_arn is not None  # callers pass "*" or an account root
    r_partition, r_account = root_arn[0], root_arn[2]
    if not (_glob_covers(arn[0], r_partition) and _glob_covers(arn[2], r_account)):
        return None
    parts = value.split(":", 5)
    parts[1], parts[4] = r_partition, r_account
    return ":".join(parts)


# Negated operators whose Deny admits only the listed principals (the rest is denied).
_EXCLUDING_OPS = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _deny_admits(stmt: _Statement, partition: str) -> list[str] | None:
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
    grants: list[TrustGrant], stmts: list[_Statement], partition: str
) -> list[TrustGrant]:
    """Narrow grants by Denies that provably exclude every principal but a few."""
    for stmt in stmts:
        admits = _deny_admits(stmt, partition)
        if admits is None:
            continue
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
    return sorted(set(grants), key=_key)


def _deny_covers_action(stmt: _Statement, action: str) -> bool:
    if stmt.actions is not None:
        return any(_glob_covers(p, action) for p in stmt.actions)
    return not any(
        _glob_covers(n, action) or _glob_covers(action, n) for n in stmt.not_actions or ()
    )


def _grants(stmts: list[_Statement], partition: str) -> list[TrustGrant]:
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
    return _apply_denies(sorted(grants, key=_key), stmts, partition)


def _key(grant: TrustGrant) -> str:
    """A stable sort key (frozenset reprs depend on insertion history)."""
    return json.dumps(grant.as_dict(), sort_keys=True)


def trust_principals(doc: Document, *, partition: str | None = None) -> list[TrustGrant]:
    """Who may assume the role, after normalization (Allow statements; Denies ignored)."""
    loaded = load_document(doc)
    part = partition or _infer_partition([loaded])
    return _grants(_normalize(loaded, part), part)


@dataclass(frozen=True)
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


def _ordered(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unique = {json.dumps(i, sort_keys=True): i for i in items}
    return [unique[k] for k in sorted(unique)]


def _weakness_reason(actual_xid: list[ConditionClause]) -> str:
    if all(c.parts[2] for c in actual_xid):
        return "external_id_if_exists"
    if any(_has_wildcard(v) for c in actual_xid for v in c.values):
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
        if not any(_glob_covers(p, a) for e in candidates for p in e.actions)
    )
    if new_actions:
        weakened.append({**base, "actions": new_actions, "reason": "actions_added"})
    # For each covered action, find an expected grant whose conditions actual implies;
    # failing that, report against the closest one (fewest unmet clauses).
    shortfalls: dict[TrustGrant, list[str]] = {}
    for action in sorted(grant.actions - set(new_actions)):
        fitting = [e for e in candidates if any(_glob_covers(p, action) for p in e.actions)]
        if any(not _unimplied(grant.conditions, e.conditions) for e in fitting):
            continue
        best = min(
            fitting, key=lambda e: (len(_unimplied(grant.conditions, e.conditions)), _key(e))
        )
        shortfalls.setdefault(best, []).append(action)
    for best, actions in shortfalls.items():
        unmet = _unimplied(grant.conditions, best.conditions)
        item = {
            **base,
            "actions": actions,
            "expected_principal": best.principal,
            "expected_external_id": _sorted_or_none(best.external_ids),
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


def _denied(stmts: list[_Statement], principal: str, action: str) -> bool:
    """An unconditional Deny in `stmts` blocks `principal` from `action`."""
    for s in stmts:
        if s.effect != "Deny" or s.conditions or s.principals is None:
            continue
        if not any(principal_covers(p, principal) for p in s.principals):
            continue
        if s.actions is not None and any(_glob_covers(p, action) for p in s.actions):
            return True
        if s.not_actions is not None and not any(_glob_covers(p, action) for p in s.not_actions):
            return True
    return False


def _lost(
    principal: str,
    action: str,
    act: list[TrustGrant],
    actual: list[_Statement],
    expected: list[_Statement],
) -> bool:
    """Can an expected principal no longer perform an assume action it could before?"""
    if _denied(expected, principal, action):
        return False  # the baseline itself blocks it: nothing to lose
    allowed = any(
        principal_covers(g.principal, principal) and any(_glob_covers(p, action) for p in g.actions)
        for g in act
    )
    return not allowed or _denied(actual, principal, action)


def _diff_trust(actual: list[_Statement], expected: list[_Statement], partition: str) -> TrustDiff:
    act, exp = _grants(actual, partition), _grants(expected, partition)
    added: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    weakened: list[dict[str, Any]] = []
    for grant in act:
        if not _check_grant(grant, exp, missing, weakened):
            added.append(grant.as_dict())
    for item in _dropped_denies(actual, expected):
        weakened.append(
            {
                "principal": item.principal or "*",
                "actions": [item.action] if item.action else sorted(item.not_action or ()),
                "reason": "deny_removed",
                "statement": _item_dict(item),
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
                    "expected_external_id": _sorted_or_none(e.external_ids),
                    "expected_conditions": render_conditions(e.conditions),
                }
            )
    return TrustDiff(_ordered(added), _ordered(missing), _ordered(weakened), _ordered(removed))


def _diff_size(diff: TrustDiff) -> tuple[bool, int, int]:
    widening = (
        len(diff.principals_added) + len(diff.external_id_missing) + len(diff.condition_weakened)
    )
    return diff.widened, widening, len(diff.expected_principals_removed)


def compare_trust(
    actual: Document, expected: list[Document], *, partition: str | None = None
) -> TrustDiff:
    """ACTUAL against alternative EXPECTED documents; the diff of the closest alternative.

    `expected` lists documents any one of which is acceptable (the Unity Catalog template
    has two shapes). An empty list means no one may assume. `partition` is only for bare
    account ids and defaults to the one the documents' ARNs use.
    """
    actual_doc = load_document(actual)
    expected_docs = [load_document(d) for d in expected]
    part = partition or _infer_partition([*expected_docs, actual_doc])
    act = _normalize(actual_doc, part)
    diffs = [_diff_trust(act, _normalize(d, part), part) for d in expected_docs]
    return min(diffs or [_diff_trust(act, [], part)], key=_diff_size)


# ---------------------------------------------------------------- permissions


@dataclass(frozen=True)
class _Item:
    """One Allow/Deny of a statement: a single principal, action and resource."""

    effect: str
    principal: str | None
    not_principal: frozenset[str] | None
    action: str | None
    not_action: frozenset[str] | None
    resource: str | None
    not_resource: frozenset[str] | None
    conditions: frozenset[ConditionClause]


def _items(stmt: _Statement) -> Iterator[_Item]:
    if stmt.principals is not None and not stmt.principals:
        return  # Principal {} / {"AWS": []} names no one: the statement grants nothing
    principals: list[str | None] = sorted(stmt.principals) if stmt.principals else [None]
    actions: list[str | None] = sorted(stmt.actions) if stmt.actions is not None else [None]
    if stmt.resources is None and stmt.not_resources is None:
        resources: list[str | None] = ["*"]  # no Resource: whatever the policy is attached to
    else:
        resources = sorted(stmt.resources) if stmt.resources is not None else [None]
    for principal in principals:
        for action in actions:
            for resource in resources:
                yield _Item(
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
            return any(_glob_covers(p, value) for p in positive)
        # a literal outside every excluded pattern is allowed by a NotX statement
        return not _has_wildcard(value) and not any(_glob_covers(n, value) for n in negative or ())
    if positive is not None:
        return "*" in positive
    return not_values == negative


def _resource_part(stmt: _Statement) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    if stmt.resources is None and stmt.not_resources is None:
        return frozenset({"*"}), None
    return stmt.resources, stmt.not_resources


def _covered(item: _Item, stmt: _Statement, conditions: str) -> bool:
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
    resources, not_resources = _resource_part(stmt)
    if not _part_covered(item.resource, item.not_resource, resources, not_resources):
        return False
    if conditions == "implies":
        return not _unimplied(item.conditions, stmt.conditions)
    return True


def _dropped_denies(actual: list[_Statement], expected: list[_Statement]) -> list[_Item]:
    """Baseline Deny items no actual Deny covers (same or broader scope, same or fewer conditions)."""
    denies = [s for s in actual if s.effect == "Deny"]
    return [
        item
        for stmt in expected
        if stmt.effect == "Deny"
        for item in _items(stmt)
        if not any(_covered(item, d, "implies") for d in denies)
    ]


def _item_dict(item: _Item) -> dict[str, Any]:
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


@dataclass(frozen=True)
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
    part = _infer_partition(docs)
    act = _normalize(actual_doc, part)
    exp = _normalize(expected_doc, part) if expected_doc is not None else []
    exp_allows = [s for s in exp if s.effect == "Allow"]
    act_allows = [s for s in act if s.effect == "Allow"]
    added = [
        _item_dict(item)
        for stmt in act_allows
        for item in _items(stmt)
        if not any(_covered(item, e, "implies") for e in exp_allows)
    ]
    added += [_item_dict(item) for item in _dropped_denies(act, exp)]
    removed = [
        _item_dict(item)
        for stmt in exp_allows
        for item in _items(stmt)
        if not any(_covered(item, a, "ignore") for a in act_allows)
    ]
    return PermissionDiff(_ordered(added), _ordered(removed))


# ---------------------------------------------------------------- admin


def _reaches_iam(resource: str) -> bool:
    """Could this resource pattern name an IAM resource ("*", arn:aws:iam::..., arn:*:*...)?"""
    parts = resource.split(":")
    if len(parts) < 3:
        return "*" in resource
    return "*" in parts[0] + parts[1] or _glob_covers(parts[2], "iam")


def grants_admin(doc: Document) -> bool:
    """Does any Allow grant "*" or all of "iam:*" on resources that include IAM ones?

    Admin means "can rewrite IAM, hence anything": an action pattern covering iam:* ("*",
    "iam:*", "i*", "iam:*" via NotAction lists that do not exclude iam:*). Conditions are
    ignored (conservative). NotAction ["iam:*", ...] (PowerUserAccess) is not admin.
    """
    loaded = load_document(doc)
    for stmt in _normalize(loaded, _infer_partition([loaded])):
        if stmt.effect != "Allow":
            continue
        if stmt.actions is not None:
            iam_all = any(_glob_covers(a, "iam:*") for a in stmt.actions)
        else:
            iam_all = not any(_glob_covers(n, "iam:*") for n in stmt.not_actions or ())
        resources, not_resources = _resource_part(stmt)
        reaches = not_resources is not None or any(_reaches_iam(r) for r in resources or ())
        if iam_all and reaches:
            return True
    return False


# AWS managed policies that grant "*" or "iam:*" (policy name -> what it grants). Deliberately
# not listed: PowerUserAccess (Allow NotAction [iam:*, organizations:*, account:*] plus a few
# iam reads/service-linked-role calls: everything but IAM, so not iam:*), and
# AdministratorAccess-Amplify / -AWSElasticBeanstalk (broad, but name iam actions one by one).
# Rules treat those as an ordinary unexpected attachment.
ADMIN_MANAGED_POLICIES: dict[str, str] = {
    "AdministratorAccess": "Allow * on *",
    "IAMFullAccess": "Allow iam:* on *",
}

_AWS_MANAGED_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::aws:policy/([^/]+)")


def managed_policy_is_admin(arn: str) -> bool:
    """Is this an AWS managed policy (any partition) known to grant "*" or "iam:*"?"""
    found = _AWS_MANAGED_ARN.fullmatch(arn.strip())
    # policy names are not distinguished by case (IAM quotas page)
    return found is not None and found.group(1).lower() in _lowered_names(ADMIN_MANAGED_POLICIES)


def _lowered_names(table: dict[str, str]) -> set[str]:
    return {name.lower() for name in table}


# ---------------------------------------------------------------- privilege escalation

# Permissions as good as admin: with them a principal rewrites its own (or another role's)
# permissions or trust, or runs code as any role. Sources: Rhino Security Labs, "AWS IAM
# Privilege Escalation - Methods and Mitigation" (methods 1-21,
# https://rhinosecuritylabs.com/aws/aws-privilege-escalation-methods-mitigation/) and the
# IAM actions reference (https://docs.aws.amazon.com/service-authorization/latest/reference/list_identityandaccessmanagement.html).
ESCALATION_ACTIONS: frozenset[str] = frozenset(
    a.lower()
    for a in (
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
        "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy",
        "iam:PutRolePolicy", "iam:PutUserPolicy", "iam:PutGroupPolicy",
        "iam:UpdateAssumeRolePolicy", "iam:AddUserToGroup",
        "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
        "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary",
        "lambda:UpdateFunctionCode", "glue:UpdateDevEndpoint",
    )
)  # fmt: skip
# Actions that start code running as a role passed with iam:PassRole (Rhino methods 3, 15-21).
COMPUTE_ACTIONS: frozenset[str] = frozenset(
    a.lower()
    for a in (
        "ec2:RunInstances", "lambda:CreateFunction", "glue:CreateDevEndpoint",
        "cloudformation:CreateStack", "datapipeline:CreatePipeline",
        "ecs:RunTask", "sagemaker:CreateNotebookInstance", "codebuild:CreateProject",
    )
)  # fmt: skip


def _action_reaches(item: dict[str, Any], action: str) -> bool:
    if "action" in item:
        return _glob_covers(item["action"], action)
    return not any(_glob_covers(n, action) for n in item.get("not_action", ()))


def _wide_resource(item: dict[str, Any]) -> bool:
    """Resource "*" or NotResource: reaches resources nobody listed."""
    return "not_resource" in item or item.get("resource") == "*"


def escalations(items: Iterable[dict[str, Any]], context: Document | None = None) -> list[str]:
    """Why Allow items (PermissionDiff entries) are privilege-escalation equivalent.

    `context` is the whole document the items belong to: iam:PassRole on "*" escalates when
    it, or the items, also hold a compute-creating action.
    """
    items = [i for i in items if i.get("effect", "Allow") == "Allow"]
    reasons: set[str] = set()
    for item in items:
        if "not_action" in item and _wide_resource(item):
            reasons.add("NotAction on every resource")
        hits = sorted(a for a in ESCALATION_ACTIONS if _action_reaches(item, a))
        if hits and "not_action" not in item:
            reasons.add("can write IAM policies or credentials: " + ", ".join(hits[:4]))
    pass_role = [i for i in items if _action_reaches(i, "iam:passrole") and _wide_resource(i)]
    if pass_role:
        pool = list(items)
        if context is not None:
            loaded = load_document(context)
            for stmt in _normalize(loaded, _infer_partition([loaded])):
                if stmt.effect == "Allow":
                    pool += [_item_dict(i) for i in _items(stmt)]
        compute = sorted(a for a in COMPUTE_ACTIONS if any(_action_reaches(i, a) for i in pool))
        if compute:
            reasons.add("iam:PassRole on * with " + ", ".join(compute[:3]))
    return sorted(reasons)


def document_escalations(doc: Document) -> list[str]:
    """escalations() of every Allow of a document."""
    loaded = load_document(doc)
    items = [
        _item_dict(i)
        for stmt in _normalize(loaded, _infer_partition([loaded]))
        if stmt.effect == "Allow"
        for i in _items(stmt)
    ]
    return escalations(items)


# AWS managed policies that are escalation equivalent without being admin.
ESCALATION_MANAGED_POLICIES: dict[str, str] = {
    "PowerUserAccess": "Allow NotAction [iam:*, organizations:*, account:*] on *",
}


def managed_policy_escalates(arn: str) -> bool:
    """Is this an AWS managed policy known to be admin or escalation equivalent?"""
    found = _AWS_MANAGED_ARN.fullmatch(arn.strip())
    names = _lowered_names(ADMIN_MANAGED_POLICIES) | _lowered_names(ESCALATION_MANAGED_POLICIES)
    return found is not None and found.group(1).lower() in names
