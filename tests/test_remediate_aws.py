"""AWS remediation (trustwatch.aws.remediate) against moto server, with the real boto3 IAM
client, through the Lambda entry point (real EventBridge envelopes) and `trustwatch
remediate`.

Each test makes the drift in moto as an attacker would (the real IAM call), feeds the
CloudTrail record of that call to `functions/aws/handler.py:lambda_handler`, and reads
IAM back from moto. The webhook sink receives each finding's JSON, with its remediation.
IAM calls go through `awsproxy.QueryProxy` (moto acting in account 111122223333), which
records them and can answer one with Throttling, AccessDenied, or a success it never
forwards. AWS semantics relied on, each from the IAM API reference
(https://docs.aws.amazon.com/IAM/latest/APIReference/):
- UpdateAssumeRolePolicy replaces the whole trust document (API_UpdateAssumeRolePolicy.html);
- PutRolePolicy replaces an inline policy of that name (API_PutRolePolicy.html);
- an instance profile holds at most one role (API_AddRoleToInstanceProfile.html:
  "you can't assign a second role to an instance profile");
- SetDefaultPolicyVersion makes an existing version the default (API_SetDefaultPolicyVersion.html);
- role and instance profile names are not distinguished by case
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html);
- `Throttling` is a throttling error botocore's standard retry mode retries
  (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from awsevents import (
    ACCOUNT,
    CROSS_ACCOUNT_TRUST,
    DBX_EXTERNAL_ID,
    RESPONDER,
    TERRAFORM,
    allow,
    envelope,
    iam_call,
    session,
    trust,
)
from awsproxy import QueryProxy
from cloudservers import create_state_table
from conftest import ROOT
from trustwatch.alerts.receivers import RecordingHTTPServer
from trustwatch.aws.remediate import READ_ACTIONS, WRITE_ACTIONS
from trustwatch.aws.restore_resources import ALL_BLOCKED

ATTACKER = {"AWS": "arn:aws:iam::193672423079:root"}
EC2_TRUST = trust(allow({"Service": "ec2.amazonaws.com"}))
DESCRIBE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
}
EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


def policy_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/{name}"


@functools.cache
def attacker_iam(endpoint_url: str, account: str = ACCOUNT) -> Any:
    """The test's own IAM client (the attacker's, the fixer's): straight to moto, in the
    account (the proxy's by default), so the proxy records the function's calls only."""
    import boto3

    client = boto3.client(
        "iam",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def in_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-send.iam", in_account)
    return client


@dataclass
class World:
    """One test's roles in moto, its baseline file and the handler's environment."""

    moto: Any
    proxy: QueryProxy
    tmp: Path
    sfx: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def iam(self) -> Any:
        return attacker_iam(self.moto.endpoint_url)

    @property
    def xacct(self) -> str:  # in mixed case, as IAM and the baseline spell it
        return f"XAcct-{self.sfx}"

    @property
    def cluster(self) -> str:
        return f"cluster-{self.sfx}"

    @property
    def other(self) -> str:
        return f"other-{self.sfx}"

    @property
    def profile(self) -> str:
        return f"profile-{self.sfx}"

    @property
    def bucket(self) -> str:
        return f"dbx-root-{self.sfx}"

    @property
    def s3(self) -> Any:
        return self.moto.client("s3")

    @property
    def boundary(self) -> str:
        return policy_arn(f"boundary-{self.sfx}")

    @property
    def admin(self) -> str:  # moto loads no AWS managed policy: a customer one like it
        return policy_arn(f"admin-{self.sfx}")

    @property
    def data_read(self) -> str:
        return policy_arn(f"data-read-{self.sfx}")

    def write_baseline(self, mode: str) -> Path:
        path = self.tmp / f"baseline-{mode}.yaml"
        path.write_text(
            f"""version: 1
databricks: {{account_id: {DBX_EXTERNAL_ID}}}
defaults: {{mode: alert, min_severity: info}}
actors:
  responder: [arn:aws:iam::{ACCOUNT}:role/trustwatch-responder]
  approved: [arn:aws:iam::{ACCOUNT}:role/terraform-ci]
aws:
  accounts:
    "{ACCOUNT}":
      roles:
        {self.xacct}:
          mode: {mode}
          trust: {{template: databricks-cross-account}}
          inline_policies:
            ec2-describe: {json.dumps(DESCRIBE)}
          permissions_boundary: {self.boundary}
        {self.cluster}:
          mode: {mode}
          trust: {{template: ec2}}
          managed_policies: [{self.data_read}]
      instance_profiles:
        {self.profile}: {{role: {self.cluster}}}
      buckets:
        {self.bucket}: {{mode: {mode}, public_access_block: required}}
"""
        )
        return path

    def baseline_for_other_account(self, other: str) -> Path:
        """The baseline with its account moved to `other`; the role trustwatch assumes
        there is one of its responders (its put-backs come back through CloudTrail)."""
        path = self.write_baseline("remediate")
        text = path.read_text().replace(f'"{ACCOUNT}":', f'"{other}":')
        responder = f"arn:aws:iam::{other}:role/trustwatch-remediator"
        text = text.replace("  responder: [", f"  responder: [{responder}, ")
        path.write_text(text)
        return path

    def create(self) -> World:
        iam = self.iam
        for arn, doc in (
            (self.boundary, DESCRIBE),
            (self.data_read, READ),
            (self.admin, EVERYTHING),
        ):
            iam.create_policy(PolicyName=arn.rsplit("/", 1)[-1], PolicyDocument=json.dumps(doc))
        iam.create_role(
            RoleName=self.xacct,
            AssumeRolePolicyDocument=json.dumps(CROSS_ACCOUNT_TRUST),
            PermissionsBoundary=self.boundary,
        )
        iam.put_role_policy(
            RoleName=self.xacct, PolicyName="ec2-describe", PolicyDocument=json.dumps(DESCRIBE)
        )
        for name in (self.cluster, self.other):
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
        iam.attach_role_policy(RoleName=self.cluster, PolicyArn=self.data_read)
        iam.create_instance_profile(InstanceProfileName=self.profile)
        iam.add_role_to_instance_profile(InstanceProfileName=self.profile, RoleName=self.cluster)
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_public_access_block(
            Bucket=self.bucket, PublicAccessBlockConfiguration=ALL_BLOCKED
        )
        return self

    def public_access_block(self) -> dict[str, bool] | None:
        try:
            found = self.s3.get_public_access_block(Bucket=self.bucket)
        except self.s3.exceptions.ClientError:
            return None
        return found["PublicAccessBlockConfiguration"]

    # what IAM holds now
    def trust_of(self, role: str) -> dict[str, Any]:
        return self.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]

    def attached(self, role: str) -> list[str]:
        return [
            p["PolicyArn"]
            for p in self.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        ]

    def inline(self, role: str) -> dict[str, Any]:
        names = self.iam.list_role_policies(RoleName=role)["PolicyNames"]
        return {
            n: self.iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"]
            for n in names
        }

    def boundary_of(self, role: str) -> str | None:
        found = self.iam.get_role(RoleName=role)["Role"].get("PermissionsBoundary", {})
        return found.get("PermissionsBoundaryArn")

    def profile_roles(self) -> list[str]:
        profile = self.iam.get_instance_profile(InstanceProfileName=self.profile)
        return [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]]

    def default_version(self, arn: str) -> str:
        versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
        return next(v["VersionId"] for v in versions if v["IsDefaultVersion"])


@pytest.fixture
def world(moto_server, tmp_path) -> Iterator[World]:
    with QueryProxy(moto_server.endpoint_url, ACCOUNT) as proxy:
        yield World(moto_server, proxy, tmp_path).create()


@pytest.fixture
def webhook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def state_table(moto_server) -> str:
    return create_state_table(moto_server)


class Context:
    function_name = "trustwatch"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_handler(monkeypatch, env: dict[str, str]):
    """A fresh import of functions/aws/handler.py, as a new Lambda instance would do."""
    for key in [k for k in os.environ if k.startswith(("TRUSTWATCH_", "AWS_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "aws"))
    sys.modules.pop("handler", None)
    return importlib.import_module("handler")


@dataclass
class Function:
    """The Lambda handler with this world's baseline, moto, the proxy and a webhook."""

    world: World
    handler: Any
    webhook: RecordingHTTPServer

    def deliver(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Invoke the handler with the record's EventBridge envelope; the findings it sent."""
        seen = len(self.webhook.requests)
        self.world.proxy.calls.clear()  # from here on: the function's own IAM calls
        result = self.handler.lambda_handler(envelope(record), Context())
        assert not result["errors"], result
        return [r.json() for r in self.webhook.requests[seen:]]


@pytest.fixture
def function(monkeypatch, moto_server, world, webhook, state_table):
    def start(
        mode: str = "remediate",
        remediation: str | None = "apply",
        baseline: Path | None = None,
        **extra: str,
    ) -> Function:
        env = {
            **moto_server.environ(),  # DynamoDB (dedup, idempotency, breaker) on moto itself
            "AWS_ENDPOINT_URL_IAM": world.proxy.url,
            "AWS_ENDPOINT_URL_STS": world.proxy.url,
            "TRUSTWATCH_BASELINE": str(baseline or world.write_baseline(mode)),
            **extra,
            "TRUSTWATCH_WEBHOOK_URL": webhook.url,
            "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
            "TRUSTWATCH_STATE_TABLE": state_table,
        }
        if remediation is not None:
            env["TRUSTWATCH_REMEDIATION"] = remediation
        return Function(world, load_handler(monkeypatch, env), webhook)

    return start


def call(name: str, params: dict[str, Any], actor: dict[str, Any] | None = None, **extra: Any):
    """The CloudTrail record of an IAM call, with a fresh eventID (no idempotent replay)."""
    return iam_call(name, params, actor, eventID=str(uuid.uuid4()), **extra)


# --- the drift of each automated action: (make it in IAM, its record, check it is back) --


def trust_backdoor(
    w: World, actor: dict[str, Any] | None = None, attacker: dict[str, Any] = ATTACKER
) -> dict[str, Any]:
    doc = trust(*CROSS_ACCOUNT_TRUST["Statement"], allow(attacker))
    w.iam.update_assume_role_policy(RoleName=w.xacct, PolicyDocument=json.dumps(doc))
    return call(
        "UpdateAssumeRolePolicy", {"roleName": w.xacct, "policyDocument": json.dumps(doc)}, actor
    )


def admin_attached(w: World) -> dict[str, Any]:
    w.iam.attach_role_policy(RoleName=w.xacct, PolicyArn=w.admin)
    return call("AttachRolePolicy", {"roleName": w.xacct, "policyArn": w.admin})


def inline_added(w: World) -> dict[str, Any]:
    doc = json.dumps(EVERYTHING)
    w.iam.put_role_policy(RoleName=w.xacct, PolicyName="backdoor", PolicyDocument=doc)
    return call(
        "PutRolePolicy", {"roleName": w.xacct, "policyName": "backdoor", "policyDocument": doc}
    )


def inline_widened(w: World) -> dict[str, Any]:
    doc = json.dumps(EVERYTHING)
    w.iam.put_role_policy(RoleName=w.xacct, PolicyName="ec2-describe", PolicyDocument=doc)
    return call(
        "PutRolePolicy", {"roleName": w.xacct, "policyName": "ec2-describe", "policyDocument": doc}
    )


def boundary_removed(w: World) -> dict[str, Any]:
    w.iam.delete_role_permissions_boundary(RoleName=w.xacct)
    return call("DeleteRolePermissionsBoundary", {"roleName": w.xacct})


def boundary_changed(w: World) -> dict[str, Any]:
    w.iam.put_role_permissions_boundary(RoleName=w.xacct, PermissionsBoundary=w.data_read)
    return call(
        "PutRolePermissionsBoundary", {"roleName": w.xacct, "permissionsBoundary": w.data_read}
    )


def profile_swapped(w: World) -> dict[str, Any]:
    w.iam.remove_role_from_instance_profile(InstanceProfileName=w.profile, RoleName=w.cluster)
    w.iam.add_role_to_instance_profile(InstanceProfileName=w.profile, RoleName=w.other)
    return call("AddRoleToInstanceProfile", {"instanceProfileName": w.profile, "roleName": w.other})


def version_widened(w: World) -> dict[str, Any]:
    doc = json.dumps(EVERYTHING)
    made = w.iam.create_policy_version(PolicyArn=w.data_read, PolicyDocument=doc, SetAsDefault=True)
    version = made["PolicyVersion"]["VersionId"]
    return call(
        "CreatePolicyVersion",
        {"policyArn": w.data_read, "policyDocument": doc, "setAsDefault": True},
        responseElements={"policyVersion": {"versionId": version, "isDefaultVersion": True}},
    )


def bucket_opened(w: World) -> dict[str, Any]:
    w.s3.delete_public_access_block(Bucket=w.bucket)
    return call(
        "DeleteBucketPublicAccessBlock",
        {"bucketName": w.bucket, "publicAccessBlock": [""]},
        eventSource="s3.amazonaws.com",
    )


def trust_is_back(w: World) -> bool:
    from trustwatch.aws.policy import compare_trust

    diff = compare_trust(w.trust_of(w.xacct), [CROSS_ACCOUNT_TRUST])
    return not diff.widened and not diff.expected_principals_removed


@dataclass(frozen=True)
class Case:
    rule: str
    action: str
    drift: Any
    back: Any  # World -> bool: the baseline state holds again
    drifted: Any  # World -> bool: the drift is still there
    writes: tuple[str, ...]  # the IAM calls that put it back


CASES = {
    "trust": Case(
        "aws.trust.principal_added", "restore_trust_policy", trust_backdoor, trust_is_back,
        lambda w: not trust_is_back(w),
        ("UpdateAssumeRolePolicy",),
    ),
    "managed": Case(
        "aws.policy.managed_attached", "detach_role_policy", admin_attached,
        lambda w: w.attached(w.xacct) == [], lambda w: w.attached(w.xacct) == [w.admin],
        ("DetachRolePolicy",),
    ),
    "inline-added": Case(
        "aws.policy.inline_changed", "delete_role_policy", inline_added,
        lambda w: set(w.inline(w.xacct)) == {"ec2-describe"},
        lambda w: "backdoor" in w.inline(w.xacct),
        ("DeleteRolePolicy",),
    ),
    "inline-widened": Case(
        "aws.policy.inline_changed", "restore_inline_policy", inline_widened,
        lambda w: w.inline(w.xacct)["ec2-describe"] == DESCRIBE,
        lambda w: w.inline(w.xacct)["ec2-describe"] == EVERYTHING,
        ("PutRolePolicy",),
    ),
    "boundary-removed": Case(
        "aws.role.boundary_removed", "restore_permissions_boundary", boundary_removed,
        lambda w: w.boundary_of(w.xacct) == w.boundary,
        lambda w: w.boundary_of(w.xacct) is None,
        ("PutRolePermissionsBoundary",),
    ),
    "boundary-changed": Case(
        "aws.role.boundary_removed", "restore_permissions_boundary", boundary_changed,
        lambda w: w.boundary_of(w.xacct) == w.boundary,
        lambda w: w.boundary_of(w.xacct) == w.data_read,
        ("PutRolePermissionsBoundary",),
    ),
    "instance-profile": Case(
        "aws.instance_profile.changed", "restore_instance_profile_role", profile_swapped,
        lambda w: w.profile_roles() == [w.cluster], lambda w: w.profile_roles() == [w.other],
        ("RemoveRoleFromInstanceProfile", "AddRoleToInstanceProfile"),
    ),
    "policy-version": Case(
        "aws.policy.version_changed", "restore_policy_version", version_widened,
        lambda w: w.default_version(w.data_read) == "v1",
        lambda w: w.default_version(w.data_read) == "v2",
        ("SetDefaultPolicyVersion",),
    ),
    "bucket-public-access": Case(
        "aws.bucket.public_access_opened", "restore_public_access_block", bucket_opened,
        lambda w: w.public_access_block() == ALL_BLOCKED,
        lambda w: w.public_access_block() is None,
        ("PutBucketPublicAccessBlock",),
    ),
}  # fmt: skip


def iam_writes(case: Case) -> list[str]:
    """The case's writes the proxy sees (IAM; S3 goes to moto directly)."""
    return [w for w in case.writes if f"iam:{w}" in WRITE_ACTIONS]


def one(findings: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    matching = [f for f in findings if f["rule"] == rule]
    assert len(matching) == 1, [f["rule"] for f in findings]
    return matching[0]


@pytest.mark.parametrize("name", list(CASES))
def test_remediate_mode_puts_it_back_and_verifies(function, world, name):
    case = CASES[name]
    fn = function("remediate")
    record = case.drift(world)
    assert case.drifted(world)
    finding = one(fn.deliver(record), case.rule)
    remediation = finding["remediation"]
    assert remediation["action"] == case.action
    assert remediation["status"] == "applied", remediation["detail"]
    assert remediation["detail"].startswith("verified; ")
    assert remediation["before"] != remediation["after"]
    assert case.back(world)  # read back from moto, not from the finding
    assert world.proxy.writes(WRITE_ACTIONS) == iam_writes(case)
    # every call the function made is one deploy/aws grants (GetCallerIdentity needs none)
    declared = {a.split(":")[1] for a in READ_ACTIONS + WRITE_ACTIONS if a.startswith("iam:")}
    declared.add("GetCallerIdentity")
    assert set(world.proxy.calls) <= declared, set(world.proxy.calls) - declared


@pytest.mark.parametrize(
    "name",
    # one case in the default run, every case in the slow set
    [n if n == "trust" else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_alert_mode_changes_nothing_and_shows_the_plan(function, world, name):
    case = CASES[name]
    fn = function("alert")  # TRUSTWATCH_REMEDIATION=apply: the baseline's mode still rules
    finding = one(fn.deliver(case.drift(world)), case.rule)
    remediation = finding["remediation"]
    assert remediation["status"] == "none"
    assert remediation["detail"].startswith(f"mode is alert; would {case.action} on ")
    assert remediation["target"] and remediation["before"] != remediation["after"]
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert case.drifted(world)


def test_dry_run_plans_without_writing(function, world):
    fn = function("remediate", remediation=None)  # TRUSTWATCH_REMEDIATION unset: dry run
    finding = one(fn.deliver(trust_backdoor(world)), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "planned"
    assert finding["remediation"]["detail"].startswith("dry run; would restore_trust_policy")
    assert finding["remediation"]["after"] == CROSS_ACCOUNT_TRUST
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert not trust_is_back(world)


def test_throttling_is_retried_then_applied(function, world):
    fn = function()
    record = trust_backdoor(world)
    world.proxy.fail_next("UpdateAssumeRolePolicy", "Throttling")
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "applied"
    assert world.proxy.writes(WRITE_ACTIONS) == ["UpdateAssumeRolePolicy"] * 2  # retried once
    assert trust_is_back(world)


def test_permission_denied_fails_and_still_alerts(function, world):
    fn = function()
    record = trust_backdoor(world)
    world.proxy.fail_next("UpdateAssumeRolePolicy", "AccessDenied", status=403)
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "failed"
    assert "AccessDenied" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == ["UpdateAssumeRolePolicy"]  # not retried
    assert not trust_is_back(world)


def test_write_accepted_but_not_made_verifies_as_not_applied(function, world):
    fn = function()
    record = trust_backdoor(world)
    world.proxy.swallow_next("UpdateAssumeRolePolicy")
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "failed"
    assert finding["remediation"]["detail"].startswith("not applied: trust policy still differs")
    assert not trust_is_back(world)


def test_responders_own_event_fed_back_gives_nothing(function, world):
    fn = function()
    applied = one(fn.deliver(trust_backdoor(world)), "aws.trust.principal_added")
    assert applied["remediation"]["status"] == "applied"
    # CloudTrail's record of the responder's own UpdateAssumeRolePolicy comes back
    own = call(
        "UpdateAssumeRolePolicy",
        {"roleName": world.xacct, "policyDocument": json.dumps(applied["remediation"]["after"])},
        RESPONDER,
    )
    assert fn.deliver(own) == []
    assert world.proxy.calls == []  # not even a read
    # and so does its write while the trust still looks widened (the loop guard is the actor)
    doc = json.dumps(trust(*CROSS_ACCOUNT_TRUST["Statement"], allow(ATTACKER)))
    odd = call(
        "UpdateAssumeRolePolicy", {"roleName": world.xacct, "policyDocument": doc}, RESPONDER
    )
    assert fn.deliver(odd) == [] and world.proxy.calls == []


def test_approved_actor_is_left_alone(function, world):
    fn = function()
    finding = one(fn.deliver(trust_backdoor(world, TERRAFORM)), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "skipped"
    assert "actors.approved" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert not trust_is_back(world)


def test_stale_event_whose_drift_is_already_fixed_is_skipped(function, world):
    fn = function()
    record = trust_backdoor(world)
    world.iam.update_assume_role_policy(
        RoleName=world.xacct, PolicyDocument=json.dumps(CROSS_ACCOUNT_TRUST)
    )
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "skipped"
    assert "already matches" in finding["remediation"]["detail"]
    assert "GetRole" in world.proxy.calls  # re-read before acting
    assert world.proxy.writes(WRITE_ACTIONS) == []


def test_breaker_opens_on_the_fourth_remediation_within_ten_minutes(function, world):
    fn = function()
    # another outside account each time: four findings (the same one would alert once)
    attackers = [{"AWS": f"arn:aws:iam::19367242307{n}:root"} for n in range(4)]
    for attacker in attackers[:3]:
        record = trust_backdoor(world, attacker=attacker)
        finding = one(fn.deliver(record), "aws.trust.principal_added")
        assert finding["remediation"]["status"] == "applied"
        assert trust_is_back(world)
    found = fn.deliver(trust_backdoor(world, attacker=attackers[3]))
    stopped = one(found, "aws.trust.principal_added")
    assert stopped["remediation"]["status"] == "skipped"
    assert stopped["remediation"]["detail"].startswith("circuit open")
    circuit = one(found, "trustwatch.remediation.circuit_open")
    assert circuit["severity"] == "critical" and "fighting the baseline" in circuit["summary"]
    assert world.proxy.writes(WRITE_ACTIONS) == []  # no fourth write
    assert not trust_is_back(world)


def test_role_spelt_in_another_case(function, world):
    """The event spells the role in upper case (IAM accepts any case), the baseline as IAM
    stores it: the function finds it and writes under IAM's spelling."""
    fn = function()
    doc = trust(*CROSS_ACCOUNT_TRUST["Statement"], allow(ATTACKER))
    world.iam.update_assume_role_policy(RoleName=world.xacct, PolicyDocument=json.dumps(doc))
    record = call(
        "UpdateAssumeRolePolicy",
        {"roleName": world.xacct.upper(), "policyDocument": json.dumps(doc)},
    )
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "applied", finding["remediation"]["detail"]
    assert finding["remediation"]["target"].endswith(f":role/{world.xacct}")  # IAM's spelling
    assert trust_is_back(world)


def test_deleted_inline_policy_and_detached_policy_are_not_recreated(function, world):
    fn = function()
    world.iam.delete_role_policy(RoleName=world.xacct, PolicyName="ec2-describe")
    record = call("DeleteRolePolicy", {"roleName": world.xacct, "policyName": "ec2-describe"})
    deleted = one(fn.deliver(record), "aws.policy.inline_deleted")
    assert deleted["remediation"]["status"] == "none"
    assert "would widen access: alert only" in deleted["remediation"]["detail"]
    world.iam.detach_role_policy(RoleName=world.cluster, PolicyArn=world.data_read)
    record = call("DetachRolePolicy", {"roleName": world.cluster, "policyArn": world.data_read})
    detached = one(fn.deliver(record), "aws.policy.managed_detached")
    assert detached["remediation"]["status"] == "none"
    assert "not automated" in detached["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []


def test_deleted_role_is_never_recreated(function, world):
    fn = function()
    record = trust_backdoor(world)
    world.iam.delete_role_policy(RoleName=world.xacct, PolicyName="ec2-describe")
    world.iam.delete_role(RoleName=world.xacct)
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "none"
    assert "never recreated" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []


def test_policy_version_goes_back_past_unsafe_versions(function, world):
    fn = function()
    world.iam.create_policy_version(
        PolicyArn=world.data_read, PolicyDocument=json.dumps(EVERYTHING), SetAsDefault=False
    )  # v2: administrator access, never the default
    finding = one(fn.deliver(version_widened(world)), "aws.policy.version_changed")  # v3
    assert finding["remediation"]["status"] == "applied"
    assert finding["remediation"]["after"] == {"default_version": "v1"}
    assert world.default_version(world.data_read) == "v1"


def test_policy_version_with_no_safe_version_fails(function, world):
    fn = function()
    world.iam.create_policy_version(
        PolicyArn=world.data_read, PolicyDocument=json.dumps(EVERYTHING), SetAsDefault=True
    )
    world.iam.delete_policy_version(PolicyArn=world.data_read, VersionId="v1")
    finding = one(fn.deliver(version_widened(world)), "aws.policy.version_changed")  # v3
    assert finding["remediation"]["status"] == "failed"
    assert finding["remediation"]["detail"] == (
        f"no earlier version of {world.data_read} to go back to: every other version (v2) "
        "grants administrator access or a privilege escalation"
    )
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert world.default_version(world.data_read) == "v3"


def test_narrower_default_version_is_not_reverted(function, world):
    """A plan only narrows: a new default that grants less than the one before stays."""
    fn = function()
    narrower = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::one/*"}
        ],
    }
    doc = json.dumps(narrower)
    world.iam.create_policy_version(
        PolicyArn=world.data_read, PolicyDocument=doc, SetAsDefault=True
    )
    record = call(
        "CreatePolicyVersion",
        {"policyArn": world.data_read, "policyDocument": doc, "setAsDefault": True},
        responseElements={"policyVersion": {"versionId": "v2", "isDefaultVersion": True}},
    )
    finding = one(fn.deliver(record), "aws.policy.version_changed")
    assert finding["remediation"]["status"] == "skipped"
    assert "grants nothing v1 does not: not reverted" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert world.default_version(world.data_read) == "v2"


def test_narrower_boundary_is_not_replaced(function, world):
    """A boundary is the most a role may do: one that allows less than the baseline's stays."""
    fn = function()
    narrower = policy_arn(f"narrower-{world.sfx}")
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
    }
    world.iam.create_policy(PolicyName=narrower.rsplit("/", 1)[-1], PolicyDocument=json.dumps(doc))
    world.iam.put_role_permissions_boundary(RoleName=world.xacct, PermissionsBoundary=narrower)
    record = call(
        "PutRolePermissionsBoundary", {"roleName": world.xacct, "permissionsBoundary": narrower}
    )
    finding = one(fn.deliver(record), "aws.role.boundary_removed")
    assert finding["remediation"]["status"] == "skipped"
    assert "allows nothing" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert world.boundary_of(world.xacct) == narrower


def test_inline_policy_named_like_the_baselines_in_another_case_is_not_deleted(function, world):
    """IAM policy names are not distinguished by case (the quotas page): deleting
    EC2-DESCRIBE could delete the baseline's ec2-describe."""
    fn = function()
    doc = json.dumps(EVERYTHING)
    world.iam.put_role_policy(RoleName=world.xacct, PolicyName="EC2-DESCRIBE", PolicyDocument=doc)
    record = call(
        "PutRolePolicy",
        {"roleName": world.xacct, "policyName": "EC2-DESCRIBE", "policyDocument": doc},
    )
    finding = one(fn.deliver(record), "aws.policy.inline_changed")
    assert finding["remediation"]["action"] == "delete_role_policy"
    assert finding["remediation"]["status"] == "none"
    assert "differs only by case" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []


def test_only_what_the_finding_names_is_touched(function, world):
    """Detaching one policy leaves the baseline's and another drift's (its own finding)."""
    fn = function()
    other = policy_arn(f"other-{world.sfx}")
    world.iam.create_policy(PolicyName=other.rsplit("/", 1)[-1], PolicyDocument=json.dumps(READ))
    world.iam.attach_role_policy(RoleName=world.cluster, PolicyArn=other)
    world.iam.attach_role_policy(RoleName=world.cluster, PolicyArn=world.admin)
    record = call("AttachRolePolicy", {"roleName": world.cluster, "policyArn": world.admin})
    finding = one(fn.deliver(record), "aws.policy.managed_attached")
    assert finding["remediation"]["status"] == "applied"
    assert sorted(world.attached(world.cluster)) == sorted([world.data_read, other])
    assert world.proxy.writes(WRITE_ACTIONS) == ["DetachRolePolicy"]


def test_baseline_role_removed_from_its_instance_profile_is_put_back(function, world):
    fn = function()
    world.iam.remove_role_from_instance_profile(
        InstanceProfileName=world.profile, RoleName=world.cluster
    )
    record = call(
        "RemoveRoleFromInstanceProfile",
        {"instanceProfileName": world.profile, "roleName": world.cluster},
    )
    finding = one(fn.deliver(record), "aws.instance_profile.changed")
    assert finding["remediation"]["status"] == "applied"
    assert (finding["remediation"]["before"], finding["remediation"]["after"]) == (
        {"roles": []},
        {"roles": [world.cluster]},
    )
    assert world.profile_roles() == [world.cluster]
    assert world.proxy.writes(WRITE_ACTIONS) == ["AddRoleToInstanceProfile"]


def test_finding_of_another_account_fails(world):
    from trustwatch.aws.remediate import AwsRemediator
    from trustwatch.baseline import load_baseline
    from trustwatch.findings import Finding, Remediation

    path = world.write_baseline("remediate")
    text = path.read_text().replace(f'"{ACCOUNT}":', '"444455556666":')
    path.write_text(text)
    baseline = load_baseline(path)
    remediator = AwsRemediator(world.moto.client_kwargs() | {"endpoint_url": world.proxy.url})
    world.proxy.calls.clear()
    finding = Finding(
        id="x", rule="aws.trust.principal_added", severity="critical", cloud="aws",
        scope="444455556666", identity=f"arn:aws:iam::444455556666:role/{world.xacct}",
        summary="s", remediation=Remediation(action="restore_trust_policy", status="planned"),
    )  # fmt: skip
    plan = remediator.plan(finding, baseline)
    assert plan.status == "failed"
    assert plan.reason == (
        f"the finding is in account 444455556666; the responder runs in {ACCOUNT} "
        "(TRUSTWATCH_AWS_REMEDIATION_ROLE unset)"
    )
    assert world.proxy.calls == ["GetCallerIdentity"]


OTHER = "444455556666"
REMEDIATOR_ROLE = "arn:aws:iam::{account}:role/trustwatch-remediator"


def test_another_account_through_the_assumed_remediation_role(function, world, moto_server):
    """moto's STS AssumeRole gives a session in the role's account (its docs: "The ARN can
    point to another account"); https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html"""
    fn = function(
        baseline=world.baseline_for_other_account(OTHER),
        TRUSTWATCH_AWS_REMEDIATION_ROLE=REMEDIATOR_ROLE,
    )
    theirs = attacker_iam(moto_server.endpoint_url, OTHER)
    theirs.create_role(
        RoleName=world.xacct, AssumeRolePolicyDocument=json.dumps(CROSS_ACCOUNT_TRUST)
    )
    doc = json.dumps(trust(*CROSS_ACCOUNT_TRUST["Statement"], allow(ATTACKER)))
    theirs.update_assume_role_policy(RoleName=world.xacct, PolicyDocument=doc)
    world.iam.update_assume_role_policy(RoleName=world.xacct, PolicyDocument=doc)  # namesake
    world.proxy.calls.clear()
    record = call(
        "UpdateAssumeRolePolicy",
        {"roleName": world.xacct, "policyDocument": doc},
        session("dev", "alice", OTHER),
        recipientAccountId=OTHER,
    )
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "applied", finding["remediation"]["detail"]
    assert finding["remediation"]["target"] == f"arn:aws:iam::{OTHER}:role/{world.xacct}"
    assert world.proxy.calls[:2] == ["GetCallerIdentity", "AssumeRole"]
    restored = theirs.get_role(RoleName=world.xacct)["Role"]["AssumeRolePolicyDocument"]
    assert restored == CROSS_ACCOUNT_TRUST
    assert not trust_is_back(world)  # its namesake in the function's account: untouched
    # the remediator's own call in that account, fed back: nothing
    own = session("trustwatch-remediator", "trustwatch-remediation", OTHER)
    again = call(
        "UpdateAssumeRolePolicy",
        {"roleName": world.xacct, "policyDocument": json.dumps(CROSS_ACCOUNT_TRUST)},
        own,
        recipientAccountId=OTHER,
    )
    assert fn.deliver(again) == [] and world.proxy.calls == []


def test_assume_role_denied_fails_and_still_alerts(function, world, moto_server):
    fn = function(
        baseline=world.baseline_for_other_account(OTHER),
        TRUSTWATCH_AWS_REMEDIATION_ROLE=REMEDIATOR_ROLE,
    )
    world.proxy.fail_next("AssumeRole", "AccessDenied", status=403)
    doc = json.dumps(trust(*CROSS_ACCOUNT_TRUST["Statement"], allow(ATTACKER)))
    record = call(
        "UpdateAssumeRolePolicy",
        {"roleName": world.xacct, "policyDocument": doc},
        recipientAccountId=OTHER,
    )
    finding = one(fn.deliver(record), "aws.trust.principal_added")
    assert finding["remediation"]["status"] == "failed"
    assert finding["remediation"]["detail"].startswith("could not plan: ")
    assert "AccessDenied" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []


def test_assumed_session_is_reused_then_renewed_before_it_expires(world, moto_server):
    import time

    from trustwatch.aws.remediate import RENEW_BEFORE_S, AwsRemediator
    from trustwatch.baseline import load_baseline
    from trustwatch.findings import Finding, Remediation

    now = [time.time()]
    remediator = AwsRemediator(
        world.moto.client_kwargs() | {"endpoint_url": world.proxy.url},
        role_template=REMEDIATOR_ROLE,
        clock=lambda: now[0],
    )
    baseline = load_baseline(world.baseline_for_other_account(OTHER))
    attacker_iam(moto_server.endpoint_url, OTHER).create_role(
        RoleName=world.xacct, AssumeRolePolicyDocument=json.dumps(CROSS_ACCOUNT_TRUST)
    )
    finding = Finding(
        id="x", rule="aws.trust.principal_added", severity="critical", cloud="aws",
        scope=OTHER, identity=f"arn:aws:iam::{OTHER}:role/{world.xacct}", summary="s",
        remediation=Remediation(action="restore_trust_policy", status="planned"),
    )  # fmt: skip
    world.proxy.calls.clear()
    for _ in range(2):  # its trust matches: skipped, read through one session
        assert remediator.plan(finding, baseline).status == "skipped"
    assert world.proxy.calls.count("AssumeRole") == 1
    session = remediator._sessions[OTHER]
    now[0] = session.expires - RENEW_BEFORE_S + 1  # about to expire: a new one first
    assert remediator.plan(finding, baseline).status == "skipped"
    assert world.proxy.calls.count("AssumeRole") == 2


# --- trustwatch remediate -------------------------------------------------------------


def test_cli_remediate_dry_run_then_apply(monkeypatch, moto_server, world, tmp_path):
    from trustwatch.cli import main

    for key in [k for k in os.environ if k.startswith(("TRUSTWATCH_", "AWS_"))]:
        monkeypatch.delenv(key)
    for key, value in moto_server.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", world.proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", world.proxy.url)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "state.sqlite"))
    baseline = str(world.write_baseline("remediate"))
    events = tmp_path / "trail.json"
    events.write_text(json.dumps({"Records": [trust_backdoor(world), admin_attached(world)]}))

    def run(*argv: str) -> tuple[int, list[dict[str, Any]]]:
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(list(argv))
        return code, [json.loads(line) for line in out.getvalue().splitlines() if line]

    code, replayed = run("replay", "--baseline", baseline, str(events))
    assert code == 1 and {f["rule"] for f in replayed} >= {
        "aws.trust.principal_added",
        "aws.policy.managed_attached",
    }
    findings = tmp_path / "findings.jsonl"
    findings.write_text("".join(json.dumps(f) + "\n" for f in replayed))
    world.proxy.calls.clear()
    code, planned = run("remediate", "--baseline", baseline, str(findings))
    assert code == 0
    assert {f["remediation"]["status"] for f in planned} == {"planned"}
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert not trust_is_back(world) and world.attached(world.xacct) == [world.admin]
    code, applied = run("remediate", "--baseline", baseline, "--apply", str(findings))
    assert code == 0
    by_rule = {f["rule"]: f["remediation"] for f in applied}
    assert by_rule["aws.trust.principal_added"]["status"] == "applied"
    assert by_rule["aws.policy.managed_attached"]["status"] == "applied"
    assert trust_is_back(world) and world.attached(world.xacct) == []


def test_every_write_the_code_declares_is_exercised():
    """WRITE_ACTIONS (what deploy/aws grants) is exactly what the cases above write."""
    assert {w for case in CASES.values() for w in case.writes} == {
        a.split(":")[1] for a in WRITE_ACTIONS
    }
