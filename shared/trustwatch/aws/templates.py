"""The baseline's named AWS templates, rendered per partition.

Trust templates render to a list of alternative documents (Databricks accepts two Unity
Catalog shapes); policy templates render to one document. Constants and action lists are
transcribed from the Databricks Terraform provider (databricks/terraform-provider-databricks):
- aws/constants.go @ 57c8ebcf90c892621360db76393a9fab855dfe38 (accounts, UC master roles),
- aws/data_aws_unity_catalog_assume_role_policy.go @ 2ffe50d988a5f1ebc6074906e6c52ee4b5a64370,
- aws/data_aws_assume_role_policy.go @ 15374693003ed42a836901ebd8e665fdc43ac3bf,
- aws/data_aws_crossaccount_policy.go @ b1f694d82bc437bfefb0bfb933231f7947f454e1, checked
  against the expected JSON in aws/data_aws_crossaccount_policy_test.go
  @ bc8bb54fcd7cd10dfdaadd31b47c0fae76285d3d.
Documents are built with the provider's key order, so json.dumps(doc, indent=2) is
byte-for-byte what the provider emits (tests compare lengths with the provider's tests).
"""

from __future__ import annotations

from typing import Any

from trustwatch.aws.baseline import TemplateRef
from trustwatch.aws.policy import load_document

# Databricks' AWS account per Databricks partition (constants.go "accountId").
DATABRICKS_ACCOUNTS: dict[str, str] = {
    "aws": "414351767826",
    "aws-us-gov": "044793339203",
    "aws-us-gov-dod": "170661010020",
}
# The Unity Catalog master role per partition (constants.go "unityCatalogueIamArn").
UC_MASTER_ROLES: dict[str, str] = {
    "aws": "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL",
    "aws-us-gov": (
        "arn:aws-us-gov:iam::044793339203:role/unity-catalog-prod-UCMasterRole-1QRFA8SGY15OJ"
    ),
    "aws-us-gov-dod": (
        "arn:aws-us-gov:iam::170661010020:role/unity-catalog-prod-UCMasterRole-1DI6DL6ZP26AS"
    ),
}
# Databricks partition -> the partition written in ARNs (DoD lives in aws-us-gov).
_ARN_PARTITIONS = {"aws": "aws", "aws-us-gov": "aws-us-gov", "aws-us-gov-dod": "aws-us-gov"}

POLICY_TYPES = ("managed", "customer", "restricted")


def arn_partition(partition: str) -> str:
    """The ARN partition of a Databricks partition: "aws-us-gov-dod" -> "aws-us-gov"."""
    try:
        return _ARN_PARTITIONS[partition]
    except KeyError:
        known = ", ".join(_ARN_PARTITIONS)
        raise ValueError(f"unknown AWS partition {partition!r}; expected one of: {known}") from None


def databricks_principals(partition: str | None = None) -> set[str]:
    """ARNs that mean "Databricks": account roots and UC master roles (all partitions if None)."""
    partitions = [partition] if partition is not None else list(DATABRICKS_ACCOUNTS)
    out = set()
    for name in partitions:
        out.add(f"arn:{arn_partition(name)}:iam::{DATABRICKS_ACCOUNTS[name]}:root")
        out.add(UC_MASTER_ROLES[name])
    return out


def is_databricks_principal(principal: str) -> bool:
    """Is this canonical principal (or bare account id) any identity in a Databricks account?

    Wider than databricks_principals(): catches e.g. a role ARN in Databricks' account.
    """
    if principal in DATABRICKS_ACCOUNTS.values():
        return True
    parts = principal.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return False
    return any(
        parts[1] == arn_partition(name) and parts[4] == account
        for name, account in DATABRICKS_ACCOUNTS.items()
    )


def includes_databricks(principal: str) -> bool:
    """Does trusting this canonical principal (or pattern) trust some Databricks identity?

    "*", {"AWS": "*"} and account patterns such as arn:aws:iam::41435176*:root include
    Databricks' accounts and roles just as an exact Databricks principal does.
    """
    from trustwatch.aws.policy import principal_covers

    if is_databricks_principal(principal):
        return True
    samples = set(databricks_principals())
    for name, account in DATABRICKS_ACCOUNTS.items():
        samples.add(f"arn:{arn_partition(name)}:iam::{account}:role/databricks-any-role")
    return any(principal_covers(principal, sample) for sample in samples)


# ---------------------------------------------------------------- rendering helpers


def _statement(
    *,
    sid: str | None = None,
    action: str | list[str],
    resource: str | list[str] | None = None,
    not_resource: list[str] | None = None,
    principal: dict[str, Any] | None = None,
    condition: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A statement in the provider's key order (Go struct order; Condition keys sorted)."""
    out: dict[str, Any] = {}
    if sid:
        out["Sid"] = sid
    out["Effect"] = "Allow"
    out["Action"] = action
    if resource is not None:
        out["Resource"] = resource
    if not_resource is not None:
        out["NotResource"] = not_resource
    if principal is not None:
        out["Principal"] = principal
    if condition is not None:
        out["Condition"] = {op: condition[op] for op in sorted(condition)}
    return out


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _spec(ref: TemplateRef | dict[str, Any] | str) -> TemplateRef | dict[str, Any]:
    """A TemplateRef, or a checked literal document."""
    if isinstance(ref, TemplateRef):
        return ref
    if isinstance(ref, dict) and "template" in ref:
        return TemplateRef.model_validate(ref)
    return load_document(ref)


# ---------------------------------------------------------------- trust


def expected_trust(
    ref: TemplateRef | dict[str, Any],
    *,
    partition: str,
    account_id: str,
    role_name: str,
    databricks_account_id: str | None,
    role_path: str = "/",
) -> list[dict[str, Any]]:
    """The accepted trust documents for a role: a literal -> [it]; a template -> its shapes
    (`role_path` is the role's IAM path, part of its own ARN)."""
    spec = _spec(ref)
    if isinstance(spec, dict):
        return [spec]
    p = arn_partition(partition)
    if spec.template == "databricks-cross-account":
        if not databricks_account_id:
            raise ValueError(
                "template 'databricks-cross-account' needs the Databricks account id "
                "(databricks.account_id), its sts:ExternalId"
            )
        root = f"arn:{p}:iam::{DATABRICKS_ACCOUNTS[partition]}:root"
        return [
            _document(
                _statement(
                    action="sts:AssumeRole",
                    principal={"AWS": root},
                    condition={"StringEquals": {"sts:ExternalId": databricks_account_id}},
                )
            )
        ]
    if spec.template == "databricks-unity-catalog":
        if not spec.external_id:
            raise ValueError("template 'databricks-unity-catalog' needs 'external_id'")
        external_id = {"StringEquals": {"sts:ExternalId": spec.external_id}}
        master = UC_MASTER_ROLES[partition]
        self_arn = f"arn:{p}:iam::{account_id}:role{role_path}{role_name}"
        # (a) what the provider's databricks_aws_unity_catalog_assume_role_policy emits:
        # the account root narrowed to this role by aws:PrincipalArn.
        shape_a = _document(
            _statement(
                sid="UnityCatalogAssumeRole",
                action="sts:AssumeRole",
                principal={"AWS": master},
                condition=external_id,
            ),
            _statement(
                sid="ExplicitSelfRoleAssumption",
                action="sts:AssumeRole",
                principal={"AWS": f"arn:{p}:iam::{account_id}:root"},
                condition={"ArnLike": {"aws:PrincipalArn": self_arn}, **external_id},
            ),
        )
        # (b) the Databricks documentation's form: both principals in one statement.
        shape_b = _document(
            _statement(
                action="sts:AssumeRole",
                principal={"AWS": [master, self_arn]},
                condition=external_id,
            )
        )
        return [shape_a, shape_b]
    if spec.template == "ec2":
        return [
            _document(
                _statement(action="sts:AssumeRole", principal={"Service": "ec2.amazonaws.com"})
            )
        ]
    raise ValueError(f"{spec.template!r} is not a trust template")


# ---------------------------------------------------------------- cross-account policy

# Non resource-based permissions, in every policy type (provider: `actions`).
_EC2_BASE = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:CancelSpotInstanceRequests",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeIamInstanceProfileAssociations",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkAcls",
    "ec2:DescribePrefixLists",
    "ec2:DescribeReservedInstancesOfferings",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSpotInstanceRequests",
    "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcAttribute",
    "ec2:DescribeVpcs",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:GetSpotPlacementScores",
    "ec2:RequestSpotInstances",
    "ec2:DescribeFleetHistory",
    "ec2:ModifyFleet",
    "ec2:DeleteFleets",
    "ec2:DescribeFleetInstances",
    "ec2:DescribeFleets",
    "ec2:CreateFleet",
    "ec2:DeleteLaunchTemplate",
    "ec2:GetLaunchTemplateData",
    "ec2:CreateLaunchTemplate",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:ModifyLaunchTemplate",
    "ec2:DeleteLaunchTemplateVersions",
    "ec2:CreateLaunchTemplateVersion",
]
# Unscoped instance/volume/security-group actions: managed and customer (restricted scopes
# them by resource and tag instead).
_EC2_UNRESTRICTED = [
    "ec2:AssociateIamInstanceProfile",
    "ec2:AttachVolume",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateVolume",
    "ec2:DeleteVolume",
    "ec2:DetachVolume",
    "ec2:DisassociateIamInstanceProfile",
    "ec2:ReplaceIamInstanceProfileAssociation",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
]
# Databricks-managed VPC: Databricks creates and deletes the network itself (managed only).
_EC2_MANAGED_VPC = [
    "ec2:AttachInternetGateway",
    "ec2:AllocateAddress",
    "ec2:AssociateDhcpOptions",
    "ec2:AssociateRouteTable",
    "ec2:CreateDhcpOptions",
    "ec2:CreateInternetGateway",
    "ec2:CreateNatGateway",
    "ec2:CreateRoute",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateSubnet",
    "ec2:CreateVpc",
    "ec2:CreateVpcEndpoint",
    "ec2:DeleteDhcpOptions",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteNatGateway",
    "ec2:DeleteRoute",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteVpc",
    "ec2:DeleteVpcEndpoints",
    "ec2:DetachInternetGateway",
    "ec2:DisassociateRouteTable",
    "ec2:ModifyVpcAttribute",
    "ec2:ReleaseAddress",
]


def _restricted_statements(
    p: str, region: str, account: str, vpc_id: str | None, security_group_id: str | None
) -> list[dict[str, Any]]:
    """The provider's resource-scoped statements for policy_type "restricted".

    The provider requires region, VPC and security group; the baseline may not know them.
    A missing part may widen the template, never narrow it: in Resource lists it becomes
    "*", the ec2:vpc test switches from StringEquals to StringLike (any concrete VPC id
    matches the pattern), and the NotResource statement ("RunInstances on everything but
    these region's resources") becomes Resource "*": the union of "all but region R's" over
    every R is everything, while NotResource [...:*:...] would exclude every region's.
    """

    def arn(kind: str) -> str:
        return f"arn:{p}:ec2:{region}:{account}:{kind}/*"

    vpc_arn = f"arn:{p}:ec2:{region}:{account}:vpc/{vpc_id or '*'}"
    # StringEquals takes "*" literally: any unknown part needs StringLike to stay a bound
    exact = vpc_id and "*" not in (region, account)
    vpc_test = {("StringEquals" if exact else "StringLike"): {"ec2:vpc": vpc_arn}}
    tag = {"StringEquals": {"ec2:ResourceTag/Vendor": "Databricks"}}
    request_tag = {"StringEquals": {"aws:RequestTag/Vendor": "Databricks"}}
    return [
        _statement(
            sid="InstancePoolsSupport",
            action=[
                "ec2:AssociateIamInstanceProfile",
                "ec2:DisassociateIamInstanceProfile",
                "ec2:ReplaceIamInstanceProfileAssociation",
            ],
            resource=arn("instance"),
            condition=tag,
        ),
        _statement(
            sid="AllowEc2RunInstancePerTag",
            action="ec2:RunInstances",
            resource=[arn("volume"), arn("instance")],
            condition=request_tag,
        ),
        _statement(
            sid="AllowEc2RunInstanceImagePerTag",
            action="ec2:RunInstances",
            resource=arn("image"),
            condition={"StringEquals": {"aws:ResourceTag/Vendor": "Databricks"}},
        ),
        _statement(
            sid="AllowEc2RunInstancePerVPCid",
            action="ec2:RunInstances",
            resource=[arn("network-interface"), arn("subnet"), arn("security-group")],
            condition=vpc_test,
        ),
        _statement(
            sid="AllowEc2RunInstanceOtherResources",
            action="ec2:RunInstances",
            resource="*",
        )
        if "*" in (region, account)
        else _statement(
            sid="AllowEc2RunInstanceOtherResources",
            action="ec2:RunInstances",
            not_resource=[
                arn("image"),
                arn("network-interface"),
                arn("subnet"),
                arn("security-group"),
                arn("volume"),
                arn("instance"),
            ],
        ),
        _statement(
            sid="EC2TerminateInstancesTag",
            action="ec2:TerminateInstances",
            resource=arn("instance"),
            condition=tag,
        ),
        _statement(
            sid="EC2AttachDetachVolumeTag",
            action=["ec2:AttachVolume", "ec2:DetachVolume"],
            resource=[arn("instance"), arn("volume")],
            condition=tag,
        ),
        _statement(
            sid="EC2CreateVolumeByTag",
            action="ec2:CreateVolume",
            resource=arn("volume"),
            condition=request_tag,
        ),
        _statement(
            sid="EC2DeleteVolumeByTag",
            action="ec2:DeleteVolume",
            resource=[arn("volume")],
            condition=tag,
        ),
        _statement(
            sid="VpcNonresourceSpecificActions",
            action=[
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
            ],
            resource=f"arn:{p}:ec2:{region}:{account}:security-group/{security_group_id or '*'}",
            condition=vpc_test,
        ),
    ]


def crossaccount_policy(
    policy_type: str = "managed",
    *,
    partition: str = "aws",
    account_id: str | None = None,
    region: str | None = None,
    vpc_id: str | None = None,
    security_group_id: str | None = None,
    pass_roles: list[str] | None = None,
) -> dict[str, Any]:
    """What `data "databricks_aws_crossaccount_policy"` emits for these arguments."""
    if policy_type not in POLICY_TYPES:
        raise ValueError(
            f"policy_type must be one of {', '.join(POLICY_TYPES)}, got {policy_type!r}"
        )
    p = arn_partition(partition)
    actions = list(_EC2_BASE)
    if policy_type != "restricted":
        actions += _EC2_UNRESTRICTED
    if policy_type == "managed":
        actions += _EC2_MANAGED_VPC
    statements = [
        _statement(action=actions, resource="*"),
        # EC2 Spot needs its service-linked role; only that role, only for spot.
        _statement(
            action=["iam:CreateServiceLinkedRole", "iam:PutRolePolicy"],
            resource=f"arn:{p}:iam::*:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
            condition={"StringLike": {"iam:AWSServiceName": "spot.amazonaws.com"}},
        ),
    ]
    if pass_roles:
        statements.append(_statement(action="iam:PassRole", resource=list(pass_roles)))
    if policy_type == "restricted":
        statements += _restricted_statements(
            p, region or "*", account_id or "*", vpc_id, security_group_id
        )
    return _document(*statements)


def expected_policy(
    ref: TemplateRef | dict[str, Any],
    *,
    partition: str,
    account_id: str,
    region: str | None = None,
    vpc_id: str | None = None,
    security_group_id: str | None = None,
    pass_roles: list[str] | None = None,
) -> dict[str, Any]:
    """The most a policy may grant: a literal -> it; "databricks-crossaccount-policy" -> rendered.

    policy_type defaults to "managed". For "restricted", the provider's `region`, `vpc_id`
    and `security_group_id` come from the template's parameters (or these arguments); parts
    neither gives render the widest policy they allow (see _restricted_statements).
    `pass_roles` adds the provider's optional iam:PassRole statement (instance profiles).
    """
    spec = _spec(ref)
    if isinstance(spec, dict):
        return spec
    if spec.template != "databricks-crossaccount-policy":
        raise ValueError(f"{spec.template!r} is not a policy template")
    return crossaccount_policy(
        spec.policy_type or "managed",
        partition=partition,
        account_id=account_id,
        region=region if region is not None else spec.region,
        vpc_id=vpc_id if vpc_id is not None else spec.vpc_id,
        security_group_id=(
            security_group_id if security_group_id is not None else spec.security_group_id
        ),
        pass_roles=pass_roles if pass_roles is not None else spec.pass_roles,
    )


# ---------------------------------------------------------------- root bucket policy

# What the provider's data "databricks_aws_bucket_policy" grants (its Actions, in order).
_ROOT_BUCKET_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:GetBucketLocation",
]


def root_bucket_policy(
    bucket: str,
    *,
    partition: str = "aws",
    full_access_role: str | None = None,
    databricks_e2_account_id: str | None = None,
) -> dict[str, Any]:
    """What `data "databricks_aws_bucket_policy"` emits for the workspace root bucket.

    Transcribed from databricks/terraform-provider-databricks
    aws/data_aws_bucket_policy.go @ 684f4424982431d3433e5c23353c6b208b263e75 (one Allow
    statement: the six object/bucket actions on `arn:<p>:s3:::<bucket>/*` and the bucket,
    for `arn:<p>:iam::<Databricks account>:root`; `databricks_e2_account_id` adds
    StringEquals aws:PrincipalTag/DatabricksAccountId; `full_access_role` *replaces* the
    principal: that role is granted instead of Databricks' account). Accounts and ARN
    namespaces per partition: aws/constants.go at the same commit (aws-us-gov-dod's ARNs
    are in aws-us-gov). The provider's tests (aws/data_aws_bucket_policy_test.go, same
    commit) assert only the JSON's length: 440 (bucket "abc"), 413 (full_access_role
    "bcd"), 575 (databricks_e2_account_id "my_e2_account_id"), 461 (aws-us-gov and
    aws-us-gov-dod); `json.dumps(doc, indent=2)` of these documents has exactly those
    lengths (Go's json.MarshalIndent with two spaces, struct key order), and
    tests/data/aws/policies/terraform-provider-root-bucket*.json hold the documents.
    """
    p = arn_partition(partition)
    principal = full_access_role or f"arn:{p}:iam::{DATABRICKS_ACCOUNTS[partition]}:root"
    return _document(
        _statement(
            action=list(_ROOT_BUCKET_ACTIONS),
            resource=[f"arn:{p}:s3:::{bucket}/*", f"arn:{p}:s3:::{bucket}"],
            principal={"AWS": principal},
            condition=(
                {"StringEquals": {"aws:PrincipalTag/DatabricksAccountId": databricks_e2_account_id}}
                if databricks_e2_account_id
                else None
            ),
        )
    )


def expected_bucket_policy(
    ref: TemplateRef | dict[str, Any], *, partition: str, bucket: str
) -> dict[str, Any]:
    """The most a bucket policy may grant: a literal -> it; "databricks-root-bucket" -> the
    provider's document for this bucket and partition."""
    spec = _spec(ref)
    if isinstance(spec, dict):
        return spec
    if spec.template != "databricks-root-bucket":
        raise ValueError(f"{spec.template!r} is not a bucket policy template")
    return root_bucket_policy(
        bucket,
        partition=partition,
        full_access_role=spec.full_access_role,
        databricks_e2_account_id=spec.databricks_e2_account_id,
    )
