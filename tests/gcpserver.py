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

The writes trustwatch.gcp.remediate makes, with the services' etag semantics: every write
gives the policy (or HMAC key) a new etag, and a write carrying another etag than the
current one is refused — 409 ABORTED from Resource Manager and IAM, 412 conditionNotMet
from Cloud Storage (https://cloud.google.com/iam/docs/policies#etag). A policy holding a
conditional binding is only read with `requestedPolicyVersion` 3 and only written with
`version` 3, else 400 (https://cloud.google.com/iam/docs/policies#versions):
cloudresourcemanager v3 `POST /v3/projects/P:setIamPolicy`, iam v1
`POST /v1/projects/-/serviceAccounts/E:setIamPolicy` (body `{"policy": …}`), storage v1
`PUT /storage/v1/b/B/iam` (the Policy itself); iam v1 service account keys
`GET|DELETE /v1/projects/-/serviceAccounts/E/keys/K` and `POST …/keys/K:disable` (from
`keys`, keyed `EMAIL/K`); storage v1 `PUT /storage/v1/projects/P/hmacKeys/ID` (the state)
and `PATCH /storage/v1/b/B` (its `iamConfiguration` merged).

Every request is recorded (`requests`, `token_requests`); `fail(status, …)` queues answers
for the next API requests (throttling, outages, refusals), or with `writes=True` for the
next writes only; `lose_writes` writes are answered 200 but not kept; `before_write(hook)`
runs the hook before the next write is applied (another writer in between our read and
our write: `other_writer(key, change)` changes a policy as a concurrent client would).
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
_CRM_SET = re.compile(r"^/v3/(projects/[^/:]+):setIamPolicy$")
_SA_SET = re.compile(r"^/v1/projects/[^/]+/serviceAccounts/([^/:]+):setIamPolicy$")
_SA_KEY = re.compile(r"^/v1/projects/[^/]+/serviceAccounts/([^/:]+)/keys/([^/:]+)(:disable)?$")
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
    writes: bool = False  # only for a write


def is_write(request: ApiRequest) -> bool:
    """A call that changes something (getIamPolicy is a POST, and a read)."""
    if request.method == "GET":
        return False
    return not request.path.endswith(":getIamPolicy")


def conditional(policy: dict[str, Any]) -> bool:
    """Does the policy hold a binding with a condition? (a malformed one: no)"""
    bindings = policy.get("bindings")
    return isinstance(bindings, list) and any(
        isinstance(b, dict) and b.get("condition") for b in bindings
    )


def policy(bindings: dict[str, list[str]], *, etag: str = "BwX1a2b3c4d=") -> dict[str, Any]:
    """An IAM Policy as getIamPolicy returns it (version 1: no conditions)."""
    return {
        "version": 1,
        "etag": etag,
        "bindings": [{"role": r, "members": m} for r, m in bindings.items()],
    }


def service_account_key(email: str, key_id: str, *, disabled: bool = False) -> dict[str, Any]:
    """A ServiceAccountKey as iam v1 keys.get returns it (a user-managed one).
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys#ServiceAccountKey"""
    project = email.split("@", 1)[1].split(".", 1)[0]
    return {
        "name": f"projects/{project}/serviceAccounts/{email}/keys/{key_id}",
        "validAfterTime": "2026-12-01T10:00:00Z",
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
        "disabled": disabled,
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
        self.keys: dict[str, dict[str, Any]] = {}
        self.lose_writes = 0
        self.requests: list[ApiRequest] = []
        self.token_requests: list[ApiRequest] = []
        self.token = secrets.token_urlsafe(24)
        self.require_token = require_token
        self._failures: deque[Failure] = deque()
        self._before_write: list[Callable[[ApiRequest], None]] = []
        self._etags = 0
        self._lock = threading.RLock()
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

    def fail(
        self,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        *,
        writes: bool = False,
    ) -> None:
        with self._lock:
            self._failures.extend([Failure(status, headers or {}, writes)] * times)

    def before_write(self, hook: Callable[[ApiRequest], None]) -> None:
        """Run `hook` once, just before the next write is judged and applied."""
        with self._lock:
            self._before_write.append(hook)

    def other_writer(self, key: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Another client's read-modify-write of `policies[key]`: a new etag."""
        with self._lock:
            changed = json.loads(json.dumps(self.policies[key]))
            change(changed)
            changed["etag"] = self._new_etag()
            self.policies[key] = changed

    def writes(self) -> list[ApiRequest]:
        return [r for r in self.requests if is_write(r)]

    def _new_etag(self) -> str:
        self._etags += 1
        return f"BwY{self._etags:07d}="

    def _failure(self, request: ApiRequest) -> Failure | None:
        for failure in self._failures:
            if not failure.writes or is_write(request):
                self._failures.remove(failure)
                return failure
        return None

    # --- the two servers -------------------------------------------------------------------

    def _serve_api(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            failure = self._failure(request)
            hooks = self._before_write[:1] if is_write(request) and failure is None else []
            del self._before_write[: len(hooks)]
        for hook in hooks:
            hook(request)
        auth = request.headers.get("authorization")
        if (auth or self.require_token) and auth != f"Bearer {self.token}":
            return _error(401, "Request had invalid authentication credentials.")
        if failure is not None:
            return _error(failure.status, "injected failure", failure.headers)
        with self._lock:
            return self._route(request)

    def _route(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        body = request.body if isinstance(request.body, dict) else {}
        if m := _CRM.match(request.path):
            if request.method != "POST":
                return _error(400, "getIamPolicy is a POST")
            return self._read_policy(
                m[1], m[1], (body.get("options") or {}).get("requestedPolicyVersion")
            )
        if m := _CRM_SET.match(request.path):
            return self._write_policy(m[1], m[1], body.get("policy"), 409)
        if m := _SA_SET.match(request.path):
            return self._write_policy(f"serviceAccounts/{m[1]}", m[1], body.get("policy"), 409)
        if m := _SA_KEY.match(request.path):
            return self._key(request, f"{m[1]}/{m[2]}", disable=m[3] is not None)
        if m := _SA.match(request.path):
            account = self._account(m[1])
            if m[2] is None:
                return self._found(account, m[1])
            email = account["email"] if account else m[1]  # its policy: by email or id
            version = (body.get("options") or {}).get("requestedPolicyVersion")
            return self._read_policy(f"serviceAccounts/{email}", m[1], version)
        if (m := _BUCKET.match(request.path)) and request.method == "GET":
            version = request.query.get("optionsRequestedPolicyVersion")
            return self._read_policy(f"buckets/{m[1]}", m[1], version)
        if (m := _BUCKET.match(request.path)) and request.method == "PUT":
            return self._write_policy(f"buckets/{m[1]}", m[1], body, 412)
        if (m := _BUCKET_RESOURCE.match(request.path)) and request.method == "PATCH":
            return self._patch_bucket(request, m[1], body)
        if (m := _HMAC_KEY.match(request.path)) and request.method == "PUT":
            return self._update_hmac_key(f"{m[1]}/{m[2]}", m[2], body)
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

    def _read_policy(self, key: str, name: str, version: Any) -> tuple[int, Any, dict[str, str]]:
        found = self.policies.get(key)
        if found is not None and conditional(found) and int(version or 1) < 3:
            return _error(400, "policy has conditions: requestedPolicyVersion 3 is required")
        return self._found(found, name)

    def _write_policy(
        self, key: str, name: str, new: Any, conflict: int
    ) -> tuple[int, Any, dict[str, str]]:
        current = self.policies.get(key)
        if current is None:
            return _error(404, f"Resource '{name}' was not found")
        if not isinstance(new, dict) or not isinstance(new.get("bindings", []), list):
            return _error(400, "expected a Policy")
        if new.get("etag") and new["etag"] != current.get("etag"):
            return _error(
                conflict,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            )
        if conditional(new) and int(new.get("version") or 1) < 3:
            return _error(400, "a policy with conditions must be written with version 3")
        stored = {**json.loads(json.dumps(new)), "etag": self._new_etag()}
        if self.lose_writes:
            self.lose_writes -= 1
            return 200, stored, {}  # answered, not kept
        self.policies[key] = stored
        return 200, stored, {}

    def _key(
        self, request: ApiRequest, key: str, *, disable: bool
    ) -> tuple[int, Any, dict[str, str]]:
        found = self.keys.get(key)
        if found is None:
            return _error(404, f"Service account key {key} does not exist.")
        if request.method == "GET" and not disable:
            return 200, found, {}
        if self.lose_writes:
            self.lose_writes -= 1
            return 200, {}, {}
        if disable and request.method == "POST":
            found["disabled"] = True
            return 200, {}, {}
        if request.method == "DELETE":
            del self.keys[key]
            return 200, {}, {}
        return _error(400, f"{request.method} on a key")

    def _update_hmac_key(
        self, key: str, access_id: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        found = self.hmac_keys.get(key)
        if found is None:
            return _error(404, f"HMAC key {access_id} not found")
        if body.get("etag") and body["etag"] != found.get("etag"):
            return _error(412, "Precondition Failed")
        if body.get("state") not in ("ACTIVE", "INACTIVE"):
            return _error(400, "state must be ACTIVE or INACTIVE")
        updated = {**found, "state": body["state"], "etag": self._new_etag()}
        if self.lose_writes:
            self.lose_writes -= 1
            return 200, updated, {}
        self.hmac_keys[key] = updated
        return 200, updated, {}

    def _patch_bucket(
        self, request: ApiRequest, name: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        found = self.buckets.get(name)
        if found is None:
            return _error(404, f"The specified bucket does not exist: {name}")
        config = json.loads(json.dumps(found.get("iamConfiguration") or {}))
        for field, value in (body.get("iamConfiguration") or {}).items():
            config[field] = {**config.get(field, {}), **value} if isinstance(value, dict) else value
        ubla = config.get("uniformBucketLevelAccess")
        if ubla is not None:
            config["bucketPolicyOnly"] = dict(ubla)  # the older name of the same setting
        updated = {**found, "iamConfiguration": config}
        if self.lose_writes:
            self.lose_writes -= 1
        else:
            self.buckets[name] = updated
        wanted = {f.strip() for f in request.query.get("fields", "").split(",") if f.strip()}
        return 200, {k: v for k, v in updated.items() if not wanted or k in wanted}, {}

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
