"""AWS Lambda entry point: EventBridge "AWS API Call via CloudTrail" events (aws.iam, aws.sts).

Failure semantics: a malformed or unsupported event is logged, counted (metric
`UnprocessableEvents`) and acknowledged; an alert that no sink accepted raises, so Lambda
retries the async invocation and finally sends it to the on-failure destination.
With TRUSTWATCH_STATE_TABLE set, a redelivered event (same CloudTrail eventID) is
processed once (powertools idempotency on the same DynamoDB table as the alert dedup).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from trustwatch.respond import Outcome, Responder
from trustwatch.runtime import FunctionRuntime

logger = Logger(service="trustwatch")
metrics = Metrics(namespace="trustwatch", service="trustwatch")

runtime = FunctionRuntime("aws", __file__)
_process: Any = None
_idempotency_config: Any = None


def _runtime() -> tuple[Responder, Any]:
    """Build the responder and the (idempotent) processing function on first use."""
    global _process
    if _process is None:
        _process = (
            _idempotent(_handle_record)
            if os.environ.get("TRUSTWATCH_STATE_TABLE")
            else _handle_record
        )
    return runtime.responder(), _process


def _idempotent(fn: Any) -> Any:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    store = DynamoDBPersistenceLayer(
        table_name=os.environ["TRUSTWATCH_STATE_TABLE"],
        key_attr="id",
        expiry_attr="expires",  # the table's one TTL attribute, shared with the alert dedup
    )
    global _idempotency_config
    config = IdempotencyConfig(event_key_jmespath='detail."eventID" || "eventID"')
    _idempotency_config = config
    return idempotent_function(
        data_keyword_argument="event", persistence_store=store, config=config
    )(fn)


def _handle_record(event: dict[str, Any]) -> dict[str, Any]:
    outcome = runtime.responder().handle(event, _where(event))
    _count(outcome)
    return {
        "findings": [f.id for f in outcome.findings],
        "sent": len(outcome.sent),
        "skipped": outcome.skipped,
        "not_evaluated": outcome.not_evaluated,
        "errors": outcome.errors,
    }


def _where(event: dict[str, Any]) -> str:
    detail = event.get("detail")
    event_id = detail.get("eventID") if isinstance(detail, dict) else event.get("eventID")
    return f"event {event_id or event.get('id') or '?'}"


def _count(outcome: Outcome) -> None:
    for finding in outcome.findings:
        metrics.add_metric(
            name=f"Findings_{finding.severity.value}", unit=MetricUnit.Count, value=1
        )
    metrics.add_metric(name="AlertsSent", unit=MetricUnit.Count, value=len(outcome.sent))
    if outcome.errors:
        metrics.add_metric(
            name="UnprocessableEvents", unit=MetricUnit.Count, value=len(outcome.errors)
        )


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        metrics.add_metric(name="EventsSeen", unit=MetricUnit.Count, value=1)
        logger.error("unprocessable event acknowledged: not a JSON object")
        metrics.add_metric(name="UnprocessableEvents", unit=MetricUnit.Count, value=1)
        return {"errors": ["event is not a JSON object"]}
    # powertools' typed view of the envelope (its package costs ~10 ms of a cold start:
    # the price of one well-kept event model instead of our own)
    envelope = EventBridgeEvent(event)
    detail = envelope.detail if isinstance(event.get("detail"), dict) else {}
    logger.set_correlation_id(detail.get("eventID") or event.get("id"))
    logger.append_keys(
        event_name=detail.get("eventName"),
        detail_type=envelope.get("detail-type"),
        request_id=getattr(context, "aws_request_id", None),
    )
    metrics.add_metric(name="EventsSeen", unit=MetricUnit.Count, value=1)
    _, process = _runtime()
    if _idempotency_config is not None and hasattr(context, "get_remaining_time_in_millis"):
        _idempotency_config.register_lambda_context(context)
    try:
        return process(event=event)
    except Exception:
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        logger.exception("event processing failed; raising so Lambda retries")
        raise
