"""The AWS state part of sweeps (trustwatch.aws.state, trustwatch.aws.catchup).

Against moto in server mode with the real boto3 client: each test builds the baseline's
roles in a fresh moto account (moto gives an assumed role in any account id its own
state), changes one thing behind the events' back, reads the state and lets the AWS rules
judge it. Paging of GetAccountAuthorizationDetails against tests/iamserver.py (moto
answers one page whatever MaxItems says); catch-up against tests/cloudtrailserver.py
(moto has no LookupEvents).

AWS semantics relied on:
- GetAccountAuthorizationDetails returns roles with their trust, attached, inline
  policies, boundary and instance profiles, and customer policies with their versions;
  "IAM might return fewer than the MaxItems number of results even when there are more
  results available": follow IsTruncated/Marker
  (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html);
- a policy's first version is v1, each new one vN+1
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-versioning.html);
- LookupEvents: one lookup attribute, 50 results a page, NextToken, 2 requests per second
  per account and region, most recent first
  (https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html);
- IAM events are logged in us-east-1
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html);
- another account is read with the credentials AssumeRole returns for its read role
  (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html);
- a bucket without a policy answers NoSuchBucketPolicy, without a Block Public Access
  configuration NoSuchPublicAccessBlockConfiguration, without ownership controls
  OwnershipControlsNotFoundError (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketPolicy.html,
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetPublicAccessBlock.html,
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketOwnershipControls.html);
  S3 Control's GetPublicAccessBlock is sent to `<account id>.s3-control.<region>...`
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_GetPublicAccessBlock.html).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from awsstate import (
    Account,
    ForwardProxy,
    add_trust_principal,
    baseline_for,
    build_clean,
    databricks_trust,
    fresh_account,
    permissions,
    record,
)
from cloudtrailserver import CloudTrailServer
from iamserver import IamPagingServer, role_detail
from trustwatch import engine
from trustwatch.aws import catchup, state, templates
from trustwatch.aws.events import parse
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.clouds import get


def sweep_findings(account: Account, baseline: Baseline, monkeypatch, **environ: str):
    for key, value in {**account.environ, **environ}.items():
        monkeypatch.setenv(key, value)
    read = state.read(account.id, baseline, {**account.environ, **environ})
    findings = [f for change in read.changes for f in engine.evaluate(change, baseline)]
    return read, findings


@pytest.fixture
def account(moto_server):
    return Account(moto_server, fresh_account())


def test_the_cloud_offers_its_state_part():
    assert get("aws").state() is state


def test_units_are_the_baseline_accounts(tmp_path):
    baseline = baseline_for("444455556666", tmp_path)
    assert state.units(baseline, {}) == ["444455556666"]


def test_a_clean_account_gives_no_finding_in_one_call(account, tmp_path, monkeypatch):
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert read.errors == []
    assert findings == []
    assert read.calls == 1  # moto answers in one page
    kinds = {c.kind for c in read.changes}
    # the state was read, not skipped: trust, inline, managed, boundary, instance profile
    assert {
        "role.trust_updated",
        "role.inline_put",
        "role.policy_attached",
        "role.boundary_put",
        "instance_profile.role_added",
    } <= kinds
    assert all(c.event_name == "sweep:GetAccountAuthorizationDetails" for c in read.changes)
    assert all(c.event_id == "" and c.actor == "" and c.scope == account.id for c in read.changes)
    assert not [c for c in read.changes if c.name in ("trustwatch-responder", "some-lambda")]


def _swap_instance_profile_role(account: Account) -> None:
    account.iam.remove_role_from_instance_profile(
        InstanceProfileName="databricks-cluster-data", RoleName="databricks-cluster-data"
    )
    account.iam.add_role_to_instance_profile(
        InstanceProfileName="databricks-cluster-data", RoleName="databricks-uc-metastore"
    )


def _empty_instance_profile(account: Account) -> None:
    account.iam.remove_role_from_instance_profile(
        InstanceProfileName="databricks-cluster-data", RoleName="databricks-cluster-data"
    )


def _delete_instance_profile(account: Account) -> None:
    _empty_instance_profile(account)
    account.iam.delete_instance_profile(InstanceProfileName="databricks-cluster-data")


def _new_boundary_version(account: Account) -> None:
    account.iam.create_policy_version(
        PolicyArn=account.arn("policy", "databricks-boundary"),
        PolicyDocument=json.dumps(permissions("*")),
        SetAsDefault=True,
    )


def _untracked_role(account: Account) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "414351767826"}, "Action": "sts:AssumeRole"}
        ],
    }
    account.iam.create_role(
        RoleName="shadow-databricks", AssumeRolePolicyDocument=json.dumps(trust)
    )


def _delete_role(account: Account) -> None:
    iam = account.iam
    _empty_instance_profile(account)
    iam.detach_role_policy(
        RoleName="databricks-cluster-data",
        PolicyArn=account.arn("policy", "databricks-cluster-data-read"),
    )
    iam.delete_role(RoleName="databricks-cluster-data")


DRIFTS = {
    "trust principal added": (add_trust_principal, {"aws.trust.principal_added"}),
    "inline policy deleted": (
        lambda a: a.iam.delete_role_policy(
            RoleName="databricks-cross-account", PolicyName="databricks-cross-account-policy"
        ),
        {"aws.policy.inline_deleted"},
    ),
    "inline policy widened": (
        lambda a: a.iam.put_role_policy(
            RoleName="databricks-cluster-data",
            PolicyName="extra",
            PolicyDocument=json.dumps(permissions("iam:PassRole")),
        ),
        {"aws.policy.inline_changed"},
    ),
    "expected policy detached": (
        lambda a: a.iam.detach_role_policy(
            RoleName="databricks-uc-metastore",
            PolicyArn=a.arn("policy", "databricks-uc-metastore-access"),
        ),
        {"aws.policy.managed_detached"},
    ),
    "boundary removed": (
        lambda a: a.iam.delete_role_permissions_boundary(RoleName="databricks-uc-metastore"),
        {"aws.role.boundary_removed"},
    ),
    "instance profile role swapped": (
        _swap_instance_profile_role,
        {"aws.instance_profile.changed"},
    ),
    "instance profile emptied": (_empty_instance_profile, {"aws.instance_profile.changed"}),
    "instance profile deleted": (_delete_instance_profile, {"aws.instance_profile.changed"}),
    "new default boundary version": (_new_boundary_version, {"aws.policy.version_changed"}),
    "untracked role trusts Databricks": (_untracked_role, {"aws.role.untracked_trusts_databricks"}),
    "baseline role deleted": (_delete_role, {"aws.role.deleted", "aws.instance_profile.changed"}),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_a_drift_no_event_reported_is_found(drift, account, tmp_path, monkeypatch):
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    change, expected = DRIFTS[drift]
    change(account)
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert read.errors == []
    assert {f.rule for f in findings} == expected
    assert all(f.scope == account.id for f in findings)


def test_the_details_of_each_drift(account, tmp_path, monkeypatch):
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    _new_boundary_version(account)
    _untracked_role(account)
    _swap_instance_profile_role(account)
    _, findings = sweep_findings(account, baseline, monkeypatch)
    by_rule = {f.rule: f for f in findings}
    version = by_rule["aws.policy.version_changed"]
    assert version.identity == account.arn("policy", "databricks-boundary")
    assert version.actual["default_version"] == "v2" and version.actual["grants_admin"] is True
    assert version.severity.value == "critical"
    untracked = by_rule["aws.role.untracked_trusts_databricks"]
    assert untracked.identity == account.arn("role", "shadow-databricks")
    assert untracked.severity.value == "critical"  # no sts:ExternalId
    profile = [f for f in findings if f.rule == "aws.instance_profile.changed"]
    assert sorted(json.dumps(f.actual, sort_keys=True) for f in profile) == [
        json.dumps(
            {"instance_profile": "databricks-cluster-data", "role_added": "databricks-uc-metastore"}
        ),
        json.dumps(
            {
                "instance_profile": "databricks-cluster-data",
                "role_removed": "databricks-cluster-data",
            }
        ),
    ]
    # the read is the same twice: the same findings, the same ids (sweeps diff them)
    again = [
        f
        for c in state.read(account.id, baseline, account.environ).changes
        for f in engine.evaluate(c, baseline)
    ]
    assert sorted(f.id for f in again) == sorted(f.id for f in findings)


def test_administrator_access_attached_is_critical(moto_server, tmp_path, monkeypatch):
    # moto loads AWS managed policies into an account's backend when it is created
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    account = Account(moto_server, fresh_account())
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES")
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    account.iam.attach_role_policy(
        RoleName="databricks-cross-account", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    _, findings = sweep_findings(account, baseline, monkeypatch)
    assert [(f.rule, f.severity.value) for f in findings] == [
        ("aws.policy.managed_attached", "critical")
    ]


def test_other_accounts_are_read_through_the_sweep_role(moto_server, tmp_path, monkeypatch):
    """The organization rollout: the function's own credentials (moto's default account)
    assume the read role in the member account; only that account's roles are read."""
    member = Account(moto_server, fresh_account())
    baseline = baseline_for(member.id, tmp_path)
    build_clean(member, baseline)
    add_trust_principal(member)
    environ = {
        **moto_server.environ(),
        "TRUSTWATCH_AWS_SWEEP_ROLE": "arn:aws:iam::{account}:role/trustwatch-read",
        "TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID": "sweep-secret",
    }
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    read = state.read(member.id, baseline, environ)
    assert read.errors == []
    assert read.calls == 3  # GetCallerIdentity, AssumeRole, one page of details
    findings = [f for c in read.changes for f in engine.evaluate(c, baseline)]
    assert {f.rule for f in findings} == {"aws.trust.principal_added"}
    # without the setting, the default chain reads the caller's own account: that is no
    # read of the member account (its roles reported deleted, its findings resolved), so
    # the read fails and the sweep keeps the member's last state (tests/test_sweep_redteam.py)
    environ.pop("TRUSTWATCH_AWS_SWEEP_ROLE")
    with pytest.raises(ValueError, match=f"account {member.id}: the credentials read account"):
        state.read(member.id, baseline, environ)


def test_a_bad_sweep_role_template_is_an_error_not_a_clean_account(tmp_path):
    baseline = baseline_for("444455556666", tmp_path)
    with pytest.raises(ValueError, match=r"\{account\}"):
        state.read("444455556666", baseline, {"TRUSTWATCH_AWS_SWEEP_ROLE": "arn:aws:iam::1:role/x"})


# --- paging -------------------------------------------------------------------------------


def test_paging_follows_is_truncated_not_counts(tmp_path, monkeypatch, moto_server):
    """Pages of 5, 1, 7, 3 … items while MaxItems is 1000: every role read exactly once."""
    account = "123456789012"
    baseline = baseline_for(account, tmp_path)
    roles = [role_detail(f"shadow-{i:02}", databricks_trust(), account=account) for i in range(23)]
    policies = [
        {
            "PolicyName": "databricks-boundary",
            "Arn": f"arn:aws:iam::{account}:policy/databricks-boundary",
            "DefaultVersionId": "v3",
            "PolicyVersionList": [
                {"Document": permissions("*"), "VersionId": "v3", "IsDefaultVersion": True},
                {"Document": permissions("s3:Get*"), "VersionId": "v1", "IsDefaultVersion": False},
            ],
        }
    ]
    with IamPagingServer(roles, policies, page_sizes=[5, 1, 7, 3]) as iam:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", iam.url)
        read = state.read(account, baseline, {})
        assert read.errors == [], read.errors
        created = [c.name for c in read.changes if c.kind == "role.created"]
        assert sorted(created) == [f"shadow-{i:02}" for i in range(23)]  # each exactly once
        assert [c.payload.version_id for c in read.changes if c.kind.startswith("policy.")] == [
            "v3"
        ]
        assert [r.get("Marker") for r in iam.requests] == [None, "5", "6", "13", "16", "21", "22"]
        assert {r["MaxItems"] for r in iam.requests} == {"1000"}
        assert read.calls == len(iam.requests) + 1  # + GetInstanceProfile: none holds a role
    findings = [f for c in read.changes for f in engine.evaluate(c, baseline)]
    assert len([f for f in findings if f.rule == "aws.role.untracked_trusts_databricks"]) == 23


def test_a_later_default_version_granting_nothing_dangerous_is_no_drift(
    account, tmp_path, monkeypatch
):
    """The baseline pins no policy version: a later default version (each Terraform edit of
    a customer policy makes one, IAM numbering them v1, v2, …) that grants no administrator
    access or escalation is not drift a sweep can tell; one that does is (above)."""
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    account.iam.create_policy_version(
        PolicyArn=account.arn("policy", "databricks-boundary"),
        PolicyDocument=json.dumps(permissions("s3:GetObject")),
        SetAsDefault=True,
    )
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert read.errors == []
    assert [f.rule for f in findings] == []


def test_a_truncated_page_without_a_marker_is_an_error(tmp_path):
    class NoMarker:
        def get_account_authorization_details(self, **request: Any) -> dict[str, Any]:
            return {"RoleDetailList": [], "IsTruncated": True}

    with pytest.raises(ValueError, match="Marker"):
        state.account_details(NoMarker())


# --- catch-up -------------------------------------------------------------------------------


class FakeClock:
    """Time moves only when the limiter sleeps: spacing is checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_catch_up_yields_the_window_s_watched_records_once(tmp_path, monkeypatch, moto_server):
    since = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    until = since + timedelta(hours=1)
    trust = json.dumps(
        databricks_trust()
        | {
            "Statement": databricks_trust()["Statement"]
            + [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
                    "Action": "sts:AssumeRole",
                }
            ]
        }
    )
    lost = record(
        "UpdateAssumeRolePolicy",
        "iam.amazonaws.com",
        since + timedelta(minutes=5),
        roleName="databricks-cross-account",
        policyDocument=trust,
    )
    attaches = [
        record(
            "AttachRolePolicy",
            "iam.amazonaws.com",
            since + timedelta(seconds=30 * i),
            roleName="databricks-cluster-data",
            policyArn=f"arn:aws:iam::aws:policy/P{i}",
        )
        for i in range(60)
    ]  # more than one page of 50
    assumed = record(
        "AssumeRole",
        "sts.amazonaws.com",
        since + timedelta(minutes=9),
        roleArn="arn:aws:iam::111122223333:role/databricks-cross-account",
        roleSessionName="s1",
    )
    outside = [
        record(
            "UpdateAssumeRolePolicy",
            "iam.amazonaws.com",
            since - timedelta(seconds=1),
            roleName="databricks-cross-account",
            policyDocument=trust,
        ),
        record(
            "UpdateAssumeRolePolicy",
            "iam.amazonaws.com",
            until,  # [since, until)
            roleName="databricks-cross-account",
            policyDocument=trust,
        ),
        record("GetRole", "iam.amazonaws.com", since + timedelta(minutes=1), roleName="x"),
    ]
    clock = FakeClock()
    with CloudTrailServer([lost, assumed, *attaches, *outside], stamp=clock.monotonic) as trail:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.url)
        got = list(state.catch_up("111122223333", since, until, {}, clock=clock))
        lookups = trail.lookups()
        times = trail.times

    assert sorted(r["eventID"] for r in got) == sorted(
        r["eventID"] for r in [lost, assumed, *attaches]
    )
    # one lookup attribute a call, 50 a page, the window given, paged by NextToken
    assert all(len(body["LookupAttributes"]) == 1 for body in lookups)
    assert all(body["MaxResults"] == 50 for body in lookups)
    assert {body["StartTime"] for body in lookups} == {since.timestamp()}
    names = [body["LookupAttributes"][0]["AttributeValue"] for body in lookups]
    assert names.count("AttachRolePolicy") == 2 and "GetRole" not in names
    assert [
        b.get("NextToken")
        for b in lookups
        if b["LookupAttributes"][0]["AttributeValue"] == "AttachRolePolicy"
    ] == [None, "50"]
    # 2 requests a second: each request half a second after the one before, never sooner
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 0.5 - 1e-9
    assert sum(clock.slept) == pytest.approx(0.5 * (len(times) - 1))
    # the records are what the events path reads: the lost change is judged again
    baseline = load_baseline(Path(__file__).parents[1] / "examples" / "baseline.yaml")
    lost_again = next(r for r in got if r["eventID"] == lost["eventID"])
    changes = parse(lost_again)
    assert isinstance(changes, list) and changes[0].kind == "role.trust_updated"
    assert "aws.trust.principal_added" in {f.rule for f in engine.evaluate(changes[0], baseline)}


def test_catch_up_asks_iam_in_us_east_1_and_the_rest_in_each_region(monkeypatch, moto_server):
    clock = FakeClock()
    with CloudTrailServer([], stamp=clock.monotonic) as trail:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.url)
        since = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
        environ = {"TRUSTWATCH_AWS_CATCH_UP_REGIONS": "eu-west-1, us-east-1"}
        assert (
            list(
                state.catch_up(
                    "111122223333", since, since + timedelta(hours=1), environ, clock=clock
                )
            )
            == []
        )
        names = [b["LookupAttributes"][0]["AttributeValue"] for b in trail.lookups()]
    watched = get("aws").watched_operations()
    iam = len(watched["iam.amazonaws.com"])
    regional = sum(len(v) for k, v in watched.items() if k != "iam.amazonaws.com")
    assert len(names) == iam + 2 * regional
    assert names.count("UpdateAssumeRolePolicy") == 1 and names.count("AssumeRole") == 2


def test_rate_limiter_spaces_requests_half_a_second_apart():
    clock = FakeClock()
    limiter = catchup.RateLimiter(clock=clock)
    stamps = []
    for _ in range(5):
        limiter.acquire()
        stamps.append(clock.now)
    assert stamps == [1000.0, 1000.5, 1001.0, 1001.5, 1002.0]
    clock.now += 10  # idle: the next request goes at once
    limiter.acquire()
    assert clock.slept == [0.5] * 4


def test_a_role_whose_trust_cannot_be_read_is_named_not_cleared(tmp_path, monkeypatch, moto_server):
    """A document IAM sent that does not parse: an error naming the role, listed as
    unreadable (its last findings stay open), and the role is not taken for deleted."""
    account = "123456789012"
    baseline = baseline_for(account, tmp_path)
    broken = role_detail("databricks-cross-account", databricks_trust(), account=account)
    broken["AssumeRolePolicyDocument"] = "%7Bnot%20json"
    with IamPagingServer([broken]) as iam:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", iam.url)
        read = state.read(account, baseline, {})
    role = f"arn:aws:iam::{account}:role/databricks-cross-account"
    assert read.unreadable == [role]
    assert len(read.errors) == 1 and "databricks-cross-account" in read.errors[0]
    assert not [c for c in read.changes if c.name == "databricks-cross-account"]


@pytest.mark.parametrize(
    ("principal", "flagged"),
    [
        ({"Service": "ec2.amazonaws.com"}, False),
        ({"Federated": "arn:aws:iam::123456789012:saml-provider/corp"}, False),
        ({"Service": "ec2.amazonaws.com", "AWS": "414351767826"}, True),
        ("*", True),
        ({"AWS": "*"}, True),
        ({"AWS": "arn:aws:iam::4143517678*:root"}, True),
        ({"AWS": "arn:aws:iam::999988887777:root"}, False),
    ],
)
def test_untracked_roles_are_judged_by_who_they_trust(
    principal, flagged, tmp_path, monkeypatch, moto_server
):
    """Service-only trusts are passed over before the full trust analysis; anything naming
    an AWS principal or a pattern goes through it."""
    account = "123456789012"
    baseline = baseline_for(account, tmp_path)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
    }
    with IamPagingServer([role_detail("other", trust, account=account)]) as iam:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", iam.url)
        read = state.read(account, baseline, {})
    created = [c.name for c in read.changes if c.kind == "role.created"]
    assert created == (["other"] if flagged else [])


# --- the CLI ----------------------------------------------------------------------------------


def test_trustwatch_sweep_cloud_aws_reports_new_then_open(tmp_path, monkeypatch, capsys, account):
    """`trustwatch sweep --cloud aws` with the SDK defaults pointed at moto: drift that no
    event reported is new, then open, with replay's exit codes; the catch-up ran (the
    CloudTrail stand-in answered) and found nothing more."""
    import boto3
    from trustwatch.cli import main

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    baseline = baseline_for(account.id, tmp_path)
    build_clean(account, baseline)
    add_trust_principal(account)
    for key, value in account.environ.items():
        monkeypatch.setenv(key, value)
    for name in ("TRUSTWATCH_STATE_URL", "TRUSTWATCH_STATE_TABLE", "TRUSTWATCH_ALERT_ROUTING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli-state.sqlite"))
    monkeypatch.setenv("TRUSTWATCH_AWS_LOOKUP_RATE", "1000")
    argv = ["sweep", "--baseline", str(tmp_path / "baseline.yaml"), "--cloud", "aws"]
    with CloudTrailServer([]) as trail:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.url)
        first = main(argv)
        out, err = capsys.readouterr()
        second = main(argv)
        again, _ = capsys.readouterr()
        lookups = len(trail.lookups())
    found = [json.loads(line) for line in out.splitlines()]
    assert first == 1, err
    assert [(f["rule"], f["source"], f["sweep_status"]) for f in found] == [
        ("aws.trust.principal_added", "sweep", "new")
    ]
    assert found[0]["identity"] == account.arn("role", "databricks-cross-account")
    assert second == 1
    assert [json.loads(line)["sweep_status"] for line in again.splitlines()] == ["open"]
    assert lookups == 2 * sum(len(v) for v in get("aws").watched_operations().values())


def test_an_event_whose_record_is_not_json_is_passed_on_to_be_reported(monkeypatch, moto_server):
    """The replay it goes to reports it as a bad record; the catch-up goes on."""
    since = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    good = record("DeleteRole", "iam.amazonaws.com", since + timedelta(minutes=1), roleName="a")
    trail = CloudTrailServer([good])
    original = trail._event

    def broken(rec: dict[str, Any]) -> dict[str, Any]:
        event = original(rec)
        return {**event, "CloudTrailEvent": "{truncated"} if rec is good else event

    trail._event = broken  # type: ignore[method-assign]
    with trail:
        for key, value in moto_server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.url)
        got = list(
            state.catch_up("111122223333", since, since + timedelta(hours=1), {}, clock=FakeClock())
        )
    assert got == ["{truncated"]
    from trustwatch.intake import parse_document

    (parsed,) = parse_document(got[0], "catch-up record 0")
    assert parsed.error is not None


# --- buckets ----------------------------------------------------------------------------------

BUCKETS_BASELINE = Path(__file__).parent / "data" / "sweep" / "aws-buckets-baseline.yaml"
ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@pytest.fixture
def s3control_proxy(moto_server, monkeypatch):
    """Every AWS request through a forward proxy to moto (see ForwardProxy)."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with ForwardProxy(moto_server.endpoint_url) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield proxy


def buckets_for(account: Account, tmp_path: Path):
    path = tmp_path / "buckets.yaml"
    path.write_text(BUCKETS_BASELINE.read_text().replace("111122223333", account.id))
    baseline = load_baseline(path)
    s3 = account.client("s3")
    root = f"dbx-root-{account.id}"
    s3.create_bucket(Bucket=root)
    document = templates.expected_bucket_policy(
        baseline.aws.accounts[account.id].buckets[root].policy, partition="aws", bucket=root
    )
    s3.put_bucket_policy(Bucket=root, Policy=json.dumps(document))
    s3.put_public_access_block(Bucket=root, PublicAccessBlockConfiguration=ALL_BLOCKED)
    s3.put_bucket_ownership_controls(
        Bucket=root, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.create_bucket(Bucket=f"dbx-public-{account.id}")
    return baseline, s3, root


def _public_policy(root: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{root}/*",
            }
        ],
    }


BUCKET_DRIFTS = {
    "policy made public": (
        lambda s3, root: s3.put_bucket_policy(Bucket=root, Policy=json.dumps(_public_policy(root))),
        {"aws.bucket.policy_widened"},
    ),
    "policy deleted": (
        lambda s3, root: s3.delete_bucket_policy(Bucket=root),
        {"aws.bucket.policy_removed"},
    ),
    "public access block deleted": (
        lambda s3, root: s3.delete_public_access_block(Bucket=root),
        {"aws.bucket.public_access_opened"},
    ),
    "public access block turned off": (
        lambda s3, root: s3.put_public_access_block(
            Bucket=root,
            PublicAccessBlockConfiguration={**ALL_BLOCKED, "BlockPublicPolicy": False},
        ),
        {"aws.bucket.public_access_opened"},
    ),
    "ACLs re-enabled": (
        lambda s3, root: s3.put_bucket_ownership_controls(
            Bucket=root, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
        ),
        {"aws.bucket.public_access_opened"},
    ),
}


def test_clean_watched_buckets_give_no_finding(moto_server, tmp_path, monkeypatch, s3control_proxy):
    account = Account(moto_server, fresh_account())
    baseline, _, _ = buckets_for(account, tmp_path)
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert read.errors == [] and findings == []
    # one details page, GetCallerIdentity (no role nor policy names the account read),
    # four reads a bucket, the account's block (none: not reported)
    assert read.calls == 1 + 1 + 4 * 2 + 1
    kinds = sorted({c.kind for c in read.changes})
    assert kinds == [
        "bucket.acl_put",
        "bucket.ownership_controls_deleted",  # the ignore bucket: ACLs allowed there
        "bucket.ownership_controls_put",
        "bucket.policy_deleted",
        "bucket.policy_put",
        "bucket.public_access_block_deleted",
        "bucket.public_access_block_put",
    ]


@pytest.mark.parametrize("drift", list(BUCKET_DRIFTS))
def test_a_bucket_drift_no_event_reported_is_found(
    drift, moto_server, tmp_path, monkeypatch, s3control_proxy
):
    account = Account(moto_server, fresh_account())
    baseline, s3, root = buckets_for(account, tmp_path)
    change, expected = BUCKET_DRIFTS[drift]
    change(s3, root)
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert read.errors == []
    assert {f.rule for f in findings} == expected
    assert {f.identity for f in findings} == {f"arn:aws:s3:::{root}"}


def test_account_block_turned_off_is_found_and_a_missing_bucket_named(
    moto_server, tmp_path, monkeypatch, s3control_proxy
):
    account = Account(moto_server, fresh_account())
    baseline, s3, _ = buckets_for(account, tmp_path)
    account.client("s3control").put_public_access_block(
        AccountId=account.id,
        PublicAccessBlockConfiguration={**ALL_BLOCKED, "RestrictPublicBuckets": False},
    )
    s3.delete_bucket(Bucket=f"dbx-public-{account.id}")
    read, findings = sweep_findings(account, baseline, monkeypatch)
    assert [(f.rule, f.identity) for f in findings] == [
        ("aws.bucket.public_access_opened", account.id)
    ]
    assert read.unreadable == [f"arn:aws:s3:::dbx-public-{account.id}"]
    assert "NoSuchBucket" in read.errors[0]
    # S3 Control was asked at the account's own host name, as in AWS
    assert any(h.startswith(f"{account.id}.") for h in s3control_proxy.hosts)
