"""Shared test fixtures: paths to data, the example baseline, the published corpus.

Everything the tests read is in the repository: the published samples are in tests/data
(`fuzz/corpus.py` says how TRUSTWATCH_CORPUS adds an optional extra folder).
"""

from __future__ import annotations

import pytest
from fuzz.corpus import DATA, ROOT, all_corpus_files, corpus_files, extra_folder, extra_note

EXAMPLE_BASELINE = ROOT / "examples" / "baseline.yaml"
# The in-repo corpus (tests/data/<cloud>/); corpus_files() adds the optional extra folder.
CORPUS = DATA
# The handbook's copy of the example baseline, when TRUSTWATCH_CORPUS points into the
# handbook; else the project's own (the two are the same file, checked when both exist).
_EXTRA = extra_folder()
_HANDBOOK = _EXTRA.parent / "baseline.example.yaml" if _EXTRA is not None else None
HANDBOOK_BASELINE = _HANDBOOK if _HANDBOOK is not None and _HANDBOOK.is_file() else EXAMPLE_BASELINE

__all__ = ["CORPUS", "DATA", "HANDBOOK_BASELINE", "ROOT", "all_corpus_files", "corpus_files"]

pytest_plugins = ["cloudservers"]  # moto server, Azurite, GCS emulator fixtures


@pytest.fixture(scope="session")
def baseline():
    from trustwatch.baseline import load_baseline

    return load_baseline(EXAMPLE_BASELINE)


def pytest_report_header() -> str:
    return extra_note()
