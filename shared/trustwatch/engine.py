"""The shared core: rule registry, actor handling, Change + Baseline -> Findings.

Each cloud's `rules` module declares its rules with `@rule(...)`; a rule is a small pure
function `(change, baseline) -> Iterable[Hit]`. The engine turns hits into Findings with
the common fields (fingerprint, actor, event, remediation status from mode and actor).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trustwatch import clouds
from trustwatch.baseline import Baseline, Mode
from trustwatch.changes import Change
from trustwatch.findings import Finding, Remediation, Severity, fingerprint
from trustwatch.frozen import frozen


@frozen
class Hit:
    """What a rule found; the engine adds everything common to all findings."""

    summary: str
    expected: Any
    actual: Any
    detail: Any = None  # what distinguishes this drift in the fingerprint (default: actual)
    severity: Severity | None = None  # overrides the rule's default severity
    identity: str | None = None  # overrides change.identity
    remediation: str = "none"  # the action that would put it back
    mode: Mode | None = None  # the identity's mode override from the baseline


RuleFn = Callable[[Change, Baseline], Iterable[Hit]]


@frozen
class Rule:
    id: str
    severity: Severity
    kinds: frozenset[str]
    title: str
    fn: RuleFn
    on_failed: bool = False  # most failed calls are not drift; a few rules want them

    @property
    def cloud(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass
class Registry:
    rules: dict[str, Rule] = field(default_factory=dict)
    # (cloud, kind) -> its rules, asked for every change: kept until a rule is added
    _by_kind: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    def add(self, new: Rule) -> None:
        if new.id in self.rules:
            raise ValueError(f"rule {new.id} registered twice")
        self.rules[new.id] = new
        self._by_kind.clear()

    def for_kind(self, cloud: str, kind: str) -> tuple[Rule, ...]:
        found = self._by_kind.get((cloud, kind))
        if found is None:
            load_cloud(cloud)
            found = tuple(r for r in self.rules.values() if r.cloud == cloud and kind in r.kinds)
            self._by_kind[(cloud, kind)] = found
        return found

    def keep_only(self, cloud_names: Iterable[str]) -> None:
        """Forget the rules of clouds no longer registered (trustwatch.clouds.register)."""
        known = set(cloud_names)
        self.rules = {i: r for i, r in self.rules.items() if r.cloud in known}
        self._by_kind.clear()


REGISTRY = Registry()
clouds.on_change(lambda: REGISTRY.keep_only(clouds.names()))


def rule(
    rule_id: str, severity: str, kinds: Iterable[str], title: str, *, on_failed: bool = False
) -> Callable[[RuleFn], RuleFn]:
    """Declare a rule: its Contract-3 id, default severity and the change kinds it handles."""

    def register(fn: RuleFn) -> RuleFn:
        REGISTRY.add(Rule(rule_id, Severity(severity), frozenset(kinds), title, fn, on_failed))
        return fn

    return register


def load_cloud(cloud: str) -> None:
    """Import a cloud's rules module (registers its rules); each cloud is one folder."""
    clouds.get(cloud).load_rules()


def all_rules() -> list[Rule]:
    for cloud in clouds.names():
        load_cloud(cloud)
    return sorted(REGISTRY.rules.values(), key=lambda r: r.id)


def _norm(value: str) -> str:
    return value.strip().lower()


def actor_matches(change: Change, listed: Iterable[str]) -> bool:
    """Is the change's actor one of `listed` (ARNs, object ids, emails; case-insensitive)?"""
    return _listed(_actor_keys(change), listed)


def _actor_keys(change: Change) -> set[str]:
    return {_norm(a) for a in (change.actor, *change.actor_ids) if a}


def _listed(actor_keys: set[str], listed: Iterable[str]) -> bool:
    return not actor_keys.isdisjoint(_norm(x) for x in listed)


def _acting_alone(change: Change, listed: list[str], actor_keys: set[str]) -> bool:
    """Is the actor (its `actor_keys`) listed, and so is everyone in its delegation chain?
    A human who impersonates a listed identity does not make the change that identity's own."""
    return _listed(actor_keys, listed) and all(
        _listed({_norm(p)}, listed) for p in change.delegated_by
    )


T = TypeVar("T")

# What several rules of one change compute alike (the trust rules' policy diff), kept for
# the length of one evaluate() call: see computed_once.
_per_change: ContextVar[dict[str, Any] | None] = ContextVar("trustwatch_per_change", default=None)


def computed_once(key: str, compute: Callable[[], T]) -> T:
    """compute(), once per evaluate() call: the change's other rules asking for the same
    key get the same value. Outside evaluate() (a rule called on its own) it is computed."""
    cache = _per_change.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]  # type: ignore[no-any-return]


# What rules derive from the baseline alone (the expected side of a trust comparison),
# kept while the baseline is the same object: a function keeps one until it reloads it.
_per_baseline: tuple[object, dict[Hashable, Any]] = (None, {})


def computed_per_baseline(baseline: object, key: Hashable, compute: Callable[[], T]) -> T:
    """compute(), once per `key` for as long as rules are given this same baseline object.

    Only for values that depend on nothing but the baseline and the key (never on the
    event); they are shared between findings, so treat them as read-only.
    """
    global _per_baseline
    kept, cache = _per_baseline
    if kept is not baseline:
        cache = {}
        _per_baseline = (baseline, cache)
    if key not in cache:
        cache[key] = compute()
    return cache[key]  # type: ignore[no-any-return]


class RuleError(RuntimeError):
    """Some rule failed on a change; `findings` holds what the other rules found."""

    def __init__(self, findings: list[Finding], errors: list[str]) -> None:
        self.findings = findings
        self.errors = errors
        super().__init__("; ".join(errors))


def evaluate(change: Change, baseline: Baseline) -> list[Finding]:
    """Every finding one change causes against the baseline (pure: no I/O).

    A rule that raises does not hide the others' findings: all rules run, then
    RuleError carries both the findings and the failures.
    """
    actor_keys = _actor_keys(change)  # normalized once for both lists
    if _acting_alone(change, baseline.actors.responder, actor_keys):
        return []  # our own remediation: never react to it
    approved = _acting_alone(change, baseline.actors.approved, actor_keys)
    findings: list[Finding] = []
    errors: list[str] = []
    scope = _per_change.set({})
    try:
        for r in REGISTRY.for_kind(change.cloud, change.kind):
            if change.failed and not r.on_failed:
                continue
            try:
                hits = list(r.fn(change, baseline))
            except Exception as exc:  # a rule bug or an odd document must not swallow findings
                errors.append(
                    f"rule {r.id} failed on {change.event_name}: {type(exc).__name__}: {exc}"
                )
                continue
            findings.extend(_finding(r, hit, change, baseline, approved) for hit in hits)
    finally:
        _per_change.reset(scope)
    if errors:
        raise RuleError(findings, errors)
    return findings


def _remediation(hit: Hit, baseline: Baseline, approved: bool) -> Remediation:
    if hit.remediation == "none":
        return Remediation()
    if approved:
        return Remediation(
            action=hit.remediation,
            status="skipped",
            detail="change made by approved automation (actors.approved): not reverted",
        )
    if baseline.mode_for(hit.mode) == "remediate":
        return Remediation(action=hit.remediation, status="planned", detail="")
    return Remediation(action=hit.remediation, status="none", detail="mode is alert")


def _finding(r: Rule, hit: Hit, change: Change, baseline: Baseline, approved: bool) -> Finding:
    identity = hit.identity or change.identity
    detail = hit.actual if hit.detail is None else hit.detail
    return Finding(
        id=fingerprint(r.id, identity, detail),
        rule=r.id,
        severity=hit.severity or r.severity,
        cloud=change.cloud,
        scope=change.scope,
        identity=identity,
        actor=change.actor,
        source="event",
        event_id=change.event_id,
        event_time=change.event_time,
        summary=hit.summary,
        expected=hit.expected,
        actual=hit.actual,
        remediation=_remediation(hit, baseline, approved),
        source_ip=change.source_ip,
        user_agent=change.user_agent,
        event_name=change.event_name,
    )
