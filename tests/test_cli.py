"""Contract 4: `trustwatch replay` and `baseline validate`, run as a user runs them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

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


def test_bad_record_does_not_hide_the_next_ones(tmp_path, capsys):
    """A bad record is reported and the records after it are still evaluated (before,
    replay stopped there: a backdoor after a broken record went unseen)."""
    bad = drift_record()
    bad["requestParameters"]["policyDocument"] = "{not json"
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": [bad, drift_record()]}))
    for extra in ((), ("--keep-going",)):  # --keep-going: the default now, still accepted
        code, out, err = replay([path], capsys, *extra)
        assert code == 4, err
        assert [json.loads(line)["rule"] for line in out.splitlines()] == [
            "aws.trust.principal_added"
        ]
        assert f"{path} record 0" in err and "policyDocument" in err
    code, out, err = replay([path], capsys, "--fail-fast")
    assert (code, out) == (2, "")
    assert f"{path} record 0" in err and "--fail-fast" in err


def attach_admin_record() -> dict:
    return iam_call(
        "AttachRolePolicy",
        {
            "roleName": "databricks-uc-metastore",
            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
        },
    )


BROKEN = {
    # a failed-looking call whose policy text is not JSON
    "policy-not-json": lambda: (
        drift_record()
        | {"requestParameters": {"roleName": "databricks-cross-account", "policyDocument": "{x"}}
    ),
    "a-number": lambda: 42,
    # type confusion the outside fuzz run found (a GCP field given as a number), here in
    # an AWS field: the record is an error, never a crash
    "params-a-list": lambda: drift_record() | {"requestParameters": [1, 2]},
    "identity-a-string": lambda: attach_admin_record() | {"userIdentity": "root"},
}


def _write(path, records: list, shape: str) -> None:
    if shape.startswith("jsonl"):
        raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    else:
        raw = json.dumps({"Records": records}).encode()
    path.write_bytes(gzip.compress(raw) if shape.endswith(".gz") else raw)


@pytest.mark.parametrize("shape", ["log-file", "log-file.gz", "jsonl", "jsonl.gz"])
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_broken_record_between_two_drift_records_exits_4(tmp_path, capsys, shape, broken):
    """CloudTrail log file (`{"Records": [...]}`, as S3 delivery writes it, gzipped) or
    JSON Lines: both findings are printed, the broken record is named, exit 4.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-examples.html
    """
    path = tmp_path / f"111122223333_CloudTrail_us-east-1_20261127T1000Z_x.{shape}"
    _write(path, [drift_record(), BROKEN[broken](), attach_admin_record()], shape)
    code, out, err = replay([path], capsys)
    assert code == 4, err
    rules = sorted(json.loads(line)["rule"] for line in out.splitlines())
    assert rules == ["aws.policy.managed_attached", "aws.trust.principal_added"]
    where = f"{path}:line 2" if shape.startswith("jsonl") else f"{path} record 1"
    (error,) = [line for line in err.splitlines() if "error" in line]
    assert error.startswith(f"trustwatch: error: {where}: "), err
    assert "internal error" not in err and "Traceback" not in err


def test_exit_codes_never_mask_each_other(tmp_path, capsys, drift_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("42\n")
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps(iam_call("GetRole", {"roleName": "x"})))
    assert replay([noise], capsys)[0] == 0
    assert replay([drift_file], capsys)[0] == 1
    assert replay([bad, noise], capsys)[0] == 2
    assert replay([bad, drift_file], capsys)[0] == 4
    assert replay([drift_file, bad], capsys)[0] == 4  # the order does not matter
    # below --fail-on, a finding is printed but the exit is bad input only
    code, out, _ = replay([bad, drift_file], capsys, "--fail-on", "critical")
    assert json.loads(out)["severity"] == "critical" and code == 4
    detach = tmp_path / "detach.json"
    detach.write_text(
        json.dumps(
            iam_call(
                "DetachRolePolicy",
                {
                    "roleName": "databricks-uc-metastore",
                    "policyArn": "arn:aws:iam::111122223333:policy/databricks-uc-metastore-access",
                },
            )
        )
    )
    code, out, _ = replay([bad, detach], capsys, "--fail-on", "high")
    assert code == 2 and json.loads(out)["severity"] == "medium"


def test_missing_file_does_not_stop_the_others(tmp_path, capsys, drift_file):
    code, out, err = replay([tmp_path / "nope.json", drift_file], capsys)
    assert code == 4 and "cannot read file" in err
    assert json.loads(out)["rule"] == "aws.trust.principal_added"


def test_help_documents_exit_codes_and_fail_fast(capsys):
    code, out, _ = run(["replay", "--help"], capsys)
    assert code == 0
    for text in ("--fail-fast", "--keep-going", "4  findings at or above --fail-on AND bad input"):
        assert text in out


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


def test_demo_runs():
    # its own process, as a user runs it: moto's in-process backends are global, and other
    # tests' moto accounts must not leak into the demo's stand-in account
    proc = subprocess.run(
        [sys.executable, "-m", "trustwatch", "demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    code, out = proc.returncode, proc.stdout
    assert code == 0, proc.stderr[-2000:]
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
    # the second act: the backdoored trust put back on moto (remediate mode), the admin
    # policy of an alert-mode role left, its plan shown
    assert (
        "aws.trust.principal_added on arn:aws:iam::111122223333:role/databricks-cross-account: "
        "applied: verified; restore_trust_policy"
    ) in out
    assert 'databricks-cross-account trusts now: [{"AWS": "arn:aws:iam::414351767826:root"}]' in out
    assert (
        "aws.policy.managed_attached on arn:aws:iam::111122223333:role/databricks-cluster-data: none: mode is alert; would detach_role_policy"
        in out
    )
    assert "databricks-cluster-data (mode: alert) still holds: ['AdministratorAccess']" in out
    report = out.split("HTML report (trust graph, drift in red; opens offline): ")[1].split()[0]
    html = Path(report).read_text()
    assert "<svg" in html and "databricks-cross-account" in html
