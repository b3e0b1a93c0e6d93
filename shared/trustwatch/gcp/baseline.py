"""The `gcp` section of the baseline file: projects, service accounts, buckets, roles."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from trustwatch.baseline import Mode
from trustwatch.frozen import frozen
from trustwatch.schema import Before, Model


@frozen
class GcpServiceAccount(Model):
    mode: Mode | None = None
    project_roles: list[str] = field(default_factory=list)
    impersonators: list[str] = field(default_factory=list)
    user_managed_keys: bool = False


@frozen
class GcpBucket(Model):
    mode: Mode | None = None
    bindings: dict[str, list[str]] = field(default_factory=dict)
    # what keeps the bucket private (gcp.bucket.public_access_opened): a watched bucket
    # must hold both unless its baseline says `ignore`
    # https://cloud.google.com/storage/docs/public-access-prevention
    public_access_prevention: Literal["enforced", "ignore"] = "enforced"
    # https://cloud.google.com/storage/docs/uniform-bucket-level-access
    uniform_bucket_level_access: Literal["required", "ignore"] = "required"


@frozen
class GcpCustomRole(Model):
    mode: Mode | None = None
    permissions: list[str] | None = None
    # the launch stage it must keep; unset: any stage but DISABLED
    stage: Literal["ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"] | None = None


def _empty_roles(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: ({} if spec is None else spec) for name, spec in value.items()}
    return value


@frozen
class GcpProject(Model):
    service_accounts: dict[str, GcpServiceAccount] = field(default_factory=dict)
    buckets: dict[str, GcpBucket] = field(default_factory=dict)
    custom_roles: Annotated[dict[str, GcpCustomRole], Before(_empty_roles)] = field(
        default_factory=dict
    )


@frozen
class GcpSection(Model):
    projects: dict[str, GcpProject] = field(default_factory=dict)

    def summary(self) -> str:
        accounts = sum(len(p.service_accounts) for p in self.projects.values())
        return f"{accounts} GCP service accounts"


Section = GcpSection  # what trustwatch.clouds.CloudFolder looks for
