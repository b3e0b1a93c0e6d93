"""GCP entry point: one CloudEvent function for Cloud Audit Log entries, delivered either as
Pub/Sub `google.cloud.pubsub.topic.v1.messagePublished` (log sink -> topic) or as Eventarc
`google.cloud.audit.log.v1.written`.

Failure semantics: a malformed or unsupported event is logged with its reason and
acknowledged (returning normally acks the Pub/Sub message); an alert no sink accepted
raises, so Pub/Sub redelivers and finally moves the message to the dead-letter topic.
An entry that lacks the policy or the account's email is completed from the Google Cloud
APIs as the function's service account (trustwatch.gcp.enrich): gone (404) is logged as
not evaluated; a read refused or failing after its retries raises, so it is redelivered.
Logs are JSON lines with `severity`, which Cloud Logging parses into structured entries.
"""

from __future__ import annotations

import logging
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from trustwatch import logjson
from trustwatch.runtime import FunctionRuntime

logjson.configure()
log = logging.getLogger("trustwatch")
runtime = FunctionRuntime("gcp", __file__)  # API reads: trustwatch.gcp.enrich


def _structured(event: CloudEvent) -> dict[str, Any]:
    """The CloudEvent as its structured-mode JSON, which trustwatch.gcp.events reads."""
    doc: dict[str, Any] = dict(event.get_attributes())
    doc["data"] = event.get_data()
    return doc


@functions_framework.cloud_event
def on_audit_log(cloud_event: CloudEvent) -> None:
    where = f"cloudevent {cloud_event['id']}"
    outcome = runtime.responder().handle(_structured(cloud_event), where)
    log.info(
        "processed %s: %d finding(s), %d sent, %d skipped, %d unprocessable",
        where,
        len(outcome.findings),
        len(outcome.sent),
        len(outcome.skipped),
        len(outcome.errors),
        extra={"correlation_id": cloud_event["id"]},
    )
