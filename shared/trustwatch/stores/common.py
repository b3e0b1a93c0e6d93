"""What the cloud dedup stores share: claim tokens, the retry budget, the race limit.

Retries belong to each SDK's own policy (botocore's standard mode, azure-core's
RetryPolicy, google-cloud-storage's DEFAULT_RETRY); these constants keep the three
within one budget, so a throttled store delays an alert by seconds, not minutes.
"""

from __future__ import annotations

import time
import uuid

# Create, read, take over: a claim loses this loop only while others keep releasing and
# re-creating the same id, which real traffic does not do.
CLAIM_ROUNDS = 3

# Per storage call: 5 tries in all, waits from 0.2 s doubling, none longer than 5 s, and
# at most STORE_RETRY_TIMEOUT_S spent retrying one call.
STORE_ATTEMPTS = 5
STORE_BACKOFF_S = 0.2
STORE_MAX_BACKOFF_S = 5.0
STORE_RETRY_TIMEOUT_S = 20.0


class ClaimContentionError(RuntimeError):
    """The claim changed under us CLAIM_ROUNDS times; the caller alerts without dedup."""


def claim_token() -> str:
    """A fresh random token stored with each claim.

    An SDK that retries a write whose answer was lost sees "already exists"; finding our
    own token then means we won, not a duplicate. This is what makes every claim write
    safe to retry.
    """
    return uuid.uuid4().hex


def now_or_clock(now: float | None) -> float:
    """`now` if given (tests), else the wall clock in epoch seconds."""
    return time.time() if now is None else now
