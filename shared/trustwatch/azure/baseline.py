"""The `azure` section of the baseline file: subscriptions, identities, protected scopes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from trustwatch.azure.roles import is_guid, normalize_guid, normalize_role
from trustwatch.baseline import Mode, Strict


class AzureRoleAssignment(Strict):
    role: str = Field(description="built-in role name, definition GUID or full definition id")
    scope: str

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        # an unknown name would never match, flagging every assignment of the identity
        normalize_role(value)
        return value


def _guid(value: str | None) -> str | None:
    if value is not None and not is_guid(value):
        raise ValueError(f"{value!r} is not a GUID")
    return normalize_guid(value) if value is not None else None


class AzureIdentity(Strict):
    mode: Mode | None = None
    principal_id: str
    resource_id: str | None = None
    role_assignments: list[AzureRoleAssignment] = Field(default_factory=list)
    # Entra objects watched for credentials and owners (azure.sp.*). principal_id is the
    # service principal's object id already; an application is logged by its object id,
    # and by its application (client) id only in some records: give what you know.
    application_id: str | None = Field(default=None, description="application (client) id")
    application_object_id: str | None = None
    service_principal_object_id: str | None = None

    @field_validator("application_id", "application_object_id", "service_principal_object_id")
    @classmethod
    def _entra_guid(cls, value: str | None) -> str | None:
        return _guid(value)


class AzureStorageAccount(Strict):
    """What a watched storage account may allow (azure.storage.*); None: not watched."""

    mode: Mode | None = None
    resource_group: str | None = None  # unset: the account of this name in the subscription
    allow_blob_public_access: bool = False
    allow_shared_key_access: bool | None = None
    network_default_action: Literal["Deny", "Allow"] | None = None
    # principals that may call listKeys / listAccountSas: object ids, application ids or
    # user principal names; the baseline identities are not implied
    key_readers: list[str] = Field(default_factory=list)

    @field_validator("network_default_action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Any:
        # ARM spells it "Deny" / "Allow"; accept any case, keep ARM's spelling
        if isinstance(value, str) and value.lower() in ("deny", "allow"):
            return value.capitalize()
        return value

    @field_validator("key_readers")
    @classmethod
    def _readers(cls, value: list[str]) -> list[str]:
        # user principal names compare case-insensitively, as Entra ID resolves them
        return [v.strip().lower() if "@" in v else normalize_guid(v) for v in value]


class AzureCustomRole(Strict):
    """The most a watched custom role definition may hold (Azure action patterns, `*` ok)."""

    mode: Mode | None = None
    actions: list[str] = Field(default_factory=list)
    data_actions: list[str] = Field(default_factory=list)


class AzureSubscription(Strict):
    identities: dict[str, AzureIdentity] = Field(default_factory=dict)
    protected_scopes: list[str] = Field(default_factory=list)
    # the management groups above this subscription (ids); unset: any management group may be
    management_groups: list[str] | None = None
    custom_roles: dict[str, AzureCustomRole] = Field(default_factory=dict)
    # storage account name -> what it may allow
    storage_accounts: dict[str, AzureStorageAccount] = Field(default_factory=dict)

    @field_validator("storage_accounts", mode="before")
    @classmethod
    def _account_names(cls, value: Any) -> Any:
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

    @field_validator("custom_roles", mode="before")
    @classmethod
    def _definition_guids(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for key, spec in value.items():
            if not is_guid(str(key)):
                raise ValueError(f"custom role key {key!r} must be the role definition GUID")
            out[normalize_guid(str(key))] = {} if spec is None else spec
        return out


class AzureSection(Strict):
    tenant_id: str | None = None
    subscriptions: dict[str, AzureSubscription] = Field(default_factory=dict)

    def summary(self) -> str:
        identities = sum(len(s.identities) for s in self.subscriptions.values())
        return f"{identities} Azure identities"


Section = AzureSection  # what trustwatch.clouds.CloudFolder looks for
