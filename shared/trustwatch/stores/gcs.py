"""Dedup claims as objects in a GCS bucket: `gs://bucket/prefix/<finding id>`.

Creating uses `ifGenerationMatch=0` (only if absent); taking over an expired claim uses
`ifGenerationMatch=<the generation read>`, so of several racing instances exactly one
wins and the others get 412 Precondition Failed. The claim's expiry is in the object's
metadata (`expires`) and also in its Custom-Time, so a bucket lifecycle rule
`daysSinceCustomTime: 1` deletes stale claims. The bucket must exist.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from trustwatch.stores._common import (
    CLAIM_ROUNDS,
    ClaimContentionError,
    call_with_retry,
    claim_token,
    now_or_clock,
)


def _is_transient(exc: BaseException) -> bool:
    from google.api_core import exceptions as api
    from requests import exceptions as http

    retryable = (
        api.TooManyRequests,  # also GCS's limit of one write per second per object name
        api.InternalServerError,
        api.BadGateway,
        api.ServiceUnavailable,
        api.GatewayTimeout,
        http.ConnectionError,
        http.Timeout,
    )
    return isinstance(exc, retryable)


def parse_gs_url(url: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` → ("bucket", "some/prefix"); the prefix may be empty."""
    if not url.startswith("gs://"):
        raise ValueError(f"{url!r} is not a gs://bucket/prefix URL")
    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, prefix.strip("/")


class GcsDedupStore:
    """A DedupStore on a GCS bucket (or gcp-storage-emulator)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        self.url = url
        self.bucket_name, self.prefix = parse_gs_url(url)
        self._client = client
        self._bucket: Any = None

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket

    def _name(self, finding_id: str) -> str:
        return f"{self.prefix}/{finding_id}" if self.prefix else finding_id

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        now = now_or_clock(now)
        token = claim_token()
        name = self._name(finding_id)
        expires = now + window_s
        for _round in range(CLAIM_ROUNDS):
            try:
                self._write(name, expires, token, generation=0)
                return True
            except PreconditionFailed:
                pass
            held = self._call(lambda: self.bucket.get_blob(name, retry=None))
            if held is None:
                continue  # released meanwhile: create again
            metadata = held.metadata or {}
            if metadata.get("claim") == token:
                return True  # our own create, answered late and retried
            if _float(metadata.get("expires")) > now:
                return False
            try:
                self._write(name, expires, token, generation=held.generation)
                return True
            except (PreconditionFailed, NotFound):
                continue  # another instance got there first: see what it wrote
        raise ClaimContentionError(f"claim on {finding_id!r} kept changing")

    def _write(self, name: str, expires: float, token: str, *, generation: int) -> None:
        blob = self.bucket.blob(name)
        blob.metadata = {"expires": repr(expires), "claim": token}
        blob.custom_time = datetime.fromtimestamp(expires, UTC)
        self._call(
            lambda: blob.upload_from_string(
                b"", content_type="text/plain", if_generation_match=generation, retry=None
            )
        )

    def release(self, finding_id: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):  # never claimed, or already released
            self._call(lambda: self.bucket.delete_blob(self._name(finding_id), retry=None))

    def _call(self, fn: Any) -> Any:
        # The client's own retries are off (retry=None): one policy, the project's.
        return call_with_retry(fn, _is_transient)

    def __repr__(self) -> str:
        return f"GcsDedupStore({self.url!r})"


def _float(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0  # unreadable: treat the claim as expired
