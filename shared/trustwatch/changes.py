"""The normalized change: what every cloud's `events` module turns an audit record into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Cloud = Literal["aws", "azure", "gcp"]


class Change(BaseModel):
    """One identity change (or use) taken from one audit record.

    `data` holds the after-state the event carries, keyed per `kind` by the cloud's
    events module (e.g. `policy` for a trust policy update); rules read only that.
    """

    model_config = ConfigDict(extra="forbid")

    cloud: Cloud
    kind: str
    event_name: str
    scope: str
    identity: str
    name: str = ""
    event_id: str = ""
    event_time: str = ""
    correlation_id: str = ""
    actor: str = ""
    actor_ids: list[str] = Field(default_factory=list)
    source_ip: str = ""
    user_agent: str = ""
    error_code: str = ""
    needs_enrichment: bool = False
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.error_code)


class EventError(ValueError):
    """A record that cannot be read: malformed, truncated, or of an unknown shape."""


def str_or_empty(value: Any) -> str:
    """A record field that should be text: anything else reads as absent."""
    return value if isinstance(value, str) else ""


def object_field(record: dict[str, Any], key: str) -> dict[str, Any]:
    """A record field that must be an object when present (absent/null -> {})."""
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{key} is a {type(value).__name__}, expected an object")
    return value


def list_field(record: dict[str, Any], key: str, label: str = "") -> list[Any]:
    """A record field that must be a list when present (absent/null -> []); `label` names
    it in the error (`serviceData.policyDelta.bindingDeltas`), else the key does."""
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventError(f"{label or key} is a {type(value).__name__}, expected a list")
    return value


@dataclass(frozen=True)
class Skipped:
    """A record read fine but carrying nothing to evaluate (noise, reads, schedules)."""

    reason: str
    event_id: str = ""
    event_name: str = ""
