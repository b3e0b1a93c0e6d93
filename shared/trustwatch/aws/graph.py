"""The AWS part of the report's trust graph (trustwatch.trustgraph).

Who may assume each baseline role comes from its trust template or document, rendered as
the rules render it (Databricks' account 414351767826 with the ExternalId, the Unity
Catalog master role and the role itself, EC2); instance profiles hold roles; roles reach
their managed and inline policies and their permissions boundary; watched buckets are
reached by the principal their policy template grants. Findings add what the baseline
does not allow, read from the fields the rules write (trustwatch.aws.rules).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from trustwatch.aws import policy, templates
from trustwatch.aws.baseline import AwsRole, TemplateRef, iam_name_key
from trustwatch.findings import Finding
from trustwatch.trustgraph import GraphBuilder, holds

# rule -> the label of the trust edge its `actual` entries add
_TRUST_DRIFT = {
    "aws.trust.principal_added": "trusted",
    "aws.trust.external_id_missing": "no ExternalId",
    "aws.trust.condition_weakened": "weakened condition",
    "aws.role.untracked_trusts_databricks": "trusted",
}


def _role_key(account: str, name: str) -> str:
    return f"aws:role:{account}:{iam_name_key(name)}"


def _profile_key(account: str, name: str) -> str:
    return f"aws:instance-profile:{account}:{iam_name_key(name)}"


def _policy_key(arn: str) -> str:
    return f"aws:policy:{policy.iam_arn_key(arn)}"


def _bucket_key(name: str) -> str:
    return f"aws:bucket:{name}"


def _principal_key(principal: str) -> str:
    return f"aws:principal:{principal}"


def _principal_view(principal: str) -> tuple[str, str]:
    """(label, kind) of a canonical trust principal."""
    if principal in templates.UC_MASTER_ROLES.values():
        return "Unity Catalog master role", "Databricks role"
    parts = principal.split(":", 5)
    if principal.startswith("service:"):
        return principal.removeprefix("service:"), "AWS service"
    if principal.startswith("federated:"):
        return principal.removeprefix("federated:"), "federated"
    if principal == "*":
        return "* (anyone)", "any principal"
    if len(parts) == 6 and parts[0] == "arn":
        account, resource = parts[4], parts[5]
        owner = "Databricks" if templates.is_databricks_principal(principal) else "account"
        if resource == "root":
            return f"{owner} {account}", "AWS account"
        return resource.rsplit("/", 1)[-1], f"{resource.split('/', 1)[0]} · {owner} {account}"
    return principal, "principal"


def _principal(graph: GraphBuilder, principal: str) -> str:
    label, kind = _principal_view(principal)
    return graph.node(_principal_key(principal), label, "principal", kind=kind)


def _trusted(baseline: Any, account: str, name: str, role: AwsRole) -> Iterator[tuple[str, bool]]:
    """(principal, needs an ExternalId) for each principal the baseline trust allows."""
    if role.trust is None:
        return
    if isinstance(role.trust, TemplateRef):
        documents = templates.expected_trust(
            role.trust,
            partition=baseline.aws.partition,
            account_id=account,
            role_name=name,
            databricks_account_id=baseline.databricks.account_id if baseline.databricks else None,
            role_path=role.path,
        )
    else:
        documents = [role.trust]
    seen: set[str] = set()
    for document in documents:
        for grant in policy.trust_principals(document):
            if grant.principal not in seen:
                seen.add(grant.principal)
                yield grant.principal, grant.external_ids is not None


def _role_of_arn(arn: str) -> tuple[str, str] | None:
    """(account, role name) of an IAM role ARN."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("role/"):
        return parts[4], parts[5].rsplit("/", 1)[-1]
    return None


def _subject_key(identity: str) -> str:
    """The node a finding's identity (an ARN as the rules write it) is."""
    parts = identity.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn":
        service, account, resource = parts[2], parts[4], parts[5]
        kind, _, rest = resource.partition("/")
        name = rest.rsplit("/", 1)[-1]
        if service == "iam" and kind == "role":
            return _role_key(account, name)
        if service == "iam" and kind == "instance-profile":
            return _profile_key(account, name)
        if service == "iam" and kind == "policy":
            return _policy_key(identity)
        if service == "s3":
            return _bucket_key(resource)
    return _bucket_key(identity)  # a bare bucket name


def draw(baseline: Any, findings: Sequence[Finding], graph: GraphBuilder) -> None:
    """The baseline's roles, instance profiles and buckets, then the findings' drift."""
    partition = baseline.aws.partition
    for account, section in baseline.aws.accounts.items():
        for name, role in section.roles.items():
            role_node = graph.node(
                _role_key(account, name), name, "identity", kind=f"role · {account}", watched=True
            )
            # the Unity Catalog template's self-assume principal (templates.expected_trust)
            self_arn = (
                f"arn:{templates.arn_partition(partition)}:iam::{account}:role{role.path}{name}"
            )
            for principal, external_id in _trusted(baseline, account, name, role):
                if policy.iam_arn_key(principal) == policy.iam_arn_key(self_arn):
                    graph.edge(role_node, role_node, "self-assume")
                    continue
                label = "assume + ExternalId" if external_id else "assume"
                graph.edge(_principal(graph, principal), role_node, label)
            for arn in role.managed_policies:
                target = graph.node(
                    _policy_key(arn), arn.rsplit("/", 1)[-1], "reach", kind="managed policy"
                )
                graph.edge(role_node, target, "attached")
            for policy_name in role.inline_policies:
                target = graph.node(
                    f"{role_node}:inline:{policy_name}", policy_name, "reach", kind="inline policy"
                )
                graph.edge(role_node, target, "inline")
            if role.permissions_boundary:
                boundary = role.permissions_boundary
                target = graph.node(
                    _policy_key(boundary), boundary.rsplit("/", 1)[-1], "reach", kind="boundary"
                )
                graph.edge(role_node, target, "boundary")
        for name, profile in section.instance_profiles.items():
            node = graph.node(
                _profile_key(account, name),
                name,
                "principal",
                kind="instance profile",
                watched=True,
            )
            graph.edge(node, _role_key(account, profile.role), "holds")
        for name, bucket in section.buckets.items():
            node = graph.node(_bucket_key(name), name, "reach", kind="S3 bucket", watched=True)
            spec = bucket.policy
            if isinstance(spec, TemplateRef) and spec.template == "databricks-root-bucket":
                grantee = spec.full_access_role or (
                    f"arn:{templates.arn_partition(partition)}:iam::"
                    f"{templates.DATABRICKS_ACCOUNTS[partition]}:root"
                )
                graph.edge(_principal(graph, grantee), node, "bucket policy")
    for finding in findings:
        _draw_finding(graph, finding)


def _draw_finding(graph: GraphBuilder, finding: Finding) -> None:
    key = _subject_key(finding.identity)
    rule, actual, expected = finding.rule, finding.actual, finding.expected
    if rule == "aws.role.untracked_trusts_databricks" and not graph.has(key):
        found = _role_of_arn(finding.identity)
        name = found[1] if found else finding.identity
        graph.node(key, name, "identity", kind=f"untracked role · {finding.scope}")
    if not graph.attach(key, finding) or not holds(finding):
        return  # resolved drift is listed in the table, not drawn
    if rule in _TRUST_DRIFT:
        for entry in _entries(actual):
            if isinstance(entry.get("principal"), str):
                graph.drift_edge(
                    _principal(graph, entry["principal"]), key, _TRUST_DRIFT[rule], finding
                )
    elif rule == "aws.trust.expected_principal_removed":
        for entry in _entries(expected):
            if isinstance(entry.get("principal"), str):
                graph.removed_edge(_principal(graph, entry["principal"]), key, "assume", finding)
    elif rule == "aws.assume_role.unexpected_principal" and isinstance(actual, dict):
        callers = actual.get("assumed_by")
        for caller in callers if isinstance(callers, list) else [callers]:
            if isinstance(caller, str):
                graph.drift_edge(_principal(graph, caller), key, "assumed", finding)
    elif rule in ("aws.policy.managed_attached", "aws.policy.managed_detached"):
        _policy_edge(graph, key, actual, finding)
    elif rule in ("aws.policy.inline_changed", "aws.policy.inline_deleted"):
        inline = (
            (actual.get("policy") or actual.get("deleted")) if isinstance(actual, dict) else None
        )
        if isinstance(inline, str):
            target = graph.node(f"{key}:inline:{inline}", inline, "reach", kind="inline policy")
            if rule == "aws.policy.inline_changed":
                graph.drift_edge(key, target, "grants more", finding)
            else:
                graph.removed_edge(key, target, "inline", finding)
    elif rule == "aws.role.boundary_removed" and isinstance(actual, dict):
        _boundary_edges(graph, key, expected, actual, finding)
    elif rule == "aws.instance_profile.changed" and isinstance(actual, dict):
        _profile_edges(graph, key, finding)


def _entries(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _policy_edge(graph: GraphBuilder, role: str, actual: Any, finding: Finding) -> None:
    if not isinstance(actual, dict):
        return
    arn = actual.get("attached") or actual.get("detached")
    if not isinstance(arn, str):
        return
    target = graph.node(_policy_key(arn), arn.rsplit("/", 1)[-1], "reach", kind="managed policy")
    if "attached" in actual:
        graph.drift_edge(role, target, "attached", finding)
    else:
        graph.removed_edge(role, target, "attached", finding)


def _boundary_edges(
    graph: GraphBuilder, role: str, expected: Any, actual: dict[str, Any], finding: Finding
) -> None:
    before = expected.get("permissions_boundary") if isinstance(expected, dict) else None
    if isinstance(before, str) and graph.has(_policy_key(before)):
        graph.removed_edge(role, _policy_key(before), "boundary", finding)
    after = actual.get("permissions_boundary")
    if isinstance(after, str):
        target = graph.node(_policy_key(after), after.rsplit("/", 1)[-1], "reach", kind="boundary")
        graph.drift_edge(role, target, "boundary", finding)


def _profile_edges(graph: GraphBuilder, profile: str, finding: Finding) -> None:
    actual, expected = finding.actual, finding.expected
    account = finding.scope
    added, removed = actual.get("role_added"), actual.get("role_removed")
    if isinstance(added, str):
        role = graph.node(_role_key(account, added), added, "identity", kind=f"role · {account}")
        graph.drift_edge(profile, role, "holds", finding)
    was = expected.get("role") if isinstance(expected, dict) else None
    gone = isinstance(removed, str) or isinstance(added, str) or actual.get("deleted")
    if gone and isinstance(was, str) and graph.has(_role_key(account, was)):
        graph.removed_edge(profile, _role_key(account, was), "holds", finding)
