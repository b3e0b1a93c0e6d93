"""Counting the work a call does, instead of timing it: a machine's speed varies, the
number of Python function calls or executed lines for one input does not."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Literal


class TooMuchWork(AssertionError):
    """The call went past its budget of steps (it would have run for a long time)."""


def count_steps(
    fn: Callable[[], Any], *, budget: int, event: Literal["call", "line"] = "call"
) -> int:
    """How many Python function calls (`event="call"`) or executed lines (`"line"`) `fn()`
    takes. Stops it with TooMuchWork once `budget` is passed, so a runaway call fails the
    test at once instead of hanging it. Work in C (a regex engine) is not counted."""
    count = 0

    def on_line(frame: FrameType, kind: str, arg: object) -> Any:
        nonlocal count
        if kind == "line":
            count += 1
            if count > budget:
                raise TooMuchWork(f"more than {budget} {event} steps")
        return on_line

    def on_call(frame: FrameType, kind: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            return on_line
        count += 1
        if count > budget:
            raise TooMuchWork(f"more than {budget} {event} steps")
        return None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count
