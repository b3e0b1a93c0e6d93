"""The event path every cloud function shares: payload -> changes -> findings -> alerts.

The function entry points only unwrap their platform's envelope and call `Responder.handle`.
Failure semantics (the same on every cloud):
- a malformed or unsupported record is counted in `Outcome.errors` and acknowledged: a
  retry would fail the same way, so raising would only loop until the dead-letter queue;
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
from trustwatch.intake import Parsed, parse_document

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


@dataclass(frozen=True)
class RecordOutcome:
    """What one audit record gave: findings, or why it gave none."""

    where: str
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None
    not_evaluated: str | None = None
    errors: list[str] = field(default_factory=list)


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
            return [RecordOutcome(parsed.where, errors=[str(parsed.error)])]
        if parsed.skipped is not None:
            return [RecordOutcome(parsed.where, skipped=parsed.skipped.reason)]
        return [self._evaluate(change, parsed.where) for change in parsed.changes]

    def _evaluate(self, change: Change, where: str) -> RecordOutcome:
        if change.needs_enrichment:
            reason = change.not_evaluated or str(
                change.data.get("not_evaluated") or "body not in event"
            )
            enriched = self.enrich(change) if self.enrich else reason
            if isinstance(enriched, str):
                note = f"{where}: not evaluated: {enriched} ({change.event_name})"
                return RecordOutcome(where, not_evaluated=note)
            change = enriched
        errors: list[str] = []
        try:
            found = evaluate(change, self.baseline)
        except RuleError as exc:
            found = exc.findings
            errors = [f"{where}: {e}" for e in exc.errors]
        operation = change.correlation_id or change.event_id or where
        fresh = []
        for finding in found:
            if (operation, finding.id) not in self._seen:
                self._seen.add((operation, finding.id))
                fresh.append(finding)
        return RecordOutcome(where, findings=fresh, errors=errors)


def evaluate_records(
    parsed_records: Iterable[Parsed], baseline: Baseline, enrich: Enricher | None = None
) -> Iterator[RecordOutcome]:
    """Evaluate parsed records in order (see RecordEvaluator)."""
    evaluator = RecordEvaluator(baseline, enrich)
    for parsed in parsed_records:
        yield from evaluator.outcomes(parsed)


@dataclass
class Outcome:
    """Everything one delivered payload gave."""

    findings: list[Finding] = field(default_factory=list)  # all findings, sent or not
    sent: list[Finding] = field(default_factory=list)  # at or above the minimum severity
    skipped: list[str] = field(default_factory=list)
    not_evaluated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    records: int = 0

    def add(self, record: RecordOutcome) -> None:
        self.records += 1
        self.findings.extend(record.findings)
        self.errors.extend(record.errors)
        if record.skipped:
            self.skipped.append(record.skipped)
        if record.not_evaluated:
            self.not_evaluated.append(record.not_evaluated)


@dataclass
class Responder:
    baseline: Callable[[], Baseline]
    sender: Sender | None
    enrich: Enricher | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def evaluate(self, doc: Any, where: str) -> Outcome:
        """Parse and evaluate one delivered payload (no alerting)."""
        baseline = self.baseline()
        outcome = Outcome()
        for record in evaluate_records(parse_document(doc, where), baseline, self.enrich):
            outcome.add(record)
        threshold = min_severity(self.environ, baseline)
        outcome.sent = [f for f in outcome.findings if f.severity.at_least(threshold)]
        return outcome

    def handle(self, doc: Any, where: str) -> Outcome:
        """Evaluate, log, and alert; raises if alerting fails (the platform retries)."""
        outcome = self.evaluate(doc, where)
        for error in outcome.errors:
            log.error("unprocessable record acknowledged: %s", error)
        for note in outcome.not_evaluated:
            log.warning(note)
        for finding in outcome.findings:
            log.warning(
                "finding %s %s on %s",
                finding.severity.value,
                finding.rule,
                finding.identity,
                extra={"finding": finding.model_dump(mode="json")},
            )
        if outcome.sent:
            if self.sender is None:
                raise RuntimeError(
                    f"{len(outcome.sent)} finding(s) to send but no alert sink is configured "
                    "(set TRUSTWATCH_SLACK_WEBHOOK_URL or another sink)"
                )
            self.sender.send(outcome.sent)
        return outcome
