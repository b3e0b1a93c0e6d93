"""Sinks: where alerts go. One class per transport, all with the same small surface.

A sink turns findings into messages (`batches`: one per finding, or one per event for
email), sends each, retrying transient failures, and raises when a message could not be
delivered. Slack retries through slack-sdk's own retry handlers (`slackretry`) and SES
through botocore's standard mode; Teams, the generic webhook and SMTP go through stdlib
http.client (kept alive, `transport`) / smtplib, which retry nothing, so `with_retry`
(trustwatch.retry) does it there.
Secrets are resolved on first use, cached, and redacted from any error text; `repr` shows
the name and kind only. Client libraries are imported on first send.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from trustwatch.alerts import formats
from trustwatch.alerts.config import (
    Delivery,
    SinkConfigBase,
    SlackConfig,
    TeamsConfig,
    WebhookConfig,
)
from trustwatch.alerts.render import group_key, view
from trustwatch.alerts.secrets import SecretRef
from trustwatch.alerts.transport import HTTPStatusError, check_url, describe, post, transient
from trustwatch.findings import Finding, Severity
from trustwatch.retry import parse_retry_after, retry_call

if TYPE_CHECKING:
    from slack_sdk.http_retry import RetryHandler

    from trustwatch.alerts.digest import DigestView

log = logging.getLogger("trustwatch.alerts")
T = TypeVar("T")

# slack_sdk logs request URLs (a webhook URL is a secret) at DEBUG and errors we report
# ourselves: give its clients a logger that stays quiet whatever the root level.
_SDK_LOG = logging.getLogger("trustwatch.alerts.sdk")
_SDK_LOG.setLevel(logging.CRITICAL + 1)
_SDK_LOG.propagate = False

SIGNATURE_HEADER = "X-Trustwatch-Signature"
TIMESTAMP_HEADER = "X-Trustwatch-Timestamp"
DELIVERY_HEADER = "X-Trustwatch-Delivery"


class Sink(ABC):
    """One alert destination: routing, batching, delivery; secrets resolved lazily."""

    kind: ClassVar[str]

    def __init__(
        self,
        config: SinkConfigBase,
        *,
        environ: Mapping[str, str],
        delivery: Delivery,
        default_severity: Severity,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.name = config.name
        self.min_severity = config.min_severity or default_severity
        self._environ = environ
        self._delivery = delivery
        self._sleep = sleep
        self._secrets: dict[SecretRef, str] = {}

    def routes(self, finding: Finding) -> bool:
        """True if this sink takes `finding` (severity, cloud and rule filters)."""
        return self.config.routes(finding, self.min_severity)

    def batches(self, findings: Sequence[Finding]) -> list[list[Finding]]:
        """How findings become messages; default: one message per finding."""
        return [[f] for f in findings]

    @abstractmethod
    def deliver(self, batch: Sequence[Finding]) -> None:
        """Send one message (retrying transient errors); raise if it was not accepted."""

    def deliver_digest(self, digest: DigestView) -> bool:
        """Send a sweep's digest as one message; False if this kind of sink takes none."""
        return False

    # -- helpers for subclasses --

    def secret(self, ref: SecretRef) -> str:
        """The value of `ref`, read once per sink and cached."""
        if ref not in self._secrets:
            self._secrets[ref] = ref.resolve(self._environ)
        return self._secrets[ref]

    def redact(self, text: str) -> str:
        """`text` with every resolved secret (and a webhook URL's path) replaced by ***."""
        for value in self._secrets.values():
            if len(value) >= 6:
                text = text.replace(value, "***")
                path = value.split("://", 1)[-1].partition("/")[2]
                if len(path) >= 6:  # webhook URLs carry their token in the path
                    text = text.replace(path, "***")
        return text

    def reason(self, exc: BaseException) -> str:
        """Why `exc` failed a delivery, in one line without secrets."""
        return self.redact(describe(exc))

    def _log_retry(self, attempt: int, reason: str, delay: float) -> None:
        log.warning(
            "sink %s: attempt %d failed (%s); retrying in %.1fs", self.name, attempt, reason, delay
        )

    def slack_retry_handlers(self) -> list[RetryHandler]:
        """slack-sdk's retry handlers, bounded by this sink's delivery settings."""
        from trustwatch.alerts.slackretry import retry_handlers

        return retry_handlers(
            self._delivery,
            sleep=self._sleep,
            on_retry=lambda n, reason, delay: self._log_retry(n, self.redact(reason), delay),
        )

    def with_retry(self, fn: Callable[[], T]) -> T:
        """Call `fn` with the delivery settings' retries, for transports without their own."""
        d = self._delivery
        return retry_call(
            fn,
            attempts=d.attempts,
            base_delay=d.base_delay_s,
            max_delay=d.max_delay_s,
            retry_on=transient,
            sleep=self._sleep,
            on_retry=lambda n, exc, delay: self._log_retry(n, self.reason(exc), delay),
        )

    @property
    def timeout(self) -> float:
        """Seconds each request may take."""
        return self._delivery.timeout_s

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} min={self.min_severity.value}>"

    __str__ = __repr__


class SlackWebhookSink(Sink):
    """An incoming-webhook URL, posted to with slack-sdk's WebhookClient."""

    kind = "slack"
    config: SlackConfig

    def deliver(self, batch: Sequence[Finding]) -> None:
        """Post each finding; slack-sdk's retry handlers retry transient failures."""
        client = self._client()
        for finding in batch:
            self._post(client, formats.slack_message(view(finding)))

    def deliver_digest(self, digest: DigestView) -> bool:
        """Post the digest as one message."""
        self._post(self._client(), formats.slack_sweep_digest(digest))
        return True

    def _client(self) -> Any:
        from slack_sdk.webhook import WebhookClient

        url = self.secret(self.config.webhook_url)  # type: ignore[arg-type]
        check_url(url)
        return WebhookClient(
            url,
            timeout=self.timeout,  # type: ignore[arg-type]  # urllib takes a float
            retry_handlers=self.slack_retry_handlers(),
            logger=_SDK_LOG,
        )

    @staticmethod
    def _post(client: Any, message: dict[str, object]) -> None:
        # After the SDK's retries: the last answer, or the last connection error.
        response = client.send_dict(message)
        if response.status_code != 200:
            headers = {k.lower(): v for k, v in (response.headers or {}).items()}
            raise HTTPStatusError(
                response.status_code,
                parse_retry_after(_first(headers.get("retry-after"))),
                str(response.body)[:80],
            )


class SlackBotSink(Sink):
    """chat.postMessage with a bot token: a sweep's findings thread under one digest."""

    kind = "slack"
    config: SlackConfig

    def batches(self, findings: Sequence[Finding]) -> list[list[Finding]]:
        """A sweep's findings in one digest thread; every other finding on its own."""
        sweep = [f for f in findings if f.source == "sweep"]
        rest = [[f] for f in findings if f.source != "sweep"]
        return ([sweep] if len(sweep) > 1 else [[f] for f in sweep]) + rest

    def deliver(self, batch: Sequence[Finding]) -> None:
        """Post the digest (if any), then each finding in its thread."""
        client = self._client()
        thread_ts = None
        if len(batch) > 1:
            digest = formats.slack_digest([view(f) for f in batch], "trustwatch sweep")
            thread_ts = self._post(client, digest, None)
        for finding in batch:
            self._post(client, formats.slack_message(view(finding)), thread_ts)

    def deliver_digest(self, digest: DigestView) -> bool:
        """Post a sweep's digest to the channel."""
        self._post(self._client(), formats.slack_sweep_digest(digest), None)
        return True

    def _client(self) -> Any:
        from slack_sdk import WebClient

        return WebClient(
            token=self.secret(self.config.token),  # type: ignore[arg-type]
            base_url=self.config.api_url,
            timeout=int(max(1, self.timeout)),
            retry_handlers=self.slack_retry_handlers(),
            logger=_SDK_LOG,
        )

    def _post(self, client: object, message: dict[str, object], thread_ts: str | None) -> str:
        from slack_sdk.errors import SlackApiError

        try:  # the SDK's retry handlers have run when this returns or raises
            response = client.chat_postMessage(  # type: ignore[attr-defined]
                channel=self.config.channel, thread_ts=thread_ts, **message
            )
        except SlackApiError as err:
            status = err.response.status_code
            headers = {k.lower(): v for k, v in (err.response.headers or {}).items()}
            code = err.response.data.get("error", "") if isinstance(err.response.data, dict) else ""
            raise HTTPStatusError(
                status if status != 200 else 400,  # ok=false with 200: permanent
                parse_retry_after(_first(headers.get("retry-after"))),
                str(code)[:80],
            ) from None
        return str(response.get("ts", ""))


class TeamsSink(Sink):
    """A Teams workflow webhook: one Adaptive Card per finding."""

    kind = "teams"
    config: TeamsConfig

    def deliver(self, batch: Sequence[Finding]) -> None:
        """Post each finding's card, retried by `with_retry` (http.client retries nothing)."""
        url = self.secret(self.config.webhook_url)
        for finding in batch:
            body = json.dumps(formats.teams_message(view(finding))).encode()
            self.with_retry(functools.partial(post, url, body, {}, self.timeout))


class WebhookSink(Sink):
    """POST the finding JSON, signed.

    Receivers verify
    `X-Trustwatch-Signature: sha256=HMAC_SHA256(secret, timestamp + "." + body)`.
    """

    kind = "webhook"
    config: WebhookConfig

    def deliver(self, batch: Sequence[Finding]) -> None:
        """Post each finding's JSON, signed, retried by `with_retry`."""
        url = self.secret(self.config.url)
        key = self.secret(self.config.secret).encode()
        for finding in batch:
            body = formats.webhook_body(finding)
            headers = signature_headers(key, body, int(time.time()))
            headers[DELIVERY_HEADER] = str(uuid.uuid4())  # the same on every retry
            headers["X-Trustwatch-Finding-Id"] = finding.id[:128]
            self.with_retry(functools.partial(post, url, body, headers, self.timeout))


def signature_headers(key: bytes, body: bytes, timestamp: int) -> dict[str, str]:
    """The timestamp and HMAC-SHA256 signature headers for `body`.

    The signed string is `<timestamp>.<body>`: a captured request can't be replayed later
    with a fresh timestamp, and receivers reject old timestamps (5 minutes).
    """
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={digest}"}


def email_batches(findings: Sequence[Finding]) -> list[list[Finding]]:
    """One mail per event (several findings of one change), one digest per sweep."""
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(group_key(finding), []).append(finding)
    return list(groups.values())


def _first(value: object) -> str | None:
    if isinstance(value, list | tuple):
        return str(value[0]) if value else None
    return None if value is None else str(value)
