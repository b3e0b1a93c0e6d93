"""The Lambda entry point with real EventBridge envelopes, moto server (DynamoDB for
idempotency + dedup) and a local Slack receiver."""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import sys

import pytest
from conftest import EXAMPLE_BASELINE, ROOT
from fuzz.corpus import sample
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply

EVENTS = ROOT / "examples" / "events"


@pytest.fixture
def slack():
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def state_table(moto_server):
    from cloudservers import create_state_table

    return create_state_table(moto_server)


def load_handler(monkeypatch, env: dict[str, str]):
    """A fresh import of functions/aws/handler.py, as a new Lambda instance would do."""
    for key in [k for k in os.environ if k.startswith("TRUSTWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "aws"))
    sys.modules.pop("handler", None)
    return importlib.import_module("handler")


class Context:
    function_name = "trustwatch"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def drift_event() -> dict:
    return json.loads((EVENTS / "aws-trust-backdoor.eventbridge.json").read_text())


def test_drift_event_alerts_slack_once_under_redelivery(
    monkeypatch, moto_server, state_table, slack
):
    handler = load_handler(
        monkeypatch,
        {
            **moto_server.environ(),
            "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
            "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
            "TRUSTWATCH_STATE_TABLE": state_table,
        },
    )
    event = drift_event()
    first = handler.lambda_handler(event, Context())
    assert first["sent"] == 1 and not first["errors"]
    assert len(slack.requests) == 1
    body = slack.requests[0].json()
    assert "aws.trust.principal_added" in json.dumps(body)
    # redelivery of the same CloudTrail event: idempotent, no second alert
    again = handler.lambda_handler(copy.deepcopy(event), Context())
    assert again == first
    assert len(slack.requests) == 1
    # a new instance (cold start) with the same table: still no second alert
    handler = load_handler(
        monkeypatch,
        {
            **moto_server.environ(),
            "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
            "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
            "TRUSTWATCH_STATE_TABLE": state_table,
        },
    )
    handler.lambda_handler(copy.deepcopy(event), Context())
    assert len(slack.requests) == 1
    items = moto_server.client("dynamodb").scan(TableName=state_table)["Items"]
    keys = sorted(item["id"]["S"] for item in items)
    assert any(k.startswith("dedup#") for k in keys)  # alert dedup claim
    assert any(not k.startswith("dedup#") for k in keys)  # powertools idempotency record


@pytest.mark.parametrize(
    "name",
    [
        "eventbridge-cloudtrail-s3-createbucket-c7n.json",
        "eventbridge-scheduled-event-c7n.json",
        "eventbridge-serviceevent-s3-batch-jobcreated-awsdocs.json",
    ],
)
def test_noise_is_acknowledged_without_alert(monkeypatch, slack, name):
    handler = load_handler(
        monkeypatch,
        {"TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE), "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url},
    )
    event = json.loads(sample("aws", name).read_text())
    result = handler.lambda_handler(event, Context())
    assert result["findings"] == [] and result["errors"] == []
    assert result["skipped"]
    assert slack.requests == []


def test_benign_terraform_reapply_is_quiet(monkeypatch, slack):
    handler = load_handler(
        monkeypatch,
        {"TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE), "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url},
    )
    record = json.loads((EVENTS / "aws-terraform-reapply-benign.json").read_text())
    event = drift_event() | {"detail": record}
    assert handler.lambda_handler(event, Context())["findings"] == []
    assert slack.requests == []


@pytest.mark.parametrize(
    "event",
    [
        {"detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "detail": "oops"},
        {"hello": "world"},
        [1, 2, 3],
    ],
)
def test_malformed_event_is_logged_and_acknowledged(monkeypatch, slack, event, capsys):
    handler = load_handler(
        monkeypatch,
        {"TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE), "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url},
    )
    result = handler.lambda_handler(event, Context())
    assert result["errors"]
    assert slack.requests == []
    out = capsys.readouterr().out
    assert "UnprocessableEvents" in out  # EMF metric


def test_type_confused_event_is_acknowledged_and_the_next_alerts(monkeypatch, moto_server, slack):
    handler = load_handler(
        monkeypatch,
        {
            **moto_server.environ(),  # the remediator's re-read: never a real AWS endpoint
            "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
            "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
        },
    )
    for field, value in (("userIdentity", 7), ("requestParameters", [1]), ("eventName", {})):
        event = drift_event()
        event["detail"][field] = value
        result = handler.lambda_handler(event, Context())  # acknowledged: no raise, no retry
        assert result["findings"] == [] and len(result["errors"]) == 1, field
        assert "internal error" not in result["errors"][0]
    assert slack.requests == []
    assert handler.lambda_handler(drift_event(), Context())["sent"] == 1
    assert len(slack.requests) == 1


def test_alert_failure_raises_so_lambda_retries(monkeypatch, moto_server, slack):
    slack.reply(Reply(status=500))
    handler = load_handler(
        monkeypatch,
        {
            **moto_server.environ(),  # the remediator's re-read: never a real AWS endpoint
            "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
            "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url,
            "TRUSTWATCH_ALERT_ATTEMPTS": "1",
        },
    )
    from trustwatch.alerts import AlertDeliveryError

    with pytest.raises(AlertDeliveryError):
        handler.lambda_handler(drift_event(), Context())
    assert slack.requests  # it was tried
    # once the sink is back, the retried event alerts (the failed claim was released)
    result = handler.lambda_handler(drift_event(), Context())
    assert result["sent"] == 1


def test_no_sink_configured_raises_rather_than_losing_the_finding(monkeypatch, moto_server):
    handler = load_handler(
        monkeypatch, {**moto_server.environ(), "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE)}
    )
    with pytest.raises(Exception, match="sink"):
        handler.lambda_handler(drift_event(), Context())


def test_baseline_min_severity_applies_when_the_variable_is_unset(monkeypatch, slack, tmp_path):
    strict = tmp_path / "baseline.yaml"
    strict.write_text(
        EXAMPLE_BASELINE.read_text().replace("min_severity: medium", "min_severity: critical")
    )
    handler = load_handler(
        monkeypatch,
        {"TRUSTWATCH_BASELINE": str(strict), "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url},
    )
    record = json.loads((EVENTS / "aws-assumerole-wrong-external-id.json").read_text())
    result = handler.lambda_handler(drift_event() | {"detail": record}, Context())
    assert len(result["findings"]) == 1 and result["sent"] == 0  # high < critical
    assert slack.requests == []
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        EXAMPLE_BASELINE.read_text().replace("min_severity: medium", "min_severity: low")
    )
    handler = load_handler(
        monkeypatch,
        {"TRUSTWATCH_BASELINE": str(loose), "TRUSTWATCH_SLACK_WEBHOOK_URL": slack.url},
    )
    detach = copy.deepcopy(record) | {
        "eventSource": "iam.amazonaws.com",
        "eventName": "DetachRolePolicy",
        "errorCode": None,
        "eventID": "detach-1",
        "requestParameters": {
            "roleName": "databricks-uc-metastore",
            "policyArn": "arn:aws:iam::111122223333:policy/databricks-uc-metastore-access",
        },
    }
    del detach["errorCode"]
    result = handler.lambda_handler(drift_event() | {"detail": detach}, Context())
    assert result["sent"] == 1  # medium >= low: delivered, not held back by a sink default
    assert len(slack.requests) == 1


def test_the_finding_log_line_carries_the_whole_finding(monkeypatch):
    """CloudWatch Logs keep each finding whole, as Contract 2's JSON: the structured line
    (powertools' JSON formatter, https://docs.powertools.aws.dev/lambda/python/latest/core/logger/)
    holds under "finding" the same object the webhook is sent."""

    class Lines(logging.Handler):  # the function's own formatter, onto a list
        def __init__(self, formatter: logging.Formatter) -> None:
            super().__init__()
            self.setFormatter(formatter)
            self.lines: list[dict] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(json.loads(self.format(record)))

    with RecordingHTTPServer() as hook:
        handler = load_handler(
            monkeypatch,
            {
                "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
                "TRUSTWATCH_WEBHOOK_URL": hook.url,
                "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
                "TRUSTWATCH_REMEDIATION": "off",
            },
        )
        (formatter,) = {h.formatter for h in handler.logger.handlers}
        lines = Lines(formatter)
        handler.logger.addHandler(lines)
        try:
            result = handler.lambda_handler(drift_event(), Context())
        finally:
            handler.logger.removeHandler(lines)
        assert result["sent"] == 1
        logged = [line for line in lines.lines if "finding" in line]
        assert len(logged) == 1 and logged[0]["level"] == "WARNING"
        assert logged[0]["message"].startswith("finding critical aws.trust.principal_added on ")
        assert logged[0]["finding"] == hook.requests[0].json()
        assert logged[0]["finding"]["id"] == result["findings"][0]
