"""Red team (AWS): a Lambda function given the responder's own role runs as the responder.

With iam:PassRole + lambda:CreateFunction (or UpdateFunctionConfiguration on an existing
function) an attacker runs code as the role listed in `actors.responder`: its AssumeRole by
lambda.amazonaws.com is the responder's normal one, and everything it changes is then
dropped by the loop guard (engine.evaluate). The call that hands the function that role is
`aws.responder.identity_changed` (critical).

Lambda's CloudTrail eventName carries the API version it was called through, e.g.
`CreateFunction20150331`, `UpdateFunctionConfiguration20150331v2`
(https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html); the execution
role is `requestParameters.role`. Every case is checked in the three delivery shapes: the
bare record, its EventBridge envelope and a log file {"Records": [...]}.
"""

from __future__ import annotations

import json

import pytest
from awsevents import (
    ACCOUNT,
    ALICE,
    RESPONDER,
    TERRAFORM,
    findings,
    fired,
    iam_call,
    shapes,
)
from conftest import ROOT
from trustwatch.aws import events

LAMBDA_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html"
RESPONDER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/trustwatch-responder"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/app-function"
CREATE, UPDATE = "CreateFunction20150331", "UpdateFunctionConfiguration20150331v2"
RULE = ("aws.responder.identity_changed", "critical")


def lambda_call(name: str, params: dict, actor: dict | None = None, **extra) -> dict:
    record = iam_call(
        name, params, actor, eventSource="lambda.amazonaws.com", awsRegion="us-east-1", **extra
    )
    record["responseElements"] = None
    return record


def create(role: str, actor: dict | None = None, function: str = "evil-fn") -> dict:
    return lambda_call(CREATE, {"functionName": function, "role": role}, actor)


def update(role: str | None, actor: dict | None = None, function: str = "reports") -> dict:
    params: dict = {"functionName": function}
    if role is not None:
        params["role"] = role
    return lambda_call(UPDATE, params, actor)


def code_update(role: str | None, actor: dict | None = None, name: str = "trustwatch") -> dict:
    """UpdateFunctionCode: the response is the function's configuration, `role` in it (as
    in Stratus Red Team's published detonation log of aws.persistence.lambda-overwrite-code,
    https://stratus-red-team.cloud/attack-techniques/AWS/aws.persistence.lambda-overwrite-code/,
    and the API's FunctionConfiguration response,
    https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionCode.html)."""
    record = lambda_call("UpdateFunctionCode20150331v2", {"functionName": name}, actor)
    if role is not None:
        record["responseElements"] = {"functionName": name, "role": role, "codeSize": 211}
    return record


def failed(record: dict) -> dict:
    return record | {"errorCode": "AccessDeniedException", "errorMessage": "not authorized"}


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(create(RESPONDER_ROLE), id="create-function-as-responder"),
        pytest.param(update(RESPONDER_ROLE), id="update-configuration-to-responder"),
        pytest.param(
            create(f"arn:aws:iam::{ACCOUNT}:role/TrustWatch-RESPONDER"),
            id="role-name-in-other-case",
        ),
        pytest.param(
            create(RESPONDER_ROLE.replace("role/", "role/service-role/")), id="role-with-a-path"
        ),
        pytest.param(
            lambda_call("CreateFunction", {"functionName": "f", "role": RESPONDER_ROLE}),
            id="unversioned-event-name",
        ),
        pytest.param(
            update(RESPONDER_ROLE, function=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:r"),
            id="function-named-by-arn",
        ),
    ],
)
def test_function_given_the_responder_role_fires(record, baseline):
    assert fired(record, baseline) == [RULE]


def test_red_team_reproducer_fires(baseline):
    """tests/data would not hold it: the record is built like /tmp/redteam/aws1 (mallory)."""
    record = create(RESPONDER_ROLE, ALICE)
    (finding,) = findings(record, baseline)
    assert "evil-fn now runs as the responder's role" in finding.summary
    assert finding.identity == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:evil-fn"
    assert finding.actual["role"] == RESPONDER_ROLE
    assert finding.remediation.action == "delete_function"


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(create(OTHER_ROLE), id="create-with-another-role"),
        pytest.param(update(OTHER_ROLE), id="update-to-another-role"),
        pytest.param(update(None), id="update-without-role"),
        pytest.param(
            create("arn:aws:iam::444455556666:role/trustwatch-responder"),
            id="same-name-other-account",
        ),
        pytest.param(failed(create(RESPONDER_ROLE)), id="failed-create"),
        pytest.param(failed(update(RESPONDER_ROLE)), id="failed-update"),
        pytest.param(create(RESPONDER_ROLE, RESPONDER), id="made-by-the-responder"),
        pytest.param(update(RESPONDER_ROLE, RESPONDER), id="updated-by-the-responder"),
        pytest.param(
            lambda_call("CreateFunctionUrlConfig20211031", {"functionName": "x"}),
            id="unwatched-lambda-call",
        ),
        pytest.param(code_update(OTHER_ROLE), id="code-of-another-function"),
        pytest.param(code_update(None), id="code-update-without-response"),
        pytest.param(failed(code_update(RESPONDER_ROLE)), id="failed-code-update"),
    ],
)
def test_quiet_cases(record, baseline):
    assert fired(record, baseline) == []


def test_approved_deploy_is_reported_with_remediation_skipped(baseline):
    for record in (create(RESPONDER_ROLE, TERRAFORM), update(RESPONDER_ROLE, TERRAFORM)):
        for doc in shapes(record):
            (finding,) = findings(doc, baseline)
            assert finding.rule == RULE[0]
            assert finding.remediation.status == "skipped"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("CreateFunction20150331", "function.created"),
        ("CreateFunction", "function.created"),
        ("UpdateFunctionConfiguration20150331v2", "function.configuration_updated"),
        ("UpdateFunctionConfiguration20150331", "function.configuration_updated"),
        ("UpdateFunctionConfiguration", "function.configuration_updated"),
        ("CreateFunctionUrlConfig20211031", None),
        ("UpdateFunctionCode20150331v2", "function.code_updated"),
        ("UpdateFunctionCode", "function.code_updated"),
        ("CreateFunction2015", None),
    ],
)
def test_event_names_match_with_any_api_version(name, kind):
    assert events.lambda_kind(name) == kind, LAMBDA_DOC


def test_the_lambda_calls_are_routed():
    watched = json.loads((ROOT / "deploy" / "aws" / "watched_operations.json").read_text())
    assert {CREATE, UPDATE} <= set(watched["lambda.amazonaws.com"])
    assert all(events.lambda_kind(n) for n in watched["lambda.amazonaws.com"])


def test_a_non_string_role_is_no_role(baseline):
    record = update(None)
    record["requestParameters"]["role"] = {"arn": RESPONDER_ROLE}
    assert fired(record, baseline) == []


def test_redteam_file_shape(baseline):
    """The reproducer's log file: the CreateFunction fires, its AssumeRole by Lambda stays
    the responder's normal one."""
    assume = iam_call(
        "AssumeRole",
        {"roleArn": RESPONDER_ROLE, "roleSessionName": "evil-fn"},
        {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
        eventSource="sts.amazonaws.com",
    )
    doc = {"Records": [create(RESPONDER_ROLE), assume]}
    assert [f.rule for f in findings(doc, baseline)] == [RULE[0]]


def settings_update(role: str, actor: dict | None = None) -> dict:
    """UpdateFunctionConfiguration setting no role (environment only): the response names
    the role the function runs as (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html)."""
    record = update(None, actor, function="trustwatch")
    record["requestParameters"]["environment"] = {"variables": {"TRUSTWATCH_BASELINE": "s3://x/y"}}
    record["responseElements"] = {"functionName": "trustwatch", "role": role}
    return record


@pytest.mark.parametrize(
    ("record", "changed"),
    [
        pytest.param(code_update(RESPONDER_ROLE), "code", id="new-code"),
        pytest.param(settings_update(RESPONDER_ROLE), "configuration", id="new-settings"),
        pytest.param(
            code_update(f"arn:aws:iam::{ACCOUNT}:role/service-role/TRUSTWATCH-responder"),
            "code",
            id="role-path-and-case",
        ),
    ],
)
def test_the_responders_function_changed_by_someone_else_fires(record, changed, baseline):
    """New code or settings of a function running as the responder's role act as the
    responder (its changes pass the loop guard): red team, the highest open risk."""
    for doc in shapes(record):
        (finding,) = findings(doc, baseline)
        assert (finding.rule, finding.severity.value) == RULE
        assert f"had its {changed} changed" in finding.summary
        assert finding.remediation.action == "none"  # code is never rolled back by us


def test_the_responders_deploy_by_approved_automation_is_reported_not_reverted(baseline):
    (finding,) = findings(code_update(RESPONDER_ROLE, TERRAFORM), baseline)
    assert finding.rule == RULE[0]
    assert finding.remediation.status == "none"
