"""Principals: their canonical strings, and when trusting one trusts another.

Canonical strings ("Principal" values as `document` normalizes them):
- "123456789012", "arn:<p>:iam::123456789012:root" and their {"AWS": ...} forms are
  "arn:<p>:iam::123456789012:root" (a bare id takes the partition of the ARNs in the
  documents compared, `infer_partition`, else "aws"); role/user ARNs stay as given;
  {"Service": S} -> "service:<s lower-cased>"; {"Federated": F} -> "federated:F";
  {"CanonicalUser": C} -> "canonical:C"; "*" and {"AWS": "*"} -> "*".
- IAM names compare case-insensitively in principal ARNs (role/DBX == role/dbx); paths,
  accounts and partitions keep their case (`iam_arn_key`).

Coverage (`principal_covers`): "*" covers all; an account root covers every iam/sts
principal of that account; a role covers its assumed-role sessions; otherwise equality or
ARN wildcards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from trustwatch.aws.policy.wildcards import glob_covers, has_wildcard

_ACCOUNT_ID = re.compile(r"\d{12}")
_ARN_PARTITION = re.compile(r"arn:(aws(?:-[a-z]+)*):")


def split_arn(value: str) -> tuple[str, str, str, str] | None:
    """(partition, service, account, resource) of an ARN, None otherwise."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return parts[1], parts[2], parts[4], parts[5]


def canonical_principal(kind: str, name: str, partition: str) -> str:
    """The canonical string of one Principal entry ({kind: name}; kind "*" for Principal "*")."""
    if kind == "*" or (kind == "AWS" and name == "*"):
        return "*"
    if kind == "AWS":
        return f"arn:{partition}:iam::{name}:root" if _ACCOUNT_ID.fullmatch(name) else name
    if kind == "Service":
        return f"service:{name.lower()}"
    if kind == "Federated":
        return f"federated:{name}"
    return f"canonical:{name}"


def is_account_root(principal: str) -> bool:
    arn = split_arn(principal)
    return arn is not None and arn[1] == "iam" and arn[3] == "root" and not has_wildcard(principal)


# IAM resources whose names "are not distinguished by case" (IAM quotas page,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html); paths,
# partitions, services and account ids keep their case.
_IAM_NAMED = ("role", "user", "group", "policy", "instance-profile")


def iam_arn_key(arn: str) -> str:
    """The comparison key of an IAM ARN: its name (the part after the last '/') lower-cased."""
    parts = split_arn(arn.strip())
    if parts is None or parts[1] != "iam" or parts[3].split("/", 1)[0] not in _IAM_NAMED:
        return arn.strip()
    head, _, name = arn.strip().rpartition("/")
    return f"{head}/{name.lower()}"


def principal_covers(general: str, specific: str) -> bool:
    """True when trusting canonical principal `general` also trusts `specific`."""
    if general in ("*", specific):
        return True
    if specific == "*":
        return False
    g, s = split_arn(general), split_arn(specific)
    if g is None and s is not None and has_wildcard(general):
        # a pattern that is not a whole ARN ("arn:*", from StringLike aws:PrincipalArn)
        return glob_covers(general, specific)
    if g is None or s is None:
        return False  # service:/federated:/canonical: principals only match themselves
    if is_account_root(general):
        # trusting an account delegates to every IAM principal of that account
        return s[0] == g[0] and s[2] == g[2] and s[1] in ("iam", "sts")
    if g[1] == "iam" and g[3].startswith("role/") and s[1] == "sts":
        session = s[3].split("/")
        if len(session) >= 2 and session[0] == "assumed-role" and (s[0], s[2]) == (g[0], g[2]):
            return session[1].lower() == g[3].rsplit("/", 1)[-1].lower()
    if not has_wildcard(general) and iam_arn_key(general) == iam_arn_key(specific):
        return True  # role/DBX-XACCT is role/dbx-xacct
    return glob_covers(general, specific)


def infer_partition(docs: Iterable[dict[str, Any]]) -> str:
    """The partition of the first ARN in `docs` ("aws" when none): what a bare account id means."""
    return named_partition(docs) or "aws"


def named_partition(docs: Iterable[dict[str, Any]]) -> str | None:
    """The partition of the first ARN in `docs`, None when they name none."""
    for doc in docs:
        found = _ARN_PARTITION.search(json.dumps(doc))
        if found:
            return found.group(1)
    return None
