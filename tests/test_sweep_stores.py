"""The sweep state store contract, run over every backend: SQLite, DynamoDB (moto server),
Azure Table (Azurite) and GCS (emulator); large states that pass an item's size limit."""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from trustwatch.aws.store import DynamoSweepStore
from trustwatch.azure.store import AzureTableSweepStore
from trustwatch.findings import Finding, fingerprint
from trustwatch.gcp.store import GcsSweepStore
from trustwatch.sweepstate import (
    SqliteSweepStore,
    SweepState,
    SweepStateConflict,
    SweepStateStore,
    encode_state,
    sweep_store_from_env,
)

if TYPE_CHECKING:
    from cloudservers import Azurite, GcsEmulator, MotoServer

pytest_plugins = ["cloudservers"]

StoreFactory = Callable[[], SweepStateStore]  # a new instance on the same backend
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def unique_name(prefix: str = "tw") -> str:
    from cloudservers import unique_name

    return unique_name(prefix)


@pytest.fixture(params=["sqlite", "dynamodb", "azure-table", "gcs"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "sqlite":
        yield lambda: SqliteSweepStore(tmp_path / "state" / "sweeps.sqlite")
    elif request.param == "dynamodb":
        from cloudservers import create_state_table

        server: MotoServer = request.getfixturevalue("moto_server")
        table = create_state_table(server, "tw")
        yield lambda: DynamoSweepStore(table, client_kwargs=server.client_kwargs())
    elif request.param == "azure-table":
        azurite: Azurite = request.getfixturevalue("azurite_table")
        table = unique_name()  # created by the store on first save
        yield lambda: AzureTableSweepStore(azurite.connection_string, table=table)
    else:
        emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
        bucket = emulator.client().create_bucket(unique_name()).name
        yield lambda: GcsSweepStore(f"gs://{bucket}/trustwatch", client=emulator.client())


def finding(member: str, summary: str = "") -> Finding:
    return Finding(
        id=fingerprint("aws.policy.managed_attached", "arn:aws:iam::111122223333:role/r", member),
        rule="aws.policy.managed_attached",
        severity="high",
        cloud="aws",
        scope="111122223333",
        identity="arn:aws:iam::111122223333:role/r",
        source="sweep",
        sweep_status="new",
        summary=summary or f"{member} attached",
        actual=member,
    )


@functools.cache
def large_state(findings: int = 1200) -> SweepState:
    """A state whose gzip'd bytes pass DynamoDB's 400 KB item and Azure's 1 MiB entity."""
    noise = [finding(f"policy-{n}", secrets.token_hex(1000)) for n in range(findings)]
    state = SweepState(T0, tuple(noise))
    assert len(encode_state(state)) > 1_100_000
    return state


def test_stores_implement_the_protocol(new_store: StoreFactory) -> None:
    assert isinstance(new_store(), SweepStateStore)


def test_a_saved_state_loads_with_its_version(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.load("aws", "111122223333") is None
    state = SweepState(T0, (finding("AdministratorAccess"),))
    version = store.save("aws", "111122223333", state, expected=None)
    loaded = new_store().load("aws", "111122223333")
    assert loaded == state and loaded is not None
    assert loaded.version == version and version
    assert loaded.findings[0].sweep_status == "new"
    assert loaded.watermark == T0 and loaded.watermark.tzinfo is not None


def test_a_save_needs_the_version_it_loaded(new_store: StoreFactory) -> None:
    store = new_store()
    first = store.save("aws", "1", SweepState(T0), expected=None)
    with pytest.raises(SweepStateConflict):
        new_store().save("aws", "1", SweepState(T0), expected=None)  # one exists already
    second = store.save("aws", "1", SweepState(T0, (finding("x"),)), expected=first)
    assert second != first
    with pytest.raises(SweepStateConflict):
        new_store().save("aws", "1", SweepState(T0), expected=first)  # stale
    loaded = store.load("aws", "1")
    assert loaded is not None and loaded.version == second and len(loaded.findings) == 1


def test_units_and_clouds_are_kept_apart(new_store: StoreFactory) -> None:
    store = new_store()
    store.save("aws", "1", SweepState(T0, (finding("a"),)), expected=None)
    store.save("gcp", "1", SweepState(T0, (finding("g"),)), expected=None)
    store.save("aws", "2", SweepState(T0), expected=None)
    states = {(c, u): store.load(c, u) for c, u in [("aws", "1"), ("gcp", "1"), ("aws", "2")]}
    assert [len(s.findings) for s in states.values() if s] == [1, 1, 0]
    assert store.load("azure", "1") is None


def test_exactly_one_of_racing_saves_wins(new_store: StoreFactory) -> None:
    base = new_store().save("aws", "1", SweepState(T0), expected=None)
    stores = [new_store() for _ in range(6)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def run(store: SweepStateStore, n: int) -> None:
        start.wait()
        try:
            store.save("aws", "1", SweepState(T0, (finding(f"m{n}"),)), expected=base)
            outcomes.append("won")
        except SweepStateConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=run, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]


def test_a_large_state_round_trips_and_replaces_another(new_store: StoreFactory) -> None:
    store = new_store()
    big = large_state()
    version = store.save("aws", "1", big, expected=None)
    loaded = new_store().load("aws", "1")
    assert loaded == big
    bigger = large_state(1300)
    version = store.save("aws", "1", bigger, expected=version)
    assert new_store().load("aws", "1") == bigger
    small = SweepState(T0, (finding("x"),))
    store.save("aws", "1", small, expected=version)
    assert new_store().load("aws", "1") == small


def test_a_losing_large_save_changes_nothing(new_store: StoreFactory) -> None:
    store = new_store()
    version = store.save("aws", "1", SweepState(T0, (finding("kept"),)), expected=None)
    store.save("aws", "1", SweepState(T0), expected=version)
    with pytest.raises(SweepStateConflict):
        new_store().save("aws", "1", large_state(), expected=version)
    assert store.load("aws", "1") == SweepState(T0)


# --- backend specifics: what is left behind ------------------------------------------------


def test_dynamodb_keeps_no_stale_parts(moto_server: MotoServer) -> None:
    from cloudservers import create_state_table

    table = create_state_table(moto_server, "tw")
    store = DynamoSweepStore(table, client_kwargs=moto_server.client_kwargs())
    version = store.save("aws", "1", large_state(), expected=None)
    state = large_state(1300)
    version = store.save("aws", "1", state, expected=version)
    parts = -(-len(encode_state(state)) // 350_000)
    with pytest.raises(SweepStateConflict):
        store.save("aws", "1", large_state(), expected="1")  # its parts are taken back

    def items() -> list[str]:
        pages = store.client.get_paginator("scan").paginate(TableName=table)
        return sorted(i["id"]["S"] for page in pages for i in page["Items"])

    keys = items()
    assert keys[0] == "sweep#aws#1"
    assert all(k.startswith("sweep#aws#1#") for k in keys[1:]) and len(keys) == 1 + parts
    assert len({k.rsplit("#", 2)[1] for k in keys[1:]}) == 1  # of one write
    assert all(len(p) <= 350_000 for p in _dynamo_parts(store, table, keys[1:]))
    store.save("aws", "1", SweepState(T0), expected=version)
    assert items() == ["sweep#aws#1"]


def _dynamo_parts(store: DynamoSweepStore, table: str, keys: list[str]) -> list[bytes]:
    return [
        store.client.get_item(TableName=table, Key={"id": {"S": k}})["Item"]["data"]["B"]
        for k in keys
    ]


def test_azure_table_keeps_no_stale_parts(azurite_table: Azurite) -> None:
    table = unique_name()
    store = AzureTableSweepStore(azurite_table.connection_string, table=table)
    version = store.save("azure", "sub", large_state(), expected=None)
    state = large_state(1300)
    store.save("azure", "sub", state, expected=version)
    properties = -(-len(encode_state(state)) // (64 * 1024))
    rows = list(store.client.query_entities("PartitionKey eq 'sweep.azure.sub'"))
    tokens = {r["RowKey"].split(".")[0] for r in rows if r["RowKey"] != "head"}
    assert len(tokens) == 1 and len(rows) == 1 + -(-properties // 11)  # head + parts
    assert all(len(v) <= 64 * 1024 for r in rows for k, v in r.items() if k.startswith("d"))


def test_the_store_follows_the_dedup_settings(tmp_path: Path) -> None:
    sqlite = sweep_store_from_env({"TRUSTWATCH_STATE_URL": f"sqlite://{tmp_path}/s.sqlite"})
    assert isinstance(sqlite, SqliteSweepStore)
    assert isinstance(sweep_store_from_env({"TRUSTWATCH_STATE_TABLE": "t"}), DynamoSweepStore)
    assert isinstance(sweep_store_from_env({"TRUSTWATCH_STATE_URL": "gs://b/p"}), GcsSweepStore)
    azure = sweep_store_from_env({"TRUSTWATCH_STATE_URL": "UseDevelopmentStorage=true"})
    assert isinstance(azure, AzureTableSweepStore)
    by_url = sweep_store_from_env(
        {"TRUSTWATCH_STATE_URL": "https://acct.table.core.windows.net/states"}
    )
    assert isinstance(by_url, AzureTableSweepStore) and by_url.table == "states"
    default = sweep_store_from_env({}, default_sqlite=str(tmp_path / "cli.sqlite"))
    assert isinstance(default, SqliteSweepStore)
    with pytest.raises(ValueError, match="needs a state store"):
        sweep_store_from_env({})
    with pytest.raises(ValueError, match="not both"):
        sweep_store_from_env({"TRUSTWATCH_STATE_TABLE": "t", "TRUSTWATCH_STATE_URL": "gs://b"})
    with pytest.raises(ValueError, match="names no sweep state store"):
        sweep_store_from_env({"TRUSTWATCH_STATE_URL": "ftp://somewhere"})


def test_a_finding_this_build_cannot_read_back_is_dropped_not_the_state(tmp_path: Path) -> None:
    import gzip
    import json

    from trustwatch.sweepstate import decode_state

    good = finding("kept").model_dump(mode="json")
    renamed = {**good, "id": "x" * 64, "a_field_from_elsewhere": 1}
    document = {"format": 1, "watermark": T0.isoformat(), "findings": [good, renamed]}
    state = decode_state(gzip.compress(json.dumps(document).encode()), "7")
    assert [f.actual for f in state.findings] == ["kept"] and state.watermark == T0
    with pytest.raises(ValueError, match="unreadable sweep state"):
        decode_state(b"not gzip", "7")
    with pytest.raises(ValueError, match="unknown sweep state format"):
        decode_state(gzip.compress(b'{"format": 99}'), "7")
