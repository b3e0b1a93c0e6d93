"""GCP entry point: one CloudEvent function for Cloud Audit Log entries, delivered either as
Pub/Sub `google.cloud.pubsub.topic.v1.messagePublished` (log sink -> topic) or as Eventarc
`google.cloud.audit.log.v1.written`, and for the scheduled sweep (Cloud Scheduler publishes
`{"trustwatch": "sweep"}` to the same topic: trustwatch.sweep).

Failure semantics: a malformed or unsupported event is logged with its reason and
acknowledged (returning normally acks the Pub/Sub message); an alert no sink accepted
raises, so Pub/Sub redelivers and finally moves the message to the dead-letter topic.
An entry that lacks the policy or the account's email is completed from the Google Cloud
APIs as the function's service account (trustwatch.gcp.enrich): gone (404) is logged as
not evaluated; a read refused or failing after its retries raises, so it is redelivered.
Sweeps: the schedule's message fans out, one message per baseline project published to
TRUSTWATCH_SWEEP_TOPIC (each project swept by its own invocation, in parallel); a project's
message sweeps it (trustwatch.gcp.state). A publish that fails, or sweep alerts no sink
accepted, raise (redelivered; the sweep saved nothing, so the retry sends them again).
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
    doc = _structured(cloud_event)
    if _swept(doc, where):
        return
    outcome = runtime.responder().handle(doc, where)
    log.info(
        "processed %s: %d finding(s), %d sent, %d skipped, %d unprocessable",
        where,
        len(outcome.findings),
        len(outcome.sent),
        len(outcome.skipped),
        len(outcome.errors),
        extra={"correlation_id": cloud_event["id"]},
    )


def _swept(doc: dict[str, Any], where: str) -> bool:
    """Run the sweep message the delivery carries; False when it carries none."""
    from trustwatch.gcp.state import dispatcher, sweep_request
    from trustwatch.sweep import run_scheduled, sweep_store_from_env

    try:
        request = sweep_request(doc)
    except ValueError as exc:  # a malformed sweep message: retrying changes nothing
        log.error("unprocessable sweep message acknowledged (%s): %s", where, exc)
        return True
    if request is None:
        return False
    if request.cloud not in (None, "gcp"):  # another cloud's: retrying changes nothing
        log.error("sweep message for cloud %r acknowledged (%s)", request.cloud, where)
        return True
    responder = runtime.responder()
    env = responder.environ
    run_scheduled(
        request,
        "gcp",
        responder.baseline(),
        environ=env,
        store=sweep_store_from_env(env),
        sender=responder.sender,
        dispatch=dispatcher(env) if request.unit is None else _no_dispatch,
    )
    return True


def _no_dispatch(message: dict[str, str]) -> None:
    raise RuntimeError(f"a unit sweep dispatches nothing: {message}")
