"""Delivery on loopback: real Slack / Teams / webhook posts to a recording HTTP server,
real mail to aiosmtpd; fault injection; dedup; nothing lost, no secret leaked."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from alerts_support import (
    HOSTILE,
    assert_slack_inert,
    aws_trust_finding,
    azure_owner_finding,
    gcp_bucket_finding,
    hostile_finding,
)
from trustwatch.alerts import AlertDeliveryError, Dispatcher
from trustwatch.alerts.receivers import (
    RecordingHTTPServer,
    RecordingSMTPServer,
    Reply,
    closed_port,
)
from trustwatch.dedup import MemoryDedupStore

SLACK_TOKEN_PATH = "/services/T000/B000/slackpathsecret123"
SIGNING_KEY = "whsec-test-signing-key-0123456789"


@pytest.fixture
def slack() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def teams() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(Reply(202, b"")) as server:
        yield server


@pytest.fixture
def hook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(Reply(204, b"")) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def env_for(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
    **extra: str,
) -> dict[str, str]:
    return {
        "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url + SLACK_TOKEN_PATH,
        "TRUSTWATCH_TEAMS_WEBHOOK_URL": teams.url + "/workflows/teams",
        "TRUSTWATCH_WEBHOOK_URL": hook.url + "/trustwatch",
        "TRUSTWATCH_WEBHOOK_SECRET": SIGNING_KEY,
        "TRUSTWATCH_SMTP_URL": smtp.url,
        "TRUSTWATCH_EMAIL_FROM": "trustwatch@example.com",
        "TRUSTWATCH_EMAIL_TO": "secops@example.com, oncall@example.com",
        "TRUSTWATCH_ALERT_TIMEOUT": "2",
        **extra,
    }


@pytest.fixture
def dispatcher(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
    sleeps: list[float],
) -> Dispatcher:
    return Dispatcher.from_env(env_for(slack, teams, hook, smtp), sleep=sleeps.append)


def verify_signature(headers: dict[str, str], body: bytes, key: str) -> bool:
    """What a receiver does (the snippet in docs/alerts.md)."""
    timestamp = headers["X-Trustwatch-Timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False
    expected = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), headers["X-Trustwatch-Signature"])


# --- the happy path ---------------------------------------------------------------------


def test_a_finding_reaches_all_four_sinks_in_their_formats(
    dispatcher: Dispatcher,
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    finding = aws_trust_finding()
    report = dispatcher.send([finding])
    assert dispatcher.sinks == ["slack", "teams", "webhook", "email"]
    assert report.delivered == {s: [finding.id] for s in dispatcher.sinks}
    assert report.ok and not report.undelivered and not report.duplicates

    (slack_post,) = slack.requests
    assert slack_post.path == SLACK_TOKEN_PATH
    assert "slackclient" in slack_post.headers["User-Agent"]  # sent by slack-sdk
    payload = slack_post.json()
    assert [b["type"] for b in payload["blocks"]] == [
        "header", "section", "section", "section", "context"
    ]  # fmt: skip
    assert "External principal may assume" in payload["blocks"][0]["text"]["text"]

    (teams_post,) = teams.requests
    card = teams_post.json()["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["actions"][0]["url"].startswith("https://console.aws.amazon.com/iam/home#")

    (hook_post,) = hook.requests
    assert hook_post.headers["Content-Type"] == "application/json"
    assert verify_signature(hook_post.headers, hook_post.body, SIGNING_KEY)
    assert not verify_signature(hook_post.headers, hook_post.body + b" ", SIGNING_KEY)
    assert hook_post.json() == finding.model_dump(mode="json")
    assert hook_post.headers["X-Trustwatch-Finding-Id"] == finding.id

    (mail,) = smtp.messages
    assert mail.mail_from == "trustwatch@example.com"
    assert mail.rcpt_tos == ["secops@example.com", "oncall@example.com"]
    msg = mail.message
    assert msg["Subject"].startswith("[trustwatch] CRITICAL: ")
    assert msg["To"] == "secops@example.com, oncall@example.com"
    assert "assumed-role/dev/alice" in msg.get_body(("plain",)).get_content()
    assert "<table>" in msg.get_body(("html",)).get_content()


def test_findings_of_one_event_share_one_mail_but_post_one_message_each(
    dispatcher: Dispatcher, slack: RecordingHTTPServer, smtp: RecordingSMTPServer
) -> None:
    same_event = aws_trust_finding(id="e" * 64, rule="aws.trust.principal_added")
    dispatcher.send([aws_trust_finding(), same_event, gcp_bucket_finding()])
    assert len(slack.requests) == 3
    subjects = sorted(m.message["Subject"] for m in smtp.messages)
    assert len(subjects) == 2 and subjects[0].startswith("[trustwatch] 2 findings")


# --- routing ----------------------------------------------------------------------------


def test_findings_below_every_threshold_are_reported_not_sent(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    env = env_for(slack, teams, hook, smtp, TRUSTWATCH_MIN_SEVERITY="high")
    low = aws_trust_finding(severity="medium")
    report = Dispatcher.from_env(env).send([low])
    assert report.below_threshold == [low.id] and report.ok
    assert not slack.requests and not smtp.messages


def test_routing_file_sets_per_sink_severities_and_filters(
    tmp_path: Any,
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        """
version: 1
defaults: {min_severity: high}
sinks:
  - {name: aws-slack, type: slack, clouds: [aws]}
  - {name: storage-mail, type: email, rules: ["gcp.bucket.*"], min_severity: low,
     from: alerts@example.com, to: [storage-team@example.com]}
"""
    )
    env = env_for(slack, teams, hook, smtp)
    d = Dispatcher.from_env(env, routing_file=str(routing))
    assert d.sinks == ["aws-slack", "storage-mail"]  # the file decides which sinks exist
    aws, azure = aws_trust_finding(), azure_owner_finding()
    gcp_low = gcp_bucket_finding(severity="low")
    report = d.send([aws, azure, gcp_low])
    assert report.delivered == {"aws-slack": [aws.id], "storage-mail": [gcp_low.id]}
    assert report.below_threshold == [azure.id]
    assert [m.rcpt_tos for m in smtp.messages] == [["storage-team@example.com"]]
    assert not teams.requests and not hook.requests


# --- dedup ------------------------------------------------------------------------------


def test_the_same_finding_alerts_once_per_window(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    d = Dispatcher.from_env(env_for(slack, teams, hook, smtp), store=MemoryDedupStore())
    finding = aws_trust_finding()
    d.send([finding, finding])  # twice in one call, too
    again = d.send([finding])
    assert again.duplicates == [finding.id] and not any(again.delivered.values())
    assert len(slack.requests) == 1 and len(smtp.messages) == 1


def test_window_comes_from_the_environment(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    env = env_for(slack, teams, hook, smtp, TRUSTWATCH_DEDUP_WINDOW="0")
    d = Dispatcher.from_env(env)
    assert d.window_s == 0
    d.send([aws_trust_finding()])
    d.send([aws_trust_finding()])
    assert len(slack.requests) == 2  # window 0: dedup off


def test_a_failed_delivery_is_released_and_alerts_on_the_next_attempt(
    tmp_path: Any, slack: RecordingHTTPServer
) -> None:
    from trustwatch.dedup import SqliteDedupStore

    store = SqliteDedupStore(tmp_path / "dedup.sqlite")
    env = {
        "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url + SLACK_TOKEN_PATH,
        "TRUSTWATCH_ALERT_ATTEMPTS": "2",
    }
    d = Dispatcher.from_env(env, store=store, sleep=lambda s: None)
    finding = aws_trust_finding()
    slack.reply(Reply(503), Reply(503))
    with pytest.raises(AlertDeliveryError) as caught:
        d.send([finding])
    assert caught.value.report.undelivered == [finding.id]
    report = d.send([finding])  # the platform's retry
    assert report.delivered["slack"] == [finding.id]
    assert len(slack.requests) == 3


# --- fault injection --------------------------------------------------------------------


def test_500_is_retried_with_backoff_then_delivered(
    dispatcher: Dispatcher, slack: RecordingHTTPServer, sleeps: list[float]
) -> None:
    slack.reply(Reply(500, b"internal_error"))
    report = dispatcher.send([aws_trust_finding()])
    assert report.delivered["slack"] and len(slack.requests) == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5  # full jitter of base 0.5 s


def test_429_retry_after_is_honoured(
    dispatcher: Dispatcher, teams: RecordingHTTPServer, sleeps: list[float]
) -> None:
    teams.reply(Reply(429, b"", {"Retry-After": "1"}))
    report = dispatcher.send([aws_trust_finding()])
    assert report.delivered["teams"] and len(teams.requests) == 2
    assert sleeps == [1.0] or max(sleeps) >= 1.0


def test_slack_429_retry_after_is_honoured(
    dispatcher: Dispatcher, slack: RecordingHTTPServer, sleeps: list[float]
) -> None:
    slack.reply(Reply(429, b"rate_limited", {"Retry-After": "1"}))
    assert dispatcher.send([aws_trust_finding()]).delivered["slack"]
    assert max(sleeps) >= 1.0


def test_a_real_retry_after_wait_is_short(slack: RecordingHTTPServer) -> None:
    """One test with the real clock: Retry-After 1 s waits about a second, no more."""
    env = {"TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url + SLACK_TOKEN_PATH}
    slack.reply(Reply(429, b"", {"Retry-After": "1"}))
    started = time.monotonic()
    assert Dispatcher.from_env(env).send([aws_trust_finding()]).delivered["slack"]
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("status", [400, 403, 404])
def test_permanent_http_errors_are_not_retried(
    dispatcher: Dispatcher, hook: RecordingHTTPServer, sleeps: list[float], status: int
) -> None:
    hook.reply(Reply(status, b"nope"))
    report = dispatcher.send([aws_trust_finding()])
    assert len(hook.requests) == 1 and not sleeps
    assert report.failures["webhook"][0].reason.startswith(f"HTTP {status}")
    assert report.ok  # the other sinks accepted it


def test_a_hanging_sink_times_out_and_does_not_block_the_others(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    env = env_for(
        slack, teams, hook, smtp, TRUSTWATCH_ALERT_TIMEOUT="0.3", TRUSTWATCH_ALERT_ATTEMPTS="2"
    )
    hook.default = Reply(204, b"", delay=30)  # never answers in time
    d = Dispatcher.from_env(env, sleep=lambda s: None)
    findings = [aws_trust_finding(), gcp_bucket_finding()]
    started = time.monotonic()
    report = d.send(findings)
    assert time.monotonic() - started < 5
    assert report.ok and len(report.delivered["slack"]) == 2 and len(smtp.messages) == 2
    first, skipped = report.failures["webhook"]
    assert "timed out" in first.reason or "Timeout" in first.reason
    assert skipped.reason.startswith("skipped: sink unavailable")
    assert len(hook.requests) == 2  # two attempts for the first finding, none for the second


def test_connection_refused_fails_that_sink_only(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
    sleeps: list[float],
) -> None:
    env = env_for(slack, teams, hook, smtp)
    env["TRUSTWATCH_TEAMS_WEBHOOK_URL"] = f"http://127.0.0.1:{closed_port()}/teams"
    report = Dispatcher.from_env(env, sleep=sleeps.append).send([aws_trust_finding()])
    assert report.ok and report.delivered["slack"] and report.delivered["email"]
    assert "ConnectionRefusedError" in report.failures["teams"][0].reason
    assert len(sleeps) == 2  # three attempts


def test_total_failure_raises_with_the_report_and_releases_claims(
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    env = env_for(slack, teams, hook, smtp, TRUSTWATCH_SMTP_URL=f"smtp://127.0.0.1:{closed_port()}")
    env.update(
        TRUSTWATCH_SLACK_WEBHOOK_URL=dead + SLACK_TOKEN_PATH,
        TRUSTWATCH_TEAMS_WEBHOOK_URL=dead + "/teams",
        TRUSTWATCH_WEBHOOK_URL=dead + "/hook",
        TRUSTWATCH_ALERT_ATTEMPTS="1",
    )
    store = MemoryDedupStore()
    d = Dispatcher.from_env(env, store=store)
    critical, info = aws_trust_finding(), azure_owner_finding(severity="info")
    with pytest.raises(AlertDeliveryError) as caught:
        d.send([critical, info])
    report = caught.value.report
    assert report.undelivered == [critical.id] and report.below_threshold == [info.id]
    assert set(report.failures) == {"slack", "teams", "webhook", "email"}
    assert all(report.failures[s] for s in report.failures)
    assert "1 finding(s) reached no alert sink" in str(caught.value)
    assert store.claim(critical.id, 3600)  # released: the retry will alert


def test_smtp_4xx_is_retried_and_5xx_is_not(
    dispatcher: Dispatcher, smtp: RecordingSMTPServer, sleeps: list[float]
) -> None:
    smtp.data_replies.append("451 4.3.0 try again later")
    assert dispatcher.send([aws_trust_finding()]).delivered["email"]
    assert len(smtp.messages) == 1 and len(sleeps) == 1
    smtp.data_replies.append("554 5.7.1 rejected")
    report = dispatcher.send([gcp_bucket_finding()])
    assert report.failures["email"][0].reason.startswith("SMTP 554")
    assert len(smtp.messages) == 1 and len(sleeps) == 1


# --- secrets stay secret ----------------------------------------------------------------


def test_no_secret_in_reports_logs_or_reprs(
    caplog: pytest.LogCaptureFixture,
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{closed_port()}"
    env = env_for(slack, teams, hook, smtp, TRUSTWATCH_ALERT_ATTEMPTS="2")
    env["TRUSTWATCH_SLACK_WEBHOOK_URL"] = dead + SLACK_TOKEN_PATH
    env["TRUSTWATCH_SMTP_URL"] = "smtp://mailer:pa55w0rd-secret@127.0.0.1:1?starttls=false"
    env["TRUSTWATCH_WEBHOOK_URL"] = "http://example.com/hook?token=url-secret-token"  # not https
    d = Dispatcher.from_env(env, sleep=lambda s: None)
    report = d.send([aws_trust_finding()])  # Teams accepts it
    visible = "\n".join([caplog.text, repr(report), str(report.to_dict()), repr(d), str(d._sinks)])
    for secret in (
        "slackpathsecret123", "pa55w0rd-secret", "url-secret-token", SIGNING_KEY,
        "services/T000",
    ):  # fmt: skip
        assert secret not in visible
    assert "https://" in report.failures["webhook"][0].reason  # says why, not what


def test_webhook_urls_must_be_https_except_loopback(
    slack: RecordingHTTPServer, sleeps: list[float]
) -> None:
    env = {"TRUSTWATCH_SLACK_WEBHOOK_URL": "http://hooks.example.com/services/x"}
    with pytest.raises(AlertDeliveryError) as caught:
        Dispatcher.from_env(env, sleep=sleeps.append).send([aws_trust_finding()])
    assert "must be https" in caught.value.report.failures["slack"][0].reason
    assert not sleeps  # a configuration error is not retried


def test_hostile_event_strings_arrive_inert_in_every_sink(
    dispatcher: Dispatcher,
    slack: RecordingHTTPServer,
    teams: RecordingHTTPServer,
    hook: RecordingHTTPServer,
    smtp: RecordingSMTPServer,
) -> None:
    findings = [hostile_finding(text) for text in HOSTILE]
    report = dispatcher.send(findings)
    assert all(len(ids) == len(HOSTILE) for ids in report.delivered.values())
    for request in slack.requests:
        assert_slack_inert(request.json())
    for request in teams.requests:
        card = json.dumps(request.json()["attachments"][0]["content"])
        assert '"type": "TextBlock"' not in card and '"type": "FactSet"' not in card
    for request, finding in zip(hook.requests, findings, strict=True):
        assert request.json() == finding.model_dump(mode="json")
        assert verify_signature(request.headers, request.body, SIGNING_KEY)
    for mail in smtp.messages:
        msg = mail.message
        assert msg["Bcc"] is None and "\n" not in msg["Subject"]
        html_part = msg.get_body(("html",)).get_content()
        assert "<script>" not in html_part and "<img" not in html_part
        assert mail.rcpt_tos == ["secops@example.com", "oncall@example.com"]


def test_slack_retries_every_transient_status_within_the_attempts(
    dispatcher: Dispatcher, slack: RecordingHTTPServer, sleeps: list[float]
) -> None:
    # slack-sdk's own server-error handler knows 500 and 503 only; ours adds 502/504/408.
    slack.reply(Reply(502), Reply(504), Reply(408))
    report = dispatcher.send([aws_trust_finding()])  # the other sinks accept it
    assert len(slack.requests) == 3 and len(sleeps) == 2  # three tries in all
    assert not report.delivered["slack"]
    assert report.failures["slack"][0].reason.startswith("HTTP 408")
