"""The demo's local delivery: every sink kind, real receivers, a readable preview."""

from __future__ import annotations

import io

from alerts_support import aws_trust_finding, azure_owner_finding, gcp_bucket_finding
from trustwatch.alerts.local import deliver_locally, write_preview


def test_deliver_locally_reaches_every_receiver_and_previews() -> None:
    findings = [aws_trust_finding(), azure_owner_finding(), gcp_bucket_finding(severity="low")]
    delivery = deliver_locally(findings)
    assert delivery.report.ok
    assert len(delivery.slack) == len(delivery.teams) == len(delivery.webhook) == 3
    assert len(delivery.emails) == 3  # three events, three mails
    out = io.StringIO()
    write_preview(delivery, out)
    text = out.getvalue()
    assert "--- Slack message (Block Kit, as posted) ---" in text
    assert '"type": "header"' in text
    assert "Subject: [trustwatch] CRITICAL: " in text
    assert "Actor:       arn:aws:sts::111122223333:assumed-role/dev/alice" in text
