"""The Lambda entry point on its schedule: fan-out to one invocation per account, and a
unit invocation's sweep, through `lambda_handler` with the input EventBridge Scheduler
delivers.

EventBridge Scheduler invokes a Lambda target with the schedule's `Input` as the event
(https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-templated.html).
The fan-out's asynchronous Invoke (InvocationType Event answers 202,
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html) goes to a loopback
recorder: moto's Lambda would run the invoked function in docker. The unit sweep runs
against moto (IAM, STS, and DynamoDB for the dedup and sweep state, as deploy/aws sets
it), the CloudTrail stand-in (catch-up) and a local Slack receiver.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from awsstate import BASELINE, Account, add_trust_principal, build_clean, fresh_account, record
from cloudtrailserver import CloudTrailServer
from test_function_aws import Context, load_handler
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply
from trustwatch.baseline import load_baseline

FUNCTION = "trustwatch-test"


@pytest.fixture
def slack():
    with RecordingHTTPServer() as server:
        yield server


def write_baseline(tmp_path, *accounts: str):
    """The sweep baseline with its one account's section under each of `accounts`."""
    doc = yaml.safe_load(BASELINE.read_text())
    (template,) = doc["aws"]["accounts"].values()
    doc["aws"]["accounts"] = {account: template for account in accounts}
    path = tmp_path / "baseline.yaml"
    path.write_text(yaml.safe_dump(doc).replace("111122223333", accounts[0]))
    return path


def test_the_schedule_fans_out_one_async_invocation_per_account(tmp_path, monkeypatch, slack):
    accounts = ["222233334444", "555566667777"]
    with RecordingHTTPServer(Reply(202, b"")) as lambda_api:
        handler = load_handler(
            monkeypatch,
            {
                "TRUSTWATCH_BASELINE": str(write_baseline(tmp_path, *accounts)),
                "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
                "TRUSTWATCH_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
                "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
                "AWS_ENDPOINT_URL_LAMBDA": lambda_api.url,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            },
        )
        result = handler.lambda_handler({"trustwatch": "sweep"}, Context())
        invokes = list(lambda_api.requests)
    assert result == {"dispatched": accounts}
    assert [r.path for r in invokes] == [f"/2015-03-31/functions/{FUNCTION}/invocations"] * 2
    assert all(r.headers.get("X-Amz-Invocation-Type") == "Event" for r in invokes)
    assert [r.json() for r in invokes] == [
        {"trustwatch": "sweep", "cloud": "aws", "unit": account} for account in accounts
    ]
    assert slack.requests == []  # the fan-out sweeps nothing itself


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"trustwatch": "sweep", "unit": "1"}, "needs its cloud"),
        ({"trustwatch": "sweep", "cloud": "gcp", "unit": "p"}, "reached the AWS function"),
        ({"trustwatch": "sweep", "extra": 1}, "unknown field"),
    ],
)
def test_a_malformed_sweep_message_is_acknowledged_with_an_error(monkeypatch, message, says):
    """Acknowledged, not raised: a retry would fail the same way."""
    handler = load_handler(monkeypatch, {"TRUSTWATCH_BASELINE": str(BASELINE)})
    result = handler.lambda_handler(message, Context())
    assert len(result["errors"]) == 1 and says in result["errors"][0]


DIGEST = "trustwatch sweep of aws"  # a unit invocation's digest title


def alerts(slack: RecordingHTTPServer) -> list[str]:
    return [r.body.decode() for r in slack.requests if DIGEST not in r.body.decode()]


def digests(slack: RecordingHTTPServer) -> list[str]:
    return [r.body.decode() for r in slack.requests if DIGEST in r.body.decode()]


def rule_posts(slack: RecordingHTTPServer, rule: str) -> int:
    return sum(rule in body for body in alerts(slack))


def test_a_unit_invocation_sweeps_its_account(tmp_path, monkeypatch, moto_server, slack):
    """Drift no event reported is alerted once; a lost event the state also shows is one
    alert, not two; the next sweep alerts nothing but still lists it open; the drift
    undone is resolved. Each sweep that changed something sends its digest."""
    import boto3

    # the stores' clients come from boto3's default session, which keeps the first
    # credentials it resolved in this process: let it resolve this account's
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    account = Account(moto_server, fresh_account())
    table = account.state_table()  # as deploy/aws sets it: dedup and sweep state
    path = write_baseline(tmp_path, account.id)
    baseline = load_baseline(path)
    build_clean(account, baseline)
    add_trust_principal(account)  # no event for this one
    iam = account.iam
    admin = iam.create_policy(
        PolicyName="extra-admin",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="databricks-cluster-data", PolicyArn=admin)
    # ... whose event EventBridge lost: CloudTrail still has it (within the first sweep's
    # lookback, before the second one's overlap)
    lost = record(
        "AttachRolePolicy",
        "iam.amazonaws.com",
        datetime.now(UTC) - timedelta(minutes=30),
        roleName="databricks-cluster-data",
        policyArn=admin,
    )
    lost["recipientAccountId"] = account.id
    message = {"trustwatch": "sweep", "cloud": "aws", "unit": account.id}
    with CloudTrailServer([lost]) as trail:
        handler = load_handler(
            monkeypatch,
            {
                **account.environ,
                "TRUSTWATCH_BASELINE": str(path),
                "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
                "TRUSTWATCH_STATE_TABLE": table,
                "AWS_ENDPOINT_URL_CLOUDTRAIL": trail.url,
                "TRUSTWATCH_AWS_LOOKUP_RATE": "1000",  # the stand-in has no quota
                "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
            },
        )
        first = handler.lambda_handler(dict(message), Context())
        assert first["errors"] == []
        assert len(first["new"]) == 2 and first["open"] == [] and first["resolved"] == []
        assert len(first["catch_up"]) == 1 and first["catch_up"][0] in first["new"]
        assert first["calls"] == 1
        assert rule_posts(slack, "aws.trust.principal_added") == 1
        assert rule_posts(slack, "aws.policy.managed_attached") == 1  # sweep + lost event: once
        assert len(alerts(slack)) == 2 and len(digests(slack)) == 1
        assert "2 new" in digests(slack)[0]
        posts = len(slack.requests)

        second = handler.lambda_handler(dict(message), Context())
        assert second["new"] == [] and sorted(second["open"]) == sorted(first["new"])
        assert second["sent"] == 0 and len(slack.requests) == posts

        iam.detach_role_policy(RoleName="databricks-cluster-data", PolicyArn=admin)
        third = handler.lambda_handler(dict(message), Context())
    assert third["new"] == [] and len(third["open"]) == 1 and len(third["resolved"]) == 1
    assert third["resolved"][0] == first["catch_up"][0]
    assert len(alerts(slack)) == 3  # the resolution, once
    assert len(digests(slack)) == 2 and "1 resolved" in digests(slack)[1]
