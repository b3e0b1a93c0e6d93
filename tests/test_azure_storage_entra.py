"""The rest of the Azure trust surface (issue 15): watched storage accounts and the Entra
objects of the baseline identities.

Storage account writes and key listings are Activity Log operations, replayed in every
delivery shape (Event Hub batch, records one by one, REST schema, upper-case exports and
the Event Grid event completed from the account as ARM returns it). Credential and owner
changes are Entra ID audit records, replayed as the tenant's diagnostic setting exports
them (`category: AuditLogs`, in `{"records": [...]}` and alone) and as the Graph
`directoryAudit` resource. The audit records are built from the documented schema
("Microsoft Entra audit log schema in Azure Monitor",
https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-azure-monitor-audit-log-schema;
"directoryAudit resource type", https://learn.microsoft.com/en-us/graph/api/resources/directoryaudit)
and the activity names of "Microsoft Entra audit log activities"
(https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-audit-activities).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from conftest import EXAMPLE_BASELINE
from pydantic import ValidationError
from test_azure_events import (
    RESPONDER,
    RG,
    STORAGE,
    STRANGER,
    SUB,
    TERRAFORM_SP,
    activity,
    shout,
    to_event_grid,
    to_rest,
)
from trustwatch.azure import entra
from trustwatch.azure.changes import StorageAccountSettings
from trustwatch.azure.events import complete
from trustwatch.baseline import Baseline
from trustwatch.changes import Skipped
from trustwatch.engine import evaluate
from trustwatch.intake import parse_document

TENANT = "5e8f1d2c-7a6b-4c3d-9e0f-1a2b3c4d5e6f"
APP_ID = "2b7c9d1e-3f4a-4b5c-8d6e-7f8091a2b3c4"  # the Terraform SP's application (client) id
APP_OBJECT = "4c5d6e7f-8091-4a2b-9c3d-4e5f60718293"  # its application object
OTHER_SP = "8f9e0d1c-2b3a-4c5d-9e6f-708192a3b4c5"
OTHER_APP = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5e"
OTHER_STORAGE = f"{RG}/providers/Microsoft.Storage/storageAccounts/scratchdata"
WRITE = "Microsoft.Storage/storageAccounts/write"
LIST_KEYS = "Microsoft.Storage/storageAccounts/listKeys/action"
LIST_SAS = "Microsoft.Storage/storageAccounts/ListAccountSas/action"
LIST_SERVICE_SAS = "Microsoft.Storage/storageAccounts/listServiceSas/action"
REGENERATE = "Microsoft.Storage/storageAccounts/regenerateKey/action"

PAO = "azure.storage.public_access_opened"
SKE = "azure.storage.shared_key_enabled"
KL = "azure.storage.keys_listed"
CA = "azure.sp.credential_added"
OA = "azure.sp.owner_added"


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    """examples/baseline.yaml, its UC account watched and its Terraform SP's Entra objects
    named (the README's baseline reference shows the same entries)."""
    data = yaml.safe_load(EXAMPLE_BASELINE.read_text())
    sub = data["azure"]["subscriptions"][SUB]
    sub["storage_accounts"] = {
        "dbxucprod": {
            "resource_group": "dbx-prod",
            "allow_blob_public_access": False,
            "allow_shared_key_access": False,
            "network_default_action": "Deny",
            # the Terraform SP by object id; the docs' user (admin@contoso.com) by upn
            "key_readers": [TERRAFORM_SP, "Admin@Contoso.com"],
        }
    }
    sub["identities"]["terraform-sp"] |= {
        "application_id": APP_ID,
        "application_object_id": APP_OBJECT,
        "service_principal_object_id": TERRAFORM_SP,
    }
    return Baseline.model_validate(data)


# --- storage accounts -------------------------------------------------------------------


def account(
    resource_id: str = STORAGE,
    *,
    public: bool | None = False,
    shared_key: bool | None = False,
    network: str | None = "Deny",
    public_network: str | None = "Enabled",
) -> dict[str, Any]:
    """A storage account as ARM's GET returns it ("Storage Accounts - Get Properties",
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/get-properties);
    None leaves the property out, as ARM does for one never set."""
    props: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
        "primaryEndpoints": {"blob": "https://dbxucprod.blob.core.windows.net/"},
    }
    if public is not None:
        props["allowBlobPublicAccess"] = public
    if shared_key is not None:
        props["allowSharedKeyAccess"] = shared_key
    if network is not None:
        props["networkAcls"] = {
            "bypass": "AzureServices",
            "virtualNetworkRules": [],
            "ipRules": [],
            "defaultAction": network,
        }
    if public_network is not None:
        props["publicNetworkAccess"] = public_network
    return {
        "id": resource_id,
        "name": resource_id.rsplit("/", 1)[-1],
        "type": "Microsoft.Storage/storageAccounts",
        "location": "eastus2",
        "kind": "StorageV2",
        "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "properties": props,
    }


def write(request: dict[str, Any], resource_id: str = STORAGE, **kw: Any) -> list[dict]:
    """Start (the PATCH/PUT body) and Success (202: no body, as ARM answers an async
    storage write) of one storage account write."""
    return [
        activity(WRITE, "Start", resource_id, request=request, **kw),
        activity(WRITE, "Success", resource_id, **kw),
    ]


def props(**values: Any) -> dict[str, Any]:
    return {"properties": values}


@dataclass(frozen=True)
class Case:
    name: str
    records: list[dict[str, Any]]
    expected: list[str]
    # the account as ARM returns it after the write, for the Event Grid event and a
    # bodiless Success record; None: the operation needs no body
    resource: dict[str, Any] | None = None
    shapes: tuple[str, ...] = field(default=("batch", "one by one", "rest", "upper case", "grid"))


STORAGE_CASES = [
    Case("blob public access allowed", write(props(allowBlobPublicAccess=True)), [PAO], account(public=True)),
    Case("blob public access allowed, spelled as a string", write(props(allowBlobPublicAccess="true")), [PAO], account(public=True)),
    Case(
        "network default action opened",
        write(props(networkAcls={"defaultAction": "Allow", "bypass": "AzureServices"})),
        [PAO],
        account(network="Allow"),
    ),
    Case(
        "network default action opened while public network access is disabled: still closed",
        write(props(networkAcls={"defaultAction": "Allow"}, publicNetworkAccess="Disabled")),
        [],
        account(network="Allow", public_network="Disabled"),
    ),
    Case("shared key access re-enabled", write(props(allowSharedKeyAccess=True)), [SKE], account(shared_key=True)),
    Case(
        "public blobs and shared keys in one PUT",
        write(account(public=True, shared_key=True) | {"id": STORAGE}),
        [PAO, SKE],
        account(public=True, shared_key=True),
    ),
    Case(
        "the baseline's own settings re-applied",
        write(props(allowBlobPublicAccess=False, allowSharedKeyAccess=False, networkAcls={"defaultAction": "Deny"})),
        [],
        account(),
    ),
    Case(
        "stricter: public network access disabled",
        write(props(publicNetworkAccess="Disabled")),
        [],
        account(public_network="Disabled"),
    ),
    Case("tags only: the PATCH leaves the settings as they were", write({"tags": {"team": "data"}}), [], account()),
    Case(
        "an unrelated storage account opened",
        write(props(allowBlobPublicAccess=True, allowSharedKeyAccess=True), OTHER_STORAGE),
        [],
        account(OTHER_STORAGE, public=True, shared_key=True),
    ),
    Case(
        "the same name in another resource group: not the watched account",
        write(props(allowBlobPublicAccess=True), STORAGE.replace("dbx-prod", "sandbox")),
        [],
        account(STORAGE.replace("dbx-prod", "sandbox"), public=True),
    ),
    Case(
        "the responder's own write",
        write(props(allowBlobPublicAccess=True), actor=RESPONDER),
        [],
        account(public=True),
    ),
    Case(
        "a failed write (Start, then Failure)",
        [
            write(props(allowBlobPublicAccess=True))[0],
            activity(WRITE, "Failure", STORAGE),
        ],
        [],
        None,  # a ResourceWriteFailure event: nothing to fetch
        shapes=("batch", "rest", "upper case", "grid"),
    ),
    # --- keys ---
    Case("keys listed by a stranger", [activity(LIST_KEYS, "Start", STORAGE, actor=STRANGER), activity(LIST_KEYS, "Success", STORAGE, actor=STRANGER)], [KL]),
    Case("an account SAS minted by a stranger", [activity(LIST_SAS, "Success", STORAGE, actor=STRANGER)], [KL]),
    Case("a key regenerated by a stranger (the answer holds the keys)", [activity(REGENERATE, "Success", STORAGE, actor=STRANGER)], [KL]),
    Case("a service SAS minted by a stranger", [activity(LIST_SERVICE_SAS, "Success", STORAGE, actor=STRANGER)], [KL]),
    Case("keys listed by a baseline key reader", [activity(LIST_KEYS, "Success", STORAGE, actor=TERRAFORM_SP)], []),
    Case("keys listed by a key reader named by its upn, in another case", [activity(LIST_KEYS, "Success", STORAGE)], []),
    Case("keys listed by the responder", [activity(LIST_KEYS, "Success", STORAGE, actor=RESPONDER)], []),
    Case("a refused listKeys", [activity(LIST_KEYS, "Start", STORAGE, actor=STRANGER), activity(LIST_KEYS, "Failure", STORAGE, actor=STRANGER)], [], shapes=("batch", "rest", "upper case", "grid")),
    Case("keys of an unrelated account listed", [activity(LIST_KEYS, "Success", OTHER_STORAGE, actor=STRANGER)], []),
]  # fmt: skip


def documents(case: Case, shape: str) -> list[Any]:
    if shape == "batch":
        return [{"records": case.records}]
    if shape == "one by one":
        return list(case.records)
    if shape == "rest":
        return [[to_rest(r) for r in case.records]]
    if shape == "upper case":
        return [{"records": [shout(r) for r in case.records]}]
    return [to_event_grid(case.records[-1])]


def rules_fired(docs: list[Any], baseline: Baseline, resource: Any = None) -> list[str]:
    """Unique findings' rule ids; a change waiting for its body is completed from
    `resource` (what trustwatch.azure.enrich would read from ARM)."""
    found: dict[str, str] = {}
    for doc in docs:
        for parsed in parse_document(doc, "test"):
            assert parsed.error is None, parsed.error
            for change in parsed.changes:
                if change.needs_enrichment:
                    assert change.not_evaluated == "body not in event"
                    assert resource is not None, "no body and nothing to complete it with"
                    change = complete(change, resource)
                for finding in evaluate(change, baseline):
                    found.setdefault(finding.id, finding.rule)
    return sorted(found.values())


@pytest.mark.parametrize(
    ("case", "shape"),
    [pytest.param(c, s, id=f"{c.name} [{s}]") for c in STORAGE_CASES for s in c.shapes],
)
def test_storage_cases(case: Case, shape: str, baseline: Baseline) -> None:
    # the Success record of an async write has no body: delivered without its Start (one
    # by one) it is completed from ARM like the Event Grid event
    assert rules_fired(documents(case, shape), baseline, case.resource) == case.expected


def test_absent_properties_in_a_request_mean_unchanged() -> None:
    """A PATCH names only what it changes ("Storage Accounts - Update",
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/update)."""
    ((change,),) = [p.changes for p in parse_document(write({"tags": {}})[0], "t")]
    settings = change.payload_as(StorageAccountSettings)
    assert settings.allow_blob_public_access is None
    assert settings.allow_shared_key_access is None
    assert settings.network_default_action is None


def test_a_whole_resource_without_the_settings_is_open(baseline: Baseline) -> None:
    """In a response or an ARM GET, a setting never set is null: `allowSharedKeyAccess` null
    "is equivalent to true" ("Storage Accounts - Create",
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/create), an
    `allowBlobPublicAccess` null permits anonymous access on accounts that never set it
    ("Remediate anonymous read access to blob data",
    https://learn.microsoft.com/en-us/azure/storage/blobs/anonymous-read-access-prevent-classic),
    and the network default action is Allow."""
    whole = account(public=None, shared_key=None, network=None)
    records = [
        activity(WRITE, "Start", STORAGE, request={"tags": {"team": "data"}}),
        activity(WRITE, "Success", STORAGE, response=whole),
    ]
    assert rules_fired([{"records": records}], baseline) == [PAO, SKE]
    (change,) = [c for p in parse_document({"records": records}, "t") for c in p.changes]
    settings = change.payload_as(StorageAccountSettings)
    assert (settings.allow_blob_public_access, settings.allow_shared_key_access) == (True, True)
    assert settings.network_default_action == "Allow"


def test_storage_finding_fields(baseline: Baseline) -> None:
    records = write(props(allowBlobPublicAccess=True, networkAcls={"defaultAction": "Allow"}))
    (finding,) = [
        f
        for p in parse_document({"records": records}, "t")
        for c in p.changes
        for f in evaluate(c, baseline)
    ]
    assert (finding.rule, finding.severity, finding.scope) == (PAO, "critical", SUB)
    assert finding.identity == STORAGE
    assert finding.actual["allow_blob_public_access"] is True
    assert "anonymous blob access" in finding.summary and "any network" in finding.summary
    assert finding.remediation.action == "restore_storage_account_settings"

    listed = [activity(LIST_KEYS, "Success", STORAGE, actor=STRANGER)]
    (keys,) = [
        f for p in parse_document(listed, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    assert (keys.rule, keys.severity, keys.identity) == (KL, "high", STORAGE)
    assert STRANGER in keys.actual["caller"]
    assert "listKeys" in keys.summary


def test_storage_baseline_validation_is_precise() -> None:
    data = yaml.safe_load(EXAMPLE_BASELINE.read_text())
    sub = data["azure"]["subscriptions"][SUB]
    sub["storage_accounts"] = {"DbxUcProd": {}}
    with pytest.raises(
        ValidationError, match="storage account key 'DbxUcProd' must be the account name"
    ):
        Baseline.model_validate(data)
    sub["storage_accounts"] = {"dbxucprod": {"network_default_action": "Open"}}
    with pytest.raises(ValidationError, match="network_default_action"):
        Baseline.model_validate(data)
    sub["storage_accounts"] = {"dbxucprod": {"allow_blob_public_acess": False}}
    with pytest.raises(ValidationError, match="allow_blob_public_acess"):
        Baseline.model_validate(data)
    sub["storage_accounts"] = {"dbxucprod": None}
    spec = Baseline.model_validate(data).azure.subscriptions[SUB].storage_accounts["dbxucprod"]
    assert spec.allow_blob_public_access is False and spec.allow_shared_key_access is None
    sub["storage_accounts"] = {"dbxucprod": {"network_default_action": "deny"}}
    spec = Baseline.model_validate(data).azure.subscriptions[SUB].storage_accounts["dbxucprod"]
    assert spec.network_default_action == "Deny"
    del sub["storage_accounts"]
    sub["identities"]["terraform-sp"]["application_id"] = "terraform"
    with pytest.raises(ValidationError, match="'terraform' is not a GUID"):
        Baseline.model_validate(data)


# --- Entra ID audit records -------------------------------------------------------------


def target(
    object_id: str, type_: str, name: str = "", modified: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "id": object_id,
        "displayName": name or None,
        "type": type_,
        "userPrincipalName": None,
        "groupType": None,
        "modifiedProperties": modified or [],
        "administrativeUnits": [],
    }


def owner(upn: str, object_id: str = "a3b4c5d6-e7f8-4091-a2b3-c4d5e6f70819", **named: str) -> dict:
    """The new owner, first of `targetResources`, naming the object it now owns."""
    out = target(object_id, "User")
    out["userPrincipalName"] = upn
    out["modifiedProperties"] = [
        {"displayName": key, "oldValue": None, "newValue": json.dumps(value)}
        for key, value in named.items()
    ]
    return out


def prop(name: str, old: Any, new: Any) -> dict[str, Any]:
    return {"displayName": name, "oldValue": json.dumps(old), "newValue": json.dumps(new)}


def key(key_id: str, kind: str = "Password") -> str:
    return f"[KeyIdentifier={key_id},KeyType={kind},KeyUsage=Verify,DisplayName=ci]"


KEY_1 = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
KEY_2 = "c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f"
FIC = {"Name": "github-main", "Issuer": "https://token.actions.githubusercontent.com", "Subject": "repo:evil/x:ref:refs/heads/main", "Audiences": ["api://AzureADTokenExchange"]}  # fmt: skip


def audit(
    activity_name: str,
    targets: list[dict[str, Any]],
    *,
    result: str = "success",
    by: str = "mallory@contoso.com",
    category: str = "ApplicationManagement",
) -> dict[str, Any]:
    """One record as the tenant's diagnostic setting exports it to Event Hub."""
    return {
        "time": "2026-11-27T10:00:00.0000000Z",
        "resourceId": f"/tenants/{TENANT}/providers/Microsoft.aadiam",
        "operationName": activity_name,
        "operationVersion": "1.0",
        "category": "AuditLogs",
        "tenantId": TENANT,
        "resultType": "Success" if result == "success" else "Failure",
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": "203.0.113.7",
        "correlationId": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
        "Level": 4,
        "properties": {
            "id": "Directory_d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70_ABCDE_12345",
            "category": category,
            "correlationId": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
            "result": result,
            "resultReason": "" if result == "success" else "Insufficient privileges",
            "activityDisplayName": activity_name,
            "activityDateTime": "2026-11-27T10:00:00.0000000+00:00",
            "loggedByService": "Core Directory",
            "operationType": "Update",
            "initiatedBy": {
                "user": {
                    "id": "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7081",
                    "displayName": None,
                    "userPrincipalName": by,
                    "ipAddress": "203.0.113.7",
                    "roles": [],
                },
                "app": None,
            },
            "targetResources": targets,
            "additionalDetails": [{"key": "User-Agent", "value": "python-requests/2.32"}],
        },
    }


def graph(record: dict[str, Any]) -> dict[str, Any]:
    """The same activity as Microsoft Graph returns it (`GET /auditLogs/directoryAudits`)."""
    return {"value": [copy.deepcopy(record["properties"])]}


EN_DASH = "\N{EN DASH}"  # as the portal and the audit log spell the activity
SECRETS = f"Update application {EN_DASH} Certificates and secrets management"
SP_CREDENTIALS = "Add service principal credentials"

ENTRA_CASES = [
    Case("a secret added to the Terraform SP", [audit(SP_CREDENTIALS, [target(TERRAFORM_SP, "ServicePrincipal", "terraform", [prop("KeyDescription", [], [key(KEY_1)])])])], [CA]),
    Case("a secret added to its application", [audit(SECRETS, [target(APP_OBJECT, "Application", "terraform", [prop("KeyDescription", [key(KEY_1)], [key(KEY_1), key(KEY_2)])])])], [CA]),
    Case("the same, the activity spelled with a hyphen", [audit(SECRETS.replace(EN_DASH, "-"), [target(APP_OBJECT, "Application", "terraform", [prop("KeyDescription", [], [key(KEY_2, "AsymmetricX509Cert")])])])], [CA]),
    Case("a federated credential added to its application", [audit("Update application", [target(APP_OBJECT, "Application", "terraform", [prop("FederatedIdentityCredentials", [], [FIC])])])], [CA]),
    Case("the application matched by its client id alone", [audit(SP_CREDENTIALS, [target(OTHER_SP, "ServicePrincipal", "terraform", [prop("AppId", None, APP_ID)])])], [CA]),
    Case("a secret removed (rotation): nothing added", [audit(SECRETS, [target(APP_OBJECT, "Application", "terraform", [prop("KeyDescription", [key(KEY_1), key(KEY_2)], [key(KEY_1)])])])], []),
    Case("its application renamed", [audit("Update application", [target(APP_OBJECT, "Application", "terraform", [prop("DisplayName", ["terraform"], ["tf"])])])], []),
    Case("a secret added to an unrelated service principal", [audit(SP_CREDENTIALS, [target(OTHER_SP, "ServicePrincipal", "other", [prop("KeyDescription", [], [key(KEY_1)])])])], []),
    Case("a refused credential addition", [audit(SP_CREDENTIALS, [target(TERRAFORM_SP, "ServicePrincipal", "terraform")], result="failure")], []),
    Case(
        "an owner added to its application",
        [audit("Add owner to application", [owner("mallory@contoso.com", **{"Application.ObjectID": APP_OBJECT, "Application.AppId": APP_ID, "Application.DisplayName": "terraform"}), target(APP_OBJECT, "Application", "terraform")])],
        [OA],
    ),
    Case(
        "an owner added to the Terraform SP",
        [audit("Add owner to service principal", [owner("mallory@contoso.com", **{"ServicePrincipal.ObjectID": TERRAFORM_SP}), target(TERRAFORM_SP, "ServicePrincipal", "terraform")])],
        [OA],
    ),
    Case(
        "an owner added, the record naming the object only as a target",
        [audit("Add owner to service principal", [owner("mallory@contoso.com"), target(TERRAFORM_SP, "ServicePrincipal", "terraform")])],
        [OA],
    ),
    Case(
        "an owner added, the application listed first",
        [audit("Add owner to application", [target(APP_OBJECT, "Application", "terraform"), owner("mallory@contoso.com")])],
        [OA],
    ),
    Case(
        "an owner added to an unrelated application",
        [audit("Add owner to application", [owner("bob@contoso.com", **{"Application.ObjectID": OTHER_APP}), target(OTHER_APP, "Application", "other")])],
        [],
    ),
    Case(
        "the Terraform SP made owner of an unrelated service principal",
        [audit("Add owner to service principal", [target(TERRAFORM_SP, "ServicePrincipal", "terraform", [prop("ServicePrincipal.ObjectID", None, OTHER_SP)]), target(OTHER_SP, "ServicePrincipal", "other")])],
        [],
    ),
    Case(
        "the Terraform SP made owner of an unrelated service principal, by position only",
        [audit("Add owner to service principal", [target(TERRAFORM_SP, "ServicePrincipal", "terraform"), target(OTHER_SP, "ServicePrincipal", "other")])],
        [],
    ),
    Case(
        "a refused owner addition",
        [audit("Add owner to application", [owner("mallory@contoso.com", **{"Application.ObjectID": APP_OBJECT}), target(APP_OBJECT, "Application")], result="failure")],
        [],
    ),
    Case("an unrelated directory activity", [audit("Add member to group", [target(TERRAFORM_SP, "ServicePrincipal")], category="GroupManagement")], []),
]  # fmt: skip
ENTRA_SHAPES = ("batch", "alone", "graph", "graph alone")


def named(name: str) -> Case:
    """The case of that name, storage or Entra."""
    (case,) = (c for c in STORAGE_CASES + ENTRA_CASES if c.name == name)
    return case


def record(name: str) -> dict[str, Any]:
    """The one audit record of an Entra case."""
    (only,) = named(name).records
    return only


def entra_documents(case: Case, shape: str) -> list[Any]:
    (record,) = case.records
    if shape == "batch":
        return [{"records": [record]}]
    if shape == "alone":
        return [record]
    if shape == "graph":
        return [graph(record)]
    return graph(record)["value"]


@pytest.mark.parametrize(
    ("case", "shape"),
    [pytest.param(c, s, id=f"{c.name} [{s}]") for c in ENTRA_CASES for s in ENTRA_SHAPES],
)
def test_entra_cases(case: Case, shape: str, baseline: Baseline) -> None:
    assert rules_fired(entra_documents(case, shape), baseline) == case.expected


def test_entra_records_in_one_hub_batch_with_activity_log_records(baseline: Baseline) -> None:
    """The tenant's audit records share the Activity Log's hub: one batch holds both."""
    secret = record("a secret added to the Terraform SP")
    owner_added = record("an owner added to its application")
    batch = {"records": [*named("blob public access allowed").records, secret, owner_added]}
    assert rules_fired([batch], baseline) == sorted([PAO, CA, OA])


def test_entra_finding_fields(baseline: Baseline) -> None:
    secret = record("a secret added to its application")
    (finding,) = [
        f for p in parse_document(secret, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    assert (finding.rule, finding.severity, finding.cloud) == (CA, "critical", "azure")
    assert (finding.scope, finding.identity) == (TENANT, TERRAFORM_SP)
    assert finding.actor == "mallory@contoso.com"
    assert finding.actual["added"] == [KEY_2]
    assert finding.actual["target"]["object_id"] == APP_OBJECT
    assert "terraform-sp" in finding.summary

    owned = record("an owner added to its application")
    (found,) = [
        f for p in parse_document(owned, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    assert (found.rule, found.severity) == (OA, "high")
    assert found.actual["added"] == ["mallory@contoso.com"]


def test_failed_and_unwatched_entra_records_are_skipped() -> None:
    failed = entra.parse(record("a refused credential addition"))
    assert isinstance(failed, Skipped) and "result failure" in failed.reason
    other = entra.parse(record("an unrelated directory activity"))
    assert isinstance(other, Skipped) and "not a watched" in other.reason


def test_the_responder_adding_a_credential_is_ignored(baseline: Baseline) -> None:
    by_responder = copy.deepcopy(record("a secret added to the Terraform SP"))
    by_responder["properties"]["initiatedBy"] = {
        "user": None,
        "app": {"appId": None, "displayName": "trustwatch", "servicePrincipalId": RESPONDER},
    }
    assert rules_fired([by_responder], baseline) == []


def test_attacker_controlled_names_stay_data(baseline: Baseline) -> None:
    """Display names are the attacker's to choose: they end up in the finding as text."""
    evil = "<!channel> *terraform*\n`rm -rf`"
    record = audit(SP_CREDENTIALS, [target(TERRAFORM_SP, "ServicePrincipal", evil)])
    (finding,) = [
        f for p in parse_document(record, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    assert finding.actual["target"]["display_name"] == evil
    assert finding.identity == TERRAFORM_SP


# --- bad input, and the command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (props(allowBlobPublicAccess=1), "allowBlobPublicAccess is not a boolean"),
        (props(allowSharedKeyAccess="yes"), "allowSharedKeyAccess is not a boolean"),
        (props(networkAcls=["Allow"]), "networkAcls is not an object"),
        (props(networkAcls={"defaultAction": 0}), "networkAcls.defaultAction is not a string"),
        ({"properties": "open"}, "properties is not an object"),
    ],
)
def test_malformed_storage_bodies_are_record_errors(body: Any, message: str) -> None:
    (parsed,) = parse_document(write(body)[0], "t")
    assert parsed.error is not None and message in str(parsed.error)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["properties"].update(targetResources={"id": TERRAFORM_SP}), "targetResources is not a list"),
        (lambda r: r["properties"].update(targetResources=["x"]), "targetResources is not a list"),
        (lambda r: r["properties"].update(initiatedBy="mallory"), "initiatedBy is a str"),
        (lambda r: (r.pop("operationName"), r["properties"].pop("activityDisplayName")), "without an activityDisplayName"),
    ],
)  # fmt: skip
def test_malformed_audit_records_are_record_errors(mutate: Any, message: str) -> None:
    bad = copy.deepcopy(record("a secret added to the Terraform SP"))
    mutate(bad)
    batch = {"records": [bad, record("an owner added to its application")]}
    first, second = parse_document(batch, "t")
    assert first.error is not None and message in str(first.error)
    # the bad record hides nothing after it
    assert second.error is None and [c.kind for c in second.changes] == [entra.OWNER_ADDED]


def test_odd_modified_properties_are_read_as_absent(baseline: Baseline) -> None:
    """Values that are not the documented JSON text neither crash nor hide the addition."""
    odd = audit(
        SP_CREDENTIALS,
        [
            target(
                TERRAFORM_SP,
                "ServicePrincipal",
                "terraform",
                [{"displayName": 7, "newValue": {"x": 1}}, "junk"],
            )
        ],  # type: ignore[list-item]
    )
    assert rules_fired([odd], baseline) == [CA]


def test_replay_reads_audit_exports_and_graph_pages(tmp_path, baseline: Baseline, capsys) -> None:
    from trustwatch.cli import main

    path = tmp_path / "baseline.yaml"
    path.write_text(yaml.safe_dump(baseline.model_dump(mode="json", exclude_none=True)))
    hub = tmp_path / "hub.json"
    hub.write_text(json.dumps({"records": [record("a secret added to its application")]}))
    page = tmp_path / "graph.json"
    page.write_text(json.dumps(graph(record("an owner added to its application"))))
    quiet = tmp_path / "quiet.json"
    quiet.write_text(
        json.dumps({"records": [record("a secret removed (rotation): nothing added")]})
    )
    assert main(["replay", "--baseline", str(path), str(hub), str(page)]) == 1
    rules = [json.loads(line)["rule"] for line in capsys.readouterr().out.splitlines()]
    assert rules == [CA, OA]
    assert main(["replay", "--baseline", str(path), str(quiet)]) == 0


def test_console_links_open_the_entra_object_not_a_subscription(baseline: Baseline) -> None:
    from trustwatch.azure.links import console_link

    secret = record("a secret added to the Terraform SP")
    (finding,) = [
        f for p in parse_document(secret, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    link = console_link(finding)
    assert link is not None
    assert link.url.endswith(f"/ApplicationMenuBlade/~/Overview/appId/{APP_ID}")
    assert TENANT not in link.url  # the tenant is no subscription
    no_app = finding.model_copy(update={"expected": {"application_id": None}})
    fallback = console_link(no_app)
    assert fallback is not None and fallback.url.endswith(f"/objectId/{TERRAFORM_SP}")
    listed = [activity(LIST_KEYS, "Success", STORAGE, actor=STRANGER)]
    (keys,) = [
        f for p in parse_document(listed, "t") for c in p.changes for f in evaluate(c, baseline)
    ]
    storage_link = console_link(keys)
    assert storage_link is not None and "storageAccounts/dbxucprod/users" in storage_link.url


def test_type_confusion_in_audit_records_and_storage_bodies_is_a_record_error(
    baseline: Baseline,
) -> None:
    """test_type_confusion's walk (every node takes every JSON type, every object gets each
    field name the parsers read with a wrong type) over the records this file builds,
    judged against a baseline these rules watch: a defined outcome, never a crash."""
    import re

    import test_type_confusion as tc
    from trustwatch.respond import evaluate_records

    entra_fields = re.findall(
        r'(?:get\(|_dict\([^,()]+, )"([A-Za-z][\w.]*)"',
        entra.__loader__.get_source(entra.__name__) or "",
    )  # type: ignore[union-attr]
    assert {"targetResources", "modifiedProperties", "initiatedBy"} <= set(entra_fields)
    fields = sorted(set(tc.FIELDS) | set(entra_fields))
    docs = [
        {"records": [record("a secret added to its application")]},
        record("an owner added to its application"),
        graph(record("a federated credential added to its application")),
        {"records": named("public blobs and shared keys in one PUT").records},
        {"records": [activity(WRITE, "Success", STORAGE, response=account(public=None))]},
    ]
    original = tc.FIELDS
    try:
        tc.FIELDS = fields
        for doc in docs:
            for label, variant in tc.variants(doc):
                for outcome in evaluate_records(parse_document(variant, "doc"), baseline):
                    assert outcome.internal_errors == 0, (label, outcome.errors)
                    for finding in outcome.findings:
                        assert finding.to_json()
    finally:
        tc.FIELDS = original
