"""The robustness checks of the policy normalizer/comparator, shared by the hypothesis
tests (tests/test_adversarial_policy.py) and the atheris target (fuzz_policy.py)."""

from __future__ import annotations

import json
from typing import Any

from trustwatch.aws.policy import (
    PolicyError,
    compare_permissions,
    compare_trust,
    grants_admin,
    load_document,
    trust_principals,
)

from fuzz.known import is_known_wrong_answer


def check_document(doc: Any) -> None:
    """Any input: a result or a PolicyError; a valid policy is never broader than itself."""
    try:
        loaded = load_document(doc)
    except PolicyError as exc:
        assert str(exc), "a PolicyError needs a message"
        return
    grants = trust_principals(doc)
    json.dumps([g.as_dict() for g in grants])
    grants_admin(doc)
    if is_known_wrong_answer(loaded):
        return
    trust = compare_trust(doc, [doc])
    assert not trust.widened and not trust.expected_principals_removed, trust.as_dict()
    perms = compare_permissions(doc, doc)
    assert not perms.widened and not perms.removed, perms.as_dict()


def check_pair(actual: Any, expected: Any) -> None:
    """Two inputs: the comparisons give JSON-friendly diffs or a PolicyError."""
    for compare in (
        lambda: compare_trust(actual, [expected]),
        lambda: compare_permissions(actual, expected),
    ):
        try:
            diff = compare()
        except PolicyError:
            continue
        json.dumps(diff.as_dict())
