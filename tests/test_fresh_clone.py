"""A fresh clone, in an empty folder with nothing beside it, collects and passes its tests.

The tests once read the team handbook's corpus from the folder beside the checkout; a
clone from the project's home has no such folder. This clones the current commit into an
empty temporary folder and runs pytest there with TRUSTWATCH_CORPUS unset: collection of
every test, then the tests that read the published samples.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

CORPUS_READERS = [
    "tests/test_aws_events.py",
    "tests/test_azure_events.py",
    "tests/test_gcp_events.py",
    "tests/test_baseline.py",
    "tests/test_cli.py",
    "tests/test_type_confusion.py",
    "tests/test_adversarial.py",
    "tests/test_adversarial_policy.py",
]


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=300
    )
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fresh_clone_passes_without_the_handbook_beside_it(tmp_path: Path) -> None:
    try:
        commit = _git("rev-parse", "HEAD", cwd=ROOT)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test clones the checkout, which needs git and a git checkout: {exc}")
    empty = tmp_path / "empty"
    empty.mkdir()
    clone = empty / "trustwatch"
    _git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone), cwd=tmp_path)
    _git("checkout", "--quiet", commit, cwd=clone)
    assert sorted(p.name for p in empty.iterdir()) == ["trustwatch"]  # no shared/ beside
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTWATCH_")}
    env["PYTHONPATH"] = str(clone / "shared")
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]

    collected = subprocess.run(
        [*pytest_cmd, "-q", "--collect-only"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1], collected.stdout[-3000:]

    ran = subprocess.run(
        [*pytest_cmd, "-x", *CORPUS_READERS], cwd=clone, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert f"corpus: {clone / 'tests' / 'data'} (set TRUSTWATCH_CORPUS" in ran.stdout
    summary = ran.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
