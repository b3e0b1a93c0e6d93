"""Entra ID audit log records -> Changes: credentials and owners added to applications and
service principals.

The Activity Log never shows these: they are directory operations, logged in the tenant's
audit log. Two shapes are read:
- the record the tenant's diagnostic setting exports (category `AuditLogs`) to the Event Hub
  the Activity Log uses, alone or in `{"records": [...]}` ("Microsoft Entra audit log
  schema in Azure Monitor", https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-azure-monitor-audit-log-schema):
  `operationName`, `category: "AuditLogs"`, `tenantId`, `resultType`, and `properties`
  holding the `directoryAudit` below;
- the Microsoft Graph `directoryAudit` resource itself (`GET /auditLogs/directoryAudits`,
  one or `{"value": [...]}`; https://learn.microsoft.com/en-us/graph/api/resources/directoryaudit):
  `activityDisplayName`, `result`, `initiatedBy.user` / `initiatedBy.app`,
  `targetResources[].id/type/displayName/modifiedProperties[]` (`displayName`, `oldValue`,
  `newValue`, each a JSON text).

Activities read ("Microsoft Entra audit log activities", category ApplicationManagement,
https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-audit-activities):
- "Add service principal credentials": always an addition.
- "Update application - Certificates and secrets management" (exports spell the dash as an
  en dash, U+2013, or a hyphen): an addition when `KeyDescription` gains a key id; a removal only
  is skipped.
- "Update application" / "Update service principal": a credential change when the
  `KeyDescription` or `FederatedIdentityCredentials` property gains an entry (federated
  identity credentials on applications are logged this way); any other update is skipped.
- any activity adding or updating a "federated identity credential".
- "Add owner to application" / "Add owner to service principal": the new owner is
  `targetResources[0]`; the application or service principal is named by its
  `Application.ObjectID` / `ServicePrincipal.ObjectID` property (with `….AppId`), or is
  the next target.
A record whose result is not `success` changed nothing: skipped. (Community detections read
the same fields: `KeyDescription` / `FederatedIdentityCredentials` old and new values on
the Application or ServicePrincipal target, e.g. the Sentinel hunting query "Modify
Credentials Entra Connect App Identity", https://kqlsearch.com/query/ModifyCredentialsEntraConnectAppIdentity.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from trustwatch import jsontext
from trustwatch.azure.changes import EntraDirectoryChange, EntraTarget
from trustwatch.azure.roles import normalize_guid
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str

CREDENTIAL_ADDED = "entra.credential_added"
OWNER_ADDED = "entra.owner_added"
KINDS = (CREDENTIAL_ADDED, OWNER_ADDED)

_ADD_SP_CREDENTIALS = "add service principal credentials"
_SECRETS_MANAGEMENT = "update application - certificates and secrets management"
_UPDATES = frozenset({"update application", "update service principal"})
_OWNERS = {
    "add owner to application": "Application",
    "add owner to service principal": "ServicePrincipal",
}
_CREDENTIAL_PROPERTIES = ("keydescription", "federatedidentitycredentials")
_KEY_ID = re.compile(r"KeyIdentifier\s*=\s*([0-9A-Za-z-]+)")
_CHANGED = ("Application", "ServicePrincipal")


def is_audit_record(item: Any) -> bool:
    """An Entra ID audit record, in the Azure Monitor export or as Graph returns it."""
    if not isinstance(item, dict):
        return False
    if _str(item.get("category")).lower() == "auditlogs":
        return True
    return isinstance(item.get("activityDisplayName"), str) and "targetResources" in item


def activity_key(name: str) -> str:
    """An activity name compared: lower case, any dash a hyphen, single spaces."""
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", name.lower())
    return " ".join(text.split())


def parse(record: dict[str, Any]) -> list[Change] | Skipped:
    exported = _str(record.get("category")).lower() == "auditlogs"
    audit = _dict(record, "properties") if exported else record
    activity = _str(audit.get("activityDisplayName")) or _str(record.get("operationName"))
    event_id = _str(audit.get("id"))
    if not activity:
        raise EventError("Entra ID audit record without an activityDisplayName/operationName")
    key = activity_key(activity)
    result = _str(audit.get("result") or record.get("resultType")).lower()
    targets = audit.get("targetResources")
    if targets is None:
        targets = []
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise EventError(f"{activity}: targetResources is not a list of objects")
    kind, changed, added = _classify(activity, key, targets, audit)
    if kind is None:
        return Skipped(f"{activity}: not a watched Entra ID activity", event_id, activity)
    if result != "success":
        return Skipped(
            f"{activity}: result {result or 'unknown'}, nothing changed", event_id, activity
        )
    if not changed:
        return Skipped(f"{activity}: names no application or service principal", event_id, activity)
    actor, ids = _initiator(_dict(audit, "initiatedBy"))
    payload = EntraDirectoryChange(activity, tuple(changed), tuple(added))
    first = changed[0]
    return [
        Change(
            cloud="azure",
            kind=kind,
            event_name=activity,
            scope=normalize_guid(_str(record.get("tenantId") or audit.get("aadTenantId"))),
            identity=first.object_id or first.app_id,
            name=first.display_name,
            event_id=event_id,
            event_time=_str(audit.get("activityDateTime") or record.get("time")),
            correlation_id=_str(audit.get("correlationId") or record.get("correlationId")),
            actor=actor,
            actor_ids=ids,
            source_ip=_str(record.get("callerIpAddress")),
            payload=payload,
        )
    ]


def _classify(
    activity: str, key: str, targets: list[dict[str, Any]], audit: dict[str, Any]
) -> tuple[str | None, list[EntraTarget], list[str]]:
    if key in _OWNERS:
        changed, owners = _owner_targets(targets, _OWNERS[key])
        return OWNER_ADDED, changed, owners
    federated = "federated identity credential" in key and key.split(" ", 1)[0] in (
        "add", "create", "update",
    )  # fmt: skip
    known = key in (_ADD_SP_CREDENTIALS, _SECRETS_MANAGEMENT) or key in _UPDATES
    if not known and not federated:
        return None, [], []
    changed = [_target(t, audit) for t in targets if _str(t.get("type")) in _CHANGED]
    added, seen = _credentials_added(targets)
    if key == _ADD_SP_CREDENTIALS or federated:
        return CREDENTIAL_ADDED, changed, added or ["credential"]
    if key == _SECRETS_MANAGEMENT and not seen:
        # the activity says credentials changed, the record not how: it may be an addition
        return CREDENTIAL_ADDED, changed, ["credential"]
    if not added:
        return None, [], []  # a removal, or an update of something else
    return CREDENTIAL_ADDED, changed, added


def _credentials_added(targets: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """(entries a credential property gained, whether any credential property was logged)."""
    added: list[str] = []
    seen = False
    for target in targets:
        for prop in _modified(target):
            if _str(prop.get("displayName")).lower() not in _CREDENTIAL_PROPERTIES:
                continue
            seen = True
            old, new = _entries(prop.get("oldValue")), _entries(prop.get("newValue"))
            added += [entry for entry in new if entry not in old]
    return list(dict.fromkeys(added)), seen


def _entries(value: Any) -> list[str]:
    """A logged credential list as comparable entries: key ids where named, else each
    entry's JSON text."""
    text = _str(value)
    try:
        # deep nesting: a ValueError there, not a RecursionError
        parsed = jsontext.loads(text) if text.strip() else []
    except ValueError:
        parsed = [text]
    items = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for item in items:
        try:
            raw = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
        except (RecursionError, ValueError):  # nested about as deep as json reads
            raw = text
        ids = _KEY_ID.findall(raw)
        out += [i.lower() for i in ids] if ids else [raw]
    return out


def _owner_targets(
    targets: list[dict[str, Any]], type_: str
) -> tuple[list[EntraTarget], list[str]]:
    named: list[EntraTarget] = []
    for target in targets:
        props = {
            _str(p.get("displayName")).lower(): _json_text(p.get("newValue"))
            for p in _modified(target)
        }
        object_id = props.get(f"{type_.lower()}.objectid", "")
        app_id = props.get(f"{type_.lower()}.appid", "")
        if object_id or app_id:
            name = props.get(f"{type_.lower()}.displayname", "")
            named.append(
                EntraTarget(normalize_guid(object_id), type_, name, normalize_guid(app_id))
            )
    typed = [(i, t) for i, t in enumerate(targets) if _str(t.get("type")) == type_]
    if not named:
        # The new owner is the first target, the object it now owns the next. An owner is a
        # user or a service principal, never an application: every Application target is
        # the object; a first ServicePrincipal target, with others after it, is the owner.
        named = [
            _target(t, {}) for i, t in typed if type_ == "Application" or i > 0 or len(targets) == 1
        ]
    changed_ids = {t.object_id for t in named}
    owners = [
        _str(t.get("userPrincipalName")) or normalize_guid(_str(t.get("id")))
        for t in targets
        if normalize_guid(_str(t.get("id"))) not in changed_ids
    ]
    return named, [o for o in owners if o]


def _target(target: dict[str, Any], audit: dict[str, Any]) -> EntraTarget:
    props = {
        _str(p.get("displayName")).lower(): _json_text(p.get("newValue")) for p in _modified(target)
    }
    app_id = props.get("appid") or props.get("appprincipalid") or ""
    if not app_id:
        details = audit.get("additionalDetails")
        for detail in details if isinstance(details, list) else []:
            if isinstance(detail, dict) and _str(detail.get("key")).lower() == "appid":
                app_id = _str(detail.get("value"))
    return EntraTarget(
        object_id=normalize_guid(_str(target.get("id"))),
        type=_str(target.get("type")),
        display_name=_str(target.get("displayName")),
        app_id=normalize_guid(app_id),
    )


def _modified(target: dict[str, Any]) -> list[dict[str, Any]]:
    props = target.get("modifiedProperties")
    return [p for p in props if isinstance(p, dict)] if isinstance(props, list) else []


def _json_text(value: Any) -> str:
    """A modifiedProperties value (`"\\"guid\\""`, `"[\\"guid\\"]"`) as its one string."""
    text = _str(value)
    try:
        parsed = jsontext.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(parsed, list):
        parsed = parsed[0] if len(parsed) == 1 else ""
    return parsed.strip() if isinstance(parsed, str) else ""


def _initiator(initiated: dict[str, Any]) -> tuple[str, list[str]]:
    """The initiator's display name and ids: a user (upn, object id) or an app (service
    principal id, app id, display name)."""
    user = _dict(initiated, "user")
    app = _dict(initiated, "app")
    ids = [
        _str(user.get("userPrincipalName")),
        _str(user.get("id")),
        _str(app.get("servicePrincipalId")),
        _str(app.get("appId")),
    ]
    ids = [x.strip() if "@" in x else normalize_guid(x) for x in ids if x.strip()]
    ids = list(dict.fromkeys(ids))
    actor = ids[0] if ids else _str(app.get("displayName"))
    return actor, ids
