"""Toy audit records: {"toyEvent": "Grant", "role": R, "member": M, "actor": A}."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trustwatch.changes import Change, EventError, Skipped

from toycloud.changes import Grant


def recognizes(doc: Any) -> bool:
    return isinstance(doc, dict) and "toyEvent" in doc


def records(doc: Any) -> Iterator[Any]:
    yield doc


def watched_operations() -> dict[str, tuple[str, ...]]:
    return {"toy": ("Grant",)}


def parse(record: Any) -> list[Change] | Skipped:
    if record.get("toyEvent") != "Grant":
        return Skipped("not a grant")
    role, member = record.get("role"), record.get("member")
    if not isinstance(role, str) or not isinstance(member, str):
        raise EventError("a toy grant needs string role and member")
    change = Change(
        cloud="toy",
        kind="grant",
        event_name="Grant",
        scope="toyland",
        identity=role,
        actor=str(record.get("actor", "")),
        payload=Grant(member),
    )
    return [change]
