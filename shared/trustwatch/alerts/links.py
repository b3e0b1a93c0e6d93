"""Deep links from a finding to the console page where a human checks or fixes it.

Each cloud builds its own (`<cloud>/links.py: console_link`) only from fixed bases and
percent-encoded parts of the finding, so a link can carry no markup (`<`, `>`, `|`,
quotes, spaces) into any message format.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from trustwatch import clouds
from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.findings import Finding

_SAFE_URL = re.compile(r"^https://[A-Za-z0-9._~:/?#@!$()*+,;=%-]+$")


@frozen
class Link:
    """A console URL (fixed base, percent-encoded parts) and its label."""

    url: str
    label: str


def deep_link(finding: Finding) -> Link | None:
    """The console page for the finding's identity, or None when nothing fits."""
    build = clouds.get(finding.cloud).console_link
    # Only the identity and scope feed a link: make them encodable (JSON allows lone
    # surrogates such as "\\ud800"; quote() can't encode them).
    parts = {k: _encodable(getattr(finding, k)) for k in ("identity", "scope")}
    link = build(finding.model_copy(update=parts))
    # Belt and braces: whatever the parts were, never hand out a URL with markup in it.
    return link if link and _SAFE_URL.match(link.url) else None


def _encodable(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
