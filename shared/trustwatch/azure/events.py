"""Azure Activity Log records and Event Grid events -> Changes.

Shapes read, each unwrapped by `records` into one record per operation stage:
- Activity Log streamed to Event Hub / storage (resource-log schema): `{"records": [...]}` or
  one record (`operationName`, `resultType`, `identity.claims`, `properties.requestbody`).
- Activity Log REST schema (`az monitor activity-log list`, the portal): one event, a JSON
  array or `{"value": [...]}` (`eventDataId`, `caller`, `claims`, `status.value`).
- Entra ID audit records (category `AuditLogs`, exported by the tenant's diagnostic setting
  to the same Event Hub, or Graph `directoryAudit` resources): read by trustwatch.azure.entra.
- Event Grid events of the subscription system topic (`Microsoft.Resources.Resource*`), in
  Event Grid or CloudEvents schema, one event or an array. They carry no request or
  response body: a role assignment or connector write becomes a Change marked
  `needs_enrichment` (`not_evaluated` says why); the caller fetches the resource and
  `complete(change, resource)` gives the Change the Activity Log would have.

Operation names, scopes and resource ids are compared lower-case: exports spell them in
upper case. The Start and Success records of one operation give the same Change payload (a
dataclass of trustwatch.azure.changes), so the same finding id. Inside one batch each
attempt is judged by its own outcome: a Start yields to a Success record of the same
operation (same correlation id and resource), or, when the operation has no Success in the
batch, to the Failure that follows it. The correlation id is chosen by the client, so a
Failure never hides a Success: a retried write (Start, Failure, Start, Success) and a
success followed by a failed call reusing its correlation id are both reported.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator
from typing import Any

from trustwatch import jsontext
from trustwatch.azure import entra
from trustwatch.azure.changes import (
    AccessConnectorIdentity,
    Authorization,
    FederatedCredential,
    LighthouseDelegation,
    PermissionBlock,
    ResourceRef,
    RoleAssignment,
    RoleDefinition,
    StorageAccountSettings,
)
from trustwatch.azure.roles import UnknownRole, normalize_guid, normalize_role, role_name
from trustwatch.azure.scopes import ROOT
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str
from trustwatch.frozen import frozen

# lower-case operation name -> change kind
OPERATIONS = {
    "microsoft.authorization/roleassignments/write": "role_assignment.created",
    # PIM: an eligible or an active (time-bound) assignment, judged as a direct one
    "microsoft.authorization/roleeligibilityschedulerequests/write": "role_assignment.created",
    "microsoft.authorization/roleassignmentschedulerequests/write": "role_assignment.created",
    "microsoft.authorization/roleassignments/delete": "role_assignment.deleted",
    # a Global Administrator makes itself User Access Administrator at `/`
    "microsoft.authorization/elevateaccess/action": "access.elevated",
    "microsoft.authorization/roledefinitions/write": "role_definition.written",
    # Azure Lighthouse: roles over a scope delegated to principals of another tenant
    "microsoft.managedservices/registrationdefinitions/write": "lighthouse.delegated",
    "microsoft.managedservices/registrationassignments/write": "lighthouse.assigned",
    "microsoft.databricks/accessconnectors/write": "access_connector.written",
    "microsoft.databricks/accessconnectors/delete": "access_connector.deleted",
    "microsoft.managedidentity/userassignedidentities/delete": "managed_identity.deleted",
    "microsoft.managedidentity/userassignedidentities/federatedidentitycredentials/write": (
        "federated_credential.written"
    ),
    "microsoft.storage/storageaccounts/write": "storage_account.written",
    # Each hands the caller the account's power: listKeys and regenerateKey answer with the
    # keys, listAccountSas and listServiceSas with a SAS token signed by them ("Storage
    # Accounts", https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts:
    # List Keys, Regenerate Key, List Account SAS, List Service SAS).
    # Actions reach trustwatch only through the Activity Log hub: the Event Grid
    # subscription carries Write and Delete events only (deploy/azure/main.tf).
    "microsoft.storage/storageaccounts/listkeys/action": "storage_account.keys_listed",
    "microsoft.storage/storageaccounts/regeneratekey/action": "storage_account.keys_listed",
    "microsoft.storage/storageaccounts/listaccountsas/action": "storage_account.keys_listed",
    "microsoft.storage/storageaccounts/listservicesas/action": "storage_account.keys_listed",
}


def watched_operations() -> dict[str, tuple[str, ...]]:
    """Resource provider -> the (lower-case) operation names parse() turns into changes;
    deploy/azure's Event Grid filter names exactly these (its string comparisons are
    case-insensitive: learn.microsoft.com/azure/event-grid/event-filtering)."""
    watched: dict[str, list[str]] = {}
    for operation in OPERATIONS:
        watched.setdefault(operation.split("/", 1)[0], []).append(operation)
    return {provider: tuple(ops) for provider, ops in watched.items()}


# kind -> the stage whose body describes the after-state (a delete has no request body);
# kinds not listed are judged on their Success record without a body
_BODY_STAGES = {
    "role_assignment.created": ("start", "success"),
    "role_assignment.deleted": ("success",),
    "access_connector.written": ("start", "success"),
    "role_definition.written": ("start", "success"),
    "lighthouse.delegated": ("start", "success"),
    "storage_account.written": ("start", "success"),
    # an assignment's request names only its definition: the response may say more
    "lighthouse.assigned": ("success",),
}
# PIM request types that take access away (Role Assignment Schedule Requests - Create,
# https://learn.microsoft.com/en-us/rest/api/authorization/role-assignment-schedule-requests/create)
_PIM_REMOVALS = frozenset({"adminremove", "selfdeactivate"})
_STAGES = {
    "start": "start", "started": "start",
    "accept": "accept", "accepted": "accept",
    "success": "success", "succeeded": "success",
    "failure": "failure", "failed": "failure",
    "cancel": "failure", "canceled": "failure", "cancelled": "failure",
}  # fmt: skip
_EVENT_GRID = re.compile(
    r"Microsoft\.Resources\.Resource(Write|Delete|Action)(Success|Failure|Cancel)"
)
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)
_AUTHORIZATION = "/providers/microsoft.authorization/"
_MANAGED_SERVICES = "/providers/microsoft.managedservices/"
_PIM = ("/roleeligibilityschedulerequests/", "/roleassignmentschedulerequests/")
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NOT_IN_EVENT = "body not in event"


@frozen
class Superseded:
    """A Start record whose operation's outcome is another record of the same batch."""

    record: Any
    reason: str


@frozen
class ActivityRecord:
    """A typed view of one record in any of the three shapes."""

    operation: str  # as logged
    stage: str  # start | accept | success | failure
    resource_id: str
    correlation_id: str
    event_id: str
    event_time: str
    subscription: str
    claims: dict[str, Any]
    evidence: dict[str, Any]
    caller: str
    source_ip: str
    result: str  # resultSignature / statusCode, for error_code
    request: Any  # the parsed body, None when absent, "" when not readable JSON
    response: Any

    @property
    def kind(self) -> str | None:
        return OPERATIONS.get(self.operation.lower())

    def body(self) -> Any:
        """The body describing the after-state at this stage, or None."""
        stages = _BODY_STAGES.get(self.kind or "", ())
        if self.stage == "start" and "start" in stages:
            return self.request
        if self.stage == "success" and "success" in stages:
            # a write's request states the after-state too, should the response be absent
            if self.response is None and "start" in stages:
                return self.request
            return self.response
        return None


def recognizes(doc: Any) -> bool:
    if isinstance(doc, list):
        return bool(doc) and all(_is_record(item) for item in doc)
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("records"), list):
        return True
    value = doc.get("value")
    if isinstance(value, list) and value and all(_is_record(item) for item in value):
        return True
    return _is_record(doc)


def _is_record(item: Any) -> bool:
    if not isinstance(item, dict) or "protoPayload" in item:
        return False
    if entra.is_audit_record(item):
        return True
    if _is_event_grid(item):
        return True
    op = item.get("operationName")
    if isinstance(op, dict):
        op = op.get("value")
    markers = ("resourceId", "eventDataId", "resultType", "category")
    return isinstance(op, str) and any(key in item for key in markers)


def records(doc: Any) -> Iterator[Any]:
    if isinstance(doc, list):
        batch = doc
    elif isinstance(doc.get("records"), list):
        batch = doc["records"]
    elif isinstance(doc.get("value"), list) and not _is_record(doc):
        batch = doc["value"]
    else:
        batch = [doc]
    yield from _collapse_stages(batch) if len(batch) > 1 else batch


def _collapse_stages(batch: list[Any]) -> Iterator[Any]:
    """Within one batch, evaluate each attempt of a watched operation once."""
    groups: dict[tuple[str, str, str], list[tuple[int, ActivityRecord]]] = {}
    for index, record in enumerate(batch):
        try:
            watched = isinstance(record, dict) and _operation(record).lower() in OPERATIONS
            view = view_of(record) if watched else None
        except EventError:
            view = None  # parse() reports it
        if view is not None and view.correlation_id:
            groups.setdefault(_operation_key(view), []).append((index, view))
    superseded: dict[int, str] = {}
    for attempts in groups.values():
        superseded.update(_superseded(attempts))
    for index, record in enumerate(batch):
        reason = superseded.get(index)
        yield record if reason is None else Superseded(record, reason)


def _superseded(attempts: list[tuple[int, ActivityRecord]]) -> dict[int, str]:
    """Records of one operation (in batch order) -> those judged on another record, and why."""
    ref = f"correlationId {attempts[0][1].correlation_id}"
    bodied = {i for i, view in attempts if _has_body(view)}
    starts = [i for i, view in attempts if view.stage == "start"]
    successes = [i for i, view in attempts if view.stage == "success"]
    out: dict[int, str] = {}
    if any(i in bodied for i in successes):
        out.update(dict.fromkeys(starts, f"evaluated on its Success record ({ref}) in this batch"))
        reason = f"no body; another Success record ({ref}) in this batch has it"
        out.update({i: reason for i in successes if i not in bodied})
        return out
    if successes:
        # Which Start succeeded is not provable: every Start with a body is judged.
        if any(i in bodied for i in starts):
            reason = f"no body; its Start record ({ref}) in this batch has it"
            out.update(dict.fromkeys(successes, reason))
        return out
    # No Success: a Failure ends the latest attempt started before it.
    pending: list[int] = []
    for i, view in attempts:
        if view.stage == "start":
            pending.append(i)
        elif view.stage == "failure" and pending:
            out[pending.pop()] = f"operation failed: its Failure record ({ref}) is in this batch"
    return out


def _has_body(view: ActivityRecord) -> bool:
    return view.body() not in (None, "") or view.kind not in _BODY_STAGES


def _operation_key(view: ActivityRecord) -> tuple[str, str, str]:
    return view.correlation_id.lower(), view.operation.lower(), view.resource_id.lower()


def parse(record: Any) -> list[Change] | Skipped:
    if isinstance(record, Superseded):
        view = view_of(record.record)
        return Skipped(record.reason, view.event_id, view.operation)
    if not isinstance(record, dict):
        raise EventError(f"an Activity Log record must be an object, got {type(record).__name__}")
    if entra.is_audit_record(record):
        return entra.parse(record)
    event_type = _str(record.get("eventType") or record.get("type"))
    if _is_event_grid(record) and not _EVENT_GRID.fullmatch(event_type):
        return Skipped(f"Event Grid {event_type}: not a resource operation", _str(record.get("id")))
    name = _operation(record)
    kind = OPERATIONS.get(name.lower())
    if kind is None:  # decided before reading the rest: other categories vary in shape
        grid_id = record.get("id") if _is_event_grid(record) else ""
        event_id = _str(record.get("eventDataId") or grid_id)
        return Skipped(f"{name}: not a watched operation", event_id, name)
    view = view_of(record)
    if view.stage == "accept":
        return Skipped(f"{name} accepted: judged on its Success record", view.event_id, name)
    if view.stage == "start" and "start" not in _BODY_STAGES.get(kind, ()):
        return Skipped(f"{name} started: judged on its Success record", view.event_id, name)
    base = _common(view, kind)
    if view.stage == "failure":
        return [Change(**base, identity=view.resource_id, payload=ResourceRef(view.resource_id))]
    if kind not in _BODY_STAGES:
        return [_without_body(base, view)]
    body = view.body()
    if body is None or body == "":
        reason = NOT_IN_EVENT if body is None else "body not readable JSON (truncated?)"
        pending = ResourceRef(view.resource_id)
        return [
            Change(
                **base,
                identity=view.resource_id,
                needs_enrichment=True,
                not_evaluated=reason,
                payload=pending,
            )
        ]
    # the Success record's body is the response, unless it had none and the request stands in
    from_response = view.stage == "success" and view.response is not None
    try:
        return [_with_body(base, view.resource_id, body, from_response=from_response)]
    except _Removal as exc:
        return Skipped(str(exc), view.event_id, name)


def complete(change: Change, resource: Any) -> Change:
    """The Change of a `needs_enrichment` record, given the resource it names as Azure
    Resource Manager returns it (GET `change.identity`), fetched by the caller."""
    if not change.needs_enrichment or change.kind not in _BODY_STAGES:
        raise ValueError(f"{change.kind} change does not wait for a body")
    without = ("identity", "name", "payload", "needs_enrichment", "not_evaluated")
    base = change.common(without=without)
    resource_id = change.payload_as(ResourceRef).resource_id
    try:
        return _with_body(base, resource_id, resource, from_response=True)
    except _Removal as exc:
        raise EventError(str(exc)) from None


def read_back(kind: str, resource: Any, *, event_name: str, scope: str) -> Change:
    """The Change a whole resource states, as ARM returns it to a sweep's read (GET or a
    list's item): what a write of it would be judged as. No actor, no event id; `scope`
    is the subscription swept. EventError if ARM's answer is not readable."""
    if kind not in _BODY_STAGES:
        raise ValueError(f"{kind} changes are not read back from a resource")
    resource_id = _str(_ci(resource, "id"))
    base = {"cloud": "azure", "kind": kind, "event_name": event_name, "scope": scope}
    try:
        return _with_body(base, resource_id, resource, from_response=True)
    except _Removal as exc:
        raise EventError(str(exc)) from None


class _Removal(Exception):
    """A write that only takes access away (a PIM removal request): nothing to judge."""


def _with_body(base: dict[str, Any], resource_id: str, body: Any, *, from_response: bool) -> Change:
    kind = base["kind"]
    if kind.startswith("role_assignment."):
        return _role_assignment(base, resource_id, body)
    if kind == "role_definition.written":
        return _role_definition(base, resource_id, body)
    if kind.startswith("lighthouse."):
        return _lighthouse(base, resource_id, body)
    if kind == "storage_account.written":
        return _storage_account(base, resource_id, body, from_response)
    return _access_connector(base, resource_id, body, from_response)


def _without_body(base: dict[str, Any], view: ActivityRecord) -> Change:
    """A Success record whose operation needs no body: the resource id and caller say it."""
    resource_id = view.resource_id
    leaf = resource_id.rstrip("/").rsplit("/", 1)[-1]
    if base["kind"] == "access.elevated":
        # elevateAccess assigns the caller User Access Administrator at `/` ("Elevate
        # access to manage all Azure subscriptions and management groups",
        # https://learn.microsoft.com/en-us/azure/role-based-access-control/elevate-access-global-admin)
        object_id = normalize_guid(_str(view.claims.get(OBJECT_ID) or view.claims.get("oid")))
        principal = object_id or base["actor"]
        if not principal:
            raise EventError(f"{view.operation}: record names no caller")
        role = normalize_role("User Access Administrator")
        elevated = RoleAssignment(principal, role, ROOT, resource_id)
        base = {**base, "scope": ROOT}
        return Change(**base, identity=principal, name=role_name(role), payload=elevated)
    if base["kind"] == "federated_credential.written":
        # the credential is a child of its identity: {identity}/federatedIdentityCredentials/N
        at = resource_id.lower().rfind("/federatedidentitycredentials/")
        # issuer and subject are shown when a body has them; the finding needs neither
        body = view.response if isinstance(view.response, dict) else view.request
        props = _ci(body, "properties")
        props = props if isinstance(props, dict) else {}
        audiences = _ci(props, "audiences")
        credential = FederatedCredential(
            resource_id=resource_id,
            identity_resource_id=resource_id[:at] if at >= 0 else "",
            issuer=_str(_ci(props, "issuer")),
            subject=_str(_ci(props, "subject")),
            audiences=tuple(a for a in audiences if isinstance(a, str))
            if isinstance(audiences, list)
            else (),
        )
        return Change(**base, identity=resource_id, name=leaf, payload=credential)
    # a delete: the resource id is all there is to know
    return Change(**base, identity=resource_id, name=leaf, payload=ResourceRef(resource_id))


def _common(view: ActivityRecord, kind: str) -> dict[str, Any]:
    actor, ids = actor_ids(view.claims, view.evidence, view.caller)
    return {
        "cloud": "azure",
        "kind": kind,
        "event_name": view.operation,
        "scope": view.subscription,
        "event_id": view.event_id,
        "event_time": view.event_time,
        "correlation_id": view.correlation_id,
        "actor": actor,
        "actor_ids": ids,
        "source_ip": view.source_ip,
        "error_code": (view.result or "Failure") if view.stage == "failure" else "",
    }


def actor_ids(
    claims: dict[str, Any], evidence: dict[str, Any], caller: str = ""
) -> tuple[str, list[str]]:
    """The actor's display name and every id it is known by (upn, object id, app id)."""
    upn = _str(claims.get(UPN) or claims.get("upn"))
    object_id = _str(claims.get(OBJECT_ID) or claims.get("oid"))
    ids = [upn, caller, object_id, _str(claims.get("appid") or claims.get("azp"))]
    if not object_id and _str(evidence.get("principalType")).lower() != "group":
        # the authorizing assignment's principal is the caller unless it is a group
        ids.append(_str(evidence.get("principalId")))
    ids = [x.strip() if "@" in x else normalize_guid(x) for x in ids if x.strip()]
    ids = list(dict.fromkeys(ids))
    return (ids[0] if ids else ""), ids


def _is_event_grid(item: dict[str, Any]) -> bool:
    """An Event Grid event, in Event Grid (`eventType`) or CloudEvents (`type`) schema."""
    return "data" in item and _str(item.get("eventType") or item.get("type")).startswith(
        "Microsoft."
    )


def view_of(record: dict[str, Any]) -> ActivityRecord:
    """Read one record of any shape into an ActivityRecord (EventError if malformed)."""
    if _is_event_grid(record):
        return _event_grid(record)
    if "eventDataId" in record or "eventTimestamp" in record:
        return _rest(record)
    return _activity(record)


def _activity(record: dict[str, Any]) -> ActivityRecord:
    identity = _dict(record, "identity")
    props = _properties(record)
    return ActivityRecord(
        operation=_operation(record),
        stage=_stage(record.get("resultType"), "resultType"),
        resource_id=_str(record.get("resourceId")),
        correlation_id=_str(record.get("correlationId")),
        event_id=_str(props.get("eventDataId") or record.get("eventDataId")),
        event_time=_str(record.get("time")),
        subscription=_subscription(_str(record.get("resourceId"))),
        claims=_dict(identity, "claims"),
        evidence=_dict(_dict(identity, "authorization"), "evidence"),
        caller=_str(record.get("caller")),
        source_ip=_str(record.get("callerIpAddress")),
        result=_str(record.get("resultSignature")) or _str(props.get("statusCode")),
        request=_body(props, "requestbody"),
        response=_body(props, "responsebody"),
    )


def _rest(record: dict[str, Any]) -> ActivityRecord:
    props = _properties(record)
    http = _dict(record, "httpRequest")
    status = record.get("status")
    resource_id = _str(record.get("resourceId"))
    sub_status = _value(record.get("subStatus"))
    return ActivityRecord(
        operation=_operation(record),
        stage=_stage(_value(status) if isinstance(status, dict) else status, "status.value"),
        resource_id=resource_id,
        correlation_id=_str(record.get("correlationId")),
        event_id=_str(record.get("eventDataId")),
        event_time=_str(record.get("eventTimestamp")),
        subscription=_subscription(resource_id) or _str(record.get("subscriptionId")).lower(),
        claims=_dict(record, "claims"),
        evidence=_dict(_dict(record, "authorization"), "evidence"),
        caller=_str(record.get("caller")),
        source_ip=_str(http.get("clientIpAddress")),
        result=sub_status or _str(props.get("statusCode")),
        request=_body(props, "requestbody"),
        response=_body(props, "responsebody"),
    )


def _event_grid(record: dict[str, Any]) -> ActivityRecord:
    event_type = _str(record.get("eventType") or record.get("type"))
    data = _dict(record, "data")
    m = _EVENT_GRID.fullmatch(event_type)
    stage = (
        {"Success": "success", "Failure": "failure", "Cancel": "failure"}[m[2]] if m else "success"
    )
    resource_id = _str(data.get("resourceUri")) or _str(record.get("subject"))
    topic = _str(record.get("topic") or record.get("source"))
    return ActivityRecord(
        operation=_operation(record),
        stage=stage,
        resource_id=resource_id,
        correlation_id=_str(data.get("correlationId")),
        event_id=_str(record.get("id")),
        event_time=_str(record.get("eventTime") or record.get("time")),
        subscription=_subscription(resource_id)
        or _str(data.get("subscriptionId")).lower()
        or _subscription(topic),
        claims=_dict(data, "claims"),
        evidence=_dict(_dict(data, "authorization"), "evidence"),
        caller="",
        source_ip=_str(_dict(data, "httpRequest").get("clientIpAddress")),
        result=_str(data.get("status")),
        request=None,
        response=None,
    )


def _role_assignment(base: dict[str, Any], resource_id: str, body: Any) -> Change:
    op = base["event_name"]
    props = _ci(body, "properties")
    if not isinstance(props, dict):
        raise EventError(f"{op}: role assignment body without 'properties'")
    principal = _str(_ci(props, "principalId"))
    role_ref = _str(_ci(props, "roleDefinitionId"))
    if not principal or not role_ref:
        raise EventError(f"{op}: role assignment body without principalId/roleDefinitionId")
    assignment_id = resource_id or _str(_ci(body, "id"))
    via = next((p.strip("/") for p in _PIM if p in assignment_id.lower()), "")
    request_type = _str(_ci(props, "requestType"))
    if via and request_type.lower() in _PIM_REMOVALS:
        raise _Removal(f"{op}: {request_type} request takes access away")
    scope = _str(_ci(props, "scope")) or _scope_of(assignment_id, _AUTHORIZATION)
    try:
        role = normalize_role(role_ref)
    except UnknownRole as exc:
        raise EventError(f"{op}: roleDefinitionId {exc}") from None
    # via: PIM, whose eligible or time-bound access is access too, judged as an assignment
    assignment = RoleAssignment(normalize_guid(principal), role, scope, assignment_id, via)
    base = {**base, "scope": _subscription(scope) or base["scope"] or scope.lower()}
    return Change(
        **base, identity=assignment.principal_id, name=role_name(role), payload=assignment
    )


def _role_definition(base: dict[str, Any], resource_id: str, body: Any) -> Change:
    """roleDefinitions/write: the permissions the custom role holds after the write."""
    op = base["event_name"]
    props = _ci(body, "properties")
    if not isinstance(props, dict):
        raise EventError(f"{op}: role definition body without 'properties'")
    permissions = _ci(props, "permissions")
    if not isinstance(permissions, list):
        raise EventError(f"{op}: role definition body without a 'permissions' list")
    blocks = []
    for block in permissions:
        if not isinstance(block, dict):
            raise EventError(f"{op}: a permissions entry is not an object")
        blocks.append(
            PermissionBlock(
                actions=_strings(op, block, "actions"),
                not_actions=_strings(op, block, "notActions"),
                data_actions=_strings(op, block, "dataActions"),
                not_data_actions=_strings(op, block, "notDataActions"),
            )
        )
    definition_id = resource_id or _str(_ci(body, "id"))
    guid = normalize_guid(definition_id.rstrip("/").rsplit("/", 1)[-1] or _str(_ci(body, "name")))
    _strings(op, props, "assignableScopes")  # a malformed body is reported, as before
    definition = RoleDefinition(guid, tuple(blocks))
    name = _str(_ci(props, "roleName")) or guid
    return Change(**base, identity=guid, name=name, payload=definition)


def _strings(op: str, obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = _ci(obj, key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EventError(f"{op}: {key} is not a list of strings")
    return tuple(value)


def _lighthouse(base: dict[str, Any], resource_id: str, body: Any) -> Change:
    """A registration definition (who in the managing tenant gets which role) or assignment
    (the scope it is delegated over) of Azure Lighthouse ("Onboard a customer to Azure
    Lighthouse", https://learn.microsoft.com/en-us/azure/lighthouse/how-to/onboard-customer).
    An assignment's request names only its definition: `authorizations` is None (unknown)
    unless the body carries the definition."""
    op = base["event_name"]
    props = _ci(body, "properties")
    if not isinstance(props, dict):
        raise EventError(f"{op}: Lighthouse body without 'properties'")
    resource_id = resource_id or _str(_ci(body, "id"))
    definition = props
    definition_id = resource_id
    if "/registrationassignments/" in resource_id.lower():
        definition_id = _str(_ci(props, "registrationDefinitionId"))
        expanded = _ci(_ci(props, "registrationDefinition"), "properties")
        definition = expanded if isinstance(expanded, dict) else {}
    authorizations: list[Authorization] | None = None
    lists = [_ci(definition, "authorizations"), _ci(definition, "eligibleAuthorizations")]
    if any(isinstance(a, list) for a in lists):
        authorizations = []
        for entry in (e for a in lists if isinstance(a, list) for e in a):
            principal = _str(_ci(entry, "principalId"))
            role_ref = _str(_ci(entry, "roleDefinitionId"))
            if not principal or not role_ref:
                raise EventError(f"{op}: authorization without principalId/roleDefinitionId")
            try:
                role = normalize_role(role_ref)
            except UnknownRole as exc:
                raise EventError(f"{op}: roleDefinitionId {exc}") from None
            authorizations.append(Authorization(normalize_guid(principal), role))
    scope = _scope_of(resource_id, _MANAGED_SERVICES)
    delegation = LighthouseDelegation(
        resource_id=resource_id,
        scope=scope,
        definition_id=definition_id,
        managed_by_tenant=normalize_guid(_str(_ci(definition, "managedByTenantId"))),
        authorizations=tuple(authorizations) if authorizations is not None else None,
    )
    leaf = resource_id.rstrip("/").rsplit("/", 1)[-1]
    base = {**base, "scope": _subscription(scope) or base["scope"]}
    return Change(**base, identity=resource_id, name=leaf, payload=delegation)


def _access_connector(
    base: dict[str, Any], resource_id: str, body: Any, from_response: bool
) -> Change:
    op = base["event_name"]
    if not isinstance(body, dict):
        raise EventError(f"{op}: body is a {type(body).__name__}, expected an object")
    identity = _ci(body, "identity")
    if identity is None:
        # a response without identity means none; a request without it may be a PATCH
        kind, principals, assigned = ("None" if from_response else None), [], []
    elif not isinstance(identity, dict):
        raise EventError(f"{op}: identity is not an object")
    else:
        kind = _identity_type(_str(_ci(identity, "type")))
        principals = [normalize_guid(_str(_ci(identity, "principalId")))]
        users = _ci(identity, "userAssignedIdentities") or {}
        if not isinstance(users, dict):
            raise EventError(f"{op}: userAssignedIdentities is not an object")
        assigned = sorted(users)
        for detail in users.values():
            if isinstance(detail, dict):
                principals.append(normalize_guid(_str(_ci(detail, "principalId"))))
        principals = sorted({p for p in principals if p})
    connector = AccessConnectorIdentity(
        identity_type=kind,
        # the request names identities; only the response knows their principal ids
        principal_ids=tuple(principals) if from_response else None,
        user_assigned_identities=tuple(assigned),
    )
    leaf = resource_id.rstrip("/").rsplit("/", 1)[-1]
    return Change(**base, identity=resource_id, name=leaf, payload=connector)


def _storage_account(
    base: dict[str, Any], resource_id: str, body: Any, from_response: bool
) -> Change:
    """storageAccounts/write: the exposure settings the body states. A request states only
    what it changes; a whole resource (response, ARM GET) states all, with ARM's defaults
    for what it leaves out: `allowBlobPublicAccess` null permits anonymous access on
    accounts that never set it ("Remediate anonymous read access to blob data",
    https://learn.microsoft.com/en-us/azure/storage/blobs/anonymous-read-access-prevent-classic),
    `allowSharedKeyAccess` null "is equivalent to true" and `networkAcls.defaultAction`
    defaults to Allow ("Storage Accounts - Create",
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/create)."""
    op = base["event_name"]
    if not isinstance(body, dict):
        raise EventError(f"{op}: body is a {type(body).__name__}, expected an object")
    props = _ci(body, "properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise EventError(f"{op}: properties is not an object")
    acls = _ci(props, "networkAcls")
    if acls is not None and not isinstance(acls, dict):
        raise EventError(f"{op}: networkAcls is not an object")
    action = _ci(acls, "defaultAction") if acls is not None else None
    if action is not None and not isinstance(action, str):
        raise EventError(f"{op}: networkAcls.defaultAction is not a string")
    public = _ci(props, "publicNetworkAccess")
    settings = StorageAccountSettings(
        resource_id=resource_id or _str(_ci(body, "id")),
        allow_blob_public_access=_flag(op, props, "allowBlobPublicAccess", from_response),
        allow_shared_key_access=_flag(op, props, "allowSharedKeyAccess", from_response),
        network_default_action=action.capitalize()
        if isinstance(action, str)
        else ("Allow" if from_response else None),
        public_network_access=public if isinstance(public, str) else None,
    )
    leaf = settings.resource_id.rstrip("/").rsplit("/", 1)[-1]
    return Change(**base, identity=settings.resource_id, name=leaf, payload=settings)


def _flag(op: str, props: dict[str, Any], key: str, whole: bool) -> bool | None:
    """A boolean setting; absent or null: None for a request (unchanged), True for a whole
    resource (both settings' null permits)."""
    value = _ci(props, key)
    if value is None:
        return True if whole else None
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise EventError(f"{op}: {key} is not a boolean")
    return value


def _identity_type(value: str) -> str:
    canonical = {"systemassigned": "SystemAssigned", "userassigned": "UserAssigned", "none": "None"}
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return ",".join(sorted(canonical.get(p.lower(), p) for p in parts)) or "None"


def _scope_of(resource_id: str, provider: str) -> str:
    """The scope an extension resource (`{scope}/providers/{provider}/…`) is created at."""
    at = resource_id.lower().rfind(provider)
    if at < 0:
        return ""
    return resource_id[:at] or ROOT


def _subscription(resource_id: str) -> str:
    m = _SUBSCRIPTION.search(resource_id)
    return m[1].lower() if m else ""


def _operation(record: dict[str, Any]) -> str:
    if _is_event_grid(record):
        op = _dict(record, "data").get("operationName")
        if not isinstance(op, str) or not op:
            raise EventError("Event Grid event without data.operationName")
        return op
    op = record.get("operationName")
    op = _value(op) if isinstance(op, dict) else op
    if not isinstance(op, str) or not op:
        raise EventError("Activity Log record without an operationName")
    return op


def _stage(value: Any, field: str) -> str:
    stage = _STAGES.get(_str(value).lower())
    if stage is None:
        raise EventError(
            f"{field} {reprlib.repr(value)}: expected Start, Accept, Success or Failure"
        )
    return stage


def _properties(record: dict[str, Any]) -> dict[str, Any]:
    props = _dict(record, "properties")
    nested = props.get("eventProperties")
    return {**props, **nested} if isinstance(nested, dict) else props


def _body(props: dict[str, Any], key: str) -> Any:
    """A request/response body logged as JSON text: parsed, None if absent, "" if unreadable."""
    value = _ci(props, key)
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        return value
    if not isinstance(value, str):
        return ""
    try:
        return jsontext.loads(value)  # deep nesting: a ValueError there, not RecursionError
    except ValueError:
        return ""


def _ci(obj: Any, key: str) -> Any:
    """obj[key] matched case-insensitively (logged bodies mix `Properties` and `properties`)."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    lower = key.lower()
    return next((v for k, v in obj.items() if isinstance(k, str) and k.lower() == lower), None)


def _value(obj: Any) -> str:
    return _str(obj.get("value")) if isinstance(obj, dict) else _str(obj)
