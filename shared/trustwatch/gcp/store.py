"""Dedup claims as objects in a GCS bucket: `gs://bucket/prefix/<finding id>`.

Creating uses `ifGenerationMatch=0` (only if absent); taking over an expired claim uses
`ifGenerationMatch=<the generation read>`, so of several racing instances exactly one
wins and the others get 412 Precondition Failed. The claim's expiry is in the object's
metadata (`expires`) and also in its Custom-Time, so a bucket lifecycle rule
`daysSinceCustomTime: 1` deletes stale claims (sweep states, `GcsSweepStore`, set no
Custom-Time: no such rule touches them). The bucket must exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from trustwatch.stores.common import (
    CLAIM_ROUNDS,
    STORE_BACKOFF_S,
    STORE_MAX_BACKOFF_S,
    STORE_RETRY_TIMEOUT_S,
    ClaimContentionError,
    claim_token,
    now_or_clock,
)
from trustwatch.sweepstate import SweepState, SweepStateConflict, decode_state, encode_state


def retry_policies() -> tuple[Any, Any]:
    """(reads and deletes, conditional writes): google-cloud-storage's own policies.

    `DEFAULT_RETRY` retries 408, 429 (also GCS's one write per second per object name),
    5xx and connection errors with exponential backoff; here bounded to the stores'
    budget. Writes use `ConditionalRetryPolicy`, which retries a call only when it
    carries `ifGenerationMatch` (https://cloud.google.com/python/docs/reference/storage/
    latest/retry_timeout): that precondition makes the write idempotent, and every
    claim write sets one. A create retried after a lost answer gets 412; the next
    round then finds our own claim token.
    """
    from google.cloud.storage.retry import (
        DEFAULT_RETRY,
        ConditionalRetryPolicy,
        is_generation_specified,
    )

    bounded = DEFAULT_RETRY.with_delay(
        initial=STORE_BACKOFF_S, maximum=STORE_MAX_BACKOFF_S
    ).with_timeout(STORE_RETRY_TIMEOUT_S)
    return bounded, ConditionalRetryPolicy(bounded, is_generation_specified, ["query_params"])


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
        self._retry: tuple[Any, Any] | None = None

    @property
    def bucket(self) -> Any:
        """The bucket handle (no request is made), creating the client on first use."""
        if self._bucket is None:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket

    @property
    def retry(self) -> tuple[Any, Any]:
        """(read/delete policy, conditional-write policy), built on first use."""
        if self._retry is None:
            self._retry = retry_policies()
        return self._retry

    def _name(self, finding_id: str) -> str:
        return f"{self.prefix}/{finding_id}" if self.prefix else finding_id

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """Claim `finding_id` until `now + window_s`: True if this call won it."""
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
            held = self.bucket.get_blob(name, retry=self.retry[0])
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
        blob.upload_from_string(
            b"", content_type="text/plain", if_generation_match=generation, retry=self.retry[1]
        )

    def release(self, finding_id: str) -> None:
        """Delete the claim object (a missing one is no error)."""
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):  # never claimed, or already released
            self.bucket.delete_blob(self._name(finding_id), retry=self.retry[0])

    def __repr__(self) -> str:
        return f"GcsDedupStore({self.url!r})"


def _float(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0  # unreadable: treat the claim as expired


# The TRUSTWATCH_STATE_URL forms this store takes (for the error naming every form).
URL_FORMS = "gs://bucket/prefix"


def store_from_env(environ: Mapping[str, str]) -> GcsDedupStore | None:
    """The GCS store TRUSTWATCH_STATE_URL names (`gs://bucket/prefix`), if it names one."""
    url = environ.get("TRUSTWATCH_STATE_URL", "").strip()
    return GcsDedupStore(url) if url.startswith("gs://") else None


# --- sweep state ---------------------------------------------------------------------------


class GcsSweepStore:
    """Sweep states as objects `gs://bucket/prefix/sweep/<cloud>/<unit>` (trustwatch.sweepstate).

    The version is the object's generation: a save writes with `ifGenerationMatch` (0 for
    a first save), a load reads the generation it listed (`ifGenerationMatch` again, and
    reads anew if it was replaced in between). One object holds any state (up to 5 TiB).
    """

    def __init__(self, url: str, *, client: Any = None) -> None:
        self._claims = GcsDedupStore(url, client=client)
        self.url = url

    def _name(self, cloud: str, unit: str) -> str:
        prefix = self._claims.prefix
        return f"{prefix}/sweep/{cloud}/{unit}" if prefix else f"sweep/{cloud}/{unit}"

    def load(self, cloud: str, unit: str) -> SweepState | None:
        """See `SweepStateStore.load`."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        bucket, (read_retry, write_retry) = self._claims.bucket, self._claims.retry
        name = self._name(cloud, unit)
        for _round in range(CLAIM_ROUNDS):
            blob = bucket.get_blob(name, retry=read_retry)
            if blob is None:
                return None
            generation = blob.generation  # (a download resets it from its answer's headers)
            try:
                data = blob.download_as_bytes(if_generation_match=generation, retry=write_retry)
            except (PreconditionFailed, NotFound):
                continue  # replaced while we read: read the new one
            return decode_state(data, str(generation))
        raise SweepStateConflict(f"sweep state {name} kept changing while read")

    def save(self, cloud: str, unit: str, state: SweepState, *, expected: str | None) -> str:
        """See `SweepStateStore.save`: one upload with `ifGenerationMatch`."""
        from google.api_core.exceptions import PreconditionFailed

        blob = self._claims.bucket.blob(self._name(cloud, unit))
        try:
            blob.upload_from_string(
                encode_state(state),
                content_type="application/gzip",
                if_generation_match=0 if expected is None else int(expected),
                retry=self._claims.retry[1],
            )
        except PreconditionFailed:
            raise SweepStateConflict(
                f"sweep state {blob.name} changed since it was loaded"
            ) from None
        return str(blob.generation)

    def __repr__(self) -> str:
        return f"GcsSweepStore({self.url!r})"


def sweep_store_from_env(environ: Mapping[str, str]) -> GcsSweepStore | None:
    """The sweep state store under the `gs://bucket/prefix` TRUSTWATCH_STATE_URL names."""
    url = environ.get("TRUSTWATCH_STATE_URL", "").strip()
    return GcsSweepStore(url) if url.startswith("gs://") else None
