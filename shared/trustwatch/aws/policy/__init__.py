"""IAM policy semantics: does ACTUAL grant anything BASELINE does not?

The question IAM Access Analyzer's check-no-new-access asks, answered offline by pure
functions (no I/O, no boto3). One module per step, each importing only those above it:

- `wildcards`: IAM `*`/`?` pattern inclusion (actions, resources, ARN patterns).
- `conditions`: condition clauses, their canonical form and implication.
- `principals`: canonical principal strings and principal coverage.
- `document`: parsing and checking documents (`PolicyError`), normalized `Statement`s.
- `permissions`: statements split into items; `compare_permissions`.
- `grants`: who a trust policy admits (`trust_principals`).
- `trust`: `compare_trust`.
- `escalation`: admin and privilege-escalation equivalent grants, managed policies.

This package exports what the rest of trustwatch uses; helpers shared between the
modules are public in their module and not re-exported.
"""

from trustwatch.aws.policy.document import PolicyError, load_document
from trustwatch.aws.policy.escalation import (
    COMPUTE_ACTIONS,
    ESCALATION_ACTIONS,
    document_escalations,
    escalations,
    grants_admin,
    managed_policy_escalates,
    managed_policy_is_admin,
)
from trustwatch.aws.policy.grants import TrustGrant, trust_principals
from trustwatch.aws.policy.permissions import compare_permissions
from trustwatch.aws.policy.principals import iam_arn_key, principal_covers
from trustwatch.aws.policy.trust import ExpectedTrust, TrustDiff, compare_trust
from trustwatch.aws.policy.wildcards import glob_covers

__all__ = [
    "COMPUTE_ACTIONS",
    "ESCALATION_ACTIONS",
    "ExpectedTrust",
    "PolicyError",
    "TrustDiff",
    "TrustGrant",
    "compare_permissions",
    "compare_trust",
    "document_escalations",
    "escalations",
    "glob_covers",
    "grants_admin",
    "iam_arn_key",
    "load_document",
    "managed_policy_escalates",
    "managed_policy_is_admin",
    "principal_covers",
    "trust_principals",
]
