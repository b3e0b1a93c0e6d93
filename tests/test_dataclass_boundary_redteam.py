"""Red-team pass over issue #14's boundary (models became trustwatch.schema dataclasses).

Each test names what the pydantic models did at d67e888 (before the change) where the
dataclasses first behaved otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trustwatch.alerts.secrets  # noqa: F401  (its SecretRef is nameable in a compiled file)
from trustwatch.baseline import parse_baseline
from trustwatch.baseline_source import load_local_baseline
from trustwatch.compiled import CompiledBaselineError, compile_baseline, load_compiled

SOURCE = (
    b"databricks: {account_id: abc}\n"
    b"aws:\n"
    b"  accounts:\n"
    b'    "123456789012":\n'
    b"      roles:\n"
    b"        r: {trust: {template: ec2}}\n"
)

_SECRET_FIELDS = dict.fromkeys(("env", "aws_secret", "ssm", "gcp_secret", "key"))
_FINDING_FIELDS: dict[str, Any] = {
    "id": "x", "rule": "r", "severity": "bogus", "cloud": "nocloud", "identity": "i",
    "account": "a", "mode": "alert", "sweep_status": None, "event_id": "", "event_time": "",
    "summary": "s", "expected": {}, "actual": {}, "remediation": None, "source_ip": "",
    "user_agent": "", "event_name": "",
}  # fmt: skip


def _tampered_trust(node: Any) -> bytes:
    """The compiled form of SOURCE with the role's trust replaced by `node`."""
    document = json.loads(compile_baseline(parse_baseline(SOURCE.decode()), SOURCE))
    account = document["baseline"]["fields"]["aws"]["fields"]["accounts"]["123456789012"]
    account["fields"]["roles"]["r"]["fields"]["trust"] = node
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        # d67e888: model_construct, no check: a SecretRef / Finding came back as the trust
        # (the rules misread it); now __post_init__ ran and its ValueError escaped, so the
        # function failed instead of validating the YAML
        ("trustwatch.alerts.secrets:SecretRef", _SECRET_FIELDS),
        ("trustwatch.alerts.secrets:SecretRef", {**_SECRET_FIELDS, "env": "A", "ssm": "B"}),
        ("trustwatch.alerts.secrets:SecretRef", {**_SECRET_FIELDS, "env": "A"}),
        ("trustwatch.findings:Finding", _FINDING_FIELDS),
        ("trustwatch.findings:Finding", {**_FINDING_FIELDS, "severity": "high", "cloud": "aws"}),
        # d67e888 refused these names with CompiledBaselineError; now a TypeError
        # (dataclasses.fields of a class that is no dataclass)
        ("trustwatch.schema:Model", {}),
        ("trustwatch.baseline:Baseline.__base__", {}),
    ],
)
def test_compiled_refuses_a_model_that_is_no_baseline_class(
    name: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(CompiledBaselineError, match="is not a baseline model"):
        load_compiled(_tampered_trust({"$model": name, "fields": fields}), SOURCE)


def test_tampered_compiled_secret_ref_falls_back_to_the_yaml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "baseline.yaml"
    path.write_bytes(SOURCE)
    node = {"$model": "trustwatch.alerts.secrets:SecretRef", "fields": _SECRET_FIELDS}
    (tmp_path / "baseline.compiled.json").write_bytes(_tampered_trust(node))
    with caplog.at_level(logging.WARNING):
        baseline = load_local_baseline(path)
    assert "compiled baseline refused" in caplog.text
    assert baseline.aws.accounts["123456789012"].roles["r"].trust.template == "ec2"


def test_compiled_still_loads_every_baseline_class() -> None:
    baseline = load_compiled(compile_baseline(parse_baseline(SOURCE.decode()), SOURCE), SOURCE)
    assert baseline == parse_baseline(SOURCE.decode())
