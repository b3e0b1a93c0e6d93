"""The one finding model (Contract 2): what every rule, sink and store speaks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from trustwatch import clouds
from trustwatch.frozen import frozen
from trustwatch.schema import After, Model, to_json


class Severity(StrEnum):
    """How urgent a finding is, from `info` to `critical` (ordered by `rank`)."""

    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"

    @property
    def rank(self) -> int:
        """Higher is more severe: info=0 … critical=4."""
        return _RANK[self]

    def at_least(self, other: Severity | str) -> bool:
        """True if this severity is `other` or more urgent."""
        return self.rank >= Severity(other).rank


_RANK = {
    Severity.info: 0,
    Severity.low: 1,
    Severity.medium: 2,
    Severity.high: 3,
    Severity.critical: 4,
}


def _registered_cloud(name: str) -> str:
    clouds.get(name)  # ValueError naming the registered clouds
    return name


# A registered cloud's name (trustwatch.clouds), checked wherever a finding is read.
CloudName = Annotated[str, After(_registered_cloud)]

RemediationStatus = Literal["planned", "applied", "skipped", "failed", "none"]


@frozen(kw_only=True)
class Remediation(Model):
    """What was or would be done about a finding.

    `target`, `before` and `after` (what is changed, its state as re-read and the state
    the action writes) appear once a cloud's remediator has planned the action; they are
    left out of the JSON until then.
    """

    action: str = "none"
    status: RemediationStatus = "none"
    detail: str = ""
    target: str = ""
    before: Any = None
    after: Any = None

    def _omit(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self.target:
            for key in ("target", "before", "after"):
                data.pop(key, None)
        return data


@frozen(kw_only=True)
class Finding(Model):
    """One violation of the baseline, as JSON everywhere (CLI, sinks, stores).

    Frozen: `model_copy(update=...)` makes the changed copy. Built directly (the engine,
    remediation, sweeps) only `severity` and `cloud` are checked, in `__post_init__`;
    read from outside (`model_validate`, `model_validate_json`) every field is.
    """

    id: str  # sha256 fingerprint of rule + identity + detail
    rule: str
    severity: Severity
    cloud: CloudName
    scope: str
    identity: str
    actor: str = ""
    source: Literal["event", "sweep"] = "event"
    # a sweep's finding: first seen by this sweep, still open, or gone since the last one
    sweep_status: Literal["new", "open", "resolved"] | None = None
    event_id: str = ""
    event_time: str = ""
    summary: str
    expected: Any = dataclasses.field(default_factory=dict)
    actual: Any = dataclasses.field(default_factory=dict)
    remediation: Remediation = dataclasses.field(default_factory=Remediation)
    # Context for humans (alerts, deep links); optional in the contract.
    source_ip: str = ""
    user_agent: str = ""
    event_name: str = ""

    def __post_init__(self) -> None:
        # What pydantic did on every construction, kept because callers rely on it: a
        # rule's severity may be given as its string (ValueError for an unknown one), and
        # a finding never names a cloud that is not registered.
        if type(self.severity) is not Severity:
            object.__setattr__(self, "severity", Severity(self.severity))
        clouds.get(self.cloud)

    def _omit(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.sweep_status is None:
            del data["sweep_status"]
        return data

    def to_json(self) -> str:
        """The finding as compact JSON (Contract 2)."""
        return to_json(self)


def fingerprint(rule: str, identity: str, detail: Any) -> str:
    """Stable id: the same drift on the same identity gives the same id (dedup key)."""
    canonical = json.dumps(
        {"rule": rule, "identity": identity.lower(), "detail": detail},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
