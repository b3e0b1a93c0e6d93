"""The toy section: `toy.grants` lists who may hold which role."""

from __future__ import annotations

from dataclasses import field

from trustwatch.frozen import frozen
from trustwatch.schema import Model


@frozen
class ToySection(Model):
    grants: dict[str, list[str]] = field(default_factory=dict)  # role -> members

    def summary(self) -> str:
        return f"{len(self.grants)} toy roles"


Section = ToySection
