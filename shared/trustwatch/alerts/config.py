"""Alert routing: which sinks get which findings, and where their secrets live.

Two sources, one model. Environment variables alone configure the common case (one sink
per kind, one minimum severity); a routing file (YAML) lists sinks with their own
severities and cloud / rule filters. File values win over the environment, which gives
the defaults: a file sink that names no secret uses its kind's standard variable.

The models are frozen dataclasses (trustwatch.schema): pydantic validates a routing file,
imported only then; the environment's routing is built directly, so a function configured
by environment alone never loads it for its routing.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from trustwatch.alerts.secrets import SecretRef
from trustwatch.findings import CloudName, Finding, Severity
from trustwatch.frozen import frozen
from trustwatch.schema import After, Constrained, Model, Tagged, error_message

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


def _address(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c in value for c in " ,;<>\r\n\t\"'"):
        raise ValueError(f"not a plain email address: {value!r}")
    return value


def _one_address(value: str | None) -> str | None:
    return None if value is None else _address(value)


def _addresses(value: list[str] | None) -> list[str] | None:
    if value is not None and not value:
        raise ValueError("at least one recipient")
    return None if value is None else [_address(v) for v in value]


@frozen(kw_only=True)
class SinkConfigBase(Model):
    """What every sink entry has: a name, a minimum severity, cloud and rule filters."""

    name: Annotated[str, Constrained(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    min_severity: Severity | None = None  # None: the routing default
    clouds: list[CloudName] = field(default_factory=list)  # [] = all
    rules: list[str] = field(default_factory=list)  # glob patterns; [] = all

    def routes(self, finding: Finding, default: Severity) -> bool:
        """Does this sink want the finding (severity, cloud and rule filters)?"""
        if not finding.severity.at_least(self.min_severity or default):
            return False
        if self.clouds and finding.cloud not in self.clouds:
            return False
        return not self.rules or any(fnmatch.fnmatchcase(finding.rule, p) for p in self.rules)


SLACK_TOKEN_NEEDS_CHANNEL = "a bot token needs a channel"  # file and environment alike


@frozen(kw_only=True)
class SlackConfig(SinkConfigBase):
    """Incoming webhook, or a bot token + channel (chat.postMessage: sweep digests thread)."""

    type: Literal["slack"]
    webhook_url: SecretRef | None = None  # neither this nor token: TRUSTWATCH_SLACK_WEBHOOK_URL
    token: SecretRef | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"

    def _check(self) -> SlackConfig:
        if self.webhook_url and self.token:
            raise ValueError("give webhook_url or token, not both")
        if self.token and not self.channel:
            raise ValueError(SLACK_TOKEN_NEEDS_CHANNEL)
        if not self.token and not self.webhook_url:
            return dataclasses.replace(self, webhook_url=SecretRef(env=ENV_SLACK_WEBHOOK))
        return self


@frozen(kw_only=True)
class TeamsConfig(SinkConfigBase):
    """A Teams Workflows ("When a Teams webhook request is received") URL."""

    type: Literal["teams"]
    webhook_url: SecretRef = field(default_factory=lambda: SecretRef(env=ENV_TEAMS_WEBHOOK))


@frozen(kw_only=True)
class WebhookConfig(SinkConfigBase):
    """Any HTTPS endpoint: the finding JSON, HMAC-SHA256 signed with `secret`."""

    type: Literal["webhook"]
    url: SecretRef = field(default_factory=lambda: SecretRef(env=ENV_WEBHOOK_URL))
    secret: SecretRef = field(default_factory=lambda: SecretRef(env=ENV_WEBHOOK_SECRET))


# Both `from` and `sender` given: the pydantic model (alias + populate_by_name) took `from`
# and called `sender` an unknown field; _validate still reports it so.
_SENDER_TWICE = "`from` and `sender` both given"


@frozen(kw_only=True)
class _MailConfig(SinkConfigBase):
    # `sender` is `from:` in the file (a Python keyword, so not the field's name)
    sender: Annotated[str | None, After(_one_address)] = None  # None: TRUSTWATCH_EMAIL_FROM
    to: Annotated[list[str] | None, After(_addresses)] = None  # None: TRUSTWATCH_EMAIL_TO

    @classmethod
    def _before(cls, data: Any) -> Any:
        if isinstance(data, dict) and "from" in data:
            if "sender" in data:
                raise ValueError(_SENDER_TWICE)
            data = {("sender" if k == "from" else k): v for k, v in data.items()}
        return data


@frozen(kw_only=True)
class EmailConfig(_MailConfig):
    """SMTP: `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465`, `?starttls=false`."""

    type: Literal["email"]
    smtp_url: SecretRef = field(default_factory=lambda: SecretRef(env=ENV_SMTP_URL))


@frozen(kw_only=True)
class SesConfig(_MailConfig):
    """Amazon SES (v2 SendEmail) with the function's own AWS credentials."""

    type: Literal["ses"]
    region: str | None = None  # None: TRUSTWATCH_SES_REGION, then the SDK's default
    configuration_set: str | None = None


SinkConfig = Annotated[
    SlackConfig | TeamsConfig | WebhookConfig | EmailConfig | SesConfig, Tagged("type")
]


@frozen(kw_only=True)
class Defaults(Model):
    """Settings for every sink that does not set its own."""

    min_severity: Severity | None = None


@frozen(kw_only=True)
class DedupConfig(Model):
    """The dedup window: one alert per finding id per `window_s` seconds."""

    window_s: Annotated[int, Constrained(ge=0)] | None = None


@frozen(kw_only=True)
class Delivery:
    """How hard each message is tried: the settings in force (file > environment > default).

    `attempts` tries, each bounded by `timeout_s`; waits between them grow from
    `base_delay_s` (full jitter), capped (Retry-After too) at `max_delay_s`.
    """

    timeout_s: float = 10.0
    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def within_limits(self) -> bool:
        """DeliveryConfig's limits, checked without pydantic (NaN fails them there too)."""
        return (
            0 < self.timeout_s <= 120
            and 1 <= self.attempts <= 10
            and self.base_delay_s >= 0
            and self.max_delay_s >= 0
        )


# DeliveryConfig's fields: None is "not in the file" (the environment, then Delivery's
# default, decide). pydantic sees the number types alone, so `timeout_s: null` in the file
# is still "Input should be a valid number" (it does not validate defaults).
if TYPE_CHECKING:
    _Timeout = float | None
    _Attempts = int | None
    _Delay = float | None
else:
    _Timeout = Annotated[float, Constrained(gt=0, le=120)]
    _Attempts = Annotated[int, Constrained(ge=1, le=10)]
    _Delay = Annotated[float, Constrained(ge=0)]


@frozen(kw_only=True)
class DeliveryConfig(Model):
    """The routing file's `delivery:` section (see Delivery); None: not set there."""

    timeout_s: _Timeout = None
    attempts: _Attempts = None
    base_delay_s: _Delay = None
    max_delay_s: _Delay = None

    def given(self) -> dict[str, float]:
        """The values the file sets."""
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in found.items() if v is not None}


def _unique_names(sinks: list[SinkConfigBase]) -> list[SinkConfigBase]:
    seen: set[str] = set()
    for sink in sinks:
        if sink.name in seen:
            raise ValueError(f"sink name {sink.name!r} is used twice")
        seen.add(sink.name)
    return sinks


@frozen(kw_only=True)
class Routing(Model):
    """A routing file: defaults, dedup, delivery settings and the sinks."""

    version: Literal[1] = 1
    defaults: Defaults = field(default_factory=Defaults)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    sinks: Annotated[list[SinkConfig], After(_unique_names)] = field(default_factory=list)


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
    """The sinks the standard environment variables configure (none set: no sinks).

    Built directly, without pydantic (a cold start would pay for its import and the
    routing's validators): the values are ours but for the variables checked here.
    """
    sinks: list[SinkConfig] = []
    if environ.get(ENV_SLACK_WEBHOOK):
        sinks.append(
            SlackConfig(name="slack", type="slack", webhook_url=SecretRef(env=ENV_SLACK_WEBHOOK))
        )
    elif environ.get(ENV_SLACK_TOKEN):
        channel = environ.get(ENV_SLACK_CHANNEL) or None
        if channel is None:  # SlackConfig's check, worded as it was (slack is the first sink)
            raise AlertConfigError(f"environment: sinks[0]: {SLACK_TOKEN_NEEDS_CHANNEL}")
        token = SecretRef(env=ENV_SLACK_TOKEN)
        sinks.append(SlackConfig(name="slack", type="slack", token=token, channel=channel))
    if environ.get(ENV_TEAMS_WEBHOOK):
        sinks.append(TeamsConfig(name="teams", type="teams"))
    if environ.get(ENV_WEBHOOK_URL):
        if not environ.get(ENV_WEBHOOK_SECRET):
            raise AlertConfigError(
                f"{ENV_WEBHOOK_URL} is set but {ENV_WEBHOOK_SECRET} is not: "
                "webhook posts are always signed"
            )
        sinks.append(WebhookConfig(name="webhook", type="webhook"))
    if environ.get(ENV_SMTP_URL):
        sinks.append(EmailConfig(name="email", type="email"))
    elif environ.get(ENV_SES_REGION):
        sinks.append(SesConfig(name="email", type="ses"))
    return Routing(sinks=sinks)


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


def delivery_from(file: DeliveryConfig, environ: Mapping[str, str]) -> Delivery:
    """The delivery settings in force: the file's, else the environment's, else the defaults.

    Raises AlertConfigError for a malformed variable or a value out of range.
    """
    values: dict[str, Any] = {**env_delivery(environ), **file.given()}
    delivery = Delivery(**values)
    if not delivery.within_limits():
        # an environment value out of range (the file's were checked): pydantic says which
        from pydantic import ValidationError

        try:
            DeliveryConfig.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = {"timeout_s": ENV_TIMEOUT, "attempts": ENV_ATTEMPTS}[str(err["loc"][0])]
            raw = environ.get(name, "").strip()
            raise AlertConfigError(f"{name}={raw!r}: {err['msg']}") from None
    return delivery


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


def _validate(data: dict[str, Any], source: str) -> Routing:
    from pydantic import ValidationError  # a routing file only: the environment needs none

    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Drop pydantic's union-branch names (`slack`, `function-after[…]`) from the path.
            loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
            msg = error_message(err)  # a model's words, which users know
            if msg == _SENDER_TWICE:
                loc, msg = [*loc, "sender"], _UNKNOWN_FIELD
            elif loc and loc[-1] == "sender" and "from" in _entry(data, loc[:-1]):
                loc[-1] = "from"  # the key the file used
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
            problems.append(f"{where or '(top)'}: {msg}")
        raise AlertConfigError(f"{source}: " + "; ".join(problems)) from None


_TAGS = {"slack", "teams", "webhook", "email", "ses"}
_UNKNOWN_FIELD = (
    "Extra inputs are not permitted"  # pydantic's message for a model's (error_message)
)


def _entry(data: object, path: list[int | str]) -> Mapping[str, object]:
    """The mapping in `data` at `path` (a sink entry), or {} if there is none."""
    for part in path:
        try:
            data = data[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return {}
    return data if isinstance(data, dict) else {}
