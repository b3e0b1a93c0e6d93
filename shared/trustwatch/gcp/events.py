"""Cloud Audit Log entries -> Changes.

Shapes read: a raw `LogEntry` (`protoPayload` AuditLog); a Pub/Sub push body
(`{"message": {"data": base64 LogEntry}, "subscription": …}`, also the CloudEvent `data` of
`google.cloud.pubsub.topic.v1.messagePublished`, structured or binary); an Eventarc
`google.cloud.audit.log.v1.written` CloudEvent (its `data` is the LogEntry); a JSON array
(`gcloud logging read --format=json`) or JSON Lines of any of them. `records` yields each
envelope as is and `parse` unwraps it, so a Pub/Sub message that is no LogEntry is a skip.

Only IAM changes that can touch the watched identities become Changes; the after-state
comes from the entry: `serviceData.policyDelta.bindingDeltas` when logged, else the full
policy of the request (rules then diff it against the baseline). An entry naming a service
account by unique id only, or logging no policy, gives a Change marked `needs_enrichment`
(its `not_evaluated` says what is missing); `complete(change, fetched)` finishes it with
what the caller looked up (trustwatch.gcp.enrich reads it from the API). Each Change
carries its kind's payload from `trustwatch.gcp.changes`.

Bucket settings: `storage.buckets.update` logs neither the request nor the bucket after the
call, so its Change (`bucket.settings_updated`) `needs_enrichment` ("bucket settings not in
event") unless the entry does log a Bucket with both settings; `complete()` takes the
bucket's `iamConfiguration` as the API returns it.

Keys: `CreateServiceAccountKey`, `UploadServiceAccountKey`, `EnableServiceAccountKey` and
Cloud Storage's `storage.hmacKeys.create` (the account in the request's
`serviceAccountEmail`) and `storage.hmacKeys.update` (a key's state set: ACTIVE re-activates
it; the account when the entry logs the key's `serviceAccountEmail`, else the change
`needs_enrichment`, "HMAC key's account not in event", and `complete()` takes the key's
metadata as the API returns it). The caller's delegation chain
(`serviceAccountDelegationInfo`: who impersonated the calling account) goes to
`Change.delegated_by`, not to its `actor_ids`.
"""

from __future__ import annotations

import base64
import binascii
import re
import reprlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from trustwatch import jsontext
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.changes import list_field as _list
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str
from trustwatch.gcp.changes import (
    AccountPayload,
    Binding,
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

# (serviceName, lower-case last segment of methodName) -> change kind
METHODS = {
    ("cloudresourcemanager.googleapis.com", "setiampolicy"): "resource.iam_policy_set",
    ("iam.googleapis.com", "setiampolicy"): "service_account.iam_policy_set",
    ("storage.googleapis.com", "setiampermissions"): "bucket.iam_policy_set",
    ("iam.googleapis.com", "createserviceaccountkey"): "service_account.key_created",
    ("iam.googleapis.com", "uploadserviceaccountkey"): "service_account.key_created",
    ("iam.googleapis.com", "enableserviceaccountkey"): "service_account.key_enabled",
    ("iam.googleapis.com", "deleteserviceaccount"): "service_account.deleted",
    ("iam.googleapis.com", "disableserviceaccount"): "service_account.disabled",
    ("iam.googleapis.com", "updaterole"): "custom_role.updated",
    ("iam.googleapis.com", "deleterole"): "custom_role.deleted",
    ("iam.googleapis.com", "undeleterole"): "custom_role.undeleted",
    # storage.buckets.update: the audit methodName of the JSON API's buckets.patch and
    # buckets.update alike (`gcloud storage buckets update` sends a PATCH); an Admin
    # Activity entry ("modify buckets"): https://cloud.google.com/storage/docs/audit-logging
    # Other storage methods ending so (storage.objects.update) are skipped by resource.
    ("storage.googleapis.com", "update"): "bucket.settings_updated",
}
# methods named by more than their last segment: (serviceName, lower-case methodName)
FULL_METHODS = {
    ("storage.googleapis.com", "storage.hmackeys.create"): "service_account.hmac_key_created",
    # sets a key's state, ACTIVE or INACTIVE (an Admin Activity entry: it modifies access)
    # https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
    ("storage.googleapis.com", "storage.hmackeys.update"): "service_account.hmac_key_updated",
}
# google.iam.admin.v1.Role.RoleLaunchStage, should a log spell the enum as its number
_STAGES = {0: "ALPHA", 1: "BETA", 2: "GA", 4: "DEPRECATED", 5: "DISABLED", 6: "EAP"}
AUDIT_LOG_WRITTEN = "google.cloud.audit.log.v1.written"


def watched_operations() -> dict[str, tuple[str, ...]]:
    """serviceName -> the (lower-case) last segments of the methodNames parse() turns into
    changes, and the whole names of FULL_METHODS; deploy/gcp's log sink filter matches
    exactly these (a methodName equal to one, or ending in "." and one)."""
    watched: dict[str, list[str]] = {}
    for service, method in [*METHODS, *FULL_METHODS]:
        watched.setdefault(service, []).append(method)
    return {service: tuple(methods) for service, methods in watched.items()}


MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_CODES = {
    1: "CANCELLED", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}  # fmt: skip
_SA_EMAIL = re.compile(r"(?:^|/)([^/@\s]+@[^/\s]+\.gserviceaccount\.com)(?:/|$)", re.IGNORECASE)
_SA_ID = re.compile(r"serviceAccounts/(\d+)(?:/|$)")
_PROJECT = re.compile(r"^projects/([^/]+)")
_NODE = re.compile(r"^(projects|folders|organizations)/([^/]+)$")
_BUCKET_NAME = re.compile(r"^projects/[^/]+/buckets/([^/]+)$")
_NODE_TYPES = {"projects": "project", "folders": "folder", "organizations": "organization"}
NO_EMAIL = "service account email not in event"
NO_POLICY = "policy not in event"
NO_SETTINGS = "bucket settings not in event"
NO_HMAC_ACCOUNT = "HMAC key's account not in event"
NO_HMAC_STATE = "HMAC key's state not in event"
HMAC_STATES = ("ACTIVE", "INACTIVE", "DELETED")


def recognizes(doc: Any) -> bool:
    if isinstance(doc, list):
        return bool(doc) and all(_is_entry(item) for item in doc)
    return _is_entry(doc)


def _is_entry(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    if "protoPayload" in doc:
        return True
    if "specversion" in doc and _str(doc.get("type")).startswith("google."):
        return True
    message = doc.get("message")
    return isinstance(message, dict) and ("data" in message or "messageId" in message)


def records(doc: Any) -> Iterator[Any]:
    if isinstance(doc, list):
        yield from doc
    else:
        yield doc


def parse(record: Any) -> list[Change] | Skipped:
    entry = log_entry(record)
    if isinstance(entry, Skipped):
        return entry
    event_id = _str(entry.get("insertId"))
    proto = entry.get("protoPayload")
    if proto is None:
        return Skipped("log entry without protoPayload: not an audit log", event_id)
    if not isinstance(proto, dict):
        raise EventError(f"protoPayload is a {type(proto).__name__}, expected an object")
    method = _str(proto.get("methodName"))
    service = _str(proto.get("serviceName"))
    if not method:
        raise EventError("protoPayload without methodName")
    kind = FULL_METHODS.get((service.lower(), method.lower())) or METHODS.get(
        (service.lower(), method.rsplit(".", 1)[-1].lower())
    )
    if kind is None:
        return Skipped(f"{service} {method}: not a watched IAM call", event_id, method)

    auth = _dict(proto, "authenticationInfo")
    metadata = _dict(proto, "requestMetadata")
    status = _dict(proto, "status")
    code = status.get("code") or 0
    if not isinstance(code, int):
        raise EventError(f"protoPayload.status.code is {reprlib.repr(code)}, expected an integer")
    actor, ids = actor_ids(auth)
    base: dict[str, Any] = {
        "cloud": "gcp",
        "kind": kind,
        "event_name": method,
        "scope": project_of(entry, proto),
        "event_id": event_id,
        "event_time": _str(entry.get("timestamp")),
        "correlation_id": _str(_dict(entry, "operation").get("id")) or event_id,
        "actor": actor,
        "actor_ids": ids,
        "delegated_by": delegation_chain(auth),
        "source_ip": _str(metadata.get("callerIp") or metadata.get("callerIP")),
        "user_agent": _str(metadata.get("callerSuppliedUserAgent")),
        "error_code": (_CODES.get(code, str(code))) if code else "",
    }
    resource_name = _str(proto.get("resourceName"))
    if kind == "service_account.iam_policy_set" and "serviceaccounts/" not in resource_name.lower():
        return Skipped(f"{method} on {resource_name!r}: not a service account", event_id, method)
    if kind == "service_account.hmac_key_created":
        return [_hmac_key(base, proto, resource_name)]
    if kind == "service_account.hmac_key_updated":
        return [_hmac_key_updated(base, proto, resource_name)]
    if kind == "bucket.settings_updated":
        settings = _bucket_settings(base, entry, proto, resource_name)
        return settings if isinstance(settings, Skipped) else [settings]
    if kind.startswith("service_account."):
        return [_service_account(base, entry, proto, resource_name)]
    if kind.startswith("custom_role."):
        return [_custom_role(base, entry, proto, resource_name)]
    if kind == "bucket.iam_policy_set":
        labels = _dict(_dict(entry, "resource"), "labels")
        bucket = _str(labels.get("bucket_name")) or resource_name.rsplit("/buckets/", 1)[-1]
        if not bucket:
            raise EventError(f"{method}: no bucket name in resourceName or resource.labels")
        return [_policy_change(base, proto, bucket, PolicySet("bucket", bucket))]
    m = _NODE.match(resource_name)
    if not m:
        return Skipped(
            f"{method} on {resource_name!r}: not a project, folder or org", event_id, method
        )
    node = f"projects/{base['scope']}" if m[1] == "projects" and base["scope"] else resource_name
    payload = PolicySet(_NODE_TYPES[m[1]], node)
    return [_policy_change({**base, "scope": base["scope"] or node}, proto, node, payload)]


def log_entry(record: Any) -> dict[str, Any] | Skipped:
    """The LogEntry inside any delivery envelope (EventError if malformed)."""
    if not isinstance(record, dict):
        raise EventError(f"a log entry must be an object, got {type(record).__name__}")
    if "protoPayload" in record:
        return record
    if "specversion" in record:
        event_type = _str(record.get("type"))
        data = record.get("data")
        if data is None and "data_base64" in record:
            data = _json_or_none(_b64(record["data_base64"], "data_base64"))
        elif isinstance(data, str):  # a binary-mode event's body, as the SDK hands it
            data = _json_text_or_none(data)
        elif isinstance(data, bytes):
            data = _json_or_none(data)
        if event_type == AUDIT_LOG_WRITTEN:
            if not isinstance(data, dict):
                raise EventError(f"{AUDIT_LOG_WRITTEN} CloudEvent without a LogEntry in 'data'")
            return data
        if event_type != MESSAGE_PUBLISHED:
            return Skipped(f"CloudEvent {event_type or '(no type)'}: not an audit log delivery")
        if not isinstance(data, dict):
            raise EventError(f"{MESSAGE_PUBLISHED} CloudEvent without a message in 'data'")
        record = data
    message = record.get("message")
    if not isinstance(message, dict):
        raise EventError("Pub/Sub body without a 'message' object")
    message_id = _str(message.get("messageId") or message.get("message_id"))
    if "data" not in message:
        return Skipped("Pub/Sub message without data", message_id)
    entry = _json_or_none(_b64(message["data"], "message.data"))
    if not isinstance(entry, dict) or not ("protoPayload" in entry or "logName" in entry):
        return Skipped("Pub/Sub message is not a LogEntry (audit log sink)", message_id)
    return entry


def actor_ids(auth: dict[str, Any]) -> tuple[str, list[str]]:
    """The caller's email and its other names (subject); the principals it acted for are
    `delegation_chain`'s."""
    email = _str(auth.get("principalEmail"))
    ids = [email, _str(auth.get("principalSubject")).split(":", 1)[-1]]
    ids = [x for x in ids if x]
    return email or (ids[0] if ids else ""), list(dict.fromkeys(ids))


def delegation_chain(auth: dict[str, Any]) -> list[str]:
    """Each principal that delegated to the caller (impersonation), one name per step:
    its email, else its subject, else a third party's issuer and subject claims. A step
    naming no one still counts, so a chain is never taken for the caller's alone.
    https://cloud.google.com/iam/docs/audit-logging/examples-service-accounts"""
    chain = auth.get("serviceAccountDelegationInfo")
    out = []
    for step in chain if isinstance(chain, list) else []:
        step = step if isinstance(step, dict) else {}
        first, third = step.get("firstPartyPrincipal"), step.get("thirdPartyPrincipal")
        name = _str(first.get("principalEmail")) if isinstance(first, dict) else ""
        name = name or _str(step.get("principalSubject"))
        if not name and isinstance(third, dict):
            claims = third.get("thirdPartyClaims")
            claims = claims if isinstance(claims, dict) else {}
            name = "third-party:" + "/".join(
                _str(claims.get(k)) for k in ("iss", "sub") if _str(claims.get(k))
            )
        out.append(name or "unnamed principal")
    return out


def project_of(entry: dict[str, Any], proto: dict[str, Any]) -> str:
    labels = _dict(_dict(entry, "resource"), "labels")
    project = _str(labels.get("project_id"))
    if project:
        return project
    for text in (_str(entry.get("logName")), _str(proto.get("resourceName"))):
        m = _PROJECT.match(text)
        if m and m[1] not in ("-", "_"):
            return m[1]
    return ""


def _policy_change(
    base: dict[str, Any],
    proto: dict[str, Any],
    identity: str,
    payload: PolicySet,
    not_evaluated: str = "",
) -> Change:
    if base["error_code"]:
        return Change(**base, identity=identity, name=identity, payload=payload)
    payload = replace(payload, deltas=_deltas(proto), bindings=_bindings(proto))
    if payload.deltas is None and payload.bindings is None:
        not_evaluated = not_evaluated or NO_POLICY
    return Change(
        **base,
        identity=identity,
        name=identity,
        needs_enrichment=bool(not_evaluated),
        not_evaluated=not_evaluated,
        payload=payload,
    )


def complete(change: Change, resource: Any) -> Change:
    """The Change of a `needs_enrichment` entry, given what it lacked, fetched by the
    caller: the account (IAM `ServiceAccount` JSON) when only its unique id is logged, else
    the resource's IAM `Policy` JSON when the entry logs no policy; for a bucket update the
    Cloud Storage `Bucket` JSON (its `iamConfiguration` is read). Still lacking the other
    (both were missing), the result stays `needs_enrichment`."""
    if not change.needs_enrichment or not isinstance(resource, dict):
        raise ValueError(f"{change.kind}: nothing to complete with {type(resource).__name__}")
    payload = change.payload
    update: dict[str, Any] = {}
    if isinstance(payload, HmacKeyUpdated):
        return _complete_hmac_key(change, payload, resource)
    if isinstance(payload, BucketSettings):
        settings = bucket_settings(resource, "the bucket", defaults=True)
        if settings is None:
            raise ValueError("expected a Cloud Storage Bucket with its iamConfiguration")
        pap, ubla = settings
        payload = replace(payload, public_access_prevention=pap, uniform_bucket_level_access=ubla)
        return replace(change, payload=payload, needs_enrichment=False, not_evaluated="")
    if isinstance(payload, AccountPayload) and not payload.email:
        email = _str(resource.get("email")).lower()
        if not email:
            raise ValueError("expected an IAM ServiceAccount with an email")
        if isinstance(payload, ServiceAccountPolicySet):
            payload = replace(payload, email=email, resource=email)
        else:
            payload = replace(payload, email=email)
        update = {"identity": email, "name": email.split("@", 1)[0]}
        update["scope"] = change.scope or _str(resource.get("projectId"))
    else:
        policy = change.payload_as(PolicySet)
        payload = replace(policy, bindings=_bindings({"request": {"policy": resource}}))
    lacking = isinstance(payload, PolicySet) and payload.deltas is None and payload.bindings is None
    not_evaluated = NO_POLICY if lacking else ""
    update.update(payload=payload, needs_enrichment=lacking, not_evaluated=not_evaluated)
    return replace(change, **update)


def _deltas(proto: dict[str, Any]) -> tuple[BindingDelta, ...] | None:
    for holder in ("serviceData", "metadata"):
        delta = _dict(proto, holder).get("policyDelta")
        if delta is None:
            continue
        if not isinstance(delta, dict):
            raise EventError(f"{holder}.policyDelta is not an object")
        out = []
        for item in _list(delta, "bindingDeltas", f"{holder}.policyDelta.bindingDeltas"):
            if not isinstance(item, dict):
                raise EventError(f"{holder}.policyDelta.bindingDeltas holds a non-object")
            action, role, member = (_str(item.get(k)) for k in ("action", "role", "member"))
            if action not in ("ADD", "REMOVE") or not role or not member:
                raise EventError(
                    f"binding delta {reprlib.repr(item)}: expected action ADD/REMOVE, role, member"
                )
            out.append(BindingDelta(action, role, member, _condition(item.get("condition"))))
        return tuple(out)
    return None


def _condition(value: Any) -> tuple[tuple[str, str], ...] | None:
    """A binding delta's condition (google.type.Expr) as sorted (field, text) pairs.
    https://cloud.google.com/iam/docs/conditions-overview"""
    if not isinstance(value, dict):
        return None
    fields = tuple(sorted((k, v) for k, v in value.items() if isinstance(v, str) and v))
    return fields or None


def _bindings(proto: dict[str, Any]) -> tuple[Binding, ...] | None:
    """The full policy the call set, one Binding per role (None if the entry logs none)."""
    policy = _dict(proto, "request").get("policy")
    if policy is None:
        response = _dict(proto, "response")
        policy = response if ("bindings" in response or "etag" in response) else None
    if policy is None:
        return None
    if not isinstance(policy, dict) or not isinstance(policy.get("bindings") or [], list):
        raise EventError("request.policy is not a policy object with a bindings list")
    out: dict[str, list[str]] = {}
    for binding in policy.get("bindings") or []:
        role = _str(binding.get("role")) if isinstance(binding, dict) else ""
        members = binding.get("members") if isinstance(binding, dict) else None
        if not role or not isinstance(members, list):
            raise EventError(f"policy binding {reprlib.repr(binding)}: expected role and members")
        out.setdefault(role, []).extend(_str(m) for m in members if _str(m))
    return tuple(Binding(role, tuple(members)) for role, members in out.items())


def _service_account(
    base: dict[str, Any], entry: dict[str, Any], proto: dict[str, Any], resource_name: str
) -> Change:
    request = _dict(proto, "request")
    response = _dict(proto, "response")
    labels = _dict(_dict(entry, "resource"), "labels")
    candidates = [
        _str(request.get("resource")),
        _str(request.get("name")),
        resource_name,
        _str(response.get("name")),
        _str(labels.get("email_id")),
    ]
    email = next((m[1].lower() for c in candidates if (m := _SA_EMAIL.search(c))), "")
    unique_id = _str(labels.get("unique_id")) or next(
        (m[1] for c in candidates if (m := _SA_ID.search(c))), ""
    )
    domain = email.split("@", 1)[-1]
    if not base["scope"] and domain.endswith(".iam.gserviceaccount.com"):
        base = {**base, "scope": domain.split(".", 1)[0]}
    payload: ServiceAccountChanged | ServiceAccountKeyCreated
    if base["kind"] in ("service_account.key_created", "service_account.key_enabled"):
        names = (_str(response.get("name")), _str(request.get("name")), resource_name)
        key_name = next((n for n in names if "/keys/" in n), "")
        key_id = key_name.rsplit("/keys/", 1)[-1].strip("/") if key_name else ""
        payload = ServiceAccountKeyCreated(email, unique_id, key_id)
    else:
        payload = ServiceAccountChanged(email, unique_id)
    identity = email or resource_name
    # the entry names the account by unique id only: the caller must look the email up
    not_evaluated = NO_EMAIL if not email and not base["error_code"] else ""
    if base["kind"] == "service_account.iam_policy_set":
        policy = ServiceAccountPolicySet(
            "service_account", identity, email=email, unique_id=unique_id
        )
        return _policy_change(base, proto, identity, policy, not_evaluated)
    name = email.split("@", 1)[0]
    return Change(
        **base,
        identity=identity,
        name=name,
        needs_enrichment=bool(not_evaluated),
        not_evaluated=not_evaluated,
        payload=payload,
    )


def _bucket_settings(
    base: dict[str, Any], entry: dict[str, Any], proto: dict[str, Any], resource_name: str
) -> Change | Skipped:
    """storage.buckets.update: the bucket, and its settings when the entry logs them.

    The published entries (gsutil, gcloud storage buckets update) log no request and no
    response, so the change needs the bucket read. Should an entry log a Bucket resource
    (`response`, or the request's `resource` / the request itself) holding both settings,
    it is judged from the entry; one holding only one of them is not, since a PUT resets
    what it omits and a PATCH leaves it: only the bucket itself can tell.
    https://cloud.google.com/storage/docs/json_api/v1/buckets/update"""
    method = base["event_name"]
    m = _BUCKET_NAME.match(resource_name)
    if m is None and method.lower() != "storage.buckets.update":
        # storage.objects.update, storage.managedFolders.update, …: not the bucket's settings
        return Skipped(f"{method} on {resource_name!r}: not a bucket", base["event_id"], method)
    labels = _dict(_dict(entry, "resource"), "labels")
    bucket = m[1] if m else _str(labels.get("bucket_name"))
    if not bucket or "/" in bucket:
        raise EventError(f"{method}: no bucket name in resourceName or resource.labels")
    change = {**base, "identity": bucket, "name": bucket}
    if base["error_code"]:
        return Change(**change, payload=BucketSettings(bucket))
    request = _dict(proto, "request")
    for where, holder in (
        ("response", _dict(proto, "response")),
        ("request.resource", _dict(request, "resource")),
        ("request", request),
    ):
        settings = bucket_settings(holder, where, defaults=False)
        if settings is not None:
            payload = BucketSettings(bucket, *settings)
            return Change(**change, payload=payload)
    return Change(
        **change,
        needs_enrichment=True,
        not_evaluated=NO_SETTINGS,
        payload=BucketSettings(bucket),
    )


def bucket_settings(
    bucket: dict[str, Any], where: str, *, defaults: bool
) -> tuple[str, bool] | None:
    """(publicAccessPrevention lower case, uniformBucketLevelAccess.enabled) of a JSON API
    Bucket resource; None unless it holds both. With `defaults` (the bucket as the API
    returns it) an absent value is the bucket's default: `inherited`, not enabled.
    https://cloud.google.com/storage/docs/json_api/v1/buckets#resource"""
    config = bucket.get("iamConfiguration")
    if config is None:
        return ("inherited", False) if defaults else None
    if not isinstance(config, dict):
        raise EventError(f"{where}.iamConfiguration is not an object")
    pap = config.get("publicAccessPrevention")
    if pap is not None and not isinstance(pap, str):
        raise EventError(f"{where}.iamConfiguration.publicAccessPrevention is not a string")
    ubla = config.get("uniformBucketLevelAccess")
    if ubla is None:
        ubla = config.get("bucketPolicyOnly")  # its former name, still returned alongside
    enabled = ubla.get("enabled") if isinstance(ubla, dict) else None
    if ubla is not None and not isinstance(ubla, dict):
        raise EventError(f"{where}.iamConfiguration.uniformBucketLevelAccess is not an object")
    if enabled is not None and not isinstance(enabled, bool):
        raise EventError(f"{where}.iamConfiguration.uniformBucketLevelAccess.enabled: not a bool")
    if defaults:
        return (pap or "inherited").strip().lower(), bool(enabled)
    if pap is None or enabled is None:
        return None
    return pap.strip().lower(), enabled


def _hmac_key(base: dict[str, Any], proto: dict[str, Any], resource_name: str) -> Change:
    """storage.hmacKeys.create: the account comes from the request's `serviceAccountEmail`
    (JSON API query parameter), else the logged HmacKey metadata.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/create"""
    request = _dict(proto, "request")
    response = _dict(proto, "response")
    raw_metadata = response.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    candidates = [
        _str(request.get("serviceAccountEmail")),
        _str(request.get("service_account_email")),
        _str(metadata.get("serviceAccountEmail")),
        _str(response.get("serviceAccountEmail")),
        resource_name,
    ]
    email = next((m[1].lower() for c in candidates if (m := _SA_EMAIL.search(c))), "")
    access_id = _str(metadata.get("accessId")) or _str(response.get("accessId"))
    if not access_id and "/hmacKeys/" in resource_name:
        access_id = resource_name.rsplit("/hmacKeys/", 1)[-1]
    domain = email.split("@", 1)[-1]
    if not base["scope"] and domain.endswith(".iam.gserviceaccount.com"):
        base = {**base, "scope": domain.split(".", 1)[0]}
    not_evaluated = NO_EMAIL if not email and not base["error_code"] else ""
    return Change(
        **base,
        identity=email or resource_name,
        name=email.split("@", 1)[0],
        needs_enrichment=bool(not_evaluated),
        not_evaluated=not_evaluated,
        payload=ServiceAccountKeyCreated(email, "", access_id),
    )


def _hmac_key_updated(base: dict[str, Any], proto: dict[str, Any], resource_name: str) -> Change:
    """storage.hmacKeys.update: the key's state after the call and, when logged, its account.

    The JSON API's request body and response are the key's metadata (`state`, and in the
    response `serviceAccountEmail`, `accessId`, `projectId`); a gRPC-style entry logs it as
    the request's `hmacKey` / `hmac_key`, some as the response's `metadata`. The key is
    named by the resource name, projects/P/hmacKeys/ACCESS_ID.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys#resource"""
    request = _object_or_empty(proto.get("request"))
    response = _object_or_empty(proto.get("response"))
    # the after-state first: the response, then what the request set
    holders = [
        _object_or_empty(response.get("metadata")),
        response,
        _object_or_empty(request.get("hmacKey")),
        _object_or_empty(request.get("hmac_key")),
        _object_or_empty(request.get("metadata")),
        _object_or_empty(request.get("resource")),
        request,
    ]

    def first(*names: str) -> str:
        return next((v for h in holders for n in names if (v := _str(h.get(n)).strip())), "")

    emails = (first("serviceAccountEmail"), first("service_account_email"))
    email = next((m[1].lower() for c in emails if (m := _SA_EMAIL.search(c))), "")
    states = [_str(h.get("state")).strip().upper() for h in holders]
    state = next((s for s in states if s in HMAC_STATES), None)
    access_id = first("accessId", "access_id")
    project = first("projectId", "project_id").removeprefix("projects/")
    if "/hmacKeys/" in resource_name:
        head, _, tail = resource_name.rpartition("/hmacKeys/")
        access_id = access_id or tail.strip("/")
        m = _PROJECT.match(head)
        project = project or (m[1] if m and m[1] not in ("-", "_") else "")
    project = project or base["scope"]
    domain = email.split("@", 1)[-1]
    if not base["scope"]:
        scope = project or (
            domain.split(".", 1)[0] if domain.endswith(".gserviceaccount.com") else ""
        )
        base = {**base, "scope": scope}
    not_evaluated = ""
    if not base["error_code"] and state not in ("INACTIVE", "DELETED"):
        # a deactivation is never drift: only a key (possibly) made ACTIVE needs its account
        not_evaluated = NO_HMAC_ACCOUNT if not email else NO_HMAC_STATE if state is None else ""
    return Change(
        **base,
        identity=email or resource_name,
        name=email.split("@", 1)[0],
        needs_enrichment=bool(not_evaluated),
        not_evaluated=not_evaluated,
        payload=HmacKeyUpdated(email, "", access_id, project=project, state=state),
    )


def _complete_hmac_key(change: Change, payload: HmacKeyUpdated, key: dict[str, Any]) -> Change:
    """A key update finished with the key's metadata (storage v1 hmacKeys.get): its
    `serviceAccountEmail`, and its `state` when the entry logged none (the logged one is
    the call's after-state, kept).
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/get"""
    email = _str(key.get("serviceAccountEmail")).strip().lower()
    if not _SA_EMAIL.search(email):
        raise ValueError("expected HMAC key metadata with a serviceAccountEmail")
    state = payload.state
    if state is None:
        state = _str(key.get("state")).strip().upper()
        if state not in HMAC_STATES:
            raise ValueError("expected HMAC key metadata with a state")
    return replace(
        change,
        identity=email,
        name=email.split("@", 1)[0],
        scope=change.scope or _str(key.get("projectId")),
        payload=replace(payload, email=email, state=state),
        needs_enrichment=False,
        not_evaluated="",
    )


def _object_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _custom_role(
    base: dict[str, Any], entry: dict[str, Any], proto: dict[str, Any], resource_name: str
) -> Change:
    request = _dict(proto, "request")
    response = _dict(proto, "response")
    labels = _dict(_dict(entry, "resource"), "labels")
    name = (
        _str(labels.get("role_name"))
        or resource_name
        or _str(request.get("name"))
        or _str(response.get("name"))
    )
    if "/roles/" not in name:
        raise EventError(f"{base['event_name']}: no custom role name in resourceName")
    updated = base["kind"] == "custom_role.updated"
    payload = CustomRoleUpdated(name) if updated else CustomRoleChanged(name)
    if base["kind"] == "custom_role.updated" and not base["error_code"]:
        stage = _stage(request, response)
        delta = _dict(proto, "serviceData").get("permissionDelta") or _dict(proto, "metadata").get(
            "permissionDelta"
        )
        delta = delta if isinstance(delta, dict) else {}
        paths = _mask_paths(request.get("update_mask", request.get("updateMask")))
        after = _permissions(response)
        if after is None and (paths is None or "included_permissions" in paths):
            after = _permissions(_dict(request, "role"))
        payload = CustomRoleUpdated(
            name,
            stage=stage,
            permissions=after,  # the role's permissions after the call, when logged
            delta_logged=bool(delta),
            added=tuple(_strings(delta.get("addedPermissions"))),
            removed=tuple(_strings(delta.get("removedPermissions"))),
            update_mask=None if paths is None else tuple(paths),
        )
    if base["kind"] == "custom_role.undeleted" and not base["error_code"]:
        payload = CustomRoleChanged(name, _stage({}, response), _permissions(response))
    return Change(**base, identity=name, name=name.rsplit("/", 1)[-1], payload=payload)


def _stage(request: dict[str, Any], response: dict[str, Any]) -> str | None:
    """The launch stage an UpdateRole set (None unless `stage` is in its update mask or,
    without a mask, the logged role carries one)."""
    paths = _mask_paths(request.get("update_mask", request.get("updateMask")))
    if paths is not None and "stage" not in paths:
        return None
    for role in (response, _dict(request, "role")):
        value = role.get("stage")
        if isinstance(value, int) and not isinstance(value, bool):
            return _STAGES.get(value, str(value))
        if isinstance(value, str) and value.strip():
            return value.strip().upper()
    return None


def _mask_paths(mask: Any) -> list[str] | None:
    """update_mask as snake_case field paths ({"paths": [...]} or "a,b"), None if absent."""
    if isinstance(mask, dict):
        mask = mask.get("paths")
    if isinstance(mask, str):
        mask = mask.split(",")
    if not isinstance(mask, list):
        return None
    snake = {"includedpermissions": "included_permissions"}
    return [
        snake.get(p.strip().lower(), p.strip()) for p in mask if isinstance(p, str) and p.strip()
    ]


def _permissions(role: dict[str, Any]) -> tuple[str, ...] | None:
    """A Role's permissions (raw logs spell the field in snake_case), None if not logged."""
    value = role.get("included_permissions", role.get("includedPermissions"))
    return None if value is None else tuple(sorted(_strings(value)))


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventError(f"expected a list of strings, got {type(value).__name__}")
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise EventError(f"{field} is a {type(value).__name__}, expected base64 text")
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise EventError(f"{field} is not valid base64") from None


def _json_or_none(raw: bytes) -> Any:
    try:
        return _json_text_or_none(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _json_text_or_none(text: str) -> Any:
    # jsontext.loads: deep nesting is a JSONDecodeError there, never a RecursionError
    try:
        return jsontext.loads(text)
    except ValueError:
        return None
