"""GCP console links for findings (see trustwatch.alerts.links for the safety rules:
fixed bases, percent-encoded parts)."""

from __future__ import annotations

import re

from trustwatch.alerts.links import Link
from trustwatch.findings import Finding

_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_BUCKET = re.compile(
    r"^(?:gs://|(?://storage\.googleapis\.com/)?projects/_/buckets/|buckets/)([a-z0-9._-]{3,222})/?$"
)


def console_link(finding: Finding) -> Link | None:
    """The bucket's permissions, else the project's IAM page."""
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
