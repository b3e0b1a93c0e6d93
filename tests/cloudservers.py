"""Local stand-ins for the clouds' storage services, as session-scoped pytest fixtures.

- `moto_server`: moto in server mode (DynamoDB, S3, …); boto3 talks to it over HTTP.
- `azurite_table`, `azurite_blob`: Azurite (npm) as a subprocess, in memory.
- `gcs_emulator`: gcp-storage-emulator in this process, plus the `ifGenerationMatch`
  precondition that it ignores and real GCS enforces, and `GcsEmulator.fail_next` to
  answer the next requests with an error status (throttling, outages).

Each listens on a free loopback port, is started once per session on first use and
stopped at the end. Tests share the servers, so each test names its own table, bucket or
container (`unique_name`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from http import HTTPStatus
from http.server import HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where scripts/setup.sh installs Azurite; AZURITE_BIN_DIR points elsewhere if needed.
NODE_BIN = Path(
    os.environ.get("AZURITE_BIN_DIR", ROOT / ".cache" / "node" / "node_modules" / ".bin")
)
STARTUP_TIMEOUT_S = 60.0  # generous: a cold node start on a busy 2-core machine


def unique_name(prefix: str = "tw") -> str:
    """A fresh lowercase name valid as a DynamoDB table, S3/GCS bucket and Azure table."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll until 127.0.0.1:port accepts. False if `alive()` turns False first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f}s")


# --- moto ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    region: str = "us-east-1"

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on this server, with dummy credentials."""
        import boto3

        return boto3.client(service, **self.client_kwargs())

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def environ(self) -> dict[str, str]:
        """Environment that points boto3 clients created by the code under test here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role
        }


def create_state_table(server: MotoServer, prefix: str = "tw-state") -> str:
    """A DynamoDB table shaped as deploy/aws creates it (key `id`), for dedup + idempotency."""
    name = unique_name(prefix)
    server.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _serialised(app: Callable[..., Any]) -> Callable[..., Any]:
    # moto checks a condition and writes in two steps; real DynamoDB does both atomically.
    # One request at a time restores that, so races between clients behave as in AWS.
    lock = threading.Lock()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with lock:
            return list(app(environ, start_response))

    return wsgi


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    server._server.app = _serialised(server._server.app)  # before any request arrives
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}")
    finally:
        server.stop()


# --- Azurite --------------------------------------------------------------------------------

# Azurite's fixed development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    service: str  # "table" or "blob"
    port: int

    @property
    def endpoint(self) -> str:
        """Path-style service URL: http://127.0.0.1:PORT/devstoreaccount1"""
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        kind = "TableEndpoint" if self.service == "table" else "BlobEndpoint"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};{kind}={self.endpoint};"
        )

    def credential(self) -> Any:
        from azure.core.credentials import AzureNamedKeyCredential

        return AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)


def _azurite_command(service: str) -> Path:
    if shutil.which("node") is None:
        pytest.fail(
            "node is not installed, so Azurite (the Azure Storage stand-in) cannot run: "
            "install Node.js >= 18 (apt-get install nodejs npm), then run: bash scripts/setup.sh",
            pytrace=False,
        )
    command = NODE_BIN / f"azurite-{service}"
    if not command.exists():
        pytest.fail(
            f"Azurite is not installed ({command} is missing): run bash scripts/setup.sh, "
            "which installs it with npm into .cache/node",
            pytrace=False,
        )
    return command


@contextlib.contextmanager
def run_azurite(service: str, workdir: Path) -> Iterator[Azurite]:
    """Start `azurite-<service>` in memory on a free loopback port; stop it on exit."""
    command = _azurite_command(service)
    log_path = workdir / f"azurite-{service}.log"
    for _attempt in range(3):  # another process may take the free port before Azurite does
        port = free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    str(command),
                    f"--{service}Host",
                    "127.0.0.1",
                    f"--{service}Port",
                    str(port),
                    "--inMemoryPersistence",
                    "--disableTelemetry",  # it would phone home otherwise
                    "--skipApiVersionCheck",  # SDKs may be newer than this Azurite
                    "--loose",
                    "--silent",
                ],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if wait_for_port(port, alive=lambda proc=proc: proc.poll() is None):
                yield Azurite(service, port)
                return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    output = log_path.read_text(errors="replace")
    pytest.fail(f"azurite-{service} exited at start-up:\n{output}", pytrace=False)


@pytest.fixture(scope="session")
def azurite_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with run_azurite("table", tmp_path_factory.mktemp("azurite-table")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with run_azurite("blob", tmp_path_factory.mktemp("azurite-blob")) as server:
        yield server


# --- gcp-storage-emulator -------------------------------------------------------------------

_OBJECT_PATH = re.compile(r".*/b/(?P<bucket>[^/]+)/o(?:/(?P<name>.+))?")


def _precondition_handler(base: type, faults: list[int], faulted: list[str]) -> type:
    """The emulator's request handler plus `ifGenerationMatch`, which real GCS enforces
    (0 = the object must not exist) and the dedup stores depend on. The server handles
    one request at a time, so the check and the write that follows are atomic. While
    `faults` holds statuses, each request is answered with the first one, removed, and
    its method and path are added to `faulted`."""

    class Handler(base):  # type: ignore[misc, valid-type]
        def _refused(self) -> bool:
            if faults:
                faulted.append(f"{self.command} {urlparse(self.path).path}")
                self._error(faults.pop(0), "injected")
                return True
            url = urlparse(self.path)
            query = parse_qs(url.query)
            match = _OBJECT_PATH.fullmatch(url.path)
            if "ifGenerationMatch" not in query or match is None:
                return False
            name = unquote(match["name"]) if match["name"] else self._upload_name(query)
            try:
                current = int(self.storage.get_file_obj(match["bucket"], name)["generation"])
            except Exception:  # the emulator's NotFound
                current = 0
            if current == int(query["ifGenerationMatch"][0]):
                return False
            self._error(HTTPStatus.PRECONDITION_FAILED, "conditionNotMet")
            return True

        def _error(self, status: int, message: str) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # keep-alive
            body = json.dumps({"error": {"code": status, "message": message, "errors": []}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def _upload_name(self, query: dict[str, list[str]]) -> str:
            # The name of an upload is a query parameter or the multipart's JSON part.
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.rfile = io.BytesIO(raw)  # let the emulator read the body again
            if "name" in query:
                return query["name"][0]
            header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
            parts = BytesParser().parsebytes(header + raw).get_payload()
            return json.loads(parts[0].get_payload())["name"]

        def do_POST(self) -> None:
            if not self._refused():
                super().do_POST()

        def do_PUT(self) -> None:
            if not self._refused():
                super().do_PUT()

        def do_PATCH(self) -> None:
            if not self._refused():
                super().do_PATCH()

        def do_DELETE(self) -> None:
            if not self._refused():
                super().do_DELETE()

        def do_GET(self) -> None:
            if not self._refused():
                super().do_GET()

    return Handler


class _Server(HTTPServer):
    request_queue_size = 128  # racing test threads queue here instead of being refused


@dataclass(frozen=True)
class GcsEmulator:
    endpoint: str  # http://127.0.0.1:PORT; also the value for STORAGE_EMULATOR_HOST
    faults: list[int] = field(default_factory=list)  # statuses for the next requests
    faulted: list[str] = field(default_factory=list)  # "METHOD /path" of those answered

    def fail_next(self, *statuses: int) -> None:
        """Answer the next len(statuses) requests with these HTTP statuses, in order."""
        self.faults[:] = statuses
        self.faulted.clear()

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    from functools import partial

    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    faults: list[int] = []
    faulted: list[str] = []
    handler = partial(
        _precondition_handler(RequestHandler, faults, faulted), Storage(use_memory_fs=True)
    )
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="gcs-emulator", daemon=True)
    thread.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{server.server_port}", faults, faulted)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
