"""Alerts delivered for real to receivers on loopback: what `trustwatch demo` shows.

The findings go through the same Dispatcher, sinks and formats as in production; only the
endpoints are local (a recording HTTP server for Slack / Teams / the webhook, aiosmtpd for
mail), so the demo shows exactly the messages a deployment would send.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TextIO

from trustwatch.alerts.dispatch import AlertDeliveryError, DeliveryReport, Dispatcher
from trustwatch.alerts.receivers import (
    RecordedRequest,
    RecordingHTTPServer,
    RecordingSMTPServer,
    Reply,
)
from trustwatch.findings import Finding

DEMO_SIGNING_KEY = "demo-signing-key-not-a-secret"


@dataclass
class LocalDelivery:
    """Where a local run's alerts go."""

    report: DeliveryReport
    slack: list[dict[str, Any]] = field(default_factory=list)  # Block Kit payloads as posted
    teams: list[dict[str, Any]] = field(default_factory=list)  # Adaptive Card messages
    webhook: list[RecordedRequest] = field(default_factory=list)  # signed finding JSON
    emails: list[EmailMessage] = field(default_factory=list)


def deliver_locally(findings: Sequence[Finding], *, min_severity: str = "info") -> LocalDelivery:
    """Send `findings` through all four sink kinds to local receivers; return what arrived.

    A failed delivery does not raise here: `report.undelivered` says so.
    """
    with (
        RecordingHTTPServer() as slack,
        RecordingHTTPServer(Reply(202, b"")) as teams,
        RecordingHTTPServer(Reply(204, b"")) as hook,
        RecordingSMTPServer() as smtp,
    ):
        env = {
            "TRUSTWATCH_SLACK_WEBHOOK_URL": f"{slack.url}/services/T0DEMO/B0DEMO/demo",
            "TRUSTWATCH_TEAMS_WEBHOOK_URL": f"{teams.url}/workflows/demo",
            "TRUSTWATCH_WEBHOOK_URL": f"{hook.url}/trustwatch",
            "TRUSTWATCH_WEBHOOK_SECRET": DEMO_SIGNING_KEY,
            "TRUSTWATCH_SMTP_URL": smtp.url,
            "TRUSTWATCH_EMAIL_FROM": "trustwatch@example.com",
            "TRUSTWATCH_EMAIL_TO": "secops@example.com",
            "TRUSTWATCH_MIN_SEVERITY": min_severity,
            "TRUSTWATCH_ALERT_TIMEOUT": "5",
        }
        try:
            report = Dispatcher.from_env(env).send(findings)
        except AlertDeliveryError as exc:  # the caller shows the report either way
            report = exc.report
        return LocalDelivery(
            report=report,
            slack=[r.json() for r in slack.requests],
            teams=[r.json() for r in teams.requests],
            webhook=list(hook.requests),
            emails=[m.message for m in smtp.messages],
        )


def write_preview(delivery: LocalDelivery, out: TextIO) -> None:
    """The first Slack message and the first email, as a human reads the demo."""
    out.write(f"Alerts: {delivery.report.summary()}\n")
    if delivery.slack:
        out.write("\n--- Slack message (Block Kit, as posted) ---\n")
        out.write(json.dumps(delivery.slack[0], indent=2, ensure_ascii=False) + "\n")
    if delivery.emails:
        mail = delivery.emails[0]
        out.write("\n--- Email (headers and the plain-text part; an HTML part comes with it) ---\n")
        for name in ("From", "To", "Subject"):
            out.write(f"{name}: {mail[name]}\n")
        body = mail.get_body(("plain",))
        out.write("\n" + (body.get_content() if body else "") + "\n")
