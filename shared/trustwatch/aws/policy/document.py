"""Policy documents: parsed, checked, and normalized into `Statement`s.

Every read of raw IAM JSON is here, so that text never matters to the comparisons:
- A document is a dict, JSON text (pretty or compact) or URL-encoded JSON (CloudTrail
  responseElements). `Statement` may be one object or a list; Action/Resource/Principal
  values a string or a list. Sid and statement order are ignored.
- Actions are case-insensitive and normalized lower-cased; resource ARNs are
  case-sensitive. Condition blocks become `ConditionClause`s (see `conditions`);
  principals become canonical strings (see `principals`).
- Anything malformed is a `PolicyError` saying what is wrong and where
  ("Statement[1].Condition.StringEquals must be an object of key: value(s)").
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import unquote, unquote_plus

from trustwatch.aws.policy.conditions import ConditionClause, canonical_operator, render_conditions
from trustwatch.aws.policy.principals import canonical_principal
from trustwatch.frozen import frozen


class PolicyError(ValueError):
    """An invalid policy document; the message says what is wrong and where."""


Document = str | dict[str, Any]

# json.dumps(value, sort_keys=True), without building an encoder per call: the text the
# normalized statements, grants and diff entries are ordered by
sort_text = json.JSONEncoder(sort_keys=True).encode


_PRINCIPAL_TYPES = ("AWS", "Service", "Federated", "CanonicalUser")


def load_document(doc: Document) -> dict[str, Any]:
    """Parse and check a policy document: a dict, JSON text, or URL-encoded JSON text."""
    if isinstance(doc, dict):
        parsed: Any = doc
    elif isinstance(doc, str):
        parsed = _parse_text(doc)
    else:
        raise PolicyError(f"policy document must be a dict or JSON text, got {_kind(doc)}")
    return _validated(parsed)


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


def _validated(doc: Any) -> dict[str, Any]:
    """`doc` itself, once it is known to be a well-formed policy document."""
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
    return doc


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
                canonical_operator(op),
                key.strip().lower(),
                frozenset(_condition_value(v, f"{where}.{op}.{key}") for v in values),
            )
            out.add(clause)
    return frozenset(out)


@frozen
class Statement:
    """One statement after normalization: sets of lower-cased actions, canonical principals
    and condition clauses (None: the key is absent from the statement)."""

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
    return frozenset(canonical_principal(kind, name, partition) for kind, name in entries)


def normalize(doc: dict[str, Any], partition: str) -> list[Statement]:
    """A checked document's statements, normalized, without duplicates, in a stable order."""
    out: set[Statement] = set()
    for index, raw in enumerate(_statement_list(doc)):
        where = f"Statement[{index}]"
        out.add(
            Statement(
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
    if len(out) < 2:  # most trust policies: nothing to order, no sort key to render
        return list(out)
    return sorted(out, key=lambda s: sort_text(_statement_dict(s)))


def _statement_dict(stmt: Statement) -> dict[str, Any]:
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
