r"""The one rendering path, second half: `AlertView`s -> each wire format.

Each format escapes the view's plain text for its own markup, in one function each:
- Slack: `&`, `<`, `>` become entities (no links, mentions or `<!channel>` can form);
  event values sit in code spans / code blocks where mrkdwn (`*bold*`, `_`, `~`) is off;
  broadcast words (`@here`) are broken with a word joiner.
- Teams: event values only in `TextRun`s, which Adaptive Cards never read as Markdown.
- Email: the HTML part comes from a jinja2 template with autoescape on; headers are
  single-line (render.clean) and capped.
- Webhook: the finding JSON itself, with `<`, `>`, `&` as \u escapes (same data, safe to
  paste into HTML).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

from trustwatch.alerts.render import SEVERITY_MARK, AlertView, clean
from trustwatch.findings import Finding, Severity

if TYPE_CHECKING:
    from trustwatch.alerts.digest import DigestView

SLACK_HEADER_MAX = 150  # Block Kit limits
SLACK_FIELD_MAX = 1900
_BACKTICK = "\u02cb"  # MODIFIER LETTER GRAVE: looks like ` but cannot close a code span
_BROADCAST = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)


# --- Slack ------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Entities for `&`, `<`, `>` (mrkdwn's only markup characters) and broken broadcasts."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060", text)


def slack_code(text: str) -> str:
    """An inline code span: no mrkdwn inside; a backtick in the data cannot close it."""
    return "`" + slack_escape(text).replace("`", _BACKTICK) + "`"


def _fit(text: str, limit: int, render: Callable[[str], str]) -> str:
    """render(text), shortening the *source* so an entity or code span is never cut."""
    out = render(text)
    while len(out) > limit and text:
        text = text[: max(0, len(text) - (len(out) - limit) - 1)]
        out = render(text + "…")
    return out


def _plain(text: str, limit: int = 3000) -> dict[str, object]:
    return {"type": "plain_text", "text": _fit(text, limit, slack_escape), "emoji": True}


def _mrkdwn(text: str) -> dict[str, object]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_message(v: AlertView) -> dict[str, object]:
    """`text` (the notification line) and Block Kit `blocks` for one finding."""
    blocks: list[dict[str, object]] = [
        {
            "type": "header",
            "text": _plain(f"{SEVERITY_MARK[v.severity]} {v.headline}", SLACK_HEADER_MAX),
        },
        {"type": "section", "text": _plain(v.summary)},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*{label}*\n{slack_code(value)}"[:SLACK_FIELD_MAX])
                for label, value in v.facts
            ][:10],
        },
    ]
    if v.diff:
        body = "\n".join(v.diff).replace("`", _BACKTICK)
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(f"*Expected vs actual*\n```{slack_escape(body)}```"),
            }
        )
    context = f"rule {slack_code(v.rule)} · finding {slack_code(v.finding_id[:16])}"
    if v.link:
        # The URL is built from percent-encoded parts (links.py): no `|` or `>` in it.
        context = f"<{v.link.url}|{slack_escape(v.link.label)}> · " + context
    blocks.append({"type": "context", "elements": [_mrkdwn(context)]})
    identity = dict(v.facts).get("Identity", "")
    text = f"{v.severity.value.upper()}: {slack_escape(v.title)} on {slack_code(identity)}"
    return {"text": text, "blocks": blocks}


def slack_digest(views: Sequence[AlertView], title: str) -> dict[str, object]:
    """The parent message of a threaded digest (a sweep): counts, then one line each."""
    counts = _counts(views)
    lines: list[str] = []
    for shown, v in enumerate(views):
        line = f"{SEVERITY_MARK[v.severity]} {slack_escape(v.title)} · {slack_code(_identity(v))}"
        if shown == 20 or sum(len(x) + 1 for x in lines) + len(line) > 2800:
            lines.append(f"… and {len(views) - shown} more in the thread")
            break
        lines.append(line)
    blocks = [
        {"type": "header", "text": _plain(f"{title}: {counts}", SLACK_HEADER_MAX)},
        {"type": "section", "text": _mrkdwn("\n".join(lines))},
    ]
    return {"text": slack_escape(f"{title}: {counts}"), "blocks": blocks}


_STATUS_WORD = {"new": "NEW", "resolved": "RESOLVED", "open": "open"}


def slack_sweep_digest(d: DigestView) -> dict[str, object]:
    """A sweep's digest: the counts, then its top findings, one line each, then errors."""
    counts = f"*Holding now:* {slack_escape(d.severity_counts)}"
    lines = []
    for item in d.items:
        line = (
            f"{SEVERITY_MARK[item.severity]} *{_STATUS_WORD[item.status]}* "
            f"{slack_escape(item.title)} · {slack_code(item.identity)}"
        )
        if item.link:  # built from percent-encoded parts (links.py): no `|` or `>` in it
            link = f" · <{item.link.url}|{slack_escape(item.link.label)}>"
            line += link if len(line) + len(link) <= SLACK_FIELD_MAX else ""  # never cut
        lines.append(line)
    if d.more:
        lines.append(f"… and {d.more} more")
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": _plain(d.headline, SLACK_HEADER_MAX)},
        {"type": "section", "text": _mrkdwn(counts)},
    ]
    if lines:
        blocks.append({"type": "section", "text": _mrkdwn(_fit_lines(lines, 2900))})
    if d.errors:
        body = "\n".join(d.errors).replace("`", _BACKTICK)
        more = f"\n… and {d.more_errors} more" if d.more_errors else ""
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    _fit(body, 2800, lambda t: f"*Not read*\n```{slack_escape(t)}```") + more
                ),
            }
        )
    return {"text": slack_escape(d.headline), "blocks": blocks}


def _fit_lines(lines: list[str], limit: int) -> str:
    """Whole lines only, as many as fit (a cut line could split an entity or a link)."""
    kept: list[str] = []
    for line in lines:
        if sum(len(x) + 1 for x in kept) + len(line) > limit:
            kept.append(f"… and {len(lines) - len(kept)} more lines")
            break
        kept.append(line)
    return "\n".join(kept)


# --- Microsoft Teams --------------------------------------------------------------------

_TEAMS_COLOR = {Severity.critical: "Attention", Severity.high: "Warning"}


def _run(text: str, **style: object) -> dict[str, object]:
    return {"type": "TextRun", "text": text, **style}


def teams_message(v: AlertView) -> dict[str, object]:
    """A Workflows-webhook message carrying one Adaptive Card (1.4)."""
    body: list[dict[str, object]] = [
        {
            "type": "RichTextBlock",
            "inlines": [
                _run(
                    f"{SEVERITY_MARK[v.severity]} {v.headline}",
                    weight="Bolder",
                    size="Medium",
                    color=_TEAMS_COLOR.get(v.severity, "Default"),
                )
            ],
        },
        {"type": "RichTextBlock", "inlines": [_run(v.summary)]},
    ]
    for label, value in v.facts:
        body.append(
            {
                "type": "RichTextBlock",
                "spacing": "None",
                "inlines": [_run(f"{label}: ", weight="Bolder"), _run(value, fontType="Monospace")],
            }
        )
    if v.diff:
        body.append(
            {"type": "RichTextBlock", "inlines": [_run("Expected vs actual", weight="Bolder")]}
        )
        body += [
            {
                "type": "RichTextBlock",
                "spacing": "None",
                "inlines": [
                    _run(
                        line,
                        fontType="Monospace",
                        color="Good" if line.startswith("+") else "Default",
                    )
                ],
            }
            for line in v.diff
        ]
    body.append(
        {
            "type": "RichTextBlock",
            "inlines": [_run(f"rule {v.rule} · finding {v.finding_id[:16]}", isSubtle=True)],
        }
    )
    card: dict[str, object] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if v.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": v.link.label, "url": v.link.url}]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


# --- Email ------------------------------------------------------------------------------

SUBJECT_MAX = 180


def email_subject(views: Sequence[AlertView]) -> str:
    """One line, capped: the top severity and title, the identity or the count."""
    top = max(views, key=lambda v: v.severity.rank)
    # ASCII separators: most clients show encoded-word subjects fine, but some filters don't.
    if len(views) == 1:
        subject = f"[trustwatch] {top.severity.value.upper()}: {top.title} - {_identity(top)}"
    else:
        subject = f"[trustwatch] {len(views)} findings ({_counts(views)}): {top.title}"
    return clean(subject, SUBJECT_MAX)


def email_text(views: Sequence[AlertView]) -> str:
    """The plain-text part: each finding's facts, diff and link."""
    parts = []
    for v in views:
        lines = [f"{v.headline}", v.summary, ""]
        lines += [f"{label + ':':<13}{value}" for label, value in v.facts]
        if v.diff:
            lines += ["", "Expected vs actual:", *(f"  {line}" for line in v.diff)]
        if v.link:
            lines += ["", f"{v.link.label}: {v.link.url}"]
        lines += [f"Rule {v.rule} · finding {v.finding_id}"]
        parts.append("\n".join(lines))
    return ("\n\n" + "-" * 60 + "\n\n").join(parts) + "\n"


_HTML_SEVERITY_COLOR = {
    Severity.critical: "#b3261e",
    Severity.high: "#c26a00",
    Severity.medium: "#8a6d00",
    Severity.low: "#1f5fa8",
    Severity.info: "#555555",
}


def _email_template() -> Any:
    return _templates().get_template("email.html.j2")


@functools.cache
def _templates() -> Any:
    # jinja2 is imported on the email path only: Slack / Teams / webhook sends and a
    # function's cold start never pay for it. The template ships in the package.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trustwatch.alerts", "templates"),
        autoescape=True,  # every {{ value }} is HTML-escaped, in text and in attributes
        undefined=jinja2.StrictUndefined,  # a typo in the template fails, not renders ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env


def email_html(views: Sequence[AlertView]) -> str:
    """The HTML part, rendered from `templates/email.html.j2` with autoescape on."""
    return str(
        _email_template().render(views=views, colors=_HTML_SEVERITY_COLOR, marks=SEVERITY_MARK)
    )


def email_message(views: Sequence[AlertView], sender: str, to: Sequence[str]) -> EmailMessage:
    """The alert mail: multipart/alternative, plain text first, HTML second.

    Addresses come from the configuration (checked there); everything from events is in
    the single-line subject and the bodies.
    """
    msg = EmailMessage()
    msg["Subject"] = email_subject(views)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("trustwatch", domain=sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Trustwatch-Findings"] = ", ".join(clean(v.finding_id, 80) for v in views)[:900]
    msg.set_content(email_text(views))
    msg.add_alternative(email_html(views), subtype="html")
    return msg


def digest_subject(d: DigestView) -> str:
    """`[trustwatch] <title>: N new, N resolved, N still open`, one line, capped."""
    return clean(f"[trustwatch] {d.headline}", SUBJECT_MAX)


def digest_text(d: DigestView) -> str:
    """The digest's plain-text part."""
    lines = [d.headline, f"Holding now: {d.severity_counts}", ""]
    for item in d.items:
        lines.append(
            f"{item.status.upper():<9}{item.severity.value:<9}{item.title} - {item.identity}"
        )
        if item.link:
            lines.append(f"{'':18}{item.link.url}")
    if d.more:
        lines.append(f"... and {d.more} more")
    if d.errors:
        lines += ["", "Not read:", *(f"  {e}" for e in d.errors)]
        if d.more_errors:
            lines.append(f"  ... and {d.more_errors} more")
    return "\n".join(lines) + "\n"


def digest_html(d: DigestView) -> str:
    """The digest's HTML part, from `templates/digest.html.j2` with autoescape on."""
    template = _templates().get_template("digest.html.j2")
    return str(template.render(d=d, colors=_HTML_SEVERITY_COLOR, marks=SEVERITY_MARK))


def digest_email(d: DigestView, sender: str, to: Sequence[str]) -> EmailMessage:
    """The digest mail: multipart/alternative, plain text first, HTML second."""
    msg = EmailMessage()
    msg["Subject"] = digest_subject(d)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("trustwatch", domain=sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(digest_text(d))
    msg.add_alternative(digest_html(d), subtype="html")
    return msg


# --- Generic webhook --------------------------------------------------------------------

_JSON_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def webhook_body(finding: Finding) -> bytes:
    r"""The finding JSON (Contract 2), compact, with `<>&` as \u escapes.

    Those characters only appear inside JSON strings, so the escapes decode to the same
    data.
    """
    return finding.to_json().translate(_JSON_HTML_SAFE).encode()


# --- shared -----------------------------------------------------------------------------


def _identity(v: AlertView) -> str:
    return dict(v.facts).get("Identity", "")


def _counts(views: Sequence[AlertView]) -> str:
    by = {s: sum(1 for v in views if v.severity == s) for s in Severity}
    return ", ".join(f"{n} {s.value}" for s, n in by.items() if n)
