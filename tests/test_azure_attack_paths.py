"""Issue 11, Azure: the ways in that used to give no finding, each with near-misses.

Every case is one operation replayed in every delivery shape (test_azure_rules.documents):
an Event Hub batch, records one by one, the REST schema, upper-case exports, Event Grid.
Sources of each semantic (learn.microsoft.com):
- scopes and inheritance: https://learn.microsoft.com/en-us/azure/role-based-access-control/scope-overview
- privileged roles and their GUIDs: https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles
- elevateAccess: https://learn.microsoft.com/en-us/azure/role-based-access-control/elevate-access-global-admin
- PIM requests: https://learn.microsoft.com/en-us/rest/api/authorization/role-eligibility-schedule-requests/create
  and https://learn.microsoft.com/en-us/rest/api/authorization/role-assignment-schedule-requests/create
- Lighthouse: https://learn.microsoft.com/en-us/rest/api/managedservices/registration-definitions/create-or-update,
  https://learn.microsoft.com/en-us/rest/api/managedservices/registration-assignments/create-or-update
- federated identity credentials: https://learn.microsoft.com/en-us/rest/api/managedidentity/federated-identity-credentials/create-or-update
- custom role permissions: https://learn.microsoft.com/en-us/azure/role-based-access-control/role-definitions
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from armserver import ArmServer
from azure.core.credentials import AccessToken
from conftest import DATA, EXAMPLE_BASELINE
from test_azure_events import (
    CONNECTOR_PRINCIPAL,
    RESPONDER,
    RG,
    ROLE,
    STORAGE,
    STRANGER,
    SUB,
    TERRAFORM_SP,
    activity,
    assign,
    assignment_id,
    assignment_request,
    assignment_response,
    changes_of,
    outcomes,
    to_event_grid,
)
from test_azure_rules import Case, documents, findings_of
from trustwatch.azure.actions import beyond, pattern_within
from trustwatch.azure.changes import PermissionBlock, RoleAssignment
from trustwatch.azure.enrich import arm_enricher
from trustwatch.azure.roles import ACTS_AS_IDENTITY, PRIVILEGED
from trustwatch.azure.scopes import norm_scope, reaches
from trustwatch.baseline import Baseline, BaselineError, parse_baseline
from trustwatch.cli import main
from trustwatch.engine import evaluate
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

PS = "azure.role_assignment.protected_scope"
UA = "azure.role_assignment.unexpected"
FC = "azure.identity.federated_credential_added"
RW = "azure.role_definition.widened"

TENANT = "5e8f1d2c-7a6b-4c3d-9e0f-1a2b3c4d5e6f"  # examples/baseline.yaml azure.tenant_id
SUBSCRIPTION = f"/subscriptions/{SUB}"
OTHER_SUB = "/subscriptions/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MG = "/providers/Microsoft.Management/managementGroups/dbx-platform"
SIBLING_RG = f"{SUBSCRIPTION}/resourceGroups/dbx-staging"
SIBLING_ACCOUNT = f"{RG}/providers/Microsoft.Storage/storageAccounts/scratch"
UNRELATED_CHILD = f"{RG}/providers/Microsoft.Compute/virtualMachines/etl-vm"
UAMI = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uc-identity"
OTHER_UAMI = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/scratch"
RESPONDER_RG = f"{SUBSCRIPTION}/resourceGroups/trustwatch"
RESPONDER_UAMI = f"{RESPONDER_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/trustwatch-responder"
CUSTOM = "4b7e2c1a-9d3f-4e5a-8b6c-7d8e9f0a1b2c"  # "dbx-uc-storage-operator", watched below
UNWATCHED = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
HELD = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"  # the terraform SP holds it; no custom_roles entry
MSP_TENANT = "c0ffee00-1234-4abc-9def-0123456789ab"
MSP_GROUP = "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"
# RBAC Administrator is not in examples: its GUID from the built-in roles page
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"


# examples/baseline.yaml plus what issue 11 adds to the Azure section (README: "Azure")
ADDED = f"""
actors:
  responder:
    - {RESPONDER_UAMI}    # the responder's user-assigned identity, by resource id
azure:
  subscriptions:
    "{SUB}":
      identities:
        uc-identity:
          principal_id: 5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a
          resource_id: {UAMI}
          role_assignments:
            - role: {CUSTOM}
              scope: {STORAGE}
      custom_roles:
        {CUSTOM}:
          actions:
            - Microsoft.Storage/storageAccounts/read
            - Microsoft.Storage/storageAccounts/blobServices/*/read
          data_actions:
            - Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read
"""


def baseline_data() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_BASELINE.read_text())
    added = yaml.safe_load(ADDED)
    data["actors"]["responder"] += added["actors"]["responder"]
    sub = data["azure"]["subscriptions"][SUB]
    sub["identities"].update(added["azure"]["subscriptions"][SUB]["identities"])
    sub["identities"]["terraform-sp"]["role_assignments"].append({"role": HELD, "scope": RG})
    sub["custom_roles"] = added["azure"]["subscriptions"][SUB]["custom_roles"]
    return data


@pytest.fixture(scope="module")
def attack_baseline() -> Baseline:
    return Baseline.model_validate(baseline_data())


def operation(
    op: str, resource_id: str, request: Any = None, response: Any = None, **kw: Any
) -> list[dict[str, Any]]:
    """The Start and Success records of one ARM write or action."""
    return [
        activity(op, "Start", resource_id, request=request, **kw),
        activity(op, "Success", resource_id, response=response, **kw),
    ]


def failed(records: list[dict[str, Any]], code: str = "Failed.Forbidden") -> list[dict]:
    """The same operation, refused: its Start, then a Failure record."""
    failure = activity(records[0]["operationName"], "Failure", records[0]["resourceId"])
    failure["resultSignature"] = code
    return [records[0], failure]


# --- PIM ---------------------------------------------------------------------------------

ELIGIBILITY = "Microsoft.Authorization/roleEligibilityScheduleRequests/write"
ACTIVATION = "Microsoft.Authorization/roleAssignmentScheduleRequests/write"


def pim(op: str, principal: str, role: str, scope: str, request_type: str = "AdminAssign"):
    """A PIM request as the REST reference shows it (scope from the URL, echoed back)."""
    kind = op.split("/")[1]
    rid = f"{scope}/providers/Microsoft.Authorization/{kind}/6f1c3e2a-8b4d-4c5e-9f6a-7b8c9d0e1f2a"
    props = {
        "principalId": principal,
        "roleDefinitionId": f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "requestType": request_type,
        "scheduleInfo": {"startDateTime": "2026-11-27T10:00:00Z", "expiration": {"type": "NoExpiration"}},
        "justification": "on call",
    }  # fmt: skip
    response = {"id": rid, "type": f"Microsoft.Authorization/{kind}", "properties": {**props, "scope": scope, "status": "Provisioned"}}  # fmt: skip
    return operation(op, rid, {"properties": props}, response)


# --- elevateAccess ---------------------------------------------------------------------------

ELEVATE = "Microsoft.Authorization/elevateAccess/action"


def elevate(**kw: Any) -> list[dict[str, Any]]:
    return operation(ELEVATE, "/providers/Microsoft.Authorization", **kw)


# --- Lighthouse -------------------------------------------------------------------------------

DEFINITION_ID = f"{SUBSCRIPTION}/providers/Microsoft.ManagedServices/registrationDefinitions/26c128c2-fefa-4340-9bb1-6e081c90ada2"  # fmt: skip


def authorization(role: str) -> dict[str, str]:
    return {
        "principalId": MSP_GROUP,
        "principalIdDisplayName": "MSP operators",
        "roleDefinitionId": role,
    }


def definition_properties(*roles: str) -> dict[str, Any]:
    return {
        "registrationDefinitionName": "Managed by Contoso MSP",
        "managedByTenantId": MSP_TENANT,
        "authorizations": [authorization(r) for r in roles],
    }


def lighthouse_definition(*roles: str, subscription: str = SUBSCRIPTION):
    rid = DEFINITION_ID.replace(SUBSCRIPTION, subscription)
    body = {"properties": definition_properties(*roles)}
    return operation(
        "Microsoft.ManagedServices/registrationDefinitions/write", rid, body, {**body, "id": rid}
    )


def lighthouse_assignment(scope: str, *roles: str):
    """An assignment of DEFINITION_ID over `scope`; with roles, the response carries the
    definition (as ARM returns it with $expandRegistrationDefinition), else only its id."""
    rid = f"{scope}/providers/Microsoft.ManagedServices/registrationAssignments/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # fmt: skip
    request = {"properties": {"registrationDefinitionId": DEFINITION_ID}}
    response: dict[str, Any] = {
        "id": rid,
        "properties": {"registrationDefinitionId": DEFINITION_ID},
    }
    if roles:
        response["properties"]["registrationDefinition"] = {
            "properties": definition_properties(*roles)
        }
    else:
        response = request
    return operation(
        "Microsoft.ManagedServices/registrationAssignments/write", rid, request, response
    )


# --- federated identity credentials ------------------------------------------------------------

FIC_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"


def federated(identity: str, **kw: Any) -> list[dict[str, Any]]:
    rid = f"{identity}/federatedIdentityCredentials/ci-deploy"
    body = {
        "properties": {
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:someone/elsewhere:ref:refs/heads/main",
            "audiences": ["api://AzureADTokenExchange"],
        }
    }
    return operation(FIC_WRITE, rid, body, {**body, "id": rid}, **kw)


# --- custom role definitions ---------------------------------------------------------------


def role_definition(guid: str, actions: list[str], data_actions=(), not_actions=()):
    rid = f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    body = {
        "properties": {
            "roleName": "dbx-uc-storage-operator",
            "type": "CustomRole",
            "permissions": [
                {
                    "actions": actions,
                    "notActions": list(not_actions),
                    "dataActions": list(data_actions),
                    "notDataActions": [],
                }
            ],
            "assignableScopes": [SUBSCRIPTION],
        }
    }
    return operation(
        "Microsoft.Authorization/roleDefinitions/write",
        rid,
        body,
        {**body, "id": rid, "name": guid},
    )


BASE_ACTIONS = ["Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/blobServices/*/read"]  # fmt: skip
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
NO_ONE_BY_ONE = ("batch", "rest", "upper case", "grid")  # a lone Start cannot know it fails

CASES = [
    # --- inherited access: a privileged role above the protected storage account ---
    Case("stranger made Owner of its resource group", assign(STRANGER, ROLE["Owner"], RG), [PS]),
    Case("stranger made User Access Administrator of the subscription", assign(STRANGER, ROLE["User Access Administrator"], SUBSCRIPTION), [PS]),
    Case("stranger made RBAC Administrator of a management group", assign(STRANGER, RBAC_ADMIN, MG), [PS]),
    Case("stranger made Contributor at / (can list the account's keys)", assign(STRANGER, ROLE["Contributor"], "/"), [PS]),
    Case("subscription scope spelled loud with a trailing slash", assign(STRANGER, ROLE["Owner"], f"/SUBSCRIPTIONS/{SUB.upper()}/"), [PS]),
    Case("Reader above the account (not privileged)", assign(STRANGER, ROLE["Reader"], SUBSCRIPTION), []),
    # Storage Account Contributor holds Microsoft.Storage/storageAccounts/* (listkeys too), and
    # data roles reach the blobs; assignments are inherited by child scopes
    # (learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage, scope-overview)
    Case("Storage Account Contributor above the account (lists its keys)", assign(STRANGER, ROLE["Storage Account Contributor"], RG), [PS]),
    Case("Storage Blob Data Owner above the account", assign(STRANGER, ROLE["Storage Blob Data Owner"], RG), [PS]),
    Case("Storage Blob Data Reader at the subscription (reads every blob)", assign(STRANGER, ROLE["Storage Blob Data Reader"], SUBSCRIPTION), [PS]),
    Case("Storage Blob Data Owner of a sibling storage account", assign(STRANGER, ROLE["Storage Blob Data Owner"], SIBLING_ACCOUNT), []),
    Case("Owner of a sibling resource group", assign(STRANGER, ROLE["Owner"], SIBLING_RG), []),
    Case("Owner of a sibling storage account", assign(STRANGER, ROLE["Owner"], SIBLING_ACCOUNT), []),
    Case("Owner of an unrelated VM in the same group", assign(STRANGER, ROLE["Owner"], UNRELATED_CHILD), []),
    Case("Owner of another subscription", assign(STRANGER, ROLE["Owner"], OTHER_SUB), []),
    Case("terraform SP's expected Contributor of the group, applied by a user", assign(TERRAFORM_SP, ROLE["Contributor"], RG), []),
    Case("terraform SP's Reader inside its expected Contributor", assign(TERRAFORM_SP, ROLE["Reader"], RG), []),
    # a baseline identity's own new grant above: `unexpected` (critical) reports it, once
    Case("terraform SP made Owner of the group", assign(TERRAFORM_SP, ROLE["Owner"], RG), [UA]),
    Case("Owner of the subscription refused", failed(assign(STRANGER, ROLE["Owner"], SUBSCRIPTION)), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    Case("Owner of the subscription granted by the responder", assign(STRANGER, ROLE["Owner"], SUBSCRIPTION, actor=RESPONDER), []),
    # --- elevateAccess: User Access Administrator at / ---
    Case("a Global Administrator elevates access", elevate(), [PS], grid_evaluated=True),
    Case("elevateAccess refused", failed(elevate()), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    Case("elevateAccess by the responder", elevate(actor=RESPONDER), [], grid_evaluated=True),
    Case("unrelated action: keys of an unwatched account listed", operation("Microsoft.Storage/storageAccounts/listKeys/action", SIBLING_ACCOUNT), [], grid_evaluated=True),
    # --- PIM requests: judged as direct assignments ---
    Case("PIM: stranger made eligible for Owner of the subscription", pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION), [PS]),
    Case("PIM: stranger activates Contributor on the group", pim(ACTIVATION, STRANGER, ROLE["Contributor"], RG, "SelfActivate"), [PS]),
    Case("PIM: stranger made eligible for Blob Data Reader on the account", pim(ELIGIBILITY, STRANGER, ROLE["Storage Blob Data Reader"], STORAGE), [PS]),
    Case("PIM: connector made eligible for Reader of the group", pim(ELIGIBILITY, CONNECTOR_PRINCIPAL, ROLE["Reader"], RG), [UA]),
    Case("PIM: connector's expected Blob Data Contributor, time-bound", pim(ACTIVATION, CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE), []),
    Case("PIM: connector eligible for Blob Data Reader on a container (inside its expected role)", pim(ELIGIBILITY, CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Reader"], f"{STORAGE}/blobServices/default/containers/uc-root"), []),
    Case("PIM: stranger eligible for Reader of the subscription", pim(ELIGIBILITY, STRANGER, ROLE["Reader"], SUBSCRIPTION), []),
    Case("PIM: Owner eligibility removed", pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION, "AdminRemove"), []),
    Case("PIM: Owner of a sibling group", pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SIBLING_RG), []),
    Case("PIM: request refused", failed(pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION)), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    # --- Lighthouse: roles delegated to another tenant ---
    Case("Lighthouse: Contributor over the subscription to another tenant", lighthouse_assignment(SUBSCRIPTION, ROLE["Contributor"]), [PS]),
    Case("Lighthouse: assignment over the group, roles not in the event", lighthouse_assignment(RG), [PS]),
    Case("Lighthouse: definition with Contributor written in the subscription", lighthouse_definition(ROLE["Reader"], ROLE["Contributor"]), [PS]),
    Case("Lighthouse: definition with Reader only", lighthouse_definition(ROLE["Reader"]), []),
    Case("Lighthouse: Reader over the subscription", lighthouse_assignment(SUBSCRIPTION, ROLE["Reader"]), []),
    Case("Lighthouse: assignment over a sibling group", lighthouse_assignment(SIBLING_RG), []),
    Case("Lighthouse: definition in another subscription", lighthouse_definition(ROLE["Contributor"], subscription=OTHER_SUB), []),
    Case("Lighthouse: assignment refused", failed(lighthouse_assignment(SUBSCRIPTION, ROLE["Contributor"])), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    # --- federated identity credentials ---
    Case("federated credential on the baseline user-assigned identity", federated(UAMI), [FC], grid_evaluated=True),
    Case("federated credential on the responder's identity", federated(RESPONDER_UAMI), [FC], grid_evaluated=True),
    Case("federated credential on the identity, spelled loud", federated(UAMI.upper()), [FC], grid_evaluated=True),
    Case("federated credential on an unrelated identity", federated(OTHER_UAMI), [], grid_evaluated=True),
    Case("federated credential write refused", failed(federated(UAMI)), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    Case("federated credential written by the responder", federated(UAMI, actor=RESPONDER), [], grid_evaluated=True),
    Case("a federated credential deleted (takes access away)", operation(FIC_WRITE.replace("/write", "/delete"), f"{UAMI}/federatedIdentityCredentials/ci-deploy"), [], grid_evaluated=True),
    Case("the identity itself re-tagged", operation("Microsoft.ManagedIdentity/userAssignedIdentities/write", UAMI, {"tags": {"a": "b"}}), [], grid_evaluated=True),
    # --- the responder's (and the baseline's) user-assigned identities: who may act as them ---
    Case("Managed Identity Operator on the responder's identity", assign(STRANGER, ROLE["Managed Identity Operator"], RESPONDER_UAMI), [PS]),
    Case("Managed Identity Contributor on the responder's resource group", assign(STRANGER, ROLE["Managed Identity Contributor"], RESPONDER_RG), [PS]),
    Case("Owner of the responder's resource group", assign(STRANGER, ROLE["Owner"], RESPONDER_RG), [PS]),
    Case("Managed Identity Operator on the baseline identity", assign(STRANGER, ROLE["Managed Identity Operator"], UAMI), [PS]),
    Case("Managed Identity Operator on the responder's identity refused", failed(assign(STRANGER, ROLE["Managed Identity Operator"], RESPONDER_UAMI)), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
    Case("Reader on the responder's identity", assign(STRANGER, ROLE["Reader"], RESPONDER_UAMI), []),
    Case("Managed Identity Operator on an unrelated identity", assign(STRANGER, ROLE["Managed Identity Operator"], OTHER_UAMI), []),
    Case("the responder given Operator on its own identity", assign(RESPONDER, ROLE["Managed Identity Operator"], RESPONDER_UAMI), []),
    # --- a watched custom role's permissions ---
    Case("custom role gains *", role_definition(CUSTOM, ["*"]), [RW]),
    Case("custom role gains blob writes", role_definition(CUSTOM, BASE_ACTIONS, [BLOB_READ, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"]), [RW]),
    Case("custom role gains Microsoft.Storage/*", role_definition(CUSTOM, ["Microsoft.Storage/*"]), [RW]),
    Case("custom role gains * minus Authorization (still wider)", role_definition(CUSTOM, ["*"], not_actions=["Microsoft.Authorization/*"]), [RW]),
    Case("custom role rewritten the same, reordered and in other case", role_definition(CUSTOM, [a.upper() for a in reversed(BASE_ACTIONS)], [BLOB_READ.lower()]), []),
    Case("custom role narrowed to one container read", role_definition(CUSTOM, ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]), []),
    Case("custom role's extra action removed by its own NotActions", role_definition(CUSTOM, [*BASE_ACTIONS, "Microsoft.Storage/storageAccounts/listkeys/action"], not_actions=["Microsoft.Storage/storageAccounts/listKeys/*"]), []),
    Case("an unwatched custom role gains *", role_definition(UNWATCHED, ["*"]), []),
    # held by a baseline identity but not listed in custom_roles: any rewrite may widen it
    Case("a held custom role without a baseline entry rewritten", role_definition(HELD, ["Microsoft.Storage/*/read"]), [RW]),
    Case("custom role write refused", failed(role_definition(CUSTOM, ["*"])), [], grid_evaluated=True, shapes=NO_ONE_BY_ONE),
]  # fmt: skip


PARAMS = [
    pytest.param(case, shape, id=f"{case.name} [{shape}]")
    for case in CASES
    for shape in case.shapes
]


@pytest.mark.parametrize(("case", "shape"), PARAMS)
def test_attack_path_cases(case: Case, shape: str, attack_baseline):
    found, not_evaluated = findings_of(documents(case, shape), attack_baseline)
    if shape == "grid" and not case.grid_evaluated:
        assert found == []
        assert [c.not_evaluated for c in not_evaluated] == ["body not in event"]
        return
    assert not_evaluated == []
    assert sorted(f.rule for f in found) == case.expected


def rules_and_severity(records: list[dict], baseline: Baseline) -> list[tuple[str, str]]:
    found, _ = findings_of([{"records": records}], baseline)
    return sorted((f.rule, f.severity.value) for f in found)


# --- severities and finding fields -------------------------------------------------------


def test_privileged_set_is_the_documented_four():
    """Built-in roles page, "Privileged administrator roles" (+ Contributor: listKeys)."""
    assert {
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
        "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
        RBAC_ADMIN,  # Role Based Access Control Administrator
    } == PRIVILEGED
    assert {
        "f1a07417-d97a-45cb-824c-7a7467783830",  # Managed Identity Operator
        "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",  # Managed Identity Contributor
    } == ACTS_AS_IDENTITY - PRIVILEGED


def test_inherited_access_is_critical_and_says_how(attack_baseline):
    found, _ = findings_of([{"records": assign(STRANGER, ROLE["Owner"], RG)}], attack_baseline)
    (finding,) = found
    assert (finding.rule, finding.severity, finding.identity) == (PS, "critical", STRANGER)
    assert f"which reaches protected scope {STORAGE}" in finding.summary
    assert finding.expected["protected_scope"] == STORAGE
    assert finding.remediation.action == "delete_role_assignment"
    # inside the scope, a non-privileged role keeps the rule's default severity
    inside = assign(STRANGER, ROLE["Storage Blob Data Reader"], STORAGE)
    assert rules_and_severity(inside, attack_baseline) == [(PS, "high")]


def test_storage_roles_from_above_writers_critical_readers_high(attack_baseline):
    """Storage data roles and Storage Account Contributor (listKeys) granted above a
    protected account reach it by inheritance (scope-overview page); writing or listing keys
    is critical, reading is high."""
    writer = assign(STRANGER, ROLE["Storage Blob Data Contributor"], RG)
    assert rules_and_severity(writer, attack_baseline) == [(PS, "critical")]
    keys = assign(STRANGER, ROLE["Storage Account Contributor"], SUBSCRIPTION)
    assert rules_and_severity(keys, attack_baseline) == [(PS, "critical")]
    reader = assign(STRANGER, ROLE["Storage Blob Data Reader"], RG)
    assert rules_and_severity(reader, attack_baseline) == [(PS, "high")]


def test_elevate_access_corpus_record(attack_baseline, tmp_path, capsys):
    """The Panther sample: a user known only by upn elevates to User Access Administrator."""
    path = DATA / "azure" / "activitylog-elevateaccess-action-panther-synthetic.json"
    (change,) = changes_of(json.loads(path.read_text()))
    assert (change.kind, change.identity, change.payload_as(RoleAssignment).scope) == (
        "access.elevated",
        "attacker@example.com",
        "/",
    )
    code = main(["replay", "--baseline", str(EXAMPLE_BASELINE), str(path)])
    (finding,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert (finding["rule"], finding["severity"]) == (PS, "critical")
    assert finding["summary"].startswith("attacker@example.com elevated its access to User Access")


def test_lighthouse_finding_names_the_tenant(attack_baseline):
    found, _ = findings_of(
        [{"records": lighthouse_assignment(SUBSCRIPTION, ROLE["Reader"], ROLE["Contributor"])}],
        attack_baseline,
    )
    (finding,) = found
    assert finding.identity == MSP_TENANT and finding.severity == "critical"
    assert finding.actual["authorizations"] == [{"principal_id": MSP_GROUP, "role": "Contributor"}]
    assert MSP_TENANT in finding.summary


def test_federated_credential_finding(attack_baseline):
    found, _ = findings_of([{"records": federated(UAMI)}], attack_baseline)
    (finding,) = found
    assert (finding.identity, finding.severity) == (UAMI, "critical")
    assert finding.actual["issuer"] == "https://token.actions.githubusercontent.com"
    assert finding.remediation.action == "delete_federated_credential"


def test_widened_custom_role_names_what_it_gained(attack_baseline):
    found, _ = findings_of(
        [{"records": role_definition(CUSTOM, [*BASE_ACTIONS, "*"])}], attack_baseline
    )
    (finding,) = found
    assert finding.identity == CUSTOM and finding.severity == "high"
    assert finding.actual["beyond_baseline"] == {"actions": ["*"], "data_actions": []}
    assert "held by uc-identity" in finding.summary


def test_pim_and_direct_grants_are_distinct_findings(attack_baseline):
    direct, _ = findings_of(
        [{"records": assign(STRANGER, ROLE["Owner"], SUBSCRIPTION)}], attack_baseline
    )
    eligible, _ = findings_of(
        [{"records": pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION)}], attack_baseline
    )
    assert [f.rule for f in direct] == [f.rule for f in eligible] == [PS]
    assert direct[0].id != eligible[0].id  # dedup must not swallow one for the other


# --- management groups ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "scope", "expected"),
    [
        (None, MG, [PS]),  # unknown: any management group may hold the subscription
        (["dbx-platform"], MG, [PS]),
        (["DBX-Platform"], MG.upper() + "/", [PS]),
        ([MG.upper()], MG, [PS]),  # the group given by its scope
        (["dbx-platform"], "/providers/Microsoft.Management/managementGroups/sandbox", []),
        (["dbx-platform"], f"/providers/Microsoft.Management/managementGroups/{TENANT}", [PS]),
        ([], "/", [PS]),
    ],
)
def test_management_group_parents(groups, scope, expected):
    data = baseline_data()
    if groups is not None:
        data["azure"]["subscriptions"][SUB]["management_groups"] = groups
    baseline = Baseline.model_validate(data)
    found, _ = findings_of([{"records": assign(STRANGER, ROLE["Owner"], scope)}], baseline)
    assert [f.rule for f in found] == expected
    if found and groups is None:
        assert "lists no management_groups" in found[0].summary


@pytest.mark.parametrize(
    ("grant", "target", "groups", "expected"),
    [
        ("/", f"{SUBSCRIPTION}/resourcegroups/x", frozenset(), True),
        (SUBSCRIPTION.upper() + "/", SUBSCRIPTION, frozenset(), True),
        (f"{SUBSCRIPTION}//resourceGroups/dbx-prod", RG, frozenset(), True),
        (f"{SUBSCRIPTION}/resourceGroups/dbx", RG, frozenset(), False),  # a prefix, not a parent
        (RG, SUBSCRIPTION, frozenset(), False),  # a child does not reach its parent
        (MG, RG, None, True),
        (MG, RG, frozenset({"other"}), False),
        (MG, MG, frozenset(), True),
    ],
)
def test_scope_reach(grant, target, groups, expected):
    """Access is inherited downward only (scope-overview page)."""
    assert reaches(norm_scope(grant), norm_scope(target), groups) is expected


# --- the retry bug: each attempt judged by its own outcome ------------------------------------


def retried(first_failure: bool = True) -> list[dict[str, Any]]:
    start, success = assign(STRANGER, ROLE["Owner"], SUBSCRIPTION)
    failure = failed([start], "Failed.PrincipalNotFound")[1]
    return [start, failure, start, success] if first_failure else [start, success, failure]


def test_retry_after_principal_not_found_is_reported(attack_baseline):
    found, _ = findings_of([{"records": retried()}], attack_baseline)
    assert [f.rule for f in found] == [PS]


def test_forged_failure_with_the_same_correlation_id_hides_nothing(attack_baseline):
    found, _ = findings_of([{"records": retried(first_failure=False)}], attack_baseline)
    assert [f.rule for f in found] == [PS]
    # the Success record without its body: the Start is judged in its place
    records = retried(first_failure=False)
    records[1]["properties"].pop("responseBody")
    found, _ = findings_of([{"records": records}], attack_baseline)
    assert [f.rule for f in found] == [PS]


def test_second_attempt_still_running_is_judged_on_its_start(attack_baseline):
    start, failure, again, _ = retried()
    results = outcomes({"records": [start, failure, again]})
    assert "operation failed" in results[0].skipped.reason
    assert results[2].changes and not results[2].changes[0].failed
    found, _ = findings_of([{"records": [start, failure, again]}], attack_baseline)
    assert [f.rule for f in found] == [PS]


def test_start_and_failure_alone_report_nothing(attack_baseline):
    start, failure, _, _ = retried()
    found, _ = findings_of([{"records": [start, failure]}], attack_baseline)
    assert found == []


# --- action pattern semantics (role-definitions page: wildcards, NotActions) ----------------------


@pytest.mark.parametrize(
    ("inner", "outer", "expected"),
    [
        ("Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/*/read", True),
        ("microsoft.storage/STORAGEACCOUNTS/read", "Microsoft.Storage/storageAccounts/read", True),
        ("Microsoft.Storage/*/read", "Microsoft.Storage/*", True),
        ("Microsoft.Storage/*", "*", True),
        ("*", "Microsoft.Storage/*/read", False),
        ("Microsoft.Storage/*", "Microsoft.Storage/*/read", False),
        ("Microsoft.Storage/storageAccounts/write", "Microsoft.Storage/*/read", False),
        ("Microsoft.Storage/storageAccounts/*/read", "Microsoft.Storage/*/read", True),
        ("Microsoft.Compute/*", "Microsoft.Storage/*", False),
    ],
)
def test_action_patterns(inner, outer, expected):
    assert pattern_within(inner, outer) is expected


def test_beyond_respects_not_actions_per_block():
    blocks = [
        PermissionBlock(
            actions=("Microsoft.Storage/*",), not_actions=("Microsoft.Storage/*/write",)
        ),
        PermissionBlock(
            actions=("Microsoft.Storage/storageAccounts/read",), data_actions=(BLOB_READ,)
        ),
    ]
    assert beyond(blocks, ["Microsoft.Storage/*/read"], []) == (
        ["Microsoft.Storage/*"],  # only partly removed: still more than reads
        [BLOB_READ],
    )
    assert beyond(blocks, ["Microsoft.Storage/*"], ["Microsoft.Storage/*"]) == ([], [])


# --- the baseline section ------------------------------------------------------------------------


def test_custom_role_keys_are_definition_guids():
    text = yaml.safe_dump(baseline_data()).replace(CUSTOM + ":", "dbx-uc-storage-operator:")
    with pytest.raises(BaselineError, match="must be the role definition GUID"):
        parse_baseline(text)
    loud = parse_baseline(yaml.safe_dump(baseline_data()).replace(CUSTOM, CUSTOM.upper()))
    assert CUSTOM in loud.azure.subscriptions[SUB].custom_roles


def test_baseline_yaml_with_the_additions(attack_baseline):
    baseline = parse_baseline(yaml.safe_dump(baseline_data()))
    assert baseline == attack_baseline
    found, _ = findings_of([{"records": role_definition(CUSTOM, ["*"])}], baseline)
    assert [f.rule for f in found] == [RW]
    # the responder's object id still silences its own changes
    found, _ = findings_of([{"records": federated(RESPONDER_UAMI, actor=RESPONDER)}], baseline)
    assert found == []


def test_assignment_request_shapes_still_read():
    """The Panther requestbody shape (capitalized keys) for a PIM request too."""
    request = assignment_request(STRANGER, ROLE["Owner"], SUBSCRIPTION)
    request["Properties"]["RequestType"] = "AdminAssign"
    rid = f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleEligibilityScheduleRequests/x"
    (change,) = changes_of(activity(ELIGIBILITY, "Start", rid, request=request))
    assert change.payload_as(RoleAssignment).via == "roleeligibilityschedulerequests"
    assert change.payload_as(RoleAssignment).scope == SUBSCRIPTION
    assert assignment_response(STRANGER, ROLE["Owner"], SUBSCRIPTION)["id"] == assignment_id(
        SUBSCRIPTION
    )


# --- Event Grid carries no body: the function reads the resource from ARM ------------------------


class TokenCredential:
    """An azure-core TokenCredential handing out the stand-in's token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer() as server:
        yield server


def grid_change(records: list[dict[str, Any]]):
    (parsed,) = parse_document(to_event_grid(records[1]), "grid")
    (change,) = parsed.changes
    assert change.needs_enrichment and change.not_evaluated == "body not in event"
    return change


@pytest.mark.parametrize(
    ("records", "api_version", "expected"),
    [
        pytest.param(role_definition(CUSTOM, ["*"]), "2022-04-01", [RW], id="role definition"),
        pytest.param(
            lighthouse_assignment(SUBSCRIPTION, ROLE["Contributor"]),
            "2022-10-01",
            [PS],
            id="lighthouse assignment",
        ),
        pytest.param(
            lighthouse_definition(ROLE["Owner"]), "2022-10-01", [PS], id="lighthouse definition"
        ),
        pytest.param(
            pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION), "2020-10-01", [PS], id="pim"
        ),
    ],
)
def test_event_grid_change_completed_from_arm(arm, attack_baseline, records, api_version, expected):
    resource_id = records[1]["resourceId"]
    arm.resources[resource_id] = json.loads(records[1]["properties"]["responseBody"])
    enricher = arm_enricher(
        credential=TokenCredential(arm.token), base_url=arm.url, connection_verify=arm.ca_bundle
    )
    (outcome,) = evaluate_records(
        parse_document(to_event_grid(records[1]), "grid"), attack_baseline, enricher
    )
    assert [f.rule for f in outcome.findings] == expected
    direct, _ = findings_of([{"records": records}], attack_baseline)
    assert [f.id for f in outcome.findings] == [f.id for f in direct]  # the same finding
    (request,) = arm.requests
    assert request.path == resource_id and request.query["api-version"] == api_version
    if "registrationAssignments" in resource_id:
        assert request.query["$expandRegistrationDefinition"] == "true"


def test_event_grid_resource_gone_is_not_evaluated(arm):
    enricher = arm_enricher(
        credential=TokenCredential(arm.token), base_url=arm.url, connection_verify=arm.ca_bundle
    )
    reason = enricher(grid_change(role_definition(CUSTOM, ["*"])))
    assert reason == "role definition already deleted (404)"


# --- odd bodies: a clear EventError or a Change, never a crash ---------------------------------


def _variants(body: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, body with the value at path replaced) for every value, by each odd type."""
    if isinstance(body, dict):
        items = list(body.items())
    elif isinstance(body, list):
        items = list(enumerate(body))
    else:
        return
    for key, value in items:
        for odd in (None, 1, "x", [], {}, [1], {"a": 1}):
            copy = json.loads(json.dumps(body))
            copy[key] = odd
            yield (*path, key), copy
        for sub_path, sub in _variants(value, (*path, key)):
            copy = json.loads(json.dumps(body))
            copy[key] = sub
            yield sub_path, copy


ODD_BODIES = [
    role_definition(CUSTOM, ["*"]),
    lighthouse_definition(ROLE["Contributor"]),
    lighthouse_assignment(SUBSCRIPTION, ROLE["Contributor"]),
    pim(ELIGIBILITY, STRANGER, ROLE["Owner"], SUBSCRIPTION),
    federated(UAMI),
]


@pytest.mark.parametrize("records", ODD_BODIES, ids=lambda r: r[0]["operationName"])
def test_odd_body_values_read_or_fail_clearly(records, attack_baseline):
    start, success = records
    for field, record in (("requestbody", start), ("responseBody", success)):
        body = json.loads(record["properties"][field])
        for where, odd in _variants(body):
            mutated = json.loads(json.dumps(record))
            mutated["properties"][field] = json.dumps(odd)
            for parsed in parse_document(mutated, "odd"):
                if parsed.error is not None:
                    assert "odd" in str(parsed.error), where
                for change in parsed.changes:
                    evaluate(change, attack_baseline)  # must not raise
