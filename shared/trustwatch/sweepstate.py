"""Sweep state: each unit's last sweep (its findings and watermark), in one small interface.

A `SweepStateStore` keeps one `SweepState` per (cloud, unit): `load` gives it with its
version token, `save` writes a new one only if the stored version is still the one
loaded (`expected`; None: only if there is none yet), else raises `SweepStateConflict`.
So two sweeps of one unit racing (a retried invocation beside a late one) cannot both
win: the loser's alerts were deduplicated already, and its state is discarded.

The backends are the dedup store's (the same settings, `sweep_store_from_env`): SQLite
here, and each cloud's in its `store.py` (`sweep_store_from_env(environ)`): DynamoDB,
Azure Table storage, a GCS object. Every backend stores the same bytes (`encode_state`:
gzip'd JSON), split where the storage limits an item's size.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from trustwatch import clouds
from trustwatch.findings import Finding
from trustwatch.frozen import frozen

STATE_FORMAT = 1
log = logging.getLogger("trustwatch")


@frozen
class SweepState:
    """What one unit's last sweep left for the next one."""

    watermark: datetime  # catch-up resumes here: when that sweep started (or earlier)
    findings: tuple[Finding, ...] = ()  # what held then (new and open ones; never resolved)
    version: str = field(default="", compare=False)  # the store's token, set by `load`


class SweepStateConflict(RuntimeError):
    """The unit's stored state is not the version this sweep loaded: another sweep won."""


@runtime_checkable
class SweepStateStore(Protocol):
    """One `SweepState` per (cloud, unit), written with optimistic concurrency."""

    def load(self, cloud: str, unit: str) -> SweepState | None:
        """The unit's last state with its `version`, or None before its first sweep."""
        ...

    def save(self, cloud: str, unit: str, state: SweepState, *, expected: str | None) -> str:
        """Write `state` if the stored version is `expected` (None: none stored yet).

        Returns the new version token; raises SweepStateConflict otherwise.
        """
        ...


def encode_state(state: SweepState) -> bytes:
    """The state as every backend stores it: gzip'd JSON (mtime 0: same state, same bytes)."""
    document = {
        "format": STATE_FORMAT,
        "watermark": state.watermark.isoformat(),
        "findings": [f.model_dump(mode="json") for f in state.findings],
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def decode_state(data: bytes, version: str) -> SweepState:
    """The state `encode_state` wrote; ValueError if it is not one."""
    from pydantic import ValidationError

    try:
        document = json.loads(gzip.decompress(data))
        if document.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown sweep state format {document.get('format')!r}")
        watermark = datetime.fromisoformat(document["watermark"])
        stored = list(document["findings"])
    except (OSError, EOFError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable sweep state: {type(exc).__name__}: {exc}") from None
    if watermark.tzinfo is None:
        raise ValueError("unreadable sweep state: watermark without a time zone")
    findings: list[Finding] = []
    for item in stored:
        try:
            findings.append(Finding.model_validate(item))
        except ValidationError as exc:
            # Written by another trustwatch (a field since renamed, a cloud not registered
            # here): dropped, not the whole state, so the unit still sweeps. If it still
            # holds, it is new again.
            log.warning("sweep state: a finding not read back: %s", str(exc).splitlines()[0])
    return SweepState(watermark, tuple(findings), version)


def state_key(cloud: str, unit: str) -> str:
    """`<cloud>#<unit>`: the backends' key of a unit (unit ids hold no `#`)."""
    return f"{cloud}#{unit}"


class SqliteSweepStore:
    """Sweep states in a SQLite file (the CLI's, beside its dedup claims), one row each."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        import sqlite3

        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sweep_states (key TEXT PRIMARY KEY,"
                " version INTEGER NOT NULL, data BLOB NOT NULL)"
            )

    def load(self, cloud: str, unit: str) -> SweepState | None:
        """See `SweepStateStore.load`."""
        with self._lock:
            row = self._db.execute(
                "SELECT version, data FROM sweep_states WHERE key = ?", (state_key(cloud, unit),)
            ).fetchone()
        return None if row is None else decode_state(bytes(row[1]), str(row[0]))

    def save(self, cloud: str, unit: str, state: SweepState, *, expected: str | None) -> str:
        """See `SweepStateStore.save`: one conditional statement, atomic across processes."""
        key, data = state_key(cloud, unit), encode_state(state)
        with self._lock:
            if expected is None:
                cursor = self._db.execute(
                    "INSERT INTO sweep_states (key, version, data) VALUES (?, 1, ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    (key, data),
                )
                version = 1
            else:
                version = int(expected) + 1
                cursor = self._db.execute(
                    "UPDATE sweep_states SET version = ?, data = ? WHERE key = ? AND version = ?",
                    (version, data, key, int(expected)),
                )
        if cursor.rowcount != 1:
            raise SweepStateConflict(f"sweep state of {key} changed since it was loaded")
        return str(version)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SqliteSweepStore({self.path!r})"


def sweep_store_from_env(
    environ: Mapping[str, str], *, default_sqlite: str | None = None
) -> SweepStateStore:
    """The sweep state store of the dedup store's settings.

    `TRUSTWATCH_STATE_URL=sqlite://…` is core's SQLite; TRUSTWATCH_STATE_TABLE (DynamoDB)
    and the other TRUSTWATCH_STATE_URL forms are each cloud's (`<cloud>/store.py`). With
    neither set: SQLite at `default_sqlite` (the CLI's file), else ValueError: a sweep
    that cannot remember its last run would report every finding as new each time.
    """
    table = environ.get("TRUSTWATCH_STATE_TABLE", "").strip()
    url = environ.get("TRUSTWATCH_STATE_URL", "").strip()
    if table and url:
        raise ValueError("set TRUSTWATCH_STATE_TABLE or TRUSTWATCH_STATE_URL, not both")
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path or path == "/":
            raise ValueError(f"TRUSTWATCH_STATE_URL={url!r} names no file")
        return SqliteSweepStore(path)
    if table or url:
        for cloud in clouds.registered():
            store = cloud.sweep_store(environ)
            if store is not None:
                return store
        raise ValueError("TRUSTWATCH_STATE_URL names no sweep state store this build knows")
    if default_sqlite:
        return SqliteSweepStore(default_sqlite)
    raise ValueError(
        "a sweep needs a state store: set TRUSTWATCH_STATE_TABLE or TRUSTWATCH_STATE_URL"
    )
