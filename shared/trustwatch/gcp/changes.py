"""What a GCP change says of the after-state: one frozen payload per family of change kinds.

`trustwatch.gcp.events` builds them from an audit log entry (or `complete()` from what an
enricher read); `trustwatch.gcp.rules` reads them by attribute through
`Change.payload_as(...)`. Each holds exactly what the rules (and the enricher) read, as
immutable values: tuples, not lists. `None` means "not logged", never "empty".

A failed call (`Change.error_code`) still carries its payload, with only the names in it:
no rule judges failed GCP calls, so nothing else is read from their entries.
"""

from __future__ import annotations

from trustwatch.frozen import frozen


@frozen(slots=True)
class BindingDelta:
    """One `serviceData.policyDelta.bindingDeltas` item of a SetIamPolicy entry."""

    action: str  # "ADD" or "REMOVE"
    role: str
    member: str  # as logged ("serviceAccount:x@p.iam.gserviceaccount.com")
    # the binding's IAM condition (an Expr: expression, title, description), sorted
    # (field, value) pairs; None: the unconditional binding of the role
    condition: tuple[tuple[str, str], ...] | None = None


@frozen(slots=True)
class Binding:
    """One role of a full IAM policy and its members (a role bound twice: merged)."""

    role: str
    members: tuple[str, ...]


@frozen(slots=True)
class PolicySet:
    """An IAM policy set on a resource: `resource.iam_policy_set` (cloudresourcemanager
    SetIamPolicy on a project, folder or organization) and `bucket.iam_policy_set`
    (storage SetIamPermissions); `ServiceAccountPolicySet` for a service account's.

    `deltas` are the logged binding deltas, `bindings` the full policy of the request
    (or response); rules read the deltas when logged, else the policy. Neither logged:
    the change `needs_enrichment` ("policy not in event") until `events.complete()` adds
    the resource's current policy as `bindings`.
    """

    resource_type: str  # project / folder / organization / bucket / service_account
    resource: str  # projects/P, folders/F, organizations/O, the bucket name, the SA email
    deltas: tuple[BindingDelta, ...] | None = None
    bindings: tuple[Binding, ...] | None = None


@frozen(slots=True)
class ServiceAccountPolicySet(PolicySet):
    """`service_account.iam_policy_set`: iam SetIamPolicy on a service account.

    The account is named by `email` when the entry logs it; else only by `unique_id` (then
    `resource` is the logged resource name and the change `needs_enrichment`, "service
    account email not in event", until `events.complete()` adds the account's email).
    """

    email: str = ""  # lower case
    unique_id: str = ""


@frozen(slots=True)
class ServiceAccountChanged:
    """`service_account.deleted` / `service_account.disabled`: iam DeleteServiceAccount,
    DisableServiceAccount. No email logged: `needs_enrichment` as for a policy."""

    email: str = ""  # lower case
    unique_id: str = ""


@frozen(slots=True)
class ServiceAccountKeyCreated:
    """`service_account.key_created` (iam CreateServiceAccountKey, UploadServiceAccountKey),
    `service_account.key_enabled` (EnableServiceAccountKey) and
    `service_account.hmac_key_created` (storage `storage.hmacKeys.create`; `key_id` is the
    HMAC access id, `unique_id` never logged). No email logged: `needs_enrichment`."""

    email: str = ""  # lower case
    unique_id: str = ""
    key_id: str = ""  # "" when not logged


@frozen(slots=True)
class HmacKeyUpdated(ServiceAccountKeyCreated):
    """`service_account.hmac_key_updated`: storage `storage.hmacKeys.update`, which sets an
    HMAC key's state; ACTIVE undoes a deactivation. `key_id` is the access id, `project`
    the key's project (both from the resource name, projects/P/hmacKeys/ACCESS_ID, when the
    metadata is not logged), `state` the key's state after the call, upper case (ACTIVE,
    INACTIVE, DELETED), None if not logged. The request names the key, not always its
    account: no email logged (and the key maybe made ACTIVE), the change `needs_enrichment`
    ("HMAC key's account not in event") until `events.complete()` adds the key's metadata.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update"""

    project: str = ""
    state: str | None = None


AccountPayload = ServiceAccountPolicySet | ServiceAccountChanged | ServiceAccountKeyCreated
"""The payloads of `service_account.*` changes: each names the account by email."""


@frozen(slots=True)
class CustomRoleChanged:
    """`custom_role.deleted` (iam DeleteRole: the role only) and `custom_role.undeleted`
    (UndeleteRole: the role as the response logs it); `CustomRoleUpdated` for UpdateRole."""

    role: str  # the full name, projects/P/roles/R or organizations/O/roles/R
    stage: str | None = None  # the launch stage logged (upper case), None if not
    permissions: tuple[str, ...] | None = None  # sorted, None if not logged


@frozen(slots=True)
class CustomRoleUpdated(CustomRoleChanged):
    """`custom_role.updated`: iam UpdateRole. `stage` only when the update mask names it
    (or, without a mask, the logged role carries one); `permissions` the role's after the
    call when logged; `added` / `removed` the logged `permissionDelta`."""

    delta_logged: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    update_mask: tuple[str, ...] | None = None  # snake_case field paths, None if absent


@frozen(slots=True)
class BucketSettings:
    """`bucket.settings_updated`: storage `storage.buckets.update` (the audit methodName of
    both the JSON API's PATCH and PUT on a bucket), its after-state of the two settings that
    keep a bucket private.

    `public_access_prevention` is the JSON API's `iamConfiguration.publicAccessPrevention`
    in lower case (`enforced`, `inherited`, or the older `unspecified`);
    `uniform_bucket_level_access` its `iamConfiguration.uniformBucketLevelAccess.enabled`.
    None: not logged. The published entries log neither (no request, no response), so the
    change `needs_enrichment` ("bucket settings not in event") until `events.complete()`
    adds the bucket's `iamConfiguration` as the API returns it.
    """

    bucket: str
    public_access_prevention: str | None = None
    uniform_bucket_level_access: bool | None = None
