"""The Azure sweep's state part (trustwatch.azure.state) against the HTTPS ARM stand-in,
with the real azure-mgmt-authorization and azure-mgmt-monitor clients, signed in through
DefaultAzureCredential and the App Service managed identity endpoint the stand-in serves.

What each read relies on, from Azure's documentation:
- "Role Assignments - List For Scope"
  (https://learn.microsoft.com/en-us/rest/api/authorization/role-assignments/list-for-scope):
  `atScope()` lists the assignments at or above the scope, `principalId eq {id}` those of
  the principal at, above or below it; "List Azure role assignments using the REST API"
  (https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-list-rest):
  atScope() leaves out subscopes, so the unfiltered list holds them; assignments at a scope
  are inherited by every scope below it
  (https://learn.microsoft.com/en-us/azure/role-based-access-control/scope-overview);
- "Federated Identity Credentials - List"
  (https://learn.microsoft.com/en-us/rest/api/managedidentity/federated-identity-credentials/list);
- "Activity Logs - List" (https://learn.microsoft.com/en-us/rest/api/monitor/activity-logs/list):
  the `$filter` takes a time window and one `resourceProvider`, nothing on operation names;
  lists page with `nextLink`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from armserver import ArmServer, ArmState, role_assignment
from conftest import ROOT
from test_azure_events import assign, connector_body, to_rest
from trustwatch import engine
from trustwatch.azure import state
from trustwatch.azure.roles import BUILTIN_ROLES
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.cli import main
from trustwatch.findings import Finding
from trustwatch.intake import parse_document

BASELINE = ROOT / "tests" / "data" / "azure-sweep-baseline.yaml"
SUB = "9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e"
RG = f"/subscriptions/{SUB}/resourceGroups/dbx-prod"
STORAGE = f"{RG}/providers/Microsoft.Storage/storageAccounts/dbxucprod"
CONNECTOR = f"{RG}/providers/Microsoft.Databricks/accessConnectors/uc-connector"
UAMI = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uc-identity"
MG = "/providers/Microsoft.Management/managementGroups/mg-dbx"
CONNECTOR_PRINCIPAL = "3f2a9c1d-5b6e-4f7a-8b9c-0d1e2f3a4b5c"
UAMI_PRINCIPAL = "4b3c2d1e-6f5a-4b7c-9d8e-1f2a3b4c5d6e"
TERRAFORM_SP = "6a1d2c3b-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
STRANGER = "770797c4-e05a-43f9-bda2-1f1f379987ae"
CUSTOM_ROLE = "2c4d6e8f-1a3b-4c5d-8e9f-0a1b2c3d4e5f"
ROLE = BUILTIN_ROLES
DEFINITION = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM_ROLE}"


@pytest.fixture(scope="module")
def sweep_baseline() -> Baseline:
    return load_baseline(BASELINE)


@pytest.fixture(scope="module")
def arm_server() -> Iterator[ArmServer]:
    with ArmServer() as server:
        yield server


@pytest.fixture
def arm(arm_server: ArmServer, monkeypatch: pytest.MonkeyPatch) -> ArmServer:
    """The module's stand-in, reset to the clean state."""
    for key in list(os.environ):
        if key.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(key)
    # DefaultAzureCredential reads the App Service managed identity from the process
    for key, value in arm_server.managed_identity_environ().items():
        monkeypatch.setenv(key, value)
    arm_server.resources.clear()
    arm_server.requests.clear()
    arm_server.state = ArmState()
    clean_state(arm_server)
    return arm_server


def environ(arm: ArmServer) -> dict[str, str]:
    return {"TRUSTWATCH_ARM_ENDPOINT": arm.url, "TRUSTWATCH_ARM_CA_BUNDLE": arm.ca_bundle}


_serial = iter(range(1, 10_000))


def grant(principal: str, role: str, scope: str) -> dict[str, Any]:
    """A role assignment as ARM lists it, with its own id at `scope`."""
    n = next(_serial)
    name = f"00000000-0000-4000-8000-{n:012d}"
    scope_path = "" if scope == "/" else scope
    return role_assignment(
        f"{scope_path}/providers/Microsoft.Authorization/roleAssignments/{name}", principal, role
    ) | {"properties": _at(principal, role, scope)}


def _at(principal: str, role: str, scope: str) -> dict[str, Any]:
    return {
        "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{role}",
        "principalId": principal,
        "principalType": "ServicePrincipal",
        "scope": scope,
    }


def eligible(principal: str, role: str, scope: str) -> dict[str, Any]:
    """A PIM eligibility schedule instance as ARM lists it (api-version 2020-10-01)."""
    n = next(_serial)
    scope_path = "" if scope == "/" else scope
    name = f"00000000-0000-4000-9000-{n:012d}"
    return {
        "id": f"{scope_path}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances/{name}",
        "name": name,
        "type": "Microsoft.Authorization/roleEligibilityScheduleInstances",
        "properties": {
            **_at(principal, role, scope),
            "roleEligibilityScheduleId": f"{scope_path}/providers/Microsoft.Authorization/"
            f"roleEligibilitySchedules/{name}",
            "status": "Provisioned",
            "memberType": "Direct",
            "startDateTime": "2026-11-27T10:00:00Z",
            "endDateTime": None,
        },
    }


def _eligible(principal: str, role: str, scope: str) -> Callable[[ArmServer], None]:
    def mutate(arm: ArmServer) -> None:
        arm.state.eligible_assignments.append(eligible(principal, role, scope))

    return mutate


MSP_TENANT = "8f7e6d5c-4b3a-4c2d-9e1f-0a9b8c7d6e5f"
MSP_ENGINEER = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def lighthouse(*roles: str, scope: str = f"/subscriptions/{SUB}") -> dict[str, Any]:
    """A registration assignment as ARM lists it with $expandRegistrationDefinition=true."""
    definition = f"/subscriptions/{SUB}/providers/Microsoft.ManagedServices/registrationDefinitions/0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"  # fmt: skip
    return {
        "id": f"{scope}/providers/Microsoft.ManagedServices/registrationAssignments/"
        f"9a8b7c6d-5e4f-4a3b-8c2d-{next(_serial):012d}",
        "type": "Microsoft.ManagedServices/registrationAssignments",
        "properties": {
            "registrationDefinitionId": definition,
            "provisioningState": "Succeeded",
            "registrationDefinition": {
                "id": definition,
                "properties": {
                    "registrationDefinitionName": "Managed by Contoso MSP",
                    "managedByTenantId": MSP_TENANT,
                    "authorizations": [
                        {"principalId": MSP_ENGINEER, "roleDefinitionId": role} for role in roles
                    ],
                },
            },
        },
    }


def custom_role(actions: list[str]) -> dict[str, Any]:
    return {
        "id": DEFINITION,
        "name": CUSTOM_ROLE,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": "dbx-workspace-reader",
            "type": "CustomRole",
            "permissions": [
                {"actions": actions, "notActions": [], "dataActions": [], "notDataActions": []}
            ],
            "assignableScopes": [f"/subscriptions/{SUB}"],
        },
    }


def storage_account(name: str, group: str = "dbx-prod", **settings: Any) -> dict[str, Any]:
    props = {
        "allowBlobPublicAccess": False,
        "allowSharedKeyAccess": False,
        "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices"},
        "publicNetworkAccess": "Enabled",
    }
    props.update(settings)
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Storage/"
        f"storageAccounts/{name}",
        "name": name,
        "type": "Microsoft.Storage/storageAccounts",
        "kind": "StorageV2",
        "location": "eastus2",
        "properties": props,
    }


def credential(name: str, issuer: str, subject: str) -> dict[str, Any]:
    return {
        "id": f"{UAMI}/federatedIdentityCredentials/{name}",
        "name": name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "properties": {
            "issuer": issuer,
            "subject": subject,
            "audiences": ["api://AzureADTokenExchange"],
        },
    }


def clean_state(arm: ArmServer) -> None:
    """The subscription exactly as the baseline expects it, plus grants it does not judge."""
    arm.state.management_groups = {"mg-dbx": [SUB]}
    arm.state.role_assignments = [
        grant(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE),
        grant(UAMI_PRINCIPAL, ROLE["Storage Blob Data Reader"], STORAGE),
        grant(TERRAFORM_SP, ROLE["Contributor"], RG),
        grant(TERRAFORM_SP, CUSTOM_ROLE, f"/subscriptions/{SUB}"),
        # not drift: a Reader above the protected scope, an Owner of another group,
        # a Reader at the management group
        grant(STRANGER, ROLE["Reader"], f"/subscriptions/{SUB}"),
        grant(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}/resourceGroups/other"),
        grant(STRANGER, ROLE["Reader"], MG),
    ]
    arm.resources[DEFINITION] = custom_role(
        [
            "Microsoft.Databricks/workspaces/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ]
    )
    arm.resources[CONNECTOR] = connector_body("SystemAssigned", CONNECTOR_PRINCIPAL)
    arm.state.federated_credentials = {UAMI: []}
    arm.state.storage_accounts = [
        storage_account("dbxucprod"),
        storage_account("scratchpad", group="other", allowBlobPublicAccess=True),
    ]


def sweep_findings(arm: ArmServer, baseline: Baseline) -> tuple[list[Finding], state.StateRead]:
    read = state.read(SUB, baseline, environ(arm))
    findings = [f for change in read.changes for f in engine.evaluate(change, baseline)]
    return findings, read


def test_units_are_the_baseline_subscriptions(sweep_baseline: Baseline) -> None:
    assert state.units(sweep_baseline, {}) == [SUB]


def test_clean_state_gives_no_finding(arm: ArmServer, sweep_baseline: Baseline) -> None:
    findings, read = sweep_findings(arm, sweep_baseline)
    assert findings == []
    assert read.errors == []
    kinds = {c.kind for c in read.changes}
    assert kinds == {
        "role_assignment.created",
        "role_definition.written",
        "access_connector.written",
        "storage_account.written",
    }
    # every assignment once, though the protected scope's, the identity's and each
    # principal's lists return some of them twice; the other group's Owner is in none
    assignments = [c for c in read.changes if c.kind == "role_assignment.created"]
    assert len(assignments) == 6
    assert len({c.payload.assignment_id.lower() for c in assignments}) == 6
    # the unwatched account is not judged
    assert [c.name for c in read.changes if c.kind == "storage_account.written"] == ["dbxucprod"]
    assert all(c.event_name.startswith("sweep:") and not c.event_id for c in read.changes)
    assert read.calls == len(arm.requests)


def _add(*grants: tuple[str, str, str]) -> Callable[[ArmServer], None]:
    def mutate(arm: ArmServer) -> None:
        arm.state.role_assignments += [grant(*g) for g in grants]

    return mutate


def _drop_connector_grant(arm: ArmServer) -> None:
    arm.state.role_assignments = arm.state.role_assignments[1:]


def _add_credential(arm: ArmServer) -> None:
    arm.state.federated_credentials[UAMI] = [
        credential("gh", "https://token.actions.githubusercontent.com", "repo:evil/x:ref:main")
    ]


def _swap_connector_identity(arm: ArmServer) -> None:
    arm.resources[CONNECTOR] = connector_body("SystemAssigned", STRANGER)


def _widen_custom_role(arm: ArmServer) -> None:
    arm.resources[DEFINITION] = custom_role(["Microsoft.Databricks/workspaces/read", "*/write"])


def _open_storage(arm: ArmServer) -> None:
    arm.state.storage_accounts[0] = storage_account("dbxucprod", allowBlobPublicAccess=True)


def _delete_connector(arm: ArmServer) -> None:
    del arm.resources[CONNECTOR]


def _delete_identity(arm: ArmServer) -> None:
    arm.state.federated_credentials = {}


DRIFT = {
    # Owner one scope above the protected storage account's group: the subscription
    "owner_at_subscription": (
        _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}")),
        "azure.role_assignment.protected_scope",
    ),
    "owner_at_management_group": (
        _add((STRANGER, ROLE["User Access Administrator"], MG)),
        "azure.role_assignment.protected_scope",
    ),
    "data_role_below_protected_scope": (
        _add(
            (
                STRANGER,
                ROLE["Storage Blob Data Reader"],
                f"{STORAGE}/blobServices/default/containers/uc",
            )
        ),
        "azure.role_assignment.protected_scope",
    ),
    "identity_operator_over_baseline_identity": (
        _add((STRANGER, ROLE["Managed Identity Operator"], UAMI)),
        "azure.role_assignment.protected_scope",
    ),
    "eligible_owner_at_subscription": (
        _eligible(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"),
        "azure.role_assignment.protected_scope",
    ),
    "baseline_principal_eligible_for_owner": (
        _eligible(TERRAFORM_SP, ROLE["Owner"], f"/subscriptions/{SUB}/resourceGroups/other"),
        "azure.role_assignment.unexpected",
    ),
    "lighthouse_contributor_over_subscription": (
        lambda arm: arm.state.lighthouse.append(lighthouse(ROLE["Reader"], ROLE["Contributor"])),
        "azure.role_assignment.protected_scope",
    ),
    "baseline_principal_unexpected_assignment": (
        _add((TERRAFORM_SP, ROLE["Owner"], f"/subscriptions/{SUB}/resourceGroups/other")),
        "azure.role_assignment.unexpected",
    ),
    "expected_assignment_missing": (
        _drop_connector_grant,
        "azure.role_assignment.expected_removed",
    ),
    "federated_credential_added": (
        _add_credential,
        "azure.identity.federated_credential_added",
    ),
    "connector_identity_swapped": (_swap_connector_identity, "azure.identity.changed"),
    "connector_deleted": (_delete_connector, "azure.identity.changed"),
    "user_assigned_identity_deleted": (_delete_identity, "azure.identity.changed"),
    "custom_role_widened": (_widen_custom_role, "azure.role_definition.widened"),
    "storage_opened": (_open_storage, "azure.storage.public_access_opened"),
}


@pytest.mark.parametrize("drift", DRIFT, ids=list(DRIFT))
def test_sweep_finds_drift_no_event_reported(
    arm: ArmServer, sweep_baseline: Baseline, drift: str
) -> None:
    mutate, rule = DRIFT[drift]
    mutate(arm)
    findings, read = sweep_findings(arm, sweep_baseline)
    assert read.errors == []
    assert [f.rule for f in findings] == [rule]
    assert findings[0].cloud == "azure" and findings[0].scope == SUB


def test_drift_findings_name_what_holds(arm: ArmServer, sweep_baseline: Baseline) -> None:
    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    _drop_connector_grant(arm)
    findings, _ = sweep_findings(arm, sweep_baseline)
    by_rule = {f.rule: f for f in findings}
    above = by_rule["azure.role_assignment.protected_scope"]
    assert above.severity == "critical" and above.identity == STRANGER
    assert above.actual["role"] == "Owner" and above.actual["scope"] == f"/subscriptions/{SUB}"
    missing = by_rule["azure.role_assignment.expected_removed"]
    assert missing.identity == CONNECTOR_PRINCIPAL
    assert missing.expected == {"role": "Storage Blob Data Contributor", "scope": STORAGE}


def test_an_eligible_grant_is_the_finding_its_pim_request_event_gives(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    from test_azure_events import activity, assignment_request

    _eligible(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}")(arm)
    swept, _ = sweep_findings(arm, sweep_baseline)
    request_id = (
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
        "roleEligibilityScheduleRequests/5b2c3d4e-6f70-4a81-9b2c-3d4e5f607182"
    )
    body = assignment_request(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}")
    body["Properties"]["RequestType"] = "AdminAssign"
    record = activity(
        "Microsoft.Authorization/roleEligibilityScheduleRequests/write",
        "Start",
        request_id,
        request=body,
    )
    events = [
        f
        for p in parse_document(record, "pim")
        for c in p.changes
        for f in engine.evaluate(c, sweep_baseline)
    ]
    assert [f.id for f in swept] == [f.id for f in events]
    assert swept[0].severity == "critical"
    # eligible is not active: an expected assignment held only as eligible is missing
    arm.state.eligible_assignments.append(eligible(TERRAFORM_SP, ROLE["Contributor"], RG))
    arm.state.role_assignments = [
        a
        for a in arm.state.role_assignments
        if not (a["properties"]["principalId"] == TERRAFORM_SP and a["properties"]["scope"] == RG)
    ]
    rules = sorted(f.rule for f in sweep_findings(arm, sweep_baseline)[0])
    assert "azure.role_assignment.expected_removed" in rules


def test_a_lighthouse_reader_is_not_drift_and_the_definition_is_read_expanded(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    arm.state.lighthouse.append(lighthouse(ROLE["Reader"]))
    findings, read = sweep_findings(arm, sweep_baseline)
    assert findings == [] and read.errors == []
    (change,) = [c for c in read.changes if c.kind == "lighthouse.assigned"]
    assert change.payload.managed_by_tenant == MSP_TENANT
    (listed,) = [r for r in arm.requests if r.path.lower().endswith("/registrationassignments")]
    assert listed.query["$expandRegistrationDefinition"] == "true"


def test_the_reads_use_the_documented_filters(arm: ArmServer, sweep_baseline: Baseline) -> None:
    state.read(SUB, sweep_baseline, environ(arm))
    lists = [
        (r.path.lower(), r.query.get("$filter"))
        for r in arm.requests
        if r.path.lower().endswith("/roleassignments") and "$skiptoken" not in r.query
    ]
    assignments = "/providers/microsoft.authorization/roleassignments"
    assert (STORAGE.lower() + assignments, None) in lists  # at, above and below
    assert (UAMI.lower() + assignments, "atScope()") in lists  # at or above
    for principal in (CONNECTOR_PRINCIPAL, UAMI_PRINCIPAL, TERRAFORM_SP):
        assert (f"/subscriptions/{SUB}{assignments}", f"principalId eq '{principal}'") in lists
    assert len(lists) == 5
    eligible_lists = [
        (r.path.lower(), r.query.get("$filter"))
        for r in arm.requests
        if r.path.lower().endswith("/roleeligibilityscheduleinstances")
    ]
    pim = "/providers/microsoft.authorization/roleeligibilityscheduleinstances"
    assert (STORAGE.lower() + pim, "atScope()") in eligible_lists
    assert (UAMI.lower() + pim, "atScope()") in eligible_lists
    for principal in (CONNECTOR_PRINCIPAL, UAMI_PRINCIPAL, TERRAFORM_SP):
        assert (f"/subscriptions/{SUB}{pim}", f"principalId eq '{principal}'") in eligible_lists
    assert len(eligible_lists) == 5


def test_paging_is_followed(arm: ArmServer, sweep_baseline: Baseline) -> None:
    arm.state.page_size = 1
    containers = f"{STORAGE}/blobServices/default/containers"
    extra = [(STRANGER, ROLE["Reader"], f"{containers}/c{n}") for n in range(4)]
    _add(*extra, (STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    arm.state.federated_credentials[UAMI] = [
        credential(f"c{n}", "https://issuer.example", f"s{n}") for n in range(3)
    ]
    findings, read = sweep_findings(arm, sweep_baseline)
    assert read.errors == []
    assert sum(1 for r in arm.requests if "$skiptoken" in r.query) >= 10
    rules = sorted(f.rule for f in findings)
    assert (
        rules
        == ["azure.identity.federated_credential_added"] * 3
        + ["azure.role_assignment.protected_scope"] * 5
    )  # the four data-plane Readers below the account, the Owner above it
    assert read.calls == len(arm.requests)


def test_a_failed_read_is_reported_and_the_others_go_on(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    arm.fail(403)  # the first list: the protected scope's
    findings, read = sweep_findings(arm, sweep_baseline)
    assert len(read.errors) == 1
    assert read.errors[0].startswith(f"role assignments at {STORAGE}")
    assert "HttpResponseError" in read.errors[0]
    # anyone's assignment may be in that list: no identity is known read, none resolves
    assert read.unreadable == []
    # the Owner is still seen from the identity's list (at or above it), nothing is missing
    assert [f.rule for f in findings] == ["azure.role_assignment.protected_scope"]


def test_no_expected_assignment_is_missing_when_the_principal_list_failed(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    arm.state.role_assignments = []
    # protected scope, identity, then the three principals' lists: fail the principals'
    original = arm.state.assignments_for
    calls: list[str | None] = []

    def failing(
        scope: str, filter: str | None, *, eligible: bool = False
    ) -> list[dict[str, Any]] | None:
        calls.append(filter)
        if filter and filter.startswith("principalId") and not eligible:
            return None  # 400 InvalidFilter
        return original(scope, filter, eligible=eligible)

    arm.state.assignments_for = failing  # type: ignore[method-assign]
    findings, read = sweep_findings(arm, sweep_baseline)
    assert len(read.errors) == 3
    # their findings stay open; the other identities' resolve as usual
    assert read.unreadable == [CONNECTOR_PRINCIPAL, UAMI_PRINCIPAL, TERRAFORM_SP]
    assert not [f for f in findings if f.rule == "azure.role_assignment.expected_removed"]


def test_a_builtin_role_held_by_guid_is_not_read_as_custom(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    arm.resources[DEFINITION]["properties"]["type"] = "BuiltInRole"
    arm.resources[DEFINITION]["properties"]["permissions"][0]["actions"] = ["*"]
    findings, read = sweep_findings(arm, sweep_baseline)
    assert findings == [] and read.errors == []
    assert "role_definition.written" not in {c.kind for c in read.changes}


def test_a_watched_storage_account_not_found_is_an_error(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    arm.state.storage_accounts = [storage_account("dbxucprod", group="elsewhere")]
    _, read = sweep_findings(arm, sweep_baseline)
    assert read.errors == [f"storage account dbxucprod: not found in subscription {SUB}"]
    assert read.unreadable == [STORAGE]  # its findings stay open, as last known


def test_a_watched_custom_role_gone_is_an_error_that_keeps_its_findings(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    del arm.resources[DEFINITION]
    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    findings, read = sweep_findings(arm, sweep_baseline)
    assert read.errors == [f"custom role {CUSTOM_ROLE}: not found at /subscriptions/{SUB}"]
    assert read.unreadable == [CUSTOM_ROLE]
    # the rest of the subscription is judged as usual
    assert [f.rule for f in findings] == ["azure.role_assignment.protected_scope"]


# --- catch-up: the Activity Log ----------------------------------------------------------

SINCE = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=1)


def rest(records: list[dict[str, Any]], at: datetime, correlation: str) -> list[dict[str, Any]]:
    """The Activity Log REST records of one operation, logged at `at`."""
    out = []
    for offset, record in enumerate(records):
        doc = to_rest(record)
        doc["eventTimestamp"] = (at + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")
        doc["correlationId"] = correlation
        doc["eventDataId"] = f"{correlation}-{offset}"
        doc["resourceProviderName"] = {"value": doc["operationName"]["value"].split("/")[0]}
        doc["subscriptionId"] = SUB
        out.append(doc)
    return out


def other_operation(operation: str, at: datetime, correlation: str) -> list[dict[str, Any]]:
    records = rest(assign(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"), at, correlation)
    for doc in records:
        doc["operationName"] = {"value": operation, "localizedValue": operation}
        doc["resourceProviderName"] = {"value": operation.split("/")[0]}
    return records


def activity_log() -> list[dict[str, Any]]:
    lost = rest(
        assign(STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"),
        SINCE + timedelta(minutes=5),
        "c-lost",
    )
    # the caller's principal only in authorization.evidence: kept as logged
    lost[1]["authorization"]["evidence"] = {"principalId": STRANGER, "principalType": "User"}
    return [
        *lost,
        *rest(  # before the window
            assign(STRANGER, ROLE["Owner"], RG), SINCE - timedelta(minutes=1), "c-before"
        ),
        *rest(  # at its end: the next window's
            assign(STRANGER, ROLE["Owner"], RG), UNTIL, "c-after"
        ),
        # watched provider, unwatched operation; unwatched provider
        *other_operation("Microsoft.Authorization/policyAssignments/write", SINCE, "c-policy"),
        *other_operation("Microsoft.Network/networkSecurityGroups/write", SINCE, "c-nsg"),
        *other_operation(
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
            SINCE + timedelta(minutes=30),
            "c-fic",
        ),
    ]


def test_catch_up_reads_the_window_filtered(arm: ArmServer, sweep_baseline: Baseline) -> None:
    arm.state.activity_log = activity_log()
    docs = list(state.catch_up(SUB, SINCE, UNTIL, environ(arm)))
    assert len(docs) == 1
    records = docs[0]["value"]
    assert [r["eventDataId"] for r in records] == ["c-lost-0", "c-lost-1", "c-fic-0", "c-fic-1"]
    assert records[1]["authorization"]["evidence"]["principalId"] == STRANGER
    # one call per watched provider, each with the window and the provider, and the pages
    lists = [r for r in arm.requests if r.path.endswith("/eventtypes/management/values")]
    first = [r for r in lists if "$skiptoken" not in r.query]
    providers = sorted(r.query["$filter"].rsplit("'", 2)[-2] for r in first)
    assert providers == sorted(state.PROVIDERS.values())
    assert all(
        r.query["$filter"].startswith("eventTimestamp ge '2026-12-01T10:00:00") for r in first
    )
    assert all(r.query["$select"] == state.SELECT for r in first)
    assert len(lists) > len(first)  # Microsoft.Authorization has 4 records: two pages


def test_catch_up_records_parse_to_the_changes_the_event_path_judges(
    arm: ArmServer, sweep_baseline: Baseline
) -> None:
    arm.state.activity_log = activity_log()
    doc = next(state.catch_up(SUB, SINCE, UNTIL, environ(arm)))
    parsed = list(parse_document(copy.deepcopy(doc), "catch-up"))
    assert all(p.error is None for p in parsed)
    changes = [c for p in parsed for c in p.changes]
    findings = {f.id: f for c in changes for f in engine.evaluate(c, sweep_baseline)}
    assert sorted(f.rule for f in findings.values()) == ["azure.role_assignment.protected_scope"]
    (owner,) = findings.values()
    assert owner.source == "event" and owner.event_id.startswith("c-lost")
    # the sweep of the same state reports the same finding id: dedup holds them as one
    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    swept, _ = sweep_findings(arm, sweep_baseline)
    assert [f.id for f in swept] == [owner.id]


def test_catch_up_takes_naive_datetimes_as_utc(arm: ArmServer) -> None:
    arm.state.activity_log = activity_log()
    naive = list(
        state.catch_up(SUB, SINCE.replace(tzinfo=None), UNTIL.replace(tzinfo=None), environ(arm))
    )
    assert naive == list(state.catch_up(SUB, SINCE, UNTIL, environ(arm)))
    assert [r["eventDataId"] for r in naive[0]["value"]][:2] == ["c-lost-0", "c-lost-1"]


def test_catch_up_of_a_quiet_window_yields_nothing(arm: ArmServer) -> None:
    arm.state.activity_log = activity_log()
    later = UNTIL + timedelta(days=1)
    assert list(state.catch_up(SUB, later, later + timedelta(hours=1), environ(arm))) == []


# --- the whole sweep: `trustwatch sweep --cloud azure` against the stand-in ---------------


def test_cli_sweep_reports_new_then_open_then_resolved(
    arm: ArmServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("TRUSTWATCH_STATE_URL", "TRUSTWATCH_STATE_TABLE", "TRUSTWATCH_ALERT_ROUTING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli-state.sqlite"))
    for key, value in environ(arm).items():
        monkeypatch.setenv(key, value)

    def run() -> tuple[int, list[tuple[str, str, str]]]:
        code = main(["sweep", "--baseline", str(BASELINE), "--cloud", "azure"])
        out, _ = capsys.readouterr()
        found = [json.loads(line) for line in out.splitlines()]
        return code, [(f["rule"], f["sweep_status"], f["source"]) for f in found]

    _add((STRANGER, ROLE["Owner"], f"/subscriptions/{SUB}"))(arm)
    held = ("azure.role_assignment.protected_scope",)
    assert run() == (1, [(*held, "new", "sweep")])
    assert run() == (1, [(*held, "open", "sweep")])  # still listed, no longer new
    arm.state.role_assignments.pop()
    assert run() == (0, [(*held, "resolved", "sweep")])
    assert run() == (0, [])
