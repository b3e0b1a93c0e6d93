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

`sweep_unit` sweeps one unit: it reads the state, evaluates each change
(`engine.evaluate`, findings marked `"source": "sweep"`), and compares the findings with
the unit's last sweep (kept in a `SweepStateStore`, trustwatch.sweepstate) by finding id:

- `new`: not in the last sweep; `open`: in it; `resolved`: in it and gone now;
- an identity the read could not read (`StateRead.unreadable`) keeps its last findings
  open; a read with errors that names no identity resolves nothing; a read that fails
  outright saves nothing (the unit keeps its last state) and is reported as bad input;
- catch-up replays the audit records of [watermark - CATCH_UP_OVERLAP, sweep start)
  through `respond.replay` (the first sweep looks back `TRUSTWATCH_SWEEP_LOOKBACK`
  seconds, default an hour); a catch-up that fails keeps the old watermark, so the next
  sweep reads that stretch again;
- alerts go out for new and resolved findings and the catch-up's, in one `send`, so a
  lost event that the state read also shows alerts once (the same finding id). They go
  out before the state is saved: a failed delivery leaves the state as it was and the
  next sweep sends them again (the dedup store drops the ones that did arrive). Keep
  `TRUSTWATCH_DEDUP_WINDOW` at least the sweep period plus CATCH_UP_OVERLAP (15 minutes),
  so that the live path's alert of an event is still claimed when the catch-up reads that
  event again (an event just before a sweep is read again by the next one).

`sweep` sweeps every unit of some clouds in turn and sends one digest (`send_digest` of
the sender, trustwatch.alerts: counts by severity, new / resolved / open, top items).

Scheduled invocations (each cloud's function, on its schedule) carry a JSON object:

- `{"trustwatch": "sweep"}`: list this cloud's units and fan out, one message each;
- `{"trustwatch": "sweep", "cloud": C, "unit": U}`: sweep that one unit, if it is one of
  the units the cloud lists for the baseline (anything else is refused, unread).

`scheduled(doc)` reads one (None for any other document, ValueError for a malformed
one); `run_scheduled` does what it says: the function passes `dispatch`, which starts
its own invocation for a unit message (the platform runs them in parallel, and one slow
account delays no other); a unit invocation sends its unit's digest when something
changed or could not be read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from trustwatch.frozen import frozen
from trustwatch.sweepstate import (
    SweepState,
    SweepStateConflict,
    SweepStateStore,
    sweep_store_from_env,
)

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline
    from trustwatch.changes import Change
    from trustwatch.findings import Finding
    from trustwatch.intake import Parsed
    from trustwatch.respond import Outcome, Sender

__all__ = [
    "CATCH_UP_OVERLAP",
    "FIRST_LOOKBACK",
    "SWEEP_MESSAGE",
    "DigestSender",
    "ScheduledSweep",
    "StateModule",
    "StateRead",
    "SweepReport",
    "SweepState",
    "SweepStateConflict",
    "SweepStateStore",
    "UnitReport",
    "run_scheduled",
    "scheduled",
    "sweep",
    "sweep_store_from_env",
    "sweep_unit",
    "unit_message",
]

log = logging.getLogger("trustwatch")

# Audit logs arrive late: each catch-up reads again this much before the last watermark.
# CloudTrail delivers "within an average of about 5 minutes ... not guaranteed"
# (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/how-cloudtrail-works.html):
# an overlap of only the average loses every event logged in the minutes before a sweep
# that arrives later than average (and the sweep schedule is no secret).
CATCH_UP_OVERLAP = timedelta(minutes=15)
# A unit's first sweep has no watermark: it catches up on this much (TRUSTWATCH_SWEEP_LOOKBACK).
FIRST_LOOKBACK = timedelta(hours=1)
SWEEP_MESSAGE = "sweep"  # the value of "trustwatch" in a scheduled invocation's message


@frozen
class StateRead:
    """What reading one unit's state gave."""

    unit: str
    changes: list[Change] = field(default_factory=list)
    calls: int = 0  # API requests made (the benchmark's calls per identity)
    # what could not be read (AccessDenied on one role, a 404): reported, never silent
    errors: list[str] = field(default_factory=list)
    # the identities (as findings name them) those errors are about: their last findings
    # stay open. Errors naming none of them make the sweep resolve nothing at all.
    unreadable: list[str] = field(default_factory=list)


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


@runtime_checkable
class DigestSender(Protocol):
    """A sender that also delivers a sweep's digest (trustwatch.alerts.Dispatcher)."""

    def send_digest(
        self, findings: Sequence[Finding], *, title: str, errors: Sequence[str] = ()
    ) -> Any:
        """One digest message per digest sink; raises if none accepted it."""
        ...


@frozen
class UnitReport:
    """What sweeping one unit gave."""

    cloud: str
    unit: str
    started: datetime
    findings: list[Finding] = field(default_factory=list)  # holding now: new and open
    resolved: list[Finding] = field(default_factory=list)  # held last time, gone now
    errors: list[str] = field(default_factory=list)  # unreadable state, catch-up, store
    calls: int = 0  # state-read API requests
    catch_up: Outcome | None = None  # the catch-up replay (None: it did not run)
    alerted: list[str] = field(default_factory=list)  # finding ids handed to the sender
    alert_error: str = ""  # the sender raised: nothing was saved, the next sweep resends
    digest_error: str = ""  # sweep_unit(digest=True): the unit's digest reached no sink
    read_failed: bool = False  # the state read failed outright: the last state is kept
    saved: bool = False  # the new state and watermark are stored

    @property
    def new(self) -> list[Finding]:
        """The findings this sweep saw first."""
        return [f for f in self.findings if f.sweep_status == "new"]

    @property
    def still_open(self) -> list[Finding]:
        """The findings the last sweep saw too."""
        return [f for f in self.findings if f.sweep_status == "open"]

    @property
    def event_findings(self) -> list[Finding]:
        """The catch-up's findings (`"source": "event"`)."""
        return list(self.catch_up.findings) if self.catch_up else []

    def output(self) -> list[Finding]:
        """What the sweep reports: holding now, resolved since, then the catch-up's."""
        return [*self.findings, *self.resolved, *self.event_findings]


def sweep_unit(
    cloud: str,
    unit: str,
    baseline: Baseline,
    *,
    environ: Mapping[str, str],
    store: SweepStateStore,
    sender: Sender | None,
    now: datetime | None = None,
    digest: bool = False,
) -> UnitReport:
    """Sweep one unit (see the module docstring).

    `digest`: also send this unit's digest when something is new, resolved or
    unreadable (a fanned-out invocation's digest).
    """
    from trustwatch import clouds
    from trustwatch.intake import short_exception

    started = _aware(now)
    plugin = clouds.get(cloud)
    module = plugin.state()
    if module is None:
        return UnitReport(cloud, unit, started, errors=[f"{cloud}: no state part to sweep"])
    where = f"{cloud} {unit}"
    try:
        known = unit in module.units(baseline, environ)
    except Exception as exc:
        known, listing = False, short_exception(exc)
    else:
        listing = "not a unit of the baseline"
    if not known:
        # a fanned-out message names its unit: one no sweep lists (forged, or from an older
        # baseline) is read, caught up on and stored for nobody
        log.error("%s: not swept: %s", where, listing)
        return UnitReport(cloud, unit, started, errors=[f"{where}: {listing}"], read_failed=True)
    try:
        previous = store.load(cloud, unit)
    except Exception as exc:  # unreadable last state: a diff against nothing would lie
        message = f"{where}: sweep state unreadable: {short_exception(exc)}"
        report = UnitReport(cloud, unit, started, errors=[message], read_failed=True)
        return _with_digest(report, sender, digest)
    try:
        read = module.read(unit, baseline, environ)
    except Exception as exc:
        log.error("%s: state read failed: %s", where, short_exception(exc))
        kept = [_marked(f, "open") for f in (previous.findings if previous else ())]
        message = f"{where}: state read failed: {short_exception(exc)}"
        report = UnitReport(cloud, unit, started, kept, errors=[message], read_failed=True)
        # a unit that cannot be read at all (its read role's trust edited, a deny) must not
        # go quiet in a fanned-out invocation: nobody reads that function's log
        return _with_digest(report, sender, digest)
    current, unsure, rule_errors = _evaluate_all(read.changes, baseline, where)
    unsure |= {i.lower() for i in read.unreadable}
    resolve_none = bool(read.errors) and not read.unreadable
    findings, resolved = _diff(previous, current, unsure, resolve_none)
    errors = [f"{where}: {e}" for e in read.errors] + rule_errors

    since = previous.watermark - CATCH_UP_OVERLAP if previous else started - _lookback(environ)
    catch_up, catch_up_complete = _catch_up(module, plugin, unit, since, started, baseline, environ)
    errors += catch_up.errors

    report = UnitReport(
        cloud, unit, started, findings, resolved, errors, read.calls, catch_up=catch_up
    )
    alerted, alert_error = _alert(report, baseline, environ, sender)
    report = _with(report, alerted=alerted, alert_error=alert_error)
    if alert_error:
        return report  # saved nothing: the next sweep sends these again
    watermark = started if catch_up_complete else (previous.watermark if previous else since)
    state = SweepState(watermark, tuple(findings))
    try:
        store.save(cloud, unit, state, expected=previous.version if previous else None)
    except SweepStateConflict as exc:
        report = _with(report, errors=[*errors, f"{where}: not saved: {exc}"])
    except Exception as exc:
        report = _with(report, errors=[*errors, f"{where}: not saved: {short_exception(exc)}"])
    else:
        report = _with(report, saved=True)
    return _with_digest(report, sender, digest)


def _with_digest(report: UnitReport, sender: Sender | None, digest: bool) -> UnitReport:
    """The report, with its unit's digest sent if `digest` and anything changed.

    Changed: something new, resolved or unreadable (a fanned-out invocation's digest).
    """
    if digest and (report.new or report.resolved or report.errors or _not_judged(report)):
        title = f"trustwatch sweep of {report.cloud} {report.unit}"
        report = _with(report, digest_error=_send_digest(sender, [report], title=title))
    return report


def _not_judged(report: UnitReport) -> list[str]:
    """The catch-up's records that could not be judged: what the digest must also say.

    An enrichment read refused, or the resource gone: not bad input (replay's exit codes).
    """
    return list(report.catch_up.not_evaluated) if report.catch_up else []


def _aware(now: datetime | None) -> datetime:
    """`now` (the wall clock if None), a naive time read as UTC: watermarks compare."""
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _with(report: UnitReport, **changes: Any) -> UnitReport:
    from dataclasses import replace

    return replace(report, **changes)


def _lookback(environ: Mapping[str, str]) -> timedelta:
    value = environ.get("TRUSTWATCH_SWEEP_LOOKBACK", "").strip()
    try:
        return timedelta(seconds=int(value)) if value else FIRST_LOOKBACK
    except ValueError:
        log.warning("TRUSTWATCH_SWEEP_LOOKBACK=%r is not seconds; using %s", value, FIRST_LOOKBACK)
        return FIRST_LOOKBACK


def _evaluate_all(
    changes: Iterable[Change], baseline: Baseline, where: str
) -> tuple[list[Finding], set[str], list[str]]:
    """Every change judged: (findings once each, identities a rule failed on, errors)."""
    from trustwatch.engine import RuleError, evaluate
    from trustwatch.intake import code_location, short_exception

    found: dict[str, Finding] = {}
    unsure: set[str] = set()
    errors: list[str] = []
    for change in changes:
        try:
            findings = evaluate(change, baseline)
        except RuleError as exc:  # the other rules' findings stand; this identity is unsure
            findings = exc.findings
            unsure.add(change.identity.lower())
            errors += [f"{where}: internal error: {e[:300]}" for e in exc.errors]
        except Exception as exc:  # outside the rules (building a finding): a bug too
            findings = []
            unsure.add(change.identity.lower())
            errors.append(
                f"{where}: internal error evaluating {change.event_name}: "
                f"{short_exception(exc)} at {code_location(exc)}"
            )
        for finding in findings:
            found.setdefault(finding.id, finding.model_copy(update={"source": "sweep"}))
    return list(found.values()), unsure, errors


def _marked(finding: Finding, status: str) -> Finding:
    return finding.model_copy(update={"source": "sweep", "sweep_status": status})


def _diff(
    previous: SweepState | None, current: list[Finding], unsure: set[str], resolve_none: bool
) -> tuple[list[Finding], list[Finding]]:
    """(holding now, each new or open; resolved).

    The last findings not seen again are resolved, unless their identity was not read
    for sure: then they stay open.
    """
    before = {f.id: f for f in previous.findings} if previous else {}
    holding = [_marked(f, "open" if f.id in before else "new") for f in current]
    seen = {f.id for f in current}
    resolved: list[Finding] = []
    for finding_id, finding in before.items():
        if finding_id in seen:
            continue
        if resolve_none or finding.identity.lower() in unsure:
            holding.append(_marked(finding, "open"))  # not read this time: as last known
        else:
            resolved.append(_marked(finding, "resolved"))
    return _ordered(holding), _ordered(resolved)


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity.rank, f.rule, f.identity, f.id))


def _catch_up(
    module: StateModule,
    plugin: Any,
    unit: str,
    since: datetime,
    until: datetime,
    baseline: Baseline,
    environ: Mapping[str, str],
) -> tuple[Outcome, bool]:
    """The unit's audit records of [since, until) through the one replay path.

    Also says whether every record was read (a failed listing keeps the watermark).
    """
    from trustwatch.intake import short_exception
    from trustwatch.respond import min_severity, replay

    where = f"{plugin.name} {unit} catch-up"
    failure: list[str] = []
    budget = _catch_up_budget(environ)
    started = _clock()

    def parsed() -> Iterator[Parsed]:
        from trustwatch.intake import parse_document

        try:
            for index, doc in enumerate(module.catch_up(unit, since, until, environ)):
                if budget and _clock() - started > budget:
                    # a flood of logged calls must not keep the state read's findings from
                    # being saved and alerted: stop, keep the watermark, read it next time
                    failure.append(
                        f"{where}: stopped after {budget:g} s (TRUSTWATCH_SWEEP_CATCH_UP_BUDGET) "
                        f"at record {index}: the next sweep reads the window again"
                    )
                    log.error("%s: over its time budget at record %d", where, index)
                    return
                yield from parse_document(doc, f"{where} record {index}")
        except Exception as exc:  # the listing broke off: what was read is still judged
            failure.append(f"{where}: stopped: {short_exception(exc)}")
            log.error("%s stopped: %s", where, short_exception(exc))

    outcome = replay(
        parsed(),
        baseline,
        enrich=plugin.enricher(environ),
        threshold=min_severity(environ, baseline),
        keep_skip_reasons=False,
    )
    for note in outcome.not_evaluated:  # in the digest too (`_not_judged`), never only counted
        log.warning(note)
    outcome.errors.extend(failure)
    return outcome, not failure


# Seconds a unit's catch-up may take (TRUSTWATCH_SWEEP_CATCH_UP_BUDGET; 0: no limit): well
# inside a function's timeout (deploy/aws gives 300 s), so the state read is always saved.
CATCH_UP_BUDGET_S = 120.0
_clock = time.monotonic  # the budget's clock (tests advance their own)


def _catch_up_budget(environ: Mapping[str, str]) -> float:
    value = environ.get("TRUSTWATCH_SWEEP_CATCH_UP_BUDGET", "").strip()
    if not value:
        return CATCH_UP_BUDGET_S
    try:
        return max(float(value), 0.0)
    except ValueError:
        log.warning(
            "TRUSTWATCH_SWEEP_CATCH_UP_BUDGET=%r is not seconds; using %s", value, CATCH_UP_BUDGET_S
        )
        return CATCH_UP_BUDGET_S


def _alert(
    report: UnitReport, baseline: Baseline, environ: Mapping[str, str], sender: Sender | None
) -> tuple[list[str], str]:
    """Send the new, resolved and catch-up findings at or above the minimum severity."""
    from trustwatch.intake import short_exception
    from trustwatch.respond import min_severity

    threshold = min_severity(environ, baseline)
    changed = [f for f in (*report.new, *report.resolved) if f.severity.at_least(threshold)]
    # the catch-up's last: of one finding id sent twice the dispatcher keeps the last,
    # and an event's finding says who did it
    outgoing = changed + (report.catch_up.sent if report.catch_up else [])
    if not outgoing or sender is None:
        return [], ""
    try:
        sender.send(outgoing)
    except Exception as exc:
        log.error("%s %s: sweep alerts failed: %s", report.cloud, report.unit, exc)
        return [f.id for f in outgoing], short_exception(exc, 500)
    return [f.id for f in outgoing], ""


@frozen
class SweepReport:
    """What one sweep of several units gave, and its digest's fate."""

    units: list[UnitReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # beyond the units' (a cloud's units)
    digest_error: str = ""  # the digest reached no digest sink

    @property
    def findings(self) -> list[Finding]:
        """Every unit's findings holding now."""
        return [f for u in self.units for f in u.findings]

    @property
    def resolved(self) -> list[Finding]:
        """Every unit's findings resolved since its last sweep."""
        return [f for u in self.units for f in u.resolved]

    @property
    def all_errors(self) -> list[str]:
        """The sweep's own errors and every unit's."""
        return [*self.errors, *(e for u in self.units for e in u.errors)]

    @property
    def alert_errors(self) -> list[str]:
        """Per unit whose alerts failed: why."""
        return [f"{u.cloud} {u.unit}: {u.alert_error}" for u in self.units if u.alert_error]

    def output(self) -> list[Finding]:
        """What the sweep reports, unit after unit (see UnitReport.output)."""
        return [f for u in self.units for f in u.output()]


def sweep(
    cloud_names: Sequence[str],
    baseline: Baseline,
    *,
    environ: Mapping[str, str],
    store: SweepStateStore,
    sender: Sender | None,
    now: datetime | None = None,
    digest: bool = True,
    on_unit: Callable[[str, str], None] | None = None,
    on_units: Callable[[int], None] | None = None,
) -> SweepReport:
    """Sweep every unit of `cloud_names` in turn, then send one digest.

    The digest goes out if `digest` and the sender has digest sinks. `on_units(total)`
    learns how many units there are, and `on_unit(cloud, unit)` is called after each
    one (the CLI's progress bar).
    """
    from trustwatch import clouds
    from trustwatch.intake import short_exception

    started = _aware(now)
    errors: list[str] = []
    work: list[tuple[str, str]] = []
    for name in cloud_names:
        module = clouds.get(name).state()
        if module is None:
            errors.append(f"{name}: no state part to sweep")
            continue
        try:
            work += [(name, unit) for unit in module.units(baseline, environ)]
        except Exception as exc:
            errors.append(f"{name}: cannot list its units: {short_exception(exc)}")
    if on_units is not None:
        on_units(len(work))
    units: list[UnitReport] = []
    for cloud, unit in work:
        units.append(
            sweep_unit(
                cloud, unit, baseline, environ=environ, store=store, sender=sender, now=started
            )
        )
        if on_unit is not None:
            on_unit(cloud, unit)
    report = SweepReport(units, errors)
    if digest and sender is not None:
        names = ", ".join(cloud_names)
        failed = _send_digest(sender, units, title=f"trustwatch sweep ({names})", extra=errors)
        if failed:
            from dataclasses import replace

            report = replace(report, digest_error=failed)
    return report


def _send_digest(
    sender: Sender | None,
    units: Sequence[UnitReport],
    *,
    title: str,
    extra: Sequence[str] = (),
) -> str:
    """Send the units' digest if the sender has digest sinks; why it failed, or ""."""
    from trustwatch.intake import short_exception

    if not isinstance(sender, DigestSender):
        return ""
    findings = [f for u in units for f in (*u.findings, *u.resolved)]
    errors = [*extra, *(e for u in units for e in (*u.errors, *_not_judged(u)))]
    try:
        sender.send_digest(findings, title=title, errors=errors)
    except Exception as exc:
        log.error("sweep digest not delivered: %s", short_exception(exc))
        return short_exception(exc, 500)
    return ""


# --- scheduled invocations -----------------------------------------------------------------


@frozen
class ScheduledSweep:
    """A scheduled invocation's message: fan out (`unit` None) or sweep one unit."""

    cloud: str | None = None
    unit: str | None = None


def scheduled(doc: Any) -> ScheduledSweep | None:
    """The sweep message in `doc`, None if it is no sweep message; ValueError if malformed."""
    if not isinstance(doc, dict) or doc.get("trustwatch") != SWEEP_MESSAGE:
        return None
    unknown = set(doc) - {"trustwatch", "cloud", "unit"}
    if unknown:
        raise ValueError(f"sweep message: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    cloud, unit = doc.get("cloud"), doc.get("unit")
    for name, value in (("cloud", cloud), ("unit", unit)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"sweep message: {name} must be a non-empty string")
    if unit is not None and cloud is None:
        raise ValueError("sweep message: a unit needs its cloud")
    return ScheduledSweep(cloud, unit)


def unit_message(cloud: str, unit: str) -> dict[str, str]:
    """The message that makes an invocation sweep one unit."""
    return {"trustwatch": SWEEP_MESSAGE, "cloud": cloud, "unit": unit}


def run_scheduled(
    request: ScheduledSweep,
    cloud: str,
    baseline: Baseline,
    *,
    environ: Mapping[str, str],
    store: SweepStateStore,
    sender: Sender | None,
    dispatch: Callable[[dict[str, str]], None],
    now: datetime | None = None,
) -> list[dict[str, str]] | UnitReport:
    """Do what a scheduled message says, in the function of `cloud`.

    Fan-out: `dispatch` each unit's message (returns them). A unit: sweep it, with its
    digest; raises RuntimeError if alerts failed (the platform retries; nothing was
    saved, so the retry sends them again) or when no alert sink is configured.
    """
    if request.cloud is not None and request.cloud != cloud:
        raise ValueError(f"sweep message for cloud {request.cloud!r} reached the {cloud} function")
    if request.unit is None:
        from trustwatch import clouds

        module = clouds.get(cloud).state()
        if module is None:
            raise ValueError(f"{cloud}: no state part to sweep")
        messages = [unit_message(cloud, unit) for unit in module.units(baseline, environ)]
        for message in messages:
            dispatch(message)
        log.info("sweep: %d %s unit(s) dispatched", len(messages), cloud)
        return messages
    if sender is None:
        raise RuntimeError(
            "a scheduled sweep needs an alert sink (set TRUSTWATCH_SLACK_WEBHOOK_URL or another)"
        )
    report = sweep_unit(
        cloud,
        request.unit,
        baseline,
        environ=environ,
        store=store,
        sender=sender,
        now=now,
        digest=True,
    )
    for error in report.errors:
        log.error("sweep: %s", error)
    log.info(
        "sweep %s %s: %d new, %d open, %d resolved, %d catch-up finding(s), %d call(s)",
        cloud,
        request.unit,
        len(report.new),
        len(report.still_open),
        len(report.resolved),
        len(report.event_findings),
        report.calls,
    )
    if report.alert_error:
        raise RuntimeError(f"sweep {cloud} {request.unit}: alerts failed: {report.alert_error}")
    return report
