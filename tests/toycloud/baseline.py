"""The toy section: `toy.grants` lists who may hold which role."""

from __future__ import annotations

from pydantic import Field
from trustwatch.baseline import Strict


class ToySection(Strict):
    grants: dict[str, list[str]] = Field(default_factory=dict)  # role -> members

    def summary(self) -> str:
        return f"{len(self.grants)} toy roles"


Section = ToySection
