"""slack-sdk's own retry handlers (`slack_sdk.http_retry`), held to the sinks' budget.

The SDK's loop decides when to try again (handlers: https://docs.slack.dev/tools/
python-slack-sdk/reference/http_retry/builtin_handlers.html); these subclasses only
bound it the way every sink is bound
(`Delivery`): at most `attempts` tries in all, full-jitter waits capped at
`max_delay_s`, a server's Retry-After honoured but capped too, and the waits go through
the sink's `sleep` (tests pass a recorder). The retried failures are those of
`transport.transient`: 408/425/429/5xx answers and dropped or refused connections, but
not a certificate that does not verify. Imported on the first Slack send only.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    HttpRequest,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryIntervalCalculator,
    RetryState,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.response import HttpResponse

from trustwatch.alerts.config import Delivery
from trustwatch.alerts.transport import RETRY_STATUS, transient
from trustwatch.retry import backoff_delay, parse_retry_after

# Called before each wait: (attempt number, what failed, seconds to wait).
OnRetry = Callable[[int, str, float], None]


class _FullJitter(RetryIntervalCalculator):
    """Uniform in [0, min(max_delay, base · 2^n)] (the SDK's default adds up to 1 s)."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        d = self.delivery
        return backoff_delay(current_attempt, base_delay=d.base_delay_s, max_delay=d.max_delay_s)


class _Bounded(RetryHandler):
    """The wait of the SDK's handlers, through the sink's sleep and capped."""

    def __init__(
        self, delivery: Delivery, sleep: Callable[[float], None], on_retry: OnRetry
    ) -> None:
        # The SDK counts retries, in one state shared by all handlers of a client.
        super().__init__(delivery.attempts - 1, _FullJitter(delivery))
        self.sleep, self.on_retry, self.max_delay_s = sleep, on_retry, delivery.max_delay_s

    def wait_s(self, state: RetryState, response: HttpResponse | None) -> float:
        """Seconds to wait before the next try."""
        return self.interval_calculator.calculate_sleep_duration(state.current_attempt)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        """Wait (capped), then let the SDK send again."""
        delay = min(self.wait_s(state, response), self.max_delay_s)
        reason = f"HTTP {response.status_code}" if response is not None else type(error).__name__
        self.on_retry(state.current_attempt + 1, reason, delay)
        state.next_attempt_requested = True
        self.sleep(delay)
        state.increment_current_attempt()


class _RateLimited(_Bounded, RateLimitErrorRetryHandler):
    """429: at least the server's Retry-After (seconds or an HTTP date), capped."""

    def wait_s(self, state: RetryState, response: HttpResponse | None) -> float:
        backoff = super().wait_s(state, response)
        headers = {k.lower(): v for k, v in (response.headers if response else {}).items()}
        values = headers.get("retry-after") or []
        asked = parse_retry_after(str(values[0]) if values else None)
        return backoff if asked is None else max(backoff, asked)


class _ServerError(_Bounded, ServerErrorRetryHandler):
    """408, 425, 500, 502, 503, 504 (the SDK's own list is 500 and 503 only)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in RETRY_STATUS - {429}


class _ConnectionError(_Bounded, ConnectionErrorRetryHandler):
    """Refused, reset or timed-out connections, as `transport.transient` judges them.

    So never a failed certificate check: a wrong certificate stays wrong.
    """

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is None and error is not None and transient(error) is True


def retry_handlers(
    delivery: Delivery, *, sleep: Callable[[float], None], on_retry: OnRetry
) -> list[RetryHandler]:
    """The handlers for a slack-sdk client: `delivery.attempts` tries in all."""
    return [handler(delivery, sleep, on_retry) for handler in _HANDLERS]


_HANDLERS: tuple[type[_Bounded], ...] = (_RateLimited, _ServerError, _ConnectionError)
