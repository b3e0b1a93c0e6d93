"""SQLite dedup store specifics: claims persist in the file, processes race safely.
The contract every store keeps (memory and SQLite included) is in test_stores.py."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from trustwatch.dedup import SqliteDedupStore


def test_sqlite_claims_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "dedup.sqlite"
    with SqliteDedupStore(path) as first:
        assert first.claim("f1", 3600)
    with SqliteDedupStore(path) as second:
        assert not second.claim("f1", 3600)
        assert "dedup.sqlite" in repr(second)


def _claim_in_subprocess(path: str) -> bool:
    with SqliteDedupStore(path) as store:
        return store.claim("shared-id", 3600)


def test_sqlite_exactly_one_of_many_concurrent_processes_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "dedup.sqlite")
    SqliteDedupStore(path).close()  # create the table once, like a deployed store
    with ProcessPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(_claim_in_subprocess, [path] * 12))
    assert results.count(True) == 1
