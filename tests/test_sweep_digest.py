"""A sweep's digest: one message per Slack and email sink (real posts to a recording HTTP
server, real mail to aiosmtpd), its counts and top items, hostile strings inert."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from alerts_support import (
    CONSOLES,
    HOSTILE,
    HUGE,
    INVISIBLE,
    assert_slack_inert,
    aws_trust_finding,
    azure_owner_finding,
    gcp_bucket_finding,
    hostile_finding,
)
from trustwatch import clouds
from trustwatch.alerts import AlertDeliveryError, Dispatcher, formats
from trustwatch.alerts.receivers import RecordingHTTPServer, RecordingSMTPServer, Reply
from trustwatch.alerts.render import DIGEST_TOP, digest_view
from trustwatch.baseline import Baseline, parse_baseline
from trustwatch.clouds import CloudFolder
from trustwatch.dedup import SqliteDedupStore
from trustwatch.findings import Finding
from trustwatch.sweep import sweep, sweep_unit
from trustwatch.sweepstate import SqliteSweepStore

SLACK_PATH = "/services/T000/B000/digestsecret123"


@pytest.fixture
def slack() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(Reply(204, b"")) as server:
        yield server


def env(slack: RecordingHTTPServer, smtp: RecordingSMTPServer, **extra: str) -> dict[str, str]:
    return {
        "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url + SLACK_PATH,
        "TRUSTWATCH_SMTP_URL": smtp.url,
        "TRUSTWATCH_EMAIL_FROM": "trustwatch@example.com",
        "TRUSTWATCH_EMAIL_TO": "secops@example.com",
        "TRUSTWATCH_ALERT_TIMEOUT": "2",
        "TRUSTWATCH_ALERT_ATTEMPTS": "1",
        **extra,
    }


def swept(finding: Finding, status: str) -> Finding:
    return finding.model_copy(update={"source": "sweep", "sweep_status": status})


SWEPT = [
    swept(aws_trust_finding(), "new"),
    swept(azure_owner_finding(), "open"),
    swept(gcp_bucket_finding(), "resolved"),
    swept(azure_owner_finding(severity="high", id="f" * 64), "open"),
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def test_the_digest_counts_by_severity_and_status_and_lists_changes_first() -> None:
    d = digest_view(SWEPT, title="trustwatch sweep (aws, azure, gcp)")
    assert (d.new, d.resolved, d.still_open) == (1, 1, 2)
    assert d.severity_counts == "2 critical, 1 high"  # holding now: the resolved one is not
    assert d.headline == "trustwatch sweep (aws, azure, gcp): 1 new, 1 resolved, 2 still open"
    assert [(i.status, i.severity.value) for i in d.items] == [
        ("new", "critical"),
        ("resolved", "critical"),
        ("open", "critical"),
        ("open", "high"),
    ]
    many = [swept(aws_trust_finding(id=f"{n:064x}"), "open") for n in range(DIGEST_TOP + 5)]
    assert digest_view(many, title="t").more == 5


def test_one_digest_reaches_slack_and_email_and_no_other_sink(
    slack: RecordingHTTPServer, smtp: RecordingSMTPServer, hook: RecordingHTTPServer
) -> None:
    dispatcher = Dispatcher.from_env(
        env(
            slack,
            smtp,
            TRUSTWATCH_WEBHOOK_URL=hook.url + "/x",
            TRUSTWATCH_WEBHOOK_SECRET="whsec-digest-0123456789",
        )
    )
    report = dispatcher.send_digest(SWEPT, title="trustwatch sweep", errors=["aws 1: denied"])
    assert report.delivered == {"slack": ["digest"], "email": ["digest"], "webhook": []}
    [post] = slack.requests
    assert post.path == SLACK_PATH
    message = post.json()
    assert message["text"] == "trustwatch sweep: 1 new, 1 resolved, 2 still open"
    assert_slack_inert(message)
    body = "\n".join(b["text"]["text"] for b in message["blocks"] if "text" in b)
    assert "2 critical, 1 high" in body and "*NEW*" in body and "*RESOLVED*" in body
    assert "aws 1: denied" in body
    [mail] = smtp.messages
    msg = mail.message
    assert msg["Subject"] == "[trustwatch] trustwatch sweep: 1 new, 1 resolved, 2 still open"
    plain = msg.get_body(("plain",)).get_content()
    assert "Holding now: 2 critical, 1 high" in plain and "aws 1: denied" in plain
    assert hook.requests == []  # the signed webhook carries findings, not digests


def test_a_digest_that_no_sink_accepted_raises_and_one_that_one_did_does_not(
    slack: RecordingHTTPServer, smtp: RecordingSMTPServer
) -> None:
    dispatcher = Dispatcher.from_env(env(slack, smtp))
    slack.reply(Reply(500, b"down"))
    report = dispatcher.send_digest(SWEPT, title="t")
    assert report.delivered["email"] == ["digest"] and report.failures["slack"]
    slack.reply(Reply(500, b"down"))
    smtp.data_replies.append("554 5.0.0 rejected")
    with pytest.raises(AlertDeliveryError) as caught:
        dispatcher.send_digest(SWEPT, title="t")
    assert caught.value.report.undelivered == ["digest"]


def test_without_digest_sinks_there_is_nothing_to_send(hook: RecordingHTTPServer) -> None:
    dispatcher = Dispatcher.from_env(
        {
            "TRUSTWATCH_WEBHOOK_URL": hook.url + "/x",
            "TRUSTWATCH_WEBHOOK_SECRET": "whsec-digest-0123456789",
        }
    )
    assert not any(dispatcher.send_digest(SWEPT, title="t").delivered.values())
    assert hook.requests == []


@pytest.mark.parametrize("text", [*HOSTILE, HUGE])
def test_hostile_strings_are_inert_in_every_digest_format(text: str) -> None:
    hostile = [swept(hostile_finding(text), s) for s in ("new", "open", "resolved")]
    d = digest_view(hostile, title="trustwatch sweep", errors=[f"aws {text}: denied"])
    assert_slack_inert(formats.slack_sweep_digest(d))
    raw = formats.digest_email(d, "trustwatch@example.com", ["secops@example.com"]).as_bytes()
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["Bcc"] is None and "\n" not in msg["Subject"] and len(msg["Subject"]) <= 180
    parser = _Tags()
    parser.feed(msg.get_body(("html",)).get_content())
    allowed = {"html", "body", "h2", "p", "table", "tr", "th", "td", "code", "pre", "a", "strong"}
    assert {tag for tag, _ in parser.tags} <= allowed
    for _tag, attrs in parser.tags:
        for name, value in attrs:
            assert name in {"style", "align", "href"}
            if name == "href":
                assert value and value.startswith(CONSOLES)
    assert not INVISIBLE.search("".join(parser.data))
    plain = msg.get_body(("plain",)).get_content()
    assert not any(line.startswith("Bcc:") for line in plain.splitlines())
    assert not INVISIBLE.search(plain)


def test_digest_html_shows_hostile_markup_as_text() -> None:
    d = digest_view([swept(hostile_finding("<script>alert(1)</script>"), "new")], title="t")
    html = formats.digest_html(d)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- one digest per sweep ------------------------------------------------------------------

TOY_BASELINE = "version: 1\ntoy:\n  grants:\n    reader: [alice]\n"


@pytest.fixture
def toy() -> Iterator[Baseline]:
    unregister = clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))
    try:
        yield parse_baseline(TOY_BASELINE, "toy.yaml")
    finally:
        unregister()
        for module in [m for m in sys.modules if m == "toycloud" or m.startswith("toycloud.")]:
            del sys.modules[module]


def _digests(slack: RecordingHTTPServer) -> list[dict[str, Any]]:
    return [r.json() for r in slack.requests if r.json()["text"].startswith("trustwatch sweep")]


def test_a_sweep_of_several_units_sends_one_digest(
    toy: Baseline, tmp_path: Path, slack: RecordingHTTPServer, smtp: RecordingSMTPServer
) -> None:
    import json

    state = tmp_path / "toy.json"
    units = {u: {"grants": {"reader": ["alice", f"eve-{u}"]}} for u in ("one", "two", "three")}
    units["three"] = {"fail": "AccessDenied"}
    state.write_text(json.dumps({"units": units}))
    environ = env(slack, smtp, TOY_STATE=str(state), TRUSTWATCH_MIN_SEVERITY="info")
    dispatcher = Dispatcher.from_env(environ, store=SqliteDedupStore(tmp_path / "d.sqlite"))
    store = SqliteSweepStore(tmp_path / "s.sqlite")
    report = sweep(["toy"], toy, environ=environ, store=store, sender=dispatcher)
    assert report.digest_error == ""
    [digest] = _digests(slack)
    assert digest["text"] == "trustwatch sweep (toy): 2 new, 0 resolved, 0 still open"
    assert "toy three: state read failed" in json.dumps(digest)
    digest_mails = [m for m in smtp.messages if "sweep (toy)" in m.message["Subject"]]
    assert len(digest_mails) == 1
    # a unit swept on its own (a fanned-out invocation) sends its digest only on change
    slack.requests.clear()
    quiet = sweep_unit(
        "toy", "one", toy, environ=environ, store=store, sender=dispatcher, digest=True
    )
    assert quiet.still_open and _digests(slack) == []
    # the digest of a sweep that changed nothing still goes out; when no sink takes it,
    # the sweep says so (the CLI exits 3) and its state is saved all the same
    slack.reply(Reply(500, b"down"))
    smtp.data_replies.append("554 5.0.0 rejected")
    failed = sweep(["toy"], toy, environ=environ, store=store, sender=dispatcher)
    assert "reached no alert sink" in failed.digest_error
    assert all(u.saved for u in failed.units if not u.read_failed)
