"""The GCP function's JSON log lines (trustwatch.logjson): one object per line with the
`severity` field Cloud Logging reads from stdout
(https://cloud.google.com/logging/docs/structured-logging#special-payload-fields), a
finding in `extra` written whole, as Contract 2's JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trustwatch.findings import Finding
from trustwatch.logjson import JsonFormatter

FINDINGS = Path(__file__).parent / "data" / "findings"


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("trustwatch", logging.WARNING, __file__, 1, "finding %s", ("x",), None)
    rec.__dict__.update(extra)
    return rec


def test_a_finding_in_extra_is_written_as_its_contract_json() -> None:
    lines = sorted(FINDINGS.glob("*.jsonl"))[0].read_text().splitlines()
    finding = Finding.model_validate_json(lines[0])
    entry = json.loads(JsonFormatter().format(record(finding=finding)))
    assert entry["severity"] == "WARNING" and entry["message"] == "finding x"
    assert entry["finding"] == json.loads(finding.to_json())


def test_anything_else_unserializable_is_written_as_its_str() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd <thing>"

    entry = json.loads(JsonFormatter().format(record(finding=Odd())))
    assert entry["finding"] == "odd <thing>"
