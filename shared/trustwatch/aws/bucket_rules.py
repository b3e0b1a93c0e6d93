"""AWS rules for watched S3 buckets (Contract 3, `aws.bucket.*`), from the S3 CloudTrail
changes of `trustwatch.aws.buckets`.

Buckets are matched to the baseline by account id and exact name (S3 bucket names never
fold case: see `trustwatch.aws.baseline.AwsBucket`). A bucket policy is compared with the
baseline's the way role permission policies are (`policy.compare_permissions`: does the
new policy grant anything the baseline's does not?), so a re-applied, reformatted or
stricter policy is quiet. A widening is critical when it reaches the public or another
account:
- public: an Allow for `"*"` (or `NotPrincipal`, which is everyone but the few named)
  that no condition pins to fixed values of the keys Amazon S3 itself counts as
  non-public (aws:SourceIp, aws:SourceArn, aws:SourceVpc, aws:SourceVpce, aws:SourceOwner,
  aws:SourceAccount, aws:userid, s3:x-amz-server-side-encryption-aws-kms-key-id and
  aws:PrincipalOrgID; "The meaning of public",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html#access-control-block-public-access-policy-status).
  `"*"` narrowed by aws:PrincipalAccount / aws:PrincipalArn is already that account or ARN
  (policy.py). An aws:SourceIp range wider than a /8 (IPv4) or /32 (IPv6) still counts
  as public here: it is more of the internet than one organisation holds.
- foreign: a principal of any account other than the bucket's (Databricks' included: the
  baseline's grant to Databricks is expected, anything beyond it is not), a CanonicalUser
  principal, or an ACL grant to another canonical user or an email address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsAccount, AwsBucket
from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.engine import Hit, rule
from trustwatch.findings import Severity

# The rules import `trustwatch.aws.buckets` (its payload classes) in their bodies: only a
# bucket event reaches them, and parsing it loaded that module already; an IAM event's
# cold start never creates its classes (~3 ms).

# Condition keys whose fixed values make a "*" grant non-public (lower-cased, as policy.py
# reports them).
_NARROWING_KEYS = {
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:userid",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:principalarn",
}
_FIXING_OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "IpAddress"}
_MAX_LISTED = 5


def _account(change: Change, baseline: Baseline) -> AwsAccount | None:
    return baseline.aws.accounts.get(change.scope)


def _bucket(change: Change, baseline: Baseline, bucket: str) -> AwsBucket | None:
    account = _account(change, baseline)
    return account.buckets.get(bucket) if account else None


def _fixed(operator: str, key: str, values: list[str]) -> bool:
    """Does this clause pin the request to fixed values (S3's "non-public" test)?"""
    if operator.endswith("IfExists") or operator.startswith(("ForAnyValue:", "ForAllValues:")):
        return False  # ...IfExists passes when the key is absent; ForAllValues on none too
    if operator not in _FIXING_OPERATORS or key not in _NARROWING_KEYS or not values:
        return False
    if operator == "IpAddress":
        for value in values:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                return False
            if network.prefixlen < (8 if network.version == 4 else 32):
                return False
        return True
    return not any("*" in v or "?" in v for v in values)


def _narrowed(condition: dict[str, dict[str, list[str]]] | None) -> bool:
    return any(
        _fixed(op, key, values)
        for op, tests in (condition or {}).items()
        for key, values in tests.items()
    )


def _pinned_accounts(condition: dict[str, dict[str, list[str]]] | None) -> set[str]:
    """Accounts a fixed aws:PrincipalAccount / aws:PrincipalArn clause names (a "*" grant
    narrowed to them is a grant to those accounts)."""
    out = set()
    for op, tests in (condition or {}).items():
        for key, values in tests.items():
            if key in ("aws:principalaccount", "aws:principalarn") and _fixed(op, key, values):
                for value in values:
                    parts = value.split(":")
                    out.add(parts[4] if len(parts) > 5 and parts[0] == "arn" else value)
    return out


def _beyond_account(condition: dict[str, dict[str, list[str]]] | None, account: str) -> str:
    """ "foreign" when a non-public "*" grant reaches other accounts: pinned to another
    account or ARN, or narrowed only by aws:PrincipalOrgID — an organization the baseline
    cannot tell from an attacker's ("o-…" names no account of ours). Pinned to the bucket's
    own account, or to the network (VPC, endpoint, IP: the customer's own), it is not."""
    pinned = _pinned_accounts(condition)
    if pinned:
        return "foreign" if pinned - {account} else ""
    keys = {
        key
        for op, tests in (condition or {}).items()
        for key, values in tests.items()
        if _fixed(op, key, values)
    }
    return "foreign" if keys and keys <= {"aws:principalorgid"} else ""


def _exposure(item: dict[str, Any], bucket_account: str) -> str:
    """ "public", "foreign" or "" for one added Allow item of compare_permissions."""
    if item.get("effect") != "Allow":
        return ""  # a baseline Deny dropped: a widening, not by itself to anyone new
    if "not_principal" in item or "principal" not in item:
        condition = item.get("condition")
        if not _narrowed(condition):
            return "public"
        return _beyond_account(condition, bucket_account)
    principal = str(item["principal"])
    if principal.startswith("canonical:"):
        return "foreign"
    if principal.startswith(("service:", "federated:")):
        return ""
    parts = principal.split(":")
    account = parts[4] if len(parts) > 5 and parts[0] == "arn" else principal
    if principal == "*" or "*" in account or "?" in account:
        condition = item.get("condition")
        if not _narrowed(condition):
            return "public"
        return _beyond_account(condition, bucket_account)
    return "" if account == bucket_account else "foreign"


def _expected_policy(change: Change, baseline: Baseline, bucket: AwsBucket, name: str) -> Any:
    if bucket.policy is None:
        return None
    return templates.expected_bucket_policy(
        bucket.policy, partition=baseline.aws.partition, bucket=name
    )


def _listed(values: list[str]) -> str:
    unique = sorted(set(values))
    more = len(unique) - _MAX_LISTED
    return ", ".join(unique[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


@rule(
    "aws.bucket.policy_widened",
    "high",
    ["bucket.policy_put", "bucket.acl_put"],
    "Watched bucket grants more than the baseline",
)
def bucket_policy_widened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    from trustwatch.aws.buckets import BucketPolicyPut

    if change.kind == "bucket.acl_put":
        yield from _acl_widened(change, baseline)
        return
    put = change.payload_as(BucketPolicyPut)
    bucket = _bucket(change, baseline, put.bucket)
    if bucket is None:
        return
    expected = _expected_policy(change, baseline, bucket, put.bucket)
    diff = policy.compare_permissions(put.policy, expected)
    if not diff.added:
        return
    exposure = {_exposure(item, change.scope) for item in diff.added}
    whom = [str(i.get("principal", "everyone but NotPrincipal")) for i in diff.added]
    if "public" in exposure:
        summary = f"Bucket {put.bucket}'s policy now grants public access ({_listed(whom)})"
    elif "foreign" in exposure:
        summary = f"Bucket {put.bucket}'s policy now grants another account ({_listed(whom)})"
    else:
        summary = f"Bucket {put.bucket}'s policy grants more than the baseline allows"
    yield Hit(
        summary,
        expected if expected is not None else "no bucket policy",
        diff.added,
        severity=Severity.critical if exposure & {"public", "foreign"} else None,
        remediation="restore_bucket_policy",
        mode=bucket.mode,
    )


def _acl_widened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    from trustwatch.aws.buckets import BucketAclPut

    put = change.payload_as(BucketAclPut)
    bucket = _bucket(change, baseline, put.bucket)
    if bucket is None:
        return
    foreign = [
        g
        for g in put.grants
        if g.kind == "email" or (g.kind == "canonical" and g.grantee != put.owner)
    ]
    if not foreign:
        return
    yield Hit(
        f"Bucket {put.bucket}'s ACL now grants another account "
        f"({_listed([f'{g.kind} {g.grantee}: {g.permission}' for g in foreign])})",
        {"owner": put.owner or "(not in the request)", "grants": "the bucket owner only"},
        [{"grantee": g.grantee, "type": g.kind, "permission": g.permission} for g in foreign],
        severity=Severity.critical,
        remediation="restore_bucket_acl",
        mode=bucket.mode,
    )


@rule(
    "aws.bucket.policy_removed",
    "medium",
    ["bucket.policy_deleted"],
    "Watched bucket's expected policy deleted",
)
def bucket_policy_removed(change: Change, baseline: Baseline) -> Iterator[Hit]:
    from trustwatch.aws.buckets import BucketPolicyDeleted

    deleted = change.payload_as(BucketPolicyDeleted)
    bucket = _bucket(change, baseline, deleted.bucket)
    if bucket is None or bucket.policy is None:
        return
    root = getattr(bucket.policy, "template", None) == "databricks-root-bucket"
    yield Hit(
        f"Bucket {deleted.bucket}'s policy was deleted"
        + (": Databricks loses access to the workspace root bucket" if root else ""),
        _expected_policy(change, baseline, bucket, deleted.bucket),
        "no bucket policy",
        remediation="restore_bucket_policy",
        mode=bucket.mode,
    )


_PUBLIC_ACCESS_KINDS = (
    "bucket.public_access_block_put",
    "bucket.public_access_block_deleted",
    "account.public_access_block_put",
    "account.public_access_block_deleted",
    "bucket.acl_put",
    "bucket.ownership_controls_put",
    "bucket.ownership_controls_deleted",
)
_ALL_ON = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
           "RestrictPublicBuckets": True}  # fmt: skip


@rule(
    "aws.bucket.public_access_opened",
    "critical",
    _PUBLIC_ACCESS_KINDS,
    "Public access opened on a watched bucket or its account",
)
def bucket_public_access_opened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    from trustwatch.aws.buckets import (
        PUBLIC_CANNED_ACLS,
        BucketAclPut,
        OwnershipControlsSet,
        PublicAccessBlockDeleted,
        PublicAccessBlockPut,
        is_public_group,
    )

    if change.kind.startswith("account."):
        yield from _account_opened(change, baseline)
        return
    payload = change.payload
    name = str(getattr(payload, "bucket", ""))
    bucket = _bucket(change, baseline, name)
    if bucket is None or bucket.public_access_block != "required":
        return
    if isinstance(payload, PublicAccessBlockPut):
        if payload.turned_off:
            yield _public_hit(
                bucket,
                f"Block Public Access turned off on bucket {name}: "
                + ", ".join(payload.turned_off),
                {f: f not in payload.turned_off for f in _ALL_ON},
            )
    elif isinstance(payload, PublicAccessBlockDeleted):
        yield _public_hit(bucket, f"Block Public Access removed from bucket {name}", "deleted")
    elif isinstance(payload, OwnershipControlsSet):
        if payload.acls_enabled:
            yield Hit(
                f"ACLs re-enabled on bucket {name} (object ownership {payload.object_ownership})",
                {"ObjectOwnership": "BucketOwnerEnforced"},
                {"ObjectOwnership": payload.object_ownership},
                remediation="restore_ownership_controls",
                mode=bucket.mode,
            )
    elif isinstance(payload, BucketAclPut):
        public = sorted(
            {g.grantee for g in payload.grants if g.kind == "group" and is_public_group(g.grantee)}
        )
        if payload.canned_acl in PUBLIC_CANNED_ACLS:
            public = sorted({*public, PUBLIC_CANNED_ACLS[payload.canned_acl]})
        if public:
            yield Hit(
                f"Bucket {name}'s ACL now grants "
                + " and ".join(p.rsplit("/", 1)[-1] for p in public),
                {"public_grants": []},
                {
                    "canned_acl": payload.canned_acl or None,
                    "grants": [
                        {"grantee": g.grantee, "type": g.kind, "permission": g.permission}
                        for g in payload.grants
                        if g.kind == "group" and is_public_group(g.grantee)
                    ],
                },
                remediation="restore_bucket_acl",
                mode=bucket.mode,
            )


def _public_hit(bucket: AwsBucket, summary: str, actual: Any) -> Hit:
    return Hit(
        summary, _ALL_ON, actual, remediation="restore_public_access_block", mode=bucket.mode
    )


def _account_opened(change: Change, baseline: Baseline) -> Iterator[Hit]:
    from trustwatch.aws.buckets import PublicAccessBlockPut

    account = _account(change, baseline)
    watched = sorted(
        n
        for n, b in (account.buckets.items() if account else ())
        if b.public_access_block == "required"
    )
    if not watched:
        return
    payload = change.payload
    if isinstance(payload, PublicAccessBlockPut):
        if not payload.turned_off:
            return
        what = "turned off (" + ", ".join(payload.turned_off) + ")"
        actual: Any = {f: f not in payload.turned_off for f in _ALL_ON}
    else:
        what, actual = "removed", "deleted"
    yield Hit(
        f"Account {change.scope}'s S3 Block Public Access {what}; watched buckets: "
        + _listed(watched),
        _ALL_ON,
        actual,
        remediation="restore_public_access_block",
    )
