"""One toy rule: a member the baseline does not list for the role."""

from __future__ import annotations

from collections.abc import Iterator

from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.engine import Hit, rule

from toycloud.changes import Grant


@rule("toy.grant.unexpected", "high", ["grant"], "a member the baseline does not list")
def unexpected_grant(change: Change, baseline: Baseline) -> Iterator[Hit]:
    allowed = baseline.toy.grants.get(change.identity, [])
    member = change.payload_as(Grant).member
    if member not in allowed:
        yield Hit(
            f"{member} was granted {change.identity}", allowed, member, remediation="remove_member"
        )
