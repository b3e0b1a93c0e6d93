"""The project's retry helper: backoff, jitter, server-given delays, giving up."""

from __future__ import annotations

import pytest
from trustwatch.retry import backoff_delay, parse_retry_after, retry_call


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_then_succeeds_with_exponential_full_jitter() -> None:
    sleeps: list[float] = []
    fn = Flaky(OSError("a"), OSError("b"), OSError("c"))
    result = retry_call(
        fn,
        attempts=4,
        base_delay=1.0,
        max_delay=100.0,
        retry_on=lambda e: True,
        sleep=sleeps.append,
        rng=lambda: 0.5,
    )
    assert result == "ok" and fn.calls == 4
    assert sleeps == [0.5, 1.0, 2.0]  # rng * base * 2**attempt


def test_backoff_is_capped_and_jitter_spans_zero_to_cap() -> None:
    assert backoff_delay(10, base_delay=1.0, max_delay=5.0, rng=lambda: 1.0) == 5.0
    assert backoff_delay(10, base_delay=1.0, max_delay=5.0, rng=lambda: 0.0) == 0.0


def test_gives_up_after_attempts_and_reraises_the_last_error() -> None:
    fn = Flaky(OSError("1"), OSError("2"), OSError("3"))
    with pytest.raises(OSError, match="2"):
        retry_call(fn, attempts=2, retry_on=lambda e: True, sleep=lambda s: None)
    assert fn.calls == 2


@pytest.mark.parametrize("decision", [None, False])
def test_non_retryable_error_is_raised_at_once(decision: object) -> None:
    fn = Flaky(ValueError("permanent"))
    with pytest.raises(ValueError):
        retry_call(fn, attempts=5, retry_on=lambda e: decision, sleep=lambda s: None)
    assert fn.calls == 1


def test_server_delay_is_honoured_but_capped() -> None:
    sleeps: list[float] = []
    fn = Flaky(OSError(), OSError())
    retry_call(
        fn,
        attempts=3,
        base_delay=0.01,
        max_delay=2.0,
        retry_on=lambda e: 1.5 if fn.calls == 1 else 3600.0,
        sleep=sleeps.append,
        rng=lambda: 0.0,
    )
    assert sleeps == [1.5, 2.0]


def test_deadline_stops_retrying_before_overrunning_the_budget() -> None:
    fn = Flaky(OSError("late"), OSError())
    with pytest.raises(OSError, match="late"):
        retry_call(
            fn,
            attempts=5,
            retry_on=lambda e: 10.0,
            max_delay=30.0,
            sleep=lambda s: None,
            clock=lambda: 100.0,
            deadline=105.0,
        )
    assert fn.calls == 1


def test_on_retry_reports_each_wait() -> None:
    seen: list[tuple[int, str, float]] = []
    retry_call(
        Flaky(OSError("x")),
        retry_on=lambda e: True,
        sleep=lambda s: None,
        rng=lambda: 0.0,
        on_retry=lambda n, e, d: seen.append((n, str(e), d)),
    )
    assert seen == [(1, "x", 0.0)]


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        retry_call(lambda: 1, attempts=0, retry_on=lambda e: True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1", 1.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = 1445412450.0  # 2015-10-21T07:27:30Z
    assert parse_retry_after(header, now=now) == expected
