"""Dedup stores: one alert per finding id per window, atomic across processes."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from trustwatch.dedup import DedupStore, MemoryDedupStore, SqliteDedupStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DedupStore:
    if request.param == "memory":
        return MemoryDedupStore()
    return SqliteDedupStore(tmp_path / "state" / "dedup.sqlite")


def test_stores_implement_the_protocol(store: DedupStore) -> None:
    assert isinstance(store, DedupStore)


def test_first_claim_wins_and_repeats_within_window_are_duplicates(store: DedupStore) -> None:
    assert store.claim("f1", 3600, now=1000.0) is True
    assert store.claim("f1", 3600, now=1001.0) is False
    assert store.claim("f1", 3600, now=4599.9) is False
    assert store.claim("f2", 3600, now=1001.0) is True  # ids are independent


def test_claim_after_window_expires_alerts_again(store: DedupStore) -> None:
    assert store.claim("f1", 60, now=1000.0)
    assert store.claim("f1", 60, now=1060.0)  # window end is exclusive
    assert not store.claim("f1", 60, now=1100.0)  # a fresh window started at 1060


def test_release_lets_a_failed_delivery_be_retried(store: DedupStore) -> None:
    assert store.claim("f1", 3600, now=1000.0)
    store.release("f1")
    assert store.claim("f1", 3600, now=1001.0)
    store.release("never-claimed")  # harmless


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
