"""Email sinks: SMTP (STARTTLS or implicit TLS, AUTH) and Amazon SES.

One mail carries all findings of one event (or one sweep), as multipart/alternative
plain text + HTML.
"""

from __future__ import annotations

import smtplib
import ssl
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import field
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from trustwatch.alerts import formats
from trustwatch.alerts.config import (
    ENV_EMAIL_FROM,
    ENV_EMAIL_TO,
    ENV_SES_REGION,
    EmailConfig,
    SesConfig,
    addresses,
)
from trustwatch.alerts.render import view
from trustwatch.alerts.secrets import SecretError
from trustwatch.alerts.sinks import Sink, email_batches
from trustwatch.alerts.transport import HTTPStatusError
from trustwatch.findings import Finding
from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.alerts.digest import DigestView


@frozen
class SmtpTarget:
    """Where and how to reach an SMTP relay (parsed from its URL; secrets not in repr)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    cafile: str | None = None


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse an SMTP URL; errors never echo it (it holds the password).

    `smtp://user:pass@host:587` (STARTTLS required), `smtps://…:465` (implicit TLS),
    `?starttls=false` for plain local relays, `?cafile=/path` for a private CA.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP URL must look like smtp://user:pass@host:port or smtps://…")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "cafile"}
    if unknown:
        raise ValueError(f"SMTP URL: unknown option(s) {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "true").lower() not in ("false", "0", "no")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP URL: the port is not a number") from None
    implicit = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls=starttls and not implicit,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        cafile=query.get("cafile"),
    )


class _MailSink(Sink):
    config: EmailConfig | SesConfig

    def batches(self, findings: Sequence[Finding]) -> list[list[Finding]]:
        return email_batches(findings)

    def deliver(self, batch: Sequence[Finding]) -> None:
        """One mail per batch (an event's findings, or a sweep's)."""
        sender, to = self.envelope()
        self.send_mail(formats.email_message([view(f) for f in batch], sender, to))

    def deliver_digest(self, digest: DigestView) -> bool:
        """A sweep's digest as one mail."""
        sender, to = self.envelope()
        self.send_mail(formats.digest_email(digest, sender, to))
        return True

    @abstractmethod
    def send_mail(self, message: EmailMessage) -> None:
        """Send one mail; raise if it was not accepted."""

    def envelope(self) -> tuple[str, list[str]]:
        sender = self.config.sender or self._environ.get(ENV_EMAIL_FROM, "").strip()
        to = self.config.to or addresses(self._environ.get(ENV_EMAIL_TO, ""))
        if not sender or not to:
            raise SecretError(f"sink {self.name}: set from/to or {ENV_EMAIL_FROM}/{ENV_EMAIL_TO}")
        return sender, to


class SmtpSink(_MailSink):
    """Mail over SMTP, STARTTLS or implicit TLS, with AUTH when the URL has a user."""

    kind = "email"
    config: EmailConfig

    def send_mail(self, message: EmailMessage) -> None:
        """One mail, retried on SMTP 4xx and dropped connections."""
        target = parse_smtp_url(self.secret(self.config.smtp_url))
        self.with_retry(lambda: self._send(target, message))

    def _send(self, target: SmtpTarget, message: object) -> None:
        context = ssl.create_default_context(cafile=target.cafile)
        smtp: smtplib.SMTP
        if target.implicit_tls:
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if target.starttls:
                # No downgrade: a relay that doesn't offer STARTTLS fails here, loudly.
                smtp.starttls(context=context)
                smtp.ehlo()
            if target.username:
                smtp.login(target.username, target.password)
            smtp.send_message(message)  # type: ignore[arg-type]


class SesSink(_MailSink):
    """SES v2 SendEmail: raw MIME, the same mail as SMTP.

    Retried by botocore's `standard` retry mode (throttling, 5xx, connection errors;
    backoff with jitter) up to the delivery `attempts`
    (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
    A retried send after a lost answer may mail twice: better than none.
    """

    kind = "ses"
    config: SesConfig

    def send_mail(self, message: EmailMessage) -> None:
        """One raw mail; raises HTTPStatusError / TimeoutError if not accepted."""
        import boto3
        from botocore.config import Config

        sender, to = self.envelope()
        region = self.config.region or self._environ.get(ENV_SES_REGION) or None
        client = boto3.client(
            "sesv2",
            region_name=region,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": self._delivery.attempts},
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
            ),
        )
        extra = (
            {"ConfigurationSetName": self.config.configuration_set}
            if self.config.configuration_set
            else {}
        )
        raw = message.as_bytes()
        _ses_send(client, sender, to, raw, extra)


def _ses_send(
    client: object, sender: str, to: list[str], raw: bytes, extra: dict[str, str]
) -> None:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    try:
        client.send_email(  # type: ignore[attr-defined]
            FromEmailAddress=sender,
            Destination={"ToAddresses": to},
            Content={"Raw": {"Data": raw}},
            **extra,
        )
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if code in ("Throttling", "TooManyRequestsException"):
            status = 429
        raise HTTPStatusError(status, None, code) from None
    except (ConnectionError, HTTPClientError) as err:
        # botocore's connection and read timeouts: the same class of failure as a socket's.
        raise TimeoutError(type(err).__name__) from None
