"""The `azure` section of the baseline file: subscriptions, identities, protected scopes."""

from __future__ import annotations

from typing import Any

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


class AzureIdentity(Strict):
    mode: Mode | None = None
    principal_id: str
    resource_id: str | None = None
    role_assignments: list[AzureRoleAssignment] = Field(default_factory=list)


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
