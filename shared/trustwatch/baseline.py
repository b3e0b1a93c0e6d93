"""The baseline file (Contract 1): pydantic models and a YAML loader with precise errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustwatch.findings import Severity

Mode = Literal["alert", "remediate"]

AWS_TRUST_TEMPLATES = {"databricks-cross-account", "databricks-unity-catalog", "ec2"}
AWS_POLICY_TEMPLATES = {"databricks-crossaccount-policy"}
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
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateRef(_Strict):
    """A named policy template with its parameters."""

    template: str
    external_id: str | None = None
    policy_type: Literal["managed", "customer", "restricted"] | None = None
    pass_roles: list[str] | None = None  # role ARNs the cross-account policy may iam:PassRole
    # the provider's `restricted` parameters; absent ones render the widest policy they allow
    region: str | None = None
    vpc_id: str | None = None
    security_group_id: str | None = None

    @model_validator(mode="after")
    def _known_template(self) -> TemplateRef:
        if self.template not in _TEMPLATE_PARAMS:
            known = ", ".join(sorted(_TEMPLATE_PARAMS))
            raise ValueError(f"unknown template {self.template!r}; expected one of: {known}")
        if self.template == "databricks-unity-catalog" and not self.external_id:
            raise ValueError("template 'databricks-unity-catalog' needs 'external_id'")
        given = {k for k in ("external_id", "policy_type", "pass_roles", "region", "vpc_id",
                             "security_group_id") if getattr(self, k) is not None}  # fmt: skip
        extra = sorted(given - _TEMPLATE_PARAMS[self.template])
        if extra:
            raise ValueError(f"template {self.template!r} takes no {', '.join(extra)}")
        if self.vpc_id is not None and not self.vpc_id.startswith("vpc-"):
            raise ValueError("vpc_id must begin with 'vpc-'")  # as the provider checks it
        if self.security_group_id is not None and not self.security_group_id.startswith("sg-"):
            raise ValueError("security_group_id must begin with 'sg-'")
        return self


def _policy_or_template(value: Any) -> Any:
    """A literal IAM policy document (dict with Statement, or JSON text) or a template ref."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"policy document is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected a template ({template: NAME, ...}) or a policy document")
    if "template" in value:
        try:
            return TemplateRef.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{_describe(err)}") from None
    if "Statement" not in value:
        raise ValueError("a literal policy document needs a 'Statement'")
    return dict(value)


# A TemplateRef or a literal policy document dict, checked by _policy_or_template.
PolicySpec = Any


class AwsRole(_Strict):
    mode: Mode | None = None
    trust: PolicySpec | None = None
    managed_policies: list[str] = Field(default_factory=list)
    inline_policies: dict[str, PolicySpec] = Field(default_factory=dict)
    permissions_boundary: str | None = None

    @field_validator("trust", mode="before")
    @classmethod
    def _trust(cls, value: Any) -> Any:
        if value is None:
            return None
        spec = _policy_or_template(value)
        if isinstance(spec, TemplateRef) and spec.template not in AWS_TRUST_TEMPLATES:
            raise ValueError(
                f"{spec.template!r} is not a trust template; expected one of: "
                + ", ".join(sorted(AWS_TRUST_TEMPLATES))
            )
        return spec

    @field_validator("inline_policies", mode="before")
    @classmethod
    def _inline(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for name, doc in value.items():
            try:
                out[name] = _policy_or_template(doc)
            except ValueError as exc:
                raise ValueError(f"policy {name!r}: {exc}") from None
        return out

    @field_validator("managed_policies")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.fullmatch(r"arn:aws[a-z-]*:iam::(aws|\d{12}):policy/.+", arn):
                raise ValueError(f"{arn!r} is not a managed policy ARN")
        return value


class AwsInstanceProfile(_Strict):
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


class AwsAccount(_Strict):
    roles: dict[str, AwsRole] = Field(default_factory=dict)
    instance_profiles: dict[str, AwsInstanceProfile] = Field(default_factory=dict)
    untracked_roles: Literal["alert", "ignore"] = "alert"

    @field_validator("roles", mode="before")
    @classmethod
    def _unique_roles(cls, value: Any) -> Any:
        return _by_name_key(value, "roles")

    @field_validator("instance_profiles", mode="before")
    @classmethod
    def _unique_profiles(cls, value: Any) -> Any:
        return _by_name_key(value, "instance profiles")

    def role_named(self, name: str) -> tuple[str, AwsRole] | None:
        """(baseline spelling, role) for an IAM role name in any case."""
        key = iam_name_key(name)
        return next(((n, r) for n, r in self.roles.items() if iam_name_key(n) == key), None)

    def instance_profile_named(self, name: str) -> tuple[str, AwsInstanceProfile] | None:
        key = iam_name_key(name)
        return next(
            ((n, p) for n, p in self.instance_profiles.items() if iam_name_key(n) == key), None
        )


class AwsSection(_Strict):
    partition: Literal["aws", "aws-us-gov", "aws-us-gov-dod"] = "aws"
    accounts: dict[str, AwsAccount] = Field(default_factory=dict)

    @field_validator("accounts", mode="before")
    @classmethod
    def _account_ids(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, account in value.items():
                key = str(key)
                if not re.fullmatch(r"\d{12}", key):
                    raise ValueError(f"account id {key!r} must be 12 digits (quote it in YAML)")
                out[key] = account
            return out
        return value


class AzureRoleAssignment(_Strict):
    role: str = Field(description="built-in role name, definition GUID or full definition id")
    scope: str

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        # an unknown name would never match, flagging every assignment of the identity
        from trustwatch.azure.roles import normalize_role

        normalize_role(value)
        return value


class AzureIdentity(_Strict):
    mode: Mode | None = None
    principal_id: str
    resource_id: str | None = None
    role_assignments: list[AzureRoleAssignment] = Field(default_factory=list)


class AzureSubscription(_Strict):
    identities: dict[str, AzureIdentity] = Field(default_factory=dict)
    protected_scopes: list[str] = Field(default_factory=list)


class AzureSection(_Strict):
    tenant_id: str | None = None
    subscriptions: dict[str, AzureSubscription] = Field(default_factory=dict)


class GcpServiceAccount(_Strict):
    mode: Mode | None = None
    project_roles: list[str] = Field(default_factory=list)
    impersonators: list[str] = Field(default_factory=list)
    user_managed_keys: bool = False


class GcpBucket(_Strict):
    mode: Mode | None = None
    bindings: dict[str, list[str]] = Field(default_factory=dict)


class GcpCustomRole(_Strict):
    mode: Mode | None = None
    permissions: list[str] | None = None


class GcpProject(_Strict):
    service_accounts: dict[str, GcpServiceAccount] = Field(default_factory=dict)
    buckets: dict[str, GcpBucket] = Field(default_factory=dict)
    custom_roles: dict[str, GcpCustomRole] = Field(default_factory=dict)

    @field_validator("custom_roles", mode="before")
    @classmethod
    def _empty_roles(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: ({} if spec is None else spec) for name, spec in value.items()}
        return value


class GcpSection(_Strict):
    projects: dict[str, GcpProject] = Field(default_factory=dict)


class Databricks(_Strict):
    account_id: str


class Defaults(_Strict):
    mode: Mode = "alert"
    min_severity: Severity = Severity.medium


class Actors(_Strict):
    responder: list[str] = Field(default_factory=list)
    approved: list[str] = Field(default_factory=list)


class Baseline(_Strict):
    version: Literal[1] = 1
    databricks: Databricks | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    actors: Actors = Field(default_factory=Actors)
    aws: AwsSection = Field(default_factory=AwsSection)
    azure: AzureSection = Field(default_factory=AzureSection)
    gcp: GcpSection = Field(default_factory=GcpSection)

    @model_validator(mode="after")
    def _cross_account_needs_account_id(self) -> Baseline:
        for account_id, account in self.aws.accounts.items():
            for name, role in account.roles.items():
                trust = role.trust
                if (
                    isinstance(trust, TemplateRef)
                    and trust.template == "databricks-cross-account"
                    and self.databricks is None
                ):
                    raise ValueError(
                        f"aws.accounts.{account_id}.roles.{name}.trust uses template "
                        "'databricks-cross-account', which needs databricks.account_id"
                    )
            for profile_name, profile in account.instance_profiles.items():
                if account.role_named(profile.role) is None:
                    raise ValueError(
                        f"aws.accounts.{account_id}.instance_profiles.{profile_name}.role: "
                        f"{profile.role!r} is not a role of this account's baseline"
                    )
        return self

    def mode_for(self, override: Mode | None) -> Mode:
        return override or self.defaults.mode


class BaselineError(ValueError):
    """An unreadable or invalid baseline; the message names file, line and field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: invalid baseline:\n  " + "\n  ".join(problems)
            if len(problems) > 1
            else f"{source}: invalid baseline: {problems[0]}"
        )


# A baseline has hundreds of nodes; aliases can make a 300-byte file expand to billions.
MAX_EXPANDED_NODES = 100_000


class _TooLarge(Exception):
    """The composed YAML expands past MAX_EXPANDED_NODES."""


def _node_lines(
    node: yaml.Node,
    path: tuple[str, ...],
    out: dict[tuple[str, ...], int],
    budget: list[int] | None = None,
) -> None:
    """Map each field path to its 1-based line, for error messages."""
    budget = budget if budget is not None else [MAX_EXPANDED_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _node_lines(value, child, out, budget)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, str(index)), out, budget)


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {err.get('input')!r}"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _load_yaml(text: str, lines: dict[tuple[str, ...], int]) -> Any:
    """yaml.safe_load(text), parsing the text once: the nodes first give each field's line
    (and bound alias expansion), then the data is built from them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _node_lines(node, (), lines)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_baseline(text: str, source: str = "<baseline>") -> Baseline:
    """Validate YAML text as a baseline; raises BaselineError with every problem found."""
    lines: dict[tuple[str, ...], int] = {}
    try:
        data = _load_yaml(text, lines)
    except _TooLarge:
        raise BaselineError(
            source, [f"expands to more than {MAX_EXPANDED_NODES} YAML nodes (nested aliases?)"]
        ) from None
    except RecursionError:
        raise BaselineError(source, ["nested too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BaselineError(source, [f"{where}not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise BaselineError(source, ["expected a mapping at the top (version, aws, azure, gcp …)"])
    try:
        return Baseline.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = tuple(str(p) for p in err["loc"])
            line = _line_for(lines, path)
            dotted = ".".join(path) or "(top)"
            where = f"line {line}: " if line else ""
            problems.append(f"{where}{dotted}: {_describe(err)}")
        raise BaselineError(source, problems) from None


def _line_for(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file from a local path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise BaselineError(str(path), ["not UTF-8 text"]) from None
    return parse_baseline(text, str(path))
