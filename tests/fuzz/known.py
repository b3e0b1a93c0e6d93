"""Crashes the fuzzers found that are reported to their owners but not yet fixed.

The fuzz tests discard inputs that hit one of these (so they keep looking for new ones);
each has a reproducer test marked xfail(strict=True). When a fix lands, that test fails
as XPASS: delete its marker and its entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KNOWN_CRASHES: dict[str, Callable[[BaseException], bool]] = {
    # none open. Fixed, with reproducers kept as regression tests in tests/test_adversarial.py:
    # deep nesting (intake, aws.policy, Azure request bodies, Pub/Sub data), AssumeRole with
    # a non-ARN roleArn, a CloudEvent `data` string holding a lone surrogate.
}


def is_known_crash(exc: BaseException) -> bool:
    return any(matches(exc) for matches in KNOWN_CRASHES.values())


# Wrong answers (no crash); the invariant checks skip inputs listed here.
KNOWN_WRONG_ANSWERS: dict[str, Callable[[dict[str, Any]], bool]] = {
    # none open: Principal {} (grants to no one) is fixed; see the regression test in
    # tests/test_adversarial_policy.py
}


def is_known_wrong_answer(doc: dict[str, Any]) -> bool:
    return any(matches(doc) for matches in KNOWN_WRONG_ANSWERS.values())


# Inputs that are slow, not wrong: the atheris target skips them (libFuzzer -timeout would
# stop at the first).
KNOWN_SLOW_INPUTS: dict[str, Callable[[str], bool]] = {
    # none open: wildcard matching is linear-time now (was regex backtracking)
}


def is_known_slow(text: str) -> bool:
    return any(matches(text) for matches in KNOWN_SLOW_INPUTS.values())
