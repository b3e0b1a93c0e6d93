"""TRUSTWATCH_REMEDIATION=off: detection and alerts only, no plan and no state read.

With `off` the function builds no remediator, so a finding costs no read of the cloud and
no cloud SDK is loaded on the event path (the like-for-like setting for a detection-only
comparison, such as benchmarks/run.py's against a Cloud Custodian policy without actions).
A finding the engine would plan says that nothing was planned; dry run stays the default.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_BASELINE, ROOT
from trustwatch.alerts.receivers import RecordingHTTPServer
from trustwatch.compiled import compiled_path
from trustwatch.package import baseline_files
from trustwatch.remediation import OFF_DETAIL, setting_from_env
from trustwatch.runtime import function_responder


@pytest.mark.parametrize(
    ("value", "setting"),
    [
        (None, "dry-run"),
        ("", "dry-run"),
        ("dry-run", "dry-run"),
        ("APPLY", "apply"),
        (" off ", "off"),
        ("of", "dry-run"),  # a typo never applies and never silently turns planning off
        ("disabled", "dry-run"),
    ],
)
def test_the_setting_is_read_strictly(value: str | None, setting: str) -> None:
    env = {} if value is None else {"TRUSTWATCH_REMEDIATION": value}
    assert setting_from_env(env) == setting


def test_off_builds_no_remediator(tmp_path: Path) -> None:
    env = {
        "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
        "TRUSTWATCH_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
        "TRUSTWATCH_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    dry = function_responder("aws", str(tmp_path / "handler.py"), environ=env)
    assert dry.remediator is not None and not dry.apply_remediation
    assert not dry.remediation_off
    off = function_responder(
        "aws", str(tmp_path / "handler.py"), environ={**env, "TRUSTWATCH_REMEDIATION": "off"}
    )
    assert off.remediator is None and off.remediation_off and not off.apply_remediation


_HANDLE = """
import json, sys
sys.path.insert(0, {function_dir!r})
from handler import lambda_handler
result = lambda_handler(json.loads(open({event!r}).read()), None)
# powertools imports the bare botocore package for its user agent: not the SDK's clients
sdks = sorted(m for m in ("boto3", "botocore.session", "botocore.client") if m in sys.modules)
print(json.dumps({{"result": result, "sdks": sdks}}))
"""


def test_the_lambda_with_remediation_off_alerts_without_reading_aws(tmp_path: Path) -> None:
    """The packaged AWS handler given a trust backdoor on a `mode: remediate` role: the
    alert is sent, says nothing was planned, and no AWS SDK client machinery was imported
    (no AWS endpoint is configured: any read would have failed and said so)."""
    function_dir = tmp_path / "function"
    function_dir.mkdir()
    (function_dir / "handler.py").write_bytes((ROOT / "functions/aws/handler.py").read_bytes())
    for name, data in baseline_files(EXAMPLE_BASELINE).items():
        (function_dir / name).write_bytes(data)
    assert compiled_path(function_dir / "baseline.yaml").is_file()
    event = ROOT / "examples/events/aws-trust-backdoor.eventbridge.json"
    code = _HANDLE.format(function_dir=str(function_dir), event=str(event))
    with RecordingHTTPServer() as hook:
        env = {
            "PYTHONPATH": str(ROOT / "shared"),
            "PATH": "/usr/bin:/bin",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TRUSTWATCH_REMEDIATION": "off",
            "TRUSTWATCH_WEBHOOK_URL": hook.url + "/hook",
            "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
            "TRUSTWATCH_DEDUP_WINDOW": "0",
        }
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["result"]["sent"] == 1 and out["result"]["errors"] == []
        assert out["sdks"] == []
        (request,) = hook.requests
    finding = request.json()
    assert finding["identity"].endswith(":role/databricks-cross-account")
    assert finding["remediation"]["action"] == "restore_trust_policy"
    assert finding["remediation"]["status"] == "none"
    assert finding["remediation"]["detail"] == OFF_DETAIL
    assert "target" not in finding["remediation"]  # no plan was made
