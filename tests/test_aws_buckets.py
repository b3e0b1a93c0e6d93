"""Watched S3 buckets: the baseline's `buckets`, the `databricks-root-bucket` template, the
S3 CloudTrail calls (trustwatch.aws.buckets) and the aws.bucket.* rules, must-fire and
must-stay-quiet, in every delivery shape.

Records are the published awsdocs S3 record (tests/data/aws/cloudtrail-s3-deletebucket-
awsdocs.json, MIT-0) with its call and requestParameters replaced by the documented shapes:
- which S3 calls CloudTrail logs as management events (all of these are):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-s3-info.html
- the requestParameters of S3 records (bucketPolicy logged as a JSON object, x-amz-acl and
  grant headers as lists, AccessControlPolicy as the XML body turned into JSON):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-understanding-s3-entries.html
- bucket policy examples (Principal "*" with aws:SourceVpce / aws:SourceIp, cross-account):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html
- Block Public Access, its four flags and "The meaning of public":
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutPublicAccessBlock.html (a flag left
  out of the configuration is false) and the account-level S3 Control call
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_PutPublicAccessBlock.html
- ACLs, canned ACLs and the AllUsers / AuthenticatedUsers groups:
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html
- Object Ownership (only BucketOwnerEnforced disables ACLs):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from awsevents import ACCOUNT, ALICE, ATTACKER_ROOT, DATABRICKS, envelope, load
from conftest import DATA, EXAMPLE_BASELINE
from trustwatch.aws import buckets, templates
from trustwatch.aws.events import watched_operations
from trustwatch.baseline import BaselineError, parse_baseline
from trustwatch.engine import evaluate
from trustwatch.intake import parse_document

ROOT = "abc"  # the provider tests' bucket: tests/data/aws/policies/ documents name it
DATA_BUCKET = "dbx-uc-data"  # a literal-policy bucket
OPEN_BUCKET = "dbx-public-site"  # public_access_block: ignore
OTHER = "someone-elses-bucket"  # not in the baseline
OTHER_ACCOUNT = "444455556666"
POLICIES = DATA / "aws" / "policies"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/databricks-cross-account"
E2_ACCOUNT = "my_e2_account_id"

BUCKETS_YAML = f"""\
      buckets:
        {ROOT}:
          mode: remediate
          policy:
            template: databricks-root-bucket
        {DATA_BUCKET}:
          policy:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Principal: {{AWS: "{ROLE_ARN}"}}
                Action: ["s3:GetObject", "s3:ListBucket"]
                Resource: ["arn:aws:s3:::{DATA_BUCKET}", "arn:aws:s3:::{DATA_BUCKET}/*"]
              - Effect: Deny
                Principal: "*"
                Action: "s3:*"
                Resource: ["arn:aws:s3:::{DATA_BUCKET}", "arn:aws:s3:::{DATA_BUCKET}/*"]
                Condition: {{Bool: {{"aws:SecureTransport": "false"}}}}
        {OPEN_BUCKET}:
          public_access_block: ignore
"""
UNTRACKED = "      untracked_roles: alert"


def baseline_text(buckets_yaml: str = BUCKETS_YAML, partition: str = "aws") -> str:
    text = EXAMPLE_BASELINE.read_text()
    line = next(li for li in text.splitlines() if li.startswith(UNTRACKED))
    text = text.replace(line, line + "\n" + buckets_yaml.rstrip("\n"), 1)
    return text.replace("partition: aws ", f"partition: {partition} ", 1)


@pytest.fixture(scope="module")
def watched():
    return parse_baseline(baseline_text())


def s3_call(name: str, params: dict[str, Any], account: str = ACCOUNT, **extra: Any):
    """The awsdocs S3 record with its call and parameters replaced."""
    record = copy.deepcopy(load("cloudtrail-s3-deletebucket-awsdocs"))
    record.update(
        eventName=name,
        requestParameters=params,
        recipientAccountId=account,
        userIdentity=copy.deepcopy(ALICE),
        eventID=f"evt-{name}-{abs(hash(json.dumps(params, sort_keys=True))) % 10**8}",
        awsRegion="us-east-1",
    )
    record.update(extra)
    return record


def put_policy(bucket: str, doc: Any, **extra: Any) -> dict[str, Any]:
    return s3_call(
        "PutBucketPolicy", {"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com",
                            "bucketPolicy": doc, "policy": [""]}, **extra,
    )  # fmt: skip


def provider_doc(name: str = "terraform-provider-root-bucket") -> dict[str, Any]:
    return json.loads((POLICIES / f"{name}.json").read_text())


def with_statement(doc: dict[str, Any], *statements: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["Statement"] = [*out["Statement"], *statements]
    return out


def grant(principal: Any, action: Any = "s3:GetObject", bucket: str = ROOT, **more: Any):
    stmt = {"Effect": "Allow", "Principal": principal, "Action": action,
            "Resource": f"arn:aws:s3:::{bucket}/*"}  # fmt: skip
    stmt.update(more)
    return stmt


def pab(**flags: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"xmlns": "http://s3.amazonaws.com/doc/2006-03-01/"}
    config.update(flags)
    return config


ALL_ON = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
          "RestrictPublicBuckets": True}  # fmt: skip
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
OWNER_ID = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OTHER_CANONICAL = "be1ebab5a6b6ae2a0a1e0e9b7df1a9cae10f7f4b2a8c1b2e3d4f5a6b7c8d9e0f"


def acl_body(*grants: tuple[str, str, str], owner: str = OWNER_ID) -> dict[str, Any]:
    """An AccessControlPolicy as CloudTrail logs the XML body: (type, value, permission)."""
    listed = []
    for kind, value, permission in grants:
        grantee = {"xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance", "xsi:type": kind}
        grantee["URI" if kind == "Group" else "ID"] = value
        listed.append({"Grantee": grantee, "Permission": permission})
    return {
        "AccessControlList": {"Grant": listed[0] if len(listed) == 1 else listed},
        "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
        "Owner": {"ID": owner},
    }


OWNER_ONLY = ("CanonicalUser", OWNER_ID, "FULL_CONTROL")

SHAPES = {
    "bare": lambda r: r,
    "eventbridge": envelope,
    "log file": lambda r: {"Records": [r]},
}


def findings(record: Any, baseline: Any) -> list[Any]:
    out = []
    for parsed in parse_document(record, "test"):
        assert parsed.error is None, parsed.error
        for change in parsed.changes:
            out.extend(evaluate(change, baseline))
    return out


# ---------------------------------------------------------------- must fire

FIRE = [
    # --- bucket policy widened ---
    ("public GetObject added to the root bucket",
     put_policy(ROOT, with_statement(provider_doc(), grant("*"))),
     "aws.bucket.policy_widened", "critical"),
    ('{"AWS": "*"} as JSON text',
     put_policy(ROOT, json.dumps(with_statement(provider_doc(), grant({"AWS": "*"})))),
     "aws.bucket.policy_widened", "critical"),
    ("Allow with NotPrincipal: everyone but one role",
     put_policy(ROOT, with_statement(provider_doc(), {
         "Effect": "Allow", "NotPrincipal": {"AWS": ROLE_ARN}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{ROOT}/*"})),
     "aws.bucket.policy_widened", "critical"),
    ('"*" with an IfExists condition does not narrow (absent key passes)',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1a2b3c4d"}}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" with aws:SourceIp 0.0.0.0/1 (half the internet)',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"IpAddress": {"aws:SourceIp": ["0.0.0.0/1", "128.0.0.0/1"]}}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" with a wildcarded aws:SourceVpce',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"StringLike": {"aws:SourceVpce": "vpce-*"}}))),
     "aws.bucket.policy_widened", "critical"),
    ("foreign account root (the stratus backdoor shape)",
     put_policy(ROOT, with_statement(provider_doc(), grant(
         {"AWS": ATTACKER_ROOT}, ["s3:GetObject", "s3:GetBucketLocation", "s3:ListBucket"]))),
     "aws.bucket.policy_widened", "critical"),
    ("foreign account as a bare 12-digit id",
     put_policy(ROOT, with_statement(provider_doc(), grant({"AWS": OTHER_ACCOUNT}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" pinned by aws:PrincipalAccount to a foreign account',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"StringEquals": {"aws:PrincipalAccount": OTHER_ACCOUNT}}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" narrowed by an aws:PrincipalArn pattern over every account',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/reader"}}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" pinned by aws:PrincipalOrgID: other organizations\' accounts reach it (critical: no org is proven ours)',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}))),
     "aws.bucket.policy_widened", "critical"),
    ('"*" with ForAllValues (true when the key is absent) does not pin',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"ForAllValues:StringEquals": {"aws:SourceVpce": ["vpce-1a2b3c4d"]}}))),
     "aws.bucket.policy_widened", "critical"),
    ("CanonicalUser principal",
     put_policy(ROOT, with_statement(provider_doc(), grant({"CanonicalUser": OTHER_CANONICAL}))),
     "aws.bucket.policy_widened", "critical"),
    ("Databricks' account given s3:* (more than the template)",
     put_policy(ROOT, with_statement(provider_doc(), grant(
         {"AWS": f"arn:aws:iam::{DATABRICKS}:root"}, "s3:*"))),
     "aws.bucket.policy_widened", "critical"),
    ("own-account role given PutBucketPolicy: widened, not public",
     put_policy(ROOT, with_statement(provider_doc(), grant(
         {"AWS": ROLE_ARN}, "s3:PutBucketPolicy", Resource=f"arn:aws:s3:::{ROOT}"))),
     "aws.bucket.policy_widened", "high"),
    ('"*" pinned to a VPC endpoint: widened, not public (S3\'s own test)',
     put_policy(ROOT, with_statement(provider_doc(), grant(
         "*", Condition={"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}))),
     "aws.bucket.policy_widened", "high"),
    ("literal baseline: the TLS-only Deny dropped",
     put_policy(DATA_BUCKET, {"Version": "2012-10-17", "Statement": [grant(
         {"AWS": ROLE_ARN}, ["s3:GetObject", "s3:ListBucket"], bucket=DATA_BUCKET,
         Resource=[f"arn:aws:s3:::{DATA_BUCKET}", f"arn:aws:s3:::{DATA_BUCKET}/*"])]}),
     "aws.bucket.policy_widened", "high"),
    ("literal baseline: the role gets s3:PutObject",
     put_policy(DATA_BUCKET, with_statement(
         {"Version": "2012-10-17", "Statement": []},
         grant({"AWS": ROLE_ARN}, "s3:PutObject", bucket=DATA_BUCKET))),
     "aws.bucket.policy_widened", "high"),
    ("ACL grants another account's canonical id (header)",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "acl": [""],
                              "x-amz-grant-write": [f'id="{OTHER_CANONICAL}"']}),
     "aws.bucket.policy_widened", "critical"),
    ("ACL grants another account's canonical id (body)",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "acl": [""], "AccessControlPolicy": acl_body(
         OWNER_ONLY, ("CanonicalUser", OTHER_CANONICAL, "READ"))}),
     "aws.bucket.policy_widened", "critical"),
    ("ACL grant header to an email address (another account)",
     s3_call("PutBucketAcl", {"bucketName": ROOT,
                              "x-amz-grant-read-acp": ['emailAddress="xyz@example.com"']}),
     "aws.bucket.policy_widened", "critical"),
    # --- policy removed ---
    ("root bucket policy deleted: Databricks loses access",
     s3_call("DeleteBucketPolicy", {"bucketName": ROOT, "policy": [""]}),
     "aws.bucket.policy_removed", "medium"),
    ("literal-policy bucket's policy deleted",
     s3_call("DeleteBucketPolicy", {"bucketName": DATA_BUCKET, "policy": [""]}),
     "aws.bucket.policy_removed", "medium"),
    # --- public access opened ---
    ("bucket block public access: BlockPublicPolicy off",
     s3_call("PutBucketPublicAccessBlock", {"bucketName": ROOT, "publicAccessBlock": [""],
             "PublicAccessBlockConfiguration": pab(**{**ALL_ON, "BlockPublicPolicy": False})}),
     "aws.bucket.public_access_opened", "critical"),
    ("bucket block public access: a flag left out is false",
     s3_call("PutBucketPublicAccessBlock", {"bucketName": ROOT, "PublicAccessBlockConfiguration":
             pab(BlockPublicAcls=True, IgnorePublicAcls=True, BlockPublicPolicy=True)}),
     "aws.bucket.public_access_opened", "critical"),
    ("bucket block public access: flags logged as text",
     s3_call("PutBucketPublicAccessBlock", {"bucketName": DATA_BUCKET,
             "PublicAccessBlockConfiguration": pab(**{**ALL_ON, "IgnorePublicAcls": "false"})}),
     "aws.bucket.public_access_opened", "critical"),
    ("bucket block public access deleted",
     s3_call("DeleteBucketPublicAccessBlock", {"bucketName": ROOT, "publicAccessBlock": [""]}),
     "aws.bucket.public_access_opened", "critical"),
    ("account block public access: RestrictPublicBuckets off (S3 Control)",
     s3_call("PutAccountPublicAccessBlock", {
         "Host": f"{ACCOUNT}.s3-control.us-east-1.amazonaws.com",
         "PublicAccessBlockConfiguration": pab(**{**ALL_ON, "RestrictPublicBuckets": False})}),
     "aws.bucket.public_access_opened", "critical"),
    ("account block public access deleted",
     s3_call("DeleteAccountPublicAccessBlock",
             {"Host": f"{ACCOUNT}.s3-control.us-east-1.amazonaws.com"}),
     "aws.bucket.public_access_opened", "critical"),
    ("canned ACL public-read",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "acl": [""], "x-amz-acl": ["public-read"]}),
     "aws.bucket.public_access_opened", "critical"),
    ("canned ACL authenticated-read (any AWS account)",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "x-amz-acl": ["authenticated-read"]}),
     "aws.bucket.public_access_opened", "critical"),
    ("grant header to AllUsers",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "x-amz-grant-read": [f'uri="{ALL_USERS}"']}),
     "aws.bucket.public_access_opened", "critical"),
    ("ACL body grants AuthenticatedUsers",
     s3_call("PutBucketAcl", {"bucketName": ROOT, "acl": [""], "AccessControlPolicy": acl_body(
         OWNER_ONLY, ("Group", AUTH_USERS, "READ_ACP"))}),
     "aws.bucket.public_access_opened", "critical"),
    ("ACLs re-enabled: ObjectWriter",
     s3_call("PutBucketOwnershipControls", {"bucketName": ROOT, "ownershipControls": [""],
             "OwnershipControls": {"Rule": {"ObjectOwnership": "ObjectWriter"}}}),
     "aws.bucket.public_access_opened", "critical"),
    ("ACLs re-enabled: BucketOwnerPreferred",
     s3_call("PutBucketOwnershipControls", {"bucketName": ROOT,
             "OwnershipControls": {"Rule": [{"ObjectOwnership": "BucketOwnerPreferred"}]}}),
     "aws.bucket.public_access_opened", "critical"),
    ("ownership controls deleted: ACLs back",
     s3_call("DeleteBucketOwnershipControls", {"bucketName": ROOT, "ownershipControls": [""]}),
     "aws.bucket.public_access_opened", "critical"),
]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("label", "record", "rule", "severity"), FIRE, ids=[c[0] for c in FIRE])
def test_fires(watched, label, record, rule, severity, shape) -> None:
    found = findings(SHAPES[shape](copy.deepcopy(record)), watched)
    assert [(f.rule, f.severity) for f in found] == [(rule, severity)], label


def test_public_acl_grant_with_a_foreign_grant_fires_both(watched) -> None:
    record = s3_call("PutBucketAcl", {"bucketName": ROOT, "AccessControlPolicy": acl_body(
        OWNER_ONLY, ("Group", ALL_USERS, "READ"), ("CanonicalUser", OTHER_CANONICAL, "WRITE"))})  # fmt: skip
    assert sorted(f.rule for f in findings(record, watched)) == [
        "aws.bucket.policy_widened",
        "aws.bucket.public_access_opened",
    ]


def test_widened_finding_says_what_and_to_whom(watched) -> None:
    (finding,) = findings(put_policy(ROOT, with_statement(provider_doc(), grant(
        {"AWS": ATTACKER_ROOT}))), watched)  # fmt: skip
    assert finding.identity == f"arn:aws:s3:::{ROOT}"
    assert ATTACKER_ROOT in finding.summary and "another account" in finding.summary
    assert finding.actual == [{"action": "s3:getobject", "effect": "Allow",
                               "principal": ATTACKER_ROOT, "resource": f"arn:aws:s3:::{ROOT}/*"}]  # fmt: skip
    assert finding.expected == templates.root_bucket_policy(ROOT)
    assert finding.remediation.action == "restore_bucket_policy"
    assert finding.remediation.status == "planned"  # the bucket's mode: remediate


def test_removed_root_bucket_policy_says_databricks_loses_access(watched) -> None:
    (finding,) = findings(s3_call("DeleteBucketPolicy", {"bucketName": ROOT}), watched)
    assert "Databricks loses access" in finding.summary
    (other,) = findings(s3_call("DeleteBucketPolicy", {"bucketName": DATA_BUCKET}), watched)
    assert "Databricks" not in other.summary


def test_account_block_names_the_watched_buckets(watched) -> None:
    (finding,) = findings(s3_call("DeleteAccountPublicAccessBlock", {}), watched)
    assert finding.identity == ACCOUNT
    assert ROOT in finding.summary and DATA_BUCKET in finding.summary
    assert OPEN_BUCKET not in finding.summary  # public_access_block: ignore


def test_attacker_strings_stay_data(watched) -> None:
    """A principal is the attacker's text: it reaches the finding as given, for the one
    rendering path to escape (never interpreted here)."""
    evil = "arn:aws:iam::444455556666:role/<script>x</script>"
    (finding,) = findings(put_policy(ROOT, with_statement(provider_doc(), grant(
        {"AWS": evil}))), watched)  # fmt: skip
    assert finding.severity == "critical" and evil in finding.summary


# ---------------------------------------------------------------- must stay quiet


def _reformatted() -> dict[str, Any]:
    """The provider's policy as a person might re-type it: one statement object, the
    account as a bare id, actions in another order and case, Resource as a list, no Sid."""
    return {
        "Statement": {
            "Principal": {"AWS": DATABRICKS},
            "Resource": [f"arn:aws:s3:::{ROOT}", f"arn:aws:s3:::{ROOT}/*"],
            "Action": ["s3:getbucketlocation", "S3:ListBucket", "s3:DeleteObject",
                       "s3:PutObject", "s3:GetObjectVersion", "s3:GetObject"],
            "Effect": "Allow",
        },
        "Version": "2012-10-17",
    }  # fmt: skip


QUIET = [
    ("provider policy re-applied (object)", put_policy(ROOT, provider_doc())),
    ("provider policy re-applied, byte-identical text",
     put_policy(ROOT, (POLICIES / "terraform-provider-root-bucket.json").read_text())),
    ("provider policy re-applied, compact text",
     put_policy(ROOT, json.dumps(provider_doc(), separators=(",", ":")))),
    ("provider policy reformatted", put_policy(ROOT, _reformatted())),
    ("provider policy with the e2 account condition (stricter)",
     put_policy(ROOT, provider_doc("terraform-provider-root-bucket-e2-account"))),
    ("stricter: fewer actions",
     put_policy(ROOT, {"Version": "2012-10-17", "Statement": [grant(
         {"AWS": f"arn:aws:iam::{DATABRICKS}:root"}, ["s3:GetObject", "s3:ListBucket"],
         Resource=[f"arn:aws:s3:::{ROOT}", f"arn:aws:s3:::{ROOT}/*"])]})),
    ("stricter: a TLS-only Deny added",
     put_policy(ROOT, with_statement(provider_doc(), {
         "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{ROOT}", f"arn:aws:s3:::{ROOT}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))),
    ("stricter: a source-VPC condition on Databricks' grant",
     put_policy(ROOT, {"Version": "2012-10-17", "Statement": [dict(
         provider_doc()["Statement"][0],
         Condition={"StringEquals": {"aws:SourceVpc": "vpc-0a1b2c3d"}})]})),
    ("literal baseline re-applied, statements reordered",
     put_policy(DATA_BUCKET, {"Statement": [
         {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["s3:*"],
          "Resource": [f"arn:aws:s3:::{DATA_BUCKET}/*", f"arn:aws:s3:::{DATA_BUCKET}"],
          "Condition": {"Bool": {"aws:SecureTransport": False}}},
         grant({"AWS": ROLE_ARN}, ["s3:ListBucket", "s3:GetObject"], bucket=DATA_BUCKET,
               Resource=[f"arn:aws:s3:::{DATA_BUCKET}/*", f"arn:aws:s3:::{DATA_BUCKET}"])]})),
    ("unrelated bucket made public", put_policy(OTHER, {"Version": "2012-10-17",
     "Statement": [grant("*", bucket=OTHER)]})),
    ("same bucket name in another account",
     put_policy(ROOT, with_statement(provider_doc(), grant("*")), account=OTHER_ACCOUNT)),
    ("bucket name in another case is another bucket",
     put_policy(ROOT.upper(), with_statement(provider_doc(), grant("*")))),
    ("failed PutBucketPolicy (AccessDenied)",
     put_policy(ROOT, with_statement(provider_doc(), grant("*")), errorCode="AccessDenied",
                errorMessage="Access Denied")),
    ("block public access all on", s3_call("PutBucketPublicAccessBlock", {
        "bucketName": ROOT, "PublicAccessBlockConfiguration": pab(**ALL_ON)})),
    ("account block public access all on", s3_call("PutAccountPublicAccessBlock", {
        "PublicAccessBlockConfiguration": pab(**ALL_ON)})),
    ("account block deleted where no bucket is watched",
     s3_call("DeleteAccountPublicAccessBlock", {}, account=OTHER_ACCOUNT)),
    ("public_access_block: ignore", s3_call("DeleteBucketPublicAccessBlock",
                                            {"bucketName": OPEN_BUCKET})),
    ("ignore bucket: public ACL", s3_call("PutBucketAcl", {"bucketName": OPEN_BUCKET,
                                                           "x-amz-acl": ["public-read"]})),
    ("unrelated bucket: block deleted", s3_call("DeleteBucketPublicAccessBlock",
                                                {"bucketName": OTHER})),
    ("ownership BucketOwnerEnforced", s3_call("PutBucketOwnershipControls", {
        "bucketName": ROOT, "OwnershipControls": {"Rule": {"ObjectOwnership": "BucketOwnerEnforced"}}})),
    ("canned ACL private", s3_call("PutBucketAcl", {"bucketName": ROOT, "x-amz-acl": ["private"]})),
    ("ACL body: the owner only", s3_call("PutBucketAcl", {
        "bucketName": ROOT, "AccessControlPolicy": acl_body(OWNER_ONLY)})),
    ("ACL: S3 log delivery group", s3_call("PutBucketAcl", {
        "bucketName": ROOT, "AccessControlPolicy": acl_body(
            OWNER_ONLY, ("Group", "http://acs.amazonaws.com/groups/s3/LogDelivery", "WRITE"))})),
    ("policy deleted on a bucket with no expected policy",
     s3_call("DeleteBucketPolicy", {"bucketName": OPEN_BUCKET})),
    ("deny-only policy on a bucket with no expected policy",
     put_policy(OPEN_BUCKET, {"Version": "2012-10-17", "Statement": [{
         "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
         "Resource": f"arn:aws:s3:::{OPEN_BUCKET}"}]})),
    ("an S3 call not watched (DeleteBucket, the awsdocs sample as published)",
     load("cloudtrail-s3-deletebucket-awsdocs")),
]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("label", "record"), QUIET, ids=[c[0] for c in QUIET])
def test_stays_quiet(watched, label, record, shape) -> None:
    assert findings(SHAPES[shape](copy.deepcopy(record)), watched) == [], label


def test_public_policy_on_an_ignore_bucket_still_fires(watched) -> None:
    """`public_access_block: ignore` lets the settings be off; the policy still compares."""
    found = findings(put_policy(OPEN_BUCKET, {"Version": "2012-10-17",
                                              "Statement": [grant("*", bucket=OPEN_BUCKET)]}),
                     watched)  # fmt: skip
    assert [(f.rule, f.severity) for f in found] == [("aws.bucket.policy_widened", "critical")]


# ---------------------------------------------------------------- template variants


def test_full_access_role_is_granted_instead_of_databricks() -> None:
    """With full_access_role the provider grants that role *instead of* Databricks'
    account: the provider's default document is then a widening to a foreign account."""
    baseline = parse_baseline(baseline_text(f"""\
      buckets:
        {ROOT}:
          policy:
            template: databricks-root-bucket
            full_access_role: {ROLE_ARN}
"""))  # fmt: skip
    role_doc = templates.root_bucket_policy(ROOT, full_access_role=ROLE_ARN)
    assert findings(put_policy(ROOT, role_doc), baseline) == []
    found = findings(put_policy(ROOT, provider_doc()), baseline)
    assert [(f.rule, f.severity) for f in found] == [("aws.bucket.policy_widened", "critical")]


def test_e2_account_condition_dropped_is_a_widening() -> None:
    baseline = parse_baseline(baseline_text(f"""\
      buckets:
        {ROOT}:
          policy:
            template: databricks-root-bucket
            databricks_e2_account_id: {E2_ACCOUNT}
"""))  # fmt: skip
    assert findings(put_policy(ROOT, provider_doc("terraform-provider-root-bucket-e2-account")),
                    baseline) == []  # fmt: skip
    found = findings(put_policy(ROOT, provider_doc()), baseline)
    assert [f.rule for f in found] == ["aws.bucket.policy_widened"]


@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-us-gov-dod"])
def test_gov_partitions_compare_against_their_own_document(partition) -> None:
    baseline = parse_baseline(baseline_text(partition=partition))
    gov = provider_doc(f"terraform-provider-root-bucket-{partition}")
    assert findings(put_policy(ROOT, gov), baseline) == []
    commercial = provider_doc()  # Databricks' commercial account is another account there
    assert [f.rule for f in findings(put_policy(ROOT, commercial), baseline)] == [
        "aws.bucket.policy_widened"
    ]


@pytest.mark.parametrize(
    ("name", "kwargs", "length"),
    [
        # the lengths the provider's aws/data_aws_bucket_policy_test.go asserts @ 684f4424
        ("terraform-provider-root-bucket", {}, 440),
        ("terraform-provider-root-bucket-full-access-role", {"full_access_role": "bcd"}, 413),
        ("terraform-provider-root-bucket-e2-account", {"databricks_e2_account_id": E2_ACCOUNT}, 575),
        ("terraform-provider-root-bucket-aws-us-gov", {"partition": "aws-us-gov"}, 461),
        ("terraform-provider-root-bucket-aws-us-gov-dod", {"partition": "aws-us-gov-dod"}, 461),
    ],
)  # fmt: skip
def test_template_is_the_providers_output(name, kwargs, length) -> None:
    doc = templates.root_bucket_policy("abc", **kwargs)
    assert doc == provider_doc(name)
    assert len(json.dumps(doc, indent=2)) == length  # Go's json.MarshalIndent, two spaces


# ---------------------------------------------------------------- baseline


@pytest.mark.parametrize(
    ("bucket_yaml", "message"),
    [
        ("Root_Bucket!:\n          public_access_block: required",
         "buckets: bucket name 'Root_Bucket!' is not an S3 bucket name"),
        ("ab:\n          public_access_block: required", "bucket name 'ab' is not"),
        ("root-b:\n          public_access_block: maybe",
         "buckets.root-b.public_access_block: expected 'required' or 'ignore', got 'maybe'"),
        ("root-b:\n          policy:\n            template: databricks-crossaccount-policy",
         "line 54: aws.accounts.111122223333.buckets.root-b.policy: "
         "'databricks-crossaccount-policy' is not a bucket "
         "policy template; expected one of: databricks-root-bucket"),
        ("root-b:\n          policy:\n            template: databricks-root-bucket\n"
         "            external_id: x",
         "template 'databricks-root-bucket' takes no external_id"),
        ("root-b:\n          policy:\n            template: databricks-root-bucket\n"
         "            full_access_role: bcd",
         "full_access_role 'bcd' is not an IAM role or user ARN"),
        ("root-b:\n          policy:\n            Version: '2012-10-17'",
         "a literal policy document needs a 'Statement'"),
        ("root-b:\n          policy: '{not json'", "policy document is not valid JSON"),
        ("root-b:\n          policy: {}\n          publik: true", "publik"),
    ],
)  # fmt: skip
def test_baseline_errors_are_precise(bucket_yaml, message) -> None:
    with pytest.raises(BaselineError) as exc:
        parse_baseline(baseline_text("      buckets:\n        " + bucket_yaml + "\n"))
    text = str(exc.value)
    assert message in text, text
    assert "aws.accounts.111122223333.buckets" in text and "line " in text


def test_legacy_bucket_names_are_accepted_and_compared_exactly() -> None:
    """us-east-1 buckets made before March 2018 may have capitals; S3 never folds case."""
    baseline = parse_baseline(baseline_text("      buckets:\n        Legacy.Bucket_1: {}\n"))
    assert list(baseline.aws.accounts[ACCOUNT].buckets) == ["Legacy.Bucket_1"]
    record = s3_call("DeleteBucketPublicAccessBlock", {"bucketName": "legacy.bucket_1"})
    assert findings(record, baseline) == []
    record = s3_call("DeleteBucketPublicAccessBlock", {"bucketName": "Legacy.Bucket_1"})
    assert [f.rule for f in findings(record, baseline)] == ["aws.bucket.public_access_opened"]


# ---------------------------------------------------------------- events


def test_every_watched_s3_call_is_routed_and_read() -> None:
    names = watched_operations()["s3.amazonaws.com"]
    assert set(names) == set(buckets.S3_KINDS)
    assert {"PutAccountPublicAccessBlock", "DeleteAccountPublicAccessBlock"} <= set(names)


def test_policy_as_object_or_text_is_one_change() -> None:
    doc = with_statement(provider_doc(), grant("*"))
    (a,) = next(iter(parse_document(put_policy(ROOT, doc), "t"))).changes
    (b,) = next(iter(parse_document(put_policy(ROOT, json.dumps(doc)), "t"))).changes
    assert a.payload == b.payload
    assert a.payload_as(buckets.BucketPolicyPut).bucket == ROOT
    assert a.kind == "bucket.policy_put" and a.scope == ACCOUNT


@pytest.mark.parametrize(
    ("name", "params", "error"),
    [
        ("PutBucketPolicy", {"bucketName": ROOT, "bucketPolicy": 7}, "bucketPolicy is a int"),
        ("PutBucketPolicy", {"bucketName": ROOT, "bucketPolicy": "{nope"}, "bucketPolicy"),
        ("PutBucketPolicy", {"bucketName": ROOT}, "requestParameters.bucketPolicy missing"),
        ("DeleteBucketPolicy", {"bucketName": ""}, "bucketName is not a bucket name"),
        ("PutBucketPublicAccessBlock", {"bucketName": ROOT},
         "requestParameters.PublicAccessBlockConfiguration missing"),
        ("PutBucketPublicAccessBlock", {"bucketName": ROOT, "PublicAccessBlockConfiguration":
                                        {"BlockPublicAcls": "maybe"}}, "expected a boolean"),
        ("PutBucketOwnershipControls", {"bucketName": ROOT, "OwnershipControls": {}},
         "has no ObjectOwnership"),
        ("PutBucketAcl", {"bucketName": ROOT}, "requestParameters.AccessControlPolicy missing"),
        ("PutBucketAcl", {"bucketName": ROOT, "x-amz-grant-read": ["nobody"]},
         "unreadable grantee"),
    ],
)  # fmt: skip
def test_malformed_records_fail_loudly(name, params, error) -> None:
    (parsed,) = parse_document(s3_call(name, params), "t")
    assert parsed.error is not None and error in str(parsed.error), parsed


def test_failed_call_without_parameters_is_skipped() -> None:
    record = s3_call("PutBucketPolicy", {"bucketName": ROOT}, errorCode="AccessDenied")
    (parsed,) = parse_document(record, "t")
    assert parsed.error is None and parsed.changes == []
    assert parsed.skipped is not None and "AccessDenied" in parsed.skipped.reason


def test_unwatched_s3_call_is_skipped_by_name() -> None:
    (parsed,) = parse_document(load("eventbridge-cloudtrail-s3-createbucket-c7n"), "t")
    assert parsed.changes == [] and "CreateBucket: not a watched S3 call" in parsed.skipped.reason
