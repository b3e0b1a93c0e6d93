"""The toy cloud's remediate part: its "API" is an in-memory role -> members table.

`TOY_API` stands for the cloud's state; `faults` lets a test make the next write fail
(a permission error) or be lost (accepted but not applied), as real APIs can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trustwatch.baseline import Baseline
from trustwatch.findings import Finding
from trustwatch.remediation import NothingToDo, Plan


@dataclass
class ToyApi:
    members: dict[str, set[str]] = field(default_factory=dict)
    writes: int = 0
    faults: list[str] = field(default_factory=list)  # "denied" | "lost", one per write

    def remove(self, role: str, member: str) -> None:
        self.writes += 1
        fault = self.faults.pop(0) if self.faults else ""
        if fault == "denied":
            raise PermissionError(f"toy: not allowed to change {role}")
        if fault != "lost":
            self.members.get(role, set()).discard(member)


TOY_API = ToyApi()


class ToyRemediator:
    def __init__(self, api: ToyApi) -> None:
        self.api = api

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        role, member = finding.identity, str(finding.actual)
        now = sorted(self.api.members.get(role, set()))
        if member not in now:
            return NothingToDo(f"{member} no longer holds {role}: already back")
        after = [m for m in now if m != member]

        def verify() -> str | None:
            left = self.api.members.get(role, set())
            return f"{member} still holds {role}" if member in left else None

        return Plan(
            action=finding.remediation.action,
            target=role,
            mode=baseline.defaults.mode,
            before=now,
            after=after,
            apply=lambda: self.api.remove(role, member),
            verify=verify,
        )


def remediator_from_env(environ: Mapping[str, str]) -> ToyRemediator:
    return ToyRemediator(TOY_API)
