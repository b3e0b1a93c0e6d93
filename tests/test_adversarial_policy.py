"""Adversarial tests of the IAM policy normalizer and comparator (trustwatch.aws.policy).

tests/test_aws_policy.py proves the semantics on a small, tidy vocabulary. Here the
vocabulary is wide and hostile (every condition operator, IfExists and set prefixes,
wildcards, NotPrincipal/NotAction/NotResource, odd case and unicode, bare ids, other
partitions) and documents are also mutated into garbage. The invariants:

- any input ends in a result or a PolicyError, nothing else;
- a policy is never broader than itself (and nothing is "removed" from it);
- adding a Deny, adding a condition, or removing an Allow never widens;
- widening is always detected: a new principal, a new action, a dropped ExternalId,
  a dropped Deny.

The atheris target tests/fuzz/fuzz_policy.py drives the same checks from raw bytes.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
from typing import Any
from urllib.parse import quote

import pytest
from conftest import ROOT, corpus_files
from fuzz.known import is_known_crash
from fuzz.mutations import depth, mutation
from fuzz.policy_checks import check_document, check_pair
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from trustwatch.aws.policy import compare_permissions, compare_trust, load_document
from worksteps import count_steps

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
DEFAULT = settings(max_examples=120, derandomize=True, database=None, **_COMMON)
SLOW = settings(max_examples=3000, **_COMMON)

ACCOUNTS = ["111122223333", "414351767826", "444455556666"]
INTRUDER = "999988887777"  # in no generated policy: a principal nothing may cover
AWS_PRINCIPALS = [
    *ACCOUNTS,
    *(f"arn:aws:iam::{a}:root" for a in ACCOUNTS),
    "arn:aws:iam::111122223333:role/databricks-cross-account",
    "arn:aws:iam::111122223333:role/path/to/uc-role",
    "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL",
    "arn:aws:sts::111122223333:assumed-role/dev/alice",
    "arn:aws:iam::444455556666:user/bob",
    "arn:aws-us-gov:iam::044793339203:root",
    " arn:aws:iam::111122223333:root ",
    "arn:aws:iam::111122223333:role/databr\u0456cks",
]
WILD_PRINCIPALS = [
    "*",
    "arn:aws:iam::*:root",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws:iam::4?4351767826:root",
]
SERVICES = ["ec2.amazonaws.com", "EC2.amazonaws.com", "lambda.amazonaws.com"]
TRUST_ACTIONS = [
    "sts:AssumeRole",
    "STS:assumerole",
    "sts:TagSession",
    "sts:SetSourceIdentity",
    "sts:AssumeRoleWithWebIdentity",
    "sts:Assume*",
    "sts:*",
    "*",
]
PERM_ACTIONS = [
    "s3:GetObject",
    "s3:Get*",
    "s3:*",
    "ec2:Describe*",
    "ec2:RunInstances",
    "iam:PassRole",
    "iam:*",
    "kms:Decrypt",
    "*",
    "S3:getobject",
    "ec2:?unInstances",
]
RESOURCES = [
    "*",
    "arn:aws:s3:::bucket",
    "arn:aws:s3:::bucket/*",
    "arn:aws:s3:::bucket/a?c",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws-cn:s3:::b",
    "arn:aws:kms:*:*:key/*",
]
OPERATORS = [
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "StringEqualsIgnoreCase",
    "ArnLike",
    "ArnEquals",
    "ArnNotLike",
    "Bool",
    "Null",
    "IpAddress",
    "NotIpAddress",
    "NumericLessThan",
    "DateGreaterThan",
    "stringequals",
]
KEYS = [
    "sts:ExternalId",
    "STS:externalid",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:SourceIp",
    "aws:PrincipalOrgID",
    "aws:MultiFactorAuthPresent",
    "aws:RequestTag/team",
]
VALUES = [
    "alpha",
    "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77",
    "*",
    "a*",
    "?",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "not-a-cidr",
    "::1/128",
    "arn:aws:iam::111122223333:role/r-*",
    "arn:aws:iam::*:role/x",
    "o-abc",
    True,
    False,
    5,
    "2026-01-01T00:00:00Z",
    "",
    "\u202eevil",
    "arn:aws:iam::" + "*" * 60 + "#:role/x",  # wildcard runs: matching must stay linear
    "*a" * 30 + "*b",
]


def one_or_list(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=1, max_size=3))


def conditions(keys: list[str] = KEYS) -> st.SearchStrategy[dict[str, Any]]:
    operator = st.builds(
        lambda prefix, op, suffix: prefix + op + suffix,
        st.sampled_from(["", "", "", "ForAnyValue:", "ForAllValues:"]),
        st.sampled_from(OPERATORS),
        st.sampled_from(["", "", "IfExists"]),
    )
    return st.dictionaries(
        operator,
        st.dictionaries(
            st.sampled_from(keys), one_or_list(st.sampled_from(VALUES)), min_size=1, max_size=2
        ),
        max_size=3,
    )


@st.composite
def principals(draw: st.DrawFn, wild: bool) -> Any:
    aws = AWS_PRINCIPALS + (WILD_PRINCIPALS if wild else [])
    if wild and draw(st.integers(0, 9)) == 0:
        return "*"
    out: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        out["AWS"] = draw(one_or_list(st.sampled_from(aws)))
    if draw(st.integers(0, 3)) == 0:
        out["Service"] = draw(one_or_list(st.sampled_from(SERVICES)))
    if draw(st.integers(0, 6)) == 0:
        out["Federated"] = "cognito-identity.amazonaws.com"
    return out or {"AWS": draw(st.sampled_from(aws))}


@st.composite
def statements(draw: st.DrawFn, *, trust: bool, wild: bool = True, effect: str | None = None):
    stmt: dict[str, Any] = {}
    if draw(st.booleans()):
        stmt["Sid"] = draw(st.sampled_from(["", "A1", "\u00e9", "x" * 100]))
    stmt["Effect"] = effect or draw(st.sampled_from(["Allow", "Allow", "Deny", "allow"]))
    if trust or draw(st.integers(0, 4)) == 0:
        key = "NotPrincipal" if wild and draw(st.integers(0, 9)) == 0 else "Principal"
        stmt[key] = draw(principals(wild))
    actions = st.sampled_from(TRUST_ACTIONS if trust else PERM_ACTIONS)
    if not wild:
        actions = actions.filter(lambda a: "*" not in a and "?" not in a)
    stmt["NotAction" if wild and draw(st.integers(0, 9)) == 0 else "Action"] = draw(
        one_or_list(actions)
    )
    if not trust and draw(st.integers(0, 5)):
        key = "NotResource" if draw(st.integers(0, 9)) == 0 else "Resource"
        stmt[key] = draw(one_or_list(st.sampled_from(RESOURCES)))
    if draw(st.booleans()):
        stmt["Condition"] = draw(conditions())
    return stmt


def documents(*, trust: bool, wild: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda stmts, single, version: {
            **({"Version": "2012-10-17"} if version else {}),
            "Statement": stmts[0] if single and len(stmts) == 1 else stmts,
        },
        st.lists(statements(trust=trust, wild=wild), min_size=1, max_size=4),
        st.booleans(),
        st.booleans(),
    )


def as_text(doc: dict[str, Any], how: str) -> Any:
    if how == "json":
        return json.dumps(doc)
    if how == "pretty":
        return json.dumps(doc, indent=2)
    if how == "url":
        return quote(json.dumps(doc))
    return doc


ENCODINGS = st.sampled_from(["dict", "json", "pretty", "url"])
TRUST_DOCS = documents(trust=True)
PERM_DOCS = documents(trust=False)


def stmt_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    s = doc["Statement"]
    return [s] if isinstance(s, dict) else list(s)


def with_statements(doc: dict[str, Any], stmts: list[dict[str, Any]]) -> dict[str, Any]:
    return {**doc, "Statement": stmts}


# ------------------------------------------------------------------ robustness


def _corpus_policies() -> list[Any]:
    """Policy documents found in the AWS corpus and the example events (as logged)."""
    found = []
    for path in [
        *corpus_files("aws"),
        *(ROOT / "examples" / "events").glob("*.json"),
    ]:
        record = json.loads(path.read_text(), strict=False)
        record = record.get("detail", record)
        params = record.get("requestParameters") or {}
        for key in ("policyDocument", "assumeRolePolicyDocument"):
            if isinstance(params.get(key), str):
                found.append(params[key])
    return found


CORPUS_POLICIES = _corpus_policies()


@st.composite
def mangled_documents(draw: st.DrawFn) -> Any:
    """A generated or corpus policy, then zero to three mutations (fuzz.mutations)."""
    source = draw(st.sampled_from(["trust", "perms", "corpus"]))
    if source == "corpus" and CORPUS_POLICIES:
        doc: Any = load_document(draw(st.sampled_from(CORPUS_POLICIES)))
    else:
        doc = draw(TRUST_DOCS if source == "trust" else PERM_DOCS)
    for _ in range(draw(st.integers(0, 3))):
        if depth(doc) > 100:
            break
        doc = draw(mutation(doc))
    if depth(doc) > 500:
        # a parsed document deeper than json.loads allows cannot come from an event or a
        # baseline; as text it can
        return "[" * depth(doc)
    return as_text(doc, draw(ENCODINGS)) if isinstance(doc, dict) else doc


def robust(check: Any, *docs: Any) -> None:
    try:
        check(*docs)
    except Exception as exc:
        if is_known_crash(exc):
            reject()
        raise


@DEFAULT
@given(mangled_documents())
def test_mangled_documents_end_in_a_result_or_policy_error(doc):
    robust(check_document, doc)


@DEFAULT
@given(mangled_documents(), mangled_documents())
def test_comparing_mangled_documents_ends_in_a_result_or_policy_error(actual, expected):
    robust(check_pair, actual, expected)


@pytest.mark.slow
@SLOW
@given(mangled_documents(), mangled_documents())
def test_mangled_documents_at_scale(actual, expected):
    robust(check_document, actual)
    robust(check_pair, actual, expected)


# ------------------------------------------------------------------ invariants


def check_self(trust_doc: dict[str, Any], perm_doc: dict[str, Any], how: str) -> None:
    diff = compare_trust(as_text(trust_doc, how), [trust_doc])
    assert not diff.widened and not diff.expected_principals_removed, diff.as_dict()
    perms = compare_permissions(as_text(perm_doc, how), perm_doc)
    assert not perms.widened and not perms.removed, perms.as_dict()


@DEFAULT
@given(TRUST_DOCS, PERM_DOCS, ENCODINGS)
def test_a_policy_is_never_broader_than_itself(trust_doc, perm_doc, how):
    check_self(trust_doc, perm_doc, how)


@pytest.mark.slow
@SLOW
@given(TRUST_DOCS, PERM_DOCS, ENCODINGS)
def test_a_policy_is_never_broader_than_itself_at_scale(trust_doc, perm_doc, how):
    check_self(trust_doc, perm_doc, how)


@st.composite
def narrowed(draw: st.DrawFn, doc: dict[str, Any], trust: bool) -> dict[str, Any]:
    """`doc` made stricter: a Deny added, a condition added to an Allow, or an Allow removed."""
    stmts = copy.deepcopy(stmt_list(doc))
    allows = [i for i, s in enumerate(stmts) if str(s.get("Effect")).lower() == "allow"]
    how = draw(st.sampled_from(["deny", "condition", "remove"] if allows else ["deny"]))
    if how == "deny":
        stmts.insert(draw(st.integers(0, len(stmts))), draw(statements(trust=trust, effect="Deny")))
    elif how == "condition":
        target = stmts[draw(st.sampled_from(allows))]
        # a key no generated policy uses: ANDing a new test can only narrow
        target.setdefault("Condition", {}).setdefault("StringEquals", {})[
            "aws:RequestTag/fuzz-only"
        ] = "x"
    else:
        del stmts[draw(st.sampled_from(allows))]
    return with_statements(doc, stmts or [{"Effect": "Deny", "Action": "*", "Principal": "*"}])


@DEFAULT
@given(st.data(), TRUST_DOCS, PERM_DOCS)
def test_narrowing_never_widens(data, trust_doc, perm_doc):
    stricter = data.draw(narrowed(trust_doc, trust=True))
    assert not compare_trust(stricter, [trust_doc]).widened, (stricter, trust_doc)
    stricter = data.draw(narrowed(perm_doc, trust=False))
    assert not compare_permissions(stricter, perm_doc).widened, (stricter, perm_doc)


def _may_cover(stmt: dict[str, Any], principal: str, action: str = "*") -> bool:
    """Could this statement grant or deny (principal, action)? A syntactic over-estimate;
    action "*" asks about the principal alone."""
    if "NotPrincipal" in stmt or "NotAction" in stmt:
        return True
    names = stmt.get("Principal", "*")
    names = (
        [names]
        if isinstance(names, str)
        else [n for v in names.values() for n in ([v] if isinstance(v, str) else v)]
    )
    who = any(n == "*" or fnmatch.fnmatchcase(principal, n.strip()) or INTRUDER in n for n in names)
    actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
    what = action == "*" or any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)
    return who and what


@DEFAULT
@given(st.data(), TRUST_DOCS, st.booleans())
def test_a_new_principal_is_always_detected(data, trust_doc, with_external_id):
    intruder = data.draw(st.sampled_from([INTRUDER, f"arn:aws:iam::{INTRUDER}:role/intruder"]))
    full = intruder if intruder.startswith("arn:") else f"arn:aws:iam::{INTRUDER}:root"
    allows = [s for s in stmt_list(trust_doc) if str(s.get("Effect")).lower() == "allow"]
    assume(not any(_may_cover(s, full, "sts:assumerole") for s in allows))
    added: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": intruder},
        "Action": "sts:AssumeRole",
    }
    if with_external_id:
        added["Condition"] = {"StringEquals": {"sts:ExternalId": "alpha"}}
    wider = with_statements(trust_doc, [*stmt_list(trust_doc), added])
    diff = compare_trust(as_text(wider, data.draw(ENCODINGS)), [trust_doc])
    assert diff.widened, diff.as_dict()
    if not any(_may_cover(s, full) for s in allows):
        assert diff.principals_added, diff.as_dict()  # else: reported as actions_added


@DEFAULT
@given(st.data(), PERM_DOCS)
def test_a_new_action_is_always_detected(data, perm_doc):
    action = "widen:Escalate"
    allows = [s for s in stmt_list(perm_doc) if str(s.get("Effect")).lower() == "allow"]
    assume(not any(_may_cover(s, "arn:aws:iam::111122223333:root", action) for s in allows))
    added = {"Effect": "Allow", "Action": action, "Resource": data.draw(st.sampled_from(RESOURCES))}
    wider = with_statements(perm_doc, [*stmt_list(perm_doc), added])
    diff = compare_permissions(as_text(wider, data.draw(ENCODINGS)), perm_doc)
    assert diff.widened, diff.as_dict()


@DEFAULT
@given(st.data(), documents(trust=True, wild=False))
def test_dropping_an_external_id_is_always_detected(data, trust_doc):
    # the one statement naming this role: nothing else covers it
    special = f"arn:aws:iam::{INTRUDER}:role/databricks-partner"
    extra = data.draw(conditions(["aws:SourceIp", "aws:PrincipalOrgID"]))
    guarded = {
        "Effect": "Allow",
        "Principal": {"AWS": special},
        "Action": "sts:AssumeRole",
        "Condition": {**extra, "StringEquals": {"sts:ExternalId": "7f3c1a52"}},
    }
    expected = with_statements(trust_doc, [*stmt_list(trust_doc), guarded])
    dropped = copy.deepcopy(guarded)
    del dropped["Condition"]["StringEquals"]
    actual = with_statements(trust_doc, [*stmt_list(trust_doc), dropped])
    diff = compare_trust(actual, [expected])
    assert diff.external_id_missing or diff.condition_weakened, diff.as_dict()


@DEFAULT
@given(TRUST_DOCS, PERM_DOCS)
def test_dropping_a_deny_is_always_detected(trust_doc, perm_doc):
    deny_trust = {
        "Effect": "Deny",
        "Principal": {"AWS": f"arn:aws:iam::{INTRUDER}:root"},
        "Action": "sts:AssumeRole",
    }
    others = [s for s in stmt_list(trust_doc) if str(s.get("Effect")).lower() == "deny"]
    if not any(_may_cover(s, f"arn:aws:iam::{INTRUDER}:root", "sts:assumerole") for s in others):
        expected = with_statements(trust_doc, [*stmt_list(trust_doc), deny_trust])
        assert compare_trust(trust_doc, [expected]).condition_weakened
    deny_perm = {"Effect": "Deny", "Action": "widen:*", "Resource": "*"}
    others = [s for s in stmt_list(perm_doc) if str(s.get("Effect")).lower() == "deny"]
    if not any(_may_cover(s, "arn:aws:iam::111122223333:root", "widen:*") for s in others):
        expected = with_statements(perm_doc, [*stmt_list(perm_doc), deny_perm])
        assert compare_permissions(perm_doc, expected).widened


def test_the_fuzz_target_runs_on_its_seeds():
    from fuzz.fuzz_policy import one_input, seeds

    cases = seeds()
    assert len(cases) > 10
    for case in cases:
        one_input(case)


# ------------------------------------------------------------------ regressions


def _lines_to_compare_wildcards(stars: int) -> int:
    exp = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "414351767826"}, "Action": "sts:AssumeRole"}
        ]
    }
    pattern = "arn:aws:iam::" + "*" * stars + "#:role/x"
    extra = {
        "Effect": "Allow",
        "Principal": {"AWS": "111122223333"},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnLike": {"aws:PrincipalArn": pattern}},
    }
    act = {"Statement": [exp["Statement"][0], extra]}
    # A backtracking matcher runs out of the budget at once (it would not finish).
    return count_steps(lambda: compare_trust(act, [exp]), budget=200_000, event="line")


def test_regression_many_wildcards_in_a_condition_do_not_stall_the_comparator():
    # Counted in executed lines, not seconds: each doubling of the wildcards adds at most
    # about double the work (linear growth; quadratic would quadruple it), and a
    # backtracking matcher exhausts the budget at once. (One in C, a regex, would not be
    # counted: it hangs until pytest's timeout, a failure all the same.)
    steps = [_lines_to_compare_wildcards(stars) for stars in (100, 200, 400, 800)]
    added = [later - earlier for earlier, later in itertools.pairwise(steps)]
    assert all(a > 0 for a in added)
    assert all(later <= 2.5 * earlier for earlier, later in itertools.pairwise(added))


def test_regression_empty_principal_is_not_its_own_subset():
    doc = {
        "Statement": [
            {"Effect": "Allow", "Principal": {}, "Action": "s3:GetObject", "Resource": "*"}
        ]
    }
    assert not compare_permissions(doc, doc).widened


# ---------------------------------------------------------------- narrowing by conditions

NARROW_PRINCIPALS = [
    f"arn:aws:iam::{a}:{kind}/{name}"
    for a in (*ACCOUNTS, INTRUDER)
    for kind in ("role", "user")
    for name in ("x", "databricks-uc")
]
ARN_PATTERNS = [
    "arn:aws:iam::*:role/x",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws:iam::414351767826:*",
    "arn:aws:iam::41435176*:*",
    "arn:aws:iam::*:user/databricks-uc",
    "arn:aws:iam::999988887777:role/x",
]


def _satisfies(principal: str, account_values, arn_values) -> bool:
    account = principal.split(":")[4]
    if account_values is not None and account not in account_values:
        return False
    return arn_values is None or any(fnmatch.fnmatchcase(principal, v) for v in arn_values)


@settings(max_examples=600, derandomize=True, database=None, **_COMMON)  # small and fast
@given(
    st.sampled_from(["*", *(f"arn:aws:iam::{a}:root" for a in ACCOUNTS)]),
    st.none() | st.sets(st.sampled_from([*ACCOUNTS, INTRUDER]), min_size=1, max_size=2),
    st.none() | st.sets(st.sampled_from(ARN_PATTERNS), min_size=1, max_size=2),
    st.none()
    | st.tuples(
        st.booleans(), st.sets(st.sampled_from(ARN_PATTERNS + ACCOUNTS), min_size=1, max_size=2)
    ),
    st.sampled_from(NARROW_PRINCIPALS),
)
def test_condition_narrowing_never_loses_a_principal_iam_admits(
    principal, accounts, arns, deny, caller
):
    """Soundness of ANDed narrowing conditions and Deny-unless statements (IAM: all of a
    statement's conditions must hold; an explicit Deny wins,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
    whoever a reference evaluator admits, some normalized grant covers."""
    condition: dict[str, Any] = {}
    if accounts is not None:
        condition["StringEquals"] = {"aws:PrincipalAccount": sorted(accounts)}
    if arns is not None:
        condition["ArnLike"] = {"aws:PrincipalArn": sorted(arns)}
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
        | ({"Condition": condition} if condition else {})
    ]
    denied = False
    if deny is not None:
        by_account, values = deny
        values = {v for v in values if v.isdigit() == by_account}
        assume(values)
        key, op = (
            ("aws:PrincipalAccount", "StringNotEquals")
            if by_account
            else ("aws:PrincipalArn", "ArnNotLike")
        )
        statements.append(
            {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
             "Condition": {op: {key: sorted(values)}}}
        )  # fmt: skip
        account = caller.split(":")[4]
        admitted = (
            account in values if by_account else any(fnmatch.fnmatchcase(caller, v) for v in values)
        )
        denied = not admitted
    in_principal = principal == "*" or caller.split(":")[4] == principal.split(":")[4]
    allowed = in_principal and _satisfies(caller, accounts, arns) and not denied
    from trustwatch.aws.policy import principal_covers, trust_principals

    grants = trust_principals({"Version": "2012-10-17", "Statement": statements})
    covered = any(principal_covers(g.principal, caller) for g in grants)
    if allowed:
        assert covered, (statements, caller, [g.principal for g in grants])
