"""S3 CloudTrail records for watched buckets -> Changes with typed payloads (declared here).

`trustwatch.aws.events.parse` hands every `eventSource` "s3.amazonaws.com" record here. The
calls read are bucket-level and account-level *management* events (CloudTrail logs them
with a trail's default settings; object reads and writes are data events and never come
here): https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-s3-info.html
The account-level Block Public Access calls go to the S3 Control endpoint
(`<account>.s3-control.<region>.amazonaws.com`) but are logged with eventSource
s3.amazonaws.com, as PutAccountPublicAccessBlock / DeleteAccountPublicAccessBlock.

What each record says of the after-state, from its requestParameters:
- PutBucketPolicy: `bucketPolicy`, the whole new policy. CloudTrail logs it as a JSON
  object (it parses the request body); some producers hand it over as JSON text. Both are
  read by `policy.load_document`.
- PutBucketAcl: a canned ACL (`x-amz-acl`, a list of one string), grant headers
  (`x-amz-grant-read` ... : `uri="..."`, `id="..."`, `emailAddress="..."`, comma separated)
  or the body `AccessControlPolicy.AccessControlList.Grant` (one object or a list; each
  `Grantee` has `xsi:type` Group/CanonicalUser/AmazonCustomerByEmail and `URI`/`ID`/
  `EmailAddress`) with the owner in `AccessControlPolicy.Owner.ID`.
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketAcl.html
- Put(Bucket|Account)PublicAccessBlock: `PublicAccessBlockConfiguration` with the four
  flags. The call *replaces* the configuration: a flag left out is false.
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutPublicAccessBlock.html
- PutBucketOwnershipControls: `OwnershipControls.Rule.ObjectOwnership`; only
  BucketOwnerEnforced disables ACLs. DeleteBucketOwnershipControls removes the setting,
  which leaves ACLs in force (ObjectWriter).
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html
"""

from __future__ import annotations

import re
from typing import Any

from trustwatch.aws.events import cloudtrail_change, record_context
from trustwatch.changes import Change, EventError, Skipped
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str
from trustwatch.frozen import frozen

# eventName -> change kind
S3_KINDS = {
    "PutBucketPolicy": "bucket.policy_put",
    "DeleteBucketPolicy": "bucket.policy_deleted",
    "PutBucketAcl": "bucket.acl_put",
    "PutBucketPublicAccessBlock": "bucket.public_access_block_put",
    "DeleteBucketPublicAccessBlock": "bucket.public_access_block_deleted",
    "PutAccountPublicAccessBlock": "account.public_access_block_put",
    "DeleteAccountPublicAccessBlock": "account.public_access_block_deleted",
    "PutBucketOwnershipControls": "bucket.ownership_controls_put",
    "DeleteBucketOwnershipControls": "bucket.ownership_controls_deleted",
}
SOURCE = "s3.amazonaws.com"

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
PUBLIC_GROUPS = (ALL_USERS, AUTHENTICATED_USERS)
# Canned ACLs that grant AllUsers / AuthenticatedUsers
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html#canned-acl).
PUBLIC_CANNED_ACLS = {
    "public-read": ALL_USERS,
    "public-read-write": ALL_USERS,
    "authenticated-read": AUTHENTICATED_USERS,
}
FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


# ---------------------------------------------------------------- payloads


@frozen(slots=True)
class BucketPolicyPut:
    """PutBucketPolicy: the whole new policy, as loaded (a dict: the rules only read it)."""

    bucket: str
    policy: dict[str, Any]


@frozen(slots=True)
class BucketPolicyDeleted:
    bucket: str


@frozen(slots=True)
class AclGrant:
    """One ACL grant: grantee kind ("group", "canonical", "email") and value, permission."""

    kind: str
    grantee: str  # a group URI, a canonical user id or an email address, as logged
    permission: str  # READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL


@frozen(slots=True)
class BucketAclPut:
    """PutBucketAcl: the canned ACL and/or explicit grants; `owner` is the canonical id of
    the bucket owner when the request body names it ("" otherwise)."""

    bucket: str
    canned_acl: str
    grants: tuple[AclGrant, ...]
    owner: str


@frozen(slots=True)
class PublicAccessBlockPut:
    """Put(Bucket|Account)PublicAccessBlock: the four flags as set (`bucket` "" for the
    account). A flag the request leaves out is False: the call replaces the configuration."""

    bucket: str
    block_public_acls: bool
    ignore_public_acls: bool
    block_public_policy: bool
    restrict_public_buckets: bool

    @property
    def turned_off(self) -> tuple[str, ...]:
        values = (
            self.block_public_acls,
            self.ignore_public_acls,
            self.block_public_policy,
            self.restrict_public_buckets,
        )
        return tuple(flag for flag, on in zip(FLAGS, values, strict=True) if not on)


@frozen(slots=True)
class PublicAccessBlockDeleted:
    bucket: str  # "" for the account-level block


@frozen(slots=True)
class OwnershipControlsSet:
    """Put/DeleteBucketOwnershipControls: the object ownership now in force ("ObjectWriter"
    after a delete)."""

    bucket: str
    object_ownership: str

    @property
    def acls_enabled(self) -> bool:
        return self.object_ownership != "BucketOwnerEnforced"


Payload = (
    BucketPolicyPut
    | BucketPolicyDeleted
    | BucketAclPut
    | PublicAccessBlockPut
    | PublicAccessBlockDeleted
    | OwnershipControlsSet
)


# ---------------------------------------------------------------- parsing


def watched_operations() -> tuple[str, ...]:
    return tuple(S3_KINDS)


def is_public_group(uri: str) -> bool:
    """AllUsers or AuthenticatedUsers, however the URI is spelled (scheme, case, a slash)."""
    path = uri.strip().lower().rstrip("/").split("://", 1)[-1]
    return path in ("acs.amazonaws.com/groups/global/allusers",
                    "acs.amazonaws.com/groups/global/authenticatedusers")  # fmt: skip


def bucket_arn(partition: str, bucket: str) -> str:
    return f"arn:{partition}:s3:::{bucket}"


def parse(record: dict[str, Any], envelope_account: str = "") -> list[Change] | Skipped:
    """One CloudTrail record of eventSource s3.amazonaws.com (an envelope already unwrapped)."""
    name = _str(record.get("eventName"))
    event_id = _str(record.get("eventID"))
    kind = S3_KINDS.get(name)
    if kind is None:
        return Skipped(f"{name}: not a watched S3 call", event_id, name)
    _, account, partition = record_context(record, envelope_account)
    params = _dict(record, "requestParameters")
    error_code = _str(record.get("errorCode"))
    try:
        payload = _payload(kind, params)
    except KeyError as exc:
        if error_code:
            return Skipped(f"{name} failed ({error_code}) without parameters", event_id, name)
        raise EventError(f"{name}: requestParameters.{exc.args[0]} missing") from None
    bucket = payload.bucket
    identity_arn = bucket_arn(partition, bucket) if bucket else account
    subject = bucket or f"account {account} S3 public access block"
    return [cloudtrail_change(record, kind, account, identity_arn, subject, payload)]


def _bucket_name(params: dict[str, Any]) -> str:
    value = params["bucketName"]
    if not isinstance(value, str) or not value:
        raise EventError("requestParameters.bucketName is not a bucket name")
    return value


def _payload(kind: str, params: dict[str, Any]) -> Payload:
    if kind.startswith("account."):
        if kind == "account.public_access_block_deleted":
            return PublicAccessBlockDeleted("")
        return _public_access_block("", params)
    bucket = _bucket_name(params)
    if kind == "bucket.policy_put":
        return BucketPolicyPut(bucket, _policy(params))
    if kind == "bucket.policy_deleted":
        return BucketPolicyDeleted(bucket)
    if kind == "bucket.acl_put":
        return _acl(bucket, params)
    if kind == "bucket.public_access_block_put":
        return _public_access_block(bucket, params)
    if kind == "bucket.public_access_block_deleted":
        return PublicAccessBlockDeleted(bucket)
    if kind == "bucket.ownership_controls_put":
        if "OwnershipControls" not in params:
            raise KeyError("OwnershipControls")
        rules = _dict(params, "OwnershipControls").get("Rule")
        rule = rules[0] if isinstance(rules, list) and rules else rules
        if not isinstance(rule, dict) or not isinstance(rule.get("ObjectOwnership"), str):
            raise EventError("requestParameters.OwnershipControls.Rule has no ObjectOwnership")
        return OwnershipControlsSet(bucket, rule["ObjectOwnership"])
    return OwnershipControlsSet(bucket, "ObjectWriter")  # ownership controls deleted


def _policy(params: dict[str, Any]) -> dict[str, Any]:
    from trustwatch.aws.policy import PolicyError, load_document

    value = params["bucketPolicy"]
    if not isinstance(value, str | dict):
        raise EventError(
            f"requestParameters.bucketPolicy is a {type(value).__name__}, expected a policy"
        )
    try:
        return load_document(value)
    except PolicyError as exc:
        raise EventError(f"requestParameters.bucketPolicy: {exc}") from None


def _flag(config: dict[str, Any], name: str) -> bool:
    value = config.get(name)
    if value is None:
        return False  # left out of a Put: false (the configuration is replaced)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise EventError(f"PublicAccessBlockConfiguration.{name} is {value!r}, expected a boolean")


def _public_access_block(bucket: str, params: dict[str, Any]) -> PublicAccessBlockPut:
    if "PublicAccessBlockConfiguration" not in params:
        raise KeyError("PublicAccessBlockConfiguration")
    config = _dict(params, "PublicAccessBlockConfiguration")
    return PublicAccessBlockPut(bucket, *(_flag(config, name) for name in FLAGS))


_GRANT_HEADERS = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}
_HEADER_GRANTEE = re.compile(r'\s*(uri|id|emailaddress)\s*=\s*"?([^",]*)"?\s*', re.IGNORECASE)
_HEADER_KINDS = {"uri": "group", "id": "canonical", "emailaddress": "email"}
_XSI_KINDS = {"group": "group", "canonicaluser": "canonical", "amazoncustomerbyemail": "email"}


def _header(params: dict[str, Any], key: str) -> list[str]:
    """A request header as CloudTrail logs it: a list of strings (or one string)."""
    value = params.get(key)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise EventError(f"requestParameters.{key} is not text")
    return [v for v in values if v]


def _acl(bucket: str, params: dict[str, Any]) -> BucketAclPut:
    canned = ",".join(_header(params, "x-amz-acl")).strip().lower()
    grants: list[AclGrant] = []
    for header, permission in _GRANT_HEADERS.items():
        for value in _header(params, header):
            for part in value.split(","):
                if not part.strip():
                    continue
                m = _HEADER_GRANTEE.fullmatch(part)
                if not m:
                    raise EventError(f"requestParameters.{header}: unreadable grantee {part!r}")
                grants.append(AclGrant(_HEADER_KINDS[m[1].lower()], m[2], permission))
    policy = _dict(params, "AccessControlPolicy")
    owner = _str(_dict(policy, "Owner").get("ID"))
    listed = _dict(policy, "AccessControlList").get("Grant")
    for grant in listed if isinstance(listed, list) else [listed] if listed else []:
        if not isinstance(grant, dict):
            raise EventError("AccessControlPolicy.AccessControlList.Grant is not an object")
        grantee = _dict(grant, "Grantee")
        xsi = _str(grantee.get("xsi:type") or grantee.get("type") or grantee.get("Type"))
        kind = _XSI_KINDS.get(xsi.lower(), "")
        value = _str(grantee.get("URI")) or _str(grantee.get("ID"))
        value = value or _str(grantee.get("EmailAddress"))
        if not kind:  # no or an unknown type: read it from the field that is there
            kind = "group" if grantee.get("URI") else "canonical"
            kind = "email" if grantee.get("EmailAddress") and not value else kind
        grants.append(AclGrant(kind, value, _str(grant.get("Permission"))))
    if not canned and not grants and not policy:
        raise KeyError("AccessControlPolicy")
    return BucketAclPut(bucket, canned, tuple(grants), owner)
