"""Shared test fixtures: paths to data, the example baseline, the published corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLE_BASELINE = ROOT / "examples" / "baseline.yaml"
# The team's corpus lives in the handbook folder beside the checkout (CI gets a copy too).
CORPUS = Path(os.environ.get("TRUSTWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
HANDBOOK_BASELINE = CORPUS.parent / "baseline.example.yaml"

pytest_plugins = ["cloudservers"]  # moto server, Azurite, GCS emulator fixtures


@pytest.fixture(scope="session")
def baseline():
    from trustwatch.baseline import load_baseline

    return load_baseline(EXAMPLE_BASELINE)


def corpus_files(cloud: str) -> list[Path]:
    folder = CORPUS / cloud
    if not folder.is_dir():
        raise RuntimeError(f"corpus folder {folder} is missing (set TRUSTWATCH_CORPUS)")
    return sorted(folder.glob("*.json"))
