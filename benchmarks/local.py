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

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.posts += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer:
    """An HTTP endpoint on loopback that answers 200 to every POST and counts them."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self._server.daemon_threads = True
        self._server.posts = 0  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    @property
    def posts(self) -> int:
        return self._server.posts  # type: ignore[attr-defined]

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

    def create_role(self, name: str, trust_policy: str) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy)


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
