"""One rendering path: finding -> cleaned view -> Slack, Teams, email, webhook; every
string from an event stays data in every format."""

from __future__ import annotations

import json
import re
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
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
from hypothesis import given, settings
from hypothesis import strategies as st
from trustwatch.alerts import formats
from trustwatch.alerts.links import deep_link
from trustwatch.alerts.render import clean, short_diff, view
from trustwatch.findings import Finding

# --- the neutral view -------------------------------------------------------------------


def test_view_has_every_field_a_responder_needs() -> None:
    v = view(aws_trust_finding())
    facts = dict(v.facts)
    assert v.title == "External principal may assume without the sts:ExternalId"
    assert v.headline.startswith("CRITICAL · ")
    assert facts["Identity"] == "arn:aws:iam::111122223333:role/databricks-cross-account"
    assert facts["Actor"] == "arn:aws:sts::111122223333:assumed-role/dev/alice"
    assert facts["Source IP"] == "198.51.100.7"
    assert facts["Time"] == "2026-11-27T10:00:00Z"
    assert facts["Remediation"] == "planned · restore_trust_policy"
    assert [label for label, _ in v.facts][:4] == ["Cloud", "Scope", "Identity", "Actor"]
    assert any("sts:ExternalId" in line and line.startswith("-") for line in v.diff)
    assert v.link and v.link.url.endswith("/iam/home#/roles/details/databricks-cross-account")


def test_unknown_rule_falls_back_to_its_id() -> None:
    v = view(gcp_bucket_finding(rule="gcp.bucket.some_future_rule"))
    assert v.title == "gcp.bucket.some_future_rule"


def test_clean_flattens_controls_strips_bidi_and_caps() -> None:
    assert clean("a\r\nBcc: x\tb") == "a Bcc: x b"
    assert clean("\u202eevil\u202c\u200b") == "evil"
    capped = clean(HUGE, 50)
    assert len(capped) == 50 and capped.endswith("…")


def test_short_diff_shows_changed_lines_only_and_caps_them() -> None:
    assert short_diff({"a": 1}, {"a": 2}) == ('-  "a": 1', '+  "a": 2')
    assert short_diff("old", "new") == ("- old", "+ new")
    assert short_diff({}, {}) == ()
    long = short_diff({}, {f"k{i}": i for i in range(100)})
    assert len(long) == 17 and long[-1].startswith("… ")


# --- deep links -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finding", "url"),
    [
        (
            aws_trust_finding(identity="arn:aws:iam::111122223333:role/svc/path/my-role"),
            "https://console.aws.amazon.com/iam/home#/roles/details/my-role",
        ),
        (
            aws_trust_finding(identity="arn:aws-us-gov:iam::111122223333:role/r"),
            "https://console.amazonaws-us-gov.com/iam/home#/roles/details/r",
        ),
        (
            aws_trust_finding(identity="arn:aws:iam::111122223333:policy/p"),
            "https://console.aws.amazon.com/iam/home#/policies/details/"
            "arn%3Aaws%3Aiam%3A%3A111122223333%3Apolicy%2Fp",
        ),
        (aws_trust_finding(identity="not-an-arn"), None),
        (
            azure_owner_finding(identity="3f2a9c1d-5b6e-4f7a-8b9c-0d1e2f3a4b5c"),
            "https://portal.azure.com/#resource/subscriptions/"
            "9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e/users",
        ),
        (
            gcp_bucket_finding(identity="gs://my-bucket"),
            "https://console.cloud.google.com/storage/browser/my-bucket;tab=permissions"
            "?project=dbx-prod-4821",
        ),
        (
            gcp_bucket_finding(identity="sa@dbx-prod-4821.iam.gserviceaccount.com"),
            "https://console.cloud.google.com/iam-admin/iam?project=dbx-prod-4821",
        ),
        (gcp_bucket_finding(identity="x", scope="<bad project>"), None),
    ],
)
def test_deep_links(finding: Finding, url: str | None) -> None:
    link = deep_link(finding)
    assert (link.url if link else None) == url


@pytest.mark.parametrize("text", HOSTILE)
def test_deep_link_of_a_hostile_identity_is_percent_encoded(text: str) -> None:
    link = deep_link(hostile_finding(text))  # None when the identity is no ARN at all
    assert link is None or re.fullmatch(r"https://[A-Za-z0-9._~:/?#@!$()*+,;=%-]+", link.url)


# --- Slack ------------------------------------------------------------------------------


def test_slack_message_structure() -> None:
    message = formats.slack_message(view(aws_trust_finding()))
    types = [b["type"] for b in message["blocks"]]
    assert types == ["header", "section", "section", "section", "context"]
    header, summary, facts, diff, context = message["blocks"]
    assert header["text"]["type"] == "plain_text"
    assert "CRITICAL" in header["text"]["text"]
    assert summary["text"]["type"] == "plain_text"
    labels = [f["text"].split("\n")[0] for f in facts["fields"]]
    assert labels[:4] == ["*Cloud*", "*Scope*", "*Identity*", "*Actor*"]
    assert all(f["verbatim"] is True for f in facts["fields"])
    assert diff["text"]["text"].startswith("*Expected vs actual*\n```")
    assert context["elements"][0]["text"].startswith(
        "<https://console.aws.amazon.com/iam/home#/roles/details/databricks-cross-account|"
    )
    assert message["text"].startswith("CRITICAL: ")


@pytest.mark.parametrize("text", [*HOSTILE, HUGE, "".join(HOSTILE) * 40])
def test_slack_hostile_strings_are_inert(text: str) -> None:
    message = formats.slack_message(view(hostile_finding(text)))
    assert_slack_inert(message)
    assert len(json.dumps(message)) < 20_000


def test_slack_escaping_keeps_the_data_readable() -> None:
    message = formats.slack_message(view(hostile_finding("<!channel> & <@U123>")))
    actor = next(f["text"] for f in message["blocks"][2]["fields"] if "*Actor*" in f["text"])
    assert actor == "*Actor*\n`&lt;!channel&gt; &amp; &lt;@U123&gt;`"
    code = formats.slack_code("a`b")
    assert code.count("`") == 2  # a data backtick cannot close the span


def test_slack_digest_lists_findings_and_counts() -> None:
    views = [view(aws_trust_finding()), view(azure_owner_finding()), view(gcp_bucket_finding())]
    digest = formats.slack_digest(views, "trustwatch sweep")
    assert digest["blocks"][0]["text"]["text"] == "trustwatch sweep: 3 critical"
    assert digest["blocks"][1]["text"]["text"].count("\n") == 2
    many = [view(hostile_finding(f"{HOSTILE[i % len(HOSTILE)]}{i}")) for i in range(40)]
    hostile_digest = formats.slack_digest(many, "sweep")
    assert_slack_inert(hostile_digest)
    assert "more in the thread" in hostile_digest["blocks"][1]["text"]["text"]


# --- Teams ------------------------------------------------------------------------------


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item)
    return found


def test_teams_adaptive_card_structure() -> None:
    message = formats.teams_message(view(azure_owner_finding()))
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    runs = [n["text"] for n in _walk(card) if n.get("type") == "TextRun"]
    assert runs[0].startswith("🔴 CRITICAL · ")
    assert "Actor: " in runs and "mallory@contoso.example" in runs
    (action,) = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    assert action["url"].startswith("https://portal.azure.com/#resource/subscriptions/")


@pytest.mark.parametrize("text", [*HOSTILE, HUGE])
def test_teams_hostile_strings_only_in_literal_text_runs(text: str) -> None:
    card = formats.teams_message(view(hostile_finding(text)))["attachments"][0]["content"]
    nodes = _walk(card)
    # TextRuns are never read as Markdown; no TextBlock / FactSet (which are) is used.
    kinds = {n.get("type") for n in nodes} - {None}
    assert kinds <= {"AdaptiveCard", "RichTextBlock", "TextRun", "Action.OpenUrl"}
    for node in nodes:
        if node.get("type") == "Action.OpenUrl":
            assert node["url"].startswith(CONSOLES) and "<" not in node["url"]
        if node.get("type") == "TextRun":
            assert not INVISIBLE.search(node["text"]) and len(node["text"]) <= 600
    assert len(json.dumps(card)) < 28_000  # Teams' card size limit


# --- email ------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def _parsed(findings: list[Finding]):
    msg = formats.email_message(
        [view(f) for f in findings], "trustwatch@example.com", ["secops@example.com"]
    )
    return BytesParser(policy=policy.default).parsebytes(msg.as_bytes())


def test_email_has_headers_and_both_parts() -> None:
    msg = _parsed([aws_trust_finding()])
    assert msg["From"] == "trustwatch@example.com" and msg["To"] == "secops@example.com"
    assert msg["Subject"].startswith("[trustwatch] CRITICAL: External principal may assume")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    html_part = msg.get_body(("html",)).get_content()
    assert "Actor:       arn:aws:sts::111122223333:assumed-role/dev/alice" in plain
    assert "Open in the AWS IAM console: https://console.aws.amazon.com/" in plain
    assert "<code>198.51.100.7</code>" in html_part


def test_one_mail_carries_several_findings_of_one_event() -> None:
    second = aws_trust_finding(id="f" * 64, rule="aws.trust.principal_added", severity="high")
    msg = _parsed([aws_trust_finding(), second])
    assert msg["Subject"].startswith("[trustwatch] 2 findings (1 critical, 1 high)")
    assert msg["X-Trustwatch-Findings"].count(",") == 1
    assert msg.get_body(("plain",)).get_content().count("Rule aws.trust.") == 2


@pytest.mark.parametrize("text", [*HOSTILE, HUGE])
def test_email_hostile_strings_are_inert(text: str) -> None:
    raw = formats.email_message(
        [view(hostile_finding(text))], "trustwatch@example.com", ["secops@example.com"]
    ).as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    names = {line.split(b":", 1)[0] for line in head.split(b"\n") if line[:1] not in b" \t"}
    assert names == {
        b"Subject", b"From", b"To", b"Date", b"Message-ID", b"Auto-Submitted",
        b"X-Trustwatch-Findings", b"MIME-Version", b"Content-Type",
    }  # fmt: skip
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["Bcc"] is None
    assert "\r" not in msg["Subject"] and "\n" not in msg["Subject"]
    assert len(msg["Subject"]) <= 180
    html_part = msg.get_body(("html",)).get_content()
    parser = _Tags()
    parser.feed(html_part)
    allowed = {"html", "body", "h2", "p", "table", "tr", "th", "td", "code", "pre", "a", "strong"}
    assert {tag for tag, _ in parser.tags} <= allowed | {"hr"}
    for _tag, attrs in parser.tags:
        for name, value in attrs:
            assert name in {"style", "align", "href"}
            if name == "href":
                assert value and value.startswith(CONSOLES)
    data = "".join(parser.data)
    assert not INVISIBLE.search(data)
    plain = msg.get_body(("plain",)).get_content()
    assert not any(line.startswith("Bcc:") for line in plain.splitlines())
    assert not INVISIBLE.search(plain)


def test_email_html_shows_hostile_markup_as_text() -> None:
    msg = _parsed([hostile_finding("<script>alert(1)</script>")])
    html_part = msg.get_body(("html",)).get_content()
    assert "<script>" not in html_part
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_part


# --- webhook ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [*HOSTILE, HUGE])
def test_webhook_body_is_the_finding_json_with_markup_characters_escaped(text: str) -> None:
    finding = hostile_finding(text)
    body = formats.webhook_body(finding)
    assert json.loads(body) == finding.model_dump(mode="json")
    assert not re.search(rb"[<>&]", body)


# --- property: any event text stays inert -------------------------------------------------

_ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("<>&!@|*_~`[]()#:\r\n\t\"' \u202e\u200b\u2066")),
        st.characters(),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(text=_ANY_TEXT)
def test_any_event_text_is_inert_in_slack_html_and_headers(text: str) -> None:
    v = view(hostile_finding(text))
    assert_slack_inert(formats.slack_message(v))
    msg = formats.email_message([v], "trustwatch@example.com", ["secops@example.com"])
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    parser = _Tags()
    parser.feed(formats.email_html([v]))
    assert {tag for tag, _ in parser.tags} <= {
        "html", "body", "h2", "p", "table", "tr", "th", "td", "code", "pre", "a", "strong", "hr"
    }  # fmt: skip
