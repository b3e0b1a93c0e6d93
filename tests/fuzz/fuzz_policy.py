"""Coverage-guided fuzz target for the IAM policy normalizer and comparator.

    python tests/fuzz/fuzz_policy.py [libFuzzer flags]      # e.g. -max_total_time=300 -timeout=5

With atheris installed (`pip install atheris`; not a dev dependency: it ships libFuzzer),
the bytes libFuzzer mutates become policy text, a pair of documents or a parsed document,
and every input must end in a result or a PolicyError; a valid policy must never be
broader than itself (fuzz/policy_checks.py). The run starts from the policies in the
corpus and the Databricks templates. Known, reported crashes and slow inputs
(fuzz/known.py) are skipped. `-timeout=N` also reports inputs slower than N seconds;
crash and timeout inputs are written to a temporary folder (or -artifact_prefix=DIR/).

Without atheris the same checks run under hypothesis (random bytes and text, then the
seeds): `python tests/fuzz/fuzz_policy.py --examples 20000` (`--hypothesis` forces it).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
sys.path[:0] = [str(TESTS)]

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

FUZZING = atheris is not None and __name__ == "__main__" and "--hypothesis" not in sys.argv
if FUZZING:
    with atheris.instrument_imports():  # coverage feedback from the code under test
        from fuzz.known import is_known_crash, is_known_slow
        from fuzz.policy_checks import check_document, check_pair
else:
    from fuzz.known import is_known_crash, is_known_slow
    from fuzz.policy_checks import check_document, check_pair


def one_input(data: bytes) -> None:
    """One fuzz case: the first byte picks the shape, the rest is the document(s)."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    text = body.decode("utf-8", "replace")
    if is_known_slow(text):
        return
    try:
        if mode == 0:
            check_document(text)
        elif mode == 1:
            actual, _, expected = text.partition("\x00")
            check_pair(actual, expected)
        else:
            try:
                doc: Any = json.loads(text)
            except (ValueError, RecursionError):
                return
            check_document(doc)
    except Exception as exc:
        if is_known_crash(exc):
            return
        raise


def seeds() -> list[bytes]:
    """Policies as logged in the corpus and the example events, and the templates."""
    from trustwatch.aws.templates import crossaccount_policy, expected_trust

    docs: list[str] = []
    from fuzz.corpus import corpus_files

    for path in [
        *corpus_files("aws"),
        *sorted((ROOT / "examples" / "events").glob("*.json")),
    ]:
        record = json.loads(path.read_text(), strict=False)
        params = record.get("detail", record).get("requestParameters") or {}
        docs += [v for k, v in params.items() if k.endswith("olicyDocument") and isinstance(v, str)]
    for template in ("databricks-cross-account", "ec2"):
        docs += [
            json.dumps(d)
            for d in expected_trust(
                {"template": template},
                partition="aws",
                account_id="111122223333",
                role_name="r",
                databricks_account_id="7f3c1a52",
            )
        ]
    docs.append(
        json.dumps(crossaccount_policy("customer", partition="aws", account_id="111122223333"))
    )
    out = []
    for doc in docs:
        out += [b"\x00" + doc.encode(), b"\x02" + doc.encode()]
        out.append(b"\x01" + doc.encode() + b"\x00" + docs[0].encode())
    return out


def main() -> None:
    if FUZZING:
        seed_dir = Path(tempfile.mkdtemp(prefix="fuzz-policy-seeds-"))
        for index, seed in enumerate(seeds()):
            (seed_dir / f"seed-{index:03d}").write_bytes(seed)
        flags = sys.argv[1:]
        if not any(f.startswith("-artifact_prefix=") for f in flags):
            # crash and timeout inputs go here, not into the working directory
            artifacts = Path(tempfile.mkdtemp(prefix="fuzz-policy-artifacts-"))
            flags.append(f"-artifact_prefix={artifacts}/")
            print(f"fuzz_policy: artifacts in {artifacts}", file=sys.stderr)
        atheris.Setup([sys.argv[0], *flags, str(seed_dir)], one_input)
        atheris.Fuzz()
        return
    import argparse

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    parser = argparse.ArgumentParser(description="hypothesis fallback (atheris not installed)")
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--hypothesis", action="store_true", help="even if atheris is installed")
    args = parser.parse_args()
    for seed in seeds():
        one_input(seed)

    @settings(max_examples=args.examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=4096), st.text(max_size=2048).map(str.encode)))
    def fuzz(data: bytes) -> None:
        one_input(data)

    fuzz()
    print(f"fuzz_policy: {args.examples} examples, no crash")


if __name__ == "__main__":
    main()
