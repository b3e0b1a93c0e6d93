"""The Azure Functions app (v2 programming model): its functions invoked with real
`func.EventGridEvent` / `func.EventHubEvent` objects, the Event Grid ones decoded from JSON
by the library's own trigger converter as the worker does. Alerts land at a local Slack
receiver; Event Grid role assignments are completed by the real azure-mgmt-authorization
client over HTTPS from a local ARM server, signed in through DefaultAzureCredential and the
App Service managed identity endpoint that server also serves."""

from __future__ import annotations

import copy
import datetime
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from armserver import ArmServer, role_assignment
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from conftest import EXAMPLE_BASELINE, ROOT, corpus_files
from test_azure_events import (
    CONNECTOR,
    CONNECTOR_PRINCIPAL,
    ROLE,
    STORAGE,
    SUB,
    assign,
    assignment_id,
    connector_body,
    load,
    to_event_grid,
    unassign,
    write_connector,
)
from trustwatch.alerts import AlertDeliveryError
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply
from trustwatch.azure import enrich
from trustwatch.azure.changes import RoleAssignment
from trustwatch.azure.enrich import arm_enricher
from trustwatch.intake import parse_document

FUNCTIONS = ROOT / "functions" / "azure"
SUBSCRIPTION = f"/subscriptions/{SUB}"
NEW_PRINCIPAL = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
OWNER = ROLE["Owner"]


# --- the function app, as a fresh instance would load it ------------------------------------


@dataclass(frozen=True)
class Retry:
    """The invocation's retry state, as the worker hands it (func.RetryContext)."""

    retry_count: int = 0
    max_retry_count: int = 8


@dataclass(frozen=True)
class Invocation:
    """The parts of func.Context the functions read."""

    retry_context: Retry = Retry()
    invocation_id: str = "inv-1"
    function_name: str = "on_activity_log"


class FunctionApp:
    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.functions = {f.get_function_name(): f for f in module.app.get_functions()}

    def on_event_grid(self, event: Any) -> None:
        self.functions["on_event_grid"].get_user_function()(event)

    def on_activity_log(self, events: list[Any], context: Invocation | None = None) -> None:
        self.functions["on_activity_log"].get_user_function()(events, context or Invocation())


def load_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> FunctionApp:
    """A fresh import of functions/azure/function_app.py with only `env` configured."""
    for key in list(os.environ):
        if key.startswith(("TRUSTWATCH_", "AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(FUNCTIONS))
    sys.modules.pop("function_app", None)
    return FunctionApp(importlib.import_module("function_app"))


@pytest.fixture
def slack() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer() as server:
        yield server


def app_env(slack: RecordingHTTPServer, arm: ArmServer) -> dict[str, str]:
    return {
        "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
        "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
        "TRUSTWATCH_ALERT_ATTEMPTS": "1",
        "TRUSTWATCH_ARM_ENDPOINT": arm.url,
        "TRUSTWATCH_ARM_CA_BUNDLE": arm.ca_bundle,
        **arm.managed_identity_environ(),
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, slack: RecordingHTTPServer, arm: ArmServer) -> FunctionApp:
    return load_app(monkeypatch, app_env(slack, arm))


# --- trigger objects -------------------------------------------------------------------------


def grid_event(doc: dict[str, Any]) -> Any:
    """What the worker hands on_event_grid for this JSON (EventGridEvent or CloudEvent)."""
    return EventGridEventInConverter.decode(
        meta.Datum(json.dumps(doc), "json"), trigger_metadata={}
    )


def as_cloudevent(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": doc["id"],
        "source": doc["topic"],
        "subject": doc["subject"],
        "type": doc["eventType"],
        "time": doc["eventTime"],
        "data": doc["data"],
    }


PARTITION = {
    "PartitionContext": meta.Datum(
        json.dumps(
            {"EventHubName": "activity-log", "ConsumerGroup": "trustwatch", "PartitionId": "3"}
        ),
        "json",
    )
}


def hub_events(*bodies: Any) -> list[func.EventHubEvent]:
    """One Event Hub batch: each body a {"records": [...]} document, or raw bytes."""
    return [
        func.EventHubEvent(
            body=body if isinstance(body, bytes) else json.dumps(body).encode(),
            trigger_metadata=PARTITION,
            sequence_number=100 + n,
            offset=str(4096 * n),
            enqueued_time=datetime.datetime(2026, 11, 27, 10, 0, n, tzinfo=datetime.UTC),
        )
        for n, body in enumerate(bodies)
    ]


def owner_on_subscription(**kw: Any) -> list[dict[str, Any]]:
    """Start + Success: the access connector's identity made Owner of the subscription."""
    return assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION, **kw)


def noise_record() -> dict[str, Any]:
    return load("activitylog-eventhub-record-supportticket-write-msdocs")


def alerts(slack: RecordingHTTPServer) -> list[str]:
    return [json.dumps(r.json()) for r in slack.requests]


# --- the app as the host indexes it -----------------------------------------------------------


def test_functions_are_indexed_with_the_bindings_deploy_sets(app: FunctionApp) -> None:
    assert set(app.functions) == {"on_event_grid", "on_activity_log"}
    (grid,) = json.loads(app.functions["on_event_grid"].get_function_json())["bindings"]
    assert grid["type"] == "eventGridTrigger"
    (hub,) = json.loads(app.functions["on_activity_log"].get_function_json())["bindings"]
    assert hub["type"] == "eventHubTrigger" and hub["cardinality"].lower() == "many"
    # the names the Terraform module's app settings provide
    assert hub["eventHubName"] == "%TRUSTWATCH_EVENTHUB_NAME%"
    assert hub["connection"] == "TRUSTWATCH_EVENTHUB_CONNECTION"
    assert hub["consumerGroup"] == "%TRUSTWATCH_EVENTHUB_CONSUMER_GROUP%"
    retry = app.functions["on_activity_log"].get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff" and int(retry["max_retry_count"]) > 0
    # The worker refuses to load a function whose parameter type its converter rejects.
    for function in app.functions.values():
        hints = typing.get_type_hints(function.get_user_function())
        for binding in function.get_bindings():
            converter = meta._ConverterMeta.get(binding.type)
            assert converter.check_input_type_annotation(hints[binding.name]), binding.name


def test_import_loads_no_enrichment_client() -> None:
    """Cold start: azure-identity and the ARM SDK are imported on the first enrichment."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import function_app; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('azure.identity', 'azure.mgmt', 'msal')))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTWATCH_")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(FUNCTIONS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- Activity Log via Event Hub -----------------------------------------------------------------


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(lambda ops: [{"records": [noise_record(), ops[1]]}], id="success record"),
        pytest.param(lambda ops: [{"records": ops}], id="start+success in one event"),
        pytest.param(
            lambda ops: [{"records": [ops[0], noise_record()]}, {"records": [ops[1]]}],
            id="start+success in two events",
        ),
    ],
)
def test_activity_log_drift_alerts_once(app: FunctionApp, slack: RecordingHTTPServer, arm, batch):
    app.on_activity_log(hub_events(*batch(owner_on_subscription())))
    (alert,) = alerts(slack)
    assert "azure.role_assignment.unexpected" in alert
    assert CONNECTOR_PRINCIPAL in alert and "Owner" in alert
    # The Activity Log carries the body: nothing to fetch for the rules. The one read is
    # the remediation plan's (alert mode shows what would be done): never a write.
    assert [r.method for r in arm.requests] == ["GET"]


def test_activity_log_failed_operation_is_not_reported(app: FunctionApp, slack) -> None:
    start, success = owner_on_subscription()
    failure = {**success, "resultType": "Failure", "resultSignature": "Failed.Forbidden"}
    app.on_activity_log(hub_events({"records": [start]}, {"records": [failure]}))
    assert slack.requests == []


def test_activity_log_unreadable_events_are_acknowledged(app, slack, caplog) -> None:
    broken = copy.deepcopy(owner_on_subscription()[1])
    broken["resultType"] = "Finished?"
    app.on_activity_log(hub_events(b"\xff\xfe not json", {"records": [broken]}, b"[1, 2]"))
    assert slack.requests == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("sequence 100: body is not JSON" in e for e in errors)
    assert any("resultType 'Finished?'" in e for e in errors)
    assert any("partition 3 sequence 100-102" in e for e in errors)


def test_activity_log_bad_records_in_the_middle_do_not_hide_the_others(app, slack, caplog):
    """One Event Hub batch: drift, then a number, a type-confused record and an unknown
    shape, then drift on another scope. Both drifts alert; each bad record is logged with
    its index in the batch, and the batch is acknowledged (no retry of the whole batch)."""
    on_subscription = owner_on_subscription()
    group = f"{SUBSCRIPTION}/resourceGroups/dbx-prod"
    on_group = assign(CONNECTOR_PRINCIPAL, OWNER, group, correlation=str(uuid.uuid4()))
    confused = copy.deepcopy(on_subscription[1]) | {"identity": 7, "correlationId": "c-2"}
    app.on_activity_log(
        hub_events(
            {"records": on_subscription},
            {"records": [42, confused, {"hello": "world"}]},
            {"records": on_group},
        )
    )
    sent = alerts(slack)
    assert len(sent) == 2 and all("azure.role_assignment.unexpected" in a for a in sent)
    assert any(group.lower() in a.lower() for a in sent)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("record 2: an Activity Log record must be an object, got int" in e for e in errors)
    assert any("record 3: identity is a int, expected an object" in e for e in errors)
    assert any("record 4: Activity Log record without an operationName" in e for e in errors)
    assert not any("internal error" in e for e in errors)


def test_activity_log_alert_failure_raises_then_the_retry_alerts(app, slack, caplog) -> None:
    slack.reply(Reply(status=500))
    batch = hub_events({"records": owner_on_subscription()})
    with pytest.raises(AlertDeliveryError):
        app.on_activity_log(batch, Invocation(Retry(retry_count=0)))
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    app.on_activity_log(batch, Invocation(Retry(retry_count=1)))  # the host's retry
    assert len(slack.requests) == 2
    assert "azure.role_assignment.unexpected" in alerts(slack)[-1]


def test_activity_log_last_retry_failing_is_logged_for_replay(app, slack, caplog) -> None:
    slack.reply(Reply(status=500))
    with pytest.raises(AlertDeliveryError):
        app.on_activity_log(
            hub_events({"records": owner_on_subscription()}), Invocation(Retry(8, 8))
        )
    (giving_up,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "partition 3 sequence 100-100" in giving_up and "replay" in giving_up


# --- Event Grid, enriched from ARM ---------------------------------------------------------------


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_event_grid_role_assignment_is_read_from_arm_and_alerts(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer, schema: str
) -> None:
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    doc = to_event_grid(owner_on_subscription()[1])
    event = grid_event(doc if schema == "eventgrid" else as_cloudevent(doc))
    assert isinstance(event, func.CloudEvent if schema == "cloudevents" else func.EventGridEvent)
    app.on_event_grid(event)
    (alert,) = alerts(slack)
    assert "azure.role_assignment.unexpected" in alert and CONNECTOR_PRINCIPAL in alert
    # GETs of the assignment (the enrichment, then the remediation plan's re-read: alert
    # mode shows what would be done), over HTTPS, with the managed identity's token
    assert len(arm.requests) == 2
    for request in arm.requests:
        assert request.method == "GET" and request.path == rid and request.query["api-version"]
        assert request.headers["authorization"] == f"Bearer {arm.token}"
        assert "azure-mgmt-authorization" in request.headers["user-agent"]
    assert arm.token_requests  # the enricher's and the remediator's credential
    for token in arm.token_requests:
        assert token.headers["x-identity-header"] == arm.identity_header
        assert token.query["resource"] == arm.url  # the token's audience is the ARM endpoint


def test_event_grid_assignment_already_deleted_is_not_evaluated(app, slack, arm, caplog) -> None:
    app.on_event_grid(grid_event(to_event_grid(owner_on_subscription()[1])))
    assert slack.requests == []
    assert len(arm.requests) == 1
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not evaluated: role assignment already deleted (404)" in n for n in notes)


def test_event_grid_assignment_delete_is_not_fetched(app, slack, arm, caplog) -> None:
    record = unassign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)[1]
    app.on_event_grid(grid_event(to_event_grid(record)))
    assert slack.requests == [] and arm.requests == []
    assert any("cannot be read back" in r.getMessage() for r in caplog.records)


def test_event_grid_access_connector_identity_replaced(app, slack, arm) -> None:
    body = connector_body("SystemAssigned", NEW_PRINCIPAL)
    arm.resources[CONNECTOR] = body
    app.on_event_grid(grid_event(to_event_grid(write_connector(body)[1])))
    (alert,) = alerts(slack)
    assert "azure.identity.changed" in alert and NEW_PRINCIPAL in alert
    (request,) = arm.requests
    assert request.path == CONNECTOR
    assert request.query["api-version"] == enrich.ACCESS_CONNECTOR_API_VERSION


def test_event_grid_noise_is_acknowledged_without_arm_read(app, slack, arm) -> None:
    for name in ("resourcedeletesuccess", "resourceactionsuccess"):
        (path,) = (p for p in corpus_files("azure") if p.name.startswith(f"eventgrid-{name}-"))
        app.on_event_grid(grid_event(json.loads(path.read_text())))
    assert slack.requests == [] and arm.requests == []
    # a storage account write is watched since issue 15: the account is read (the enricher
    # does not know the baseline), and an account ARM does not know is not evaluated
    (path,) = (p for p in corpus_files("azure") if p.name.startswith("eventgrid-resourcewrite"))
    app.on_event_grid(grid_event(json.loads(path.read_text())))
    assert slack.requests == [] and len(arm.requests) == 1


def test_event_grid_malformed_event_is_acknowledged(app, slack, arm, caplog) -> None:
    doc = to_event_grid(owner_on_subscription()[1])
    del doc["data"]["operationName"]
    app.on_event_grid(grid_event(doc))
    assert slack.requests == [] and arm.requests == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("without data.operationName" in e for e in errors)


def test_event_grid_alert_failure_raises_so_event_grid_redelivers(app, slack, arm) -> None:
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    slack.reply(Reply(status=500))
    event = grid_event(to_event_grid(owner_on_subscription()[1]))
    with pytest.raises(AlertDeliveryError):
        app.on_event_grid(event)
    app.on_event_grid(event)  # the redelivery alerts: the failed claim was released
    assert len(slack.requests) == 2


def test_event_grid_arm_refusal_raises_so_event_grid_redelivers(app, slack, arm) -> None:
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    arm.fail(403)  # e.g. the Reader assignment not replicated yet; not retried in-process
    event = grid_event(to_event_grid(owner_on_subscription()[1]))
    with pytest.raises(HttpResponseError) as raised:
        app.on_event_grid(event)
    assert raised.value.status_code == 403 and slack.requests == []
    app.on_event_grid(event)
    assert len(slack.requests) == 1


def test_event_grid_throttled_arm_read_is_retried_by_the_sdk(app, slack, arm) -> None:
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    arm.fail(429, headers={"Retry-After": "0"})
    app.on_event_grid(grid_event(to_event_grid(owner_on_subscription()[1])))
    # the throttled GET, its retry, then the remediation plan's re-read (alert mode)
    assert len(arm.requests) == 3 and len(slack.requests) == 1


def test_event_grid_redelivery_alerts_once_across_instances(
    monkeypatch, slack, arm, azurite_table
) -> None:
    """At-least-once delivery with the Azure Table dedup store shared by instances."""
    scope = f"{SUBSCRIPTION}/resourceGroups/rg-{uuid.uuid4().hex[:12]}"  # a finding of its own
    rid = assignment_id(scope)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    doc = to_event_grid(assign(CONNECTOR_PRINCIPAL, OWNER, scope)[1])
    env = {**app_env(slack, arm), "TRUSTWATCH_STATE_URL": azurite_table.connection_string}
    load_app(monkeypatch, env).on_event_grid(grid_event(doc))
    load_app(monkeypatch, env).on_event_grid(grid_event(doc))  # a new instance, same event
    assert len(slack.requests) == 1


# --- the enricher on its own, with a plain TokenCredential -----------------------------------


class StaticCredential:
    """A TokenCredential: hands out one token and records the scopes asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def needs_enrichment(records: list[dict[str, Any]]) -> Any:
    (parsed,) = parse_document(to_event_grid(records[1]), "test")
    (change,) = parsed.changes
    assert change.needs_enrichment
    return change


def test_enricher_completes_a_role_assignment(arm: ArmServer) -> None:
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, CONNECTOR_PRINCIPAL, OWNER)
    credential = StaticCredential(arm.token)
    enricher = arm_enricher(
        credential=credential, base_url=arm.url, connection_verify=arm.ca_bundle
    )
    change = enricher(needs_enrichment(owner_on_subscription()))
    assert not isinstance(change, str) and not change.needs_enrichment
    assert change.identity == CONNECTOR_PRINCIPAL and change.name == "Owner"
    assignment = change.payload_as(RoleAssignment)
    assert assignment.scope == SUBSCRIPTION and assignment.assignment_id == rid
    assert credential.scopes == [(f"{arm.url}/.default",)]


def test_enricher_reasons_for_what_arm_cannot_give(arm: ArmServer) -> None:
    enricher = arm_enricher(
        credential=StaticCredential(arm.token), base_url=arm.url, connection_verify=arm.ca_bundle
    )
    assert enricher(needs_enrichment(owner_on_subscription())) == enrich.ASSIGNMENT_DELETED
    connector = write_connector(connector_body("SystemAssigned", NEW_PRINCIPAL))
    assert enricher(needs_enrichment(connector)) == enrich.CONNECTOR_DELETED
    unassigned = unassign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    assert enricher(needs_enrichment(unassigned)) == enrich.DELETE_NOT_READABLE
    assert [r.path for r in arm.requests] == [assignment_id(SUBSCRIPTION), CONNECTOR]
    arm.resources[assignment_id(SUBSCRIPTION)] = {"id": assignment_id(SUBSCRIPTION)}
    reason = enricher(needs_enrichment(owner_on_subscription()))
    assert isinstance(reason, str) and "without 'properties'" in reason


def test_enricher_raises_when_arm_keeps_failing(arm: ArmServer) -> None:
    arm.fail(503, times=2)
    enricher = arm_enricher(
        credential=StaticCredential(arm.token),
        base_url=arm.url,
        connection_verify=arm.ca_bundle,
        retry_total=1,
    )
    with pytest.raises(HttpResponseError) as raised:
        enricher(needs_enrichment(owner_on_subscription()))
    assert raised.value.status_code == 503 and len(arm.requests) == 2


def test_enricher_verifies_the_server_certificate(arm: ArmServer) -> None:
    enricher = arm_enricher(credential=StaticCredential(arm.token), base_url=arm.url, retry_total=0)
    with pytest.raises(ServiceRequestError, match=r"(?i)certificate"):
        enricher(needs_enrichment(owner_on_subscription()))


# --- storage accounts and Entra ID audit records (issue 15) ----------------------------------


@pytest.fixture
def surface_app(
    monkeypatch: pytest.MonkeyPatch, slack: RecordingHTTPServer, arm: ArmServer, tmp_path
) -> FunctionApp:
    """The app with a baseline watching the UC storage account and the Terraform SP's
    Entra objects (test_azure_storage_entra's baseline)."""
    import yaml
    from test_azure_storage_entra import APP_ID, APP_OBJECT

    data = yaml.safe_load(EXAMPLE_BASELINE.read_text())
    sub = data["azure"]["subscriptions"][SUB]
    sub["storage_accounts"] = {
        "dbxucprod": {"allow_shared_key_access": False, "network_default_action": "Deny"}
    }
    sub["identities"]["terraform-sp"] |= {
        "application_id": APP_ID,
        "application_object_id": APP_OBJECT,
    }
    path = tmp_path / "baseline.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_app(monkeypatch, {**app_env(slack, arm), "TRUSTWATCH_BASELINE": str(path)})


def test_activity_log_hub_carries_entra_audit_records(surface_app, slack, arm) -> None:
    """The tenant's diagnostic setting writes `{"records": [...]}` of AuditLogs to the same
    hub; one event may also hold a lone record. Both reach the rules through
    on_activity_log, beside the Activity Log's own records."""
    from test_azure_storage_entra import named, record

    secret = record("a secret added to its application")
    owner_added = record("an owner added to its application")
    refused = record("a refused credential addition")
    unrelated = record("a secret added to an unrelated service principal")
    listed = named("keys listed by a stranger").records
    surface_app.on_activity_log(
        hub_events({"records": [secret, refused, unrelated]}, owner_added, {"records": listed})
    )
    sent = alerts(slack)
    assert len(sent) == 3
    for rule in ("azure.sp.credential_added", "azure.sp.owner_added", "azure.storage.keys_listed"):
        assert sum(rule in a for a in sent) == 1, (rule, sent)
    assert arm.requests == []


def test_event_grid_storage_write_is_read_from_arm_and_alerts(surface_app, slack, arm) -> None:
    from test_azure_storage_entra import named

    case = named("shared key access re-enabled")
    assert case.resource is not None
    arm.resources[STORAGE] = case.resource
    surface_app.on_event_grid(grid_event(to_event_grid(case.records[-1])))
    (alert,) = alerts(slack)
    assert "azure.storage.shared_key_enabled" in alert
    (request,) = arm.requests
    assert request.path == STORAGE
    assert request.query["api-version"] == enrich.STORAGE_API_VERSION


def test_event_grid_storage_write_at_the_baseline_is_quiet(surface_app, slack, arm) -> None:
    from test_azure_storage_entra import account, named

    arm.resources[STORAGE] = account()
    tags_only = named("tags only: the PATCH leaves the settings as they were")
    surface_app.on_event_grid(grid_event(to_event_grid(tags_only.records[-1])))
    assert slack.requests == [] and len(arm.requests) == 1


def test_event_grid_storage_account_already_deleted_is_not_evaluated(
    surface_app, slack, arm, caplog
) -> None:
    from test_azure_storage_entra import named

    opened = named("blob public access allowed")
    with caplog.at_level(logging.INFO, logger="trustwatch"):
        surface_app.on_event_grid(grid_event(to_event_grid(opened.records[-1])))
    assert slack.requests == []
    assert any(enrich.STORAGE_DELETED in r.getMessage() for r in caplog.records)
