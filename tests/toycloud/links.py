"""Toy console links."""

from __future__ import annotations

from urllib.parse import quote

from trustwatch.alerts.links import Link
from trustwatch.findings import Finding


def console_link(finding: Finding) -> Link | None:
    return Link(f"https://toy.example/roles/{quote(finding.identity, safe='')}", "Open toy")
