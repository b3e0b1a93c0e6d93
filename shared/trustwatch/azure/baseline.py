"""The `azure` section of the baseline file: subscriptions, identities, protected scopes."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from trustwatch.azure.roles import is_guid, normalize_guid, normalize_role
from trustwatch.baseline import Mode
from trustwatch.frozen import frozen
from trustwatch.schema import After, Before, Model


def _known_role(value: str) -> str:
    # an unknown name would never match, flagging every assignment of the identity
    normalize_role(value)
    return value


@frozen
class AzureRoleAssignment(Model):
    role: Annotated[str, After(_known_role)]  # built-in name, definition GUID or full id
    scope: str


def _guid(value: str | None) -> str | None:
    if value is not None and not is_guid(value):
        raise ValueError(f"{value!r} is not a GUID")
    return normalize_guid(value) if value is not None else None


EntraGuid = Annotated[str | None, After(_guid)]


@frozen
class AzureIdentity(Model):
    principal_id: str
    mode: Mode | None = None
    resource_id: str | None = None
    role_assignments: list[AzureRoleAssignment] = field(default_factory=list)
    # Entra objects watched for credentials and owners (azure.sp.*). principal_id is the
    # service principal's object id already; an application is logged by its object id,
    # and by its application (client) id only in some records: give what you know.
    application_id: EntraGuid = None  # the application (client) id
    application_object_id: EntraGuid = None
    service_principal_object_id: EntraGuid = None


def _network_action(value: Any) -> Any:
    # ARM spells it "Deny" / "Allow"; accept any case, keep ARM's spelling
    if isinstance(value, str) and value.lower() in ("deny", "allow"):
        return value.capitalize()
    return value


def _readers(value: list[str]) -> list[str]:
    # user principal names compare case-insensitively, as Entra ID resolves them
    return [v.strip().lower() if "@" in v else normalize_guid(v) for v in value]


@frozen
class AzureStorageAccount(Model):
    """What a watched storage account may allow (azure.storage.*); None: not watched."""

    mode: Mode | None = None
    resource_group: str | None = None  # unset: the account of this name in the subscription
    allow_blob_public_access: bool = False
    allow_shared_key_access: bool | None = None
    network_default_action: Annotated[Literal["Deny", "Allow"] | None, Before(_network_action)] = (
        None
    )
    # principals that may call listKeys / listAccountSas: object ids, application ids or
    # user principal names; the baseline identities are not implied
    key_readers: Annotated[list[str], After(_readers)] = field(default_factory=list)


@frozen
class AzureCustomRole(Model):
    """The most a watched custom role definition may hold (Azure action patterns, `*` ok)."""

    mode: Mode | None = None
    actions: list[str] = field(default_factory=list)
    data_actions: list[str] = field(default_factory=list)


def _account_names(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for key, spec in value.items():
        name = str(key)
        # "Storage account name": 3-24 lower-case letters and digits (globally unique),
        # https://learn.microsoft.com/en-us/azure/storage/common/storage-account-overview
        if not (3 <= len(name) <= 24 and name.isascii() and name.isalnum() and name.islower()):
            raise ValueError(
                f"storage account key {key!r} must be the account name "
                "(3-24 lower-case letters and digits)"
            )
        out[name] = {} if spec is None else spec
    return out


def _definition_guids(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for key, spec in value.items():
        if not is_guid(str(key)):
            raise ValueError(f"custom role key {key!r} must be the role definition GUID")
        out[normalize_guid(str(key))] = {} if spec is None else spec
    return out


@frozen
class AzureSubscription(Model):
    identities: dict[str, AzureIdentity] = field(default_factory=dict)
    protected_scopes: list[str] = field(default_factory=list)
    # the management groups above this subscription (ids); unset: any management group may be
    management_groups: list[str] | None = None
    custom_roles: Annotated[dict[str, AzureCustomRole], Before(_definition_guids)] = field(
        default_factory=dict
    )
    # storage account name -> what it may allow
    storage_accounts: Annotated[dict[str, AzureStorageAccount], Before(_account_names)] = field(
        default_factory=dict
    )


@frozen
class AzureSection(Model):
    tenant_id: str | None = None
    subscriptions: dict[str, AzureSubscription] = field(default_factory=dict)

    def summary(self) -> str:
        identities = sum(len(s.identities) for s in self.subscriptions.values())
        return f"{identities} Azure identities"


Section = AzureSection  # what trustwatch.clouds.CloudFolder looks for
