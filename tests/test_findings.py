"""trustwatch.findings: the finding contract as stdlib dataclasses (Contract 2).

The JSON a finding is written as must not change with its implementation: the expected
lines in data/findings/ were written by the pydantic models the dataclasses replaced
(hand-built.jsonl: `hand_built()`'s; pydantic.jsonl: a sample of the findings the test
suite built then, one of each shape).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from conftest import DATA
from trustwatch.findings import Finding, Remediation, Severity

PYDANTIC_JSONL = DATA / "findings" / "pydantic.jsonl"

_BASE: dict[str, Any] = {
    "id": "0" * 64,
    "rule": "aws.trust.unexpected_principal",
    "severity": Severity.high,
    "cloud": "aws",
    "scope": "123456789012",
    "identity": "arn:aws:iam::123456789012:role/dbx-cross-account",
    "summary": "trust policy allows an unexpected principal",
}


def _finding(**changes: Any) -> Finding:
    return Finding(**{**_BASE, **changes})


def hand_built() -> list[Finding]:
    """Findings of every shape: each optional part present and absent, odd values."""
    planned = Remediation(action="restore_trust", status="planned", detail="dry run")
    full = _finding(
        actor="arn:aws:sts::123456789012:assumed-role/admin/alice",
        event_id="e-1",
        event_time="2026-01-02T03:04:05Z",
        expected={"principals": ["arn:aws:iam::414351767826:root"], "external_id": "abc"},
        actual={"principals": ("arn:aws:iam::999999999999:root", "*"), "count": 2},
        remediation=Remediation(
            action="restore_trust",
            status="applied",
            detail="put back",
            target="arn:aws:iam::123456789012:role/dbx-cross-account",
            before={"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}}]},
            after={"Statement": [], "Version": "2012-10-17"},
        ),
        source_ip="203.0.113.7",
        user_agent='aws-cli/2.15 "quoted" \\ back\nslash',
        event_name="UpdateAssumeRolePolicy",
    )
    return [
        _finding(),
        _finding(severity="critical", cloud="azure", source="sweep", sweep_status="new"),
        _finding(severity=Severity.info, cloud="gcp", source="sweep", sweep_status="open"),
        _finding(severity="low", source="sweep", sweep_status="resolved"),
        _finding(remediation=planned),
        # before/after are shown only once there is a target, even when set without one
        _finding(remediation=Remediation(action="x", status="failed", before={"a": 1}, after=[])),
        _finding(remediation=Remediation(action="x", status="planned", target="t")),
        full,
        full.model_copy(update={"source": "sweep", "sweep_status": "open"}),
        full.model_copy(
            update={"remediation": full.remediation.model_copy(update={"status": "skipped"})}
        ),
        _finding(
            severity="medium",
            expected="a string, not an object",
            actual=None,
            summary="unicode → é 日本 🙂 and \u0001 control",
        ),
        _finding(
            expected=[1, -2, 3.5, 0.1, 10**20, True, False, None, "", [], {}],
            actual={"nested": {"deeper": [{"k": ("t", 1)}]}, "severity": Severity.critical},
        ),
        _finding(
            id="",
            rule="",
            scope="",
            identity="",
            summary="",
            remediation=Remediation(action="", status="none", detail=""),
        ),
    ]


# Written by the pydantic Finding.to_json() from hand_built() (before the dataclasses).
HAND_BUILT_JSON = (DATA / "findings" / "hand-built.jsonl").read_text(encoding="utf-8").splitlines()


def test_hand_built_findings_are_the_json_pydantic_wrote() -> None:
    assert [f.to_json() for f in hand_built()] == HAND_BUILT_JSON


def test_dump_and_round_trip_of_hand_built_findings() -> None:
    for finding, text in zip(hand_built(), HAND_BUILT_JSON, strict=True):
        assert finding.model_dump(mode="json") == json.loads(text)
        assert Finding.model_validate_json(text).to_json() == text
        assert Finding.model_validate(json.loads(text)).to_json() == text


def _built_from(text: str) -> Finding:
    """The finding of a JSON line, built as the engine builds one (no validation)."""
    data = json.loads(text)
    return Finding(**{**data, "remediation": Remediation(**data["remediation"])})


def test_the_suites_findings_are_the_json_pydantic_wrote() -> None:
    lines = PYDANTIC_JSONL.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 50
    for text in lines:
        assert _built_from(text).to_json() == text
        assert Finding.model_validate_json(text).to_json() == text


def test_construction_coerces_severity_and_checks_the_cloud() -> None:
    assert _finding(severity="critical").severity is Severity.critical
    with pytest.raises(ValueError, match="'urgent' is not a valid Severity"):
        _finding(severity="urgent")
    with pytest.raises(ValueError, match="unknown cloud 'toy'; expected one of: "):
        _finding(cloud="toy")
    with pytest.raises(ValueError, match="unknown cloud 'toy'"):
        _finding().model_copy(update={"cloud": "toy"})


def test_findings_are_frozen_and_copied() -> None:
    finding = _finding()
    with pytest.raises(FrozenInstanceError):
        finding.summary = "changed"  # type: ignore[misc]
    copied = finding.model_copy(update={"severity": "low"})
    assert copied.severity is Severity.low and finding.severity is Severity.high
    assert copied == _finding(severity=Severity.low)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"colour": "red"}, "colour"),
        ({"severity": "urgent"}, "severity"),
        ({"cloud": "toy"}, "cloud"),
        ({"source": "cron"}, "source"),
        ({"sweep_status": "gone"}, "sweep_status"),
        ({"remediation": {"status": "done"}}, "remediation.status"),
        ({"remediation": {"how": 1}}, "remediation.how"),
        ({"id": 5}, "id"),
    ],
)
def test_validation_rejects_what_pydantic_rejected(change: dict[str, Any], where: str) -> None:
    from pydantic import ValidationError

    data = {**_BASE, "severity": "high", **change}
    for as_json in (False, True):
        with pytest.raises(ValidationError) as caught:
            if as_json:
                Finding.model_validate_json(json.dumps(data))
            else:
                Finding.model_validate(data)
        # the first line is what the CLI and the sweep state report
        assert str(caught.value).splitlines()[0] == "1 validation error for Finding"
        assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [where]


def test_a_finding_needs_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from trustwatch.findings import Finding, Remediation\n"
        "f = Finding(id='x', rule='r', severity='high', cloud='aws', scope='s', identity='i',"
        " summary='s')\n"
        "g = f.model_copy(update={'remediation': Remediation(action='a', target='t')})\n"
        "assert '\"target\":\"t\"' in g.to_json() and f.model_dump(mode='json')\n"
        "assert 'pydantic' not in sys.modules and 'pydantic_core' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
