"""AWS remediation: put an `aws.*` finding's role, profile, policy or bucket back (boto3).

`remediator_from_env(environ)` gives the `Remediator` the core (trustwatch.remediation)
asks for a `Plan`; the planners are in `restore_roles` (a role's trust, policies and
boundary) and `restore_resources` (instance profiles, policy versions, buckets). Every
plan re-reads the state first and judges it with the same comparison the rules use
(`trustwatch.aws.policy`): a finding whose drift is gone (a stale or out-of-order event)
is `skipped`, and a plan only narrows toward the baseline:

| action | what it writes |
|---|---|
| restore_trust_policy | UpdateAssumeRolePolicy with the baseline's rendered trust document |
| detach_role_policy | DetachRolePolicy of a managed policy the baseline does not list |
| delete_role_policy | DeleteRolePolicy of an inline policy the baseline does not name |
| restore_inline_policy | PutRolePolicy of the baseline document over a widened one |
| restore_permissions_boundary | PutRolePermissionsBoundary with the baseline's boundary (removed, or changed to one that allows more) |
| restore_instance_profile_role | RemoveRoleFromInstanceProfile (foreign role), AddRoleToInstanceProfile (baseline role) |
| restore_policy_version | SetDefaultPolicyVersion to the newest other version without admin or escalation that grants nothing the default does not, when the default grants more than it |
| restore_public_access_block | PutPublicAccessBlock, all four settings on, on a watched bucket |

Never automated (alert only), because each would widen access or recreate what someone
removed: a deleted role, instance profile or inline policy is not recreated, a detached
expected managed policy is not re-attached, a trust that only lost an expected principal
is not widened back (`attach_role_policy` and the breakage rules are alert only). The
account-level Block Public Access (S3 Control) and bucket policies, ACLs and ownership
controls are alert only too, for now.

The function acts in its own account (STS GetCallerIdentity, once). A finding of another
account fails, saying so, unless `TRUSTWATCH_AWS_REMEDIATION_ROLE` names a role to assume
there: an ARN template with `{account}` (`arn:aws:iam::{account}:role/trustwatch-remediator`);
its sessions are kept until five minutes before they expire.

IAM names are "not distinguished by case"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): the role
and instance profile are looked up by the event's spelling, then the baseline's, and
written under the spelling IAM returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from trustwatch.aws import restore_resources, restore_roles
from trustwatch.aws.baseline import AwsAccount, AwsRole
from trustwatch.aws.restore_roles import ALERT_ONLY
from trustwatch.baseline import Baseline, Mode
from trustwatch.findings import Finding
from trustwatch.frozen import frozen
from trustwatch.remediation import NothingToDo, Plan

# Every IAM call the plans below make, as IAM actions: deploy/aws grants READ_ACTIONS
# always (a dry run plans from them) and WRITE_ACTIONS only with remediation_enabled;
# tests/test_deploy.py holds both to the calls in this module.
READ_ACTIONS = (
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:GetInstanceProfile",
    "iam:ListPolicyVersions",
    "iam:GetPolicyVersion",
    "s3:GetBucketPublicAccessBlock",
)
WRITE_ACTIONS = (
    "iam:UpdateAssumeRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:SetDefaultPolicyVersion",
    "s3:PutBucketPublicAccessBlock",  # the action of the PutPublicAccessBlock call
)
# Not a call but a permission: AddRoleToInstanceProfile needs iam:PassRole on the role it
# adds (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html).
PASS_ROLE = "iam:PassRole"
ROLE_TEMPLATE_ENV = "TRUSTWATCH_AWS_REMEDIATION_ROLE"
SESSION_NAME = "trustwatch-remediation"
RENEW_BEFORE_S = 300  # an assumed session this close to expiry is renewed first


@frozen
class Session:
    """Credentials of the remediation role assumed in another account."""

    access_key: str
    secret_key: str
    token: str
    expires: float  # epoch seconds


class AwsRemediator:
    """Plans the put-back of `aws.*` findings with IAM, STS and S3 clients (lazy)."""

    def __init__(
        self,
        client_kwargs: Mapping[str, Any] | None = None,
        *,
        role_template: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client_kwargs = dict(client_kwargs or {})
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._sessions: dict[str, Session] = {}
        self._own_account: str | None = None
        self.role_template = role_template
        self._clock = clock

    def client(self, service: str, account: str | None = None) -> Any:
        """The boto3 client, created on first use (SDK defaults, botocore standard retries):
        with the function's own credentials, or the role assumed in `account`."""
        credentials: dict[str, str] = {}
        if account is not None:
            session = self._sessions.get(account)
            if session is None or session.expires - self._clock() < RENEW_BEFORE_S:
                session = self._assume(account)
            credentials = {
                "aws_access_key_id": session.access_key,
                "aws_secret_access_key": session.secret_key,
                "aws_session_token": session.token,
            }
        key = (account, service)
        if key not in self._clients:
            import boto3

            from trustwatch.aws.store import retry_config

            self._clients[key] = boto3.client(
                service, config=retry_config(), **{**self._client_kwargs, **credentials}
            )
        return self._clients[key]

    def _assume(self, account: str) -> Session:
        assert self.role_template is not None
        role_arn = self.role_template.replace("{account}", account)
        found = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)
        given = found["Credentials"]
        expiration = given["Expiration"]
        expires = expiration.timestamp() if hasattr(expiration, "timestamp") else 0.0
        session = Session(
            given["AccessKeyId"], given["SecretAccessKey"], given["SessionToken"], expires
        )
        self._sessions[account] = session
        for key in [k for k in self._clients if k[0] == account]:
            del self._clients[key]  # clients of the expired session
        return session

    def own_account(self) -> str:
        """The account the function's credentials act in (GetCallerIdentity needs no grant)."""
        if self._own_account is None:
            self._own_account = str(self.client("sts").get_caller_identity()["Account"])
        return self._own_account

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        """Re-read the role, profile or policy the finding names and plan its put-back."""
        action = finding.remediation.action
        planner = _PLANNERS.get(action)
        if planner is None:
            return NothingToDo(f"{action} is not automated: {ALERT_ONLY}", "none")
        account = baseline.aws.accounts.get(finding.scope)
        if account is None:
            return NothingToDo(f"account {finding.scope} is not in the baseline", "none")
        own = self.own_account()
        target: str | None = None
        if own != finding.scope:
            if not self.role_template:
                return NothingToDo(
                    f"the finding is in account {finding.scope}; the responder runs in {own} "
                    f"({ROLE_TEMPLATE_ENV} unset)",
                    "failed",
                )
            if "{account}" not in self.role_template:
                return NothingToDo(
                    f"{ROLE_TEMPLATE_ENV} has no {{account}}: cannot act in {finding.scope}",
                    "failed",
                )
            target = finding.scope
        return planner(Context(self, finding, baseline, account, target))


@frozen
class Context:
    """What each planner reads: the clients, the finding and its baseline account."""

    remediator: AwsRemediator
    finding: Finding
    baseline: Baseline
    account: AwsAccount
    target_account: str | None = None  # None: the function's own account

    @property
    def iam(self) -> Any:
        return self.remediator.client("iam", self.target_account)

    @property
    def s3(self) -> Any:
        return self.remediator.client("s3", self.target_account)

    def mode(self, role: AwsRole | None) -> Mode:
        return self.baseline.mode_for(role.mode if role else None)


Planner = Callable[[Context], "Plan | NothingToDo"]


_PLANNERS: dict[str, Planner] = {
    "restore_trust_policy": restore_roles.restore_trust_policy,
    "detach_role_policy": restore_roles.detach_role_policy,
    "delete_role_policy": restore_roles.delete_role_policy,
    "restore_inline_policy": restore_roles.restore_inline_policy,
    "restore_permissions_boundary": restore_roles.restore_permissions_boundary,
    "restore_instance_profile_role": restore_resources.restore_instance_profile_role,
    "restore_policy_version": restore_resources.restore_policy_version,
    "restore_public_access_block": restore_resources.restore_public_access_block,
}


def remediator_from_env(environ: Mapping[str, str]) -> AwsRemediator:
    """The AWS remediator; boto3 finds credentials, region and endpoint (AWS_ENDPOINT_URL).

    TRUSTWATCH_AWS_REMEDIATION_ROLE: the role to assume in another account, `{account}` in
    its ARN; unset, findings of other accounts fail.
    """
    return AwsRemediator(role_template=environ.get(ROLE_TEMPLATE_ENV, "").strip() or None)
