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

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
        self.keys: dict[str, dict[str, Any]] = {}  # by EMAIL/KEY_ID
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
        # the sweep reads, catch-up and fan-out (`_serve_sweep`); `keys` (by EMAIL/KEY_ID)
        # above is the remediation's and the sweep's one dict
        self.roles: dict[str, dict[str, Any]] = {}  # custom roles, by full name
        self.log_entries: list[dict[str, Any]] = []
        self.published: dict[str, list[dict[str, Any]]] = {}  # by topic
        self.now = datetime.now(UTC)  # entries:list's "last 24 hours" without a timestamp
        self.entries_page_size = 1000  # the most entries one page holds (the API's cap)
        self.hmac_page_size = 250
        self._public_key: bytes | None = None  # of service_account_key_file()

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
            # iam v1: the options are a query parameter and "the request body must be empty"
            # (https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/getIamPolicy)
            if request.body:
                return _error(400, 'Invalid JSON payload received. Unknown name "options"')
            version = request.query.get("options.requestedPolicyVersion")
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
        return self._serve_sweep(request)

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
        if request.path == "/token" and request.method == "POST":
            return self._oauth_token(request)
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

    def service_account_key_file(self, folder: Path) -> Path:
        """A service account key file (GOOGLE_APPLICATION_CREDENTIALS) whose `token_uri` is
        this server's `/token`: google.auth.default() signs in with it in-process, where the
        metadata server's address is fixed at import. The key is made here; `/token`
        checks the signed assertion with it and hands out the API token.
        https://google.aip.dev/auth/4112"""
        private, self._public_key = _rsa_key_pair()
        info = {
            "type": "service_account",
            "project_id": "dbx-prod-4821",
            "private_key_id": "0123456789abcdef",
            "private_key": private.decode(),
            "client_email": FUNCTION_ACCOUNT,
            "client_id": "104471953229413871512",
            "token_uri": self.token_uri,
        }
        path = folder / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self._metadata.server_address[1]}/token"

    def _oauth_token(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        """The OAuth 2.0 token endpoint's JWT bearer grant (RFC 7523), assertion checked."""
        from google.auth import jwt

        form = request.body if isinstance(request.body, dict) else {}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}, {}
        try:
            # google-auth addresses the assertion to Google's token endpoint wherever it posts
            claims = jwt.decode(form.get("assertion", ""), certs=self._public_key,
                                audience="https://oauth2.googleapis.com/token")  # fmt: skip
        except (ValueError, AttributeError):
            return 400, {"error": "invalid_grant"}, {}
        if claims.get("iss") != FUNCTION_ACCOUNT:
            return 400, {"error": "invalid_grant"}, {}
        return 200, {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}, {}

    # --- sweep reads, catch-up and fan-out (trustwatch.gcp.state) ----------------------------

    def _serve_sweep(self, request: ApiRequest) -> tuple[int, Any, dict[str, str]]:
        """The routes trustwatch.gcp.state's reads, catch-up and fan-out call, after the
        others: iam v1 `GET …/serviceAccounts/E/keys?keyTypes=…` (from `keys`), storage v1
        `GET projects/P/hmacKeys` (from `hmac_keys`, paged by `hmac_page_size`), iam v1
        `GET {projects|organizations}/X/roles/R` (from `roles`), Cloud Logging v2
        `POST v2/entries:list` (`log_entries`: honours its filter's clauses and, as the real
        API, searches only the 24 hours before `now` when the filter has no timestamp
        clause; pages of at most `entries_page_size`), Pub/Sub v1
        `POST projects/P/topics/T:publish` (kept in `published`, by topic)."""
        get = request.method == "GET"
        if (m := _SA_KEYS.match(request.path)) and get:
            account = self._account(m[1])
            if account is None:
                return _error(404, f"Service account {m[1]} does not exist.")
            email = account["email"].lower()
            wanted = request.query.get("keyTypes")
            keys = [
                k
                for name, k in sorted(self.keys.items())
                if name.rpartition("/")[0].lower() == email
                and (not wanted or k["keyType"] == wanted)
            ]
            return 200, {"keys": keys} if keys else {}, {}
        if (m := _HMAC_KEYS.match(request.path)) and get:
            return self._hmac_key_list(m[1], request.query)
        if (m := _ROLE.match(request.path)) and get:
            return self._found(self.roles.get(m[1]), m[1])
        if request.path == "/v2/entries:list" and request.method == "POST":
            return self._entries_list(request.body or {})
        if (m := _PUBLISH.match(request.path)) and request.method == "POST":
            return self._publish(m[1], request.body or {})
        return _error(404, f"no such API path: {request.method} {request.path}")

    def _hmac_key_list(
        self, project: str, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """storage v1 projects.hmacKeys.list: DELETED keys only with showDeletedKeys.
        https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/list"""
        email = query.get("serviceAccountEmail", "").lower()
        show_deleted = query.get("showDeletedKeys") == "true"
        keys = [
            k
            for name, k in sorted(self.hmac_keys.items())
            if name.startswith(project + "/")
            and (not email or k["serviceAccountEmail"].lower() == email)
            and (show_deleted or k["state"] != "DELETED")
        ]
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or 250), self.hmac_page_size)
        body: dict[str, Any] = {"kind": "storage#hmacKeysMetadata"}
        if keys[start : start + size]:
            body["items"] = keys[start : start + size]
        if start + size < len(keys):
            body["nextPageToken"] = str(start + size)
        return 200, body, {}

    def _entries_list(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """Cloud Logging v2 entries:list over `log_entries`.
        https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list"""
        resources = body.get("resourceNames") or []
        if not resources:
            return _error(400, "resourceNames is required")
        text = body.get("filter") or ""
        try:
            keep = entry_filter(text, self.now)
        except ValueError as exc:
            return _error(400, f"Invalid filter: {exc}")
        if (body.get("orderBy") or "timestamp asc") not in ("timestamp asc", "timestamp desc"):
            return _error(400, "orderBy: timestamp asc or timestamp desc")
        found = [
            e
            for e in self.log_entries
            if any(e.get("logName", "").startswith(f"{r}/logs/") for r in resources) and keep(e)
        ]
        found.sort(
            key=lambda e: _instant(e["timestamp"]), reverse=body.get("orderBy") == "timestamp desc"
        )
        # a page token is good for the query it came from only
        query = hashlib.sha256(json.dumps([resources, text, body.get("orderBy")]).encode())
        start = 0
        if token := body.get("pageToken"):
            offset, _, digest = str(token).partition(":")
            if digest != query.hexdigest()[:16] or not offset.isdigit():
                return _error(400, "page token does not match the query")
            start = int(offset)
        size = min(int(body.get("pageSize") or 50), self.entries_page_size)
        answer: dict[str, Any] = {}
        if found[start : start + size]:
            answer["entries"] = found[start : start + size]
        if start + size < len(found):
            answer["nextPageToken"] = f"{start + size}:{query.hexdigest()[:16]}"
        return 200, answer, {}

    def _publish(self, topic: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """Pub/Sub v1 projects.topics.publish: data must be base64.
        https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/publish"""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages: at least one")
        for message in messages:
            try:
                base64.b64decode(message.get("data", ""), validate=True)
            except (binascii.Error, AttributeError):
                return _error(400, "message data is not base64")
        with self._lock:
            held = self.published.setdefault(topic, [])
            first = len(held)
            held.extend(messages)
        return 200, {"messageIds": [str(first + i + 1) for i in range(len(messages))]}, {}

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
        # headers and body go out in two writes: without this, the client's delayed ACK
        # holds every answer back ~40 ms
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:  # a form (the OAuth token endpoint's grant)
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
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


# the sweep reads' and catch-up's routes (trustwatch.gcp.state)
_SA_KEYS = re.compile(r"^/v1/projects/[^/]+/serviceAccounts/([^/:]+)/keys$")
_HMAC_KEYS = re.compile(r"^/storage/v1/projects/([^/]+)/hmacKeys$")
_ROLE = re.compile(r"^/v1/((?:projects|organizations)/[^/]+/roles/[^/:]+)$")
_PUBLISH = re.compile(r"^/v1/(projects/[^/]+/topics/[^/:]+):publish$")
_CLAUSE = re.compile(r"^([A-Za-z.]+)\s*(>=|<=|=~|=|<|>)\s*(.+)$")


@cache
def _rsa_key_pair() -> tuple[bytes, bytes]:
    """One RSA key for the test run (private PKCS#8 PEM, public PEM): making one takes long."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, public


def _instant(text: str) -> datetime:
    """An RFC 3339 timestamp (nanoseconds cut to microseconds, as Python reads them)."""
    head, dot, tail = text.rstrip("Z").partition(".")
    digits = "".join(c for c in tail if c.isdigit())[:6]
    zone = "+00:00" if text.endswith("Z") else ""
    return datetime.fromisoformat(head + (f".{digits}" if dot and digits else "") + zone)


def entry_filter(text: str, now: datetime) -> Callable[[dict[str, Any]], bool]:
    """The clauses of a Logging query the catch-up sends, joined by AND: `logName=`,
    `timestamp` compared, `protoPayload.serviceName=("a" OR "b")`, `protoPayload.methodName=~`.
    Anything else is a ValueError (the API's 400). No timestamp clause: the last 24 hours.
    https://cloud.google.com/logging/docs/view/logging-query-language"""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    timed = False
    for clause in [c.strip() for c in text.split(" AND ")] if text.strip() else []:
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"unsupported clause {clause!r}")
        field, op, value = m[1], m[2], m[3].strip()
        values = [json.loads(v) for v in re.findall(r'"(?:[^"\\]|\\.)*"', value)]
        if not values:
            raise ValueError(f"clause {clause!r}: expected a quoted value")
        tests.append(_clause_test(field, op, values))
        timed = timed or field == "timestamp"
    if not timed:
        tests.append(lambda e: _instant(e["timestamp"]) >= now - timedelta(hours=24))
    return lambda entry: all(test(entry) for test in tests)


def _clause_test(field: str, op: str, values: list[str]) -> Callable[[dict[str, Any]], bool]:
    def value_of(entry: dict[str, Any]) -> Any:
        for part in field.split("."):
            entry = entry.get(part) if isinstance(entry, dict) else None  # type: ignore[assignment]
        return entry

    if field == "timestamp" and op in (">=", "<=", "<", ">") and len(values) == 1:
        bound = _instant(values[0])
        compare = {
            ">=": lambda a: a >= bound, "<=": lambda a: a <= bound,
            "<": lambda a: a < bound, ">": lambda a: a > bound,
        }[op]  # fmt: skip
        return lambda e: compare(_instant(e["timestamp"]))
    if op == "=":
        return lambda e: value_of(e) in values
    if op == "=~" and len(values) == 1:
        pattern = re.compile(values[0])
        return lambda e: isinstance(value_of(e), str) and pattern.search(value_of(e)) is not None
    raise ValueError(f"unsupported comparison {field}{op}")


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """Google's JSON error body."""
    code = _STATUS.get(status, "UNKNOWN")
    return status, {"error": {"code": status, "message": message, "status": code}}, headers or {}
