"""Deep links from a finding to the console page where a human checks or fixes it.

Built only from fixed bases and percent-encoded parts of the finding, so a link can carry
no markup (`<`, `>`, `|`, quotes, spaces) into any message format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from trustwatch.findings import Finding

_AWS_CONSOLES = {
    "aws": "https://console.aws.amazon.com",
    "aws-us-gov": "https://console.amazonaws-us-gov.com",
    "aws-cn": "https://console.amazonaws.cn",
}
_AWS_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):(role|policy|instance-profile)/(.+)$")
_AZURE_RESOURCE = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}(/[^\s]*)?$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_BUCKET = re.compile(
    r"^(?:gs://|(?://storage\.googleapis\.com/)?projects/_/buckets/|buckets/)([a-z0-9._-]{3,222})/?$"
)
_SAFE_URL = re.compile(r"^https://[A-Za-z0-9._~:/?#@!$()*+,;=%-]+$")


@dataclass(frozen=True)
class Link:
    """A console URL (fixed base, percent-encoded parts) and its label."""

    url: str
    label: str


def deep_link(finding: Finding) -> Link | None:
    """The console page for the finding's identity, or None when nothing fits."""
    build = {"aws": _aws, "azure": _azure, "gcp": _gcp}[finding.cloud]
    # Only the identity and scope feed a link: make them encodable (JSON allows lone
    # surrogates such as "\\ud800"; quote() can't encode them).
    parts = {k: _encodable(getattr(finding, k)) for k in ("identity", "scope")}
    link = build(finding.model_copy(update=parts))
    # Belt and braces: whatever the parts were, never hand out a URL with markup in it.
    return link if link and _SAFE_URL.match(link.url) else None


def _encodable(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _aws(finding: Finding) -> Link | None:
    match = _AWS_ARN.match(finding.identity)
    if not match:
        return None
    partition, _account, kind, rest = match.groups()
    base = _AWS_CONSOLES.get(partition)
    if base is None:
        return None
    label = "Open in the AWS IAM console"
    if kind == "role":
        name = rest.rsplit("/", 1)[-1]  # the console addresses roles by name, not path
        return Link(f"{base}/iam/home#/roles/details/{quote(name, safe='')}", label)
    if kind == "policy":
        return Link(f"{base}/iam/home#/policies/details/{quote(finding.identity, safe='')}", label)
    return Link(f"{base}/iam/home#/roles", label)


def _azure(finding: Finding) -> Link | None:
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


def _gcp(finding: Finding) -> Link | None:
    project = finding.scope if _GCP_PROJECT.match(finding.scope) else ""
    query = f"?project={project}" if project else ""
    bucket = _GCP_BUCKET.match(finding.identity)
    if bucket:
        return Link(
            f"https://console.cloud.google.com/storage/browser/{bucket.group(1)};tab=permissions"
            + query,
            "Open bucket permissions in the Google Cloud console",
        )
    if not project:
        return None
    return Link(
        f"https://console.cloud.google.com/iam-admin/iam{query}",
        "Open IAM in the Google Cloud console",
    )
