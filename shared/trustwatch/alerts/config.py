"""Alert routing: which sinks get which findings, and where their secrets live.

Two sources, one model. Environment variables alone configure the common case (one sink
per kind, one minimum severity); a routing file (YAML) lists sinks with their own
severities and cloud / rule filters. File values win over the environment, which gives
the defaults: a file sink that names no secret uses its kind's standard variable.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trustwatch.alerts.secrets import SecretRef
from trustwatch.findings import CloudName, Finding, Severity

DEFAULT_MIN_SEVERITY = Severity.medium
# 90 min: an hourly sweep plus its 15-minute catch-up overlap (trustwatch.sweep) stays one alert
DEFAULT_WINDOW_S = 5400

# The environment variables, one place (docs/alerts.md lists them with their defaults).
ENV_SLACK_WEBHOOK = "TRUSTWATCH_SLACK_WEBHOOK_URL"
ENV_SLACK_TOKEN = "TRUSTWATCH_SLACK_BOT_TOKEN"
ENV_SLACK_CHANNEL = "TRUSTWATCH_SLACK_CHANNEL"
ENV_TEAMS_WEBHOOK = "TRUSTWATCH_TEAMS_WEBHOOK_URL"
ENV_WEBHOOK_URL = "TRUSTWATCH_WEBHOOK_URL"
ENV_WEBHOOK_SECRET = "TRUSTWATCH_WEBHOOK_SECRET"
ENV_SMTP_URL = "TRUSTWATCH_SMTP_URL"
ENV_SES_REGION = "TRUSTWATCH_SES_REGION"
ENV_EMAIL_FROM = "TRUSTWATCH_EMAIL_FROM"
ENV_EMAIL_TO = "TRUSTWATCH_EMAIL_TO"
ENV_MIN_SEVERITY = "TRUSTWATCH_MIN_SEVERITY"
ENV_ROUTING = "TRUSTWATCH_ALERT_ROUTING"
ENV_WINDOW = "TRUSTWATCH_DEDUP_WINDOW"
ENV_TIMEOUT = "TRUSTWATCH_ALERT_TIMEOUT"
ENV_ATTEMPTS = "TRUSTWATCH_ALERT_ATTEMPTS"


class AlertConfigError(ValueError):
    """The routing file or the environment is wrong; the message says where and why."""


class _Strict(BaseModel):
    # validators built on first validation: only the models the routing in use needs
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class SinkConfigBase(_Strict):
    """What every sink entry has: a name, a minimum severity, cloud and rule filters."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    min_severity: Severity | None = None  # None: the routing default
    clouds: list[CloudName] = Field(default_factory=list)  # [] = all
    rules: list[str] = Field(default_factory=list)  # glob patterns; [] = all

    def routes(self, finding: Finding, default: Severity) -> bool:
        """Does this sink want the finding (severity, cloud and rule filters)?"""
        if not finding.severity.at_least(self.min_severity or default):
            return False
        if self.clouds and finding.cloud not in self.clouds:
            return False
        return not self.rules or any(fnmatch.fnmatchcase(finding.rule, p) for p in self.rules)


class SlackConfig(SinkConfigBase):
    """Incoming webhook, or a bot token + channel (chat.postMessage: sweep digests thread)."""

    type: Literal["slack"]
    webhook_url: SecretRef | None = None
    token: SecretRef | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"

    @model_validator(mode="after")
    def _one_transport(self) -> SlackConfig:
        if self.webhook_url and self.token:
            raise ValueError("give webhook_url or token, not both")
        if self.token and not self.channel:
            raise ValueError("a bot token needs a channel")
        if not self.token and not self.webhook_url:
            self.webhook_url = SecretRef(env=ENV_SLACK_WEBHOOK)
        return self


class TeamsConfig(SinkConfigBase):
    """A Teams Workflows ("When a Teams webhook request is received") URL."""

    type: Literal["teams"]
    webhook_url: SecretRef = Field(default_factory=lambda: SecretRef(env=ENV_TEAMS_WEBHOOK))


class WebhookConfig(SinkConfigBase):
    """Any HTTPS endpoint: the finding JSON, HMAC-SHA256 signed with `secret`."""

    type: Literal["webhook"]
    url: SecretRef = Field(default_factory=lambda: SecretRef(env=ENV_WEBHOOK_URL))
    secret: SecretRef = Field(default_factory=lambda: SecretRef(env=ENV_WEBHOOK_SECRET))


class _MailConfig(SinkConfigBase):
    sender: str | None = Field(default=None, alias="from")  # None: TRUSTWATCH_EMAIL_FROM
    to: list[str] | None = None  # None: TRUSTWATCH_EMAIL_TO

    @field_validator("sender")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("at least one recipient")
        return None if value is None else [_address(v) for v in value]


class EmailConfig(_MailConfig):
    """SMTP: `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465`, `?starttls=false`."""

    type: Literal["email"]
    smtp_url: SecretRef = Field(default_factory=lambda: SecretRef(env=ENV_SMTP_URL))


class SesConfig(_MailConfig):
    """Amazon SES (v2 SendEmail) with the function's own AWS credentials."""

    type: Literal["ses"]
    region: str | None = None  # None: TRUSTWATCH_SES_REGION, then the SDK's default
    configuration_set: str | None = None


SinkConfig = Annotated[
    SlackConfig | TeamsConfig | WebhookConfig | EmailConfig | SesConfig, Field(discriminator="type")
]


class Defaults(_Strict):
    """Settings for every sink that does not set its own."""

    min_severity: Severity | None = None


class DedupConfig(_Strict):
    """The dedup window: one alert per finding id per `window_s` seconds."""

    window_s: int | None = Field(default=None, ge=0)


class DeliveryConfig(_Strict):
    """How hard each message is tried.

    `attempts` tries, each bounded by `timeout_s`; waits between them grow from
    `base_delay_s` (full jitter), capped (Retry-After too) at `max_delay_s`.
    """

    timeout_s: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=3, ge=1, le=10)
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=10.0, ge=0)


class Routing(_Strict):
    """A routing file: defaults, dedup, delivery settings and the sinks."""

    version: Literal[1] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    sinks: list[SinkConfig] = Field(default_factory=list)

    @field_validator("sinks")
    @classmethod
    def _unique_names(cls, sinks: list[SinkConfigBase]) -> list[SinkConfigBase]:
        seen: set[str] = set()
        for sink in sinks:
            if sink.name in seen:
                raise ValueError(f"sink name {sink.name!r} is used twice")
            seen.add(sink.name)
        return sinks


def _address(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c in value for c in " ,;<>\r\n\t\"'"):
        raise ValueError(f"not a plain email address: {value!r}")
    return value


def addresses(value: str) -> list[str]:
    """`a@x.org, b@y.org` -> both, each checked (TRUSTWATCH_EMAIL_TO)."""
    return [_address(v) for v in value.split(",") if v.strip()]


def env_min_severity(environ: Mapping[str, str]) -> Severity | None:
    """TRUSTWATCH_MIN_SEVERITY, if set."""
    raw = environ.get(ENV_MIN_SEVERITY, "").strip().lower()
    if not raw:
        return None
    try:
        return Severity(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in Severity)
        raise AlertConfigError(f"{ENV_MIN_SEVERITY}={raw!r}: expected one of {allowed}") from None


def _number(environ: Mapping[str, str], name: str, kind: type[int] | type[float]) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise AlertConfigError(f"{name}={raw!r}: expected a {kind.__name__}") from None
    if value < 0:
        raise AlertConfigError(f"{name}={raw!r}: must not be negative")
    return value


def routing_from_env(environ: Mapping[str, str]) -> Routing:
    """The sinks the standard environment variables configure (none set: no sinks)."""
    sinks: list[dict[str, object]] = []
    if environ.get(ENV_SLACK_WEBHOOK):
        sinks.append({"name": "slack", "type": "slack"})
    elif environ.get(ENV_SLACK_TOKEN):
        channel = environ.get(ENV_SLACK_CHANNEL) or None
        token = {"env": ENV_SLACK_TOKEN}
        sinks.append({"name": "slack", "type": "slack", "token": token, "channel": channel})
    if environ.get(ENV_TEAMS_WEBHOOK):
        sinks.append({"name": "teams", "type": "teams"})
    if environ.get(ENV_WEBHOOK_URL):
        if not environ.get(ENV_WEBHOOK_SECRET):
            raise AlertConfigError(
                f"{ENV_WEBHOOK_URL} is set but {ENV_WEBHOOK_SECRET} is not: "
                "webhook posts are always signed"
            )
        sinks.append({"name": "webhook", "type": "webhook"})
    if environ.get(ENV_SMTP_URL):
        sinks.append({"name": "email", "type": "email"})
    elif environ.get(ENV_SES_REGION):
        sinks.append({"name": "email", "type": "ses"})
    return _validate({"sinks": sinks}, "environment")


def env_window(environ: Mapping[str, str]) -> int | None:
    """TRUSTWATCH_DEDUP_WINDOW (seconds), if set."""
    value = _number(environ, ENV_WINDOW, int)
    return None if value is None else int(value)


def env_delivery(environ: Mapping[str, str]) -> dict[str, float]:
    """TRUSTWATCH_ALERT_TIMEOUT / _ATTEMPTS, those that are set."""
    found = {
        "timeout_s": _number(environ, ENV_TIMEOUT, float),
        "attempts": _number(environ, ENV_ATTEMPTS, int),
    }
    return {k: v for k, v in found.items() if v is not None}


def load_routing(path: str | Path) -> Routing:
    """Read and validate a routing file; errors name the file and the field."""
    import yaml  # only with a routing file: most functions are configured by environment

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        raise AlertConfigError(
            f"{path}{where}: not valid YAML" + (f" ({problem})" if problem else "")
        ) from None
    if not isinstance(data, dict):
        raise AlertConfigError(f"{path}: expected a mapping with `sinks:` at the top")
    return _validate(data, str(path))


def _validate(data: object, source: str) -> Routing:
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Drop pydantic's union-branch names (`slack`, `function-after[…]`) from the path.
            loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
            problems.append(f"{where or '(top)'}: {err['msg'].removeprefix('Value error, ')}")
        raise AlertConfigError(f"{source}: " + "; ".join(problems)) from None


_TAGS = {"slack", "teams", "webhook", "email", "ses"}
