"""Dedup stores: the same finding id alerts once per window.

`claim` is an atomic "insert if absent or expired": of several processes racing on one
finding id, exactly one wins and alerts. A failed delivery `release`s its claim so the
platform's retry can alert again. DynamoDB / Azure Table / GCS stores implement the same
protocol (conditional put); SQLite serves the CLI and tests, memory a single process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class DedupStore(Protocol):
    """Atomic claims on finding ids, each for a window of seconds."""

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """True if no live claim exists (the caller should alert).

        Records one until `now + window_s`. False if the id was claimed within its
        window (a duplicate).
        """
        ...

    def release(self, finding_id: str) -> None:
        """Forget the claim (delivery failed): the next `claim` succeeds."""
        ...


class MemoryDedupStore:
    """Per-process store (a warm function instance keeps it between invocations)."""

    def __init__(self) -> None:
        self._expires: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """See `DedupStore.claim`."""
        now = time.time() if now is None else now
        with self._lock:
            if self._expires.get(finding_id, float("-inf")) > now:
                return False
            self._expires[finding_id] = now + window_s
            return True

    def release(self, finding_id: str) -> None:
        """See `DedupStore.release`."""
        with self._lock:
            self._expires.pop(finding_id, None)

    def __repr__(self) -> str:
        return f"MemoryDedupStore({len(self._expires)} claims)"


# One statement is one transaction in SQLite, so "insert, or take over an expired claim"
# cannot interleave with another process: the database write lock serialises it.
_CLAIM = """
INSERT INTO claims (finding_id, expires) VALUES (?, ?)
ON CONFLICT (finding_id) DO UPDATE SET expires = excluded.expires
WHERE claims.expires <= ?
"""


class SqliteDedupStore:
    """A SQLite file shared safely by concurrent processes (CLI runs, local workers)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        import sqlite3  # here: the functions' memory and cloud stores never need it

        # Autocommit (isolation_level=None): each statement commits on its own.
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()  # one connection, shared by this process's threads
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS claims (finding_id TEXT PRIMARY KEY, expires REAL)"
            )
            self._db.execute("DELETE FROM claims WHERE expires <= ?", (time.time(),))

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """See `DedupStore.claim`: one SQL statement, atomic across processes."""
        now = time.time() if now is None else now
        with self._lock:
            cursor = self._db.execute(_CLAIM, (finding_id, now + window_s, now))
            return cursor.rowcount == 1

    def release(self, finding_id: str) -> None:
        """See `DedupStore.release`."""
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE finding_id = ?", (finding_id,))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteDedupStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteDedupStore({self.path!r})"
