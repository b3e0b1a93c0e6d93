"""Read a baseline from Cloud Storage: `gs://bucket/object` (trustwatch.baseline_source asks each cloud by URL scheme)."""

from __future__ import annotations

from typing import Any

from trustwatch.baseline_source import TIMEOUT_S, bucket_and_key

SCHEMES = ("gs",)


def read(location: str, credential: Any = None) -> bytes:
    """The object's bytes, read with the function's service account."""
    from google.cloud import storage

    bucket, name = bucket_and_key(location)
    data: bytes = storage.Client().bucket(bucket).blob(name).download_as_bytes(timeout=TIMEOUT_S)
    return data
