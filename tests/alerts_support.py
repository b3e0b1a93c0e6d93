"""Shared test data for the alert tests: realistic findings and hostile strings."""

from __future__ import annotations

import re
from typing import Any

from trustwatch.findings import Finding, Remediation, fingerprint

ALICE = "arn:aws:sts::111122223333:assumed-role/dev/alice"
ROLE = "arn:aws:iam::111122223333:role/databricks-cross-account"
SUB = "9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e"
CONNECTOR = (
    f"/subscriptions/{SUB}/resourceGroups/dbx-prod/providers/"
    "Microsoft.Databricks/accessConnectors/uc-connector"
)

HOSTILE = [
    "<!channel>",
    "<!here>",
    "<@U123>",
    "<https://evil.example|click>",
    "&lt;b&gt;",
    "*bold* _it_ ~strike~ `code`",
    "\r\nBcc: x@evil.example",
    "<script>alert(1)</script>",
    "@here @channel",
    "\u202eevil\u202c\u200f\u2066x\u2069",
    '"><img src=x onerror=alert(1)>',
    "<at>Everyone</at>",
    "[click](https://evil.example)",
    "lone \ud800 surrogate",
]
HUGE = "A" * 10_000


def aws_trust_finding(**overrides: object) -> Finding:
    actual = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::414351767826:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    expected = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::414351767826:root"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"sts:ExternalId": "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77"}
                },
            }
        ],
    }
    data: dict[str, object] = {
        "id": fingerprint("aws.trust.external_id_missing", ROLE, actual),
        "rule": "aws.trust.external_id_missing",
        "severity": "critical",
        "cloud": "aws",
        "scope": "111122223333",
        "identity": ROLE,
        "actor": ALICE,
        "event_id": "3b5d7c1e-aaaa-bbbb-cccc-0123456789ab",
        "event_time": "2026-11-27T10:00:00Z",
        "summary": "databricks-cross-account can be assumed by Databricks without sts:ExternalId",
        "expected": expected,
        "actual": actual,
        "remediation": Remediation(action="restore_trust_policy", status="planned"),
        "source_ip": "198.51.100.7",
        "user_agent": "aws-cli/2.15.0 Python/3.11",
        "event_name": "UpdateAssumeRolePolicy",
    }
    data.update(overrides)
    return Finding.model_validate(data)


def azure_owner_finding(**overrides: object) -> Finding:
    actual = {"role": "Owner", "scope": f"/subscriptions/{SUB}"}
    data: dict[str, object] = {
        "id": fingerprint("azure.role_assignment.unexpected", CONNECTOR, actual),
        "rule": "azure.role_assignment.unexpected",
        "severity": "critical",
        "cloud": "azure",
        "scope": SUB,
        "identity": CONNECTOR,
        "actor": "mallory@contoso.example",
        "event_id": "e2f1a0b9-1111-2222-3333-444455556666",
        "event_time": "2026-11-27T10:05:00Z",
        "summary": "uc-access-connector was given Owner on the subscription",
        "expected": [
            {"role": "Storage Blob Data Contributor", "scope": "…/storageAccounts/dbxucprod"}
        ],
        "actual": actual,
        "source_ip": "203.0.113.9",
        "event_name": "Microsoft.Authorization/roleAssignments/write",
    }
    data.update(overrides)
    return Finding.model_validate(data)


def gcp_bucket_finding(**overrides: object) -> Finding:
    identity = "projects/_/buckets/dbx-uc-prod-4821"
    actual = {"roles/storage.objectViewer": ["allUsers"]}
    data: dict[str, object] = {
        "id": fingerprint("gcp.bucket.binding_added", identity, actual),
        "rule": "gcp.bucket.binding_added",
        "severity": "critical",
        "cloud": "gcp",
        "scope": "dbx-prod-4821",
        "identity": identity,
        "actor": "bob@example.com",
        "event_id": "gcp-insert-id-42",
        "event_time": "2026-11-27T10:10:00Z",
        "summary": "bucket dbx-uc-prod-4821 is readable by allUsers",
        "expected": {},
        "actual": actual,
        "event_name": "storage.setIamPermissions",
    }
    data.update(overrides)
    return Finding.model_validate(data)


def hostile_finding(text: str, **overrides: object) -> Finding:
    """Every event-derived field carries `text` (the rule id and cloud are ours)."""
    return aws_trust_finding(
        id=fingerprint("aws.trust.external_id_missing", text, "hostile"),
        scope=text,
        identity=f"arn:aws:iam::111122223333:role/{text}",
        actor=text,
        summary=f"role {text} changed",
        source_ip=text,
        user_agent=text,
        event_name=text,
        event_time=text,
        expected={"Principal": text},
        actual={"Principal": [text, "*"]},
        remediation=Remediation(action="restore_trust_policy", status="failed", detail=text),
        **overrides,
    )


# --- what "inert" means in Slack --------------------------------------------------------

CONSOLES = (
    "https://console.aws.amazon.com/",
    "https://console.amazonaws-us-gov.com/",
    "https://portal.azure.com/",
    "https://console.cloud.google.com/",
)
INVISIBLE = re.compile("[\r\x00-\x09\x0b-\x1f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def slack_texts(node: Any, kind: str | None = None) -> list[str]:
    """Every text object's text in a Block Kit tree (optionally of one type)."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("text"), str) and (kind is None or node.get("type") == kind):
            found.append(node["text"])
        for value in node.values():
            found += slack_texts(value, kind)
    elif isinstance(node, list):
        for item in node:
            found += slack_texts(item, kind)
    return found


def assert_slack_inert(message: dict[str, Any]) -> None:
    for text in slack_texts(message):
        # The only angle brackets left are our own console links.
        for inner in re.findall(r"<([^>]*)>", text):
            assert inner.startswith(CONSOLES), text
        assert "<" not in re.sub(r"<https://[^|<>]+\|[^<>]+>", "", text)
        assert ">" not in re.sub(r"<https://[^|<>]+\|[^<>]+>", "", text)
        assert not re.search(r"&(?!(amp|lt|gt);)", text), text
        assert not re.search(r"@(channel|here|everyone)\b", text, re.IGNORECASE), text
        assert not INVISIBLE.search(text), text
    for text in [*slack_texts(message, "mrkdwn"), message["text"]]:
        # Outside code spans / blocks only our own markup remains.
        outside = re.sub(r"```.*?```|`[^`]*`|<https://[^|<>]+\|", "", text, flags=re.DOTALL)
        assert "`" not in outside, text
        for marker in ("*bold*", "_it_", "~strike~", "[click]"):
            assert marker not in outside, text
    for block in message["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
        if isinstance(block.get("text"), dict):
            assert len(block["text"]["text"]) <= 3000
