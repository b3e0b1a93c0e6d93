"""AWS state for sweeps: one account's roles read back as the changes the rules judge.

A unit is an account id of the baseline. `read` makes `iam:GetAccountAuthorizationDetails`
calls (`Filter` Role and LocalManagedPolicy, up to 1,000 items a page), and four S3 reads
per watched bucket: every role with its trust policy, attached and inline policies,
permissions boundary and instance profiles, and every customer managed policy with its
versions (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html).
IAM "might return fewer than the MaxItems number of results even when there are more
results available": the loop follows `IsTruncated` and `Marker`, never a count.

What is read becomes the `Change`s `trustwatch.aws.events` makes of the calls that would
have produced it (event name `sweep:GetAccountAuthorizationDetails`, no event id, no
actor), so `trustwatch.aws.rules` judges them unchanged:

- a baseline role: its trust policy (`role.trust_updated`), every attached managed policy
  (`role.policy_attached`; the rule ignores expected ones), each expected one not attached
  (`role.policy_detached`), every inline policy (`role.inline_put`), each expected one
  absent (`role.inline_deleted`), its boundary (`role.boundary_put`, or
  `role.boundary_deleted` when the baseline expects one and it has none); a baseline role
  that does not exist is `role.deleted`;
- a watched instance profile: each role it holds (`instance_profile.role_added`), the
  expected role missing (`instance_profile.role_removed`), the profile gone
  (`instance_profile.deleted`, one `GetInstanceProfile` to tell it from an empty profile);
- a watched customer managed policy (attached to or the boundary of a baseline role) whose
  default version is not the version it was created with (`v1`: IAM numbers a policy's
  versions from v1, https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-versioning.html)
  and grants administrator access or a privilege escalation (or cannot be read):
  `policy.default_version_set` with the default version's document. The baseline pins no
  version, so an ordinary later version (every Terraform edit of the policy makes one) is
  not drift a sweep can tell; the event path reports each new default version as it is made;
- a role outside the baseline whose trust admits a Databricks principal: `role.created`;
- each watched bucket: its policy, Block Public Access, ownership controls and ACL as the
  S3 changes the bucket rules judge (four reads a bucket, `trustwatch.aws.bucket_state`).

The responder's own roles (`actors.responder`) are not reported: the loop guard would not
know the read from someone else's call. Tags are read but judged by no rule.

Several accounts: with `TRUSTWATCH_AWS_SWEEP_ROLE` (an ARN template such as
`arn:aws:iam::{account}:role/trustwatch-read`, optional `TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID`),
an account other than the caller's own is read with the credentials of that role assumed
through STS; the caller's own account, and every account without the setting, with the
default credential chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsAccount, iam_name_key
from trustwatch.aws.changes import (
    BoundaryDeleted,
    BoundaryPut,
    InlinePolicyDeleted,
    InlinePolicyPut,
    InstanceProfileChanged,
    ManagedPolicyChanged,
    PolicyVersion,
    RoleCreated,
    RoleDeleted,
    TrustUpdated,
)
from trustwatch.aws.events import role_arn
from trustwatch.aws.rules import responder_entry
from trustwatch.aws.store import retry_config
from trustwatch.changes import Change
from trustwatch.intake import short_exception
from trustwatch.sweep import StateRead

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline

# What reading an account calls (deploy/aws grants them to the function, and each member
# account's read role needs them; tests/test_deploy.py checks the policy against these).
# GetCallerIdentity needs no permission
# (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
READ_ACTIONS = ("iam:GetAccountAuthorizationDetails", "iam:GetInstanceProfile")
ASSUME_ACTION = "sts:AssumeRole"  # the sweep read role of another account

EVENT_NAME = "sweep:GetAccountAuthorizationDetails"
FILTER = ["Role", "LocalManagedPolicy"]
PAGE_SIZE = 1000  # the API's largest MaxItems
SWEEP_ROLE = "TRUSTWATCH_AWS_SWEEP_ROLE"
SWEEP_EXTERNAL_ID = "TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID"
SESSION_NAME = "trustwatch-sweep"


def units(baseline: Baseline, environ: Mapping[str, str]) -> list[str]:
    """The baseline's AWS account ids, each swept on its own."""
    return sorted(baseline.aws.accounts)


@dataclass
class AccountDetails:
    """What GetAccountAuthorizationDetails returned for one account, every page joined."""

    roles: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0


def read(unit: str, baseline: Baseline, environ: Mapping[str, str]) -> StateRead:
    """The account's roles and watched policies as changes the AWS rules judge.

    Raises when the account cannot be read at all (no credentials, the read role not
    assumable, GetAccountAuthorizationDetails denied): the sweep keeps its last state.
    A role or policy whose document cannot be parsed is an error naming that identity.
    """
    account = baseline.aws.accounts.get(unit)
    if account is None:
        raise ValueError(f"account {unit} is not in the baseline")
    session, calls = account_session(unit, environ)
    iam = session.client("iam", config=retry_config())
    details = account_details(iam)
    calls += details.calls
    calls += _check_account(unit, details, session)
    state = _Reader(unit, baseline, account, _now())
    state.roles(details.roles)
    state.policy_versions(details.policies)
    calls += state.instance_profiles(details.roles, iam)
    calls += state.buckets(session)
    return StateRead(
        unit, state.changes, calls=calls, errors=state.errors, unreadable=state.unreadable
    )


def account_details(iam: Any) -> AccountDetails:
    """Every page of GetAccountAuthorizationDetails (Role, LocalManagedPolicy)."""
    details = AccountDetails()
    request: dict[str, Any] = {"Filter": FILTER, "MaxItems": PAGE_SIZE}
    seen_markers: set[str] = set()
    while True:
        page = iam.get_account_authorization_details(**request)
        details.calls += 1
        details.roles.extend(page.get("RoleDetailList") or [])
        details.policies.extend(page.get("Policies") or [])
        if not page.get("IsTruncated"):
            return details
        marker = page.get("Marker")
        if not isinstance(marker, str) or not marker or marker in seen_markers:
            raise ValueError("GetAccountAuthorizationDetails is truncated without a new Marker")
        seen_markers.add(marker)
        request["Marker"] = marker


def _check_account(unit: str, details: AccountDetails, session: Any) -> int:
    """Raise unless the details are the unit's own (returns the calls it made).

    The default credential chain reads whichever account it signs in to: read as another
    account's, its roles would be judged against the wrong baseline, every expected role
    reported deleted and the unit's open findings resolved. The ARNs read say whose they
    are; only an account with no role and no policy takes one GetCallerIdentity.
    """
    read_from = {
        str(item.get("Arn") or "").split(":")[4:5][0]
        for item in [*details.roles, *details.policies]
        if len(str(item.get("Arn") or "").split(":")) > 5
    }
    calls = 0
    if not read_from:
        read_from = {
            str(session.client("sts", config=retry_config()).get_caller_identity()["Account"])
        }
        calls = 1
    foreign = sorted(read_from - {unit})
    if foreign:
        raise ValueError(
            f"account {unit}: the credentials read account {', '.join(foreign)} instead "
            f"(set {SWEEP_ROLE} to read other accounts through a role in each)"
        )
    return calls


def account_session(unit: str, environ: Mapping[str, str]) -> tuple[Any, int]:
    """(boto3 session for the account, STS calls made): the sweep read role when configured
    and the account is not the caller's own, else the default credential chain."""
    import boto3

    # a new Session, not boto3's default one: that keeps the credentials it first resolved
    own = boto3.Session()
    template = environ.get(SWEEP_ROLE, "").strip()
    if not template:
        return own, 0
    if "{account}" not in template:
        raise ValueError(f"{SWEEP_ROLE} must name the account as {{account}}: {template!r}")
    sts = own.client("sts", config=retry_config())
    if sts.get_caller_identity()["Account"] == unit:
        return own, 1
    request = {"RoleArn": template.format(account=unit), "RoleSessionName": SESSION_NAME}
    external_id = environ.get(SWEEP_EXTERNAL_ID, "").strip()
    if external_id:
        request["ExternalId"] = external_id
    credentials = sts.assume_role(**request)["Credentials"]
    session = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    return session, 2


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it (boto3 decodes it; URL-encoded text otherwise)."""
    return policy.load_document(value)


class _Reader:
    """Turns one account's details into changes, collecting what it could not read."""

    def __init__(self, unit: str, baseline: Baseline, account: AwsAccount, read_at: str) -> None:
        self.unit = unit
        self.baseline = baseline
        self.account = account
        self.read_at = read_at
        self.partition = templates.arn_partition(baseline.aws.partition)
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self.unreadable: list[str] = []  # the identities of those errors, as findings name them

    def _change(self, kind: str, identity: str, name: str, payload: Any) -> None:
        self.changes.append(
            Change(
                cloud="aws",
                kind=kind,
                event_name=EVENT_NAME,
                scope=self.unit,
                identity=identity,
                name=name,
                event_time=self.read_at,
                payload=payload,
            )
        )

    def roles(self, details: list[dict[str, Any]]) -> None:
        found: set[str] = set()
        for role in details:
            name = str(role.get("RoleName") or "")
            if not name or responder_entry(self.baseline, self.unit, name):
                continue
            entry = self.account.role_named(name)
            try:
                if entry is None:
                    self._untracked(role, name)
                else:
                    found.add(iam_name_key(name))
                    self._baseline_role(role, name, entry[1])
            except policy.PolicyError as exc:
                self.errors.append(f"role {name}: {short_exception(exc)}")
                self.unreadable.append(str(role.get("Arn") or ""))
                found.add(iam_name_key(name))  # it exists: not deleted
        for name, expected in self.account.roles.items():
            if iam_name_key(name) not in found and not responder_entry(
                self.baseline, self.unit, name
            ):
                arn = role_arn(self.partition, self.unit, name, expected.path)
                self._change("role.deleted", arn, name, RoleDeleted())

    def _baseline_role(self, role: dict[str, Any], name: str, expected: Any) -> None:
        arn = str(role.get("Arn") or role_arn(self.partition, self.unit, name))
        trust = _document(role.get("AssumeRolePolicyDocument"))
        self._change("role.trust_updated", arn, name, TrustUpdated(trust))
        attached = [str(p.get("PolicyArn")) for p in role.get("AttachedManagedPolicies") or []]
        attached_keys = {policy.iam_arn_key(a) for a in attached}
        for policy_arn in attached:
            self._change("role.policy_attached", arn, name, ManagedPolicyChanged(policy_arn))
        for policy_arn in expected.managed_policies:
            if policy.iam_arn_key(policy_arn) not in attached_keys:
                self._change("role.policy_detached", arn, name, ManagedPolicyChanged(policy_arn))
        inline = {}
        for item in role.get("RolePolicyList") or []:
            policy_name = str(item.get("PolicyName"))
            inline[policy_name] = _document(item.get("PolicyDocument"))
        for policy_name, document in inline.items():
            self._change("role.inline_put", arn, name, InlinePolicyPut(policy_name, document))
        for policy_name in expected.inline_policies:
            if policy_name not in inline:
                self._change("role.inline_deleted", arn, name, InlinePolicyDeleted(policy_name))
        boundary = _boundary(role)
        if boundary is not None:
            self._change("role.boundary_put", arn, name, BoundaryPut(boundary))
        elif expected.permissions_boundary is not None:
            self._change("role.boundary_deleted", arn, name, BoundaryDeleted())

    def _untracked(self, role: dict[str, Any], name: str) -> None:
        if self.account.untracked_roles == "ignore":
            return
        trust = _document(role.get("AssumeRolePolicyDocument"))
        if _service_principals_only(trust):
            return  # most roles: nothing to judge, and the full trust analysis costs
        grants = policy.trust_principals(trust)
        if not any(templates.includes_databricks(g.principal) for g in grants):
            return
        arn = str(role.get("Arn") or role_arn(self.partition, self.unit, name))
        self._change("role.created", arn, name, RoleCreated(trust, boundary=_boundary(role)))

    def instance_profiles(self, details: list[dict[str, Any]], iam: Any) -> int:
        """Changes for the watched instance profiles; returns the API calls it made."""
        if not self.account.instance_profiles:
            return 0
        held: dict[str, list[str]] = {}  # profile name key -> the roles it holds
        arns: dict[str, str] = {}
        for role in details:
            for profile in role.get("InstanceProfileList") or []:
                key = iam_name_key(str(profile.get("InstanceProfileName")))
                arns[key] = str(profile.get("Arn") or "")
                for member in profile.get("Roles") or []:
                    held.setdefault(key, [])
                    if member.get("RoleName") not in held[key]:
                        held[key].append(str(member.get("RoleName")))
        calls = 0
        for name, expected in self.account.instance_profiles.items():
            key = iam_name_key(name)
            arn = arns.get(key) or f"arn:{self.partition}:iam::{self.unit}:instance-profile/{name}"
            roles = held.get(key, [])
            for role_name in roles:
                self._change(
                    "instance_profile.role_added", arn, name, InstanceProfileChanged(role_name)
                )
            if any(iam_name_key(r) == iam_name_key(expected.role) for r in roles):
                continue
            exists, made = _profile_exists(iam, name, roles)
            calls += made
            if exists:
                self._change(
                    "instance_profile.role_removed",
                    arn,
                    name,
                    InstanceProfileChanged(expected.role),
                )
            else:
                self._change("instance_profile.deleted", arn, name, InstanceProfileChanged(""))
        return calls

    def buckets(self, session: Any) -> int:
        """Changes for the watched buckets (trustwatch.aws.bucket_state); returns the calls."""
        if not self.account.buckets:
            return 0
        from botocore.exceptions import BotoCoreError, ClientError

        from trustwatch.aws import bucket_state
        from trustwatch.aws.buckets import bucket_arn

        calls = [0]
        s3 = _counted(session.client("s3", config=retry_config()), calls)
        for name in self.account.buckets:
            try:
                bucket_state.read_bucket(s3, self.partition, name, self._change)
            except (BotoCoreError, ClientError, policy.PolicyError) as exc:
                self.errors.append(f"bucket {name}: {short_exception(exc)}")
                self.unreadable.append(bucket_arn(self.partition, name))
        if any(b.public_access_block == "required" for b in self.account.buckets.values()):
            s3control = _counted(session.client("s3control", config=retry_config()), calls)
            try:
                bucket_state.read_account_block(s3control, self.unit, self._change)
            except (BotoCoreError, ClientError) as exc:
                self.errors.append(f"account S3 public access block: {short_exception(exc)}")
                self.unreadable.append(self.unit)
        return calls[0]

    def policy_versions(self, details: list[dict[str, Any]]) -> None:
        watched = {
            policy.iam_arn_key(arn)
            for role in self.account.roles.values()
            for arn in [*role.managed_policies, role.permissions_boundary or ""]
            if arn
        }
        for item in details:
            arn = str(item.get("Arn") or "")
            if policy.iam_arn_key(arn) not in watched:
                continue
            version_id = str(item.get("DefaultVersionId") or "")
            if version_id in ("", "v1"):
                continue
            default = next(
                (
                    v
                    for v in item.get("PolicyVersionList") or []
                    if v.get("IsDefaultVersion") or v.get("VersionId") == version_id
                ),
                None,
            )
            try:
                document = _document(default.get("Document")) if default else None
            except policy.PolicyError as exc:
                self.errors.append(f"policy {arn} {version_id}: {short_exception(exc)}")
                self.unreadable.append(arn)
                document = None
            if document is not None and not (
                policy.grants_admin(document) or policy.document_escalations(document)
            ):
                continue  # a later version granting nothing dangerous: see the docstring
            name = arn.rsplit("/", 1)[-1]
            self._change(
                "policy.default_version_set",
                arn,
                name,
                PolicyVersion(arn, version_id, made_default=True, policy=document),
            )


def _service_principals_only(trust: dict[str, Any]) -> bool:
    """Does every Allow statement name only AWS services or identity providers as its
    Principal (no AWS principal, no "*", no NotPrincipal)? Then no Databricks principal can
    assume the role: Databricks is an AWS account and its roles."""
    statements = trust.get("Statement")
    for statement in statements if isinstance(statements, list) else [statements]:
        if isinstance(statement, dict) and statement.get("Effect") == "Deny":
            continue  # grants nothing
        if not isinstance(statement, dict):
            return False
        principal = statement.get("Principal")
        if "NotPrincipal" in statement or not isinstance(principal, dict):
            return False
        if not set(principal) <= {"Service", "Federated"}:
            return False
    return True


def _counted(client: Any, calls: list[int]) -> Any:
    """The client, counting each API call it makes in calls[0] (retries not counted)."""

    def count(**_: Any) -> None:
        calls[0] += 1

    client.meta.events.register("before-call.*.*", count)
    return client


def _boundary(role: dict[str, Any]) -> str | None:
    boundary = role.get("PermissionsBoundary") or {}
    arn = boundary.get("PermissionsBoundaryArn") if isinstance(boundary, dict) else None
    return str(arn) if arn else None


def _profile_exists(iam: Any, name: str, roles: list[str]) -> tuple[bool, int]:
    """(does the instance profile exist, calls made): a profile holding no role appears in
    no role's InstanceProfileList, so only GetInstanceProfile tells empty from deleted."""
    if roles:
        return True, 0
    from botocore.exceptions import ClientError

    try:
        iam.get_instance_profile(InstanceProfileName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return False, 1
        raise
    return True, 1


def catch_up(
    unit: str,
    since: datetime,
    until: datetime,
    environ: Mapping[str, str],
    *,
    clock: Any = None,
) -> Iterator[Any]:
    """The account's watched CloudTrail records logged in [since, until) (LookupEvents).

    `clock` (a `trustwatch.aws.catchup.Clock`) paces the requests; tests pass a fake one.
    """
    from trustwatch.aws import catchup

    session, _ = account_session(unit, environ)
    yield from catchup.lookup_records(session, unit, since, until, environ, clock=clock)
