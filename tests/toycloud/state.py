"""The toy cloud's state part: reads a JSON file (TOY_STATE) that a test writes.

`{"units": {U: {"grants": {role: [members]}, "errors": [...], "unreadable": [roles],
"fail": "why", "garbled": [roles]}}, "audit": [toy records with "unit" and "time" (ISO 8601)]}`: each grant is
a `grant` change, exactly as a Grant event makes it; "fail" makes the read raise; audit
records are what the toy cloud logged, listed by catch-up within [since, until).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trustwatch.baseline import Baseline
from trustwatch.changes import Change
from trustwatch.sweep import StateRead

from toycloud.changes import Grant

CALLS_LOG: list[tuple[str, str]] = []  # (function, unit): what the tests' sweeps asked


def _state(environ: Mapping[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(Path(environ["TOY_STATE"]).read_text())
    return loaded


def units(baseline: Baseline, environ: Mapping[str, str]) -> list[str]:
    return sorted(_state(environ)["units"])


def read(unit: str, baseline: Baseline, environ: Mapping[str, str]) -> StateRead:
    CALLS_LOG.append(("read", unit))
    state = _state(environ)["units"][unit]
    if state.get("fail"):
        raise ConnectionError(state["fail"])
    changes = [
        Change(
            cloud="toy",
            kind="grant",
            event_name="sweep:ListGrants",
            scope=unit,
            identity=role,
            payload=Grant(member),
        )
        for role, members in sorted(state.get("grants", {}).items())
        if role not in state.get("unreadable", [])
        for member in members
    ]
    # a role in "garbled" reads back as a payload the toy rule cannot read (a rule's bug)
    changes += [
        Change(cloud="toy", kind="grant", event_name="sweep:ListGrants", scope=unit,
               identity=role, payload="garbled")
        for role in state.get("garbled", [])
    ]  # fmt: skip
    return StateRead(
        unit,
        changes,
        calls=1,
        errors=list(state.get("errors", [])),
        unreadable=list(state.get("unreadable", [])),
    )


def catch_up(
    unit: str, since: datetime, until: datetime, environ: Mapping[str, str]
) -> Iterator[Any]:
    CALLS_LOG.append(("catch_up", unit))
    for record in _state(environ).get("audit", []):
        if record.get("unit") == unit and since <= datetime.fromisoformat(record["time"]) < until:
            yield record
