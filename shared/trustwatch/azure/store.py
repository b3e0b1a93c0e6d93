"""Dedup claims in an Azure Storage table.

One entity per finding id (PartitionKey = the id, RowKey = ""): `create_entity` fails if
it exists; an expired claim is taken over by replacing it only if its ETag is unchanged
(If-Match), so of several racing instances exactly one wins. The table is created on
first use. Expired entities stay until taken over or released (Table storage has no
TTL); they are one small row per distinct finding.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from trustwatch.stores.common import (
    CLAIM_ROUNDS,
    STORE_ATTEMPTS,
    STORE_BACKOFF_S,
    STORE_MAX_BACKOFF_S,
    STORE_RETRY_TIMEOUT_S,
    ClaimContentionError,
    claim_token,
    now_or_clock,
)

DEFAULT_TABLE = "trustwatchdedup"
# Table keys may not contain / \ # ? or control characters; ids outside this set are hashed.
_SAFE_KEY = re.compile(r"[A-Za-z0-9._:=+@-]{1,512}")


# azure-core's RetryPolicy (TablesRetryPolicy in azure-data-tables), configured through
# the client's documented `retry_*` keywords
# (https://learn.microsoft.com/python/api/azure-core/azure.core.pipeline.policies.retrypolicy):
# it retries 408, 429, 500, 502, 503 and 504 (Table storage throttles with 503
# ServerBusy), honours Retry-After, and retries connection and read errors.
RETRY_OPTIONS: dict[str, Any] = {
    "retry_total": STORE_ATTEMPTS - 1,
    "retry_connect": STORE_ATTEMPTS - 1,
    "retry_read": STORE_ATTEMPTS - 1,
    "retry_status": STORE_ATTEMPTS - 1,
    "retry_backoff_factor": STORE_BACKOFF_S,
    "retry_backoff_max": STORE_MAX_BACKOFF_S,
    "timeout": STORE_RETRY_TIMEOUT_S,
    "connection_timeout": 5,
    "read_timeout": 10,
}
# Per call: azure-core retries POST (create_entity) only on 500/503/504 by default, not
# after a connection or read error, since a POST may not be safe to repeat. Ours is: a
# create whose answer was lost comes back "exists" holding our claim token.
_RETRY_ALL_METHODS = {
    "retry_on_methods": frozenset({"GET", "PUT", "POST", "PATCH", "DELETE", "MERGE"})
}


def _error_code(exc: Any) -> str | None:
    # The SDK sets `error_code` on some paths only; the service always sends the header.
    response = getattr(exc, "response", None)
    header = response.headers.get("x-ms-error-code") if response is not None else None
    return getattr(exc, "error_code", None) or header


def partition_key(finding_id: str) -> str:
    """The id itself if the Table service accepts it as a key, else its SHA-256."""
    if _SAFE_KEY.fullmatch(finding_id):
        return finding_id
    return hashlib.sha256(finding_id.encode()).hexdigest()


class AzureTableDedupStore:
    """A DedupStore on Azure Table storage (or Azurite).

    Reached by connection string or by endpoint + credential (default:
    DefaultAzureCredential, i.e. the managed identity).
    """

    def __init__(
        self,
        connection_string: str | None = None,
        table: str = DEFAULT_TABLE,
        *,
        endpoint: str | None = None,
        credential: Any = None,
        **client_options: Any,
    ) -> None:
        """Either `connection_string` or `endpoint` (+ `credential`).

        `client_options` are further TableClient keywords (e.g. `transport`), on top of
        RETRY_OPTIONS.
        """
        if (connection_string is None) == (endpoint is None):
            raise ValueError("give either a connection string or an endpoint")
        self.table = table
        self._connection_string = connection_string
        self._endpoint = endpoint or ""  # "" with a connection string
        self._credential = credential
        self._options = {**RETRY_OPTIONS, **client_options}
        self._client: Any = None

    @classmethod
    def from_url(cls, url: str, *, credential: Any = None) -> AzureTableDedupStore:
        """The store for `https://<account>.table.core.windows.net/<table>`."""
        parsed = urlparse(url)
        table = parsed.path.strip("/")
        if parsed.scheme != "https" or not parsed.netloc or not table or "/" in table:
            raise ValueError(f"{url!r} is not https://<account>.table.core.windows.net/<table>")
        return cls(table=table, endpoint=f"https://{parsed.netloc}", credential=credential)

    @property
    def client(self) -> Any:
        """The TableClient, created on first use with the retry policy."""
        if self._client is None:
            from azure.data.tables import TableClient

            if self._connection_string is not None:
                self._client = TableClient.from_connection_string(
                    self._connection_string, table_name=self.table, **self._options
                )
            else:
                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                self._client = TableClient(
                    self._endpoint, table_name=self.table, credential=credential, **self._options
                )
        return self._client

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """Claim `finding_id` until `now + window_s`: True if this call won it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        now = now_or_clock(now)
        token = claim_token()
        entity = {
            "PartitionKey": partition_key(finding_id),
            "RowKey": "",
            "expires": float(now + window_s),
            "claim": token,
        }
        key = entity["PartitionKey"]
        for _round in range(CLAIM_ROUNDS):
            try:
                self.client.create_entity(entity, **_RETRY_ALL_METHODS)
                return True
            except ResourceExistsError:
                pass
            except ResourceNotFoundError as exc:
                if _error_code(exc) != "TableNotFound":
                    raise
                self._create_table()
                continue
            try:
                held = self.client.get_entity(key, "")
            except ResourceNotFoundError:
                continue  # released meanwhile: create again
            if held.get("claim") == token:
                return True  # our own create, answered late and retried
            if float(held.get("expires") or 0) > now:
                return False
            try:
                # If-Match: a retried replace after a lost answer fails with 412, and
                # the next round finds our token.
                self.client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=held.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return True
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another instance got there first: see what it wrote
        raise ClaimContentionError(f"claim on {finding_id!r} kept changing")

    def _create_table(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):  # another instance created it
            self.client.create_table(**_RETRY_ALL_METHODS)

    def release(self, finding_id: str) -> None:
        """Delete the claim (delete_entity treats a missing entity as deleted)."""
        self.client.delete_entity(partition_key(finding_id), "")

    def __repr__(self) -> str:
        where = self._endpoint or "connection string"
        return f"AzureTableDedupStore({where!r}, table={self.table!r})"


# The TRUSTWATCH_STATE_URL forms this store takes (for the error naming every form).
URL_FORMS = "an Azure Storage connection string, https://<account>.table.core.windows.net/<table>"
# Keys that make a value an Azure Storage connection string (compared lowercased).
_CONNECTION_STRING_KEYS = {
    "defaultendpointsprotocol",
    "usedevelopmentstorage",
    "accountname",
    "tableendpoint",
    "sharedaccesssignature",
}


def store_from_env(environ: Mapping[str, str]) -> AzureTableDedupStore | None:
    """The Table Storage store TRUSTWATCH_STATE_URL names, if it names one.

    A connection string (`DefaultEndpointsProtocol=…;AccountName=…` or
    `UseDevelopmentStorage=true`): the `trustwatchdedup` table of that account;
    `https://<account>.table.core.windows.net/<table>`: that table, signed in with
    DefaultAzureCredential (the function's managed identity).
    """
    url = environ.get("TRUSTWATCH_STATE_URL", "").strip()
    if _is_connection_string(url):
        return AzureTableDedupStore(url)
    host = urlparse(url).hostname or ""
    if url.startswith("https://") and ".table." in host:
        return AzureTableDedupStore.from_url(url)
    return None


def _is_connection_string(value: str) -> bool:
    keys = {part.partition("=")[0].strip().lower() for part in value.split(";") if "=" in part}
    return bool(keys & _CONNECTION_STRING_KEYS)
