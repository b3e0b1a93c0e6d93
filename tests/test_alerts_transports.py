"""The transports on loopback: SMTP with STARTTLS / implicit TLS / AUTH, SES and the
AWS secret stores on a moto server, GCP Secret Manager's REST call, the Slack bot."""

from __future__ import annotations

import base64
import json
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError

import pytest
from alerts_support import aws_trust_finding, azure_owner_finding, gcp_bucket_finding
from trustwatch.alerts import AlertDeliveryError, Dispatcher
from trustwatch.alerts.mail import parse_smtp_url
from trustwatch.alerts.receivers import (
    RecordingHTTPServer,
    RecordingSMTPServer,
    Reply,
    self_signed_tls,
)
from trustwatch.alerts.secrets import _gcp_secret
from trustwatch.alerts.transport import HTTPStatusError, transient

MAIL_ENV = {
    "TRUSTWATCH_EMAIL_FROM": "trustwatch@example.com",
    "TRUSTWATCH_EMAIL_TO": "sec@example.com",
}


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[object, str]]:
    context, cafile, cleanup = self_signed_tls("localhost")
    yield context, cafile
    cleanup()


# --- SMTP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://u:p%40ss@mail.example.com", ("mail.example.com", 587, False, True, "u", "p@ss")),
        ("smtps://mail.example.com", ("mail.example.com", 465, True, False, "", "")),
        ("smtp://127.0.0.1:2525?starttls=false", ("127.0.0.1", 2525, False, False, "", "")),
    ],
)
def test_parse_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    t = parse_smtp_url(url)
    assert (t.host, t.port, t.implicit_tls, t.starttls, t.username, t.password) == expected
    assert "p@ss" not in repr(t)


@pytest.mark.parametrize(
    "url", ["http://x", "smtp://", "smtp://h:port", "smtp://h?tls=1", "smtps://u:secret@:1"]
)
def test_bad_smtp_urls_are_rejected_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_smtp_url(url)
    assert "secret" not in str(caught.value)


def test_starttls_with_auth(tls: tuple[object, str]) -> None:
    context, cafile = tls
    with RecordingSMTPServer(tls_context=context, credentials=("mailer", "s3cret")) as smtp:
        env = {**MAIL_ENV, "TRUSTWATCH_SMTP_URL": f"{smtp.url}?cafile={cafile}"}
        report = Dispatcher.from_env(env).send([aws_trust_finding()])
        assert report.delivered["email"] and smtp.logins == ["mailer"]
        (mail,) = smtp.messages
        assert mail.message["Subject"].startswith("[trustwatch] CRITICAL")


def test_implicit_tls(tls: tuple[object, str]) -> None:
    context, cafile = tls
    with RecordingSMTPServer(tls_context=context, implicit_tls=True) as smtp:
        env = {**MAIL_ENV, "TRUSTWATCH_SMTP_URL": f"{smtp.url}?cafile={cafile}"}
        assert Dispatcher.from_env(env).send([aws_trust_finding()]).delivered["email"]
        assert len(smtp.messages) == 1


def test_untrusted_certificate_fails(tls: tuple[object, str]) -> None:
    context, _ = tls
    with RecordingSMTPServer(tls_context=context) as smtp:
        env = {**MAIL_ENV, "TRUSTWATCH_SMTP_URL": smtp.url, "TRUSTWATCH_ALERT_ATTEMPTS": "1"}
        with pytest.raises(AlertDeliveryError) as caught:
            Dispatcher.from_env(env).send([aws_trust_finding()])
        assert "SSLCertVerificationError" in caught.value.report.failures["email"][0].reason
        assert not smtp.messages


def test_starttls_is_never_downgraded() -> None:
    with RecordingSMTPServer() as smtp:  # offers no STARTTLS
        url = smtp.url.removesuffix("?starttls=false")
        env = {**MAIL_ENV, "TRUSTWATCH_SMTP_URL": url}
        with pytest.raises(AlertDeliveryError) as caught:
            Dispatcher.from_env(env, sleep=lambda s: None).send([aws_trust_finding()])
        assert "STARTTLS" in caught.value.report.failures["email"][0].reason
        assert not smtp.messages


def test_wrong_password_is_permanent(tls: tuple[object, str]) -> None:
    context, cafile = tls
    slept: list[float] = []
    with RecordingSMTPServer(tls_context=context, credentials=("mailer", "right")) as smtp:
        url = smtp.url.replace(":right@", ":wrong-pw@") + f"?cafile={cafile}"
        env = {**MAIL_ENV, "TRUSTWATCH_SMTP_URL": url}
        with pytest.raises(AlertDeliveryError) as caught:
            Dispatcher.from_env(env, sleep=slept.append).send([aws_trust_finding()])
        reason = caught.value.report.failures["email"][0].reason
        assert reason.startswith("SMTP 535") and "wrong-pw" not in reason
        assert not slept


# --- AWS on moto: SES, Secrets Manager, SSM -----------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_url


def test_ses_sends_the_same_mail(aws: str) -> None:
    import boto3
    from moto.ses.models import ses_backends

    boto3.client("ses", region_name="us-east-1").verify_email_identity(
        EmailAddress="trustwatch@example.com"
    )
    env = {**MAIL_ENV, "TRUSTWATCH_SES_REGION": "us-east-1"}
    d = Dispatcher.from_env(env)
    report = d.send([aws_trust_finding(), gcp_bucket_finding()])
    assert report.delivered["email"] == [aws_trust_finding().id, gcp_bucket_finding().id]
    sent = ses_backends["123456789012"]["us-east-1"].sent_messages[-2:]
    assert [set(m.destinations) for m in sent] == [{"sec@example.com"}] * 2
    assert "Subject: [trustwatch] CRITICAL: External principal" in sent[0].raw_data
    assert "multipart/alternative" in sent[0].raw_data


def test_ses_rejection_is_reported(aws: str) -> None:
    env = {
        **MAIL_ENV,
        "TRUSTWATCH_SES_REGION": "us-east-1",
        "TRUSTWATCH_EMAIL_FROM": "x@unverified.example",
    }
    with pytest.raises(AlertDeliveryError) as caught:
        Dispatcher.from_env(env).send([aws_trust_finding()])
    assert "MessageRejected" in caught.value.report.failures["email"][0].reason


def test_secrets_from_secrets_manager_and_ssm(aws: str, tmp_path: Path) -> None:
    import boto3

    with RecordingHTTPServer() as slack, RecordingHTTPServer(Reply(202, b"")) as teams:
        boto3.client("secretsmanager").create_secret(
            Name="trustwatch/slack", SecretString=json.dumps({"webhook_url": slack.url + "/s"})
        )
        boto3.client("ssm").put_parameter(
            Name="/trustwatch/teams", Value=teams.url + "/t", Type="SecureString"
        )
        routing = tmp_path / "routing.yaml"
        routing.write_text(
            "sinks:\n"
            "  - {name: slack, type: slack, webhook_url: {aws_secret: trustwatch/slack, key: webhook_url}}\n"
            "  - {name: teams, type: teams}\n"
        )
        # The Teams URL is an environment variable holding a reference, as in a Lambda.
        env = {"TRUSTWATCH_TEAMS_WEBHOOK_URL": "ssm:/trustwatch/teams"}
        report = Dispatcher.from_env(env, routing_file=str(routing)).send([aws_trust_finding()])
        assert report.delivered == {
            "slack": [aws_trust_finding().id],
            "teams": [aws_trust_finding().id],
        }
        assert slack.requests[0].path == "/s" and teams.requests[0].path == "/t"


def test_a_missing_aws_secret_fails_the_sink_without_leaking(aws: str) -> None:
    env = {"TRUSTWATCH_SLACK_WEBHOOK_URL": "aws-secret:does/not/exist"}
    with pytest.raises(AlertDeliveryError) as caught:
        Dispatcher.from_env(env).send([aws_trust_finding()])
    reason = caught.value.report.failures["slack"][0].reason
    assert "aws_secret does/not/exist" in reason


# --- GCP Secret Manager (REST) ------------------------------------------------------------


def test_gcp_secret_is_read_over_rest() -> None:
    from google.auth.credentials import AnonymousCredentials

    payload = base64.b64encode(b"https://hooks.slack.com/services/T/B/x").decode()
    body = json.dumps({"name": "n", "payload": {"data": payload}}).encode()
    with RecordingHTTPServer(Reply(200, body, {"Content-Type": "application/json"})) as gsm:
        value = _gcp_secret(
            "projects/p/secrets/slack", endpoint=gsm.url + "/v1", credentials=AnonymousCredentials()
        )
        assert value == "https://hooks.slack.com/services/T/B/x"
        assert gsm.requests[0].path == "/v1/projects/p/secrets/slack/versions/latest:access"
        assert gsm.requests[0].method == "GET"


# --- Slack bot: chat.postMessage, sweep digests thread ------------------------------------


def bot_routing(tmp_path: Path, api: RecordingHTTPServer) -> str:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "sinks: [{name: slack, type: slack, token: {env: TRUSTWATCH_SLACK_BOT_TOKEN},"
        f" channel: C1, api_url: '{api.url}/api/'}}]\n"
    )
    return str(path)


def test_slack_bot_threads_a_sweep_digest(tmp_path: Path) -> None:
    answer = json.dumps({"ok": True, "channel": "C1", "ts": "1700000000.000100"}).encode()
    with RecordingHTTPServer(Reply(200, answer, {"Content-Type": "application/json"})) as api:
        env = {"TRUSTWATCH_SLACK_BOT_TOKEN": "xoxb-test-token"}
        sweep = [
            aws_trust_finding(source="sweep"),
            azure_owner_finding(source="sweep"),
            gcp_bucket_finding(source="sweep"),
        ]
        d = Dispatcher.from_env(env, routing_file=bot_routing(tmp_path, api))
        report = d.send([*sweep, aws_trust_finding(id="a" * 64)])
        assert len(report.delivered["slack"]) == 4
        posts = [r.json() for r in api.requests]
        assert all(r.path == "/api/chat.postMessage" for r in api.requests)
        assert api.requests[0].headers["Authorization"] == "Bearer xoxb-test-token"
        digest, *replies, single = posts
        assert digest["blocks"][0]["text"]["text"] == "trustwatch sweep: 3 critical"
        assert "thread_ts" not in digest or digest["thread_ts"] is None
        assert [r["thread_ts"] for r in replies] == ["1700000000.000100"] * 3
        assert single.get("thread_ts") is None and single["channel"] == "C1"


def test_slack_bot_rate_limit_and_errors(tmp_path: Path) -> None:
    ok = json.dumps({"ok": True, "ts": "1.2"}).encode()
    with RecordingHTTPServer(Reply(200, ok, {"Content-Type": "application/json"})) as api:
        api.reply(
            Reply(
                429,
                b'{"ok": false, "error": "ratelimited"}',
                {"Retry-After": "1", "Content-Type": "application/json"},
            )
        )
        env = {"TRUSTWATCH_SLACK_BOT_TOKEN": "xoxb-t"}
        slept: list[float] = []
        d = Dispatcher.from_env(env, routing_file=bot_routing(tmp_path, api), sleep=slept.append)
        assert d.send([aws_trust_finding()]).delivered["slack"]
        assert max(slept) >= 1.0 and len(api.requests) == 2
        api.reply(
            Reply(
                200,
                b'{"ok": false, "error": "channel_not_found"}',
                {"Content-Type": "application/json"},
            )
        )
        with pytest.raises(AlertDeliveryError) as caught:
            d.send([gcp_bucket_finding()])
        assert "channel_not_found" in caught.value.report.failures["slack"][0].reason
        assert "xoxb-t" not in str(caught.value.report.to_dict())


# --- the retry policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "decision"),
    [
        (HTTPStatusError(429, 1.0), 1.0),
        (HTTPStatusError(503), True),
        (HTTPStatusError(404), None),
        (URLError(ConnectionRefusedError(111, "refused")), True),
        (URLError(ssl.SSLCertVerificationError("bad cert")), None),
        (URLError("unknown url type"), None),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPResponseException(451, b"later"), True),
        (smtplib.SMTPResponseException(550, b"no"), None),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (ssl.SSLCertVerificationError("bad cert"), None),
        (ValueError("the URL must be https://"), None),
    ],
)
def test_retry_policy(exc: BaseException, decision: object) -> None:
    assert transient(exc) == decision
