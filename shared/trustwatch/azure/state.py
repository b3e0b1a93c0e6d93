"""Azure state for sweeps (trustwatch.sweep): one subscription read from Azure Resource
Manager as the Changes its Activity Log records would make, so `rules` judge it unchanged.

What `read(subscription)` reads, with the function's identity (the ARM reader of
trustwatch.azure.enrich: TRUSTWATCH_ARM_ENDPOINT, its CA bundle, azure-core retries):

- role assignments (azure-mgmt-authorization, api-version 2022-04-01). At each protected
  scope, the unfiltered list: every assignment at, above (resource group, subscription,
  management groups, `/`: where Owner one scope up hides) and below it. At each baseline
  or responder user-assigned identity, `atScope()`: at or above it, who can act as it.
  For each baseline principal, `principalId eq '…'` at the subscription: its assignments at,
  above or below it ("Role Assignments - List For Scope",
  https://learn.microsoft.com/en-us/rest/api/authorization/role-assignments/list-for-scope;
  "List Azure role assignments using the REST API",
  https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-list-rest).
  Each assignment is a `role_assignment.created` change; an expected assignment of the
  principal that the list lacks is a `role_assignment.deleted` one (expected_removed).
  PIM eligible assignments are read the same way (at or above each protected scope and
  identity, and per principal) and judged as eligibility requests are;
- watched custom role definitions (`custom_roles`, and custom roles the baseline
  identities hold): `role_definition.written` with the permissions ARM returns;
- access connectors (a baseline `resource_id` under Microsoft.Databricks): GET,
  `access_connector.written` with its identity, `access_connector.deleted` on 404;
- federated identity credentials of baseline and responder user-assigned identities:
  each one is a `federated_credential.written` change (the baseline allows none); the
  identity gone (404) is `managed_identity.deleted`;
- watched storage accounts (`storage_accounts`): one list of the subscription's accounts,
  each watched one a `storage_account.written` change with ARM's whole resource;
- Azure Lighthouse assignments of the subscription, their definitions expanded:
  `lighthouse.assigned` changes (roles delegated to another tenant over it).

A read that fails (403, a 404 of a listed parent, a timeout after the retries) is one line
in `StateRead.errors`, and the others go on. `unreadable` names the identities whose last
findings must stay open (a principal, a custom role, a connector or identity, an account);
an error no identity explains (a protected scope's list may hold anyone) leaves it empty,
so that the sweep resolves nothing rather than a finding it could not see.

`catch_up(subscription, since, until)` reads the Activity Log (azure-mgmt-monitor,
`activity_logs.list`), one call per resource provider the events module watches (the
filter takes one `resourceProvider`; operation names are not filterable: filtered here),
and yields one `{"value": [...]}` document of the REST-schema records, oldest first, so
that Start and Success records of one operation are matched up as in any batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from trustwatch.azure.changes import FederatedCredential, ResourceRef, RoleAssignment
from trustwatch.azure.enrich import (
    ACCESS_CONNECTOR_API_VERSION,
    RESOURCE_READS,
    STORAGE_API_VERSION,
    ArmReader,
    arm_reader,
    arm_settings_from_env,
)
from trustwatch.azure.events import OPERATIONS, read_back, watched_operations
from trustwatch.azure.roles import ROLE_NAMES, role_name
from trustwatch.azure.rules import role_key
from trustwatch.azure.scopes import ROOT, management_group, norm_scope, within
from trustwatch.changes import Change, EventError
from trustwatch.intake import short_exception as _short
from trustwatch.sweep import StateRead

if TYPE_CHECKING:
    from trustwatch.azure.baseline import AzureSubscription
    from trustwatch.baseline import Baseline

# "Federated Identity Credentials - List",
# https://learn.microsoft.com/en-us/rest/api/managedidentity/federated-identity-credentials/list
FEDERATED_CREDENTIAL_API_VERSION = "2023-01-31"
# the event_name of each read's changes
LIST_FOR_SCOPE = "sweep:RoleAssignments.ListForScope"
LIST_FOR_PRINCIPAL = "sweep:RoleAssignments.ListForSubscription"
# PIM eligible assignments ("Role Eligibility Schedule Instances - List For Scope",
# https://learn.microsoft.com/en-us/rest/api/authorization/role-eligibility-schedule-instances/list-for-scope:
# atScope() at or above the scope, principalId eq at, above or below it), judged with the
# `via` of the eligibility requests the event path reads
ELIGIBLE_LIST = "sweep:RoleEligibilityScheduleInstances.ListForScope"
PIM_ELIGIBILITY = "roleeligibilityschedulerequests"
DEFINITION_GET = "sweep:RoleDefinitions.Get"
CONNECTOR_GET = "sweep:AccessConnectors.Get"
CREDENTIALS_LIST = "sweep:FederatedIdentityCredentials.List"
STORAGE_LIST = "sweep:StorageAccounts.List"
# "Registration Assignments - List" (with $expandRegistrationDefinition),
# https://learn.microsoft.com/en-us/rest/api/managedservices/registration-assignments/list
LIGHTHOUSE_LIST = "sweep:RegistrationAssignments.List"
# resource providers as the Activity Log filter spells them
PROVIDERS = {
    "microsoft.authorization": "Microsoft.Authorization",
    "microsoft.managedservices": "Microsoft.ManagedServices",
    "microsoft.databricks": "Microsoft.Databricks",
    "microsoft.managedidentity": "Microsoft.ManagedIdentity",
    "microsoft.storage": "Microsoft.Storage",
}
# what events.py reads of a REST-schema record, among the documented $select names
# ("Activity Logs - List", https://learn.microsoft.com/en-us/rest/api/monitor/activity-logs/list);
# the caller is in `claims` (upn, object id)
SELECT = (
    "authorization,claims,correlationId,eventDataId,eventName,eventTimestamp,httpRequest,"
    "operationName,properties,resourceId,status,subStatus,subscriptionId"
)
# The reads above, as permissions: deploy/azure's sweep reader role grants exactly these
# (tests/test_deploy.py checks it) at each swept subscription.
READ_PERMISSIONS = (
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/roleDefinitions/read",
    "Microsoft.Authorization/roleEligibilityScheduleInstances/read",
    "Microsoft.Databricks/accessConnectors/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.ManagedServices/registrationAssignments/read",
    "Microsoft.Insights/eventtypes/values/read",  # the Activity Log (catch-up)
)
_ACCESS_CONNECTORS = "/providers/microsoft.databricks/accessconnectors/"
_USER_ASSIGNED = "/providers/microsoft.managedidentity/userassignedidentities/"


def units(baseline: Baseline, environ: Mapping[str, str]) -> list[str]:
    """The baseline's subscription ids, as the file spells them."""
    return list(baseline.azure.subscriptions)


def read(unit: str, baseline: Baseline, environ: Mapping[str, str]) -> StateRead:
    """The subscription's current state as changes the Azure rules judge."""
    subscription = _subscription(baseline, unit)
    reader = arm_reader(**arm_settings_from_env(environ))
    sweep = _Sweep(unit.lower(), reader)
    sweep.role_assignments(subscription, baseline)
    sweep.custom_roles(subscription)
    sweep.identities(subscription, baseline)
    sweep.storage_accounts(subscription)
    sweep.lighthouse()
    return StateRead(unit, sweep.changes, reader.calls, sweep.errors, sweep.unreadable())


def catch_up(
    unit: str, since: datetime, until: datetime, environ: Mapping[str, str]
) -> Iterator[Any]:
    """The subscription's Activity Log records of watched operations in [since, until)."""
    from azure.mgmt.monitor import MonitorManagementClient

    client = arm_reader(**arm_settings_from_env(environ)).client(MonitorManagementClient, unit)
    until = _utc(until)
    window = f"eventTimestamp ge '{_iso(since)}' and eventTimestamp le '{_iso(until)}'"
    records: list[tuple[datetime, dict[str, Any]]] = []
    for provider in watched_operations():
        name = PROVIDERS.get(provider, provider)
        query = f"{window} and resourceProvider eq '{name}'"
        for record in _raw_items(client.activity_logs.list, filter=query, select=SELECT):
            operation = record.get("operationName")
            op = operation.get("value") if isinstance(operation, dict) else operation
            at = _timestamp(record.get("eventTimestamp"))
            # `le` is inclusive: the window is half-open, the next one starts at `until`
            if isinstance(op, str) and op.lower() in OPERATIONS and at is not None and at < until:
                records.append((at, record))
    records.sort(key=lambda pair: pair[0])
    if records:
        yield {"value": [record for _, record in records]}


class _Sweep:
    """The reads of one subscription, collecting changes and what could not be read."""

    def __init__(self, unit: str, reader: ArmReader) -> None:
        self.unit = unit
        self.reader = reader
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self._unsure: list[str] = []  # the identities (as findings name them) not read
        self._unattributed = False  # an error no identity explains: resolve nothing
        self._assignments: set[str] = set()  # ids seen: one change per assignment

    def role_assignments(self, subscription: AzureSubscription, baseline: Baseline) -> None:
        from azure.mgmt.authorization import AuthorizationManagementClient

        client = self.reader.client(AuthorizationManagementClient, self.unit)
        eligible = client.role_eligibility_schedule_instances.list_for_scope
        for scope in subscription.protected_scopes:
            self._assignments_of(client.role_assignments.list_for_scope, scope)
            self._assignments_of(eligible, scope, "atScope()", ELIGIBLE_LIST)
        for scope in _user_assigned(subscription, baseline, self.unit):
            self._assignments_of(client.role_assignments.list_for_scope, scope, "atScope()")
            self._assignments_of(eligible, scope, "atScope()", ELIGIBLE_LIST)
        groups = {
            management_group(norm_scope(g)) or g.lower()
            for g in subscription.management_groups or ()
        }
        for identity in subscription.identities.values():
            principal = identity.principal_id.lower()
            held = self._assignments_of(
                client.role_assignments.list_for_subscription,
                None,
                f"principalId eq '{principal}'",
                LIST_FOR_PRINCIPAL,
                principal,
            )
            self._assignments_of(
                eligible,
                f"/subscriptions/{self.unit}",
                f"principalId eq '{principal}'",
                ELIGIBLE_LIST,
                principal,
            )
            if held is None:
                continue  # unread: an expected assignment is not known to be missing
            for expected in identity.role_assignments:
                role, scope = role_key(expected.role), norm_scope(expected.scope)
                if not _in_view(scope, self.unit, groups):
                    continue  # another subscription's scope: its own sweep reads it
                if (role, scope) not in held:
                    self.changes.append(_missing(self.unit, principal, role, expected.scope))

    def _assignments_of(
        self,
        list_call: Callable[..., Any],
        scope: str | None,
        filter: str | None = None,
        event_name: str = LIST_FOR_SCOPE,
        identity: str | None = None,
    ) -> set[tuple[str, str]] | None:
        """Every assignment a list returns as a change; (role, scope) of each, None if
        the list failed. `identity`: the principal a failure leaves unread (a scope's list
        may hold anyone's). A PIM eligibility (ELIGIBLE_LIST) is judged as the eligibility
        request the event path reads, so both give one finding id."""
        args = (scope,) if scope is not None else ()
        what = "eligible role assignments" if event_name == ELIGIBLE_LIST else "role assignments"
        where = f"{what} {f'at {scope}' if scope else 'of the subscription'}"
        held: set[tuple[str, str]] = set()
        try:
            for item in _raw_items(list_call, *args, filter=filter):
                try:
                    change = read_back(
                        "role_assignment.created", item, event_name=event_name, scope=self.unit
                    )
                except EventError as exc:
                    self._error(f"{where}{f' ({filter})' if filter else ''}: {exc}", identity)
                    continue
                assignment = change.payload_as(RoleAssignment)
                if event_name == ELIGIBLE_LIST:
                    assignment = replace(assignment, via=PIM_ELIGIBILITY)
                    change = replace(change, payload=assignment)
                else:  # eligible is not active: an expected assignment is still missing
                    held.add((assignment.role, norm_scope(assignment.scope)))
                key = norm_scope(assignment.assignment_id)
                if key not in self._assignments:
                    self._assignments.add(key)
                    self.changes.append(change)
        except (AzureError, ValueError) as exc:  # reported per read, the others go on
            self._error(f"{where}{f' ({filter})' if filter else ''}: {_short(exc)}", identity)
            return None
        return held

    def custom_roles(self, subscription: AzureSubscription) -> None:
        from azure.mgmt.authorization import AuthorizationManagementClient

        client = self.reader.client(AuthorizationManagementClient, self.unit)
        watched = dict.fromkeys(subscription.custom_roles)
        for identity in subscription.identities.values():
            for expected in identity.role_assignments:
                guid = role_key(expected.role)
                if guid not in ROLE_NAMES:  # not a built-in role trustwatch knows by name
                    watched.setdefault(guid)
        scope = f"/subscriptions/{self.unit}"
        for guid in watched:
            try:
                body = client.role_definitions.get(
                    scope,
                    guid,
                    cls=lambda response, _model, _headers: _body(response),
                )
            except ResourceNotFoundError:
                self._error(f"custom role {guid}: not found at {scope}", guid)
                continue
            except (AzureError, ValueError) as exc:
                self._error(f"custom role {guid}: {_short(exc)}", guid)
                continue
            props = body.get("properties") if isinstance(body, dict) else None
            if isinstance(props, dict) and str(props.get("type", "")).lower() == "builtinrole":
                continue  # a built-in role held by GUID: Microsoft's, not drift
            self._read_back(
                "role_definition.written", body, DEFINITION_GET, f"custom role {guid}", guid
            )

    def identities(self, subscription: AzureSubscription, baseline: Baseline) -> None:
        for identity in subscription.identities.values():
            resource = identity.resource_id or ""
            if _ACCESS_CONNECTORS in norm_scope(resource):
                self._access_connector(resource)
        for resource in _user_assigned(subscription, baseline, self.unit):
            self._federated_credentials(resource)

    def _access_connector(self, resource: str) -> None:
        try:
            body = self.reader.resource(resource, ACCESS_CONNECTOR_API_VERSION)
        except (AzureError, ValueError) as exc:
            self._error(f"access connector {resource}: {_short(exc)}", resource)
            return
        if body is None:
            self.changes.append(
                _gone("access_connector.deleted", resource, CONNECTOR_GET, self.unit)
            )
            return
        self._read_back(
            "access_connector.written",
            body,
            CONNECTOR_GET,
            f"access connector {resource}",
            resource,
        )

    def _federated_credentials(self, identity: str) -> None:
        where = f"federated credentials of {identity}"
        try:
            items = self.reader.pages(
                f"{identity}/federatedIdentityCredentials", FEDERATED_CREDENTIAL_API_VERSION
            )
            if items is None:  # the identity itself is gone
                self.changes.append(
                    _gone("managed_identity.deleted", identity, CREDENTIALS_LIST, self.unit)
                )
                return
            for item in items:
                self.changes.append(_credential(item, identity, self.unit))
        except (AzureError, ValueError) as exc:
            self._error(f"{where}: {_short(exc)}", identity)

    def _error(self, message: str, identity: str | None) -> None:
        self.errors.append(message)
        if identity is None:
            self._unattributed = True
        else:
            self._unsure.append(identity)

    def unreadable(self) -> list[str]:
        """The identities whose last findings stay open; none when an error explains
        itself by no identity (then the sweep resolves nothing: StateRead)."""
        return [] if self._unattributed else list(dict.fromkeys(self._unsure))

    def lighthouse(self) -> None:
        """The subscription's Azure Lighthouse assignments, each with its definition (who
        in which tenant gets which role): `lighthouse.assigned` changes."""
        _, api_version, params = RESOURCE_READS["/registrationassignments/"]
        path = f"/subscriptions/{self.unit}/providers/Microsoft.ManagedServices/registrationAssignments"
        try:
            for item in self.reader.pages(path, api_version, params) or ():
                # the tenant a finding names is in the body: unreadable, none is known
                self._read_back(
                    "lighthouse.assigned", item, LIGHTHOUSE_LIST, "Lighthouse assignment", None
                )
        except (AzureError, ValueError) as exc:
            self._error(f"Lighthouse assignments of {self.unit}: {_short(exc)}", None)

    def storage_accounts(self, subscription: AzureSubscription) -> None:
        if not subscription.storage_accounts:
            return
        found: set[str] = set()
        path = f"/subscriptions/{self.unit}/providers/Microsoft.Storage/storageAccounts"
        try:
            for item in self.reader.pages(path, STORAGE_API_VERSION) or ():
                name = str(item.get("name", "")).lower()
                spec = subscription.storage_accounts.get(name)
                in_group = norm_scope(str(item.get("id", ""))).split("/")[4:5]
                if spec is None or (
                    spec.resource_group is not None and in_group != [spec.resource_group.lower()]
                ):
                    continue
                found.add(name)
                self._read_back(
                    "storage_account.written",
                    item,
                    STORAGE_LIST,
                    f"storage account {name}",
                    str(item.get("id") or "") or None,
                )
        except (AzureError, ValueError) as exc:
            self._error(f"storage accounts of {self.unit}: {_short(exc)}", None)
            return
        for name in sorted(set(subscription.storage_accounts) - found):
            group = subscription.storage_accounts[name].resource_group
            # its findings name the account's id: known when the baseline names its group
            resource = (
                f"/subscriptions/{self.unit}/resourceGroups/{group}/providers/"
                f"Microsoft.Storage/storageAccounts/{name}"
                if group
                else None
            )
            self._error(f"storage account {name}: not found in subscription {self.unit}", resource)

    def _read_back(
        self, kind: str, body: Any, event_name: str, what: str, identity: str | None
    ) -> None:
        try:
            self.changes.append(read_back(kind, body, event_name=event_name, scope=self.unit))
        except EventError as exc:
            self._error(f"{what}: ARM's answer is not readable: {exc}", identity)


def _raw_items(
    list_call: Callable[..., Any], *args: Any, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """The items of an azure-mgmt list call as ARM sent them: the SDK pages (nextLink), a
    response hook keeps each page's JSON (the SDK's models drop what they do not declare,
    e.g. EventData's `authorization.evidence`, which names the caller's principal)."""
    pages: list[list[Any]] = []

    def keep(response: Any) -> None:
        body = _body(response)
        value = body.get("value") if isinstance(body, dict) else None
        pages.append(value if isinstance(value, list) else [])

    for _page in list_call(*args, raw_response_hook=keep, **kwargs).by_page():
        while pages:
            yield from (item for item in pages.pop(0) if isinstance(item, dict))


def _body(pipeline_response: Any) -> Any:
    return json.loads(pipeline_response.http_response.text())


def _subscription(baseline: Baseline, unit: str) -> AzureSubscription:
    for sub_id, subscription in baseline.azure.subscriptions.items():
        if sub_id.lower() == unit.lower():
            return subscription
    raise ValueError(f"subscription {unit!r} is not in the baseline")


def _user_assigned(subscription: AzureSubscription, baseline: Baseline, unit: str) -> list[str]:
    """Baseline and responder user-assigned identities in this subscription (resource ids)."""
    mine = [i.resource_id for i in subscription.identities.values() if i.resource_id]
    mine += list(baseline.actors.responder)
    prefix = f"/subscriptions/{unit}/"
    out = [r for r in mine if _USER_ASSIGNED in norm_scope(r) and norm_scope(r).startswith(prefix)]
    return list(dict.fromkeys(out))


def _in_view(scope: str, unit: str, groups: set[str]) -> bool:
    """Would the subscription's principal list show an assignment at `scope`?"""
    if within(scope, f"/subscriptions/{unit}") or scope == ROOT:
        return True
    group = management_group(scope)
    return group is not None and group in groups


def _missing(unit: str, principal: str, role: str, scope: str) -> Change:
    """An expected assignment not there: judged as its deletion (expected_removed)."""
    return Change(
        cloud="azure",
        kind="role_assignment.deleted",
        event_name=LIST_FOR_PRINCIPAL,
        scope=unit,
        identity=principal,
        name=role_name(role),
        payload=RoleAssignment(principal, role, scope, ""),
    )


def _gone(kind: str, resource: str, event_name: str, unit: str) -> Change:
    leaf = resource.rstrip("/").rsplit("/", 1)[-1]
    return Change(
        cloud="azure",
        kind=kind,
        event_name=event_name,
        scope=unit,
        identity=resource,
        name=leaf,
        payload=ResourceRef(resource),
    )


def _credential(item: dict[str, Any], identity: str, unit: str) -> Change:
    """A federated identity credential as ARM lists it."""
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    audiences = props.get("audiences")
    resource = str(item.get("id") or f"{identity}/federatedIdentityCredentials/{item.get('name')}")
    credential = FederatedCredential(
        resource_id=resource,
        identity_resource_id=identity,
        issuer=str(props.get("issuer") or ""),
        subject=str(props.get("subject") or ""),
        audiences=tuple(a for a in audiences if isinstance(a, str))
        if isinstance(audiences, list)
        else (),
    )
    leaf = resource.rstrip("/").rsplit("/", 1)[-1]
    return Change(
        cloud="azure",
        kind="federated_credential.written",
        event_name=CREDENTIALS_LIST,
        scope=unit,
        identity=resource,
        name=leaf,
        payload=credential,
    )


def _utc(moment: datetime) -> datetime:
    """Aware, in UTC (a naive datetime is taken to be UTC already)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _utc(moment)
