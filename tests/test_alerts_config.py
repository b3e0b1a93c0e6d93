"""Routing from the environment and from a file: defaults, precedence, clear errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from alerts_support import aws_trust_finding, gcp_bucket_finding
from trustwatch.alerts import AlertConfigError, Dispatcher, load_routing, routing_from_env
from trustwatch.alerts.config import EmailConfig, SlackConfig
from trustwatch.alerts.secrets import SecretError, SecretRef, reference_from_env_value
from trustwatch.findings import Severity

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ENV = {
    "TRUSTWATCH_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
    "TRUSTWATCH_WEBHOOK_URL": "https://siem.example.com/in",
    "TRUSTWATCH_SMTP_URL": "smtp://u:p@mail.example.com:587",
}


def test_example_routing_file_loads_and_builds_every_sink() -> None:
    routing = load_routing(ROOT / "examples" / "routing.yaml")
    kinds = [s.type for s in routing.sinks]
    assert kinds == ["slack", "slack", "teams", "webhook", "email", "ses"]
    d = Dispatcher.from_env(EXAMPLE_ENV, routing_file=str(ROOT / "examples" / "routing.yaml"))
    assert d.sinks == [s.name for s in routing.sinks]
    assert d.window_s == 3600
    platform = routing.sinks[1]
    assert platform.routes(aws_trust_finding(), Severity.medium)
    assert not platform.routes(gcp_bucket_finding(), Severity.medium)


def test_environment_alone_configures_the_common_case() -> None:
    env = {
        **EXAMPLE_ENV,
        "TRUSTWATCH_TEAMS_WEBHOOK_URL": "https://prod.westeurope.logic.azure.com/x",
        "TRUSTWATCH_WEBHOOK_SECRET": "k" * 32,
        "TRUSTWATCH_EMAIL_FROM": "tw@example.com",
        "TRUSTWATCH_EMAIL_TO": "a@example.com,b@example.com",
        "TRUSTWATCH_MIN_SEVERITY": "HIGH",
        "TRUSTWATCH_DEDUP_WINDOW": "600",
        "TRUSTWATCH_ALERT_TIMEOUT": "3.5",
        "TRUSTWATCH_ALERT_ATTEMPTS": "5",
    }
    d = Dispatcher.from_env(env)
    assert d.sinks == ["slack", "teams", "webhook", "email"]
    assert d.window_s == 600
    assert {s.min_severity for s in d._sinks} == {Severity.high}
    assert d._sinks[0]._delivery.timeout_s == 3.5 and d._sinks[0]._delivery.attempts == 5


def test_no_variables_means_no_sinks() -> None:
    assert routing_from_env({}).sinks == []
    assert Dispatcher.from_env({}).sinks == []


def test_ses_and_slack_bot_from_the_environment() -> None:
    env = {
        "TRUSTWATCH_SLACK_BOT_TOKEN": "xoxb-1",
        "TRUSTWATCH_SLACK_CHANNEL": "#sec",
        "TRUSTWATCH_SES_REGION": "eu-west-1",
        "TRUSTWATCH_EMAIL_FROM": "tw@example.com",
        "TRUSTWATCH_EMAIL_TO": "a@example.com",
    }
    routing = routing_from_env(env)
    slack, ses = routing.sinks
    assert isinstance(slack, SlackConfig) and slack.token == SecretRef(
        env="TRUSTWATCH_SLACK_BOT_TOKEN"
    )
    assert ses.type == "ses"
    assert repr(Dispatcher.from_env(env)).startswith("Dispatcher(sinks=['slack', 'email']")


def test_file_values_win_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "defaults: {min_severity: low}\ndedup: {window_s: 60}\ndelivery: {attempts: 1}\n"
        "sinks: [{name: s, type: slack}, {name: t, type: slack, min_severity: critical,"
        " webhook_url: {env: OTHER_HOOK}}]\n"
    )
    env = {
        "TRUSTWATCH_SLACK_WEBHOOK_URL": "https://hooks.slack.com/x",
        "OTHER_HOOK": "https://hooks.slack.com/y",
        "TRUSTWATCH_MIN_SEVERITY": "high",
        "TRUSTWATCH_DEDUP_WINDOW": "999",
        "TRUSTWATCH_ALERT_ATTEMPTS": "7",
        "TRUSTWATCH_ALERT_TIMEOUT": "4",
    }
    d = Dispatcher.from_env(env, routing_file=str(path))
    assert [s.min_severity for s in d._sinks] == [Severity.low, Severity.critical]
    assert d.window_s == 60
    delivery = d._sinks[0]._delivery
    assert delivery.attempts == 1 and delivery.timeout_s == 4  # unset in the file: env


def test_routing_file_from_the_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("sinks: [{name: only, type: slack}]\n")
    env = {"TRUSTWATCH_ALERT_ROUTING": str(path), **EXAMPLE_ENV}
    assert Dispatcher.from_env(env).sinks == ["only"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sinks: [{name: s, type: slack, webhook_url: 'https://hooks.slack.com/T/B/x'}]",
            "sinks[0].webhook_url: secrets are never written in the routing file",
        ),
        ("sinks: [{name: s, type: slack, min_severity: urgent}]", "sinks[0].min_severity: Input"),
        ("sinks: [{name: s, type: pager}]", "sinks[0]: Input tag 'pager' found"),
        ("sinks: [{name: s, type: slack, colour: red}]", "sinks[0].colour: Extra inputs"),
        ("sinks: [{name: a, type: slack}, {name: a, type: teams}]", "used twice"),
        ("sinks: [{name: s, type: slack, token: {env: T}}]", "a bot token needs a channel"),
        ("sinks: [{name: s, type: email, to: ['not an address']}]", "not a plain email address"),
        ("sinks: [{name: s, type: ses, from: bad}]", "sinks[0].from: not a plain email address"),
        ("sinks: [{name: s, type: email, from: 5}]", "sinks[0].from: Input should be a valid str"),
        ("sinks: [{name: s, type: ses, sender: bad}]", "sinks[0].sender: not a plain email"),
        (
            "sinks: [{name: s, type: email, from: a@example.com, sender: b@example.com}]",
            "sinks[0].sender: Extra inputs are not permitted",
        ),
        ("delivery: {timeout_s: null}", "delivery.timeout_s: Input should be a valid number"),
        ("delivery: {attempts: 11}", "delivery.attempts: Input should be less than or equal to 10"),
        ("dedup: {window_s: -1}", "dedup.window_s: Input should be greater than or equal to 0"),
        ("defaults: 5", "defaults: Input should be a valid dictionary or instance of Defaults"),
        ("sinks: [{name: '-x', type: teams}]", "sinks[0].name: String should match pattern"),
        ("sinks: [{name: s, type: webhook, secret: {env: A, ssm: B}}]", "exactly one of"),
        ("version: 2", "version: Input should be 1"),
        ("sinks: [a, b", "r.yaml:2:1: not valid YAML (expected ',' or ']'"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_routing_file_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text + "\n")
    with pytest.raises(AlertConfigError) as caught:
        load_routing(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_file_sinks_are_frozen_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "sinks: [{name: s, type: slack}, {name: m, type: email, from: a@example.com}]\n"
    )
    slack, mail = load_routing(path).sinks
    assert isinstance(slack, SlackConfig)
    assert slack.webhook_url == SecretRef(env="TRUSTWATCH_SLACK_WEBHOOK_URL")
    assert isinstance(mail, EmailConfig) and mail.sender == "a@example.com" and mail.to is None
    with pytest.raises(FrozenInstanceError):
        slack.name = "other"  # type: ignore[misc]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AlertConfigError, match="cannot read"):
        load_routing(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRUSTWATCH_WEBHOOK_URL": "https://x.example"}, "TRUSTWATCH_WEBHOOK_SECRET is not"),
        ({"TRUSTWATCH_MIN_SEVERITY": "urgent"}, "TRUSTWATCH_MIN_SEVERITY='urgent'"),
        ({"TRUSTWATCH_DEDUP_WINDOW": "1h"}, "TRUSTWATCH_DEDUP_WINDOW='1h': expected a int"),
        ({"TRUSTWATCH_ALERT_TIMEOUT": "-1"}, "must not be negative"),
        ({"TRUSTWATCH_SMTP_URL": "smtp://h"}, "TRUSTWATCH_EMAIL_FROM is not one address"),
        (
            {"TRUSTWATCH_SMTP_URL": "smtp://h", "TRUSTWATCH_EMAIL_FROM": "a@example.com"},
            "TRUSTWATCH_EMAIL_TO is not set",
        ),
        (
            {
                "TRUSTWATCH_SMTP_URL": "smtp://h",
                "TRUSTWATCH_EMAIL_FROM": "a@example.com",
                "TRUSTWATCH_EMAIL_TO": "b@example.com,\r\nBcc: c@evil.example",
            },
            "not a plain email address",
        ),
        ({"TRUSTWATCH_STATE_URL": "ftp://nowhere"}, "TRUSTWATCH_STATE_URL"),
    ],
)
def test_environment_errors_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(AlertConfigError) as caught:
        Dispatcher.from_env({"TRUSTWATCH_SLACK_WEBHOOK_URL": "https://h.example/x", **env})
    assert message in str(caught.value)


def test_a_slack_token_without_a_channel_is_an_environment_error() -> None:
    with pytest.raises(AlertConfigError) as caught:
        Dispatcher.from_env({"TRUSTWATCH_SLACK_BOT_TOKEN": "xoxb-1"})
    assert str(caught.value) == "environment: sinks[0]: a bot token needs a channel"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRUSTWATCH_ALERT_TIMEOUT": "0"}, "Input should be greater than 0"),
        ({"TRUSTWATCH_ALERT_TIMEOUT": "500"}, "Input should be less than or equal to 120"),
        ({"TRUSTWATCH_ALERT_ATTEMPTS": "0"}, "Input should be greater than or equal to 1"),
    ],
)
def test_environment_delivery_out_of_range_is_a_config_error(
    env: dict[str, str], message: str
) -> None:
    ((name, raw),) = env.items()
    with pytest.raises(AlertConfigError) as caught:
        Dispatcher.from_env({"TRUSTWATCH_SLACK_WEBHOOK_URL": "https://h.example/x", **env})
    assert str(caught.value) == f"{name}={raw!r}: {message}"


def test_environment_routing_imports_no_pydantic() -> None:
    # findings.py imports pydantic for now, so sys.modules alone cannot tell: also watch
    # every import statement, and that no TypeAdapter was built.
    code = (
        "import builtins, sys\n"
        "import trustwatch.findings\n"
        "before = set(sys.modules)\n"
        "seen = []\n"
        "real = builtins.__import__\n"
        "def spy(name, *args, **kwargs):\n"
        "    if name.split('.')[0] in ('pydantic', 'pydantic_core'):\n"
        "        seen.append(name)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "from trustwatch import schema\n"
        "from trustwatch.alerts import Dispatcher\n"
        "env = {\n"
        "    'TRUSTWATCH_WEBHOOK_URL': 'https://siem.example.com/in',\n"
        "    'TRUSTWATCH_WEBHOOK_SECRET': 'k' * 32,\n"
        "    'TRUSTWATCH_SLACK_WEBHOOK_URL': 'https://hooks.slack.com/services/T/B/x',\n"
        "    'TRUSTWATCH_TEAMS_WEBHOOK_URL': 'https://prod.westeurope.logic.azure.com/x',\n"
        "    'TRUSTWATCH_SMTP_URL': 'smtp://u:p@mail.example.com:587',\n"
        "    'TRUSTWATCH_EMAIL_FROM': 'tw@example.com',\n"
        "    'TRUSTWATCH_EMAIL_TO': 'a@example.com,b@example.com',\n"
        "    'TRUSTWATCH_MIN_SEVERITY': 'high',\n"
        "    'TRUSTWATCH_DEDUP_WINDOW': '600',\n"
        "    'TRUSTWATCH_ALERT_TIMEOUT': '3.5',\n"
        "    'TRUSTWATCH_ALERT_ATTEMPTS': '5',\n"
        "}\n"
        "d = Dispatcher.from_env(env)\n"
        "builtins.__import__ = real\n"
        "assert d.sinks == ['slack', 'teams', 'webhook', 'email'], d.sinks\n"
        "new = sorted(m for m in set(sys.modules) - before if m.startswith('pydantic'))\n"
        "print(new, sorted(set(seen)), [c.__name__ for c in schema._adapters])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] [] []"


def test_a_referenced_variable_that_is_missing_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("sinks: [{name: t, type: teams}]\n")
    with pytest.raises(AlertConfigError, match="TRUSTWATCH_TEAMS_WEBHOOK_URL"):
        Dispatcher.from_env({}, routing_file=str(path))


# --- secret references ------------------------------------------------------------------


def test_env_values_may_be_references() -> None:
    assert reference_from_env_value("ssm:/tw/slack") == SecretRef(ssm="/tw/slack")
    assert reference_from_env_value("aws-secret:tw/slack#url") == SecretRef(
        aws_secret="tw/slack", key="url"
    )
    assert reference_from_env_value("gcp-secret:projects/p/secrets/s") == SecretRef(
        gcp_secret="projects/p/secrets/s"
    )
    assert reference_from_env_value("https://hooks.slack.com/x") is None
    with pytest.raises(ValueError, match="exactly one of"):
        reference_from_env_value("ssm:#key")  # built directly: __post_init__ checks it


@pytest.mark.parametrize("fields", [{}, {"env": "A", "ssm": "B"}, {"key": "k"}, {"env": ""}])
def test_a_secret_reference_names_exactly_one_place(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of env, aws_secret, ssm, gcp_secret"):
        SecretRef(**fields)


def test_secret_errors_name_the_reference_not_the_value() -> None:
    with pytest.raises(SecretError, match="environment variable NOPE is not set"):
        SecretRef(env="NOPE").resolve({})
    with pytest.raises(SecretError, match="unresolved Key Vault reference"):
        SecretRef(env="X").resolve({"X": "@Microsoft.KeyVault(SecretUri=https://v/secrets/s)"})
    with pytest.raises(SecretError) as caught:
        SecretRef(env="X", key="url").resolve({"X": "hunter2-not-json"})
    assert "hunter2" not in str(caught.value)
    assert SecretRef(env="X", key="url").resolve({"X": '{"url": "https://a"}'}) == "https://a"
    with pytest.raises(SecretError, match="expected projects/"):
        SecretRef(gcp_secret="my-secret").resolve({})


def test_importing_alerts_loads_no_cloud_sdk_or_slack_client() -> None:
    code = (
        "import sys, trustwatch.alerts\n"
        "heavy = ('boto3', 'botocore', 'slack_sdk', 'aws_lambda_powertools', 'azure',"
        " 'google.auth', 'google.cloud.storage', 'aiosmtpd', 'cryptography', 'jinja2')\n"
        "print([m for m in sys.modules if m.startswith(heavy)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
