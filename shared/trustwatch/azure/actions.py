"""Azure RBAC action patterns compared by what they match, not by their text.

An action is `{Company}.{ProviderName}/{resourceType}/{action}`; `*` in it matches any
string, so `Microsoft.Storage/*` covers every Storage action and `*` every action at all.
A role's permissions are `Actions` minus `NotActions` (and `DataActions` minus
`NotDataActions`), per permissions block ("Understand Azure role definitions",
https://learn.microsoft.com/en-us/azure/role-based-access-control/role-definitions).
Operation names are case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from trustwatch.azure.changes import PermissionBlock


@lru_cache(maxsize=4096)
def pattern_within(inner: str, outer: str) -> bool:
    """Does every action `inner` matches also match `outer`?

    `outer`'s `*` may stand for any run of `inner`, its own `*` included; `inner`'s `*` is
    matched only by a `*` of `outer`. Sound: True only when the inclusion holds.
    """
    a, b = inner.strip().lower(), outer.strip().lower()
    # reach[j]: a[:i] is matched by b[:j]
    reach = [True] + [False] * len(b)
    for j, ch in enumerate(b, 1):
        reach[j] = reach[j - 1] and ch == "*"
    for ca in a:
        row = [False] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if cb == "*":
                row[j] = row[j - 1] or reach[j]
            else:
                row[j] = ca != "*" and ca == cb and reach[j - 1]
        reach = row
    return reach[-1]


def covered(action: str, patterns: Iterable[str]) -> bool:
    return any(pattern_within(action, p) for p in patterns)


def beyond(
    blocks: Sequence[PermissionBlock],
    allowed_actions: Sequence[str],
    allowed_data_actions: Sequence[str],
) -> tuple[list[str], list[str]]:
    """The actions and data actions of `blocks` the allowed patterns do not cover.

    An action its own block's NotActions remove entirely is not granted. Conservative: an
    action only partly removed counts whole (`*` minus `Microsoft.Authorization/*` is still
    wider than `Microsoft.Storage/*`).
    """
    actions: list[str] = []
    data_actions: list[str] = []
    for block in blocks:
        for out, granted, removed, allowed in (
            (actions, block.actions, block.not_actions, allowed_actions),
            (data_actions, block.data_actions, block.not_data_actions, allowed_data_actions),
        ):
            for action in granted:
                if covered(action, allowed) or covered(action, removed):
                    continue
                if action not in out:
                    out.append(action)
    return actions, data_actions
