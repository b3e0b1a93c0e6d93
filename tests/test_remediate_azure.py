"""Azure remediation: role assignments the baseline does not list are deleted and verified.

The real azure-mgmt-authorization client talks HTTPS to the ARM stand-in (tests/armserver.py);
the function tests go through functions/azure/function_app.py (`on_activity_log`,
`on_event_grid`) with real `azure.functions` objects and the App Service managed identity
endpoint, alerts landing at a local Slack receiver; the CLI runs `trustwatch remediate`.

Azure semantics relied on:
- DELETE of a role assignment by id answers 200 with the deleted assignment, 204 when there
  was none; a GET of a deleted one answers 404 RoleAssignmentNotFound ("Remove Azure role
  assignments", REST,
  https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-remove;
  "Role Assignments - Delete By Id",
  https://learn.microsoft.com/en-us/rest/api/authorization/role-assignments/delete-by-id);
- throttled ARM requests answer 429 with Retry-After ("Understand how Azure Resource
  Manager throttles requests",
  https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling);
- a caller without the permission gets 403 AuthorizationFailed ("Troubleshoot Azure RBAC",
  https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting);
- resource ids are case-insensitive, and Activity Log exports often upper-case them
  ("Naming rules and restrictions for Azure resources",
  https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from armserver import ArmServer, role_assignment
from conftest import EXAMPLE_BASELINE, ROOT
from test_azure_attack_paths import federated
from test_azure_events import (
    ALICE,
    CONNECTOR_PRINCIPAL,
    RESPONDER,
    ROLE,
    STRANGER,
    SUB,
    TERRAFORM_SP,
    assign,
    assignment_id,
    load,
    shout,
    to_event_grid,
    to_rest,
    unassign,
)
from test_function_azure import (
    FunctionApp,
    StaticCredential,
    app_env,
    grid_event,
    hub_events,
    load_app,
    needs_enrichment,
)
from trustwatch import cli
from trustwatch.alerts.receivers import RecordingHTTPServer
from trustwatch.azure import remediate as azure_remediate
from trustwatch.azure.enrich import arm_enricher
from trustwatch.azure.remediate import ALREADY_DELETED, AzureRemediator, arm_remediator
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.dedup import MemoryDedupStore
from trustwatch.engine import evaluate
from trustwatch.findings import Finding
from trustwatch.intake import parse_document
from trustwatch.remediation import CIRCUIT_RULE, Breaker, NothingToDo, Plan, remediate

REMEDIATE_BASELINE = ROOT / "tests" / "data" / "baselines" / "azure-remediate.yaml"
SUBSCRIPTION = f"/subscriptions/{SUB}"
RG = f"{SUBSCRIPTION}/resourceGroups/dbx-prod"
STORAGE = f"{RG}/providers/Microsoft.Storage/storageAccounts/dbxucprod"
OWNER = ROLE["Owner"]
READER = ROLE["Reader"]
BLOB_CONTRIBUTOR = ROLE["Storage Blob Data Contributor"]
AUTHORIZATION_FAILED = (
    f"The client '{RESPONDER}' with object id '{RESPONDER}' does not have authorization to "
    "perform action 'Microsoft.Authorization/roleAssignments/delete' over scope "
    f"'{SUBSCRIPTION}' or the scope is invalid."
)


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def strict() -> Baseline:
    return load_baseline(REMEDIATE_BASELINE)


def remediator(arm: ArmServer, **options: Any) -> AzureRemediator:
    return arm_remediator(
        credential=StaticCredential(arm.token),
        base_url=arm.url,
        connection_verify=arm.ca_bundle,
        **options,
    )


def findings_of(records: list[dict[str, Any]], baseline: Baseline) -> list[Finding]:
    out = []
    for parsed in parse_document({"records": records}, "test"):
        assert parsed.error is None, parsed.error
        for change in parsed.changes:
            out.extend(evaluate(change, baseline))
    return out


def granted(arm: ArmServer, principal: str, role: str, scope: str) -> str:
    """The assignment exists in ARM; its id."""
    rid = assignment_id(scope)
    arm.resources[rid] = role_assignment(rid, principal, role)
    return rid


def only(findings: list[Finding], rule: str) -> Finding:
    (finding,) = [f for f in findings if f.rule == rule]
    return finding


def put_back(
    findings: list[Finding], baseline: Baseline, arm: ArmServer, *, apply: bool = True
) -> list[Finding]:
    fixer = remediator(arm)
    return remediate(findings, baseline, lambda _cloud: fixer, apply=apply)


# --- the plan and its put-back, with the real client ----------------------------------------


def test_unexpected_assignment_is_deleted_and_verified(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    (finding,) = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    assert finding.rule == "azure.role_assignment.unexpected"
    assert finding.actual["assignment_id"] == rid  # the full resource id, from the record
    (done,) = put_back([finding], strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert done.remediation.action == "delete_role_assignment"
    assert done.remediation.target == rid
    assert done.remediation.before == {
        "principal_id": CONNECTOR_PRINCIPAL,
        "role": "Owner",
        "role_id": OWNER,
        "scope": SUBSCRIPTION,
    }
    assert done.remediation.after is None
    assert done.remediation.detail.startswith("verified; delete_role_assignment on " + rid)
    # re-read, delete, read back (404): with the SDK, by id, with an api-version
    assert [(r.method, r.path) for r in arm.requests] == [
        ("GET", rid),
        ("DELETE", rid),
        ("GET", rid),
    ]
    assert all(r.query["api-version"] for r in arm.requests)
    assert "azure-mgmt-authorization" in arm.requests[1].headers["user-agent"]
    assert rid not in arm.resources
    shown = json.loads(done.to_json())["remediation"]
    assert shown["target"] == rid and shown["before"]["role"] == "Owner"


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda records: {"records": records}, id="event hub records"),
        pytest.param(lambda records: {"value": [to_rest(r) for r in records]}, id="REST schema"),
        pytest.param(lambda records: {"records": [shout(r) for r in records]}, id="upper case"),
    ],
)
def test_every_activity_log_shape_names_the_assignment(shape: Any, strict: Baseline) -> None:
    """What the plan reads back: the assignment's full resource id, from every shape."""
    rid = assignment_id(SUBSCRIPTION)
    changes = [
        change
        for parsed in parse_document(shape(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)), "t")
        for change in parsed.changes
    ]
    (finding,) = [f for change in changes for f in evaluate(change, strict)]
    assert finding.actual["assignment_id"].lower() == rid.lower()


def test_enriched_event_grid_event_names_the_assignment(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    enricher = arm_enricher(
        credential=StaticCredential(arm.token), base_url=arm.url, connection_verify=arm.ca_bundle
    )
    change = enricher(needs_enrichment(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)))
    assert not isinstance(change, str)
    (finding,) = evaluate(change, strict)
    assert finding.actual["assignment_id"] == rid


def test_stranger_at_a_protected_scope_is_deleted(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, STRANGER, READER, STORAGE)
    finding = only(
        findings_of(assign(STRANGER, READER, STORAGE), strict),
        "azure.role_assignment.protected_scope",
    )
    (done,) = put_back([finding], strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert arm.calls("DELETE", rid) == 1 and rid not in arm.resources


def test_only_the_named_assignment_is_deleted(arm: ArmServer, strict: Baseline) -> None:
    """The connector's listed assignment and another principal's sit beside the drift."""
    drift = granted(arm, CONNECTOR_PRINCIPAL, OWNER, RG)
    listed = f"{STORAGE}/providers/Microsoft.Authorization/roleAssignments/listed-1"
    arm.resources[listed] = role_assignment(listed, CONNECTOR_PRINCIPAL, BLOB_CONTRIBUTOR)
    other = f"{RG}/providers/Microsoft.Authorization/roleAssignments/other-1"
    arm.resources[other] = role_assignment(other, ALICE, OWNER)
    (done,) = put_back(findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, RG), strict), strict, arm)
    assert done.remediation.status == "applied"
    assert set(arm.resources) == {listed, other}
    assert {r.path for r in arm.requests} == {drift}


def test_dry_run_plans_and_changes_nothing(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    (done,) = put_back(findings, strict, arm, apply=False)
    assert done.remediation.status == "planned"
    assert done.remediation.detail.startswith(f"dry run; would delete_role_assignment on {rid}")
    assert done.remediation.before["role"] == "Owner"
    assert arm.calls("DELETE") == 0 and rid in arm.resources


def test_alert_mode_changes_nothing_and_shows_the_plan(arm: ArmServer, baseline) -> None:
    """examples/baseline.yaml: Azure identities in the default mode, alert."""
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    (finding,) = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), baseline)
    assert finding.remediation.status == "none"
    (done,) = put_back([finding], baseline, arm, apply=True)
    assert done.remediation.status == "none"
    assert done.remediation.detail.startswith(
        f"mode is alert; would delete_role_assignment on {rid}"
    )
    assert done.remediation.target == rid
    assert arm.calls("DELETE") == 0 and rid in arm.resources


def test_throttled_delete_is_retried_after_retry_after(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    arm.fail(429, headers={"Retry-After": "1"}, method="DELETE", code="TooManyRequests")
    started = time.monotonic()
    (done,) = put_back(findings, strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert arm.calls("DELETE", rid) == 2 and rid not in arm.resources
    assert time.monotonic() - started >= 1  # it waited as Retry-After asked


def test_permission_denied_fails_with_the_reason(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    arm.fail(403, method="DELETE", code="AuthorizationFailed", message=AUTHORIZATION_FAILED)
    (done,) = put_back(findings, strict, arm)
    assert done.remediation.status == "failed"
    assert "AuthorizationFailed" in done.remediation.detail
    assert "roleAssignments/delete" in done.remediation.detail
    assert done.remediation.detail.endswith("→ after null")  # what it tried to do
    assert arm.calls("DELETE") == 1  # a refusal is not retried
    assert rid in arm.resources


def test_stale_event_assignment_already_gone_is_skipped(arm: ArmServer, strict: Baseline) -> None:
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    (done,) = put_back(findings, strict, arm)
    assert done.remediation.status == "skipped"
    assert done.remediation.detail == ALREADY_DELETED
    assert [r.method for r in arm.requests] == ["GET"]  # no DELETE sent


def test_delete_that_does_not_take_fails_as_not_applied(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    arm.undeletable.add(rid)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    (done,) = put_back(findings, strict, arm)
    assert done.remediation.status == "failed"
    assert done.remediation.detail == (
        f"not applied: role assignment {rid} still exists (GET answers 200)"
    )
    assert [r.method for r in arm.requests] == ["GET", "DELETE", "GET"]


def test_ids_in_other_letter_cases(arm: ArmServer, strict: Baseline) -> None:
    """The export upper-cases the id; ARM keeps its own spelling and matches any case."""
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    records = [shout(r) for r in assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)]
    (finding,) = findings_of(records, strict)
    assert finding.actual["assignment_id"] == rid.upper()
    (done,) = put_back([finding], strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert done.remediation.target == rid  # as ARM spells it
    assert arm.calls("DELETE", rid) == 1 and arm.resources == {}


def test_assignment_the_baseline_now_lists_is_left_alone(arm: ArmServer, strict: Baseline) -> None:
    """A finding from before the baseline allowed the grant (a findings file, a late event)."""
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, RG)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, RG), strict)
    data = yaml.safe_load(REMEDIATE_BASELINE.read_text())
    identity = data["azure"]["subscriptions"][SUB]["identities"]["uc-access-connector"]
    identity["role_assignments"].append({"role": "Owner", "scope": RG.upper()})
    allowing = Baseline.model_validate(data)
    (done,) = put_back(findings, allowing, arm)
    assert done.remediation.status == "skipped"
    assert "baseline allows this assignment now" in done.remediation.detail
    assert arm.calls("DELETE") == 0 and rid in arm.resources


def test_id_now_holding_another_grant_is_left_alone(arm: ArmServer, strict: Baseline) -> None:
    """The finding's id answers with another principal's assignment: not the drift reported."""
    rid = assignment_id(SUBSCRIPTION)
    arm.resources[rid] = role_assignment(rid, ALICE, OWNER)
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    (done,) = put_back(findings, strict, arm)
    assert done.remediation.status == "skipped"
    assert "not what the finding reported" in done.remediation.detail
    assert arm.calls("DELETE") == 0 and rid in arm.resources


def _variant(finding: Finding, **changes: Any) -> Finding:
    actual = {**finding.actual, **changes.pop("actual", {})}
    remediation = finding.remediation.model_copy(update=changes.pop("remediation", {}))
    return finding.model_copy(update={"actual": actual, "remediation": remediation, **changes})


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        pytest.param(
            {"actual": {"assignment_id": f"{SUBSCRIPTION}/providers/Microsoft.Authorization/"
                        "roleEligibilityScheduleRequests/f00d"}},
            "is not a role assignment to delete",
            id="PIM request",
        ),
        pytest.param(
            {"actual": {"assignment_id": "/providers/Microsoft.Authorization/elevateAccess"}},
            "is not a role assignment to delete",
            id="elevateAccess",
        ),
        pytest.param(
            {"actual": {"assignment_id": ""}}, "no assignment id", id="no id"
        ),
        pytest.param(
            {"rule": "azure.role_assignment.protected_scope",
             "remediation": {"action": "delete_lighthouse_delegation"}},
            "delete_lighthouse_delegation: not automated",
            id="Lighthouse",
        ),
        pytest.param(
            {"rule": "azure.role_assignment.expected_removed",
             "remediation": {"action": "restore_role_assignment"}},
            "restore_role_assignment: not automated",
            id="expected assignment deleted: widening is for people",
        ),
        pytest.param(
            {"rule": "azure.sp.credential_added", "remediation": {"action": "remove_credential"}},
            "remove_credential: not automated",
            id="Entra credential",
        ),
    ],
)  # fmt: skip
def test_what_is_not_automated_is_alert_only(
    arm: ArmServer, strict: Baseline, changes: dict[str, Any], why: str
) -> None:
    granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    (finding,) = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    (done,) = put_back([_variant(finding, **changes)], strict, arm)
    assert done.remediation.status == "none"
    assert why in done.remediation.detail and "alert only" in done.remediation.detail
    assert arm.requests == []


def test_elevate_access_finding_is_alert_only(arm: ArmServer, strict: Baseline) -> None:
    record = load("activitylog-elevateaccess-action-panther-synthetic")
    findings = [f for f in findings_of([record], strict) if f.rule.startswith("azure.")]
    assert findings, "the elevateAccess record should raise protected_scope"
    for done in put_back(findings, strict, arm):
        assert done.remediation.status == "none", done.remediation
        assert "is not a role assignment to delete" in done.remediation.detail
    assert arm.requests == []


def test_plan_is_narrowing_only(arm: ArmServer, strict: Baseline) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    (finding,) = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    plan = remediator(arm).plan(finding, strict)
    assert isinstance(plan, Plan) and plan.mode == "remediate" and plan.after is None
    assert [r.method for r in arm.requests] == ["GET"]  # planning reads only
    del arm.resources[rid]
    assert remediator(arm).plan(finding, strict) == NothingToDo(ALREADY_DELETED, "skipped")


# --- federated credentials on a watched user-assigned identity --------------------------------

UAMI = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uc-identity"
CREDENTIAL = f"{UAMI}/federatedIdentityCredentials/ci-deploy"
FIC_API = azure_remediate.FEDERATED_CREDENTIAL_API_VERSION


def federated_credential(credential_id: str = CREDENTIAL) -> dict[str, Any]:
    """As ARM's GET returns it ("Federated Identity Credentials - Get",
    https://learn.microsoft.com/en-us/rest/api/managedidentity/federated-identity-credentials/get)."""
    (_, response) = federated(UAMI)
    body = json.loads(response["properties"]["responseBody"])
    return {**body, "id": credential_id, "name": credential_id.rsplit("/", 1)[-1]}


def test_federated_credential_is_deleted_and_verified(arm: ArmServer, strict: Baseline) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    (finding,) = findings_of(federated(UAMI), strict)
    assert finding.rule == "azure.identity.federated_credential_added"
    (done,) = put_back([finding], strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert done.remediation.action == "delete_federated_credential"
    assert done.remediation.target == CREDENTIAL
    assert done.remediation.before["issuer"] == "https://token.actions.githubusercontent.com"
    assert [(r.method, r.path, r.query["api-version"]) for r in arm.requests] == [
        ("GET", CREDENTIAL, FIC_API),
        ("DELETE", CREDENTIAL, FIC_API),
        ("GET", CREDENTIAL, FIC_API),
    ]
    assert CREDENTIAL not in arm.resources


def test_federated_credential_already_gone_is_skipped(arm: ArmServer, strict: Baseline) -> None:
    (done,) = put_back(findings_of(federated(UAMI), strict), strict, arm)
    assert done.remediation.status == "skipped"
    assert done.remediation.detail == azure_remediate.CREDENTIAL_DELETED
    assert [r.method for r in arm.requests] == ["GET"]


def test_federated_credential_delete_refused_fails_with_arms_reason(
    arm: ArmServer, strict: Baseline
) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    arm.fail(403, method="DELETE", code="AuthorizationFailed", message="no delete for you")
    (done,) = put_back(findings_of(federated(UAMI), strict), strict, arm)
    assert done.remediation.status == "failed"
    assert "(AuthorizationFailed) no delete for you" in done.remediation.detail
    assert CREDENTIAL in arm.resources


def test_federated_credential_delete_that_does_not_take(arm: ArmServer, strict: Baseline) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    arm.undeletable.add(CREDENTIAL)
    (done,) = put_back(findings_of(federated(UAMI), strict), strict, arm)
    assert done.remediation.status == "failed"
    assert done.remediation.detail.startswith(f"not applied: federated credential {CREDENTIAL}")


def test_federated_credential_of_an_identity_no_longer_watched_is_left_alone(
    arm: ArmServer, strict: Baseline
) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    findings = findings_of(federated(UAMI), strict)
    data = yaml.safe_load(REMEDIATE_BASELINE.read_text())
    del data["azure"]["subscriptions"][SUB]["identities"]["uc-identity"]
    (done,) = put_back(findings, Baseline.model_validate(data), arm)
    assert done.remediation.status == "skipped"
    assert arm.calls("DELETE") == 0 and CREDENTIAL in arm.resources


def test_federated_credential_in_alert_mode_is_only_shown(arm: ArmServer, strict: Baseline) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    data = yaml.safe_load(REMEDIATE_BASELINE.read_text())
    data["azure"]["subscriptions"][SUB]["identities"]["uc-identity"]["mode"] = "alert"
    alerting = Baseline.model_validate(data)
    (done,) = put_back(findings_of(federated(UAMI), alerting), alerting, arm)
    assert done.remediation.status == "none"
    assert done.remediation.detail.startswith("mode is alert; would delete_federated_credential")
    assert arm.calls("DELETE") == 0


def test_breaker_stops_the_fourth_remediation_of_one_identity(
    arm: ArmServer, strict: Baseline
) -> None:
    now = [1_000_000.0]
    breaker = Breaker(MemoryDedupStore(), clock=lambda: now[0])
    fixer = remediator(arm)
    results = []
    for n in range(4):
        scope = f"{SUBSCRIPTION}/resourceGroups/rg-{n}"
        granted(arm, CONNECTOR_PRINCIPAL, OWNER, scope)
        findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, scope), strict)
        results.append(remediate(findings, strict, lambda _c: fixer, apply=True, breaker=breaker))
        now[0] += 60
    assert [r[0].remediation.status for r in results] == ["applied"] * 3 + ["skipped"]
    assert "circuit open" in results[3][0].remediation.detail
    assert results[3][1].rule == CIRCUIT_RULE and results[3][1].severity.value == "critical"
    assert arm.calls("DELETE") == 3 and len(arm.resources) == 1


# --- through the function app ------------------------------------------------------------------


def alerts(slack: RecordingHTTPServer) -> list[str]:
    """Each Slack message as JSON text, non-ASCII kept (the remediation line has a `·`)."""
    return [json.dumps(r.json(), ensure_ascii=False) for r in slack.requests]


def remediating_env(slack: RecordingHTTPServer, arm: ArmServer, **extra: str) -> dict[str, str]:
    return {
        **app_env(slack, arm),
        "TRUSTWATCH_BASELINE": str(REMEDIATE_BASELINE),
        "TRUSTWATCH_REMEDIATION": "apply",
        **extra,
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, slack: RecordingHTTPServer, arm: ArmServer) -> FunctionApp:
    return load_app(monkeypatch, remediating_env(slack, arm))


def test_activity_log_drift_is_deleted_before_the_alert_says_so(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert rid not in arm.resources
    (alert,) = alerts(slack)
    assert "azure.role_assignment.unexpected" in alert
    assert "applied · delete_role_assignment (verified; delete_role_assignment on " in alert
    # signed in as the app's managed identity (App Service identity endpoint)
    (delete,) = [r for r in arm.requests if r.method == "DELETE"]
    assert delete.headers["authorization"] == f"Bearer {arm.token}"
    assert arm.token_requests


def test_event_grid_drift_is_read_then_deleted(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    app.on_event_grid(
        grid_event(to_event_grid(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)[1]))
    )
    # the enrichment's read, the plan's re-read, the delete, the read back
    assert [r.method for r in arm.requests] == ["GET", "GET", "DELETE", "GET"]
    assert rid not in arm.resources
    (alert,) = alerts(slack)
    assert f"applied · delete_role_assignment (verified; delete_role_assignment on {rid}" in alert


def test_function_in_alert_mode_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    env = remediating_env(slack, arm, TRUSTWATCH_BASELINE=str(EXAMPLE_BASELINE))
    app = load_app(monkeypatch, env)
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert rid in arm.resources and arm.calls("DELETE") == 0
    (alert,) = alerts(slack)
    assert "mode is alert; would delete_role_assignment" in alert


def test_function_without_apply_is_a_dry_run(
    monkeypatch: pytest.MonkeyPatch, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    env = remediating_env(slack, arm)
    del env["TRUSTWATCH_REMEDIATION"]
    app = load_app(monkeypatch, env)
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert rid in arm.resources and arm.calls("DELETE") == 0
    (alert,) = alerts(slack)
    assert "dry run; would delete_role_assignment" in alert


def test_federated_credential_through_the_function(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    arm.resources[CREDENTIAL] = federated_credential()
    app.on_activity_log(hub_events({"records": federated(UAMI)}))
    assert CREDENTIAL not in arm.resources
    (alert,) = alerts(slack)
    assert "applied · delete_federated_credential (verified;" in alert


def test_responders_own_delete_fed_back_gives_nothing(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert len(slack.requests) == 1
    seen = len(arm.requests)
    # The Activity Log and Event Grid then deliver the function's own delete.
    own = unassign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION, actor=RESPONDER)
    app.on_activity_log(hub_events({"records": own}))
    app.on_event_grid(grid_event(to_event_grid(own[1])))
    # The same delete of an expected assignment: the responder's own is silent too ...
    listed = unassign(CONNECTOR_PRINCIPAL, BLOB_CONTRIBUTOR, STORAGE, actor=RESPONDER)
    app.on_activity_log(hub_events({"records": listed}))
    assert len(slack.requests) == 1 and len(arm.requests) == seen
    # ... while anyone else's is reported: the silence above is the loop guard's
    theirs = unassign(CONNECTOR_PRINCIPAL, BLOB_CONTRIBUTOR, STORAGE, actor=ALICE)
    app.on_activity_log(hub_events({"records": theirs}))
    assert "azure.role_assignment.expected_removed" in alerts(slack)[-1]


def test_approved_actor_is_left_alone(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    records = assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION, actor=TERRAFORM_SP)
    app.on_activity_log(hub_events({"records": records}))
    assert rid in arm.resources and arm.requests == []  # not even planned
    (alert,) = alerts(slack)
    assert "skipped · delete_role_assignment (change made by approved automation" in alert


def test_stale_event_is_skipped_by_the_function(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert [r.method for r in arm.requests] == ["GET"]
    (alert,) = alerts(slack)
    assert f"skipped · delete_role_assignment ({ALREADY_DELETED})" in alert


def test_refused_delete_still_alerts_with_the_failure(
    app: FunctionApp, slack: RecordingHTTPServer, arm: ArmServer
) -> None:
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    arm.fail(403, method="DELETE", code="AuthorizationFailed", message=AUTHORIZATION_FAILED)
    app.on_activity_log(hub_events({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert rid in arm.resources
    (alert,) = alerts(slack)
    assert "failed · delete_role_assignment (HttpResponseError: (AuthorizationFailed)" in alert


def test_breaker_trips_on_the_fourth_remediation_across_instances(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    slack: RecordingHTTPServer,
    arm: ArmServer,
    azurite_table,
) -> None:
    """Four grants to the connector within minutes, each event on a fresh instance sharing
    the Azure Table store: three are deleted, the fourth is left and one critical finding
    says someone is fighting the baseline."""
    # a principal of its own: the Azurite table lives as long as the test session
    principal = str(uuid.uuid4())
    path = tmp_path / "baseline.yaml"
    path.write_text(REMEDIATE_BASELINE.read_text().replace(CONNECTOR_PRINCIPAL, principal))
    env = remediating_env(
        slack,
        arm,
        TRUSTWATCH_BASELINE=str(path),
        TRUSTWATCH_STATE_URL=azurite_table.connection_string,
    )
    ids = []
    for n in range(4):
        scope = f"{SUBSCRIPTION}/resourceGroups/fight-{n}"
        ids.append(granted(arm, principal, OWNER, scope))
        records = assign(principal, OWNER, scope, correlation=str(uuid.uuid4()))
        load_app(monkeypatch, env).on_activity_log(hub_events({"records": records}))
    assert [i in arm.resources for i in ids] == [False, False, False, True]
    assert arm.calls("DELETE") == 3
    sent = alerts(slack)
    assert len(sent) == 5  # four drifts, then the circuit
    assert all("applied · delete_role_assignment" in a for a in sent[:3])
    assert "skipped · delete_role_assignment (circuit open: 3 remediations" in sent[3]
    assert CIRCUIT_RULE in sent[4] and "fighting the baseline" in sent[4]


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_remediate_shows_then_applies_the_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arm: ArmServer, capsys
) -> None:
    for key, value in {
        "TRUSTWATCH_ARM_ENDPOINT": arm.url,
        "TRUSTWATCH_ARM_CA_BUNDLE": arm.ca_bundle,
        "TRUSTWATCH_STATE_DB": str(tmp_path / "state.sqlite"),
        **arm.managed_identity_environ(),
    }.items():
        monkeypatch.setenv(key, value)
    rid = granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    events = tmp_path / "events.json"
    events.write_text(json.dumps({"records": assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)}))
    assert cli.main(["replay", "--baseline", str(REMEDIATE_BASELINE), str(events)]) == 1
    found = tmp_path / "findings.jsonl"
    found.write_text(capsys.readouterr().out)

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = cli.main(["remediate", "--baseline", str(REMEDIATE_BASELINE), *args])
        (line,) = capsys.readouterr().out.splitlines()
        return code, json.loads(line)["remediation"]

    code, shown = run(str(found))
    assert code == 0 and shown["status"] == "planned" and shown["target"] == rid
    assert arm.calls("DELETE") == 0
    code, shown = run("--apply", str(found))
    assert code == 0 and shown["status"] == "applied" and rid not in arm.resources
    monkeypatch.setattr("sys.stdin", io.StringIO(found.read_text()))
    code, shown = run("--apply", "-")  # again, from stdin: already back
    assert code == 0 and shown["status"] == "skipped" and shown["detail"] == ALREADY_DELETED
    assert arm.calls("DELETE") == 1


def rbac_action(method: str, path: str) -> str:
    """The Azure RBAC action a request needs: `{provider}/{type}/{child type}/{verb}` from
    the last `/providers/` of the id ("Azure resource provider operations",
    https://learn.microsoft.com/en-us/azure/role-based-access-control/resource-provider-operations)."""
    after = path.rsplit("/providers/", 1)[1].split("/")
    provider, types = after[0], after[1::2]
    verb = {"GET": "read", "DELETE": "delete"}[method]
    return "/".join([provider, *types, verb])


def test_deploy_actions_are_the_calls_the_plans_make(arm: ArmServer, strict: Baseline) -> None:
    """deploy/azure grants WRITE_ACTIONS (and Reader for READ_ACTIONS): exactly what the
    plans send, read off the requests ARM received."""
    granted(arm, CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION)
    arm.resources[CREDENTIAL] = federated_credential()
    findings = findings_of(assign(CONNECTOR_PRINCIPAL, OWNER, SUBSCRIPTION), strict)
    findings += findings_of(federated(UAMI), strict)
    assert {f.remediation.status for f in put_back(findings, strict, arm)} == {"applied"}
    sent = {(r.method, rbac_action(r.method, r.path)) for r in arm.requests}
    assert {a for m, a in sent if m != "GET"} == set(azure_remediate.WRITE_ACTIONS)
    assert {a for m, a in sent if m == "GET"} == set(azure_remediate.READ_ACTIONS)
