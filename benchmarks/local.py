"""The local stand-ins a benchmark run needs: moto (AWS APIs for c7n), a recording webhook
receiver (trustwatch's alert sink), and the isolated interpreter Cloud Custodian runs in.

c7n pins exact boto3/botocore/cryptography versions, so it lives in its own venv under
the cache folder (built once from benchmarks/requirements.txt) and never in the dev
environment or trustwatch's dependencies.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"

DUMMY_AWS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    # never read the machine's own AWS profiles
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # buffered: status line, headers and body leave in one write. Two small writes on a
    # kept-alive connection wait for the client's delayed ACK (Nagle): ~40 ms stalls.
    wbufsize = -1

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.posts += 1  # type: ignore[attr-defined]
            if self.server.keep:  # type: ignore[attr-defined]
                self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer:
    """An HTTP endpoint on loopback that answers 200 to every POST, counts and keeps them."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self._server.daemon_threads = True
        self._server.posts = 0  # type: ignore[attr-defined]
        self._server.bodies = []  # type: ignore[attr-defined]
        self._server.keep = False  # type: ignore[attr-defined]
        self._server.lock = threading.Lock()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    @property
    def posts(self) -> int:
        return self._server.posts  # type: ignore[attr-defined]

    def keep_bodies(self) -> None:
        """Keep the bodies of the POSTs from now on (forgetting those kept before)."""
        with self._server.lock:  # type: ignore[attr-defined]
            self._server.bodies = []  # type: ignore[attr-defined]
            self._server.keep = True  # type: ignore[attr-defined]

    def kept_bodies(self) -> list[bytes]:
        """The bodies kept since keep_bodies(); stops keeping them."""
        with self._server.lock:  # type: ignore[attr-defined]
            self._server.keep = False  # type: ignore[attr-defined]
            bodies, self._server.bodies = self._server.bodies, []  # type: ignore[attr-defined]
        return bodies

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class MotoServer:
    """moto in server mode on a free loopback port, with the role the drift event names."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def __enter__(self) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_role(self, name: str, trust_policy: str) -> None:
        self.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy)

    def serialise(self) -> None:
        """Answer one request at a time (call it while no request is in flight).

        moto checks a DynamoDB condition and writes in two steps; real DynamoDB does both
        atomically. One request at a time restores that, so concurrent conditional writes
        race as they do in AWS (tests/cloudservers.py does the same for the tests).
        """
        server = self._server._server  # werkzeug's server inside ThreadedMotoServer
        app = server.app
        lock = threading.Lock()

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            with lock:
                return list(app(environ, start_response))

        server.app = wsgi

    def create_state_table(self, name: str) -> str:
        """The state table as deploy/aws creates it: partition key `id`, TTL on `expires`."""
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
        )
        return name


def c7n_python(cache: Path, given: str | None) -> tuple[str | None, str]:
    """The interpreter Cloud Custodian runs in, and its c7n version (or why there is none).

    Order: --c7n-python; the current interpreter if it can import c7n; else a venv in the
    cache folder, created from benchmarks/requirements.txt on first use (needs PyPI once).
    """
    candidates = [given] if given else [sys.executable, str(cache / "c7n-venv" / "bin" / "python")]
    for python in candidates:
        version = _c7n_version(python)
        if version:
            return python, version
    if given:
        return None, f"{given} cannot import c7n"
    venv = cache / "c7n-venv"
    print(f"benchmarks: creating {venv} with {REQUIREMENTS.name} (once)", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not build the c7n venv ({exc})"
    python = str(venv / "bin" / "python")
    version = _c7n_version(python)
    return (python, version) if version else (None, "c7n venv built but c7n does not import")


def _c7n_version(python: str) -> str:
    if not Path(python).exists():
        return ""
    probe = subprocess.run(
        [python, "-c", "import c7n.version; print(c7n.version.version)"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else ""
