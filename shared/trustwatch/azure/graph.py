"""The Azure part of the report's trust graph (trustwatch.trustgraph).

Each baseline identity is its principal (the access connector's managed identity, a
service principal); what acts as it is the resource it belongs to (the access connector,
whose workloads get its tokens) and its Entra application; what it reaches is the scope
of each expected role assignment. Protected scopes, watched storage accounts and custom
roles are drawn too, so that drift on them has a place. Findings add what the baseline
does not allow, read from the fields the rules write (trustwatch.azure.rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trustwatch.azure.roles import normalize_guid, role_name
from trustwatch.azure.scopes import norm_scope
from trustwatch.findings import Finding
from trustwatch.trustgraph import GraphBuilder, holds

_ASSIGNED = ("azure.role_assignment.unexpected", "azure.role_assignment.protected_scope")
_ENTRA = {"azure.sp.credential_added": "credential", "azure.sp.owner_added": "owner"}


def _principal_key(principal_id: str) -> str:
    return f"azure:principal:{normalize_guid(principal_id)}"


def _scope_key(scope: str) -> str:
    return f"azure:scope:{norm_scope(scope)}"


# ARM resource types (the segment before a name) in words
_ARM_TYPES = {
    "resourcegroups": "resource group",
    "storageaccounts": "storage account",
    "accessconnectors": "access connector",
    "userassignedidentities": "user-assigned identity",
    "managementgroups": "management group",
}


def _scope_label(scope: str) -> tuple[str, str]:
    """(label, kind) of an ARM scope: its last type/name pair says what it is."""
    parts = [p for p in scope.strip().split("/") if p]
    if not parts:
        return "/ (tenant root)", "root scope"
    if len(parts) == 2 and parts[0].lower() == "subscriptions":
        return parts[1], "subscription"
    if len(parts) >= 2:
        kind = parts[-2]
        return parts[-1], _ARM_TYPES.get(kind.lower(), kind)
    return parts[-1], "scope"


def _scope(graph: GraphBuilder, scope: str, *, protected: bool = False) -> str:
    label, kind = _scope_label(scope)
    return graph.node(
        _scope_key(scope), label, "reach", kind=f"protected · {kind}" if protected else kind
    )


def draw(baseline: Any, findings: Sequence[Finding], graph: GraphBuilder) -> None:
    """The baseline's identities and what they reach, then the findings' drift."""
    by_resource: dict[str, str] = {}  # resource id (normalized) -> its identity's node
    storage: dict[str, str] = {}  # storage account name -> its node
    for sub_id, sub in baseline.azure.subscriptions.items():
        for scope in sub.protected_scopes:
            _scope(graph, scope, protected=True)
        for name, identity in sub.identities.items():
            kind = "managed identity" if identity.resource_id else "service principal"
            node = graph.node(
                _principal_key(identity.principal_id), name, "identity", kind=kind, watched=True
            )
            if identity.resource_id:
                by_resource[norm_scope(identity.resource_id)] = node
                label, what = _scope_label(identity.resource_id)
                owner = graph.node(
                    f"azure:resource:{norm_scope(identity.resource_id)}",
                    label,
                    "principal",
                    kind=what,
                )
                graph.edge(owner, node, "acts as")
            if identity.application_id:
                app = graph.node(
                    f"azure:app:{identity.application_id}",
                    identity.application_id,
                    "principal",
                    kind="Entra application",
                )
                graph.edge(app, node, "credentials")
            for assignment in identity.role_assignments:
                graph.edge(node, _scope(graph, assignment.scope), role_name(assignment.role))
        for name in sub.storage_accounts:
            storage[name.lower()] = _storage_node(graph, sub_id, name, sub.storage_accounts[name])
        for guid in sub.custom_roles:
            graph.node(
                f"azure:role-definition:{guid}", guid, "reach", kind="custom role", watched=True
            )
    for finding in findings:
        _draw_finding(graph, finding, by_resource, storage)


def _storage_node(graph: GraphBuilder, sub_id: str, name: str, spec: Any) -> str:
    """The scope node of a watched storage account (one an assignment reaches, if any)."""
    if spec.resource_group:
        scope = (
            f"/subscriptions/{sub_id}/resourceGroups/{spec.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{name}"
        )
        return graph.node(_scope_key(scope), name, "reach", kind="storage account", watched=True)
    suffix = f"/storageaccounts/{name.lower()}"
    for key in graph.node_keys():
        if key.startswith(f"azure:scope:/subscriptions/{sub_id.lower()}/") and key.endswith(suffix):
            return graph.node(key, name, "reach", kind="storage account", watched=True)
    return graph.node(f"azure:storage:{name}", name, "reach", kind="storage account", watched=True)


def _subject(finding: Finding, by_resource: dict[str, str], storage: dict[str, str]) -> str:
    """The node a finding's identity is: a principal, an identity's resource, a storage
    account, a custom role."""
    rule, identity = finding.rule, finding.identity
    resource = norm_scope(identity)
    if resource in by_resource:
        return by_resource[resource]
    if rule.startswith("azure.storage."):
        return storage.get(resource.rsplit("/", 1)[-1], f"azure:storage:{resource}")
    if rule == "azure.role_definition.widened":
        return f"azure:role-definition:{normalize_guid(identity)}"
    return _principal_key(identity)


def _draw_finding(
    graph: GraphBuilder, finding: Finding, by_resource: dict[str, str], storage: dict[str, str]
) -> None:
    rule, actual, expected = finding.rule, finding.actual, finding.expected
    key = _subject(finding, by_resource, storage)
    if rule in _ASSIGNED and not graph.has(key) and isinstance(actual, dict):
        if "managed_by_tenant" in actual:  # a Lighthouse delegation: the tenant gets access
            label, kind = str(actual.get("managed_by_tenant") or finding.identity), "tenant"
        else:
            label, kind = finding.identity, "principal"
        graph.node(key, label, "principal", kind=kind)
    if not graph.attach(key, finding) or not holds(finding):
        return  # resolved drift is listed in the table, not drawn
    if rule in _ASSIGNED and isinstance(actual, dict) and isinstance(actual.get("scope"), str):
        label = str(actual.get("role") or "Lighthouse")
        graph.drift_edge(key, _scope(graph, actual["scope"]), label, finding)
    elif rule == "azure.role_assignment.expected_removed" and isinstance(expected, dict):
        scope, role = expected.get("scope"), expected.get("role")
        if isinstance(scope, str) and isinstance(role, str):
            graph.removed_edge(key, _scope(graph, scope), role, finding)
    elif rule == "azure.identity.federated_credential_added" and isinstance(actual, dict):
        subject = str(actual.get("subject") or "?")
        issuer = str(actual.get("issuer") or "?")
        who = graph.node(
            f"azure:federated:{issuer}:{subject}",
            subject,
            "principal",
            kind=f"federated · {issuer}",
        )
        graph.drift_edge(who, key, "federated credential", finding)
    elif rule == "azure.identity.changed" and isinstance(actual, dict):
        owner = f"azure:resource:{norm_scope(finding.identity)}"
        for principal in actual.get("principal_ids") or []:
            if isinstance(principal, str) and graph.has(owner):
                new = graph.node(
                    _principal_key(principal), principal, "identity", kind="managed identity"
                )
                graph.drift_edge(owner, new, "acts as", finding)
    elif rule in _ENTRA and isinstance(actual, dict):
        added = [str(a) for a in actual.get("added") or []] or ["?"]
        who = graph.node(
            f"azure:{_ENTRA[rule]}:{finding.id}",
            ", ".join(added),
            "principal",
            kind=f"new {_ENTRA[rule]}",
        )
        graph.drift_edge(who, key, _ENTRA[rule], finding)
