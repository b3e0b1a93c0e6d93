"""GCP intake: every corpus record reads; delivery envelopes; resource names; bad input.

The builders below (`project_policy`, `sa_policy`, `bucket_policy`, `bucket_update`, `key_created`,
`sa_call`, `role_call` and the envelopes `pubsub_push`, `pubsub_cloudevent`, `eventarc`)
make drift entries from the real published entries in tests/data/gcp (see SOURCES.md
there); test_gcp_rules.py uses them too.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import pytest
from conftest import DATA, corpus_files
from trustwatch.changes import EventError
from trustwatch.engine import evaluate
from trustwatch.gcp import events
from trustwatch.gcp.changes import (
    BindingDelta,
    BucketSettings,
    CustomRoleChanged,
    CustomRoleUpdated,
    HmacKeyUpdated,
    PolicySet,
    ServiceAccountChanged,
    ServiceAccountKeyCreated,
    ServiceAccountPolicySet,
)
from trustwatch.intake import detect_cloud, parse_document, read_documents, read_path

# --- identifiers of examples/baseline.yaml ---
PROJECT = "dbx-prod-4821"
COMPUTE = "databricks-compute@dbx-prod-4821.iam.gserviceaccount.com"
TERRAFORM = "terraform-automation@dbx-prod-4821.iam.gserviceaccount.com"
RESPONDER = "trustwatch@dbx-prod-4821.iam.gserviceaccount.com"
UC_SA = "serviceAccount:db-uc-storage-1a2b3c4d@uc-useast4.iam.gserviceaccount.com"
BUCKET = "dbx-uc-prod-4821"
CUSTOM_ROLE = "projects/dbx-prod-4821/roles/databricks_project_role_v2"
ADMINS = "group:platform-admins@example.com"
ALICE = "alice@example.com"
MALLORY = "user:mallory@example.com"
OTHER_SA = "test-account3@gcp-project1.iam.gserviceaccount.com"  # of the Panther entry
UNIQUE_ID = "105537103139416651075"

GCP_CORPUS = corpus_files("gcp")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / "gcp" / f"{name}.json").read_text())


def add(role: str, member: str) -> tuple[str, str, str]:
    return ("ADD", role, member)


def remove(role: str, member: str) -> tuple[str, str, str]:
    return ("REMOVE", role, member)


def _deltas(deltas: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
        "policyDelta": {
            "bindingDeltas": [{"action": a, "role": r, "member": m} for a, r, m in deltas]
        },
    }


def raw(entry: dict[str, Any]) -> dict[str, Any]:
    """A Panther-normalised entry as Cloud Logging writes it (`@type`, RFC 3339 times)."""
    out = {k: v for k, v in copy.deepcopy(entry).items() if not k.startswith("p_")}
    proto = out["protoPayload"]
    proto["@type"] = proto.pop("at_sign_type")
    meta = proto["requestMetadata"]
    meta["callerIp"] = meta.pop("callerIP")
    for key in ("timestamp", "receiveTimestamp"):
        out[key] = out[key].replace(" ", "T") + "Z"
    return out


def by(entry: dict[str, Any], email: str) -> dict[str, Any]:
    auth = entry["protoPayload"]["authenticationInfo"]
    auth["principalEmail"] = email
    auth["principalSubject"] = (
        f"{'serviceAccount' if 'gserviceaccount' in email else 'user'}:{email}"
    )
    return entry


def failed(entry: dict[str, Any], code: int = 7) -> dict[str, Any]:
    proto = entry["protoPayload"]
    proto["status"] = {"code": code, "message": "Permission denied on resource"}
    for key in ("response", "serviceData"):
        proto.pop(key, None)
    return entry


def project_policy(
    *deltas: tuple[str, str, str],
    project: str = PROJECT,
    policy: dict[str, list[str]] | None = None,
    actor: str = ALICE,
) -> dict[str, Any]:
    """Resource Manager SetIamPolicy on a project: the Panther entry, policy replaced.

    With `policy`, only the full policy is logged (no bindingDeltas)."""
    entry = load("auditlog-resourcemanager-setiampolicy-project-panther")
    proto = entry["protoPayload"]
    proto["resourceName"] = f"projects/{project}"
    for info in proto["authorizationInfo"]:
        info["resource"] = f"projects/{project}"
    entry["resource"]["labels"]["project_id"] = project
    entry["logName"] = f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
    proto["request"]["resource"] = project
    if policy is None:
        proto["serviceData"] = _deltas(deltas)
        del proto["request"]["policy"], proto["response"]
    else:
        del proto["serviceData"]
        bindings = [{"role": r, "members": m} for r, m in policy.items()]
        proto["request"]["policy"] = {"bindings": bindings, "etag": "BwWk8zJlg2o="}
        proto["response"] = {
            "bindings": bindings,
            "etag": "BwWlp7rH6tY=",
            "@type": "type.googleapis.com/google.iam.v1.Policy",
        }
    return by(entry, actor)


def sa_policy(
    email: str, *deltas: tuple[str, str, str], email_at: str = "labels", actor: str = ALICE
) -> dict[str, Any]:
    """IAM SetIAMPolicy on a service account (named by unique id; email where asked)."""
    entry = raw(load("auditlog-iam-setiampolicy-serviceaccount-panther-normalized"))
    proto = entry["protoPayload"]
    project = email.split("@")[1].split(".")[0]
    proto["resourceName"] = f"projects/-/serviceAccounts/{UNIQUE_ID}"
    proto["request"]["resource"] = f"projects/{project}/serviceAccounts/" + (
        email if email_at == "request" else UNIQUE_ID
    )
    labels = {"email_id": email, "project_id": project, "unique_id": UNIQUE_ID}
    if email_at != "labels":
        del labels["email_id"]
    entry["resource"]["labels"] = labels
    entry["logName"] = f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
    proto["serviceData"] = _deltas(deltas)
    bindings: dict[str, list[str]] = {}
    for action, role, member in deltas:
        if action == "ADD":
            bindings.setdefault(role, []).append(member)
    policy = [{"role": r, "members": m} for r, m in bindings.items()]
    proto["request"]["policy"]["bindings"] = policy
    proto["response"]["bindings"] = policy
    return by(entry, actor)


def bucket_policy(bucket: str, *deltas: tuple[str, str, str], actor: str = ALICE) -> dict:
    """storage.setIamPermissions: the Panther entry, bucket and deltas replaced."""
    entry = load("auditlog-storage-setiampermissions-bucket-allusers-panther")
    proto = entry["protoPayload"]
    proto["resourceName"] = f"projects/_/buckets/{bucket}"
    proto["authorizationInfo"][0]["resource"] = f"projects/_/buckets/{bucket}"
    proto["serviceData"] = _deltas(deltas)
    entry["resource"]["labels"].update(bucket_name=bucket, project_id=PROJECT)
    entry["logName"] = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    return by(entry, actor)


def bucket_resource(
    bucket: str, pap: str | None = "enforced", ubla: bool | None = True
) -> dict[str, Any]:
    """A JSON API Bucket resource as buckets.get returns it (`None`: the field left out).
    https://cloud.google.com/storage/docs/json_api/v1/buckets#resource"""
    config: dict[str, Any] = {}
    if ubla is not None:
        config["uniformBucketLevelAccess"] = {"enabled": ubla}
        config["bucketPolicyOnly"] = {"enabled": ubla}
    if pap is not None:
        config["publicAccessPrevention"] = pap
    return {
        "kind": "storage#bucket",
        "id": bucket,
        "name": bucket,
        "projectNumber": "861284710392",
        "metageneration": "7",
        "location": "US-EAST4",
        "storageClass": "STANDARD",
        "etag": "CAc=",
        "labels": {"team": "data"},
        "iamConfiguration": config,
    }


def bucket_update(
    bucket: str,
    *,
    response: dict[str, Any] | None = None,
    request: dict[str, Any] | None = None,
    actor: str = ALICE,
) -> dict[str, Any]:
    """storage.buckets.update: the Panther entry (no request or response logged, as Cloud
    Storage writes it), bucket replaced; `response` / `request` log a Bucket resource."""
    entry = raw(load("auditlog-storage-buckets-update-panther"))
    proto = entry["protoPayload"]
    proto["resourceName"] = f"projects/_/buckets/{bucket}"
    proto["authorizationInfo"][0]["resource"] = f"projects/_/buckets/{bucket}"
    entry["resource"]["labels"].update(bucket_name=bucket, project_id=PROJECT)
    entry["logName"] = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    if response is not None:
        proto["response"] = response
    if request is not None:
        proto["request"] = request
    return by(entry, actor)


def _sa_entry(email: str, actor: str) -> dict[str, Any]:
    entry = raw(load("auditlog-iam-createserviceaccountkey-panther-normalized"))
    project = email.split("@")[1].split(".")[0]
    entry["resource"]["labels"] = {"email_id": email, "project_id": project, "unique_id": UNIQUE_ID}
    entry["logName"] = f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
    proto = entry["protoPayload"]
    proto["resourceName"] = f"projects/-/serviceAccounts/{UNIQUE_ID}"
    proto["authorizationInfo"][0]["resource"] = proto["resourceName"]
    return by(entry, actor)


def key_created(
    email: str, actor: str = ALICE, key_id: str = "69049163b190437ab9279b28e8afa24bb5c5b076"
) -> dict:
    entry = _sa_entry(email, actor)
    proto = entry["protoPayload"]
    project = entry["resource"]["labels"]["project_id"]
    proto["request"]["name"] = f"projects/{project}/serviceAccounts/{UNIQUE_ID}"
    proto["response"]["name"] = f"projects/{project}/serviceAccounts/{email}/keys/{key_id}"
    return entry


def sa_call(method: str, email: str, actor: str = ALICE) -> dict[str, Any]:
    """DeleteServiceAccount / DisableServiceAccount, from the key-creation entry."""
    entry = _sa_entry(email, actor)
    proto = entry["protoPayload"]
    proto["methodName"] = f"google.iam.admin.v1.{method}"
    proto["request"] = {
        "@type": f"type.googleapis.com/google.iam.admin.v1.{method}Request",
        "name": f"projects/-/serviceAccounts/{UNIQUE_ID}",
    }
    proto["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
    proto["authorizationInfo"][0]["permission"] = (
        "iam.serviceAccounts." + method.removesuffix("ServiceAccount").lower()
    )
    return entry


def role_call(
    method: str,
    name: str = CUSTOM_ROLE,
    *,
    added: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
    mask: tuple[str, ...] | None = ("included_permissions",),
    permissions: tuple[str, ...] = ("logging.logEntries.create",),
    actor: str = ALICE,
) -> dict[str, Any]:
    """UpdateRole / DeleteRole on a custom role: the cloud-custodian CreateRole entry."""
    entry = load("auditlog-iam-createrole-custom-c7n")
    proto = entry["protoPayload"]
    project = name.split("/")[1]
    proto["methodName"] = f"google.iam.admin.v1.{method}"
    proto["resourceName"] = name
    proto["authorizationInfo"][0].update(
        resource=f"projects/{project}", permission=f"iam.roles.{method[:6].lower()}"
    )
    entry["resource"]["labels"] = {"project_id": project, "role_name": name}
    entry["logName"] = f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
    role = {
        "included_permissions": sorted({*permissions, *added}),
        "title": "Databricks project role",
    }
    if method == "UpdateRole":
        proto["request"] = {
            "@type": "type.googleapis.com/google.iam.admin.v1.UpdateRoleRequest",
            "name": name,
            "role": role,
        }
        if mask is not None:
            proto["request"]["update_mask"] = {"paths": list(mask)}
        proto["response"] = {
            **role,
            "name": name,
            "@type": "type.googleapis.com/google.iam.admin.v1.Role",
        }
        delta = {}
        if added:
            delta["addedPermissions"] = list(added)
        if removed:
            delta["removedPermissions"] = list(removed)
        if delta:
            proto["serviceData"]["permissionDelta"] = delta
        else:
            del proto["serviceData"]
    else:
        proto["request"] = {
            "@type": "type.googleapis.com/google.iam.admin.v1.DeleteRoleRequest",
            "name": name,
        }
        proto["response"] = {**role, "name": name, "deleted": True}
        del proto["serviceData"]
    return by(entry, actor)


# --- delivery envelopes ---


def _b64(entry: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(entry).encode()).decode()


def pubsub_push(entry: dict[str, Any]) -> dict[str, Any]:
    """A Pub/Sub push body (log sink -> topic -> push subscription)."""
    body = load("pubsub-messagepublisheddata-text-googlecloudevents")
    body["message"].update(
        data=_b64(entry), attributes={"logging.googleapis.com/timestamp": entry["timestamp"]}
    )
    body["subscription"] = f"projects/{PROJECT}/subscriptions/trustwatch-audit"
    return body


def pubsub_cloudevent(entry: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent a Cloud Run function gets for the same message (structured JSON)."""
    event = load("cloudevent-structured-pubsub-messagepublished-googlecloudevents")
    event["data"]["message"]["data"] = _b64(entry)
    event["source"] = f"//pubsub.googleapis.com/projects/{PROJECT}/topics/trustwatch-audit"
    return event


def eventarc(entry: dict[str, Any]) -> dict[str, Any]:
    """An Eventarc `google.cloud.audit.log.v1.written` CloudEvent: data is the entry."""
    event = load("cloudevent-structured-auditlog-written-bigquery-googlecloudevents")
    proto = entry["protoPayload"]
    event.update(
        data=entry,
        methodName=proto["methodName"],
        serviceName=proto["serviceName"],
        resourceName=proto["resourceName"],
        id=f"{entry['logName']}{entry['insertId']}",
        subject=f"{proto['serviceName']}/{proto['resourceName']}",
        source=f"//cloudaudit.googleapis.com/projects/{PROJECT}/logs/activity",
    )
    return event


UNRELATED = load("auditlog-compute-instancetemplates-insert-c7n")


def documents(entry: dict[str, Any], shape: str) -> list[Any]:
    """The documents one delivery shape brings for this entry."""
    if shape == "log entry":
        return [entry]
    if shape == "pubsub push":
        return [pubsub_push(entry)]
    if shape == "pubsub cloudevent":
        return [pubsub_cloudevent(entry)]
    if shape == "eventarc":
        return [eventarc(entry)]
    if shape == "json array":
        return [[UNRELATED, entry]]
    # lines of mixed shapes: an unrelated raw entry, then the entry as a push body
    text = "\n".join(json.dumps(d) for d in (UNRELATED, pubsub_push(entry)))
    return [doc for _, doc in read_documents(text, "f.jsonl")]


SHAPES = ("log entry", "pubsub push", "pubsub cloudevent", "eventarc", "json array", "json lines")


def changes_of(doc: Any) -> list:
    out = []
    for parsed in parse_document(doc, "test"):
        assert parsed.error is None, parsed.error
        out.extend(parsed.changes)
    return out


# --- the corpus ---


@pytest.mark.parametrize("path", GCP_CORPUS, ids=[p.name for p in GCP_CORPUS])
def test_every_corpus_record_reads(path, baseline):
    results = [p for where, doc in read_path(path) for p in parse_document(doc, where)]
    assert results
    for parsed in results:
        assert parsed.error is None, parsed.error
        assert parsed.changes or (parsed.skipped is not None and parsed.skipped.reason)
        for change in parsed.changes:
            assert change.cloud == "gcp"
            evaluate(change, baseline)  # must not raise


def test_corpus_identity_changes_are_recognized():
    kinds = {}
    for path in GCP_CORPUS:
        for where, doc in read_path(path):
            assert detect_cloud(doc) == "gcp", path.name
            for parsed in parse_document(doc, where):
                kinds[path.name] = [c.kind for c in parsed.changes] or parsed.skipped.reason
    assert kinds["auditlog-resourcemanager-setiampolicy-project-panther.json"] == [
        "resource.iam_policy_set"
    ]
    assert kinds["auditlog-storage-setiampermissions-bucket-allusers-panther.json"] == [
        "bucket.iam_policy_set"
    ]
    assert kinds["auditlog-iam-setiampolicy-serviceaccount-panther-normalized.json"] == [
        "service_account.iam_policy_set"
    ]
    assert kinds["auditlog-iam-createserviceaccountkey-panther-normalized.json"] == [
        "service_account.key_created"
    ]
    assert "not a watched IAM call" in kinds["auditlog-iam-createrole-custom-c7n.json"]
    assert "not a LogEntry" in kinds["pubsub-messagepublisheddata-text-googlecloudevents.json"]
    assert (
        "not a LogEntry"
        in kinds["cloudevent-structured-pubsub-messagepublished-googlecloudevents.json"]
    )


def test_panther_normalised_entries_read():
    (change,) = changes_of(load("auditlog-iam-setiampolicy-serviceaccount-panther-normalized"))
    assert change.identity == OTHER_SA and change.scope == "gcp-project1"
    assert change.source_ip == "1.2.3.4" and change.actor == "user@company.io"
    assert change.payload_as(PolicySet).deltas[0] == BindingDelta(
        action="ADD",
        role="roles/iam.serviceAccountTokenCreator",
        member=f"serviceAccount:{OTHER_SA}",
    )
    (key,) = changes_of(load("auditlog-iam-createserviceaccountkey-panther-normalized"))
    assert key.payload_as(ServiceAccountKeyCreated).key_id == (
        "69049163b190437ab9279b28e8afa24bb5c5b076"
    )
    assert key.identity == "created-service-account@gcp-project1.iam.gserviceaccount.com"


# the payload class each change kind carries (trustwatch.gcp.changes)
PAYLOADS = {
    "resource.iam_policy_set": PolicySet,
    "bucket.iam_policy_set": PolicySet,
    "service_account.iam_policy_set": ServiceAccountPolicySet,
    "service_account.key_created": ServiceAccountKeyCreated,
    "service_account.key_enabled": ServiceAccountKeyCreated,
    "service_account.hmac_key_created": ServiceAccountKeyCreated,
    "service_account.hmac_key_updated": HmacKeyUpdated,
    "service_account.deleted": ServiceAccountChanged,
    "service_account.disabled": ServiceAccountChanged,
    "custom_role.updated": CustomRoleUpdated,
    "custom_role.deleted": CustomRoleChanged,
    "custom_role.undeleted": CustomRoleChanged,
    "bucket.settings_updated": BucketSettings,
}


def test_every_change_kind_carries_its_typed_payload():
    assert set(PAYLOADS) == set(events.METHODS.values()) | set(events.FULL_METHODS.values())
    entries = [
        project_policy(add("roles/owner", MALLORY)),
        bucket_policy(BUCKET, add("roles/storage.admin", MALLORY)),
        sa_policy(COMPUTE, add("roles/iam.serviceAccountUser", MALLORY)),
        key_created(COMPUTE),
        sa_call("DeleteServiceAccount", COMPUTE),
        sa_call("DisableServiceAccount", COMPUTE),
        role_call("UpdateRole", added=("iam.serviceAccounts.actAs",)),
        role_call("DeleteRole"),
        role_call("UndeleteRole"),
        failed(project_policy(add("roles/owner", MALLORY))),
        failed(role_call("UpdateRole")),
        bucket_update(BUCKET),
        failed(bucket_update(BUCKET)),
    ]
    enabled = key_created(COMPUTE)
    enabled["protoPayload"]["methodName"] = "google.iam.admin.v1.EnableServiceAccountKey"
    entries.append(enabled)
    docs = entries + [doc for path in GCP_CORPUS for _, doc in read_path(path)]
    seen = set()
    for change in (c for doc in docs for c in changes_of(doc)):
        assert type(change.payload) is PAYLOADS[change.kind], change
        assert not hasattr(change, "data")  # no untyped dict beside the payload
        seen.add(change.kind)
    # all but HMAC keys: test_gcp_attack_paths / test_gcp_hmac_keys build those, and read
    # their payload
    assert seen == set(PAYLOADS) - {
        "service_account.hmac_key_created",
        "service_account.hmac_key_updated",
    }


# --- envelopes ---


@pytest.mark.parametrize("shape", SHAPES)
def test_every_envelope_gives_the_same_change(shape):
    entry = project_policy(add("roles/owner", MALLORY))
    (expected,) = changes_of(entry)
    got = [c for doc in documents(entry, shape) for c in changes_of(doc)]
    assert got == [expected]
    assert expected.kind == "resource.iam_policy_set" and expected.identity == f"projects/{PROJECT}"
    assert expected.scope == PROJECT and expected.actor == ALICE
    assert expected.event_id == "mrbji0dal80" and expected.event_time == "2020-05-15T03:51:35.019Z"


def test_pubsub_message_that_is_not_a_log_entry_is_skipped():
    body = pubsub_push(UNRELATED)
    body["message"]["data"] = base64.b64encode(b'{"hello": "world"}').decode()
    (parsed,) = parse_document(body, "test")
    assert "not a LogEntry" in parsed.skipped.reason and parsed.skipped.event_id == "message-id"
    del body["message"]["data"]
    (parsed,) = parse_document(body, "test")
    assert "without data" in parsed.skipped.reason


def test_other_cloudevents_are_skipped():
    event = eventarc(UNRELATED)
    event["type"] = "google.cloud.storage.object.v1.finalized"
    (parsed,) = parse_document(event, "test")
    assert "not an audit log delivery" in parsed.skipped.reason


def test_url_safe_and_unpadded_base64():
    entry = sa_call("DisableServiceAccount", COMPUTE)
    body = pubsub_push(entry)
    body["message"]["data"] = (
        base64.urlsafe_b64encode(json.dumps(entry).encode()).decode().rstrip("=")
    )
    (change,) = changes_of(body)
    assert change.kind == "service_account.disabled"


# --- names of the resource ---


@pytest.mark.parametrize("email_at", ["labels", "request"])
def test_service_account_email_from_labels_or_request(email_at):
    (change,) = changes_of(
        sa_policy(COMPUTE, add("roles/iam.serviceAccountUser", MALLORY), email_at=email_at)
    )
    assert change.identity == COMPUTE
    assert change.payload_as(ServiceAccountPolicySet).unique_id == UNIQUE_ID
    assert change.scope == PROJECT and not change.needs_enrichment


def test_service_account_named_by_unique_id_only_needs_enrichment():
    entry = sa_policy(COMPUTE, add("roles/iam.serviceAccountUser", MALLORY), email_at="nowhere")
    del entry["resource"]["labels"]["project_id"]
    (change,) = changes_of(entry)
    assert change.needs_enrichment
    assert change.not_evaluated == "service account email not in event"
    assert change.identity == f"projects/-/serviceAccounts/{UNIQUE_ID}" and change.scope == PROJECT


def test_key_email_from_the_key_name():
    entry = key_created(COMPUTE)
    del entry["resource"]["labels"]["email_id"]
    (change,) = changes_of(entry)
    assert change.identity == COMPUTE and change.name == "databricks-compute"


def test_custom_role_update_reads_delta_mask_and_permissions():
    (change,) = changes_of(role_call("UpdateRole", added=("iam.serviceAccounts.actAs",)))
    assert change.identity == CUSTOM_ROLE and change.kind == "custom_role.updated"
    role = change.payload_as(CustomRoleUpdated)
    assert role.added == ("iam.serviceAccounts.actAs",)
    assert role.update_mask == ("included_permissions",)
    assert role.permissions == ("iam.serviceAccounts.actAs", "logging.logEntries.create")


def test_folder_and_organization_policies():
    entry = project_policy(add("roles/iam.serviceAccountTokenCreator", MALLORY))
    entry["protoPayload"]["resourceName"] = "organizations/123456789012"
    entry["resource"] = {"type": "organization", "labels": {"organization_id": "123456789012"}}
    entry["logName"] = "organizations/123456789012/logs/cloudaudit.googleapis.com%2Factivity"
    (change,) = changes_of(entry)
    assert change.payload_as(PolicySet).resource_type == "organization"
    assert change.identity == change.scope == "organizations/123456789012"


def test_failed_call_keeps_its_status():
    (change,) = changes_of(failed(sa_policy(COMPUTE, add("roles/iam.serviceAccountUser", MALLORY))))
    assert change.failed and change.error_code == "PERMISSION_DENIED"
    (change,) = changes_of(failed(key_created(COMPUTE), code=42))
    assert change.error_code == "42"


def test_actor_ids_and_the_delegation_chain():
    """The principals that impersonated the caller are its delegation chain, not its names:
    https://cloud.google.com/iam/docs/audit-logging/examples-service-accounts"""
    entry = key_created(COMPUTE, actor=TERRAFORM)
    entry["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"] = [
        {"firstPartyPrincipal": {"principalEmail": RESPONDER}},
        {"principalSubject": "principal://iam.googleapis.com/projects/1/subject/x"},
        {"thirdPartyPrincipal": {"thirdPartyClaims": {"iss": "https://idp", "sub": "bob"}}},
        {},
    ]
    (change,) = changes_of(entry)
    assert change.actor == TERRAFORM and change.actor_ids == [TERRAFORM]
    assert change.delegated_by == [
        RESPONDER,
        "principal://iam.googleapis.com/projects/1/subject/x",
        "third-party:https://idp/bob",
        "unnamed principal",
    ]


# --- what is not drift, and bad input ---


def test_unrelated_calls_are_skipped():
    create = role_call("UpdateRole")
    create["protoPayload"]["methodName"] = "google.iam.admin.v1.CreateRole"
    for entry in (UNRELATED, create):
        (parsed,) = parse_document(entry, "test")
        assert "not a watched IAM call" in parsed.skipped.reason
    syslog = {"logName": f"projects/{PROJECT}/logs/syslog", "textPayload": "hi", "insertId": "1"}
    syslog["timestamp"] = "2026-11-27T10:00:00Z"
    (parsed,) = parse_document(pubsub_push(syslog), "test")
    assert "not an audit log" in parsed.skipped.reason


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (lambda e: e.update(protoPayload="x"), "protoPayload is a str"),
        (lambda e: e["protoPayload"].pop("methodName"), "without methodName"),
        (lambda e: e["protoPayload"].update(status={"code": "7"}), "status.code is '7'"),
        (
            lambda e: e["protoPayload"]["serviceData"]["policyDelta"].update(
                bindingDeltas=[{"action": "ADD"}]
            ),
            "binding delta",
        ),
        (
            lambda e: e["protoPayload"]["serviceData"]["policyDelta"].update(bindingDeltas=["x"]),
            "non-object",
        ),
    ],
)
def test_malformed_entries_raise_clear_errors(doc, message):
    entry = project_policy(add("roles/owner", MALLORY))
    doc(entry)
    with pytest.raises(EventError, match=re.escape(message)):
        events.parse(entry)
    (parsed,) = parse_document(entry, "test")
    assert str(parsed.error).startswith("test: ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": {"data": "***"}, "subscription": "s"}, "message.data is not valid base64"),
        ({"message": {"data": 5}, "subscription": "s"}, "message.data is a int"),
        (
            {"specversion": "1.0", "type": events.AUDIT_LOG_WRITTEN, "data": "x"},
            "without a LogEntry",
        ),
        ({"specversion": "1.0", "type": events.MESSAGE_PUBLISHED}, "without a message"),
    ],
)
def test_malformed_envelopes_raise_clear_errors(body, message):
    with pytest.raises(EventError, match=re.escape(message)):
        events.parse(body)


def test_not_a_gcp_document():
    assert not events.recognizes({"Records": []})
    assert not events.recognizes({"records": [], "operationName": "x"})
    assert not events.recognizes([])
    assert not events.recognizes(
        {"specversion": "1.0", "type": "Microsoft.Resources.ResourceWriteSuccess"}
    )


def test_iam_policy_of_something_else_than_a_service_account_is_skipped():
    entry = sa_policy(COMPUTE, add("roles/iam.workloadIdentityUser", MALLORY))
    pool = f"projects/{PROJECT}/locations/global/workloadIdentityPools/github"
    entry["protoPayload"]["resourceName"] = pool
    (parsed,) = parse_document(entry, "test")
    assert "not a service account" in parsed.skipped.reason


@pytest.mark.parametrize("as_bytes", [False, True])
def test_cloudevent_data_as_json_text(as_bytes):
    """The SDK may hand a binary-mode event's body over as text or bytes."""
    entry = key_created(COMPUTE)
    event = eventarc(entry)
    text = json.dumps(event["data"])
    event["data"] = text.encode() if as_bytes else text
    (change,) = events.parse(event)
    assert change.kind == "service_account.key_created" and change.identity == COMPUTE
    pushed = pubsub_cloudevent(entry)
    pushed["data"] = json.dumps(pushed["data"]).encode()
    (change,) = events.parse(pushed)
    assert change.identity == COMPUTE
