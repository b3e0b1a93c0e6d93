"""Crashes the fuzzers found that are reported to their owners but not yet fixed.

The fuzz tests discard inputs that hit one of these (so they keep looking for new ones);
each has a reproducer test marked xfail(strict=True). When a fix lands, that test fails
as XPASS: delete its marker and its entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def raised_in(exc: BaseException, kind: type[BaseException], module: str) -> bool:
    """Is `exc` a `kind` raised by code in `module` (a path suffix)?"""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return isinstance(exc, kind) and last is not None and last.endswith(module)


KNOWN_CRASHES: dict[str, Callable[[BaseException], bool]] = {
    # json.loads of deeply nested text raises RecursionError, which intake.loads and
    # aws.policy._parse_text do not catch (they catch JSONDecodeError / ValueError).
    # Reproducer: tests/test_adversarial.py::test_known_crash_replay_of_deeply_nested_json_file
    "deep-nesting-recursion": lambda exc: isinstance(exc, RecursionError),
    # An AssumeRole record whose requestParameters.roleArn is not an ARN: aws.events.parse
    # indexes identity_arn.split(":")[4].
    # Reproducer: tests/test_adversarial.py::test_known_crash_assumerole_with_a_role_arn_that_is_not_an_arn
    "assumerole-role-arn-not-an-arn": lambda exc: raised_in(
        exc, IndexError, "trustwatch/aws/events.py"
    ),
}


def is_known_crash(exc: BaseException) -> bool:
    return any(matches(exc) for matches in KNOWN_CRASHES.values())


def has_empty_principal(doc: dict[str, Any]) -> bool:
    """A statement whose Principal/NotPrincipal names no one ({} or {"AWS": []})."""
    stmts = doc.get("Statement")
    for stmt in stmts if isinstance(stmts, list) else [stmts]:
        for key in ("Principal", "NotPrincipal"):
            value = stmt.get(key) if isinstance(stmt, dict) else None
            if isinstance(value, dict) and not any(value.values()):
                return True
    return False


# Wrong answers (no crash) on inputs IAM itself rejects; the invariant checks skip them.
# Reproducer: tests/test_adversarial_policy.py::test_known_wrong_answer_empty_principal_is_not_its_own_subset
KNOWN_WRONG_ANSWERS: dict[str, Callable[[dict[str, Any]], bool]] = {
    # compare_permissions(d, d) reports the statement as added and removed: _items() turns
    # an empty principal set into "no principal", which the statement itself does not cover
    "empty-principal-not-its-own-subset": has_empty_principal,
}


def is_known_wrong_answer(doc: dict[str, Any]) -> bool:
    return any(matches(doc) for matches in KNOWN_WRONG_ANSWERS.values())


def many_wildcards(text: str) -> bool:
    """More '*' than the comparator's glob matching survives (it backtracks exponentially)."""
    return text.count("*") > 8


# Inputs that are slow, not wrong: the atheris target skips them (libFuzzer -timeout would
# stop at the first). Reproducer:
# tests/test_adversarial_policy.py::test_known_crash_many_wildcards_in_a_condition_do_not_stall_the_comparator
KNOWN_SLOW_INPUTS: dict[str, Callable[[str], bool]] = {
    # aws.policy._glob_regex turns each '*' into '.*': fullmatch backtracks exponentially
    "glob-redos": many_wildcards,
}


def is_known_slow(text: str) -> bool:
    return any(matches(text) for matches in KNOWN_SLOW_INPUTS.values())
