"""Azure intake: every corpus record reads; the delivery shapes; case; stages; bad input.

The builders below (`activity`, `to_rest`, `to_event_grid`, …) make drift records from the
real published records in tests/data/azure (see SOURCES.md there); test_azure_rules.py
uses them too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import DATA, corpus_files
from trustwatch.azure import events
from trustwatch.azure.changes import AccessConnectorIdentity, RoleAssignment
from trustwatch.azure.roles import BUILTIN_ROLES, UnknownRole, normalize_role, role_name
from trustwatch.changes import EventError, Skipped
from trustwatch.engine import evaluate
from trustwatch.intake import detect_cloud, parse_document, read_documents, read_path

# --- identifiers of examples/baseline.yaml ---
SUB = "9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e"
RG = f"/subscriptions/{SUB}/resourceGroups/dbx-prod"
STORAGE = f"{RG}/providers/Microsoft.Storage/storageAccounts/dbxucprod"
CONNECTOR = f"{RG}/providers/Microsoft.Databricks/accessConnectors/uc-connector"
CONNECTOR_PRINCIPAL = "3f2a9c1d-5b6e-4f7a-8b9c-0d1e2f3a4b5c"
TERRAFORM_SP = "6a1d2c3b-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
RESPONDER = "0c7e5a8d-9f41-4b6a-8d2e-51f0a3c9b7e4"
STRANGER = "770797c4-e05a-43f9-bda2-1f1f379987ae"  # the assignee of the Panther record
ALICE = "123abc45-8211-44e3-95xq-85137af64708"  # the user of the Microsoft docs record
ROLE = BUILTIN_ROLES

AZURE_CORPUS = corpus_files("azure")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / "azure" / f"{name}.json").read_text())


def claims(object_id: str = ALICE) -> dict[str, Any]:
    """The Microsoft docs user's token claims, as another principal when asked."""
    base = load("activitylog-eventhub-record-supportticket-write-msdocs")["identity"]["claims"]
    out = copy.deepcopy(base)
    out[events.OBJECT_ID] = object_id
    if object_id != ALICE:  # a service principal: no upn
        out.pop(events.UPN)
        out["appid"] = object_id
    return out


def assignment_request(principal: str, role: str, scope: str) -> dict[str, Any]:
    """The logged `requestbody` of roleAssignments/write (shape of the Panther record)."""
    return {
        "Id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        "Properties": {
            "PrincipalId": principal,
            "PrincipalType": "ServicePrincipal",
            "RoleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "Scope": scope,
        },
    }


def assignment_response(principal: str, role: str, scope: str) -> dict[str, Any]:
    """The ARM response body of a role assignment PUT or DELETE."""
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
            f"roleDefinitions/{role}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
            "scope": scope,
            "condition": None,
            "createdOn": "2026-11-27T10:00:00.0000000Z",
        },
        "id": assignment_id(scope),
        "type": "Microsoft.Authorization/roleAssignments",
        "name": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    }


def assignment_id(scope: str) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/a1b2c3d4-e5f6-7890-abcd-ef1234567890"


def activity(
    operation: str,
    result: str,
    resource_id: str,
    *,
    request: Any = None,
    response: Any = None,
    actor: str = ALICE,
    correlation: str = "f1e2d3c4-b5a6-7890-bcde-f12345678901",
) -> dict[str, Any]:
    """An Event Hub (resource-log schema) record: the Panther record, operation replaced."""
    record = load("activitylog-roleassignments-write-owner-panther-synthetic")
    record.update(
        operationName=operation,
        resultType=result,
        resultSignature={"Start": "Started.", "Success": "Succeeded.OK"}.get(
            result, "Failed.Forbidden"
        ),
        resourceId=resource_id,
        correlationId=correlation,
    )
    record["identity"]["claims"] = claims(actor)
    props: dict[str, Any] = {"statusCode": "OK" if result != "Failure" else "Forbidden"}
    if request is not None:
        props["requestbody"] = json.dumps(request)
    if response is not None:
        props["responseBody"] = json.dumps(response)
    record["properties"] = props
    return record


def assign(principal: str, role: str, scope: str, **kw: Any) -> list[dict[str, Any]]:
    """The Start and Success records of one role assignment write."""
    rid = assignment_id(scope)
    op = "Microsoft.Authorization/roleAssignments/write"
    return [
        activity(op, "Start", rid, request=assignment_request(principal, role, scope), **kw),
        activity(op, "Success", rid, response=assignment_response(principal, role, scope), **kw),
    ]


def unassign(principal: str, role: str, scope: str, **kw: Any) -> list[dict[str, Any]]:
    rid = assignment_id(scope)
    op = "Microsoft.Authorization/roleAssignments/delete"
    return [
        activity(op, "Start", rid, **kw),
        activity(op, "Success", rid, response=assignment_response(principal, role, scope), **kw),
    ]


def connector_body(kind: str | None, principal: str = "", users: dict | None = None) -> dict:
    body: dict[str, Any] = {
        "id": CONNECTOR,
        "name": "uc-connector",
        "type": "Microsoft.Databricks/accessConnectors",
        "location": "eastus2",
        "properties": {"provisioningState": "Succeeded"},
    }
    if kind is not None:
        identity: dict[str, Any] = {"type": kind}
        if principal:
            identity["principalId"] = principal
            identity["tenantId"] = "5e8f1d2c-7a6b-4c3d-9e0f-1a2b3c4d5e6f"
        if users:
            identity["userAssignedIdentities"] = users
        body["identity"] = identity
    return body


def write_connector(response: dict, request: dict | None = None, **kw: Any) -> list[dict]:
    op = "Microsoft.Databricks/accessConnectors/write"
    request = request or {k: v for k, v in response.items() if k in ("location", "identity")}
    request = copy.deepcopy(request)
    for ident in [request.get("identity")] if request.get("identity") else []:
        ident.pop("principalId", None)  # the caller never sends principal ids
        ident.pop("tenantId", None)
    return [
        activity(op, "Start", response["id"], request=request, **kw),
        activity(op, "Success", response["id"], response=response, **kw),
    ]


def delete(operation: str, resource_id: str, **kw: Any) -> list[dict]:
    return [
        activity(operation, "Start", resource_id, **kw),
        activity(operation, "Success", resource_id, **kw),
    ]


# --- delivery shapes ---

_REST_STATUS = {
    "Start": "Started",
    "Success": "Succeeded",
    "Failure": "Failed",
    "Accept": "Accepted",
}


def to_rest(record: dict[str, Any]) -> dict[str, Any]:
    """The same record in the Activity Log REST schema (the Microsoft docs sample)."""
    out = load("activitylog-restapi-nsg-write-msdocs")
    op = record["operationName"]
    out.update(
        authorization={"action": op, "scope": record["resourceId"]},
        caller=record["identity"]["claims"].get(
            events.UPN, record["identity"]["claims"][events.OBJECT_ID]
        ),
        claims=record["identity"]["claims"],
        correlationId=record["correlationId"],
        eventDataId=f"{record['correlationId'][:8]}-{record['resultType']}",
        eventName={"value": "BeginRequest" if record["resultType"] == "Start" else "EndRequest"},
        eventTimestamp=record["time"],
        id=f"{record['resourceId']}/events/{record['correlationId']}/ticks/1",
        operationName={"value": op, "localizedValue": op},
        resourceId=record["resourceId"],
        resourceProviderName={"value": op.split("/")[0]},
        resourceType={"value": "/".join(op.split("/")[:2])},
        status={"value": _REST_STATUS[record["resultType"]]},
        subStatus={"value": record["properties"]["statusCode"]},
        subscriptionId=SUB,
        properties=record["properties"],
    )
    return out


def to_event_grid(record: dict[str, Any]) -> dict[str, Any]:
    """The subscription system topic's event for the same operation: no bodies."""
    op = record["operationName"]
    verb = {"/delete": "Delete", "/action": "Action"}.get(op.lower()[op.rfind("/") :], "Write")
    result = "Success" if record["resultType"] == "Success" else "Failure"
    sample = "resourcedeletesuccess" if verb == "Delete" else "resourcewritesuccess"
    out = load(f"eventgrid-{sample}-storageaccount-msdocs")
    out.update(
        subject=record["resourceId"],
        eventType=f"Microsoft.Resources.Resource{verb}{result}",
        id=f"eg-{record['correlationId']}",
        eventTime=record["time"],
        topic=f"/subscriptions/{SUB}",
    )
    data = out["data"]
    data["authorization"] = {
        "scope": record["resourceId"],
        "action": op,
        "evidence": {"role": "Owner"},
    }
    data["claims"] = record["identity"]["claims"]
    data.update(
        correlationId=record["correlationId"],
        resourceUri=record["resourceId"],
        operationName=op,
        resourceProvider=op.split("/")[0],
        subscriptionId=SUB,
        status="Succeeded" if result == "Success" else "Failed",
    )
    data.pop("httpRequest", None)
    return out


def shout(record: dict[str, Any]) -> dict[str, Any]:
    """As real exports spell it: operationName and resourceId in upper case."""
    out = copy.deepcopy(record)
    out["operationName"] = out["operationName"].upper()
    out["resourceId"] = out["resourceId"].upper()
    return out


def changes_of(doc: Any) -> list:
    out = []
    for parsed in parse_document(doc, "test"):
        assert parsed.error is None, parsed.error
        out.extend(parsed.changes)
    return out


def outcomes(doc: Any) -> list:
    return list(parse_document(doc, "test"))


# --- the corpus ---


@pytest.mark.parametrize("path", AZURE_CORPUS, ids=[p.name for p in AZURE_CORPUS])
def test_every_corpus_record_reads(path, baseline):
    results = [p for where, doc in read_path(path) for p in parse_document(doc, where)]
    assert results
    for parsed in results:
        assert parsed.error is None, parsed.error
        assert parsed.changes or (parsed.skipped is not None and parsed.skipped.reason)
        for change in parsed.changes:
            assert change.cloud == "azure"
            evaluate(change, baseline)  # must not raise


def test_corpus_role_assignment_and_noise():
    kinds = {}
    for path in AZURE_CORPUS:
        for where, doc in read_path(path):
            assert detect_cloud(doc) == "azure", path.name
            for parsed in parse_document(doc, where):
                kinds[path.name] = [c.kind for c in parsed.changes] or parsed.skipped.reason
    write = kinds["activitylog-roleassignments-write-owner-panther-synthetic.json"]
    assert write == ["role_assignment.created"]
    # listKeys (the Elastic ELv2 sample of it, in upper case, is not copied to tests/data;
    # the case-variation tests upper-case the Panther record instead)
    listkeys = kinds["eventgrid-resourceactionsuccess-eventhub-listkeys-msdocs.json"]
    assert "not a watched operation" in listkeys
    assert (
        "not a watched operation"
        in kinds["eventgrid-resourcedeletesuccess-storageaccount-msdocs.json"]
    )


def test_panther_record_reads_body_and_actor_from_evidence():
    (change,) = changes_of(load("activitylog-roleassignments-write-owner-panther-synthetic"))
    assert change.identity == STRANGER
    assert change.name == "Owner"
    assert change.scope == "12345678-1234-1234-1234-123456789abc"
    assignment = change.payload_as(RoleAssignment)
    assert assignment.role == ROLE["Owner"]
    assert assignment.scope == "/subscriptions/12345678-1234-1234-1234-123456789abc"
    # no claims in this record: the authorizing assignment's (user) principal is the actor
    assert change.actor == "6b6d44f0-b13a-46a0-bfde-161324d4c34d"


# --- shapes ---


def test_every_shape_gives_the_same_change():
    start, success = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    docs = {
        "event hub batch": {"records": [success]},
        "single record": success,
        "rest": to_rest(success),
        "rest array": [to_rest(success)],
        "rest value list": {"value": [to_rest(success)]},
        "start record": start,
    }
    seen = {}
    for shape, doc in docs.items():
        assert detect_cloud(doc) == "azure", shape
        (change,) = changes_of(doc)
        seen[shape] = (
            change.kind,
            change.identity,
            change.scope,
            change.payload_as(RoleAssignment).role,
            change.actor,
        )
    assert len(set(seen.values())) == 1, seen
    assert seen["rest"] == (
        "role_assignment.created",
        CONNECTOR_PRINCIPAL,
        SUB,
        ROLE["Owner"],
        "admin@contoso.com",
    )


def test_jsonl_of_records_reads_line_by_line():
    text = "\n".join(json.dumps(r) for r in assign(STRANGER, ROLE["Reader"], RG))
    docs = list(read_documents(text, "f.jsonl"))
    assert [where for where, _ in docs] == ["f.jsonl:line 1", "f.jsonl:line 2"]
    assert [len(changes_of(doc)) for _, doc in docs] == [1, 1]


@pytest.mark.parametrize("as_array", [False, True])
def test_event_grid_role_assignment_needs_enrichment(as_array):
    _, success = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    event = to_event_grid(success)
    (change,) = changes_of([event] if as_array else event)
    assert change.needs_enrichment
    assert change.identity == assignment_id(f"/subscriptions/{SUB}")
    assert change.not_evaluated == "body not in event"
    assert change.actor == "admin@contoso.com"


def test_event_grid_cloudevents_schema_and_validation_event():
    success = delete("Microsoft.Databricks/accessConnectors/delete", CONNECTOR)[1]
    grid = to_event_grid(success)
    cloudevent = {
        "specversion": "1.0",
        "type": grid["eventType"],
        "source": grid["topic"],
        "subject": grid["subject"],
        "id": grid["id"],
        "time": grid["eventTime"],
        "data": grid["data"],
    }
    (a,) = changes_of(grid)
    (b,) = changes_of(cloudevent)
    assert (a.kind, a.identity, a.scope) == (b.kind, b.identity, b.scope)
    assert a.kind == "access_connector.deleted" and not a.needs_enrichment
    validation = {
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": f"/subscriptions/{SUB}",
        "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-11-27T10:00:00Z",
        "dataVersion": "1",
    }
    (parsed,) = outcomes(validation)
    assert "not a resource operation" in parsed.skipped.reason


# --- stages of one operation ---


def test_start_and_success_give_the_same_finding_id(baseline):
    start, success = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    (a,) = evaluate(changes_of(start)[0], baseline)
    (b,) = evaluate(changes_of(success)[0], baseline)
    assert a.id == b.id and a.rule == b.rule == "azure.role_assignment.unexpected"


def test_batch_evaluates_each_operation_on_its_terminal_record():
    start, success = assign(STRANGER, ROLE["Reader"], RG)
    results = outcomes({"records": [start, success]})
    assert "Success record" in results[0].skipped.reason
    assert len(results[1].changes) == 1


def test_batch_drops_a_failed_operation_entirely(baseline):
    start, _ = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    failure = activity(
        "Microsoft.Authorization/roleAssignments/write", "Failure", start["resourceId"]
    )
    results = outcomes({"records": [start, failure]})
    assert "operation failed" in results[0].skipped.reason
    (change,) = results[1].changes
    assert change.failed and change.error_code == "Failed.Forbidden"
    assert evaluate(change, baseline) == []


def test_success_without_body_yields_to_its_start_record():
    start, success = assign(STRANGER, ROLE["Reader"], RG)
    success["properties"].pop("responseBody")
    results = outcomes({"records": [start, success]})
    assert results[0].changes and not results[0].changes[0].needs_enrichment
    assert "Start record" in results[1].skipped.reason


def test_same_correlation_other_resource_is_its_own_operation():
    a = assign(STRANGER, ROLE["Reader"], RG)
    b = assign(STRANGER, ROLE["Reader"], STORAGE)  # one deployment: same correlationId
    results = outcomes({"records": [a[0], b[0], a[1], b[1]]})
    assert [bool(r.changes) for r in results] == [False, False, True, True]


def test_delete_start_and_accept_are_skipped():
    start, _ = delete("Microsoft.Databricks/accessConnectors/delete", CONNECTOR)
    (parsed,) = outcomes(start)
    assert "judged on its Success record" in parsed.skipped.reason
    accept = activity("Microsoft.Databricks/accessConnectors/write", "Accept", CONNECTOR)
    (parsed,) = outcomes(accept)
    assert "accepted" in parsed.skipped.reason


def test_request_body_alone_keeps_principal_ids_unknown():
    start, success = write_connector(connector_body("SystemAssigned", CONNECTOR_PRINCIPAL))
    (before,) = changes_of(start)
    (after,) = changes_of(success)
    requested = before.payload_as(AccessConnectorIdentity)
    assert requested.principal_ids is None and requested.identity_type == "SystemAssigned"
    assert after.payload_as(AccessConnectorIdentity).principal_ids == (CONNECTOR_PRINCIPAL,)


# --- case, GUID and role spellings ---


def test_upper_case_exports_read_the_same():
    _, success = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    (plain,) = changes_of(success)
    (loud,) = changes_of(shout(success))
    assert loud.kind == plain.kind and loud.identity == plain.identity
    assert loud.scope == plain.scope == SUB
    assert loud.event_name == "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"
    deleted = shout(delete("Microsoft.Databricks/accessConnectors/delete", CONNECTOR)[1])
    (change,) = changes_of(deleted)
    assert change.kind == "access_connector.deleted" and change.scope == SUB


def test_upper_case_and_dashless_guids_in_the_body():
    body = assignment_response(
        CONNECTOR_PRINCIPAL.upper(),
        ROLE["Owner"].replace("-", "").upper(),
        f"/SUBSCRIPTIONS/{SUB.upper()}",
    )
    record = activity(
        "Microsoft.Authorization/roleAssignments/write", "Success", body["id"], response=body
    )
    (change,) = changes_of(record)
    assert change.identity == CONNECTOR_PRINCIPAL
    assert change.payload_as(RoleAssignment).role == ROLE["Owner"] and change.name == "Owner"
    assert change.scope == SUB


@pytest.mark.parametrize(
    "ref",
    [
        "Owner",
        "owner",
        "  OWNER ",
        ROLE["Owner"],
        ROLE["Owner"].upper(),
        ROLE["Owner"].replace("-", ""),
        f"/providers/Microsoft.Authorization/roleDefinitions/{ROLE['Owner']}",
        f"/SUBSCRIPTIONS/{SUB}/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEDEFINITIONS/{ROLE['Owner'].upper()}",
    ],
)
def test_normalize_role_spellings(ref):
    assert normalize_role(ref) == "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


def test_role_table_both_ways():
    required = [
        "Owner", "Contributor", "Reader", "User Access Administrator",
        "Storage Blob Data Owner", "Storage Blob Data Contributor", "Storage Blob Data Reader",
        "Storage Queue Data Contributor", "Storage Account Contributor",
        "EventGrid EventSubscription Contributor",
    ]  # fmt: skip
    for name in required:
        assert role_name(normalize_role(name)) == name
    assert (
        normalize_role("ba92f5b4-2d11-453d-a403-e96b0029c9fe")
        == ROLE["Storage Blob Data Contributor"]
    )
    custom = "11111111-2222-3333-4444-555555555555"
    assert role_name(normalize_role(custom)) == custom
    with pytest.raises(UnknownRole, match="unknown Azure role 'Ownr'"):
        normalize_role("Ownr")


# --- actors ---


def test_actor_ids_from_claims():
    _, success = assign(STRANGER, ROLE["Reader"], RG)
    (user,) = changes_of(success)
    assert user.actor == "admin@contoso.com"
    assert {ALICE, "admin@contoso.com", "11112222-bbbb-3333-cccc-4444dddd5555"} <= set(
        user.actor_ids
    )
    _, success = assign(STRANGER, ROLE["Reader"], RG, actor=RESPONDER.upper())
    (sp,) = changes_of(success)
    assert sp.actor == RESPONDER and RESPONDER in sp.actor_ids


# --- what is not drift, and bad input ---


def test_unrelated_and_failed_records():
    (parsed,) = outcomes(load("activitylog-vm-delete-panther-synthetic"))
    assert "not a watched operation" in parsed.skipped.reason
    grid = to_event_grid(assign(STRANGER, ROLE["Reader"], RG)[1])
    grid["eventType"] = "Microsoft.Resources.ResourceWriteFailure"
    (change,) = changes_of(grid)
    assert change.failed and not change.needs_enrichment


def test_unreadable_body_is_not_evaluated():
    start, _ = assign(STRANGER, ROLE["Reader"], RG)
    start["properties"]["requestbody"] = start["properties"]["requestbody"][:40]  # truncated
    (change,) = changes_of(start)
    assert change.needs_enrichment and "not readable JSON" in change.not_evaluated


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(resultType="Sideways"), "resultType 'Sideways'"),
        (lambda r: r.pop("resultType"), "resultType None"),
        (lambda r: r.update(operationName={"value": ""}), "without an operationName"),
        (lambda r: r.update(identity="me"), "identity is a str"),
        (
            lambda r: r.update(properties={"requestbody": '{"Properties": {"Scope": "/"}}'}),
            "without principalId",
        ),
        (lambda r: r.update(properties={"requestbody": '{"Id": "x"}'}), "without 'properties'"),
        (
            lambda r: r.update(
                properties={
                    "requestbody": json.dumps(assignment_request(STRANGER, "not-a-role", RG))
                }
            ),
            "roleDefinitionId unknown Azure role",
        ),
    ],
)
def test_malformed_records_raise_clear_errors(mutate, message):
    start, _ = assign(STRANGER, ROLE["Reader"], RG)
    mutate(start)
    with pytest.raises(EventError, match=message):
        events.parse(start)
    (parsed,) = outcomes(start)  # through intake: an error value, naming the record
    assert parsed.error is not None and str(parsed.error).startswith("test: ")


def test_not_an_azure_document():
    assert not events.recognizes({"Records": []})
    assert not events.recognizes([])
    assert not events.recognizes({"protoPayload": {}, "operationName": "x", "resourceId": "y"})
    vm = load("activitylog-vm-delete-panther-synthetic")["resourceId"]
    grid = to_event_grid(activity("Microsoft.Compute/virtualMachines/delete", "Success", vm))
    assert isinstance(events.parse(grid), Skipped)


def test_event_grid_resource_event_without_operation_is_an_error():
    grid = to_event_grid(delete("Microsoft.Databricks/accessConnectors/delete", CONNECTOR)[1])
    del grid["data"]["operationName"]
    with pytest.raises(EventError, match=r"without data\.operationName"):
        events.parse(grid)


def test_other_categories_are_skipped_whatever_their_shape():
    """ServiceHealth, Alert, Autoscale records carry other results and identity shapes."""
    health = load("activitylog-vm-delete-panther-synthetic")
    health.update(
        operationName="Microsoft.ServiceHealth/incident/action",
        category="ServiceHealth",
        resultType="Active",
        identity="",
    )
    batch = {"records": [health, assign(STRANGER, ROLE["Reader"], RG)[1]]}
    skipped, parsed = outcomes(batch)
    assert "not a watched operation" in skipped.skipped.reason
    assert parsed.changes
