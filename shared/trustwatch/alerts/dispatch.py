"""The dispatcher: findings -> routed, deduplicated, delivered to every sink, or an error.

Failure semantics (docs/alerts.md):
- a finding no sink routes (below every minimum severity, or filtered out) is reported as
  `below_threshold` and not sent;
- a finding claimed within its dedup window is a `duplicate` and not sent (one whose
  remediation failed claims apart: it is never a duplicate of one put back);
- sinks run in parallel; a failing sink never blocks the others; a sink whose message
  failed for a transient reason (after retries) skips the rest of this call;
- a routed finding that no sink accepted is `undelivered`: its dedup claim is released
  and `send` raises AlertDeliveryError (the platform retries, then dead-letters);
- a sweep's resolution of a finding claims apart from the finding (`dedup_key`), and
  once delivered frees the finding's claim: drift that comes back alerts again;
- a sweep's digest (`send_digest`) goes to every Slack and email sink, once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from trustwatch.alerts.config import (
    DEFAULT_MIN_SEVERITY,
    DEFAULT_WINDOW_S,
    ENV_EMAIL_FROM,
    ENV_EMAIL_TO,
    ENV_ROUTING,
    AlertConfigError,
    Delivery,
    EmailConfig,
    SesConfig,
    SinkConfigBase,
    SlackConfig,
    TeamsConfig,
    WebhookConfig,
    addresses,
    delivery_from,
    env_min_severity,
    env_window,
    load_routing,
    routing_from_env,
)
from trustwatch.alerts.secrets import SecretRef
from trustwatch.alerts.sinks import Sink, SlackBotSink, SlackWebhookSink, TeamsSink, WebhookSink
from trustwatch.alerts.transport import HTTPStatusError
from trustwatch.dedup import DedupStore, MemoryDedupStore
from trustwatch.findings import Finding
from trustwatch.frozen import frozen
from trustwatch.schema import model_fields

log = logging.getLogger("trustwatch.alerts")
DIGEST_ID = "digest"  # how a DeliveryReport names a sweep's digest


@frozen
class SinkFailure:
    """Findings one sink did not accept, and why."""

    finding_ids: tuple[str, ...]
    reason: str  # error type and status; never a secret


@dataclass
class DeliveryReport:
    """What one `Dispatcher.send` did with each finding (docs/alerts.md)."""

    delivered: dict[str, list[str]] = field(default_factory=dict)  # sink -> finding ids
    duplicates: list[str] = field(default_factory=list)  # alerted within the window already
    below_threshold: list[str] = field(default_factory=list)  # no sink routes them
    failures: dict[str, list[SinkFailure]] = field(default_factory=dict)  # sink -> failures
    undelivered: list[str] = field(default_factory=list)  # routed, accepted by no sink

    @property
    def ok(self) -> bool:
        """True when every routed, new finding reached at least one sink."""
        return not self.undelivered

    def to_dict(self) -> dict[str, object]:
        """The report as plain data (JSON-ready)."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs: counts per outcome and the first failure per sink."""
        sent = ", ".join(f"{sink}: {len(ids)}" for sink, ids in self.delivered.items() if ids)
        failed = "; ".join(
            f"{sink}: {fs[0].reason}" + (f" (+{len(fs) - 1} more)" if len(fs) > 1 else "")
            for sink, fs in self.failures.items()
            if fs
        )
        parts = [
            f"delivered ({sent or 'none'})",
            f"{len(self.duplicates)} duplicate(s)",
            f"{len(self.below_threshold)} below threshold",
            f"{len(self.undelivered)} undelivered",
        ]
        return ", ".join(parts) + (f"; failures: {failed}" if failed else "")


class AlertDeliveryError(RuntimeError):
    """Some finding at or above a sink's minimum severity reached no sink."""

    def __init__(self, report: DeliveryReport) -> None:
        super().__init__(
            f"{len(report.undelivered)} finding(s) reached no alert sink: {report.summary()}"
        )
        self.report = report


_SINK_TYPES: dict[type, type[Sink]] = {
    TeamsConfig: TeamsSink,
    WebhookConfig: WebhookSink,
}


class Dispatcher:
    """Routes findings to sinks, deduplicates them and reports what happened."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        store: DedupStore | None = None,
        window_s: int = DEFAULT_WINDOW_S,
    ) -> None:
        self._sinks = list(sinks)
        self.store: DedupStore = store if store is not None else MemoryDedupStore()
        self.window_s = window_s

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        routing_file: str | None = None,
        store: DedupStore | None = None,
        window_s: int = DEFAULT_WINDOW_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Dispatcher:
        """A dispatcher configured from a routing file or the environment.

        Sinks come from a routing file (`routing_file`, else TRUSTWATCH_ALERT_ROUTING)
        or, without one, from the standard environment variables. Raises
        AlertConfigError.

        Precedence: routing file > environment > arguments. No secret is fetched here
        (only that referenced environment variables exist is checked): secret stores are
        read on the first send, once per Dispatcher.
        """
        env = dict(os.environ if environ is None else environ)
        path = routing_file or env.get(ENV_ROUTING) or None
        routing = load_routing(path) if path else routing_from_env(env)
        delivery = delivery_from(routing.delivery, env)
        window = routing.dedup.window_s
        if window is None:
            window = env_window(env)
        default_severity = (
            routing.defaults.min_severity or env_min_severity(env) or DEFAULT_MIN_SEVERITY
        )
        sinks = [
            _build_sink(config, env, delivery, default_severity, sleep) for config in routing.sinks
        ]
        if not sinks:
            log.warning("no alert sink configured: findings will not be sent anywhere")
        if store is None:
            store = _store_from_env(env)
        return cls(sinks, store=store, window_s=window_s if window is None else window)

    @property
    def sinks(self) -> list[str]:
        """The sinks' names, in configuration order."""
        return [s.name for s in self._sinks]

    def __repr__(self) -> str:
        return f"Dispatcher(sinks={self.sinks!r}, window_s={self.window_s}, store={self.store!r})"

    def send(self, findings: Sequence[Finding]) -> DeliveryReport:
        """Deliver `findings`; raises AlertDeliveryError if a routed one reached no sink."""
        report = DeliveryReport(
            delivered={s.name: [] for s in self._sinks},
            failures={s.name: [] for s in self._sinks},
        )
        unique = list({dedup_key(f): f for f in findings}.values())
        live: list[Finding] = []
        for finding in unique:
            if not any(sink.routes(finding) for sink in self._sinks):
                report.below_threshold.append(finding.id)
            elif self._claim(dedup_key(finding)):
                live.append(finding)
            else:
                report.duplicates.append(finding.id)
        work = [(s, [f for f in live if s.routes(f)]) for s in self._sinks]
        work = [(s, fs) for s, fs in work if fs]
        if len(work) == 1:
            self._run_sink(*work[0], report)
        elif work:  # in parallel: a slow or dead sink delays no other
            from concurrent.futures import ThreadPoolExecutor  # one sink (most) needs none

            with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="alert") as pool:
                list(pool.map(lambda item: self._run_sink(item[0], item[1], report), work))
        accepted = {i for ids in report.delivered.values() for i in ids}
        for finding in live:
            if finding.id not in accepted:
                report.undelivered.append(finding.id)
                self._release(dedup_key(finding))
            elif finding.source == "sweep":  # drift that comes back after it ended alerts
                self._release(ended_key(finding))
        if report.undelivered:
            log.error("alert delivery failed: %s", report.summary())
            raise AlertDeliveryError(report)
        log.info("alerts: %s", report.summary())
        return report

    def send_digest(
        self, findings: Sequence[Finding], *, title: str, errors: Sequence[str] = ()
    ) -> DeliveryReport:
        """A sweep's digest (render.digest_view) to each sink that takes one.

        Slack and email sinks do, each one message, in parallel; a digest is neither
        deduplicated (there is one per sweep) nor routed.

        Raises AlertDeliveryError if such sinks exist and none accepted it.
        """
        from trustwatch.alerts.render import digest_view

        digest = digest_view(findings, title=title, errors=errors)
        report = DeliveryReport(
            delivered={s.name: [] for s in self._sinks},
            failures={s.name: [] for s in self._sinks},
        )
        taken: list[str] = []  # the sinks that take digests

        def run(sink: Sink) -> None:
            try:
                if sink.deliver_digest(digest):
                    taken.append(sink.name)
                    report.delivered[sink.name].append(DIGEST_ID)
            except Exception as exc:
                taken.append(sink.name)
                reason = sink.reason(exc)
                log.warning("sink %s: digest not delivered: %s", sink.name, reason)
                report.failures[sink.name].append(SinkFailure((DIGEST_ID,), reason))

        if len(self._sinks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(self._sinks), thread_name_prefix="digest") as pool:
                list(pool.map(run, self._sinks))
        elif self._sinks:
            run(self._sinks[0])
        if taken and not any(report.delivered.values()):
            report.undelivered.append(DIGEST_ID)
            raise AlertDeliveryError(report)
        return report

    def _run_sink(self, sink: Sink, findings: list[Finding], report: DeliveryReport) -> None:
        """One sink's messages in order; each thread writes only its own sink's lists."""
        unavailable = ""
        for batch in sink.batches(findings):
            ids = tuple(f.id for f in batch)
            if unavailable:
                report.failures[sink.name].append(SinkFailure(ids, f"skipped: {unavailable}"))
                continue
            try:
                sink.deliver(batch)
            except Exception as exc:
                reason = sink.reason(exc)
                log.warning("sink %s: %d finding(s) not delivered: %s", sink.name, len(ids), reason)
                report.failures[sink.name].append(SinkFailure(ids, reason))
                if not _is_message_specific(exc):
                    unavailable = f"sink unavailable after earlier failure ({reason})"
                continue
            report.delivered[sink.name].extend(ids)

    def _claim(self, finding_id: str) -> bool:
        try:
            return self.store.claim(finding_id, self.window_s)
        except Exception as exc:  # a broken store must not swallow alerts: send anyway
            log.warning("dedup store claim failed (%s): alerting without dedup", type(exc).__name__)
            return True

    def _release(self, finding_id: str) -> None:
        try:
            self.store.release(finding_id)
        except Exception as exc:
            log.warning("dedup store release failed (%s)", type(exc).__name__)


def dedup_key(finding: Finding) -> str:
    """The claim a finding's alert takes: its id; a sweep's resolution of it, apart.

    A failed remediation claims apart too: the same drift put back before must not hide
    that this time it stayed.
    """
    if finding.sweep_status == "resolved":
        return f"resolved#{finding.id}"
    if finding.remediation.status == "failed":
        return f"{finding.id}#remediation-failed"
    return finding.id


def ended_key(finding: Finding) -> str:
    """The claim a delivered sweep finding ends.

    The drift's once it is resolved (so its return alerts again), the resolution's once
    it is back (so its next end alerts again).
    """
    return finding.id if finding.sweep_status == "resolved" else f"resolved#{finding.id}"


def _store_from_env(env: Mapping[str, str]) -> DedupStore:
    """The shared store TRUSTWATCH_STATE_TABLE / TRUSTWATCH_STATE_URL name, or memory.

    Without either, a per-process memory store (a warm function instance keeps it).
    """
    try:
        from trustwatch.stores import store_from_env
    except ImportError:  # pragma: no cover - the stores package ships with the functions
        return MemoryDedupStore()
    try:
        return store_from_env(env) or MemoryDedupStore()
    except ValueError as exc:
        raise AlertConfigError(str(exc)) from None


def _is_message_specific(exc: BaseException) -> bool:
    """True if `exc` concerns this message only, so the sink may go on.

    A 4xx about one message (e.g. too large) shouldn't stop the next message; a bad
    URL, missing secret or refused login would fail every message the same way.
    """
    return isinstance(exc, HTTPStatusError) and exc.status in (400, 413, 422)


def _build_sink(
    config: SinkConfigBase,
    env: Mapping[str, str],
    delivery: Delivery,
    default_severity: object,
    sleep: Callable[[float], None],
) -> Sink:
    _check_env_references(config, env)
    if isinstance(config, SlackConfig):
        cls: type[Sink] = SlackBotSink if config.token else SlackWebhookSink
    elif isinstance(config, EmailConfig | SesConfig):
        # imported here: smtplib and MIME cost a function's cold start milliseconds
        from trustwatch.alerts.mail import SesSink, SmtpSink

        cls = SmtpSink if isinstance(config, EmailConfig) else SesSink
    else:
        cls = _SINK_TYPES[type(config)]
    return cls(
        config,
        environ=env,
        delivery=delivery,
        default_severity=default_severity,  # type: ignore[arg-type]
        sleep=sleep,
    )


def _check_env_references(config: SinkConfigBase, env: Mapping[str, str]) -> None:
    """Fail at start-up, not at the first alert, when a referenced variable is missing."""
    name = config.name
    for field_name in model_fields(type(config)):
        ref = getattr(config, field_name)
        if isinstance(ref, SecretRef) and ref.env and not env.get(ref.env):
            raise AlertConfigError(
                f"sink {name!r}: environment variable {ref.env} ({field_name}) is not set"
            )
    if isinstance(config, EmailConfig | SesConfig):
        try:
            if not config.sender and len(addresses(env.get(ENV_EMAIL_FROM, ""))) != 1:
                raise ValueError(f"no `from:` and {ENV_EMAIL_FROM} is not one address")
            if not config.to and not addresses(env.get(ENV_EMAIL_TO, "")):
                raise ValueError(f"no `to:` and {ENV_EMAIL_TO} is not set")
        except ValueError as exc:
            raise AlertConfigError(f"sink {name!r}: {exc}") from None
