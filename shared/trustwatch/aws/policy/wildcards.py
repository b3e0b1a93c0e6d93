"""IAM wildcards: when one action or resource pattern covers another.

Actions and resources compare as pattern inclusion over IAM's two wildcards, `*` (any
run of characters) and `?` (one character): s3:Get* covers s3:GetObject and s3:Get*; it
does not cover s3:*. Conditions (StringLike, ArnLike) and principal ARNs use the same
relation, so it lives on its own, below everything else in the package.
"""

from __future__ import annotations

# IAM caps ARNs and patterns at 2048 characters; longer strings are compared literally,
# which can only report more drift, never less.
_MAX_PATTERN = 2048


def glob_covers(general: str, specific: str) -> bool:
    """True when everything `specific` (a literal or an IAM pattern) matches, `general`
    matches: s3:Get* covers s3:GetObject and s3:Get*, not s3:*."""
    if general == specific:
        return True
    if len(general) > _MAX_PATTERN or len(specific) > _MAX_PATTERN:
        return False
    return _wildcard_match(general, specific)


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


def has_wildcard(value: str) -> bool:
    """Is `value` a pattern rather than a literal?"""
    return "*" in value or "?" in value
