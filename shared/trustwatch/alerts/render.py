"""The one rendering path, first half: a finding -> a neutral `AlertView`.

Every string that came from an audit event (role and session names, user agents, member
emails) is cleaned here once: control characters, line breaks and invisible / bidi
characters removed, length capped. The view holds plain text; each format (formats.py)
then escapes it for its own markup. Nothing is escaped twice, nothing is escaped never.
A sweep's digest (`digest_view` -> `digest.DigestView`) is cleaned the same way.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trustwatch.alerts.links import Link, deep_link
from trustwatch.findings import Finding, Severity
from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.alerts.digest import DigestView

FIELD_MAX = 256  # identities, actors, user agents
SUMMARY_MAX = 600
DIFF_LINE_MAX = 160
DIFF_LINES_MAX = 16

# C0/C1 controls (CR, LF, TAB, ESC, NUL …) and Unicode line / paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Zero-width and bidi formatting characters: they hide or reorder text (RTL spoofing).
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")

SEVERITY_MARK = {
    Severity.critical: "🔴",
    Severity.high: "🟠",
    Severity.medium: "🟡",
    Severity.low: "🔵",
    Severity.info: "⚪",
}


def clean(value: object, limit: int = FIELD_MAX) -> str:
    """One line of inert plain text, at most `limit` characters (… marks a cut)."""
    text = valid_text(str(value)[: limit * 4])  # bound the work on huge inputs first
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def valid_text(text: str) -> str:
    r"""Lone surrogates (JSON allows "\ud800") become U+FFFD: they can't be encoded."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@frozen
class AlertView:
    """What every format shows, already cleaned and capped (plain text, not escaped)."""

    finding_id: str
    severity: Severity
    title: str
    rule: str
    summary: str
    facts: tuple[tuple[str, str], ...]  # (label, value) in display order; labels are ours
    diff: tuple[str, ...]  # "- expected" / "+ actual" lines
    link: Link | None
    group: str  # findings with the same group came from one event (one email)

    @property
    def headline(self) -> str:
        """`SEVERITY · title`: the first line of every format."""
        return f"{self.severity.value.upper()} · {self.title}"


def rule_title(rule: str) -> str:
    """The registered rule's title; the id itself for a rule we don't know."""
    from trustwatch.engine import REGISTRY, load_cloud

    if rule not in REGISTRY.rules:
        # Loaded already on the event path; the CLI may not have loaded this cloud yet.
        with contextlib.suppress(ImportError, ValueError):
            load_cloud(rule.split(".", 1)[0])
    registered = REGISTRY.rules.get(rule)
    return clean(registered.title if registered else rule, 120)


def group_key(finding: Finding) -> str:
    """One email per event; a sweep's findings form one digest."""
    if finding.source == "sweep" or not finding.event_id:
        return f"{finding.source}:{finding.cloud}"
    return f"event:{finding.cloud}:{finding.event_id}"


def view(finding: Finding) -> AlertView:
    """The finding as every format shows it, each event string cleaned once."""
    remediation = finding.remediation
    if remediation.status == "none" and remediation.action == "none":
        fix = "none"
    else:
        fix = f"{remediation.status} · {remediation.action}"
        if remediation.detail:
            fix += f" ({remediation.detail})"
    facts = [
        ("Cloud", finding.cloud),
        ("Scope", finding.scope),
        ("Identity", finding.identity),
        ("Actor", finding.actor or "unknown"),
        ("Source IP", finding.source_ip or "unknown"),
        ("Time", finding.event_time or "unknown"),
        ("Event", finding.event_name or finding.source),
        ("User agent", finding.user_agent),
        ("Remediation", fix),
    ]
    return AlertView(
        finding_id=clean(finding.id, 80),
        severity=finding.severity,
        title=rule_title(finding.rule),
        rule=clean(finding.rule, 120),
        summary=clean(finding.summary, SUMMARY_MAX),
        facts=tuple((label, clean(value)) for label, value in facts if value),
        diff=short_diff(finding.expected, finding.actual),
        link=deep_link(finding),
        group=group_key(finding),
    )


def _lines(value: Any) -> list[str]:
    if value in ({}, [], None, ""):
        return []
    if isinstance(value, str):
        return [value]
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False).splitlines()


def short_diff(expected: Any, actual: Any) -> tuple[str, ...]:
    """Expected vs actual as changed lines only ("- " expected, "+ " actual), capped."""
    import difflib  # the Slack and mail views only: a webhook's cold start never needs it

    changed = [
        line
        for line in difflib.unified_diff(_lines(expected), _lines(actual), n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    lines = [f"{line[0]} {_indented(line[1:])}" for line in changed[:DIFF_LINES_MAX]]
    if len(changed) > DIFF_LINES_MAX:
        lines.append(f"… {len(changed) - DIFF_LINES_MAX} more changed lines")
    return tuple(lines)


def _indented(line: str) -> str:
    """Keep JSON's indentation (cleaning strips leading space), at most 12 columns."""
    depth = min(len(line) - len(line.lstrip(" ")), 12)
    return " " * depth + clean(line, DIFF_LINE_MAX - depth)


# --- a sweep's digest -----------------------------------------------------------------------

DIGEST_TOP = 10  # items a digest lists; the rest are counted
DIGEST_ERRORS = 5
SWEEP_STATUSES = ("new", "resolved", "open")  # the order a digest lists them in


def digest_view(
    findings: Sequence[Finding], *, title: str, errors: Sequence[str] = ()
) -> DigestView:
    """A sweep's findings (each with its `sweep_status`) as its digest shows them."""
    # Its classes load with the first digest: an event's alerts never need them.
    from trustwatch.alerts.digest import DigestItem, DigestView

    by_status = {s: [f for f in findings if f.sweep_status == s] for s in SWEEP_STATUSES}
    holding = by_status["new"] + by_status["open"]
    counts = tuple((s, n) for s in Severity if (n := sum(1 for f in holding if f.severity == s)))
    ranked = [
        f
        for status in SWEEP_STATUSES
        for f in sorted(by_status[status], key=lambda f: -f.severity.rank)
    ]
    items = tuple(
        DigestItem(
            status=str(f.sweep_status),
            severity=f.severity,
            title=rule_title(f.rule),
            identity=clean(f.identity),
            scope=clean(f.scope),
            link=deep_link(f),
        )
        for f in ranked[:DIGEST_TOP]
    )
    return DigestView(
        title=clean(title, 120),
        counts=counts,
        new=len(by_status["new"]),
        resolved=len(by_status["resolved"]),
        still_open=len(by_status["open"]),
        items=items,
        more=max(0, len(ranked) - DIGEST_TOP),
        errors=tuple(clean(e, SUMMARY_MAX) for e in errors[:DIGEST_ERRORS]),
        more_errors=max(0, len(errors) - DIGEST_ERRORS),
    )
