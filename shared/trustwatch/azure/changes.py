"""What an Azure change says of the after-state: one frozen payload per family of kinds.

`events` builds them (`Change(..., payload=RoleAssignment(...))`), `rules` reads them by
attribute (`change.payload_as(RoleAssignment).scope`). Each holds exactly what the rules
read, already normalized by `events`: principal, role and definition ids are lower-case
GUIDs (roles.normalize_guid / normalize_role); scopes and resource ids are as logged (the
rules compare them through scopes.norm_scope).

Kind -> payload:
- role_assignment.created, role_assignment.deleted, access.elevated: RoleAssignment
- role_definition.written: RoleDefinition
- lighthouse.delegated, lighthouse.assigned: LighthouseDelegation
- access_connector.written: AccessConnectorIdentity
- federated_credential.written: FederatedCredential
- storage_account.written: StorageAccountSettings
- entra.credential_added, entra.owner_added (Entra ID audit records, trustwatch.azure.entra):
  EntraDirectoryChange
- access_connector.deleted, managed_identity.deleted, storage_account.keys_listed, any
  failed call, and any change still `needs_enrichment`: ResourceRef
"""

from __future__ import annotations

from trustwatch.frozen import frozen


@frozen(slots=True)
class ResourceRef:
    """Only the resource an operation names, when the record says nothing more of it.

    Produced by the Success record of `accessConnectors/delete` and
    `userAssignedIdentities/delete` (a delete has no body: the resource id is all there is),
    by the Failure record of every watched operation, and by a record whose body is absent
    or unreadable (Event Grid events, truncated Activity Log bodies): that change is
    `needs_enrichment`, and `events.complete()` replaces this payload with the kind's own.
    """

    resource_id: str


@frozen(slots=True)
class RoleAssignment:
    """A role held by a principal at a scope, as one assignment grants it.

    Produced by `roleAssignments/write` and `/delete` (the request or response body), by
    PIM `roleEligibilityScheduleRequests/write` and `roleAssignmentScheduleRequests/write`
    (eligible or time-bound access, judged as an assignment; `via` names the request type),
    and by `elevateAccess/action` (User Access Administrator at `/` for the caller).
    """

    principal_id: str  # object id, lower-case GUID
    role: str  # role definition GUID, lower case
    scope: str  # as logged
    assignment_id: str  # the assignment's (or PIM request's) resource id
    via: str = ""  # "roleeligibilityschedulerequests" / "roleassignmentschedulerequests", else ""


@frozen(slots=True)
class PermissionBlock:
    """One entry of a role definition's `permissions` list (Actions minus NotActions, and
    DataActions minus NotDataActions, each within its own block)."""

    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@frozen(slots=True)
class RoleDefinition:
    """What a custom role grants after the write.

    Produced by `roleDefinitions/write` (request or response body, or the definition as
    ARM returns it for an Event Grid event).
    """

    definition_id: str  # the definition's GUID, lower case
    permissions: tuple[PermissionBlock, ...]


@frozen(slots=True)
class Authorization:
    """One role that Azure Lighthouse delegates to a principal of the managing tenant."""

    principal_id: str  # lower-case GUID, in the managing tenant
    role: str  # role definition GUID, lower case


@frozen(slots=True)
class LighthouseDelegation:
    """Roles over a scope delegated to another tenant by Azure Lighthouse.

    Produced by `registrationDefinitions/write` (who in the managing tenant gets which role)
    and `registrationAssignments/write` (the scope it is delegated over; its request names
    only the definition, so `authorizations` is None, unknown, unless the body expands it).
    """

    resource_id: str  # the definition or assignment, as logged
    scope: str  # where it is created: what the delegation reaches
    definition_id: str  # the registration definition's resource id
    managed_by_tenant: str  # lower-case GUID, "" when the body does not say
    authorizations: tuple[Authorization, ...] | None  # eligible ones included


@frozen(slots=True)
class AccessConnectorIdentity:
    """The managed identity a Databricks access connector acts as after a write.

    Produced by `Microsoft.Databricks/accessConnectors/write` (request or response body, or
    the connector as ARM returns it for an Event Grid event).
    """

    # "SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned" or "None"; None when a
    # request does not say (a PATCH may leave the identity as it was)
    identity_type: str | None
    # lower-case GUIDs; None when only the request is known (it names no principal ids)
    principal_ids: tuple[str, ...] | None
    user_assigned_identities: tuple[str, ...]  # resource ids, sorted


@frozen(slots=True)
class FederatedCredential:
    """A federated identity credential written on a user-assigned identity: tokens of its
    issuer and subject may act as that identity.

    Produced by `userAssignedIdentities/federatedIdentityCredentials/write`; issuer, subject
    and audiences are "" / () when the record carries no body (Event Grid).
    """

    resource_id: str  # the credential, as logged
    identity_resource_id: str  # the user-assigned identity it is a child of ("" if unknown)
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@frozen(slots=True)
class StorageAccountSettings:
    """What a storage account write says of the account's exposure after it.

    Produced by `Microsoft.Storage/storageAccounts/write` (request or response body, or the
    account as ARM returns it for an Event Grid event). Each setting is None when the body
    does not say: a request that leaves a property out leaves it as it was (a PATCH, and a
    PUT on an existing account, update only what they name: "Storage Accounts - Update",
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/update). A whole
    resource (response, ARM GET) says all three: an absent `allowSharedKeyAccess` is null,
    "equivalent to true"; an absent `networkAcls` is the default action Allow.
    """

    resource_id: str  # the account, as logged
    allow_blob_public_access: bool | None
    allow_shared_key_access: bool | None
    network_default_action: str | None  # "Allow" / "Deny"
    public_network_access: str | None  # "Enabled" / "Disabled" / "SecuredByPerimeter"


@frozen(slots=True)
class EntraTarget:
    """One object an Entra ID audit record names in `targetResources`."""

    object_id: str  # lower-case GUID ("" when not logged)
    type: str  # "Application", "ServicePrincipal", "User", ... as logged
    display_name: str
    app_id: str  # the application (client) id when the record carries it, else ""


@frozen(slots=True)
class EntraDirectoryChange:
    """A credential or an owner added to an application or service principal, from the
    Entra ID audit log (category `AuditLogs` of the tenant's diagnostic setting, or the
    Graph `directoryAudit` resource).

    Produced by "Add service principal credentials", "Update application - Certificates
    and secrets management", an application or service principal update adding a key or a
    federated identity credential (kind `entra.credential_added`), and "Add owner to
    application" / "Add owner to service principal" (kind `entra.owner_added`).
    """

    activity: str  # activityDisplayName as logged
    targets: tuple[EntraTarget, ...]  # the applications / service principals changed
    added: tuple[str, ...]  # what was added: key ids / credential names, or the new owner
