"""Secret references: where a webhook URL, SMTP URL, token or signing key lives.

A secret is never written in the routing file and never logged: the file names where it
is (`{env: NAME}`, `{aws_secret: ID}`, `{ssm: NAME}`, `{gcp_secret: projects/…}`), and an
environment variable may itself hold such a reference (`ssm:/trustwatch/slack`). Azure
Key Vault needs nothing here: an app setting `@Microsoft.KeyVault(SecretUri=…)` reaches
the function as a plain environment variable. Cloud clients are imported only when a
reference of their kind is resolved (cold start).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from trustwatch.frozen import frozen
from trustwatch.schema import Model

# Environment values of these forms are references, not secrets (`#key` picks a JSON field).
ENV_REFERENCE_PREFIXES = {"aws-secret:": "aws_secret", "ssm:": "ssm", "gcp-secret:": "gcp_secret"}


class SecretError(RuntimeError):
    """A secret could not be resolved; the message names the reference, never the value."""


@frozen(kw_only=True)
class SecretRef(Model):
    """Where a secret lives: exactly one of env / aws_secret / ssm / gcp_secret.

    `key` reads one field of a JSON secret (Secrets Manager secrets are often
    `{"webhook_url": …}`).
    """

    env: str | None = None
    aws_secret: str | None = None
    ssm: str | None = None
    gcp_secret: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        # here, not in _check: environment values (`ssm:…`) build references directly too
        given = [k for k in ("env", "aws_secret", "ssm", "gcp_secret") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a secret reference names exactly one of env, aws_secret, ssm, gcp_secret"
            )

    @classmethod
    def _before(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets are never written in the routing file: use {env: NAME}, "
                "{aws_secret: ID}, {ssm: NAME} or {gcp_secret: projects/P/secrets/S/versions/V}"
            )
        return data

    def describe(self) -> str:
        """Where the secret lives, for error messages (never the value)."""
        for kind in ("env", "aws_secret", "ssm", "gcp_secret"):
            if value := getattr(self, kind):
                return f"{kind} {value}" + (f"#{self.key}" if self.key else "")
        return "?"  # pragma: no cover - __post_init__ guarantees one

    def resolve(self, environ: Mapping[str, str]) -> str:
        """The secret's value; raises SecretError (without the value) if it can't be read."""
        if self.env:
            if not environ.get(self.env):
                raise SecretError(f"environment variable {self.env} is not set")
            value = environ[self.env]
            if value.startswith("@Microsoft.KeyVault("):
                raise SecretError(
                    f"environment variable {self.env} is an unresolved Key Vault reference: "
                    "check the function app's identity has 'get' on the vault's secrets"
                )
            nested = reference_from_env_value(value)
            return nested.resolve(environ) if nested else _pick(value, self.key, self)
        try:
            if self.aws_secret:
                raw = _aws_secret(self.aws_secret)
            elif self.ssm:
                raw = _ssm_parameter(self.ssm)
            else:
                raw = _gcp_secret(self.gcp_secret or "")
        except SecretError:
            raise
        except Exception as exc:  # SDK errors: keep the type, not a message that may echo
            raise SecretError(f"{self.describe()}: {type(exc).__name__}") from None
        return _pick(raw, self.key, self)


def reference_from_env_value(value: str) -> SecretRef | None:
    """`ssm:/a/b`, `aws-secret:id#field`, `gcp-secret:projects/…` -> a reference; else None."""
    for prefix, kind in ENV_REFERENCE_PREFIXES.items():
        if value.startswith(prefix):
            target, _, key = value[len(prefix) :].partition("#")
            return SecretRef(**{kind: target, "key": key or None})
    return None


def _pick(raw: str, key: str | None, ref: SecretRef) -> str:
    if key is None:
        return raw
    try:
        value = json.loads(raw)[key]
    except (ValueError, KeyError, TypeError):
        raise SecretError(f"{ref.describe()}: not a JSON object with field {key!r}") from None
    if not isinstance(value, str) or not value:
        raise SecretError(f"{ref.describe()}: field {key!r} is not a non-empty string")
    return value


def _aws_secret(secret_id: str) -> str:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    value = SecretsProvider().get(secret_id)
    return value.decode() if isinstance(value, bytes) else str(value)


def _ssm_parameter(name: str) -> str:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return str(SSMProvider().get(name, decrypt=True))


GCP_SECRET_MANAGER_URL = "https://secretmanager.googleapis.com/v1"


def _gcp_secret(name: str, *, endpoint: str | None = None, credentials: object = None) -> str:
    """Secret Manager's REST `:access` with Application Default Credentials.

    google-auth is already in the GCP function; the gRPC client would add weight for one
    call.
    """
    if not name.startswith("projects/") or "/secrets/" not in name:
        raise SecretError(
            f"gcp_secret {name}: expected projects/PROJECT/secrets/NAME/versions/VERSION"
        )
    if "/versions/" not in name:
        name = f"{name}/versions/latest"
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    if credentials is None:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]  # google-auth
    response = session.get(f"{endpoint or GCP_SECRET_MANAGER_URL}/{name}:access", timeout=10)
    if response.status_code != 200:
        raise SecretError(f"gcp_secret {name}: HTTP {response.status_code}")
    return base64.b64decode(response.json()["payload"]["data"]).decode()
