"""Put Azure findings back: delete the role assignments and federated credentials the
baseline does not allow.

`remediator_from_env()` is the Azure `remediate` part (trustwatch.remediation). It plans
`delete_role_assignment` for `azure.role_assignment.unexpected` (a baseline identity holds
an assignment the baseline does not list) and `azure.role_assignment.protected_scope` (a
role reaching a protected scope or identity, for a principal the baseline does not list):

- re-read: GET the assignment by its id (the finding's `actual.assignment_id`) with
  azure-mgmt-authorization; 404 means someone removed it already (a stale or replayed
  event): skipped, nothing is sent;
- re-judge: the assignment ARM returns must be the finding's (same principal, role
  definition and scope) and the finding's rule must still flag it against the baseline as
  it is now; an assignment the baseline lists (or now lists) is never deleted, nor any
  assignment other than the one the finding names;
- apply: DELETE by id ("Remove Azure role assignments", REST: 200 with the deleted
  assignment, 204 when there was none,
  https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-remove);
- verify: GET again, which must answer 404.

The client is built the way the enricher builds it (trustwatch.azure.enrich: the
function's managed identity through DefaultAzureCredential, TRUSTWATCH_ARM_ENDPOINT and
TRUSTWATCH_ARM_CA_BUNDLE, azure-core's retry policy, which retries 429 after its
Retry-After); a refusal (403 AuthorizationFailed) raises, and the core reports `failed`.

`delete_federated_credential` (`azure.identity.federated_credential_added`: the baseline
allows a watched user-assigned identity no federated credential) is planned the same way
with plain ARM calls on the credential's id: GET (404: skipped), the rule re-run on it,
DELETE, GET answering 404 ("Federated Identity Credentials - Delete",
https://learn.microsoft.com/en-us/rest/api/managedidentity/federated-identity-credentials/delete).

Everything else is alert only (`none`): PIM schedule requests and `elevateAccess` (no
role assignment id to delete), Lighthouse delegations, custom role definitions, storage
account settings, Entra credentials and owners, and putting back a deleted expected
assignment (that widens access again: a decision for people).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from trustwatch.azure import rules
from trustwatch.azure.changes import FederatedCredential, ResourceRef, RoleAssignment
from trustwatch.azure.enrich import ArmReader, arm_reader, arm_settings_from_env
from trustwatch.azure.events import complete
from trustwatch.azure.roles import normalize_guid, role_name
from trustwatch.azure.scopes import norm_scope
from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.engine import Hit
from trustwatch.findings import Finding
from trustwatch.remediation import NothingToDo, Plan

DELETE_ROLE_ASSIGNMENT = "delete_role_assignment"
DELETE_FEDERATED_CREDENTIAL = "delete_federated_credential"
# A Microsoft.ManagedIdentity API version with federated identity credentials (GA).
FEDERATED_CREDENTIAL_API_VERSION = "2023-01-31"
# What the plans call, as Azure RBAC names the permissions (Microsoft.Authorization:
# https://learn.microsoft.com/en-us/azure/role-based-access-control/permissions/management-and-governance;
# Microsoft.ManagedIdentity:
# https://learn.microsoft.com/en-us/azure/role-based-access-control/permissions/identity):
# deploy/azure grants WRITE_ACTIONS only when remediation is enabled; READ_ACTIONS come
# with the Reader role the enricher has already.
READ_ACTIONS = (
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
)
WRITE_ACTIONS = (
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
)

ALREADY_DELETED = "role assignment already deleted (404): nothing to put back"
CREDENTIAL_DELETED = "federated credential already deleted (404): nothing to put back"
NOT_AUTOMATED = "not automated: alert only"

_RuleFn = Callable[[Change, Baseline], Iterable[Hit]]
# rule -> the rule itself, to re-judge the assignment as ARM returns it now
_RULES: dict[str, _RuleFn] = {
    "azure.role_assignment.unexpected": rules.role_assignment_unexpected,
    "azure.role_assignment.protected_scope": rules.role_assignment_protected_scope,
}
_FEDERATED_RULE = "azure.identity.federated_credential_added"
_ASSIGNMENTS = "/providers/microsoft.authorization/roleassignments/"
_CREDENTIALS = "/federatedidentitycredentials/"
_USER_ASSIGNED = "/providers/microsoft.managedidentity/userassignedidentities/"
_WRITE = "Microsoft.Authorization/roleAssignments/write"
_CREDENTIAL_WRITE = (
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
)


class AzureRemediator:
    """Plans and makes the Azure put-backs through one ARM reader (lazy clients)."""

    def __init__(self, reader: ArmReader) -> None:
        self._reader = reader

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        """Re-read what the finding names and plan its deletion, if it is still drift."""
        action = finding.remediation.action
        actual = finding.actual if isinstance(finding.actual, dict) else {}
        judge = _RULES.get(finding.rule)
        if action == DELETE_ROLE_ASSIGNMENT and judge is not None:
            return self._assignment_plan(finding, baseline, actual, judge)
        if action == DELETE_FEDERATED_CREDENTIAL and finding.rule == _FEDERATED_RULE:
            return self._credential_plan(finding, baseline, actual)
        return NothingToDo(f"{action}: {NOT_AUTOMATED}", "none")

    def _assignment_plan(
        self, finding: Finding, baseline: Baseline, actual: Mapping[str, Any], judge: _RuleFn
    ) -> Plan | NothingToDo:
        assignment_id = str(actual.get("assignment_id") or "")
        if not is_role_assignment_id(assignment_id):
            what = assignment_id or "no assignment id"
            return NothingToDo(
                f"{what} is not a role assignment to delete: {NOT_AUTOMATED}", "none"
            )
        body = self._reader.role_assignment(assignment_id)
        if body is None:
            return NothingToDo(ALREADY_DELETED, "skipped")
        current = _as_change(finding, assignment_id, body)
        now = current.payload_as(RoleAssignment)
        if not _same_grant(now, actual):
            return NothingToDo(
                f"{assignment_id} now grants {role_name(now.role)} to {now.principal_id} at "
                f"{now.scope}, not what the finding reported: left alone",
                "skipped",
            )
        hits = list(judge(current, baseline))
        if not hits:
            return NothingToDo("the baseline allows this assignment now: left alone", "skipped")
        target = str(body.get("id") or assignment_id)
        return Plan(
            action=DELETE_ROLE_ASSIGNMENT,
            target=target,
            mode=baseline.mode_for(hits[0].mode),
            before={
                "principal_id": now.principal_id,
                "role": role_name(now.role),
                "role_id": now.role,
                "scope": now.scope,
            },
            after=None,  # no assignment
            apply=lambda: self._delete(target),
            verify=lambda: self._gone(target),
        )

    def _credential_plan(
        self, finding: Finding, baseline: Baseline, actual: Mapping[str, Any]
    ) -> Plan | NothingToDo:
        credential_id = str(actual.get("credential_id") or "")
        # {identity}/federatedIdentityCredentials/{name}, in any case
        at = credential_id.lower().rfind(_CREDENTIALS)
        if at < 0 or _USER_ASSIGNED not in credential_id[:at].lower():
            what = credential_id or "no credential id"
            return NothingToDo(
                f"{what} is not a federated credential to delete: {NOT_AUTOMATED}", "none"
            )
        body = self._reader.resource(credential_id, FEDERATED_CREDENTIAL_API_VERSION)
        if body is None:
            return NothingToDo(CREDENTIAL_DELETED, "skipped")
        target = str(body.get("id") or credential_id)
        found = body.get("properties")
        props: dict[str, Any] = found if isinstance(found, dict) else {}
        audiences = props.get("audiences")
        credential = FederatedCredential(
            resource_id=target,
            identity_resource_id=credential_id[:at],
            issuer=str(props.get("issuer") or ""),
            subject=str(props.get("subject") or ""),
            audiences=tuple(str(a) for a in audiences) if isinstance(audiences, list) else (),
        )
        current = Change(
            cloud="azure",
            kind="federated_credential.written",
            event_name=_CREDENTIAL_WRITE,
            scope=finding.scope,
            identity=target,
            name=target.rsplit("/", 1)[-1],
            payload=credential,
        )
        hits = list(rules.identity_federated_credential_added(current, baseline))
        if not hits:
            return NothingToDo(
                "the baseline no longer watches this identity: left alone", "skipped"
            )
        return Plan(
            action=DELETE_FEDERATED_CREDENTIAL,
            target=target,
            mode=baseline.mode_for(hits[0].mode),
            before={
                "identity": credential.identity_resource_id,
                "issuer": credential.issuer,
                "subject": credential.subject,
                "audiences": list(credential.audiences),
            },
            after=None,  # no credential
            apply=lambda: self._reader.delete(target, FEDERATED_CREDENTIAL_API_VERSION),
            verify=lambda: self._credential_gone(target),
        )

    def _credential_gone(self, credential_id: str) -> str | None:
        if self._reader.resource(credential_id, FEDERATED_CREDENTIAL_API_VERSION) is None:
            return None
        return f"federated credential {credential_id} still exists (GET answers 200)"

    def _delete(self, assignment_id: str) -> None:
        # 200 (deleted) and 204 (none there) both pass; anything else raises
        self._reader.authorization().role_assignments.delete_by_id(assignment_id)

    def _gone(self, assignment_id: str) -> str | None:
        if self._reader.role_assignment(assignment_id) is None:
            return None
        return f"role assignment {assignment_id} still exists (GET answers 200)"


def is_role_assignment_id(resource_id: str) -> bool:
    """`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`, in any case
    (ARM resource ids are case-insensitive); not a PIM request, not elevateAccess."""
    scope, found, name = norm_scope(resource_id).rpartition(_ASSIGNMENTS)
    return bool(found) and bool(name) and "/" not in name and (not scope or scope[0] == "/")


def _as_change(finding: Finding, assignment_id: str, body: Any) -> Change:
    """The assignment ARM returned, read as the Event Grid path reads it (events.complete),
    so that the rule judges it exactly as it judged the event."""
    pending = Change(
        cloud="azure",
        kind="role_assignment.created",
        event_name=_WRITE,
        scope=finding.scope,
        identity=assignment_id,
        needs_enrichment=True,
        payload=ResourceRef(assignment_id),
    )
    return complete(pending, body)


def _same_grant(now: RoleAssignment, reported: Mapping[str, Any]) -> bool:
    return (
        now.principal_id == normalize_guid(str(reported.get("principal_id") or ""))
        and now.role == normalize_guid(str(reported.get("role_id") or ""))
        and norm_scope(now.scope) == norm_scope(str(reported.get("scope") or ""))
    )


def arm_remediator(
    *,
    credential: Any = None,
    base_url: str | None = None,
    connection_verify: bool | str = True,
    **client_options: Any,
) -> AzureRemediator:
    """An AzureRemediator on ARM at `base_url`; the arguments are arm_enricher()'s."""
    reader = arm_reader(
        credential=credential,
        base_url=base_url,
        connection_verify=connection_verify,
        **client_options,
    )
    return AzureRemediator(reader)


def remediator_from_env(environ: Mapping[str, str]) -> AzureRemediator:
    """arm_remediator() on the ARM the app settings name (as enricher_from_env)."""
    return arm_remediator(**arm_settings_from_env(environ))
