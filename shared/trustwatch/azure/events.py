"""Azure Activity Log records and Event Grid events -> Changes.

Shapes read, each unwrapped by `records` into one record per operation stage:
- Activity Log streamed to Event Hub / storage (resource-log schema): `{"records": [...]}` or
  one record (`operationName`, `resultType`, `identity.claims`, `properties.requestbody`).
- Activity Log REST schema (`az monitor activity-log list`, the portal): one event, a JSON
  array or `{"value": [...]}` (`eventDataId`, `caller`, `claims`, `status.value`).
- Event Grid events of the subscription system topic (`Microsoft.Resources.Resource*`), in
  Event Grid or CloudEvents schema, one event or an array. They carry no request or
  response body: a role assignment or connector write becomes a Change marked
  `needs_enrichment` (`data["not_evaluated"]` says why); the caller fetches the resource
  and `complete(change, resource)` gives the Change the Activity Log would have.

Operation names, scopes and resource ids are compared lower-case: exports spell them in
upper case. The Start and Success records of one operation give the same Change data (so
the same finding id); inside one batch the Start record yields to its Success or Failure
record, so a failed operation in the batch is not reported at all.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trustwatch import jsontext
from trustwatch.azure.roles import UnknownRole, normalize_guid, normalize_role, role_name
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str

# lower-case operation name -> change kind
OPERATIONS = {
    "microsoft.authorization/roleassignments/write": "role_assignment.created",
    "microsoft.authorization/roleassignments/delete": "role_assignment.deleted",
    "microsoft.databricks/accessconnectors/write": "access_connector.written",
    "microsoft.databricks/accessconnectors/delete": "access_connector.deleted",
    "microsoft.managedidentity/userassignedidentities/delete": "managed_identity.deleted",
}
# kind -> the stage whose body describes the after-state (a delete has no request body)
_BODY_STAGES = {
    "role_assignment.created": ("start", "success"),
    "role_assignment.deleted": ("success",),
    "access_connector.written": ("start", "success"),
}
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
_ASSIGNMENTS = "/providers/microsoft.authorization/roleassignments/"
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NOT_IN_EVENT = "body not in event"


@dataclass(frozen=True)
class Superseded:
    """A Start record whose operation's outcome is another record of the same batch."""

    record: Any
    reason: str


@dataclass(frozen=True)
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
    """Within one batch, evaluate each watched operation once: on its terminal record."""
    views: list[ActivityRecord | None] = []
    outcomes: dict[tuple[str, str, str], dict[str, bool]] = {}
    for record in batch:
        try:
            watched = isinstance(record, dict) and _operation(record).lower() in OPERATIONS
            view = view_of(record) if watched else None
        except EventError:
            view = None  # parse() reports it
        if view is not None and not view.correlation_id:
            view = None
        views.append(view)
        if view is not None:
            has_body = view.body() not in (None, "") or view.kind not in _BODY_STAGES
            seen = outcomes.setdefault(_operation_key(view), {})
            seen[view.stage] = seen.get(view.stage, False) or has_body
    for record, view in zip(batch, views, strict=True):
        if view is None:
            yield record
            continue
        seen = outcomes[_operation_key(view)]
        ref = f"correlationId {view.correlation_id}"
        if view.stage == "start" and "failure" in seen:
            yield Superseded(
                record, f"operation failed: its Failure record ({ref}) is in this batch"
            )
        elif view.stage == "start" and seen.get("success"):
            yield Superseded(record, f"evaluated on its Success record ({ref}) in this batch")
        elif view.stage == "success" and not seen["success"] and seen.get("start"):
            yield Superseded(record, f"no body; its Start record ({ref}) in this batch has it")
        else:
            yield record


def _operation_key(view: ActivityRecord) -> tuple[str, str, str]:
    return view.correlation_id.lower(), view.operation.lower(), view.resource_id.lower()


def parse(record: Any) -> list[Change] | Skipped:
    if isinstance(record, Superseded):
        view = view_of(record.record)
        return Skipped(record.reason, view.event_id, view.operation)
    if not isinstance(record, dict):
        raise EventError(f"an Activity Log record must be an object, got {type(record).__name__}")
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
        return [Change(**base, identity=view.resource_id, data={"resource_id": view.resource_id})]
    if kind not in _BODY_STAGES:  # a delete: the resource id is all there is to know
        leaf = view.resource_id.rstrip("/").rsplit("/", 1)[-1]
        data = {"resource_id": view.resource_id}
        return [Change(**base, identity=view.resource_id, name=leaf, data=data)]
    body = view.body()
    if body is None or body == "":
        reason = NOT_IN_EVENT if body is None else "body not readable JSON (truncated?)"
        data = {"resource_id": view.resource_id, "not_evaluated": reason}
        return [Change(**base, identity=view.resource_id, needs_enrichment=True, data=data)]
    return [_with_body(base, view.resource_id, body, from_response=view.stage == "success")]


def complete(change: Change, resource: Any) -> Change:
    """The Change of a `needs_enrichment` record, given the resource it names as Azure
    Resource Manager returns it (GET `change.identity`), fetched by the caller."""
    if not change.needs_enrichment or change.kind not in _BODY_STAGES:
        raise ValueError(f"{change.kind} change does not wait for a body")
    base = change.model_dump(exclude={"identity", "name", "data", "needs_enrichment"})
    return _with_body(base, change.data["resource_id"], resource, from_response=True)


def _with_body(base: dict[str, Any], resource_id: str, body: Any, *, from_response: bool) -> Change:
    if base["kind"].startswith("role_assignment."):
        return _role_assignment(base, resource_id, body)
    return _access_connector(base, resource_id, body, from_response)


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
    scope = _str(_ci(props, "scope")) or _scope_of(assignment_id)
    try:
        role = normalize_role(role_ref)
    except UnknownRole as exc:
        raise EventError(f"{op}: roleDefinitionId {exc}") from None
    data = {
        "assignment_id": assignment_id,
        "principal_id": normalize_guid(principal),
        "principal_type": _str(_ci(props, "principalType")),
        "role": role,
        "role_definition_id": role_ref,
        "scope": scope,
    }
    base = {**base, "scope": _subscription(scope) or base["scope"] or scope.lower()}
    return Change(**base, identity=data["principal_id"], name=role_name(role), data=data)


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
    data = {
        "connector_id": resource_id,
        "identity_type": kind,
        # the request names identities; only the response knows their principal ids
        "principal_ids": principals if from_response else None,
        "user_assigned_identities": assigned,
    }
    leaf = resource_id.rstrip("/").rsplit("/", 1)[-1]
    return Change(**base, identity=resource_id, name=leaf, data=data)


def _identity_type(value: str) -> str:
    canonical = {"systemassigned": "SystemAssigned", "userassigned": "UserAssigned", "none": "None"}
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return ",".join(sorted(canonical.get(p.lower(), p) for p in parts)) or "None"


def _scope_of(assignment_id: str) -> str:
    at = assignment_id.lower().find(_ASSIGNMENTS)
    return assignment_id[:at] if at >= 0 else ""


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
