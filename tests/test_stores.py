"""The dedup-store contract, run over every backend: memory, SQLite, DynamoDB (moto
server), Azure Table (Azurite) and GCS (emulator). Backend specifics follow it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from trustwatch.aws.store import DynamoDedupStore
from trustwatch.azure.store import AzureTableDedupStore
from trustwatch.dedup import DedupStore, MemoryDedupStore, SqliteDedupStore
from trustwatch.gcp.store import GcsDedupStore
from trustwatch.stores import store_from_env

if TYPE_CHECKING:
    from cloudservers import Azurite, GcsEmulator, MotoServer

# The servers' fixtures. Registered as a plugin (not imported here) so pytest rewrites its
# asserts; harmless once conftest.py registers it too.
pytest_plugins = ["cloudservers"]


def unique_name(prefix: str = "tw") -> str:
    from cloudservers import unique_name

    return unique_name(prefix)


# The contract's clock: whole seconds (DynamoDB TTL keeps whole seconds) in the future, as
# a SQLite store opened mid-test prunes what has expired by the wall clock.
T0 = float(int(time.time()) + 1_000_000)

StoreFactory = Callable[[], DedupStore]  # a new "function instance" on the same backend


def _dynamo_table(moto_server: MotoServer) -> str:
    from cloudservers import create_state_table

    return create_state_table(moto_server, "tw")


@pytest.fixture(params=["memory", "sqlite", "dynamodb", "azure-table", "gcs"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes stores that share one fresh table / bucket / file, as separate instances
    would (the memory store is one process's: every call gives the same store)."""
    if request.param == "memory":
        memory = MemoryDedupStore()
        yield lambda: memory
    elif request.param == "sqlite":
        opened: list[SqliteDedupStore] = []

        def sqlite() -> DedupStore:
            opened.append(SqliteDedupStore(tmp_path / "state" / "dedup.sqlite"))
            return opened[-1]

        yield sqlite
        for store in opened:
            store.close()
    elif request.param == "dynamodb":
        server: MotoServer = request.getfixturevalue("moto_server")
        table = _dynamo_table(server)
        yield lambda: DynamoDedupStore(table, client_kwargs=server.client_kwargs())
    elif request.param == "azure-table":
        azurite: Azurite = request.getfixturevalue("azurite_table")
        table = unique_name()  # created by the store on first use
        yield lambda: AzureTableDedupStore(azurite.connection_string, table=table)
    else:
        emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
        bucket = emulator.client().create_bucket(unique_name()).name
        yield lambda: GcsDedupStore(f"gs://{bucket}/dedup/claims", client=emulator.client())


def test_stores_implement_the_protocol(new_store: StoreFactory) -> None:
    assert isinstance(new_store(), DedupStore)


def test_first_claim_wins_and_repeats_within_window_are_duplicates(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.claim("f1", 3600, now=T0) is True
    assert store.claim("f1", 3600, now=T0 + 1) is False
    assert store.claim("f1", 3600, now=T0 + 3599.9) is False
    assert new_store().claim("f1", 3600, now=T0 + 3599) is False  # another instance sees it
    assert store.claim("f2", 3600, now=T0 + 1) is True  # ids are independent


def test_claim_after_window_expires_alerts_again(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.claim("f1", 60, now=T0)
    assert new_store().claim("f1", 60, now=T0 + 60)  # window end is exclusive
    assert not store.claim("f1", 60, now=T0 + 100)  # a fresh window started at T0 + 60


def test_release_lets_a_failed_delivery_be_retried(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.claim("f1", 3600, now=T0)
    store.release("f1")
    assert new_store().claim("f1", 3600, now=T0 + 1)
    store.release("never-claimed")  # harmless


def test_ids_with_separators_are_kept_apart(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.claim("aws/role#1?x", 3600, now=T0)
    assert store.claim("aws/role#2?x", 3600, now=T0)
    assert not store.claim("aws/role#1?x", 3600, now=T0 + 1)


def _race(new_store: StoreFactory, now: float, contenders: int = 8) -> list[bool]:
    """`contenders` instances claim one id at once; returns each one's answer."""
    stores = [new_store() for _ in range(contenders)]
    start = threading.Barrier(contenders)
    results: list[bool] = [False] * contenders
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = stores[index].claim("contested", 600, now=now)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_exactly_one_of_many_racing_instances_wins(new_store: StoreFactory) -> None:
    assert sum(_race(new_store, now=T0)) == 1
    assert sum(_race(new_store, now=T0 + 1)) == 0  # all duplicates within the window


def test_exactly_one_instance_takes_over_an_expired_claim(new_store: StoreFactory) -> None:
    assert new_store().claim("contested", 600, now=T0)
    assert sum(_race(new_store, now=T0 + 1000)) == 1


# --- DynamoDB specifics: botocore's standard retry mode ------------------------------------


def _dynamo_store(moto_server: MotoServer, table: str, **kwargs: Any) -> DynamoDedupStore:
    return DynamoDedupStore(table, client_kwargs=moto_server.client_kwargs(), **kwargs)


def test_dynamodb_items_share_the_powertools_table_layout(moto_server: MotoServer) -> None:
    table = _dynamo_table(moto_server)
    client = moto_server.client("dynamodb")
    assert DynamoDedupStore(table, client=client).claim("abc", 60, now=1000.5)
    item = client.get_item(TableName=table, Key={"id": {"S": "dedup#abc"}})["Item"]
    assert item["expires"] == {"N": "1061"}  # whole epoch seconds for DynamoDB TTL


def _throttle(store: DynamoDedupStore, times: int) -> list[str]:
    """Answer the store's next `times` PutItems with DynamoDB's throttling error."""
    from botocore.awsrequest import AWSResponse

    throttled: list[str] = []

    def throttle_put(request: object, **_: object) -> AWSResponse | None:
        # botocore's own hook: a response returned here replaces the HTTP call.
        if len(throttled) >= times:
            return None
        throttled.append("put")
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "Rate of requests exceeds the allowed throughput",
            }
        ).encode()
        return AWSResponse("", 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))

    store.client.meta.events.register("before-send.dynamodb.PutItem", throttle_put)
    return throttled


def test_dynamodb_throttling_is_retried(moto_server: MotoServer) -> None:
    table = _dynamo_table(moto_server)
    store = _dynamo_store(moto_server, table)
    throttled = _throttle(store, times=1)
    assert store.claim("f1", 60, now=1000.0)
    assert throttled == ["put"]
    assert not _dynamo_store(moto_server, table).claim("f1", 60, now=1001.0)


def test_dynamodb_throttling_that_persists_surfaces_after_the_attempts(
    moto_server: MotoServer,
) -> None:
    from botocore.exceptions import ClientError

    store = _dynamo_store(moto_server, _dynamo_table(moto_server), attempts=2)
    throttled = _throttle(store, times=10)
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        store.claim("f1", 60, now=1000.0)
    assert throttled == ["put", "put"]  # two tries in all, then the error


class _Raw:
    """The streamed body botocore reads from an AWSResponse."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: object) -> object:
        yield self._data


def test_dynamodb_own_write_whose_answer_was_lost_counts_as_won(moto_server: MotoServer) -> None:
    from botocore.exceptions import ReadTimeoutError
    from botocore.httpsession import URLLib3Session

    table = _dynamo_table(moto_server)
    store = _dynamo_store(moto_server, table)
    lost: list[str] = []

    def lose_first_answer(request: Any, **_: object) -> None:
        # The put reaches the table; the client never hears back, so botocore sends it again.
        if not lost:
            lost.append("put")
            URLLib3Session().send(request)
            raise ReadTimeoutError(endpoint_url=moto_server.endpoint_url)

    store.client.meta.events.register("before-send.dynamodb.PutItem", lose_first_answer)
    assert store.claim("f1", 60, now=1000.0)
    assert lost == ["put"]
    assert not _dynamo_store(moto_server, table).claim("f1", 60, now=1001.0)


def test_dynamodb_errors_other_than_a_lost_race_propagate(moto_server: MotoServer) -> None:
    from botocore.exceptions import ClientError

    store = _dynamo_store(moto_server, unique_name("missing"))
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        store.claim("f1", 60)


# --- Azure Table specifics: azure-core's retry policy -------------------------------------


def _detouring_transport(detours: list[str]) -> Any:
    """A real requests transport that sends each of the next requests to `detours[0]`
    (a base URL: a server answering an error, or a closed port) instead."""
    from azure.core.pipeline.transport import RequestsTransport

    class Detour(RequestsTransport):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            if detours:
                request = copy.copy(request)
                parts = urlsplit(request.url)
                request.url = (
                    detours.pop(0) + parts.path + (f"?{parts.query}" if parts.query else "")
                )
            return super().send(request, **kwargs)

    return Detour()


def test_azure_table_throttling_and_dropped_connections_are_retried(azurite_table: Azurite) -> None:
    from trustwatch.alerts.receivers import RecordingHTTPServer, Reply, closed_port

    table = unique_name()
    # The table exists first (created on a first claim), so the next request is the create.
    assert AzureTableDedupStore(azurite_table.connection_string, table=table).claim("f0", 60)
    with RecordingHTTPServer(Reply(503, b"ServerBusy", {"x-ms-error-code": "ServerBusy"})) as busy:
        detours = [busy.url, f"http://127.0.0.1:{closed_port()}"]
        store = AzureTableDedupStore(
            azurite_table.connection_string,
            table=table,
            transport=_detouring_transport(detours),
            retry_backoff_factor=0.01,
        )
        assert store.claim("f1", 60, now=1000.0)  # 503 on the create, refused, then Azurite
        assert [r.method for r in busy.requests] == ["POST"]
    assert not detours
    assert not AzureTableDedupStore(azurite_table.connection_string, table=table).claim(
        "f1", 60, now=1001.0
    )


def test_azure_table_hard_failure_surfaces_after_the_retries(azurite_table: Azurite) -> None:
    from azure.core.exceptions import HttpResponseError
    from trustwatch.alerts.receivers import RecordingHTTPServer, Reply

    with RecordingHTTPServer(Reply(503, b"ServerBusy")) as down:
        detours = [down.url] * 10
        store = AzureTableDedupStore(
            azurite_table.connection_string,
            table=unique_name(),
            transport=_detouring_transport(detours),
            retry_backoff_factor=0.01,
        )
        with pytest.raises(HttpResponseError) as caught:
            store.claim("f1", 60, now=1000.0)
        assert caught.value.status_code == 503
        assert len(down.requests) == 5  # STORE_ATTEMPTS tries in all


# --- GCS specifics: google-cloud-storage's retry policies ---------------------------------


@pytest.fixture
def gcs(gcs_emulator: GcsEmulator) -> Iterator[GcsEmulator]:
    yield gcs_emulator
    gcs_emulator.fail_next()  # a failed test leaves no fault for the next one


def test_gcs_throttled_conditional_write_is_retried(gcs: GcsEmulator) -> None:
    bucket = gcs.client().create_bucket(unique_name()).name
    store = GcsDedupStore(f"gs://{bucket}/claims", client=gcs.client())
    gcs.fail_next(429, 503)
    assert store.claim("f1", 60, now=1000.0)
    # The write was refused, and the claim (which catches no 429) still succeeded: the
    # library's conditional retry sent it again.
    # (The client may also look the bucket up meanwhile: a GET that takes a fault too.)
    assert any(r.startswith("POST /upload/") for r in gcs.faulted) and not gcs.faults
    again = GcsDedupStore(f"gs://{bucket}/claims", client=gcs.client())
    assert not again.claim("f1", 60, now=1001.0)


def test_gcs_hard_failure_surfaces_at_once(gcs: GcsEmulator) -> None:
    from google.api_core.exceptions import Forbidden

    bucket = gcs.client().create_bucket(unique_name()).name
    store = GcsDedupStore(f"gs://{bucket}/claims", client=gcs.client())
    gcs.fail_next(403, 403, 403)
    with pytest.raises(Forbidden):
        store.claim("f1", 60, now=1000.0)
    uploads = [r for r in gcs.faulted if r.startswith("POST /upload/")]
    assert len(uploads) == 1  # a 403 is not worth another try


# --- choosing a store from the environment ------------------------------------------------


def test_no_store_configured_means_none() -> None:
    assert store_from_env({}) is None
    assert store_from_env({"TRUSTWATCH_STATE_URL": " "}) is None


def test_state_table_means_dynamodb() -> None:
    store = store_from_env({"TRUSTWATCH_STATE_TABLE": "trustwatch-state"})
    assert isinstance(store, DynamoDedupStore)
    assert store.table_name == "trustwatch-state"


def test_gs_url_means_gcs() -> None:
    store = store_from_env({"TRUSTWATCH_STATE_URL": "gs://tw-state/dedup/"})
    assert isinstance(store, GcsDedupStore)
    assert (store.bucket_name, store.prefix) == ("tw-state", "dedup")


@pytest.mark.parametrize(
    "value",
    [
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        "UseDevelopmentStorage=true",
    ],
)
def test_connection_string_means_azure_table(value: str) -> None:
    store = store_from_env({"TRUSTWATCH_STATE_URL": value})
    assert isinstance(store, AzureTableDedupStore)
    assert store.table == "trustwatchdedup"


def test_table_url_means_azure_table_with_managed_identity() -> None:
    url = "https://acct.table.core.windows.net/dedupclaims"
    store = store_from_env({"TRUSTWATCH_STATE_URL": url})
    assert isinstance(store, AzureTableDedupStore)
    assert store.table == "dedupclaims"
    assert "acct.table.core.windows.net" in repr(store)


def test_sqlite_url_means_a_local_file(tmp_path: Path) -> None:
    store = store_from_env({"TRUSTWATCH_STATE_URL": f"sqlite://{tmp_path}/dedup.sqlite"})
    assert isinstance(store, SqliteDedupStore)
    assert store.path == f"{tmp_path}/dedup.sqlite"
    assert store.claim("f1", 60)
    store.close()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TRUSTWATCH_STATE_TABLE": "t", "TRUSTWATCH_STATE_URL": "gs://b"}, "not both"),
        ({"TRUSTWATCH_STATE_URL": "s3://bucket/dedup"}, "must be .*gs://bucket/prefix"),
        ({"TRUSTWATCH_STATE_URL": "gs:///prefix"}, "names no bucket"),
        ({"TRUSTWATCH_STATE_URL": "sqlite://"}, "names no file"),
        ({"TRUSTWATCH_STATE_URL": "https://acct.table.core.windows.net/"}, "<table>"),
    ],
)
def test_unusable_settings_are_errors_not_silence(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store_from_env(environ)


def test_errors_never_echo_a_secret() -> None:
    with pytest.raises(ValueError) as caught:
        store_from_env({"TRUSTWATCH_STATE_URL": "Endpoint=x;SecretKey=hunter2-very-secret"})
    assert "hunter2" not in str(caught.value)


def test_importing_stores_loads_no_cloud_sdk() -> None:
    # Cold start: the AWS function must not pay for Azure or Google, nor any for nothing.
    # (Compared with a bare interpreter, where namespace-package .pth files add `google`.)
    code = (
        "import sys; before = set(sys.modules); import trustwatch.stores; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in {'boto3', 'botocore', 'azure', 'google', 'requests'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
