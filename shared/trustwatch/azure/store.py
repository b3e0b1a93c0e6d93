"""Dedup claims in an Azure Storage table.

One entity per finding id (PartitionKey = the id, RowKey = ""): `create_entity` fails if
it exists; an expired claim is taken over by replacing it only if its ETag is unchanged
(If-Match), so of several racing instances exactly one wins. The table is created on
first use. Expired entities stay until taken over or released (Table storage has no
TTL); they are one small row per distinct finding. Sweep states live in the same table
(`AzureTableSweepStore`).
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
from trustwatch.sweepstate import SweepState, SweepStateConflict, decode_state, encode_state

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


# --- sweep state ---------------------------------------------------------------------------

# Table storage limits (https://learn.microsoft.com/rest/api/storageservices/
# understanding-the-table-service-data-model): a binary property holds at most 64 KiB,
# an entity at most 1 MiB and 255 properties in all. So the gzip'd state is cut into
# properties d00, d01, … of SWEEP_PROPERTY_BYTES, at most SWEEP_PROPERTIES to an entity:
# 11, so that even the entity's JSON, binary as base64 (4/3 the size), stays under 1 MiB
# (Azurite counts that).
SWEEP_PROPERTY_BYTES = 64 * 1024
SWEEP_PROPERTIES = 11


class AzureTableSweepStore:
    """Sweep states in the dedup table (trustwatch.sweepstate), one partition per unit.

    PartitionKey `sweep.<cloud>.<unit>`: the entity RowKey `head` holds the state (inline
    when it fits one entity), replaced only if its ETag (the version) is unchanged
    (If-Match; a first save only if absent). A larger state goes into entities RowKey
    `<write token>.<n>` first, which the head then names; the replaced ones are deleted
    after the head is written, and a reader that finds one gone reads the head again.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        table: str = DEFAULT_TABLE,
        *,
        endpoint: str | None = None,
        credential: Any = None,
        property_bytes: int = SWEEP_PROPERTY_BYTES,
        **client_options: Any,
    ) -> None:
        self._claims = AzureTableDedupStore(
            connection_string, table, endpoint=endpoint, credential=credential, **client_options
        )
        self.table = table
        self.property_bytes = property_bytes

    @classmethod
    def from_url(cls, url: str, *, credential: Any = None) -> AzureTableSweepStore:
        """The store for `https://<account>.table.core.windows.net/<table>`."""
        claims = AzureTableDedupStore.from_url(url, credential=credential)
        return cls(table=claims.table, endpoint=claims._endpoint, credential=credential)

    @property
    def client(self) -> Any:
        """The TableClient (the dedup store's construction and retries)."""
        return self._claims.client

    @staticmethod
    def _partition(cloud: str, unit: str) -> str:
        return partition_key(f"sweep.{cloud}.{unit}")

    def _properties(self, data: bytes) -> list[dict[str, bytes]]:
        """`data` as entities' worth of d00, d01, … properties."""
        size = self.property_bytes
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        return [
            {f"d{n:02d}": piece for n, piece in enumerate(pieces[i : i + SWEEP_PROPERTIES])}
            for i in range(0, len(pieces), SWEEP_PROPERTIES)
        ]

    @staticmethod
    def _joined(entity: Mapping[str, Any]) -> bytes:
        names = sorted(k for k in entity if len(k) == 3 and k[0] == "d" and k[1:].isdigit())
        return b"".join(bytes(entity[name]) for name in names)

    def load(self, cloud: str, unit: str) -> SweepState | None:
        """See `SweepStateStore.load`."""
        from azure.core.exceptions import ResourceNotFoundError

        partition = self._partition(cloud, unit)
        for _round in range(CLAIM_ROUNDS):
            try:
                head = self.client.get_entity(partition, "head")
            except ResourceNotFoundError:
                return None  # no state yet (or no table yet)
            version = head.metadata["etag"]
            token = head.get("token", "")
            if not token:
                return decode_state(self._joined(head), version)
            try:
                parts = [
                    self.client.get_entity(partition, f"{token}.{n:04d}")
                    for n in range(int(head["parts"]))
                ]
            except ResourceNotFoundError:
                continue  # replaced while we read: read the new head
            return decode_state(b"".join(self._joined(p) for p in parts), version)
        raise SweepStateConflict(f"sweep state of {partition} kept changing while read")

    def save(self, cloud: str, unit: str, state: SweepState, *, expected: str | None) -> str:
        """See `SweepStateStore.save`: parts first, then the head with If-Match."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        partition = self._partition(cloud, unit)
        groups = self._properties(encode_state(state))
        head: dict[str, Any] = {"PartitionKey": partition, "RowKey": "head"}
        token = ""
        old = self._head_parts(partition) if expected is not None else None
        if len(groups) == 1:
            head |= groups[0]
        else:
            token = claim_token()
            for n, group in enumerate(groups):
                part = {"PartitionKey": partition, "RowKey": f"{token}.{n:04d}", **group}
                self._write(lambda entity=part: self.client.upsert_entity(entity))
            head |= {"token": token, "parts": len(groups)}
        try:
            if expected is None:
                written = self._write(lambda: self.client.create_entity(head, **_RETRY_ALL_METHODS))
            else:
                written = self.client.update_entity(
                    head,
                    mode=UpdateMode.REPLACE,
                    etag=expected,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            if token:
                self._delete_parts(partition, token, len(groups))
            raise SweepStateConflict(
                f"sweep state of {partition} changed since it was loaded"
            ) from None
        if old is not None and old[0] and old[0] != token:
            self._delete_parts(partition, *old)
        return str(written["etag"])

    def _head_parts(self, partition: str) -> tuple[str, int] | None:
        """The parts the current head names (deleted once replaced), if it has any."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            head = self.client.get_entity(partition, "head", select=["token", "parts"])
        except ResourceNotFoundError:
            return None
        token = head.get("token") or ""
        return (token, int(head.get("parts") or 0)) if token else None

    def _write(self, call: Any) -> Any:
        """`call()`, creating the table first if it does not exist yet."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return call()
        except ResourceNotFoundError as exc:
            if _error_code(exc) != "TableNotFound":
                raise
            self._claims._create_table()
            return call()

    def _delete_parts(self, partition: str, token: str, parts: int) -> None:
        for n in range(parts):
            self.client.delete_entity(partition, f"{token}.{n:04d}")

    def __repr__(self) -> str:
        return f"AzureTableSweepStore(table={self.table!r})"


def sweep_store_from_env(environ: Mapping[str, str]) -> AzureTableSweepStore | None:
    """The sweep state store in the table TRUSTWATCH_STATE_URL names (the dedup one)."""
    url = environ.get("TRUSTWATCH_STATE_URL", "").strip()
    if _is_connection_string(url):
        return AzureTableSweepStore(url)
    host = urlparse(url).hostname or ""
    if url.startswith("https://") and ".table." in host:
        return AzureTableSweepStore.from_url(url)
    return None
