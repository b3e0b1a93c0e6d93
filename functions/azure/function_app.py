"""Azure Functions entry point (Python v2 programming model): two functions on the shared
responder, fed by the two paths deploy/azure builds, and the two of the scheduled sweep.

- `on_event_grid`: Event Grid events of the subscription system topic (Event Grid schema; a
  CloudEvents-schema subscription works too). They name the resource but carry no body, so
  role assignment and access connector writes are completed by a GET from Azure Resource
  Manager with the app's managed identity (trustwatch.azure.enrich).
- `on_activity_log`: the Activity Log diagnostic export to Event Hub; each event body is
  `{"records": [...]}` with the request and response bodies.

The scheduled sweep (trustwatch.sweep), one subscription per invocation:
- `on_sweep_schedule`: a timer trigger on the NCRONTAB schedule in the app setting
  TRUSTWATCH_SWEEP_SCHEDULE; it lists the baseline's subscriptions and puts one message
  `{"trustwatch": "sweep", "cloud": "azure", "unit": SUBSCRIPTION}` each on the Storage
  queue TRUSTWATCH_SWEEP_QUEUE (an output binding: the host enqueues them when it returns);
- `on_sweep_unit`: the queue trigger that sweeps the subscription a message names
  (`sweep.run_scheduled`). The host runs queue messages in parallel, so one slow
  subscription delays no other. Alerts that no sink accepted raise: the host retries the
  message (maxDequeueCount, 5 by default) and then moves it to `<queue>-poison`; the sweep
  saved nothing, so each retry sends them again. A malformed message is logged and
  acknowledged. Both queue bindings use the app's own storage account (AzureWebJobsStorage).

Failure semantics:
- a malformed or unsupported event or record is logged with its reason and acknowledged
  (a retry would fail the same way);
- a role assignment ARM answers 404 for is gone already: logged as not evaluated;
- an alert no sink accepted, or an ARM read that still fails after the SDK's retries,
  raises. Event Grid then redelivers the event (with backoff, up to the subscription's
  max delivery attempts / TTL) and finally dead-letters it to the blob container.
  Event Hub has no redelivery of its own: the extension checkpoints a partition once an
  invocation ends, failed or not. The `retry` policy below re-runs the failed batch in
  the same instance (the partition waits meanwhile, nothing is checkpointed; should the
  instance die, the batch comes again from the last checkpoint). After the last retry the
  host checkpoints past the batch, so that failure is logged at CRITICAL with the sequence
  numbers to replay; Event Grid delivers the same operations independently, and the
  sweep reads the state itself.

Settings (app settings): the Contract 5 variables, plus TRUSTWATCH_EVENTHUB_NAME,
TRUSTWATCH_EVENTHUB_CONNECTION and TRUSTWATCH_EVENTHUB_CONSUMER_GROUP for the trigger, and
TRUSTWATCH_ARM_ENDPOINT / TRUSTWATCH_ARM_CA_BUNDLE for another cloud's ARM (or a test one).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, List  # noqa: UP035 - see on_activity_log

import azure.functions as func
from trustwatch.changes import EventError
from trustwatch.respond import Outcome, Responder
from trustwatch.runtime import FunctionRuntime

log = logging.getLogger("trustwatch")
app = func.FunctionApp()
runtime = FunctionRuntime("azure", __file__)  # ARM enrichment: trustwatch.azure.enrich

# Retries of a failed Event Hub batch: 10 s doubling to 15 min, about 36 min in all.
EVENTHUB_RETRIES = 8
# The sweep queue's connection: the app's own storage account (deploy/azure makes the queue).
SWEEP_QUEUE_CONNECTION = "AzureWebJobsStorage"


def _runtime() -> Responder:
    """Built on the first event, from the app settings of this instance."""
    return runtime.responder()


@app.event_grid_trigger(arg_name="event")
def on_event_grid(event: func.EventGridEvent) -> None:
    where = f"event grid {event.id}"
    outcome = _runtime().handle(_event_grid_document(event), where)
    _log_outcome(where, outcome)


@app.retry(
    strategy="exponential_backoff",
    max_retry_count=str(EVENTHUB_RETRIES),
    minimum_interval="00:00:10",
    maximum_interval="00:15:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%TRUSTWATCH_EVENTHUB_NAME%",
    connection="TRUSTWATCH_EVENTHUB_CONNECTION",
    consumer_group="%TRUSTWATCH_EVENTHUB_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
)
def on_activity_log(
    # typing.List: the worker's annotation check does not recognize list[...]
    events: List[func.EventHubEvent],  # noqa: UP006
    context: func.Context,
) -> None:
    where = _batch_name(events)
    try:
        # One document for the whole batch: the Start and Success (or Failure) records of
        # an operation often arrive in different events, and are matched up inside one.
        records, unreadable = _activity_log_records(events)
        responder = _runtime()
        for error in unreadable:
            responder.handle(error, where)  # logged and acknowledged
        outcome = responder.handle({"records": records}, where)
    except Exception:
        retry = getattr(context, "retry_context", None)
        # max_retry_count -1 would mean "forever": no last attempt to report
        if retry is not None and 0 <= retry.max_retry_count <= retry.retry_count:
            log.critical(
                "giving up on %s after %d retries: the host checkpoints past it; replay "
                "these events from the hub or rely on the sweep",
                where,
                retry.retry_count,
            )
        raise
    _log_outcome(where, outcome)


@app.timer_trigger(schedule="%TRUSTWATCH_SWEEP_SCHEDULE%", arg_name="timer")
@app.queue_output(
    arg_name="units", queue_name="%TRUSTWATCH_SWEEP_QUEUE%", connection=SWEEP_QUEUE_CONNECTION
)
def on_sweep_schedule(
    timer: func.TimerRequest,
    units: func.Out[List[str]],  # noqa: UP006 - the worker's annotation check
) -> None:
    from trustwatch import sweep

    messages: list[str] = []
    if timer.past_due:
        log.warning("sweep schedule is past due: sweeping now")
    responder = _runtime()
    sweep.run_scheduled(
        sweep.ScheduledSweep(),
        "azure",
        responder.baseline(),
        environ=os.environ,
        store=sweep.sweep_store_from_env(os.environ),
        sender=responder.sender,
        dispatch=lambda message: messages.append(json.dumps(message)),
    )
    units.set(messages)


@app.queue_trigger(
    arg_name="message", queue_name="%TRUSTWATCH_SWEEP_QUEUE%", connection=SWEEP_QUEUE_CONNECTION
)
def on_sweep_unit(message: func.QueueMessage) -> None:
    from trustwatch import sweep

    where = f"sweep queue message {message.id} (dequeued {message.dequeue_count} time(s))"
    try:
        request = sweep.scheduled(message.get_json())
        if request is None or request.unit is None or request.cloud != "azure":
            raise ValueError("not a message to sweep one Azure subscription")
    except ValueError as exc:  # the same message would fail the same way again
        log.error("%s acknowledged, not swept: %s", where, exc)
        return
    responder = _runtime()
    sweep.run_scheduled(
        request,
        "azure",
        responder.baseline(),
        environ=os.environ,
        store=sweep.sweep_store_from_env(os.environ),
        sender=responder.sender,
        dispatch=_no_fan_out,
    )


def _no_fan_out(message: dict[str, str]) -> None:
    raise RuntimeError("a unit sweep dispatches nothing")  # run_scheduled never calls it


def _event_grid_document(event: func.EventGridEvent) -> dict[str, Any]:
    """The event as the JSON trustwatch.azure.events reads (the worker parsed it apart)."""
    if isinstance(event, func.CloudEvent):  # a CloudEvents-schema subscription
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": _iso(event.time),
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": _iso(event.event_time),
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


def _activity_log_records(
    events: List[func.EventHubEvent],  # noqa: UP006
) -> tuple[list[Any], list[EventError]]:
    """Every record of the batch, and an error for each body that is not JSON."""
    records: list[Any] = []
    unreadable: list[EventError] = []
    for event in events:
        body = event.get_body()
        try:
            text = body.decode("utf-8-sig") if isinstance(body, bytes) else str(body)
            doc = json.loads(text, strict=False)
        except (UnicodeDecodeError, ValueError) as exc:
            unreadable.append(EventError(f"event {_event_name(event)}: body is not JSON ({exc})"))
            continue
        if isinstance(doc, dict) and isinstance(doc.get("records"), list):
            records.extend(doc["records"])
        else:
            records.append(doc)  # a lone record; anything else is reported by the parser
    return records, unreadable


def _event_name(event: func.EventHubEvent) -> str:
    return f"sequence {event.sequence_number}" if event.sequence_number is not None else "?"


def _batch_name(events: List[func.EventHubEvent]) -> str:  # noqa: UP006
    """Where the batch sits in the hub: enough to find and replay it."""
    numbers = [e.sequence_number for e in events if e.sequence_number is not None]
    span = f" sequence {min(numbers)}-{max(numbers)}" if numbers else ""
    # For a batch, every event points to the same trigger metadata.
    context = ((events[0].metadata or {}) if events else {}).get("PartitionContext")
    partition = context.get("PartitionId") if isinstance(context, dict) else None
    at = f" partition {partition}" if partition is not None else ""
    return f"event hub batch of {len(events)}{at}{span}"


def _iso(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else ""


def _log_outcome(where: str, outcome: Outcome) -> None:
    log.info(
        "processed %s: %d record(s), %d finding(s), %d sent, %d skipped, %d not evaluated, "
        "%d unprocessable",
        where,
        outcome.records,
        len(outcome.findings),
        len(outcome.sent),
        len(outcome.skipped),
        len(outcome.not_evaluated),
        len(outcome.errors),
    )
