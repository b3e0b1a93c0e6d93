"""Issue 11 (GCP): the ways to widen a watched identity that used to give no finding.

Each category has entries that must fire and near-misses that must stay quiet
(equivalent, stricter, failed, unrelated, a baseline-listed member), replayed in every
delivery shape (LogEntry, Pub/Sub push, messagePublished CloudEvent, audit.log.v1.written
CloudEvent, JSON array, JSON Lines). Semantics come from the Google Cloud documentation
cited at each group; role permissions from the shipped table (trustwatch/gcp/data), transcribed from those docs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE
from test_gcp_events import (
    ADMINS,
    ALICE,
    BUCKET,
    COMPUTE,
    CUSTOM_ROLE,
    MALLORY,
    OTHER_SA,
    PROJECT,
    RESPONDER,
    SHAPES,
    TERRAFORM,
    UC_SA,
    UNIQUE_ID,
    UNRELATED,
    add,
    bucket_policy,
    documents,
    failed,
    key_created,
    project_policy,
    remove,
    role_call,
    sa_call,
    sa_policy,
)
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.engine import evaluate
from trustwatch.gcp import roles
from trustwatch.gcp.changes import ServiceAccountKeyCreated
from trustwatch.intake import parse_document

IG = "gcp.iam.impersonation_granted"
BA = "gcp.iam.binding_added"
KC = "gcp.sa.key_created"
SD = "gcp.sa.deleted_or_disabled"
BBA = "gcp.bucket.binding_added"
CR = "gcp.role.custom_role_changed"
SA = "serviceAccount:"
FOLDER = "folders/9876543210"
ORG = "organizations/123456789012"
# custom roles this file adds to the example baseline (what they hold is pinned there)
MINTER = f"projects/{PROJECT}/roles/tokenMinter"
READER = f"projects/{PROJECT}/roles/logReader"
RETIRED = f"projects/{PROJECT}/roles/retiredRole"
STORAGE_READER = f"projects/{PROJECT}/roles/ucReader"
UNKNOWN = f"projects/{PROJECT}/roles/notInTheBaseline"
ALL_SAS = [IG, IG, IG]  # a project grant reaches compute, automation and responder SAs


def with_roles(base: Baseline) -> Baseline:
    data = base.model_dump(mode="json", exclude_none=True)
    data["gcp"]["projects"][PROJECT]["custom_roles"].update(
        {
            MINTER: {"permissions": ["iam.serviceAccounts.getAccessToken", "iam.roles.get"]},
            READER: {"permissions": ["logging.logEntries.list"]},
            RETIRED: {"permissions": ["logging.logEntries.list"], "stage": "DISABLED"},
            STORAGE_READER: {"permissions": ["storage.objects.get", "storage.objects.list"]},
        }
    )
    return Baseline.model_validate(data)


@pytest.fixture(scope="module")
def watched() -> Baseline:
    return with_roles(load_baseline(EXAMPLE_BASELINE))


def node_policy(node: str, *deltas: tuple[str, str, str], actor: str = ALICE) -> dict:
    """SetIamPolicy on a folder or organization (Resource Manager), from the project one."""
    entry = project_policy(*deltas, actor=actor)
    kind, node_id = node.split("/")
    label = {"folders": "folder_id", "organizations": "organization_id"}[kind]
    entry["protoPayload"]["resourceName"] = node
    entry["protoPayload"]["request"]["resource"] = node
    for info in entry["protoPayload"]["authorizationInfo"]:
        info["resource"] = node
    entry["resource"] = {"type": kind[:-1], "labels": {label: node_id}}
    entry["logName"] = f"{node}/logs/cloudaudit.googleapis.com%2Factivity"
    return entry


def key_call(method: str, email: str, key_id: str = "a1b2c3", actor: str = ALICE) -> dict:
    """EnableServiceAccountKey / UploadServiceAccountKey, from the published key entry.
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/enable
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/upload"""
    entry = key_created(email, actor=actor, key_id=key_id)
    proto = entry["protoPayload"]
    project = entry["resource"]["labels"]["project_id"]
    proto["methodName"] = f"google.iam.admin.v1.{method}"
    if method == "EnableServiceAccountKey":
        name = f"projects/{project}/serviceAccounts/{UNIQUE_ID}/keys/{key_id}"
        proto["request"] = {"@type": f"type.googleapis.com/google.iam.admin.v1.{method}Request"}
        proto["request"]["name"] = name
        proto["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        proto["authorizationInfo"][0]["permission"] = "iam.serviceAccountKeys.enable"
    else:
        proto["request"] = {
            "@type": f"type.googleapis.com/google.iam.admin.v1.{method}Request",
            "name": f"projects/{project}/serviceAccounts/{UNIQUE_ID}",
            "public_key_data": "LS0tLS1CRUdJTi...",
        }
    return entry


def hmac_created(email: str, *, in_request: bool = True, actor: str = ALICE) -> dict:
    """storage.hmacKeys.create (Cloud Storage Admin Activity audit log); the account is the
    request's `serviceAccountEmail` or the logged HmacKey metadata.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/create
    https://cloud.google.com/storage/docs/audit-logging"""
    entry = bucket_policy(BUCKET, actor=actor)
    proto = entry["protoPayload"]
    proto["methodName"] = "storage.hmacKeys.create"
    proto["resourceName"] = f"projects/{PROJECT}/hmacKeys/GOOG1EXAMPLEAEU"
    proto["authorizationInfo"] = [
        {"resource": f"projects/{PROJECT}", "permission": "storage.hmacKeys.create"}
    ]
    proto.pop("serviceData", None)
    proto["request"] = {"projectId": PROJECT}
    if in_request:
        proto["request"]["serviceAccountEmail"] = email
    proto["response"] = {
        "metadata": {"accessId": "GOOG1EXAMPLEAEU", "state": "ACTIVE", "serviceAccountEmail": email}
    }
    entry["resource"] = {"type": "audited_resource", "labels": {"project_id": PROJECT}}
    return entry


def staged(name: str, stage: Any, *, mask: bool = True) -> dict:
    """UpdateRole setting the launch stage (update_mask `stage`; without a mask the whole
    role is written, here with the permissions pinned for it).
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/patch"""
    held = ("logging.logEntries.list",)
    entry = role_call("UpdateRole", name, mask=("stage",) if mask else None, permissions=held)
    proto = entry["protoPayload"]
    proto["request"]["role"]["stage"] = stage
    proto["response"]["stage"] = stage
    return entry


def undeleted(name: str, permissions: tuple[str, ...] = ("logging.logEntries.list",)) -> dict:
    """UndeleteRole: the response is the role as it comes back.
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/undelete"""
    entry = role_call("DeleteRole", name, permissions=permissions)
    proto = entry["protoPayload"]
    proto["methodName"] = "google.iam.admin.v1.UndeleteRole"
    proto["request"]["@type"] = "type.googleapis.com/google.iam.admin.v1.UndeleteRoleRequest"
    proto["response"].update(deleted=False, stage="GA")
    return entry


def delegated(entry: dict, *chain: str) -> dict:
    """The caller acted for `chain` (it impersonated the caller's account): the entry's
    `authenticationInfo.serviceAccountDelegationInfo`.
    https://cloud.google.com/iam/docs/audit-logging/examples-service-accounts"""
    auth = entry["protoPayload"]["authenticationInfo"]
    auth["serviceAccountDelegationInfo"] = [
        {"firstPartyPrincipal": {"principalEmail": who}} for who in chain
    ]
    return entry


@dataclass(frozen=True)
class Case:
    name: str
    entry: dict[str, Any]
    expected: list[str]


CASES = [
    # --- roles that can grant themselves impersonation ------------------------------------
    # setIamPolicy on a node lets its holder grant itself TokenCreator on every account below:
    # https://cloud.google.com/iam/docs/service-account-permissions
    # https://cloud.google.com/iam/docs/granting-changing-revoking-access (securityAdmin, *IamAdmin)
    # https://cloud.google.com/iam/docs/manage-access-service-accounts (serviceAccountAdmin)
    # (the pages read do not list bucket permissions for securityAdmin: no bucket finding)
    Case("securityAdmin on the project", project_policy(add("roles/iam.securityAdmin", MALLORY)), ALL_SAS),
    Case("securityAdmin on a folder", node_policy(FOLDER, add("roles/iam.securityAdmin", MALLORY)), ALL_SAS),
    Case("owner on the organization", node_policy(ORG, add("roles/owner", MALLORY)), ALL_SAS),
    Case("projectIamAdmin on the project", project_policy(add("roles/resourcemanager.projectIamAdmin", MALLORY)), ALL_SAS),
    Case("serviceAccountAdmin on the project", project_policy(add("roles/iam.serviceAccountAdmin", MALLORY)), ALL_SAS),
    Case("folderIamAdmin on a folder", node_policy(FOLDER, add("roles/resourcemanager.folderIamAdmin", MALLORY)), ALL_SAS),
    Case("organizationAdmin on the organization", node_policy(ORG, add("roles/resourcemanager.organizationAdmin", MALLORY)), ALL_SAS),
    # editor's watched permissions are not listed in the docs read: unknown by its id (high)
    Case("editor on the organization", node_policy(ORG, add("roles/editor", MALLORY)), ALL_SAS),
    Case("editor on the project", project_policy(add("roles/editor", MALLORY)), ALL_SAS),
    Case("serviceAccountAdmin on the compute SA itself", sa_policy(COMPUTE, add("roles/iam.serviceAccountAdmin", MALLORY)), [IG]),
    Case("hmacKeyAdmin on the project: HMAC keys for any account", project_policy(add("roles/storage.hmacKeyAdmin", MALLORY)), ALL_SAS),
    Case("securityReviewer on the project (reads policies, lists object names)", project_policy(add("roles/iam.securityReviewer", MALLORY)), []),
    Case("projectIamAdmin on another project", project_policy(add("roles/resourcemanager.projectIamAdmin", MALLORY), project="other-proj"), []),
    Case("projectIamAdmin grant denied", failed(project_policy(add("roles/resourcemanager.projectIamAdmin", MALLORY))), []),
    Case("projectIamAdmin removed", project_policy(remove("roles/resourcemanager.projectIamAdmin", MALLORY)), []),
    Case("serviceAccountAdmin on the automation SA for its listed impersonators",
         sa_policy(TERRAFORM, add("roles/iam.serviceAccountAdmin", ADMINS)), []),
    # https://cloud.google.com/iam/docs/service-agents: granted when an API is enabled
    Case("Dataflow's service agent gets its serviceAgent role (holds actAs)",
         project_policy(add("roles/dataflow.serviceAgent", SA + "service-123@dataflow-service-producer-prod.iam.gserviceaccount.com")), []),
    # a serviceAgent role is not in the table: unknown by its id, so "may impersonate" (high);
    # unknown never counts as bucket access
    Case("a customer SA named like a service agent gets a serviceAgent role",
         project_policy(add("roles/dataflow.serviceAgent", SA + "service-123@evil-proj.iam.gserviceaccount.com")), ALL_SAS),
    Case("a Google service agent gets owner (not its serviceAgent role)",
         project_policy(add("roles/owner", SA + "service-123@gcp-sa-aiplatform.iam.gserviceaccount.com")), ALL_SAS),
    Case("projectIamAdmin for the responder itself (its remediation rights)",
         project_policy(add("roles/resourcemanager.projectIamAdmin", SA + RESPONDER)), []),
    # --- custom roles, by the permissions the baseline pins -------------------------------
    # https://cloud.google.com/iam/docs/understanding-custom-roles
    Case("custom role with getAccessToken on the compute SA", sa_policy(COMPUTE, add(MINTER, MALLORY)), [IG]),
    Case("custom role with getAccessToken on the project", project_policy(add(MINTER, MALLORY)), ALL_SAS),
    Case("custom role of unknown permissions on the compute SA", sa_policy(COMPUTE, add(UNKNOWN, MALLORY)), [IG]),
    Case("watched custom role, permissions not pinned, on the project", project_policy(add(CUSTOM_ROLE, MALLORY)), ALL_SAS),
    Case("organization custom role of unknown permissions on a folder",
         node_policy(FOLDER, add(f"{ORG}/roles/escalator", MALLORY)), ALL_SAS),
    Case("custom role holding log reading only, on the compute SA", sa_policy(COMPUTE, add(READER, MALLORY)), []),
    Case("custom role holding log reading only, on the project", project_policy(add(READER, MALLORY)), []),
    Case("custom role with getAccessToken, grant denied", failed(sa_policy(COMPUTE, add(MINTER, MALLORY))), []),
    Case("custom role with getAccessToken on an unrelated SA", sa_policy(OTHER_SA, add(MINTER, MALLORY)), []),
    Case("custom role with getAccessToken for the listed impersonators", sa_policy(TERRAFORM, add(MINTER, ADMINS)), []),
    # --- keys -----------------------------------------------------------------------------
    Case("a disabled key of the compute SA re-enabled", key_call("EnableServiceAccountKey", COMPUTE), [KC]),
    Case("a public key uploaded for the compute SA", key_call("UploadServiceAccountKey", COMPUTE), [KC]),
    Case("an HMAC key for the compute SA", hmac_created(COMPUTE), [KC]),
    Case("an HMAC key for the automation SA, email in the response only", hmac_created(TERRAFORM, in_request=False), [KC]),
    Case("an HMAC key for the responder's SA", hmac_created(RESPONDER), [KC]),
    Case("a key for the responder's SA", key_created(RESPONDER), [KC]),
    Case("a key of an unrelated SA enabled", key_call("EnableServiceAccountKey", OTHER_SA), []),
    Case("key enabling denied", failed(key_call("EnableServiceAccountKey", COMPUTE)), []),
    Case("an HMAC key for an unrelated SA", hmac_created(OTHER_SA), []),
    Case("HMAC key creation denied", failed(hmac_created(COMPUTE)), []),
    Case("a key of the compute SA disabled (stricter)", key_call("DisableServiceAccountKey", COMPUTE), []),
    # --- storage roles above the bucket ---------------------------------------------------
    # https://cloud.google.com/storage/docs/access-control/iam#policy-inheritance
    Case("objectViewer on the project reaches the bucket", project_policy(add("roles/storage.objectViewer", MALLORY)), [BBA]),
    Case("objectAdmin on a folder", node_policy(FOLDER, add("roles/storage.objectAdmin", MALLORY)), [BBA]),
    Case("storage.admin on the organization for all authenticated users",
         node_policy(ORG, add("roles/storage.admin", "allAuthenticatedUsers")), [BBA]),
    Case("a custom storage-reading role on the project", project_policy(add(STORAGE_READER, MALLORY)), [BBA]),
    Case("the UC SA's expected objectAdmin, granted on the project", project_policy(add("roles/storage.objectAdmin", UC_SA)), []),
    Case("objectViewer on another project", project_policy(add("roles/storage.objectViewer", MALLORY), project="other-proj"), []),
    Case("bucketViewer on the project (metadata only)", project_policy(add("roles/storage.bucketViewer", MALLORY)), []),
    Case("objectViewer grant denied", failed(project_policy(add("roles/storage.objectViewer", MALLORY))), []),
    Case("objectViewer removed from the project", project_policy(remove("roles/storage.objectViewer", MALLORY)), []),
    # --- custom role stage ----------------------------------------------------------------
    # a DISABLED role's bindings grant nothing; other stages grant:
    # https://cloud.google.com/iam/docs/understanding-custom-roles#testing_and_deploying
    Case("watched role disabled", staged(CUSTOM_ROLE, "DISABLED"), [CR]),
    Case("watched role disabled, stage as the enum number", staged(CUSTOM_ROLE, 5), [CR]),
    Case("retired (DISABLED) role re-enabled", staged(RETIRED, "GA"), [CR]),
    Case("retired role re-enabled by a full update (no mask)", staged(RETIRED, "BETA", mask=False), [CR]),
    Case("watched role set to GA", staged(CUSTOM_ROLE, "GA"), []),
    Case("retired role kept DISABLED", staged(RETIRED, "DISABLED"), []),
    Case("unwatched role disabled", staged(f"projects/{PROJECT}/roles/scratch", "DISABLED"), []),
    Case("disabling denied", failed(staged(CUSTOM_ROLE, "DISABLED")), []),
    Case("watched role undeleted as it was", undeleted(READER), []),
    Case("watched pinned role undeleted with another permission",
         undeleted(READER, ("logging.logEntries.list", "iam.serviceAccounts.actAs")), [CR]),
    Case("retired role undeleted, stage GA", undeleted(RETIRED), [CR]),
    # --- the responder is a protected identity --------------------------------------------
    # https://cloud.google.com/iam/docs/service-account-impersonation
    Case("TokenCreator on the responder's SA", sa_policy(RESPONDER, add("roles/iam.serviceAccountTokenCreator", MALLORY)), [IG]),
    Case("serviceAccountUser on the responder's SA", sa_policy(RESPONDER, add("roles/iam.serviceAccountUser", MALLORY)), [IG]),
    Case("workloadIdentityUser on the responder's SA for a pool",
         sa_policy(RESPONDER, add("roles/iam.workloadIdentityUser", "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gh/*")), [IG]),
    Case("key admin on the responder's SA", sa_policy(RESPONDER, add("roles/iam.serviceAccountKeyAdmin", MALLORY)), [IG]),
    Case("the responder's SA disabled", sa_call("DisableServiceAccount", RESPONDER), [SD]),
    Case("a viewer role on the responder's SA", sa_policy(RESPONDER, add("roles/iam.serviceAccountViewer", MALLORY)), []),
    Case("a human acting through the responder's SA",
         delegated(sa_policy(COMPUTE, add("roles/iam.serviceAccountTokenCreator", MALLORY), actor=RESPONDER), ALICE), [IG]),
    Case("a human behind the responder mints a key", delegated(key_created(COMPUTE, actor=RESPONDER), ALICE), [KC]),
    Case("the responder's own change (no delegation)",
         sa_policy(COMPUTE, add("roles/iam.serviceAccountTokenCreator", MALLORY), actor=RESPONDER), []),
    Case("the responder acting for its own identity (delegation chain all responder)",
         delegated(key_created(COMPUTE, actor=RESPONDER), RESPONDER), []),
    Case("unrelated call", UNRELATED, []),
]  # fmt: skip

PARAMS = [pytest.param(c, s, id=f"{c.name} [{s}]") for c in CASES for s in SHAPES]


def findings_of(entry: dict[str, Any], shape: str, baseline: Baseline) -> list:
    found = []
    for doc in documents(entry, shape):
        for parsed in parse_document(doc, "test"):
            assert parsed.error is None, parsed.error
            for change in parsed.changes:
                assert not change.needs_enrichment, change.not_evaluated
                found.extend(evaluate(change, baseline))
    return found


@pytest.mark.parametrize(("case", "shape"), PARAMS)
def test_attack_path_cases(case: Case, shape: str, watched: Baseline):
    found = findings_of(case.entry, shape, watched)
    assert sorted(f.rule for f in found) == sorted(case.expected)
    assert len({f.id for f in found}) == len(found)


def by_rule(entry: dict[str, Any], baseline: Baseline) -> dict[str, list]:
    out: dict[str, list] = {}
    for finding in findings_of(entry, "log entry", baseline):
        out.setdefault(finding.rule, []).append(finding)
    return out


# --- the findings' fields ---------------------------------------------------------------


def test_self_granting_role_finding(watched):
    hits = by_rule(project_policy(add("roles/resourcemanager.projectIamAdmin", MALLORY)), watched)
    assert sorted(f.identity for f in hits[IG]) == sorted([COMPUTE, TERRAFORM, RESPONDER])
    assert {f.severity for f in hits[IG]} == {"critical"}
    compute = next(f for f in hits[IG] if f.identity == COMPUTE)
    assert "resourcemanager.projects.setIamPolicy" in compute.summary
    responder = next(f for f in hits[IG] if f.identity == RESPONDER)
    assert "trustwatch's own identity" in responder.summary


def test_unknown_custom_role_is_high_and_says_why(watched):
    (hit,) = by_rule(sa_policy(COMPUTE, add(UNKNOWN, MALLORY)), watched)[IG]
    assert hit.severity == "high" and "permissions are unknown" in hit.summary
    (known,) = by_rule(sa_policy(COMPUTE, add(MINTER, MALLORY)), watched)[IG]
    assert known.severity == "critical" and "getAccessToken" in known.summary


def test_a_predefined_role_outside_the_table_is_judged_by_its_id(watched):
    """Outside the transcribed table: an admin-like id under iam./resourcemanager./storage.
    (or one naming serviceAccount, TokenCreator, workloadIdentity, serviceAgent, or owner /
    editor) is unknown, high; any other predefined role holds none of the watched ones."""
    (hit,) = by_rule(sa_policy(COMPUTE, add("roles/iam.brandNewAdmin", MALLORY)), watched)[IG]
    assert hit.severity == "high" and "permissions are unknown" in hit.summary
    (sa,) = by_rule(sa_policy(COMPUTE, add("roles/iam.serviceAccountFooer", MALLORY)), watched)[IG]
    assert sa.severity == "high"
    (editor,) = by_rule(sa_policy(COMPUTE, add("roles/editor", MALLORY)), watched)[IG]
    assert editor.severity == "high"
    for quiet in ("roles/iam.brandNewRole", "roles/compute.viewer", "roles/pubsub.subscriber"):
        assert IG not in by_rule(sa_policy(COMPUTE, add(quiet, MALLORY)), watched), quiet
        assert BBA not in by_rule(project_policy(add(quiet, MALLORY)), watched), quiet
    # a documented role is judged by the table, whatever its id looks like
    (owner,) = by_rule(sa_policy(COMPUTE, add("roles/owner", MALLORY)), watched)[IG]
    assert owner.severity == "critical"


@pytest.mark.parametrize(
    ("role", "risky"),
    [
        ("roles/owner", True),
        ("roles/editor", True),
        ("roles/storage.admin", True),
        ("roles/storage.fooAdmin", True),
        ("roles/resourcemanager.tagAdmin", True),
        ("roles/iam.roleAdmin", True),
        ("roles/iam.serviceAccountViewer", True),
        ("roles/foo.serviceAgent", True),
        ("roles/iam.workloadIdentityPoolAdmin", True),
        # Google writes these words in either case: roles/composer.ServiceAgentV2Ext holds
        # iam.serviceAccounts.setIamPolicy (cloud.google.com/iam/docs/roles-permissions/composer)
        ("roles/composer.ServiceAgentV2Ext", True),
        ("roles/foo.ServiceAccountThing", True),
        ("roles/viewer", False),
        ("roles/compute.admin", False),
        ("roles/iam.securityReviewer", False),
        ("roles/storage.bucketViewer", False),
    ],
)
def test_risky_ids(role, risky):
    assert roles.risky_id(role) is risky


def test_inherited_bucket_finding(watched):
    (public,) = by_rule(node_policy(ORG, add("roles/storage.admin", "allUsers")), watched)[BBA]
    assert (public.severity, public.identity, public.scope) == ("critical", BUCKET, ORG)
    assert public.actual == {"resource": ORG, "role": "roles/storage.admin", "member": "allusers"}
    assert public.remediation.action == "remove_iam_binding"
    (private,) = by_rule(project_policy(add("roles/storage.objectViewer", MALLORY)), watched)[BBA]
    assert (private.severity, private.identity) == ("high", BUCKET)


def test_key_findings(watched):
    (enabled,) = by_rule(key_call("EnableServiceAccountKey", COMPUTE), watched)[KC]
    assert enabled.actual == {"key_id": "a1b2c3", "enabled": True} and "enabled" in enabled.summary
    assert enabled.remediation.action == "disable_service_account_key"
    assert enabled.remediation.status == "planned"  # the compute SA has mode: remediate
    (created,) = by_rule(key_created(COMPUTE, key_id="a1b2c3"), watched)[KC]
    assert created.id != enabled.id  # re-enabling after a remediation is new drift
    (hmac,) = by_rule(hmac_created(COMPUTE), watched)[KC]
    assert hmac.actual == {"hmac_access_id": "GOOG1EXAMPLEAEU"}
    assert hmac.remediation.action == "deactivate_hmac_key"
    assert (hmac.identity, hmac.scope) == (COMPUTE, PROJECT)
    (parsed,) = parse_document(hmac_created(COMPUTE), "test")
    (change,) = parsed.changes
    assert change.payload == ServiceAccountKeyCreated(COMPUTE, "", "GOOG1EXAMPLEAEU")


def test_accounts_allowed_keys_stay_quiet(watched):
    data = watched.model_dump(mode="json", exclude_none=True)
    data["gcp"]["projects"][PROJECT]["service_accounts"][COMPUTE]["user_managed_keys"] = True
    keyed = Baseline.model_validate(data)
    for entry in (key_call("EnableServiceAccountKey", COMPUTE), hmac_created(COMPUTE)):
        assert by_rule(entry, keyed) == {}


def test_hmac_key_without_an_account_is_not_evaluated(watched):
    entry = hmac_created(COMPUTE, in_request=False)
    del entry["protoPayload"]["response"]["metadata"]["serviceAccountEmail"]
    (parsed,) = parse_document(entry, "test")
    (change,) = parsed.changes
    assert change.needs_enrichment and change.not_evaluated


def test_stage_findings(watched):
    (off,) = by_rule(staged(CUSTOM_ROLE, "DISABLED"), watched)[CR]
    assert off.actual == {"stage": "DISABLED"} and "disabled" in off.summary
    (on,) = by_rule(staged(RETIRED, "GA"), watched)[CR]
    assert on.expected == {"stage": "DISABLED"} and "re-enabled" in on.summary


# --- the delegation chain (core: Change.delegated_by, engine's responder/approved guard) ---


def test_delegation_chain_decides_responder_and_approved(watched):
    grant = add("roles/iam.serviceAccountTokenCreator", MALLORY)
    # approved automation alone: reported, not reverted
    (alone,) = by_rule(sa_policy(COMPUTE, grant, actor=TERRAFORM), watched)[IG]
    assert alone.remediation.status == "skipped"
    # a human impersonating the automation SA is not the automation: reverted
    (human,) = by_rule(delegated(sa_policy(COMPUTE, grant, actor=TERRAFORM), ALICE), watched)[IG]
    assert human.remediation.status == "planned" and human.actor == TERRAFORM
    # the automation impersonating itself through another approved identity stays approved
    both = delegated(sa_policy(COMPUTE, grant, actor=TERRAFORM), TERRAFORM.upper())
    (approved,) = by_rule(both, watched)[IG]
    assert approved.remediation.status == "skipped"
    # the responder behind the automation SA is not the responder acting alone
    assert IG in by_rule(delegated(sa_policy(COMPUTE, grant, actor=TERRAFORM), RESPONDER), watched)


def test_third_party_principal_in_the_chain_is_not_the_responder(watched):
    entry = key_created(COMPUTE, actor=RESPONDER)
    entry["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"] = [
        {"thirdPartyPrincipal": {"thirdPartyClaims": {"iss": "https://idp", "sub": "eve"}}}
    ]
    assert KC in by_rule(entry, watched)


# --- the permission table ---------------------------------------------------------------


def test_table_is_transcribed_from_google_docs_with_a_source_per_role():
    from importlib import resources

    text = resources.files("trustwatch.gcp").joinpath("data", roles.DATA).read_text()
    table = json.loads(text)
    assert "Transcribed" in table["source"] and "Google Cloud documentation" in table["source"]
    assert "Creative Commons Attribution 4.0" in table["license"]
    assert set(table["watched_permissions"]) == roles.WATCHED
    assert table["roles"], "empty table"
    for name, entry in table["roles"].items():
        assert name.startswith("roles/"), name
        assert set(entry["permissions"]) <= roles.WATCHED, name
        assert entry["source"], name
        google = ("https://cloud.google.com/", "https://firebase.google.com/")
        assert all(url.startswith(google) for url in entry["source"]), name
    # what the docs read did not settle is said, not guessed
    assert set(table["not_transcribed"]).isdisjoint(table["roles"])
    assert "roles/editor" in table["not_transcribed"]


@pytest.mark.parametrize(
    ("role", "held"),
    [
        # https://cloud.google.com/iam/docs/service-account-permissions
        ("roles/iam.serviceAccountTokenCreator", "iam.serviceAccounts.getAccessToken"),
        ("roles/iam.serviceAccountTokenCreator", "iam.serviceAccounts.signJwt"),
        ("roles/iam.serviceAccountUser", "iam.serviceAccounts.actAs"),
        ("roles/iam.serviceAccountOpenIdTokenCreator", "iam.serviceAccounts.getOpenIdToken"),
        # https://cloud.google.com/iam/docs/using-workload-identity-federation
        ("roles/iam.workloadIdentityUser", "iam.serviceAccounts.getAccessToken"),
        # https://cloud.google.com/iam/docs/keys-create-delete
        ("roles/iam.serviceAccountKeyAdmin", "iam.serviceAccountKeys.create"),
        # https://cloud.google.com/iam/docs/manage-access-service-accounts
        ("roles/iam.serviceAccountAdmin", "iam.serviceAccounts.setIamPolicy"),
        # https://cloud.google.com/iam/docs/granting-changing-revoking-access
        ("roles/iam.securityAdmin", "resourcemanager.projects.setIamPolicy"),
        ("roles/iam.securityAdmin", "resourcemanager.organizations.setIamPolicy"),
        ("roles/resourcemanager.projectIamAdmin", "resourcemanager.projects.setIamPolicy"),
        ("roles/resourcemanager.folderAdmin", "resourcemanager.folders.setIamPolicy"),
        ("roles/resourcemanager.organizationAdmin", "resourcemanager.organizations.setIamPolicy"),
        # https://cloud.google.com/resource-manager/docs/access-control-folders
        ("roles/resourcemanager.folderIamAdmin", "resourcemanager.folders.setIamPolicy"),
        # basic roles: owner manages roles and permissions for the project
        ("roles/owner", "resourcemanager.projects.setIamPolicy"),
        # https://cloud.google.com/storage/docs/access-control/iam-roles
        ("roles/storage.objectViewer", "storage.objects.get"),
        ("roles/storage.objectCreator", "storage.objects.create"),
        ("roles/storage.objectUser", "storage.objects.delete"),
        ("roles/storage.objectAdmin", "storage.objects.setIamPolicy"),
        ("roles/storage.admin", "storage.buckets.setIamPolicy"),
        ("roles/storage.legacyBucketOwner", "storage.buckets.setIamPolicy"),
        ("roles/storage.legacyObjectReader", "storage.objects.get"),
        # https://cloud.google.com/storage/docs/authentication/managing-hmackeys
        ("roles/storage.hmacKeyAdmin", "storage.hmacKeys.create"),
    ],
)
def test_table_holds_the_documented_permissions(role, held, watched):
    assert held in roles.permissions_of(role, watched)


def test_roles_without_watched_permissions(watched):
    # in the table with none ...
    for role in ("roles/iam.serviceAccountViewer", "roles/storage.legacyBucketReader"):
        assert role in roles.predefined() and roles.permissions_of(role, watched) == frozenset()
    # ... or outside it, with an id the default rule takes as holding none
    for role in ("roles/viewer", "roles/iam.securityReviewer", "roles/logging.logWriter"):
        assert role not in roles.predefined(), role
        assert roles.permissions_of(role, watched) == frozenset(), role


def test_roles_the_docs_did_not_settle_are_unknown(watched):
    for role in ("roles/editor", "roles/iam.roleAdmin", "roles/dataflow.serviceAgent"):
        assert roles.permissions_of(role, watched) is None, role
