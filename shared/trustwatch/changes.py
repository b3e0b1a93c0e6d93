"""The normalized change: what every cloud's `events` module turns an audit record into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline

P = TypeVar("P")


@frozen(slots=True)
class Change:
    """One identity change (or use) taken from one audit record.

    A frozen dataclass, not a pydantic model: it is built for every watched record on a
    function's hot path, and the events modules that build it are type-checked instead.
    `payload` is what the event says of the after-state: a frozen dataclass per change
    kind, declared in the cloud's `changes` module, built by its `events` module and read
    by attribute in its `rules` (`change.payload_as(TrustUpdated).policy`).
    """

    cloud: str  # a registered cloud's name (trustwatch.clouds)
    kind: str
    event_name: str
    scope: str
    identity: str
    name: str = ""
    event_id: str = ""
    event_time: str = ""
    correlation_id: str = ""
    actor: str = ""
    actor_ids: list[str] = field(default_factory=list)
    # who the actor acted for: each principal of a delegation chain (GCP impersonation)
    delegated_by: list[str] = field(default_factory=list)
    source_ip: str = ""
    user_agent: str = ""
    error_code: str = ""
    needs_enrichment: bool = False
    not_evaluated: str = ""  # why a needs_enrichment change cannot be judged from the event
    payload: Any = None

    @property
    def failed(self) -> bool:
        return bool(self.error_code)

    def payload_as(self, kind: type[P]) -> P:
        """The payload, checked to be of the type a rule reads (TypeError names both)."""
        if not isinstance(self.payload, kind):
            raise TypeError(
                f"{self.kind} change carries {type(self.payload).__name__}, "
                f"expected {kind.__name__}"
            )
        return self.payload

    def common(self, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields as keyword arguments for a new Change (an enricher's completed one)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in without}


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


@frozen
class Skipped:
    """A record read fine but carrying nothing to evaluate (noise, reads, schedules)."""

    reason: str
    event_id: str = ""
    event_name: str = ""


@frozen
class SubjectPrefilter:
    """A cloud's promise, one of the tuple its events module declares as
    `PREFILTER_SUBJECT` (a line any of them decides is decided), used by `trustwatch
    replay` where the baseline is known (intake.Prefilter): a record that the cloud's
    PREFILTER_KEYS and PREFILTER_RECOGNIZED route to it (no `unless_keys`) whose `service`
    and `operation` are these strings, whose `subject` path holds a string, whose
    `objects` paths hold objects or null where they are there, and whose `nulls` keys are
    null where they are there, gives no finding and no error when `unwatched(baseline)`
    says so of that string: it is counted as a skip without being parsed. Anything
    `unwatched` is not certain of (a malformed subject the parser reports) must be False.
    """

    service: str
    operation: str
    subject: tuple[str, ...]  # keys from the record down to the subject string
    objects: tuple[tuple[str, ...], ...]  # what the parser reads as an object when present
    unwatched: Callable[[Baseline], Callable[[str], bool]]
    nulls: tuple[str, ...] = ()  # top-level keys that must be null or absent
