"""The GCP part of the report's trust graph (trustwatch.trustgraph).

Each baseline service account is an identity; its `impersonators` can act as it; it
reaches its project roles. A watched bucket is reached by the members of its bindings
(service accounts drawn as identities, everyone else as principals); watched custom roles
are drawn so that drift on them has a place. Findings add what the baseline does not
allow, read from the fields the rules write (trustwatch.gcp.rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trustwatch.findings import Finding
from trustwatch.trustgraph import GraphBuilder, holds

_KEYS = {"key_id": "user-managed key", "hmac_access_id": "HMAC key"}


def _sa_key(email: str) -> str:
    return f"gcp:sa:{email}"


def _grant_key(resource: str, role: str) -> str:
    return f"gcp:grant:{resource}:{role}"


def _short_role(role: str) -> str:
    return role.removeprefix("roles/")


def _member(graph: GraphBuilder, member: str) -> str:
    """A policy member's node: a service account is an identity (the baseline's own, or
    one like Databricks' storage account), anyone else a principal."""
    kind, _, name = member.strip().partition(":")
    if kind.lower() == "serviceaccount" and name:
        return graph.node(_sa_key(name), name, "identity", kind="service account")
    if not name:  # allUsers, allAuthenticatedUsers
        return graph.node(f"gcp:member:{member}", member, "principal", kind="public")
    return graph.node(f"gcp:member:{member}", name, "principal", kind=kind)


def _grant(graph: GraphBuilder, resource: str, role: str) -> str:
    where = resource.removeprefix("projects/") if resource.startswith("projects/") else resource
    return graph.node(_grant_key(resource, role), role, "reach", kind=f"role on {where}")


def draw(baseline: Any, findings: Sequence[Finding], graph: GraphBuilder) -> None:
    """The baseline's service accounts, buckets and custom roles, then the drift."""
    for project_id, project in baseline.gcp.projects.items():
        for email, account in project.service_accounts.items():
            kind = f"service account · {project_id}"
            node = graph.node(_sa_key(email), email, "identity", kind=kind, watched=True)
            for member in account.impersonators:
                graph.edge(_member(graph, member), node, "impersonate")
            for role in account.project_roles:
                graph.edge(node, _grant(graph, f"projects/{project_id}", role), "holds")
        for name, bucket in project.buckets.items():
            node = graph.node(f"gcp:bucket:{name}", name, "reach", kind="bucket", watched=True)
            for role, members in bucket.bindings.items():
                for member in members:
                    graph.edge(_member(graph, member), node, _short_role(role))
        for role in project.custom_roles:
            graph.node(f"gcp:role:{role}", role, "reach", kind="custom role", watched=True)
    for finding in findings:
        _draw_finding(graph, finding)


def _subject(finding: Finding) -> str:
    if finding.rule.startswith("gcp.bucket."):
        return f"gcp:bucket:{finding.identity}"
    if finding.rule.startswith("gcp.role."):
        return f"gcp:role:{finding.identity}"
    return _sa_key(finding.identity)


def _binding(value: Any) -> tuple[str, str, str] | None:
    """(resource, role, member) of a binding as the rules write it."""
    if not isinstance(value, dict):
        return None
    parts = (value.get("resource"), value.get("role"), value.get("member"))
    if all(isinstance(p, str) for p in parts):
        return str(parts[0]), str(parts[1]), str(parts[2])
    return None


def _draw_finding(graph: GraphBuilder, finding: Finding) -> None:
    rule, key = finding.rule, _subject(finding)
    if not graph.attach(key, finding) or not holds(finding):
        return  # resolved drift is listed in the table, not drawn
    added, removed = _binding(finding.actual), _binding(finding.expected)
    if rule == "gcp.iam.binding_added" and added:
        graph.drift_edge(key, _grant(graph, added[0], added[1]), "holds", finding)
    elif rule == "gcp.iam.binding_removed" and removed:
        graph.removed_edge(key, _grant(graph, removed[0], removed[1]), "holds", finding)
    elif rule == "gcp.iam.impersonation_granted" and added:
        graph.drift_edge(_member(graph, added[2]), key, _short_role(added[1]), finding)
    elif rule == "gcp.bucket.binding_added" and added:
        resource, role, member = added
        via = "" if resource == finding.identity else f" via {resource}"
        graph.drift_edge(_member(graph, member), key, _short_role(role) + via, finding)
    elif rule == "gcp.bucket.binding_removed" and removed:
        graph.removed_edge(_member(graph, removed[2]), key, _short_role(removed[1]), finding)
    elif rule == "gcp.sa.key_created" and isinstance(finding.actual, dict):
        for field, kind in _KEYS.items():
            if field in finding.actual:
                shown = str(finding.actual[field] or "(id not logged)")
                holder = graph.node(f"gcp:key:{shown}", shown, "principal", kind=kind)
                graph.drift_edge(holder, key, "signs as", finding)
