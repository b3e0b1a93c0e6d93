"""Dedup stores in each cloud's own storage, shared by concurrent function instances.

Each claim is one conditional write (DynamoDB condition expression, Azure Table
If-Match/insert, GCS ifGenerationMatch), so of several instances racing on one finding
id exactly one wins its window. Cloud SDKs are imported only when a store is used:
importing this package costs an AWS cold start nothing from Azure or Google.

`store_from_env` picks the store from the function's environment:

- `TRUSTWATCH_STATE_TABLE=<table>`: DynamoDB (see `dynamodb` for the shared table layout);
- `TRUSTWATCH_STATE_URL`:
  - `gs://bucket/prefix`: GCS objects under the prefix;
  - an Azure Storage connection string (`DefaultEndpointsProtocol=…;AccountName=…` or
    `UseDevelopmentStorage=true`): the `trustwatchdedup` table of that account;
  - `https://<account>.table.core.windows.net/<table>`: that table, signed in with
    DefaultAzureCredential (the function's managed identity);
  - `sqlite:///absolute/path` (or `sqlite://relative/path`): a SQLite file, for one machine;
- neither: None (the caller falls back to a per-instance memory store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from trustwatch.dedup import DedupStore, SqliteDedupStore
from trustwatch.stores._common import ClaimContentionError
from trustwatch.stores.azure_table import AzureTableDedupStore
from trustwatch.stores.dynamodb import DynamoDedupStore
from trustwatch.stores.gcs import GcsDedupStore

__all__ = [
    "AzureTableDedupStore",
    "ClaimContentionError",
    "DynamoDedupStore",
    "GcsDedupStore",
    "store_from_env",
]

# Keys that make a value an Azure Storage connection string (compared lowercased).
_CONNECTION_STRING_KEYS = {
    "defaultendpointsprotocol",
    "usedevelopmentstorage",
    "accountname",
    "tableendpoint",
    "sharedaccesssignature",
}


def _is_connection_string(value: str) -> bool:
    keys = {part.partition("=")[0].strip().lower() for part in value.split(";") if "=" in part}
    return bool(keys & _CONNECTION_STRING_KEYS)


def store_from_env(environ: Mapping[str, str] | None = None) -> DedupStore | None:
    """The dedup store the environment names, or None.

    A value that names no known store (or both variables set) raises ValueError: a typo
    must not silently mean "no dedup".
    """
    env = os.environ if environ is None else environ
    table = env.get("TRUSTWATCH_STATE_TABLE", "").strip()
    url = env.get("TRUSTWATCH_STATE_URL", "").strip()
    if table and url:
        raise ValueError("set TRUSTWATCH_STATE_TABLE or TRUSTWATCH_STATE_URL, not both")
    if table:
        return DynamoDedupStore(table)
    if not url:
        return None
    if url.startswith("gs://"):
        return GcsDedupStore(url)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path or path == "/":
            raise ValueError(f"TRUSTWATCH_STATE_URL={url!r} names no file")
        return SqliteDedupStore(path)
    if _is_connection_string(url):
        return AzureTableDedupStore(url)
    host = urlparse(url).hostname or ""
    if url.startswith("https://") and ".table." in host:
        return AzureTableDedupStore.from_url(url)
    raise ValueError(
        "TRUSTWATCH_STATE_URL must be gs://bucket/prefix, an Azure Storage connection string, "
        "https://<account>.table.core.windows.net/<table> or sqlite:///path; "
        f"got {_redacted(url)!r}"
    )


def _redacted(value: str) -> str:
    # The value may be a connection string with an account key: never log one.
    return value if len(value) <= 12 else value[:12] + "…"
