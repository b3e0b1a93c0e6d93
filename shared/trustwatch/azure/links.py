"""Azure console links for findings (see trustwatch.alerts.links for the safety rules:
fixed bases, percent-encoded parts)."""

from __future__ import annotations

import re
from urllib.parse import quote

from trustwatch.alerts.links import Link
from trustwatch.findings import Finding

_AZURE_RESOURCE = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}(/[^\s]*)?$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def console_link(finding: Finding) -> Link | None:
    """The access control (IAM) blade of the resource or subscription; for an Entra
    finding (azure.sp.*), the application or service principal in the portal."""
    if finding.rule.startswith("azure.sp."):
        return _entra_link(finding)
    label = "Open access control (IAM) in the Azure portal"
    for candidate in (finding.identity, finding.scope):
        if _AZURE_RESOURCE.match(candidate):
            path = quote(candidate.rstrip("/"), safe="/")
            return Link(f"https://portal.azure.com/#resource{path}/users", label)
    if _GUID.match(finding.scope):
        return Link(
            f"https://portal.azure.com/#resource/subscriptions/{finding.scope}/users", label
        )
    return None


def _entra_link(finding: Finding) -> Link | None:
    """The app registration (by the baseline's application id) or, without one, the
    enterprise application (the baseline identity's service principal object id). Only
    GUIDs go in the URL; the scope of such a finding is the tenant, not a subscription."""
    expected = finding.expected if isinstance(finding.expected, dict) else {}
    app_id = expected.get("application_id")
    if isinstance(app_id, str) and _GUID.match(app_id):
        return Link(
            "https://portal.azure.com/#view/Microsoft_AAD_RegisteredApps/"
            f"ApplicationMenuBlade/~/Overview/appId/{app_id}",
            "Open the app registration in the Azure portal",
        )
    if _GUID.match(finding.identity):
        return Link(
            "https://portal.azure.com/#view/Microsoft_AAD_IAM/ManagedAppMenuBlade/"
            f"~/Overview/objectId/{finding.identity}",
            "Open the enterprise application in the Azure portal",
        )
    return None
