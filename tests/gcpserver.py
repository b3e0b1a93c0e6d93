"""A small Google Cloud API stand-in on loopback, for trustwatch.gcp.enrich to talk to.

- The three REST APIs the enricher reads, on one plain-http port (their paths do not
  overlap, so `TRUSTWATCH_GCP_API_ENDPOINT` can be this one base URL):
  cloudresourcemanager v3 `POST /v3/{projects|folders|organizations}/X:getIamPolicy`,
  iam v1 `GET /v1/projects/-/serviceAccounts/ID` and `POST …/ID:getIamPolicy`, storage v1
  `GET /storage/v1/b/BUCKET/iam` and `GET /storage/v1/b/BUCKET` (the Bucket resource, or
  only the top-level fields a `fields=a,b` query names, as the JSON API's partial responses
  do), and `GET /storage/v1/projects/P/hmacKeys/ACCESS_ID` (an HMAC key's metadata, from
  `hmac_keys`, keyed `P/ACCESS_ID`). Policies come from `policies` (keyed `projects/P`, `folders/F`, `organizations/O`,
  `serviceAccounts/EMAIL`, `buckets/NAME`), accounts from `accounts` (by email; found by
  email or unique id), buckets from `buckets` (by name); else 404 with Google's error JSON.
  With `require_token`, a request without the issued bearer token gets 401.
- The Compute Engine metadata server on a second port (`metadata_environ()`: what
  `GCE_METADATA_HOST` / `GCE_METADATA_IP` point google-auth at), which hands out that
  token: `google.auth.default()` in the function finds it as on Cloud Functions, so the
  production credential path runs too.

Every request is recorded (`requests`, `token_requests`); `fail(status, …)` queues answers
for the next API requests (throttling, outages, refusals).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
_STATUS |= {404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_CRM = re.compile(r"^/v3/((?:projects|folders|organizations)/[^/:]+):getIamPolicy$")
_SA = re.compile(r"^/v1/projects/[^/]+/serviceAccounts/([^/:]+)(:getIamPolicy)?$")
_BUCKET = re.compile(r"^/storage/v1/b/([^/]+)/iam$")
_BUCKET_RESOURCE = re.compile(r"^/storage/v1/b/([^/]+)$")
_HMAC_KEY = re.compile(r"^/storage/v1/projects/([^/]+)/hmacKeys/([^/]+)$")
FUNCTION_ACCOUNT = "trustwatch@dbx-prod-4821.iam.gserviceaccount.com"


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str  # without the query, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the JSON body, None without one


@dataclass(frozen=True)
class Failure:
    status: int
    headers: dict[str, str]


def policy(bindings: dict[str, list[str]], *, etag: str = "BwX1a2b3c4d=") -> dict[str, Any]:
    """An IAM Policy as getIamPolicy returns it (version 1: no conditions)."""
    return {
        "version": 1,
        "etag": etag,
        "bindings": [{"role": r, "members": m} for r, m in bindings.items()],
    }


def service_account(email: str, unique_id: str) -> dict[str, Any]:
    """A ServiceAccount as iam v1 GET returns it."""
    project = email.split("@", 1)[1].split(".", 1)[0]
    return {
        "name": f"projects/{project}/serviceAccounts/{email}",
        "projectId": project,
        "uniqueId": unique_id,
        "email": email,
        "displayName": email.split("@", 1)[0],
        "etag": "MDEwMjE5MjA=",
        "oauth2ClientId": unique_id,
    }


def hmac_key_metadata(project: str, access_id: str, email: str, state: str) -> dict[str, Any]:
    """An HMAC key's metadata as storage v1 hmacKeys.get returns it.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys#resource"""
    return {
        "kind": "storage#hmacKeyMetadata",
        "id": f"{project}/{access_id}",
        "selfLink": f"https://www.googleapis.com/storage/v1/projects/{project}/hmacKeys/{access_id}",
        "accessId": access_id,
        "projectId": project,
        "serviceAccountEmail": email,
        "state": state,
        "timeCreated": "2026-11-01T09:00:00.000Z",
        "updated": "2026-12-01T10:00:00.000Z",
        "etag": "M2ZhZjQ=",
    }


class GcpServer:
    """`with GcpServer() as gcp:` … `gcp.url`, `gcp.policies[...]`, `gcp.accounts[...]`,
    `gcp.buckets[...]`."""

    def __init__(self, *, require_token: bool = False) -> None:
        self.policies: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.hmac_keys: dict[str, dict[str, Any]] = {}
        self.requests: list[ApiRequest] = []
        self.token_requests: list[ApiRequest] = []
        self.token = secrets.token_urlsafe(24)
        self.require_token = require_token
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._serve_api))
        self._metadata = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._serve_metadata))
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._api.server_address[1]}"

    def metadata_environ(self) -> dict[str, str]:
        """Where google-auth looks for the metadata server (Cloud Functions has its own)."""
        host = f"127.0.0.1:{self._metadata.server_address[1]}"
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}

    def fail(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._failures.extend([Failure(status, headers or {})] * times)

    # --- the two servers -------------------------------------------------------------------

    def _serve_api(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            failure = self._failures.popleft() if self._failures else None
        auth = request.headers.get("authorization")
        if (auth or self.require_token) and auth != f"Bearer {self.token}":
            return _error(401, "Request had invalid authentication credentials.")
        if failure is not None:
            return _error(failure.status, "injected failure", failure.headers)
        if m := _CRM.match(request.path):
            if request.method != "POST":
                return _error(400, "getIamPolicy is a POST")
            return self._found(self.policies.get(m[1]), m[1])
        if m := _SA.match(request.path):
            account = self._account(m[1])
            if m[2] is None:
                return self._found(account, m[1])
            email = account["email"] if account else m[1]  # its policy: by email or id
            return self._found(self.policies.get(f"serviceAccounts/{email}"), m[1])
        if (m := _BUCKET.match(request.path)) and request.method == "GET":
            return self._found(self.policies.get(f"buckets/{m[1]}"), m[1])
        if (m := _BUCKET_RESOURCE.match(request.path)) and request.method == "GET":
            bucket = self.buckets.get(m[1])
            if bucket is not None and request.query.get("fields"):
                # top-level field names only: all a partial response here needs
                wanted = {f.strip() for f in request.query["fields"].split(",")}
                bucket = {k: v for k, v in bucket.items() if k in wanted}
            return self._found(bucket, m[1])
        if (m := _HMAC_KEY.match(request.path)) and request.method == "GET":
            return self._found(self.hmac_keys.get(f"{m[1]}/{m[2]}"), m[2])
        return _error(404, f"no such API path: {request.method} {request.path}")

    def _account(self, name: str) -> dict[str, Any] | None:
        for account in self.accounts.values():
            if name.lower() in (account["email"].lower(), account["uniqueId"]):
                return account
        return None

    @staticmethod
    def _found(body: dict[str, Any] | None, name: str) -> tuple[int, Any, dict[str, str]]:
        if body is None:
            return _error(404, f"Resource '{name}' was not found")
        return 200, body, {}

    def _serve_metadata(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.token_requests.append(request)
        flavor = {"Metadata-Flavor": "Google"}
        if request.path == "/":
            return 200, "", flavor
        if request.headers.get("metadata-flavor") != "Google":
            return 403, "Missing Metadata-Flavor header", {}
        prefix = "/computeMetadata/v1/"
        path = request.path.removeprefix(prefix)
        if path.startswith("instance/service-accounts/") and path.endswith("/token"):
            body = {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
            return 200, body, flavor
        if path in ("instance/service-accounts/default/", "instance/service-accounts/default"):
            body = {
                "aliases": ["default"],
                "email": FUNCTION_ACCOUNT,
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
            return 200, body, flavor
        if path == "project/project-id":
            return 200, "dbx-prod-4821", flavor
        if path == "universe/universe-domain":
            return 200, "googleapis.com", flavor
        return 404, "not found", flavor

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> GcpServer:
        for server in (self._api, self._metadata):
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        for server in (self._api, self._metadata):
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> GcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(
    serve: Callable[[ApiRequest], tuple[int, Any, dict[str, str]]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            request = ApiRequest(self.command, unquote(url.path), query, headers, body)
            status, answer, extra = serve(request)
            if isinstance(answer, str):
                payload, content_type = answer.encode(), "text/plain; charset=utf-8"
            else:
                payload, content_type = json.dumps(answer).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_PUT = do_POST = do_DELETE = do_PATCH = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """Google's JSON error body."""
    code = _STATUS.get(status, "UNKNOWN")
    return status, {"error": {"code": status, "message": message, "status": code}}, headers or {}
