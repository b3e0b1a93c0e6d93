"""What an AWS change says of the after-state: one frozen payload per change kind or family.

`trustwatch.aws.events` builds them from a CloudTrail record (`Change(..., payload=
TrustUpdated(...))`); `trustwatch.aws.rules` reads them by attribute through
`change.payload_as(...)`. Each holds exactly what the rules read, already checked by
`events`: names and ARNs as logged (the rules compare IAM names and ARNs in any case),
sequences as tuples. Policy documents are parsed and validated
(`trustwatch.aws.policy.load_document`) but otherwise as the record carries them: the
rules normalize them when they compare.

The role a change concerns is `Change.name` (its short name) and `Change.identity` (its
ARN), the account `Change.scope`: no payload repeats them. A failed call still carries its
kind's payload, read from the request parameters it logged.

Kind -> payload:
- role.trust_updated: TrustUpdated
- role.created: RoleCreated (a TrustUpdated: the trust rules read both alike)
- role.deleted: RoleDeleted
- role.policy_attached, role.policy_detached: ManagedPolicyChanged
- role.inline_put: InlinePolicyPut
- role.inline_deleted: InlinePolicyDeleted
- role.boundary_put: BoundaryPut
- role.boundary_deleted: BoundaryDeleted
- policy.version_created, policy.default_version_set: PolicyVersion
- instance_profile.role_added, instance_profile.role_removed, instance_profile.deleted:
  InstanceProfileChanged
- role.assumed: RoleAssumed
- function.created, function.configuration_updated, function.code_updated: FunctionRoleSet (the function is the
  change's subject)
"""

from __future__ import annotations

from typing import Any

from trustwatch.frozen import frozen


@frozen(slots=True)
class TrustUpdated:
    """The trust policy a role has after the call: who may assume it.

    Produced by `UpdateAssumeRolePolicy` (`requestParameters.policyDocument`);
    `RoleCreated` for `CreateRole`.
    """

    policy: dict[str, Any]  # the trust policy document, parsed


@frozen(slots=True)
class RoleCreated(TrustUpdated):
    """A new role: its trust policy and the permissions boundary it was created with.

    Produced by `CreateRole` (`assumeRolePolicyDocument`, `permissionsBoundary`).
    """

    boundary: str | None = None  # the boundary policy's ARN, None when created without one


@frozen(slots=True)
class RoleDeleted:
    """A role deleted: the role (`Change.name`) is all there is to know.

    Produced by `DeleteRole`.
    """


@frozen(slots=True)
class ManagedPolicyChanged:
    """A managed policy attached to or detached from a role.

    Produced by `AttachRolePolicy` and `DetachRolePolicy` (`requestParameters.policyArn`).
    """

    policy_arn: str


@frozen(slots=True)
class InlinePolicyPut:
    """An inline policy written on a role (created or replaced), as it reads after the call.

    Produced by `PutRolePolicy` (`policyName`, `policyDocument`).
    """

    policy_name: str
    policy: dict[str, Any]  # the permissions policy document, parsed


@frozen(slots=True)
class InlinePolicyDeleted:
    """An inline policy deleted from a role.

    Produced by `DeleteRolePolicy` (`policyName`).
    """

    policy_name: str


@frozen(slots=True)
class BoundaryPut:
    """The permissions boundary a role has after the call.

    Produced by `PutRolePermissionsBoundary` (`permissionsBoundary`).
    """

    boundary: str  # the boundary policy's ARN, as logged


@frozen(slots=True)
class BoundaryDeleted:
    """A role's permissions boundary removed: the role has none after the call.

    Produced by `DeleteRolePermissionsBoundary`.
    """


@frozen(slots=True)
class PolicyVersion:
    """A version of a customer managed policy, created or made the default one.

    Produced by `CreatePolicyVersion` (the document, `setAsDefault`, and the version id the
    response names) and `SetDefaultPolicyVersion` (`versionId`; the document is not logged).
    The policy is the change's subject: `Change.name` is its short name.
    """

    policy_arn: str
    version_id: str  # "v3"; "" when not logged
    made_default: bool  # the version is the policy's default after the call
    policy: dict[str, Any] | None = None  # the version's document, None when not logged


@frozen(slots=True)
class InstanceProfileChanged:
    """An instance profile's role changed, or the profile deleted; the profile is the
    change's subject (`Change.name`).

    Produced by `AddRoleToInstanceProfile`, `RemoveRoleFromInstanceProfile` and
    `DeleteInstanceProfile` (`instanceProfileName`, `roleName`).
    """

    role_name: str  # the role added or removed, as logged; "" when the call names none


@frozen(slots=True)
class RoleAssumed:
    """A role assumed (or an attempt denied), and who asked for it.

    Produced by `AssumeRole`, `AssumeRoleWithSAML` and `AssumeRoleWithWebIdentity`.
    `callers` are the caller as canonical trust principals, the spelling of
    `trustwatch.aws.policy`'s `TrustGrant.principal`: `userIdentity`'s ARNs for AssumeRole
    (a session and the role it is of), `service:<host>` for an AWS service,
    `federated:<provider>` for the SAML provider (`requestParameters.principalArn`) or the
    web identity provider (`userIdentity.identityProvider`); empty when only the caller's
    account is logged (a cross-account `AWSAccount` caller): then `caller_account` is all
    there is.
    """

    callers: tuple[str, ...]
    caller_account: str  # userIdentity.accountId, "" when not logged
    assume_action: str  # the action it needs, lower case: sts:assumerole(withsaml|withwebidentity)
    parameters_recorded: bool  # CloudTrail logged requestParameters (not on every denied call)
    external_id: str | None  # requestParameters.externalId, None when absent
    session_name: str  # requestParameters.roleSessionName, "" when absent


@frozen(slots=True)
class FunctionRoleSet:
    """The execution role a Lambda function runs as after the call; the function is the
    change's subject (`Change.name` its name, `Change.identity` its ARN).

    Produced by `CreateFunction` and `UpdateFunctionConfiguration` (`requestParameters.role`;
    CloudTrail versions their eventName, e.g. `CreateFunction20150331`,
    https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html), and by
    `UpdateFunctionCode` and a configuration update that sets no role, whose response
    (the function's configuration, `responseElements.role`) names the role it runs as.
    """

    role_arn: str  # the execution role's ARN, as logged; "" when the call sets none
    # the role is the function's as the call left it (responseElements.role), not one the
    # call set: UpdateFunctionCode, or UpdateFunctionConfiguration without `role`
    role_unchanged: bool = False


IamPayload = (
    TrustUpdated
    | RoleDeleted
    | ManagedPolicyChanged
    | InlinePolicyPut
    | InlinePolicyDeleted
    | BoundaryPut
    | BoundaryDeleted
    | PolicyVersion
    | InstanceProfileChanged
)
"""The payloads of watched `iam.amazonaws.com` calls (RoleCreated is a TrustUpdated)."""
