"""The one replay path: records -> changes -> findings -> `Outcome`, then alerts.

`replay()` is the core every caller shares: the CLI (`trustwatch replay`), the demo and
the three cloud functions (through `Responder.handle`, after unwrapping their platform's
envelope). Every readable record is evaluated, whatever the records around it hold.
Failure semantics (the same everywhere):
- a malformed or unsupported record is counted in `Outcome.errors` and the next record is
  evaluated; a function acknowledges it: a retry would fail the same way, so raising would
  only loop until the dead-letter queue;
- a bug (an unexpected exception parsing a record, or in a rule) is that record's error
  too, counted apart in `Outcome.internal_errors` and logged at ERROR as "internal error";
- a failure to alert raises `AlertDeliveryError`, so the platform retries and finally
  dead-letters the event: a finding is never lost silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.engine import RuleError, evaluate
from trustwatch.findings import Finding, Severity
from trustwatch.frozen import frozen
from trustwatch.intake import Parsed, code_location, parse_document, short_exception
from trustwatch.remediation import (
    Breaker,
    Remediator,
    remediate,
    stale_after_from_env,
    switched_off,
)

log = logging.getLogger("trustwatch")

# An enricher fetches what an event lacks (Azure Event Grid carries no assignment body):
# it returns the completed Change, or a reason the change cannot be evaluated.
Enricher = Callable[[Change], "Change | str"]


class Sender(Protocol):
    def send(self, findings: list[Finding]) -> Any: ...


def min_severity(environ: Mapping[str, str], baseline: Baseline) -> Severity:
    """TRUSTWATCH_MIN_SEVERITY, else the baseline's defaults.min_severity."""
    value = environ.get("TRUSTWATCH_MIN_SEVERITY", "").strip().lower()
    if not value:
        return baseline.defaults.min_severity
    try:
        return Severity(value)
    except ValueError:
        log.warning("TRUSTWATCH_MIN_SEVERITY=%r is not a severity; using %s", value, "info")
        return Severity.info  # an invalid threshold must not hide findings


@frozen
class RecordOutcome:
    """What one audit record gave: findings, or why it gave none."""

    where: str
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None
    not_evaluated: str | None = None
    errors: list[str] = field(default_factory=list)
    internal_errors: int = 0  # how many of `errors` are trustwatch bugs


class RecordEvaluator:
    """Evaluates parsed records one after another against one baseline; a finding repeated
    within one operation (Azure Start + Success records share a correlation id) is reported
    once."""

    def __init__(self, baseline: Baseline, enrich: Enricher | None = None) -> None:
        self.baseline = baseline
        self.enrich = enrich
        self._seen: set[tuple[str, str]] = set()

    def outcomes(self, parsed: Parsed) -> list[RecordOutcome]:
        """The record's outcome: an error, a skip, or one per change it holds."""
        if parsed.error is not None:
            internal = 1 if parsed.internal else 0
            return [
                RecordOutcome(parsed.where, errors=[str(parsed.error)], internal_errors=internal)
            ]
        if parsed.skipped is not None:
            return [RecordOutcome(parsed.where, skipped=parsed.skipped.reason)]
        return [self._evaluate(change, parsed.where) for change in parsed.changes]

    def _evaluate(self, change: Change, where: str) -> RecordOutcome:
        if change.needs_enrichment:
            reason = change.not_evaluated or "body not in event"
            enriched = self.enrich(change) if self.enrich else reason
            if isinstance(enriched, str):
                note = f"{where}: not evaluated: {enriched} ({change.event_name})"
                return RecordOutcome(where, not_evaluated=note)
            change = enriched
        errors: list[str] = []
        try:
            found = evaluate(change, self.baseline)
        except RuleError as exc:  # a rule raised: a bug, the other rules' findings stand
            found = exc.findings
            # cut short: the exception text may quote the record (policy text, names)
            short = [e if len(e) <= 300 else e[:300] + "…" for e in exc.errors]
            errors = [f"{where}: internal error: {e}" for e in short]
            for error in short:
                log.error("internal error evaluating %s: %s", where, error)
        except Exception as exc:  # outside the rules (building a finding): also a bug
            found = []
            at = code_location(exc)
            errors = [f"{where}: internal error evaluating: {short_exception(exc)} at {at}"]
            log.error("internal error evaluating %s: %s at %s", where, short_exception(exc), at)
        operation = change.correlation_id or change.event_id or where
        fresh = []
        for finding in found:
            if (operation, finding.id) not in self._seen:
                self._seen.add((operation, finding.id))
                fresh.append(finding)
        return RecordOutcome(where, findings=fresh, errors=errors, internal_errors=len(errors))


def evaluate_records(
    parsed_records: Iterable[Parsed], baseline: Baseline, enrich: Enricher | None = None
) -> Iterator[RecordOutcome]:
    """Evaluate parsed records in order (see RecordEvaluator), one outcome at a time."""
    evaluator = RecordEvaluator(baseline, enrich)
    for parsed in parsed_records:
        yield from evaluator.outcomes(parsed)


@dataclass
class Outcome:
    """Everything one replay (a delivered payload, or files) gave."""

    findings: list[Finding] = field(default_factory=list)  # all findings, sent or not
    sent: list[Finding] = field(default_factory=list)  # at or above the minimum severity
    skipped: list[str] = field(default_factory=list)  # reasons (unless not kept: see replay)
    not_evaluated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per bad record, with where
    records: int = 0
    skips: int = 0  # records skipped, reasons kept or not
    internal_errors: int = 0  # errors that are trustwatch bugs (also in `errors`)
    stopped_early: bool = False  # fail_fast stopped at the first bad record

    def add(self, record: RecordOutcome, *, keep_skip_reasons: bool = True) -> None:
        self.records += 1
        self.findings.extend(record.findings)
        self.errors.extend(record.errors)
        self.internal_errors += record.internal_errors
        if record.skipped:
            self.skips += 1
            if keep_skip_reasons:
                self.skipped.append(record.skipped)
        if record.not_evaluated:
            self.not_evaluated.append(record.not_evaluated)


def replay(
    parsed_records: Iterable[Parsed],
    baseline: Baseline,
    *,
    enrich: Enricher | None = None,
    threshold: Severity = Severity.info,
    fail_fast: bool = False,
    keep_skip_reasons: bool = True,
    on_record: Callable[[RecordOutcome], None] | None = None,
) -> Outcome:
    """The one replay path: evaluate every parsed record against the baseline.

    Every record is evaluated and a bad one is reported in `errors` with where it is;
    `fail_fast` stops at the first bad record instead (what was found before it stays).
    `on_record` sees each record's outcome as it is made (the CLI prints errors as they
    come); `keep_skip_reasons=False` only counts skips (a trail is mostly noise).
    `sent` holds the findings at or above `threshold`.
    """
    outcome = Outcome()
    evaluator = RecordEvaluator(baseline, enrich)
    for parsed in parsed_records:
        if parsed.error is None and parsed.skipped is not None and not keep_skip_reasons:
            outcome.records += 1  # noise, most of a trail: counted without building more
            outcome.skips += 1
            continue
        for record in evaluator.outcomes(parsed):
            outcome.add(record, keep_skip_reasons=keep_skip_reasons)
            if on_record is not None:
                on_record(record)
        if fail_fast and outcome.errors:
            outcome.stopped_early = True
            break
    outcome.sent = [f for f in outcome.findings if f.severity.at_least(threshold)]
    return outcome


@dataclass
class Responder:
    """One function's event path: evaluate, remediate (or plan), log, alert."""

    baseline: Callable[[], Baseline]
    sender: Sender | None
    enrich: Enricher | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    # the cloud's remediator (None: findings keep the engine's planned/none status)
    remediator: Remediator | None = None
    apply_remediation: bool = False  # TRUSTWATCH_REMEDIATION=apply; else a dry run
    remediation_off: bool = False  # TRUSTWATCH_REMEDIATION=off: nothing planned
    breaker: Breaker | None = None

    def evaluate(self, doc: Any, where: str) -> Outcome:
        """Parse and evaluate one delivered payload (no alerting)."""
        baseline = self.baseline()
        threshold = min_severity(self.environ, baseline)
        return replay(parse_document(doc, where), baseline, enrich=self.enrich, threshold=threshold)

    def handle(self, doc: Any, where: str) -> Outcome:
        """Evaluate, log, and alert; raises if alerting fails (the platform retries)."""
        outcome = self.evaluate(doc, where)
        if self.remediator is not None and outcome.findings:
            self._remediate(outcome)
        elif self.remediation_off and outcome.findings:
            self._settle(outcome, switched_off(outcome.findings))
        for error in outcome.errors:  # each bad record; the others were all evaluated
            log.error("unprocessable record acknowledged: %s", error)
        for note in outcome.not_evaluated:
            log.warning(note)
        for finding in outcome.findings:
            log.warning(
                "finding %s %s on %s",
                finding.severity.value,
                finding.rule,
                finding.identity,
                # the model itself: the formatter's json.dumps writes it
                # (schema.log_json_default), one walk instead of a dump and a walk
                extra={"finding": finding},
            )
        if outcome.sent:
            if self.sender is None:
                raise RuntimeError(
                    f"{len(outcome.sent)} finding(s) to send but no alert sink is configured "
                    "(set TRUSTWATCH_SLACK_WEBHOOK_URL or another sink)"
                )
            self.sender.send(outcome.sent)
        return outcome

    def _remediate(self, outcome: Outcome) -> None:
        """Put each finding back (or plan it) before alerting: the alert says what was done."""
        remediator = self.remediator
        baseline = self.baseline()
        try:
            outcome.findings = remediate(
                outcome.findings,
                baseline,
                lambda _cloud: remediator,
                apply=self.apply_remediation,
                breaker=self.breaker,
                actors_judged=True,  # the engine just judged them, delegation included
                stale_after_s=stale_after_from_env(self.environ),
            )
        except Exception as exc:  # a bug here must not cost the alert: send as found
            log.error("internal error remediating: %s", short_exception(exc))
            outcome.internal_errors += 1
            outcome.errors.append(f"internal error remediating: {short_exception(exc)}")
        self._settle(outcome, outcome.findings)

    def _settle(self, outcome: Outcome, findings: list[Finding]) -> None:
        """The findings as remediation left them, and those of them to send."""
        outcome.findings = findings
        threshold = min_severity(self.environ, self.baseline())
        outcome.sent = [f for f in findings if f.severity.at_least(threshold)]
