"""What the cloud dedup stores share: claim tokens, the retry policy, the race limit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from trustwatch.retry import retry_call

T = TypeVar("T")

log = logging.getLogger("trustwatch.stores")

# Create, read, take over: a claim loses this loop only while others keep releasing and
# re-creating the same id, which real traffic does not do.
CLAIM_ROUNDS = 3


class ClaimContentionError(RuntimeError):
    """The claim changed under us CLAIM_ROUNDS times; the caller alerts without dedup."""


def claim_token() -> str:
    """Stored with each claim. An SDK that retries a write whose answer was lost sees
    "already exists"; finding our own token then means we won, not a duplicate."""
    return uuid.uuid4().hex


def now_or_clock(now: float | None) -> float:
    return time.time() if now is None else now


def call_with_retry(fn: Callable[[], T], is_transient: Callable[[BaseException], bool]) -> T:
    """The project's backoff for throttled or briefly unavailable storage APIs. The SDKs'
    own retries are switched off where we build the client, so this is the one policy."""

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        log.warning("dedup store: %s, retry %d in %.2fs", type(exc).__name__, attempt, delay)

    return retry_call(
        fn,
        attempts=5,
        base_delay=0.2,
        max_delay=5.0,
        retry_on=is_transient,
        on_retry=on_retry,
    )
