"""AWS console links for findings (see trustwatch.alerts.links for the safety rules:
fixed bases, percent-encoded parts)."""

from __future__ import annotations

import re
from urllib.parse import quote

from trustwatch.alerts.links import Link
from trustwatch.findings import Finding

_AWS_CONSOLES = {
    "aws": "https://console.aws.amazon.com",
    "aws-us-gov": "https://console.amazonaws-us-gov.com",
    "aws-cn": "https://console.amazonaws.cn",
}
_AWS_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):(role|policy|instance-profile)/(.+)$")


def console_link(finding: Finding) -> Link | None:
    """The IAM console page of the role or policy."""
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
