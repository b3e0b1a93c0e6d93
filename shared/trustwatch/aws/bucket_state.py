"""The watched buckets' state for sweeps: each bucket read back as the S3 changes the
bucket rules judge (`trustwatch.aws.buckets` payloads, `trustwatch.aws.bucket_rules`).

Per watched bucket, four reads (https://docs.aws.amazon.com/AmazonS3/latest/API/):
- GetBucketPolicy: `bucket.policy_put` with the policy, or `bucket.policy_deleted` when it
  has none (`NoSuchBucketPolicy`);
- GetPublicAccessBlock: `bucket.public_access_block_put` with the four flags, or
  `bucket.public_access_block_deleted` (`NoSuchPublicAccessBlockConfiguration`);
- GetBucketOwnershipControls: `bucket.ownership_controls_put`, or
  `bucket.ownership_controls_deleted` (`OwnershipControlsNotFoundError`: ACLs in force);
- GetBucketAcl: `bucket.acl_put` with its grants and the owner's canonical id.

The account's Block Public Access (S3 Control GetPublicAccessBlock), read once when a
watched bucket requires public access blocked: `account.public_access_block_put` when it
exists. An account without one is not reported: that is no removal, and the buckets' own
blocks are judged one by one.

A bucket that cannot be read (AccessDenied, NoSuchBucket) is an error naming it: its last
findings stay open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustwatch.aws.buckets import (
    AclGrant,
    BucketAclPut,
    BucketPolicyDeleted,
    BucketPolicyPut,
    OwnershipControlsSet,
    PublicAccessBlockDeleted,
    PublicAccessBlockPut,
    bucket_arn,
)

# The actions of these reads (deploy/aws grants them; tests/test_deploy.py checks)
READ_ACTIONS = (
    "s3:GetBucketPolicy",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketAcl",
)
ACCOUNT_READ_ACTION = "s3:GetAccountPublicAccessBlock"

_GRANTEE_KINDS = {"Group": "group", "CanonicalUser": "canonical", "AmazonCustomerByEmail": "email"}
_GRANTEE_VALUE = {"Group": "URI", "CanonicalUser": "ID", "AmazonCustomerByEmail": "EmailAddress"}

# (kind, identity ARN, name, payload)
Emit = Callable[[str, str, str, Any], None]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _flags(bucket: str, config: dict[str, Any]) -> PublicAccessBlockPut:
    return PublicAccessBlockPut(
        bucket,
        block_public_acls=bool(config.get("BlockPublicAcls")),
        ignore_public_acls=bool(config.get("IgnorePublicAcls")),
        block_public_policy=bool(config.get("BlockPublicPolicy")),
        restrict_public_buckets=bool(config.get("RestrictPublicBuckets")),
    )


def read_bucket(s3: Any, partition: str, bucket: str, emit: Emit) -> None:
    """Emit the bucket's four changes (raises on a failed read)."""
    from botocore.exceptions import ClientError

    from trustwatch.aws import policy

    arn = bucket_arn(partition, bucket)
    try:
        text = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if _code(exc) != "NoSuchBucketPolicy":
            raise
        emit("bucket.policy_deleted", arn, bucket, BucketPolicyDeleted(bucket))
    else:
        emit("bucket.policy_put", arn, bucket, BucketPolicyPut(bucket, policy.load_document(text)))
    try:
        config = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        emit("bucket.public_access_block_deleted", arn, bucket, PublicAccessBlockDeleted(bucket))
    else:
        emit("bucket.public_access_block_put", arn, bucket, _flags(bucket, config))
    try:
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    except ClientError as exc:
        if _code(exc) != "OwnershipControlsNotFoundError":
            raise
        emit(
            "bucket.ownership_controls_deleted",
            arn,
            bucket,
            OwnershipControlsSet(bucket, "ObjectWriter"),
        )
    else:
        ownership = str((rules[0] if rules else {}).get("ObjectOwnership") or "ObjectWriter")
        emit("bucket.ownership_controls_put", arn, bucket, OwnershipControlsSet(bucket, ownership))
    acl = s3.get_bucket_acl(Bucket=bucket)
    grants = []
    for grant in acl.get("Grants") or []:
        grantee = grant.get("Grantee") or {}
        kind = str(grantee.get("Type") or "")
        if kind in _GRANTEE_KINDS:
            value = str(grantee.get(_GRANTEE_VALUE[kind]) or "")
            grants.append(AclGrant(_GRANTEE_KINDS[kind], value, str(grant.get("Permission"))))
    owner = str((acl.get("Owner") or {}).get("ID") or "")
    emit("bucket.acl_put", arn, bucket, BucketAclPut(bucket, "", tuple(grants), owner))


def read_account_block(s3control: Any, account: str, emit: Emit) -> None:
    """Emit the account's Block Public Access when it has one."""
    from botocore.exceptions import ClientError

    try:
        config = s3control.get_public_access_block(AccountId=account)[
            "PublicAccessBlockConfiguration"
        ]
    except ClientError as exc:
        if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        return
    subject = f"account {account} S3 public access block"
    emit("account.public_access_block_put", account, subject, _flags("", config))
