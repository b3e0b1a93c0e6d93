"""Contract 4: `trustwatch replay` and `baseline validate`, run as a user runs them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from awsevents import ATTACKER_ROOT, CROSS_ACCOUNT_TRUST, allow, envelope, iam_call, trust
from conftest import EXAMPLE_BASELINE, ROOT
from trustwatch.cli import main
from trustwatch.findings import Finding


def drift_record() -> dict:
    doc = trust(*CROSS_ACCOUNT_TRUST["Statement"], allow({"AWS": ATTACKER_ROOT}))
    return iam_call(
        "UpdateAssumeRolePolicy",
        {"roleName": "databricks-cross-account", "policyDocument": json.dumps(doc)},
    )


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def replay(paths, capsys, *extra):
    return run(["replay", "--baseline", str(EXAMPLE_BASELINE), *extra, *map(str, paths)], capsys)


@pytest.fixture
def drift_file(tmp_path):
    path = tmp_path / "drift.json"
    path.write_text(json.dumps(drift_record()))
    return path


def test_replay_prints_jsonl_findings_and_exits_1(drift_file, capsys):
    code, out, err = replay([drift_file], capsys)
    assert code == 1, err
    lines = out.splitlines()
    assert len(lines) == 1
    finding = Finding.model_validate_json(lines[0])  # round trip through the model
    assert finding.rule == "aws.trust.principal_added"
    assert json.loads(lines[0]) == finding.model_dump(mode="json")


def test_fail_on_threshold(drift_file, capsys):
    assert replay([drift_file], capsys, "--fail-on", "critical")[0] == 1
    detach = iam_call(
        "DetachRolePolicy",
        {
            "roleName": "databricks-uc-metastore",
            "policyArn": "arn:aws:iam::111122223333:policy/databricks-uc-metastore-access",
        },
    )
    drift_file.write_text(json.dumps(detach))
    code, out, _ = replay([drift_file], capsys, "--fail-on", "high")
    assert code == 0 and json.loads(out)["severity"] == "medium"


def test_no_findings_exits_0(tmp_path, capsys):
    path = tmp_path / "ok.json"
    path.write_text(
        json.dumps(
            envelope(
                iam_call(
                    "UpdateAssumeRolePolicy",
                    {
                        "roleName": "databricks-cross-account",
                        "policyDocument": json.dumps(CROSS_ACCOUNT_TRUST),
                    },
                )
            )
        )
    )
    assert replay([path], capsys) == (0, "", "")


def test_cloudtrail_log_file_gz_and_jsonl(tmp_path, capsys):
    records = [drift_record(), iam_call("GetRole", {"roleName": "x"})]
    gz = tmp_path / "111122223333_CloudTrail_us-east-1_20261127T1000Z_abc.json.gz"
    gz.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    jsonl = tmp_path / "events.jsonl"
    again = records[0] | {"eventID": "another-event", "requestID": "another-request"}
    jsonl.write_text("\n".join(json.dumps(r) for r in [again, records[1]]) + "\n")
    code, out, _ = replay([gz, jsonl], capsys)
    assert code == 1
    assert [json.loads(line)["rule"] for line in out.splitlines()] == [
        "aws.trust.principal_added"
    ] * 2


def test_same_event_delivered_twice_is_reported_once(tmp_path, capsys):
    path = tmp_path / "twice.jsonl"
    path.write_text((json.dumps(drift_record()) + "\n") * 2)
    code, out, _ = replay([path], capsys)
    assert code == 1 and len(out.splitlines()) == 1


def test_table_format(drift_file, capsys):
    code, out, _ = replay([drift_file], capsys, "--format", "table")
    assert code == 1
    assert "aws.trust.principal_added" in out and "critical" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"eventName": "UpdateAssumeRolePolicy",', "invalid JSON at line 1"),
        (gzip.compress(b'{"Records": []}')[:-6], "truncated or corrupt gzip"),
        (b'{"hello": "world"}', "unknown record shape"),
        (b"[1, 2]", "unknown record shape"),
        (b"", "empty input"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = replay([path], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err and message in err


def test_bad_record_index_and_keep_going(tmp_path, capsys):
    bad = drift_record()
    bad["requestParameters"]["policyDocument"] = "{not json"
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": [bad, drift_record()]}))
    code, out, err = replay([path], capsys)
    assert code == 2 and out == ""
    assert f"{path} record 0" in err and "policyDocument" in err
    code, out, err = replay([path], capsys, "--keep-going")
    assert code == 2
    assert len(out.splitlines()) == 1  # the good record's finding is still reported
    assert "record 0" in err


def test_missing_file_and_bad_baseline(tmp_path, capsys):
    code, _, err = replay([tmp_path / "nope.json"], capsys)
    assert code == 2 and "cannot read file" in err
    bad = tmp_path / "b.yaml"
    bad.write_text("aws: {accounts: {'1': {}}}\n")
    code, _, err = run(["replay", "--baseline", str(bad), str(tmp_path / "x.json")], capsys)
    assert code == 2 and "must be 12 digits" in err


def test_usage_error_exits_2(capsys):
    assert run(["replay"], capsys)[0] == 2


def test_baseline_validate(capsys, tmp_path):
    code, out, _ = run(["baseline", "validate", str(EXAMPLE_BASELINE)], capsys)
    assert code == 0 and "valid baseline (3 AWS roles" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_BASELINE.read_text().replace("template: ec2", "template: ec3"))
    code, _, err = run(["baseline", "validate", str(bad)], capsys)
    assert code == 2 and "line 44" in err and "unknown template" in err


def test_console_script_entry_point(drift_file):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustwatch",
            "replay",
            "--baseline",
            str(EXAMPLE_BASELINE),
            str(drift_file),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["rule"] == "aws.trust.principal_added"


def test_demo_runs(capsys):
    code, out, _ = run(["demo"], capsys)
    assert code == 0
    for rule in (
        "aws.trust.principal_added",
        "aws.policy.managed_attached",
        "aws.assume_role.external_id_mismatch",
        "azure.role_assignment.unexpected",
        "gcp.iam.impersonation_granted",
        "gcp.bucket.binding_added",
    ):
        assert rule in out
    assert "6 findings" in out  # the benign Terraform re-apply gives none
    assert "--- Slack message" in out and "--- Email" in out
