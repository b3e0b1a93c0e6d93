"""Dedup stores in each cloud's own storage, shared by concurrent function instances.

Each claim is one conditional write (DynamoDB condition expression, Azure Table
If-Match/insert, GCS ifGenerationMatch), so of several instances racing on one finding
id exactly one wins its window. Cloud SDKs are imported only when a store is used:
importing this package costs an AWS cold start nothing from Azure or Google.

Each cloud's store lives in its folder (`aws/store.py` DynamoDB, `azure/store.py` Table
Storage, `gcp/store.py` GCS); this package holds what they share (`common`) and
`store_from_env`, which picks the store from the function's environment:

- `TRUSTWATCH_STATE_TABLE=<table>`: DynamoDB (see `aws/store.py` for the shared table layout);
- `TRUSTWATCH_STATE_URL`: `gs://bucket/prefix`, an Azure Storage connection string or
  `https://<account>.table.core.windows.net/<table>`, or `sqlite:///absolute/path` (or
  `sqlite://relative/path`), a SQLite file for one machine;
- neither: None (the caller falls back to a per-instance memory store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from trustwatch import clouds
from trustwatch.dedup import DedupStore, SqliteDedupStore
from trustwatch.stores.common import ClaimContentionError

__all__ = ["ClaimContentionError", "store_from_env"]


def store_from_env(environ: Mapping[str, str] | None = None) -> DedupStore | None:
    """The dedup store the environment names, or None.

    `sqlite://` is core's; every other setting is a cloud's (`<cloud>/store.py:
    store_from_env`), each cloud asked in turn. A value that names no known store (or both
    variables set) raises ValueError: a typo must not silently mean "no dedup".
    """
    env = os.environ if environ is None else environ
    table = env.get("TRUSTWATCH_STATE_TABLE", "").strip()
    url = env.get("TRUSTWATCH_STATE_URL", "").strip()
    if table and url:
        raise ValueError("set TRUSTWATCH_STATE_TABLE or TRUSTWATCH_STATE_URL, not both")
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path or path == "/":
            raise ValueError(f"TRUSTWATCH_STATE_URL={url!r} names no file")
        return SqliteDedupStore(path)
    if not table and not url:
        # Every cloud's store is named by one of the two: asking them would only import
        # each cloud's store module (and the sweep state) into every cold start.
        return None
    for cloud in clouds.registered():
        store = cloud.dedup_store(env)
        if store is not None:
            return store
    if not url:
        return None  # (a TRUSTWATCH_STATE_TABLE is always some cloud's)
    forms = [cloud.dedup_store_url_forms() for cloud in clouds.registered()]
    raise ValueError(
        "TRUSTWATCH_STATE_URL must be "
        + ", ".join([*filter(None, forms), "sqlite:///path"])
        + f"; got {_redacted(url)!r}"
    )


def _redacted(value: str) -> str:
    # The value may be a connection string with an account key: never log one.
    return value if len(value) <= 12 else value[:12] + "…"
