"""Read a baseline from Azure Blob Storage: an `https://<account>.blob.core.windows.net/...` URL (trustwatch.baseline_source asks each cloud by URL scheme)."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlparse

from trustwatch.baseline import BaselineError
from trustwatch.baseline_source import LOOPBACK, TIMEOUT_S, display_location

SCHEMES = ("https", "http")  # http: a loopback emulator (Azurite) only


def read(location: str, credential: Any = None) -> bytes:
    """The blob's bytes: with the URL's SAS, else `credential`, else the managed identity."""
    from azure.storage.blob import BlobClient

    parsed = urlparse(location)
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK:
        raise BaselineError(
            display_location(location), ["use https:// (plain http only for a local emulator)"]
        )
    if credential is None and "sig=" not in parsed.query:
        credential = _default_azure_credential()
    blob = BlobClient.from_blob_url(
        location, credential=credential, connection_timeout=5, read_timeout=TIMEOUT_S
    )
    return blob.download_blob().readall()


@functools.cache
def _default_azure_credential() -> Any:
    # One per process: it caches its managed-identity token between refreshes.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
