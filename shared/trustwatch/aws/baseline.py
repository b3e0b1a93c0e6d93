"""The `aws` section of the baseline file: accounts, roles, instance profiles."""

from __future__ import annotations

import json
import re
from dataclasses import field
from typing import Annotated, Any, Literal

from trustwatch.baseline import Mode, describe_error
from trustwatch.frozen import frozen
from trustwatch.schema import After, Before, Model

AWS_TRUST_TEMPLATES = {"databricks-cross-account", "databricks-unity-catalog", "ec2"}
AWS_POLICY_TEMPLATES = {"databricks-crossaccount-policy"}
AWS_BUCKET_POLICY_TEMPLATES = {"databricks-root-bucket"}
_TEMPLATE_PARAMS = {
    "databricks-cross-account": set(),
    "databricks-unity-catalog": {"external_id"},
    "ec2": set(),
    "databricks-crossaccount-policy": {
        "policy_type",
        "pass_roles",
        "region",
        "vpc_id",
        "security_group_id",
    },
    # the provider's databricks_aws_bucket_policy arguments (besides bucket and partition)
    "databricks-root-bucket": {"full_access_role", "databricks_e2_account_id"},
}
_PARAM_NAMES = ("external_id", "policy_type", "pass_roles", "region", "vpc_id",
                "security_group_id", "full_access_role", "databricks_e2_account_id")  # fmt: skip


@frozen
class TemplateRef(Model):
    """A named policy template with its parameters."""

    template: str
    external_id: str | None = None
    policy_type: Literal["managed", "customer", "restricted"] | None = None
    pass_roles: list[str] | None = None  # role ARNs the cross-account policy may iam:PassRole
    # the provider's `restricted` parameters; absent ones render the widest policy they allow
    region: str | None = None
    vpc_id: str | None = None
    security_group_id: str | None = None
    # databricks-root-bucket: the role granted *instead of* Databricks' account, and the
    # Databricks account id the provider's aws:PrincipalTag/DatabricksAccountId test names
    full_access_role: str | None = None
    databricks_e2_account_id: str | None = None

    def _check(self) -> TemplateRef:
        if self.template not in _TEMPLATE_PARAMS:
            known = ", ".join(sorted(_TEMPLATE_PARAMS))
            raise ValueError(f"unknown template {self.template!r}; expected one of: {known}")
        if self.template == "databricks-unity-catalog" and not self.external_id:
            raise ValueError("template 'databricks-unity-catalog' needs 'external_id'")
        given = {k for k in _PARAM_NAMES if getattr(self, k) is not None}
        extra = sorted(given - _TEMPLATE_PARAMS[self.template])
        if extra:
            raise ValueError(f"template {self.template!r} takes no {', '.join(extra)}")
        if self.vpc_id is not None and not self.vpc_id.startswith("vpc-"):
            raise ValueError("vpc_id must begin with 'vpc-'")  # as the provider checks it
        if self.security_group_id is not None and not self.security_group_id.startswith("sg-"):
            raise ValueError("security_group_id must begin with 'sg-'")
        if self.full_access_role is not None and not _IAM_PRINCIPAL_ARN.fullmatch(
            self.full_access_role
        ):
            raise ValueError(
                f"full_access_role {self.full_access_role!r} is not an IAM role or user ARN"
            )
        return self


_IAM_PRINCIPAL_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/\S+")


def _policy_or_template(value: Any) -> Any:
    """A literal IAM policy document (dict with Statement, or JSON text) or a template ref."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"policy document is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected a template ({template: NAME, ...}) or a policy document")
    if "template" in value:
        from pydantic import ValidationError  # validating: pydantic is loaded already

        try:
            return TemplateRef.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{describe_error(err)}") from None
    if "Statement" not in value:
        raise ValueError("a literal policy document needs a 'Statement'")
    return dict(value)


def _spec_of_kind(value: Any, templates: set[str], what: str) -> Any:
    """None, a literal document, or a template of the `what` kind (a trust template is no
    bucket policy)."""
    if value is None:
        return None
    spec = _policy_or_template(value)
    if isinstance(spec, TemplateRef) and spec.template not in templates:
        raise ValueError(
            f"{spec.template!r} is not a {what} template; expected one of: "
            + ", ".join(sorted(templates))
        )
    return spec


# A TemplateRef or a literal policy document dict, checked by _policy_or_template.
PolicySpec = Any


def _iam_path(value: str) -> str:
    if not re.fullmatch(r"/(?:[\x21-\x7e]+/)?", value) or len(value) > 512:
        raise ValueError(f"{value!r} is not an IAM path (/ or /name/…/, at most 512 characters)")
    return value


def _trust(value: Any) -> Any:
    return _spec_of_kind(value, AWS_TRUST_TEMPLATES, "trust")


def _inline(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for name, doc in value.items():
        try:
            out[name] = _policy_or_template(doc)
        except ValueError as exc:
            raise ValueError(f"policy {name!r}: {exc}") from None
    return out


def _managed_arns(value: list[str]) -> list[str]:
    for arn in value:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::(aws|\d{12}):policy/.+", arn):
            raise ValueError(f"{arn!r} is not a managed policy ARN")
    return value


@frozen
class AwsRole(Model):
    mode: Mode | None = None
    trust: Annotated[PolicySpec | None, Before(_trust)] = None
    managed_policies: Annotated[list[str], After(_managed_arns)] = field(default_factory=list)
    inline_policies: Annotated[dict[str, PolicySpec], Before(_inline)] = field(default_factory=dict)
    permissions_boundary: str | None = None
    # the role's IAM path: part of its ARN, so of the Unity Catalog self-assume principal
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html)
    path: Annotated[str, After(_iam_path)] = "/"


@frozen
class AwsInstanceProfile(Model):
    role: str


def iam_name_key(name: str) -> str:
    """IAM role and instance-profile names "are not distinguished by case" (IAM quotas page):
    DBX-XACCT and dbx-xacct are one role, so every lookup goes through this key."""
    return name.strip().lower()


def _by_name_key(value: Any, what: str) -> Any:
    if isinstance(value, dict):
        seen: dict[str, str] = {}
        for name in value:
            other = seen.setdefault(iam_name_key(str(name)), str(name))
            if other != str(name):
                raise ValueError(
                    f"{what} {other!r} and {str(name)!r} differ only by case: IAM treats "
                    "them as one name"
                )
    return value


# S3 general purpose bucket names: 3-63 lower-case letters, digits, dots and hyphens, from a
# letter or digit to a letter or digit
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html). Buckets
# created in us-east-1 before March 1, 2018 may still carry a legacy name (capitals and
# underscores, up to 255 characters): the second pattern admits those.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_LEGACY_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{3,255}")


def _bucket_policy(value: Any) -> Any:
    return _spec_of_kind(value, AWS_BUCKET_POLICY_TEMPLATES, "bucket policy")


@frozen
class AwsBucket(Model):
    """A watched S3 bucket: the most its bucket policy may grant, and its public access.

    `policy`: a template ({template: databricks-root-bucket, ...}) or a literal policy
    document; absent, the bucket is expected to have no bucket policy granting anything.
    `public_access_block: required` (the default) expects all four Block Public Access
    settings on, ACLs disabled (object ownership BucketOwnerEnforced) and no public ACL
    grant; `ignore` lets the bucket be public (only its policy is compared).
    """

    mode: Mode | None = None
    policy: Annotated[PolicySpec | None, Before(_bucket_policy)] = None
    public_access_block: Literal["required", "ignore"] = "required"


def _bucket_names(value: Any) -> Any:
    """Bucket names compare exactly, as S3 names them: every bucket made since 2018 has a
    lower-case name, and S3 never folds case, so "Root" is not the bucket "root"."""
    if isinstance(value, dict):
        for name in value:
            name = str(name)
            if not (_BUCKET_NAME.fullmatch(name) or _LEGACY_BUCKET_NAME.fullmatch(name)):
                raise ValueError(
                    f"bucket name {name!r} is not an S3 bucket name (3-63 lower-case letters, "
                    "digits, dots and hyphens)"
                )
    return value


def _unique_roles(value: Any) -> Any:
    return _by_name_key(value, "roles")


def _unique_profiles(value: Any) -> Any:
    return _by_name_key(value, "instance profiles")


@frozen
class AwsAccount(Model):
    roles: Annotated[dict[str, AwsRole], Before(_unique_roles)] = field(default_factory=dict)
    instance_profiles: Annotated[dict[str, AwsInstanceProfile], Before(_unique_profiles)] = field(
        default_factory=dict
    )
    untracked_roles: Literal["alert", "ignore"] = "alert"
    buckets: Annotated[dict[str, AwsBucket], Before(_bucket_names)] = field(default_factory=dict)

    def role_named(self, name: str) -> tuple[str, AwsRole] | None:
        """(baseline spelling, role) for an IAM role name in any case."""
        key = iam_name_key(name)
        return next(((n, r) for n, r in self.roles.items() if iam_name_key(n) == key), None)

    def instance_profile_named(self, name: str) -> tuple[str, AwsInstanceProfile] | None:
        key = iam_name_key(name)
        return next(
            ((n, p) for n, p in self.instance_profiles.items() if iam_name_key(n) == key), None
        )


def _account_ids(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, account in value.items():
            key = str(key)
            if not re.fullmatch(r"\d{12}", key):
                raise ValueError(f"account id {key!r} must be 12 digits (quote it in YAML)")
            out[key] = account
        return out
    return value


@frozen
class AwsSection(Model):
    partition: Literal["aws", "aws-us-gov", "aws-us-gov-dod"] = "aws"
    accounts: Annotated[dict[str, AwsAccount], Before(_account_ids)] = field(default_factory=dict)

    def summary(self) -> str:
        roles = sum(len(a.roles) for a in self.accounts.values())
        return f"{roles} AWS roles"


def check_baseline(baseline: Any) -> list[str]:
    """What the aws section needs from the rest of the file, and from itself as a whole."""
    problems = []
    for account_id, account in baseline.aws.accounts.items():
        for name, role in account.roles.items():
            trust = role.trust
            if (
                isinstance(trust, TemplateRef)
                and trust.template == "databricks-cross-account"
                and baseline.databricks is None
            ):
                problems.append(
                    f"aws.accounts.{account_id}.roles.{name}.trust uses template "
                    "'databricks-cross-account', which needs databricks.account_id"
                )
        for profile_name, profile in account.instance_profiles.items():
            if account.role_named(profile.role) is None:
                problems.append(
                    f"aws.accounts.{account_id}.instance_profiles.{profile_name}.role: "
                    f"{profile.role!r} is not a role of this account's baseline"
                )
    return problems


Section = AwsSection  # what trustwatch.clouds.CloudFolder looks for
