"""The Azure function's scheduled sweep: `on_sweep_schedule` (timer trigger, queue output)
fans out one message per subscription, `on_sweep_unit` (queue trigger) sweeps one. Invoked
with real `azure.functions` objects (TimerRequest, QueueMessage, an Out the worker's queue
converter encodes), against the HTTPS ARM stand-in (role assignments, connector, federated
credentials, the Activity Log), alerts at a local Slack receiver, the sweep and dedup
state in SQLite.

Azure semantics relied on: a timer trigger's schedule may name an app setting
(`%NAME%`), and a queue output binding set to a list enqueues one message per item
("Timer trigger for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-timer;
"Azure Queue storage output bindings for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-output);
a queue message whose function fails is retried up to maxDequeueCount times, then moved
to the poison queue ("Azure Queue storage trigger for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger).
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import yaml
from armserver import ArmServer
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter
from azure.functions.timer import TimerRequestConverter
from test_azure_events import assign
from test_function_azure import FunctionApp, load_app
from test_state_azure import (
    BASELINE,
    ROLE,
    STRANGER,
    SUB,
    UAMI,
    _add,
    _add_credential,
    clean_state,
    credential,
    rest,
)
from trustwatch.alerts.receivers import RecordingHTTPServer
from trustwatch.sweep import unit_message

SECOND_SUB = "1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5"


class Captured(func.Out[typing.List[str]]):  # noqa: UP006 - as the function declares it
    """What the worker hands an output binding: set() once, get() what was set."""

    def __init__(self) -> None:
        self._value: list[str] | None = None

    def set(self, val: list[str]) -> None:
        self._value = val

    def get(self) -> list[str]:
        assert self._value is not None, "the output binding was never set"
        return self._value


@pytest.fixture
def slack() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer() as server:
        clean_state(server)
        yield server


@pytest.fixture
def baseline_file(tmp_path: Path) -> Path:
    """The sweep baseline with a second, empty subscription (two units to fan out)."""
    doc = yaml.safe_load(BASELINE.read_text())
    doc["azure"]["subscriptions"][SECOND_SUB] = {}
    path = tmp_path / "baseline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def env(
    tmp_path: Path, baseline_file: Path, slack: RecordingHTTPServer, arm: ArmServer
) -> dict[str, str]:
    return {
        "TRUSTWATCH_BASELINE": str(baseline_file),
        "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
        "TRUSTWATCH_ALERT_ATTEMPTS": "1",
        "TRUSTWATCH_ARM_ENDPOINT": arm.url,
        "TRUSTWATCH_ARM_CA_BUNDLE": arm.ca_bundle,
        "TRUSTWATCH_STATE_URL": f"sqlite://{tmp_path / 'state.sqlite'}",
        **arm.managed_identity_environ(),
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> FunctionApp:
    return load_app(monkeypatch, env)


def on_schedule(app: FunctionApp, *, past_due: bool = False) -> list[str]:
    """Invoke the timer function as the worker does: the host's timer JSON, decoded."""
    timer = TimerRequestConverter.decode(
        meta.Datum(json.dumps({"Schedule": {"AdjustForDST": True}, "IsPastDue": past_due}), "json"),
        trigger_metadata={},
    )
    units = Captured()
    app.functions["on_sweep_schedule"].get_user_function()(timer, units)
    return units.get()


def on_unit(app: FunctionApp, body: str | bytes, *, dequeued: int = 1) -> None:
    """Invoke the queue function with the message as the worker decodes it."""
    data = meta.Datum(body, "bytes" if isinstance(body, bytes) else "string")
    metadata = {
        "Id": meta.Datum(f"m-{dequeued}", "string"),
        "DequeueCount": meta.Datum(dequeued, "int"),
        "PopReceipt": meta.Datum("AgAAAAMAAAAAAAAA", "string"),
    }
    message = QueueMessageInConverter.decode(data, trigger_metadata=metadata)
    app.functions["on_sweep_unit"].get_user_function()(message)


def unit(sub: str = SUB) -> str:
    return json.dumps(unit_message("azure", sub))


def slack_texts(slack: RecordingHTTPServer) -> list[str]:
    return [json.dumps(r.json()) for r in slack.requests]


def digests(slack: RecordingHTTPServer) -> list[str]:
    return [t for t in slack_texts(slack) if "trustwatch sweep of azure" in t]


def finding_alerts(slack: RecordingHTTPServer) -> list[str]:
    return [t for t in slack_texts(slack) if "trustwatch sweep of azure" not in t]


def finding_id(alert: str) -> str:
    found = re.search(r"finding `([0-9a-f]+)`", alert)
    assert found is not None, alert
    return found[1]


def test_sweep_functions_are_indexed_with_the_bindings_deploy_sets(app: FunctionApp) -> None:
    bindings = json.loads(app.functions["on_sweep_schedule"].get_function_json())["bindings"]
    (timer,) = [b for b in bindings if b["type"] == "timerTrigger"]
    (out,) = [b for b in bindings if b["type"] == "queue"]
    assert timer["schedule"] == "%TRUSTWATCH_SWEEP_SCHEDULE%"
    assert out["type"] == "queue" and out["direction"].lower() == "out"
    (trigger,) = json.loads(app.functions["on_sweep_unit"].get_function_json())["bindings"]
    assert trigger["type"] == "queueTrigger"
    for binding in (out, trigger):
        assert binding["queueName"] == "%TRUSTWATCH_SWEEP_QUEUE%"
        assert binding["connection"] == "AzureWebJobsStorage"
    # the worker refuses a function whose parameter types its converters reject
    for name in ("on_sweep_schedule", "on_sweep_unit"):
        function = app.functions[name]
        hints = typing.get_type_hints(function.get_user_function())
        for binding in function.get_bindings():
            converter = meta._ConverterMeta.get(binding.type)
            hint = hints[binding.name]
            if typing.get_origin(hint) is func.Out:
                (inner,) = typing.get_args(hint)
                assert converter.check_output_type_annotation(inner), binding.name
            else:
                assert converter.check_input_type_annotation(hint), binding.name


def test_the_schedule_fans_out_one_message_per_subscription(
    app: FunctionApp, arm: ArmServer, slack: RecordingHTTPServer
) -> None:
    messages = on_schedule(app)
    assert [json.loads(m) for m in messages] == [
        unit_message("azure", SUB),
        unit_message("azure", SECOND_SUB),
    ]
    # what the host receives from the binding: one queue message per item
    datum = QueueMessageOutConverter.encode(messages, expected_type=None)
    assert datum.type == "json" and json.loads(datum.value) == messages
    assert arm.requests == [] and slack.requests == []  # fanning out reads nothing


def test_a_unit_sweep_alerts_what_is_new_then_only_what_changed(
    app: FunctionApp, arm: ArmServer, slack: RecordingHTTPServer
) -> None:
    owner = (STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}")
    _add(owner)(arm)  # drift no event reported
    on_unit(app, unit())
    (alert,) = finding_alerts(slack)
    assert "azure.role_assignment.protected_scope" in alert and STRANGER in alert
    (digest,) = digests(slack)
    assert "1 new, 0 resolved, 0 still open" in digest
    assert any(r.path.endswith("/roleAssignments") for r in arm.requests)

    slack.requests.clear()
    on_unit(app, unit(), dequeued=1)  # the next period, nothing changed: quiet
    assert slack.requests == []

    arm.state.role_assignments = [
        a for a in arm.state.role_assignments if a["properties"]["principalId"] != STRANGER
    ]
    clean_state(arm)  # put back what the baseline expects: the Owner is gone
    on_unit(app, unit())
    (resolved,) = finding_alerts(slack)
    assert finding_id(resolved) == finding_id(alert)  # its resolution, alerted once
    (digest,) = digests(slack)
    assert "0 new, 1 resolved, 0 still open" in digest


def test_catch_up_turns_a_lost_event_into_one_alert(
    app: FunctionApp, arm: ArmServer, slack: RecordingHTTPServer
) -> None:
    """A federated credential added and removed again while no event reached the function:
    the state shows nothing, the Activity Log shows the write."""
    _add_credential(arm)
    written = credential(
        "gh", "https://token.actions.githubusercontent.com", "repo:evil/x:ref:main"
    )
    arm.state.federated_credentials[UAMI] = []  # gone again by the sweep
    operation = (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
    )
    records = rest(
        assign(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"),
        datetime.now(UTC) - timedelta(minutes=2),  # inside the next sweep's overlap too
        "c-lost-fic",
    )
    for record in records:
        record["operationName"] = {"value": operation, "localizedValue": operation}
        record["resourceProviderName"] = {"value": "Microsoft.ManagedIdentity"}
        record["resourceId"] = written["id"]
        record["authorization"] = {"action": operation, "scope": written["id"]}
    arm.state.activity_log = records
    on_unit(app, unit())
    (alert,) = finding_alerts(slack)
    assert "azure.identity.federated_credential_added" in alert
    assert len(digests(slack)) == 0  # nothing new in the state, nothing resolved, no error

    slack.requests.clear()
    on_unit(app, unit())  # reads the same record again (the overlap): dedup drops it
    assert slack.requests == []
    activity = [r for r in arm.requests if r.path.endswith("/eventtypes/management/values")]
    assert activity and all("eventTimestamp ge" in r.query["$filter"] for r in activity)


def test_catch_up_and_state_of_one_drift_alert_once(
    app: FunctionApp, arm: ArmServer, slack: RecordingHTTPServer
) -> None:
    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    arm.state.activity_log = rest(
        assign(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"),
        datetime.now(UTC) - timedelta(minutes=10),
        "c-lost-owner",
    )
    on_unit(app, unit())
    (alert,) = finding_alerts(slack)
    assert "azure.role_assignment.protected_scope" in alert


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"trustwatch": "sweep"}),  # a fan-out message does not belong on the queue
        json.dumps({"trustwatch": "sweep", "cloud": "gcp", "unit": "p"}),
        json.dumps({"trustwatch": "sweep", "cloud": "azure", "unit": SUB, "x": 1}),
        json.dumps({"records": []}),
    ],
)
def test_a_malformed_queue_message_is_acknowledged(
    app: FunctionApp,
    arm: ArmServer,
    slack: RecordingHTTPServer,
    body: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    on_unit(app, body)  # returns: the host deletes the message
    assert arm.requests == [] and slack.requests == []
    assert "acknowledged, not swept" in caplog.text


def test_alerts_no_sink_accepted_raise_so_the_host_retries(
    app: FunctionApp, arm: ArmServer, slack: RecordingHTTPServer
) -> None:
    from trustwatch.alerts.receivers import Reply

    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    slack.reply(Reply(status=500))
    with pytest.raises(RuntimeError, match="alerts failed"):
        on_unit(app, unit())
    slack.requests.clear()
    on_unit(app, unit(), dequeued=2)  # the retry: nothing was saved, so it alerts now
    (alert,) = finding_alerts(slack)
    assert "azure.role_assignment.protected_scope" in alert
