"""AWS Lambda entry point: EventBridge "AWS API Call via CloudTrail" events (aws.iam, aws.sts),
and the scheduled sweep (trustwatch.sweep).

The EventBridge Scheduler schedule sends `{"trustwatch": "sweep"}`: the function invokes
itself asynchronously once per account of the baseline (`lambda:InvokeFunction`,
InvocationType Event, `{"trustwatch": "sweep", "cloud": "aws", "unit": ACCOUNT}`), so
accounts are swept in parallel, each in its own invocation; a unit invocation sweeps
that account (`sweep.run_scheduled`). A unit whose alerts failed raises: Lambda retries it.

Failure semantics: a malformed or unsupported event is logged, counted (metric
`UnprocessableEvents`) and acknowledged; an alert that no sink accepted raises, so Lambda
retries the async invocation and finally sends it to the on-failure destination.
With TRUSTWATCH_STATE_TABLE set, a redelivered event (same CloudTrail eventID) is
processed once (powertools idempotency on the same DynamoDB table as the alert dedup).
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

# What the imports build (modules, classes, validators) lives as long as the instance:
# cyclic GC would scan it ~50 times during them for nothing (~7 ms of a cold start).
# Collect nothing meanwhile, then freeze it out of every later collection.
gc.disable()
try:
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from trustwatch.respond import Outcome, Responder
    from trustwatch.runtime import FunctionRuntime
    from trustwatch.schema import log_json_default
finally:
    gc.freeze()
    gc.enable()

# a finding logged with its record (extra={"finding": ...}) is written as its JSON
logger = Logger(service="trustwatch", json_default=log_json_default)
metrics = Metrics(namespace="trustwatch", service="trustwatch")

runtime = FunctionRuntime("aws", __file__)
_process: Any = None
_idempotency_config: Any = None
_lambda_client: Any = None


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


def _invoke_self(message: dict[str, str]) -> None:
    """Start this function's own invocation for one sweep unit (asynchronous: Lambda
    queues it and answers 202)."""
    global _lambda_client
    if _lambda_client is None:
        import boto3
        from trustwatch.aws.store import retry_config

        _lambda_client = boto3.client("lambda", config=retry_config())
    answer = _lambda_client.invoke(
        FunctionName=os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        InvocationType="Event",
        Payload=json.dumps(message).encode(),
    )
    if answer.get("StatusCode") != 202:
        raise RuntimeError(
            f"sweep of {message.get('unit')}: Invoke answered {answer.get('StatusCode')}"
        )


def _sweep(request: Any) -> dict[str, Any]:
    from trustwatch import sweep

    responder = runtime.responder()
    result = sweep.run_scheduled(
        request,
        "aws",
        responder.baseline(),
        environ=os.environ,
        store=sweep.sweep_store_from_env(os.environ),
        sender=responder.sender,
        dispatch=_invoke_self,
    )
    if isinstance(result, list):
        metrics.add_metric(name="SweepUnitsDispatched", unit=MetricUnit.Count, value=len(result))
        return {"dispatched": [m["unit"] for m in result]}
    metrics.add_metric(name="SweepFindingsNew", unit=MetricUnit.Count, value=len(result.new))
    metrics.add_metric(
        name="SweepFindingsResolved", unit=MetricUnit.Count, value=len(result.resolved)
    )
    metrics.add_metric(name="SweepApiCalls", unit=MetricUnit.Count, value=result.calls)
    if result.errors:
        metrics.add_metric(name="SweepErrors", unit=MetricUnit.Count, value=len(result.errors))
    return {
        "unit": result.unit,
        "new": [f.id for f in result.new],
        "open": [f.id for f in result.still_open],
        "resolved": [f.id for f in result.resolved],
        "catch_up": [f.id for f in result.event_findings],
        "sent": len(result.alerted),
        "calls": result.calls,
        "errors": result.errors,
    }


def _sweep_request(event: dict[str, Any]) -> Any:
    """The sweep message the event is, or None (ValueError for a malformed one)."""
    if event.get("trustwatch") is None:
        return None  # every other event: no need to import the sweep engine
    from trustwatch.sweep import scheduled

    request = scheduled(event)
    if request is not None and request.cloud not in (None, "aws"):
        raise ValueError(f"sweep message for cloud {request.cloud!r} reached the AWS function")
    return request


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        metrics.add_metric(name="EventsSeen", unit=MetricUnit.Count, value=1)
        logger.error("unprocessable event acknowledged: not a JSON object")
        metrics.add_metric(name="UnprocessableEvents", unit=MetricUnit.Count, value=1)
        return {"errors": ["event is not a JSON object"]}
    try:
        request = _sweep_request(event)
    except ValueError as exc:
        logger.error("malformed sweep message acknowledged: %s", exc)
        metrics.add_metric(name="UnprocessableEvents", unit=MetricUnit.Count, value=1)
        return {"errors": [str(exc)]}
    if request is not None:
        logger.append_keys(
            sweep_unit=request.unit, request_id=getattr(context, "aws_request_id", None)
        )
        try:
            return _sweep(request)
        except Exception:
            metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
            logger.exception("sweep failed; raising so Lambda retries")
            raise
    # The envelope is read as the plain dict it is: powertools' EventBridgeEvent would only
    # rename two keys, and its `data_classes` package imports every event class (~10 ms of
    # a cold start).
    detail = event["detail"] if isinstance(event.get("detail"), dict) else {}
    logger.set_correlation_id(detail.get("eventID") or event.get("id"))
    logger.append_keys(
        event_name=detail.get("eventName"),
        detail_type=event.get("detail-type"),
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
