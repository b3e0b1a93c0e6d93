"""The `gcp` section of the baseline file: projects, service accounts, buckets, roles."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from trustwatch.baseline import Mode, Strict


class GcpServiceAccount(Strict):
    mode: Mode | None = None
    project_roles: list[str] = Field(default_factory=list)
    impersonators: list[str] = Field(default_factory=list)
    user_managed_keys: bool = False


class GcpBucket(Strict):
    mode: Mode | None = None
    bindings: dict[str, list[str]] = Field(default_factory=dict)
    # what keeps the bucket private (gcp.bucket.public_access_opened): a watched bucket
    # must hold both unless its baseline says `ignore`
    # https://cloud.google.com/storage/docs/public-access-prevention
    public_access_prevention: Literal["enforced", "ignore"] = "enforced"
    # https://cloud.google.com/storage/docs/uniform-bucket-level-access
    uniform_bucket_level_access: Literal["required", "ignore"] = "required"


class GcpCustomRole(Strict):
    mode: Mode | None = None
    permissions: list[str] | None = None
    # the launch stage it must keep; unset: any stage but DISABLED
    stage: Literal["ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"] | None = None


class GcpProject(Strict):
    service_accounts: dict[str, GcpServiceAccount] = Field(default_factory=dict)
    buckets: dict[str, GcpBucket] = Field(default_factory=dict)
    custom_roles: dict[str, GcpCustomRole] = Field(default_factory=dict)

    @field_validator("custom_roles", mode="before")
    @classmethod
    def _empty_roles(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: ({} if spec is None else spec) for name, spec in value.items()}
        return value


class GcpSection(Strict):
    projects: dict[str, GcpProject] = Field(default_factory=dict)

    def summary(self) -> str:
        accounts = sum(len(p.service_accounts) for p in self.projects.values())
        return f"{accounts} GCP service accounts"


Section = GcpSection  # what trustwatch.clouds.CloudFolder looks for
