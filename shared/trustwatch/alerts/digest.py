"""What a sweep's digest shows (`render.digest_view` builds it, cleaned as `AlertView`).

Apart from render.py so that an event's alerts do not create these classes (~1.5 ms of
a cold start): only a sweep sends a digest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.alerts.links import Link
    from trustwatch.findings import Severity


@frozen
class DigestItem:
    """One finding as a digest lists it (cleaned plain text, as AlertView)."""

    status: str  # new, resolved, open
    severity: Severity
    title: str
    identity: str
    scope: str
    link: Link | None


@frozen
class DigestView:
    """What every format of a sweep's digest shows, cleaned and capped."""

    title: str
    counts: tuple[tuple[Severity, int], ...]  # findings holding now, by severity (no zeros)
    new: int
    resolved: int
    still_open: int
    items: tuple[DigestItem, ...]  # new, then resolved, then open; worst first in each
    more: int  # findings not listed
    errors: tuple[str, ...]  # what could not be read (the first render.DIGEST_ERRORS)
    more_errors: int

    @property
    def headline(self) -> str:
        """`title: N new, N resolved, N still open`: the first line of every format."""
        return (
            f"{self.title}: {self.new} new, {self.resolved} resolved, {self.still_open} still open"
        )

    @property
    def severity_counts(self) -> str:
        """`2 critical, 1 high` (of the findings holding now), or `no findings`."""
        return ", ".join(f"{n} {s.value}" for s, n in self.counts) or "no findings"
