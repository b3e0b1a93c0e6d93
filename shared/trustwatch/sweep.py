"""Scheduled compliance sweeps: read the real state, judge it with the same rules.

Each cloud's `state` part (`trustwatch/<cloud>/state.py`) offers three functions:

- `units(baseline, environ) -> list[str]`: the sweep units the baseline names (AWS
  account ids, Azure subscription ids, GCP project ids), each swept on its own;
- `read(unit, baseline, environ) -> StateRead`: the unit's current state as `Change`s
  of the kinds its `events` module makes, so that the cloud's `rules` judge them exactly as
  they judge events (a role's trust policy read back is a trust-policy change carrying that
  document, an expected managed policy not attached is a detach), plus the API calls made;
- `catch_up(unit, since, until, environ) -> Iterator[Any]`: the identity audit records
  the cloud logged for the unit in [since, until), in a shape `intake.parse_document`
  reads, so a lost delivery goes through the event path (dedup prevents double alerts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline
    from trustwatch.changes import Change


@dataclass(frozen=True)
class StateRead:
    """What reading one unit's state gave."""

    unit: str
    changes: list[Change] = field(default_factory=list)
    calls: int = 0  # API requests made (the benchmark's calls per identity)
    # what could not be read (AccessDenied on one role, a 404): reported, never silent
    errors: list[str] = field(default_factory=list)


class StateModule(Protocol):
    """A cloud's `state` part (see the module docstring)."""

    def units(self, baseline: Baseline, environ: Mapping[str, str]) -> list[str]:
        """The sweep units the baseline names for this cloud."""
        ...

    def read(self, unit: str, baseline: Baseline, environ: Mapping[str, str]) -> StateRead:
        """The unit's current state as changes the cloud's rules judge."""
        ...

    def catch_up(
        self, unit: str, since: datetime, until: datetime, environ: Mapping[str, str]
    ) -> Iterator[Any]:
        """The unit's identity audit records logged in [since, until)."""
        ...
