"""Putting a finding back to the baseline: the one path the functions and the CLI share.

Each cloud's `remediate` part (`trustwatch/<cloud>/remediate.py`) turns a finding into a
`Plan` from the state *as it is now* (re-read: the event may be stale or out of order) or
into `NothingToDo`. This module owns every safety decision, the same for all clouds:

- only findings of identities whose baseline `mode` is `remediate` are ever applied, and
  only when the caller asks to apply (functions: `TRUSTWATCH_REMEDIATION=apply`; CLI:
  `--apply`); otherwise the plan is shown in the finding (dry run);
- changes by `actors.approved` are never reverted (the engine marks them `skipped`); the
  responder's own changes never become findings (the engine's loop guard);
- the circuit breaker: more than `limit` remediations of one identity in `window_s`
  seconds stop remediation of it and raise one critical `trustwatch.remediation.circuit_open`;
- `applied` only when the state read back matches the plan; otherwise `failed`, with why.

A cloud's plan only ever narrows toward the baseline and touches nothing the baseline does
not name; its SDK retries throttling by its own policy; any exception from `apply` or
`verify` (a permission error, say) ends as `failed` with the error in `detail`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from trustwatch.baseline import Baseline, Mode
from trustwatch.dedup import DedupStore
from trustwatch.findings import Finding, Remediation, RemediationStatus, Severity, fingerprint
from trustwatch.frozen import frozen

log = logging.getLogger("trustwatch")

CIRCUIT_RULE = "trustwatch.remediation.circuit_open"
BREAKER_LIMIT = 3
BREAKER_WINDOW_S = 600
# what deploy/ sets TRUSTWATCH_REMEDIATION_MAX_AGE to: an older event is planned, not applied
STALE_AFTER_S = 3600
# before / after are shown in the finding's detail up to this many characters
DETAIL_LIMIT = 2000


@frozen
class Plan:
    """One put-back of one finding, planned from the current (re-read) state.

    `apply()` makes the change; `verify()` reads the state back and returns None when it
    now matches `after`, else the reason it does not.
    """

    action: str  # the finding's remediation.action (the cloud may refine it)
    target: str  # what is changed: an ARN, a scope, a resource name
    mode: Mode  # the mode of the baseline entry the plan was made from
    before: Any  # the state now, as read
    after: Any  # the state the action writes
    apply: Callable[[], None]
    verify: Callable[[], str | None]


@frozen
class NothingToDo:
    """Why a finding gets no action (already back at the baseline, never automated)."""

    reason: str
    status: Literal["skipped", "failed", "none"] = "skipped"


class Remediator(Protocol):
    """A cloud's `remediate` part, as `<cloud>/remediate.py: remediator_from_env` builds it."""

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        """Re-read the state the finding is about and plan its put-back."""
        ...


class Breaker:
    """More than `limit` remediations of one identity in `window_s` seconds: stop.

    Kept in the dedup store with its one atomic primitive: each remediation claims one of
    `limit` slots for `window_s`; when no slot is free, `limit` remediations happened in
    the window (concurrent instances share the count, the slots free themselves).
    """

    def __init__(
        self,
        store: DedupStore,
        *,
        limit: int = BREAKER_LIMIT,
        window_s: int = BREAKER_WINDOW_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.limit = limit
        self.window_s = window_s
        self.clock = clock

    def allow(self, identity: str) -> bool:
        """Count one remediation of `identity`; False if the limit is reached already."""
        now = self.clock() if self.clock else None
        key = identity.strip().lower()
        return any(
            self.store.claim(f"breaker#{key}#{slot}", self.window_s, now)
            for slot in range(self.limit)
        )


RemediatorFor = Callable[[str], "Remediator | None"]


def remediate(
    findings: Iterable[Finding],
    baseline: Baseline,
    remediator_for: RemediatorFor,
    *,
    apply: bool,
    breaker: Breaker | None = None,
    actors_judged: bool = False,
    stale_after_s: float | None = None,
    clock: Callable[[], float] | None = None,
) -> list[Finding]:
    """Each finding with its remediation planned, or applied and verified.

    `remediator_for(cloud)` gives the cloud's remediator (None: the cloud has none).
    Findings whose status the engine settled (`skipped` for approved actors) and findings
    without an action pass through unchanged. A circuit that opens adds one
    `trustwatch.remediation.circuit_open` finding after the one it stopped.
    `actors_judged`: the engine has just judged these findings' actors, delegation chain
    included (the event path); a finding's `actor` alone is then not taken for approval:
    someone impersonating an approved account is not the approved automation.
    `stale_after_s`: an event older than this is planned, not applied: since it was logged
    the state may have been changed again, by automation the baseline approves, and putting
    it back would fight that change (the next sweep judges the state as it is).
    """
    out: list[Finding] = []
    now = (clock or time.time)()
    for finding in findings:
        stale = _stale(finding, now, stale_after_s)
        done, extra = _one(
            finding,
            baseline,
            remediator_for,
            apply=apply and stale is None,
            breaker=breaker,
            judged=actors_judged,
        )
        if stale is not None and done.remediation.status == "planned":
            done = done.model_copy(
                update={
                    "remediation": done.remediation.model_copy(
                        update={
                            "status": "skipped",
                            "detail": stale + done.remediation.detail.removeprefix("dry run"),
                        }
                    )
                }
            )
        out.append(done)
        if extra is not None:
            out.append(extra)
    return out


def _one(
    finding: Finding,
    baseline: Baseline,
    remediator_for: RemediatorFor,
    *,
    apply: bool,
    breaker: Breaker | None,
    judged: bool = False,
) -> tuple[Finding, Finding | None]:
    current = finding.remediation
    if current.action == "none" or current.status in ("skipped", "applied"):
        return finding, None
    if not judged and _approved(finding, baseline):
        return _with(finding, current.action, "skipped", _APPROVED), None
    remediator = remediator_for(finding.cloud)
    if remediator is None:
        return _with(finding, current.action, "none", "no remediation for this cloud"), None
    try:
        plan = remediator.plan(finding, baseline)
    except Exception as exc:  # reading the state failed: the alert still goes out
        return _with(finding, current.action, "failed", f"could not plan: {_short(exc)}"), None
    if isinstance(plan, NothingToDo):
        return _with(finding, current.action, plan.status, plan.reason), None
    shown = _shown(plan)
    if plan.mode != "remediate":
        return _with(finding, plan.action, "none", f"mode is alert; would {shown}", plan), None
    if not apply:
        return _with(finding, plan.action, "planned", f"dry run; would {shown}", plan), None
    try:
        allowed = breaker is None or breaker.allow(finding.identity)
    except Exception as exc:  # no count, no write: the breaker must not fail open
        why = f"circuit breaker state unreadable ({_short(exc)}); not remediating"
        return _with(finding, plan.action, "failed", why, plan), None
    if breaker is not None and not allowed:
        why = (
            f"circuit open: {breaker.limit} remediations of this identity within "
            f"{breaker.window_s // 60} min; not remediating (someone is fighting the baseline)"
        )
        return _with(finding, plan.action, "skipped", why, plan), _circuit_open(finding, breaker)
    return _applied(finding, plan, shown), None


def _applied(finding: Finding, plan: Plan, shown: str) -> Finding:
    try:
        plan.apply()
    except Exception as exc:
        _log(finding, plan, "failed", _short(exc))
        return _with(finding, plan.action, "failed", f"{_short(exc)}; tried to {shown}", plan)
    try:
        mismatch = plan.verify()
    except Exception as exc:
        mismatch = f"could not read the state back: {_short(exc)}"
    if mismatch is not None:
        _log(finding, plan, "failed", mismatch)
        return _with(finding, plan.action, "failed", f"not applied: {mismatch}", plan)
    _log(finding, plan, "applied", "")
    return _with(finding, plan.action, "applied", f"verified; {shown}", plan)


_APPROVED = "change made by approved automation (actors.approved): not reverted"


def _stale(finding: Finding, now: float, stale_after_s: float | None) -> str | None:
    """Why the finding's event is too old to act on, or None (fresh, or no time known)."""
    if not stale_after_s or not finding.event_time or finding.source != "event":
        return None
    try:
        logged = datetime.fromisoformat(finding.event_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if logged.tzinfo is None:
        logged = logged.replace(tzinfo=UTC)
    age = now - logged.timestamp()
    if age <= stale_after_s:
        return None
    return (
        f"event is {int(age // 60)} min old (more than {int(stale_after_s // 60)}): the state "
        "may have changed since; not remediating"
    )


def stale_after_from_env(environ: Mapping[str, str]) -> float | None:
    """TRUSTWATCH_REMEDIATION_MAX_AGE (seconds): an older event is only planned.

    Unset or 0: no limit (replayed recordings stay remediable); deploy/ sets STALE_AFTER_S.
    """
    value = environ.get("TRUSTWATCH_REMEDIATION_MAX_AGE", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        log.warning(
            "TRUSTWATCH_REMEDIATION_MAX_AGE=%r is not seconds; using %s", value, STALE_AFTER_S
        )
        return STALE_AFTER_S  # a typo must not lift the limit the deployment asked for
    return seconds if seconds > 0 else None


def _approved(finding: Finding, baseline: Baseline) -> bool:
    # The engine already marks these `skipped`; a findings file given to the CLI may not.
    # A finding does not carry the delegation chain: here an impersonated approved account
    # counts as approved (no write, the safe side); the event path does not ask (judged).
    actor = finding.actor.strip().lower()
    return bool(actor) and actor in {a.strip().lower() for a in baseline.actors.approved}


def _with(
    finding: Finding,
    action: str,
    status: RemediationStatus,
    detail: str,
    plan: Plan | None = None,
) -> Finding:
    remediation = Remediation(
        action=action,
        status=status,
        detail=detail,
        target=plan.target if plan else "",
        before=plan.before if plan else None,
        after=plan.after if plan else None,
    )
    return finding.model_copy(update={"remediation": remediation})


def _shown(plan: Plan) -> str:
    return (
        f"{plan.action} on {plan.target}: "
        f"before {_compact(plan.before)} → after {_compact(plan.after)}"
    )


def _compact(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + "…"


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "…"


def _log(finding: Finding, plan: Plan, status: str, reason: str) -> None:
    level = logging.WARNING if status == "applied" else logging.ERROR
    log.log(
        level,
        "remediation %s %s on %s%s",
        status,
        plan.action,
        plan.target,
        f": {reason}" if reason else "",
        extra={
            "remediation": {
                "finding": finding.id,
                "rule": finding.rule,
                "action": plan.action,
                "target": plan.target,
                "status": status,
                "reason": reason,
                "before": plan.before,
                "after": plan.after,
            }
        },
    )


def _circuit_open(finding: Finding, breaker: Breaker) -> Finding:
    detail = {"limit": breaker.limit, "window_s": breaker.window_s}
    return Finding(
        id=fingerprint(CIRCUIT_RULE, finding.identity, detail),
        rule=CIRCUIT_RULE,
        severity=Severity.critical,
        cloud=finding.cloud,
        scope=finding.scope,
        identity=finding.identity,
        actor=finding.actor,
        source=finding.source,
        event_id=finding.event_id,
        event_time=finding.event_time,
        summary=(
            f"{finding.identity} was remediated {breaker.limit} times within "
            f"{breaker.window_s // 60} minutes and changed again: someone is fighting the "
            "baseline; remediation of it is stopped until the window passes"
        ),
        expected=detail,
        actual={"last_rule": finding.rule, "last_actor": finding.actor},
        remediation=Remediation(action="none", status="none", detail="circuit open"),
        event_name=finding.event_name,
    )


RemediationSetting = Literal["apply", "dry-run", "off"]
_SETTINGS: tuple[RemediationSetting, ...] = ("apply", "dry-run", "off")


def setting_from_env(environ: Mapping[str, str]) -> RemediationSetting:
    """TRUSTWATCH_REMEDIATION: `apply`, `off` or (anything else) `dry-run`.

    `apply` puts findings back; `off` plans nothing (no state is read, so no cloud SDK
    loads: detection and alerts only); a dry run shows the plan.
    """
    value = environ.get("TRUSTWATCH_REMEDIATION", "dry-run").strip().lower() or "dry-run"
    for setting in _SETTINGS:
        if value == setting:
            return setting
    log.warning("TRUSTWATCH_REMEDIATION=%r is not apply, dry-run or off: dry run", value)
    return "dry-run"


def apply_from_env(environ: Mapping[str, str]) -> bool:
    """TRUSTWATCH_REMEDIATION=apply: put findings back (see setting_from_env)."""
    return setting_from_env(environ) == "apply"


OFF_DETAIL = "remediation is off (TRUSTWATCH_REMEDIATION=off): not planned, nothing changed"


def switched_off(findings: Iterable[Finding]) -> list[Finding]:
    """The findings as they stand with remediation off.

    An action the engine would plan says that it was not (never a bare `planned` that no
    plan follows).
    """
    return [
        _with(f, f.remediation.action, "none", OFF_DETAIL)
        if f.remediation.status == "planned"
        else f
        for f in findings
    ]
