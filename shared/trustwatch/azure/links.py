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
    """The access control (IAM) blade of the resource or subscription."""
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
