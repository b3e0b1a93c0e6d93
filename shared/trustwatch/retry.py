"""Retries where no library offers them: exponential backoff with full jitter.

Cloud SDKs retry with their own policies (botocore's standard mode, azure-core's
RetryPolicy, google-cloud-storage's DEFAULT_RETRY, slack-sdk's retry handlers), each
configured where its client is built. What is left is here:

- `retry_call`, for the alert transports built on the standard library, which retries
  nothing itself: Teams and generic webhooks (http.client) and SMTP (smtplib);
- `backoff_delay` and `parse_retry_after`, which the Slack handlers share with it so that
  every sink waits the same way and honours Retry-After the same way.

The caller says which errors are worth another try through `retry_on`, which may also
hand back a delay the server asked for (Retry-After); that delay is honoured, capped.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")

# What `retry_on` returns: False/None = give up (re-raise), True = back off and retry,
# a float = retry after at least that many seconds (a server-given delay).
RetryDecision = float | bool | None


def backoff_delay(
    attempt: int, *, base_delay: float, max_delay: float, rng: Callable[[], float] = random.random
) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(max, base * 2**attempt)]."""
    return rng() * min(max_delay, base_delay * 2.0**attempt)


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    retry_on: Callable[[BaseException], RetryDecision],
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call `fn` until it returns, `retry_on` declines, or `attempts` calls have failed.

    The last exception is re-raised unchanged. `deadline` (a `clock()` value) stops
    retrying when the next wait would pass it, so a function's time budget is kept.
    `on_retry(attempt, exc, delay)` is called before each wait (for logging).
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            decision = retry_on(exc)
            if decision is None or decision is False or attempt + 1 >= attempts:
                raise
            delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, rng=rng)
            if decision is not True:
                # The server knows its own load better than our backoff does.
                delay = max(delay, min(float(decision), max_delay))
            if deadline is not None and clock() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(attempt + 1, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date).

    None if absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)
