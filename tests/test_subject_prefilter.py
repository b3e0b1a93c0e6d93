"""The AWS PREFILTER_SUBJECT (issue #14, replay): an AssumeRole line whose roleArn names
neither a baseline role nor the responder's is counted as a skip from its bytes, and only
where the full path (parse, then engine.evaluate) would give it no finding and no error.

Semantics relied on:
- IAM role names "are not distinguished by case" (MyRole and myrole are one role):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html — so a roleArn
  naming a baseline role in any letter case must take the full path;
- the AssumeRole CloudTrail record names the role in `requestParameters.roleArn`, and a
  denied call may log it only in `errorMessage`:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html
  (#cloudtrail-integration_examples-sts-api);
- a role ARN is `arn:partition:iam::account-id:role/path/name`:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
- json reads the last of duplicate keys (https://docs.python.org/3/library/json.html,
  "Repeated Names Within an Object"); so must the line reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE, ROOT, all_corpus_files
from fuzz.mutations import load_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustwatch.aws.events import PREFILTER_SUBJECT
from trustwatch.baseline import load_baseline
from trustwatch.engine import REGISTRY
from trustwatch.intake import Prefilter, parse_paths
from trustwatch.respond import replay

BASELINE = load_baseline(EXAMPLE_BASELINE)
ACCOUNT = "111122223333"  # the example baseline's account
BASELINE_ROLES = ["databricks-cross-account", "databricks-uc-metastore", "databricks-cluster-data"]
RESPONDER = "trustwatch-responder"  # actors.responder: arn:aws:iam::111122223333:role/...
AWS_DOCS = [
    (name, doc)
    for name, doc in load_corpus(all_corpus_files(), ROOT / "examples" / "events")
    if name.startswith("aws") and isinstance(doc, dict)
]
SUCCESS = json.loads(
    (ROOT / "tests/data/aws/cloudtrail-assumerole-success-stratus.json").read_text()
)
SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _records(doc: dict[str, Any]) -> list[Any]:
    """The corpus file's CloudTrail records (a log file's, an envelope's detail, or itself)."""
    if isinstance(doc.get("Records"), list):
        return list(doc["Records"])
    if isinstance(doc.get("detail"), dict):
        return [doc["detail"]]
    return [doc]


def _outcome(path: Path, *, shortcut: bool) -> tuple[Any, ...]:
    """The replay of a file as `trustwatch replay` makes it (with the baseline's shortcut)
    or along the full path (every record parsed and evaluated, skip reasons kept)."""
    parsed = parse_paths([path], skip_reasons=not shortcut, baseline=BASELINE if shortcut else None)
    outcome = replay(parsed, BASELINE, keep_skip_reasons=False)
    findings = sorted(f.to_json() for f in outcome.findings)
    return outcome.records, findings, outcome.errors, outcome.internal_errors, outcome.skips


LINE_NOISE = Prefilter(BASELINE).line_noise()
NOISE = '{"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "x"}'
PLAIN_NOISE = Prefilter().line_noise()


def _shortcut_decides(line: str) -> bool:
    """Is this line skipped only because of the baseline (PREFILTER_SUBJECT)?"""
    assert LINE_NOISE is not None and PLAIN_NOISE is not None
    raw = line.encode("utf-8", "surrogatepass")
    return LINE_NOISE(raw) and not PLAIN_NOISE(raw)


def check_lines(tmp_path: Path, lines: list[str]) -> list[bool]:
    """Every line, alone and all together: the shortcut's replay is the full path's (the
    same records, findings, errors), skips aside; a decided line gives nothing at all
    along the full path. Returns which lines the shortcut decided."""
    decided = []
    for index, line in enumerate(lines):
        path = tmp_path / f"line{index}.jsonl"  # two lines: JSON Lines, read line by line
        path.write_bytes((line + "\n" + NOISE + "\n").encode("utf-8", "surrogatepass"))
        fast, full = _outcome(path, shortcut=True), _outcome(path, shortcut=False)
        assert fast[:4] == full[:4], line
        decided.append(_shortcut_decides(line))
        if decided[-1]:
            assert full[1:4] == ([], [], 0) and fast[4] == 2, line
        else:
            assert fast[4] == full[4], line
    path = tmp_path / "all.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    fast, full = _outcome(path, shortcut=True), _outcome(path, shortcut=False)
    assert fast[:4] == full[:4]
    return decided


def _role_arns() -> list[str]:
    arns = []
    for name in [*BASELINE_ROLES, RESPONDER, "someone-else", "JohnRole2"]:
        for spelled in (name, name.upper(), name.title(), f" {name}"):
            for account in (ACCOUNT, "444455556666", ""):
                arns.append(f"arn:aws:iam::{account}:role/{spelled}")
                arns.append(f"arn:aws-cn:iam::{account}:role/team/{spelled}")
    return [
        *arns,
        "not an arn",
        "arn:aws:iam::111122223333:user/databricks-cross-account",
        "arn:aws:sts::111122223333:assumed-role/databricks-cross-account/s",
        "arn:aws:iam::111122223333",
        "arn:aws:iam:111122223333:role/x",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a:b/databricks-cross-account",
        "",
    ]


def _variants(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record, and as AssumeRole of every role ARN above, failed or not, with the
    fields parse() reads as objects in good and bad shapes."""
    out = [record]
    if record.get("eventName") != "AssumeRole":
        return out
    params = record.get("requestParameters")
    params = params if isinstance(params, dict) else {}
    for arn in _role_arns():
        out.append({**record, "requestParameters": {**params, "roleArn": arn}})
    other = {
        **record,
        "requestParameters": {**params, "roleArn": "arn:aws:iam::444455556666:role/x"},
    }
    identity = other.get("userIdentity") if isinstance(other.get("userIdentity"), dict) else {}
    for key, value in {
        "errorCode": "AccessDenied",
        "errorMessage": "on resource: arn:aws:iam::111122223333:role/databricks-cross-account",
        "userIdentity": [],
        "responseElements": "x",
        "requestParameters": None,
        "eventType": "AwsServiceEvent",
        "eventName": "AssumeRoleWithSAML",
    }.items():
        out.append({**other, key: value})
    for session in ({"sessionIssuer": []}, "x", {"sessionIssuer": None}, None):
        out.append({**other, "userIdentity": {**identity, "sessionContext": session}})
    out.append({**other, "userIdentity": None, "responseElements": None})
    out.append({k: v for k, v in other.items() if k != "errorCode"})
    # denied calls logged without parameters: the role only in errorMessage (as CloudTrail
    # logs an AccessDenied AssumeRole, tests/data/aws/*denied* and the Stratus samples)
    denied = {**record, "errorCode": "AccessDenied"}
    for arn in _role_arns():
        message = f"User: x is not authorized to perform: sts:AssumeRole on resource: {arn}"
        for logged in (None, {}, {"roleArn": ""}, {"roleArn": None}, "x"):
            out.append({**denied, "requestParameters": logged, "errorMessage": message})
        no_params = {k: v for k, v in denied.items() if k != "requestParameters"}
        out.append({**no_params, "errorMessage": message + "."})
    out.append({**denied, "requestParameters": None, "errorMessage": "no role named here"})
    out.append({**denied, "requestParameters": None, "errorMessage": 7})
    out.append({**other, "requestParameters": {**params, "roleArn": 7}})
    return out


def _lines() -> list[str]:
    return [json.dumps(v) for _, doc in AWS_DOCS for r in _records(doc) for v in _variants(r)]


def test_the_declaration_covers_every_rule_of_its_change_kind() -> None:
    """PREFILTER_SUBJECT's promise rests on these two rules (each asks first whether the
    role is the baseline's or the responder's): a new role.assumed rule must be weighed."""
    ids = {r.id for r in REGISTRY.for_kind("aws", "role.assumed")}
    assert ids == {"aws.assume_role.unexpected_principal", "aws.assume_role.external_id_mismatch"}
    assert {(d.service, d.operation) for d in PREFILTER_SUBJECT} == {
        ("sts.amazonaws.com", "AssumeRole")
    }


def test_corpus_records_and_their_variants_replay_as_the_full_path(tmp_path: Path) -> None:
    lines = _lines()
    decided = check_lines(tmp_path, lines)
    assert any(decided) and not all(decided)
    fast, full = (
        _outcome(tmp_path / "all.jsonl", shortcut=True),
        _outcome(tmp_path / "all.jsonl", shortcut=False),
    )
    assert full[1] and full[2]  # findings and errors both happen: the check can fail
    assert fast[4] > full[4]  # and the shortcut skipped records the full path evaluated


def _line(record: dict[str, Any], arn: str) -> str:
    return json.dumps(
        {**record, "requestParameters": {**record["requestParameters"], "roleArn": arn}}
    )


def test_which_roles_take_the_full_path() -> None:
    """Decided: another role, another account's role of a baseline name, any partition or
    path. Not decided: a baseline or responder role in any case, an ARN parse() reports,
    an ARN without its account, a failed call."""
    assert _shortcut_decides(_line(SUCCESS, "arn:aws:iam::444455556666:role/x"))
    assert _shortcut_decides(
        _line(SUCCESS, "arn:aws:iam::444455556666:role/databricks-cross-account")
    )
    assert _shortcut_decides(_line(SUCCESS, f"arn:aws-us-gov:iam::{ACCOUNT}:role/p/other"))
    for name in (*BASELINE_ROLES, RESPONDER):
        for spelled in (name, name.upper(), name.swapcase()):
            for partition in ("aws", "aws-cn"):
                arn = f"arn:{partition}:iam::{ACCOUNT}:role/path/{spelled}"
                assert not _shortcut_decides(_line(SUCCESS, arn)), arn
    for arn in ("arn:aws:iam:::role/x", "arn:aws:iam::1:user/x", "x", ""):
        assert not _shortcut_decides(_line(SUCCESS, arn)), arn
    # a failed call: decided by its roleArn too (only external_id_mismatch reads failed
    # calls, and only of a baseline role)
    failed = {**SUCCESS, "errorCode": "AccessDenied", "errorMessage": "not authorized"}
    assert _shortcut_decides(_line(failed, "arn:aws:iam::444455556666:role/x"))
    for name in (*BASELINE_ROLES, RESPONDER):
        assert not _shortcut_decides(_line(failed, f"arn:aws:iam::{ACCOUNT}:role/{name.upper()}"))

    # logged without parameters: the role its errorMessage names decides, as parse() reads it
    # (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html:
    # requestParameters "can be null" and errorMessage holds the error's text)
    def denied(arn: str, params: Any = None) -> str:
        message = f"User: u is not authorized to perform: sts:AssumeRole on resource: {arn}"
        return json.dumps({**failed, "requestParameters": params, "errorMessage": message})

    assert _shortcut_decides(denied("arn:aws:iam::444455556666:role/x"))
    for name in (*BASELINE_ROLES, RESPONDER):
        arn = f"arn:aws:iam::{ACCOUNT}:role/{name.swapcase()}"
        assert not _shortcut_decides(denied(arn))
    # an object there may hold the roleArn parse() would read instead: the full path
    assert not _shortcut_decides(denied("arn:aws:iam::444455556666:role/x", {}))
    baseline_arn = f"arn:aws:iam::{ACCOUNT}:role/{BASELINE_ROLES[0]}"
    line = denied("arn:aws:iam::444455556666:role/x", {"roleArn": baseline_arn})
    assert not _shortcut_decides(line)  # parse() reads the roleArn: a baseline role


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


@st.composite
def assume_role_lines(draw: st.DrawFn) -> str:
    """A successful AssumeRole line: role name (any case), account, partition, path and ARN
    shape drawn; keys and values escaped, duplicate keys where json keeps the last."""
    name = draw(st.sampled_from([*BASELINE_ROLES, RESPONDER, "x", "EC2-dev"]))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    account = draw(st.sampled_from([ACCOUNT, "444455556666", "", "11112222333x"]))
    partition = draw(st.sampled_from(["aws", "aws-cn", "aws-us-gov", ""]))
    path = draw(st.sampled_from(["/", "/team/", "//", "/a:b/"]))
    kind = draw(st.sampled_from(["role", "user", "Role", "role:x"]))
    service = draw(st.sampled_from(["iam", "sts", ""]))
    arn = f"arn:{partition}:{service}::{account}:{kind}{path}{name}"
    if draw(st.booleans()):
        arn = draw(st.sampled_from(["arn:", "", "arn:aws:iam::1", arn + "/"])) + arn
    record = {**SUCCESS, "requestParameters": {**SUCCESS["requestParameters"], "roleArn": arn}}
    line = json.dumps(record)
    if draw(st.booleans()):  # an escaped key
        line = line.replace('"roleArn"', f'"{_escaped("roleArn")}"', 1)
    if draw(st.booleans()):  # an escaped value: a letter of the role name as \\uXXXX
        at = line.rfind(name[-1] + '"')
        if at > 0:
            line = line[:at] + _escaped(name[-1]) + line[at + 1 :]
    duplicate = draw(st.sampled_from(["", "roleArn first", "roleArn last", "eventName last"]))
    other = json.dumps(
        draw(st.sampled_from([f"arn:aws:iam::{ACCOUNT}:role/{name}", "arn:aws:iam::4:role/y"]))
    )
    if duplicate == "roleArn first":  # json keeps the second roleArn, the drawn one
        line = line.replace(
            '"requestParameters": {', f'"requestParameters": {{"roleArn": {other}, ', 1
        )
    elif duplicate == "roleArn last":  # json keeps this one
        line = line.replace('"requestParameters": {', '"requestParameters": {"x": 1, ', 1)
        at = line.index('"requestParameters": {') + len('"requestParameters": {')
        close = line.index("}", at)
        line = line[:close] + f', "roleArn": {other}' + line[close:]
    elif duplicate == "eventName last":
        line = (
            line[:-1]
            + f', "eventName": {json.dumps(draw(st.sampled_from(["AssumeRole", "GetCallerIdentity"])))}}}'
        )
    return line


@SETTINGS
@given(st.lists(assume_role_lines(), min_size=1, max_size=4))
def test_mutated_assume_role_lines_replay_as_the_full_path(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    check_lines(tmp_path_factory.mktemp("subject"), lines)


def test_the_mutations_reach_both_sides() -> None:
    """The drawn lines are decided and not: the property above has something to hold."""
    seen = set()

    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(assume_role_lines())
    def record(line: str) -> None:
        seen.add(_shortcut_decides(line))

    record()
    assert seen == {True, False}


def test_without_the_baseline_nothing_is_decided_by_subject(tmp_path: Path) -> None:
    line = _line(SUCCESS, "arn:aws:iam::444455556666:role/x")
    assert PLAIN_NOISE is not None and not PLAIN_NOISE(line.encode())
    path = tmp_path / "two.jsonl"
    path.write_text(line + "\n" + NOISE + "\n")
    assert _outcome(path, shortcut=False)[4] == 1  # evaluated: a record, no skip
    assert _outcome(path, shortcut=True)[4] == 2
