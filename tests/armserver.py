"""A small Azure Resource Manager stand-in on loopback, for the real SDK clients to talk to.

- ARM over HTTPS (azure-core's bearer-token policy refuses plain http), with a fresh
  self-signed certificate for 127.0.0.1/localhost (`ca_bundle` is its path): GET a
  resource by id (`/subscriptions/…/roleAssignments/{name}?api-version=…`) from `resources`,
  else 404 with ARM's error JSON. DELETE by id removes it and answers 200 with its body,
  or 204 when there is none ("Role Assignments - Delete By Id",
  https://learn.microsoft.com/en-us/rest/api/authorization/role-assignments/delete-by-id);
  an id in `undeletable` answers 200 and stays (a delete that does not take). Ids match
  case-insensitively, as ARM's do. Requests without the issued bearer token get 401.
- The App Service managed identity endpoint over plain http, as the Functions host serves
  it to the app (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): azure-identity's
  DefaultAzureCredential gets its token here, so the production credential path runs too.

Every request is recorded (`requests`, `token_requests`; `calls("DELETE")` counts them);
`fail(status, …)` queues answers for the next ARM requests, or the next of one method
(throttling, outages, refusals with ARM's error code).

Sweep reads (`state`, an `ArmState`): the lists a sweep makes, paged `page_size` items at a
time with an opaque `$skiptoken` in `nextLink`, as ARM pages:
- `{scope}/providers/Microsoft.Authorization/roleAssignments` with `$filter` absent (at,
  above or below the scope), `atScope()` (at or above) or `principalId eq '…'` (that
  principal, at, above or below): "Role Assignments - List For Scope",
  https://learn.microsoft.com/en-us/rest/api/authorization/role-assignments/list-for-scope,
  and "List Azure role assignments using the REST API",
  https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-list-rest
  (atScope() leaves out subscopes). A management group is above the subscriptions
  `state.management_groups` puts under it; `/` is above everything;
- `{scope}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances` (PIM
  eligible assignments, `state.eligible_assignments`), filtered the same way ("Role
  Eligibility Schedule Instances - List For Scope",
  https://learn.microsoft.com/en-us/rest/api/authorization/role-eligibility-schedule-instances/list-for-scope);
- `{user-assigned identity}/federatedIdentityCredentials` (404 for an identity not in
  `state.federated_credentials`);
- `/subscriptions/{id}/providers/Microsoft.Storage/storageAccounts`;
- `/subscriptions/{id}/providers/Microsoft.ManagedServices/registrationAssignments`
  (`state.lighthouse`; the definitions only with `$expandRegistrationDefinition=true`);
- `/subscriptions/{id}/providers/Microsoft.Insights/eventtypes/management/values`, the
  Activity Log, with the `$filter` grammar of "Activity Logs - List"
  (https://learn.microsoft.com/en-us/rest/api/monitor/activity-logs/list): `eventTimestamp
  ge '…' and eventTimestamp le '…'`, optionally `and resourceProvider eq '…'`; anything else
  is 400. `$select` keeps only the properties it names.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trustwatch.alerts.receivers import self_signed_tls

IDENTITY_PATH = "/msi/token"


@dataclass(frozen=True)
class ArmRequest:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class Failure:
    status: int
    headers: dict[str, str]
    code: str = "ServerBusy"
    message: str = "injected failure"
    method: str | None = None  # None: the next request, whatever its method


def role_assignment(assignment_id: str, principal_id: str, role_guid: str) -> dict[str, Any]:
    """A role assignment as ARM's GET returns it (api-version 2022-04-01)."""
    scope, _, name = assignment_id.rpartition("/providers/Microsoft.Authorization/roleAssignments/")
    subscription = assignment_id.split("/")[2]
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{subscription}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{role_guid}",
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
            "scope": scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": "2026-11-27T10:00:00.0000000Z",
            "updatedOn": "2026-11-27T10:00:00.0000000Z",
            "createdBy": None,
            "updatedBy": "0c7e5a8d-9f41-4b6a-8d2e-51f0a3c9b7e4",
            "delegatedManagedIdentityResourceId": None,
            "description": None,
        },
        "id": assignment_id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": name,
    }


class ArmServer:
    """`with ArmServer() as arm:` … `arm.url`, `arm.ca_bundle`, `arm.resources[id] = body`."""

    def __init__(self) -> None:
        self.resources: dict[
            str, dict[str, Any]
        ] = {}  # resource id -> body (ids match case-insensitively)
        self.requests: list[ArmRequest] = []
        self.undeletable: set[str] = set()  # ids whose DELETE answers 200 but keeps them
        self.token_requests: list[ArmRequest] = []
        self.token = secrets.token_urlsafe(24)
        self.identity_header = secrets.token_urlsafe(12)
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self.state = ArmState()  # what the sweep's lists read
        self._cursors: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        context, self.ca_bundle, self._cleanup = self_signed_tls("localhost")
        self._arm = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._serve_arm))
        self._arm.socket = context.wrap_socket(self._arm.socket, server_side=True)
        self._identity = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._serve_token))
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._arm.server_address[1]}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._identity.server_address[1]}{IDENTITY_PATH}"

    def managed_identity_environ(self) -> dict[str, str]:
        """What the Functions host sets for an app with a managed identity."""
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    def fail(
        self,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        *,
        method: str | None = None,
        code: str = "ServerBusy",
        message: str = "injected failure",
    ) -> None:
        failure = Failure(status, headers or {}, code, message, method)
        with self._lock:
            self._failures.extend([failure] * times)

    def calls(self, method: str, path: str | None = None) -> int:
        """How many ARM requests of `method` (to `path`, any case) came in."""
        return sum(
            1
            for r in self.requests
            if r.method == method and (path is None or r.path.lower() == path.lower())
        )

    def _next_failure(self, method: str) -> Failure | None:
        for failure in self._failures:
            if failure.method in (None, method):
                self._failures.remove(failure)
                return failure
        return None

    # --- the two endpoints -----------------------------------------------------------------

    def _serve_arm(self, request: ArmRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            failure = self._next_failure(request.method)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, _error("AuthenticationFailed", "missing or wrong bearer token"), {}
        if failure is not None:
            return failure.status, _error(failure.code, failure.message), failure.headers
        if request.method not in ("GET", "DELETE") or "api-version" not in request.query:
            return 400, _error("MissingApiVersionParameter", "api-version is required"), {}
        if request.method == "GET":
            listed = self._serve_list(request)
            if listed is not None:
                return listed
        with self._lock:
            key = next((k for k in self.resources if k.lower() == request.path.lower()), None)
            found = self.resources.get(key) if key is not None else None
            if request.method == "DELETE":
                if key is None:
                    return 204, {}, {}
                if key.lower() not in {u.lower() for u in self.undeletable}:
                    del self.resources[key]
        if found is not None:
            return 200, found, {}
        if "/providers/microsoft.authorization/roleassignments/" in request.path.lower():
            code = "RoleAssignmentNotFound"
            message = f"The role assignment '{request.path.rsplit('/', 1)[-1]}' is not found."
        else:
            code = "ResourceNotFound"
            message = f"The Resource '{request.path}' was not found."
        return 404, _error(code, message), {}

    def _serve_token(self, request: ArmRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.token_requests.append(request)
        if (
            request.path != IDENTITY_PATH
            or request.headers.get("x-identity-header") != self.identity_header
        ):
            return 400, {"error": "invalid_request"}, {}
        body = {
            "access_token": self.token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": request.query.get("resource", ""),
            "token_type": "Bearer",
        }
        return 200, body, {}

    def _handler(
        self, serve: Callable[[ArmRequest], tuple[int, dict[str, Any], dict[str, str]]]
    ) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY each response
            # waits for the client's delayed ACK (40 ms), which a sweep's lists multiply
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                length = int(headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                status, body, extra = serve(ArmRequest(self.command, url.path, query, headers))
                payload = b"" if status == 204 else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST = do_DELETE = do_PATCH = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    # --- sweep reads: lists, filters, paging (see the module docstring) --------------------

    def _serve_list(self, request: ArmRequest) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        path = request.path.lower()
        token = request.query.get("$skiptoken")
        if token is not None:
            with self._lock:
                cursor = self._cursors.pop(token, None)
            if cursor is None or cursor[0] != path:
                return 400, _error("InvalidSkipToken", "unknown $skiptoken"), {}
            return 200, self._page(request, cursor[1]), {}
        if path.endswith(_ASSIGNMENTS):
            scope = request.path[: -len(_ASSIGNMENTS)] or "/"
            items = self.state.assignments_for(scope, request.query.get("$filter"))
        elif path.endswith(_ELIGIBLE):
            scope = request.path[: -len(_ELIGIBLE)] or "/"
            items = self.state.assignments_for(scope, request.query.get("$filter"), eligible=True)
        elif path.endswith(_CREDENTIALS):
            identity = _norm(request.path[: -len(_CREDENTIALS)])
            found = {_norm(k): v for k, v in self.state.federated_credentials.items()}
            if identity not in found:
                return 404, _error("ResourceNotFound", f"identity {identity} not found"), {}
            items = found[identity]
        elif _LIGHTHOUSE_LIST.fullmatch(path):
            prefix = path.rsplit("/providers/", 1)[0] + "/"
            items = [a for a in self.state.lighthouse if _norm(a["id"]).startswith(prefix)]
            if request.query.get("$expandRegistrationDefinition") != "true":
                items = [_unexpanded(a) for a in items]
        elif _STORAGE_LIST.fullmatch(path):
            prefix = path.rsplit("/providers/", 1)[0] + "/"
            items = [a for a in self.state.storage_accounts if _norm(a["id"]).startswith(prefix)]
        elif _ACTIVITY_LOG.fullmatch(path):
            subscription = path.split("/")[2]
            items = self.state.activity_log_for(
                subscription, request.query.get("$filter"), request.query.get("$select")
            )
        else:
            return None
        if items is None:
            return 400, _error("InvalidFilter", f"unsupported $filter for {request.path}"), {}
        return 200, self._page(request, items), {}

    def _page(self, request: ArmRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
        size = self.state.page_size
        body: dict[str, Any] = {"value": items[:size]}
        if len(items) > size:
            token = secrets.token_urlsafe(12)
            with self._lock:
                self._cursors[token] = (request.path.lower(), items[size:])
            version = request.query.get("api-version", "")
            body["nextLink"] = f"{self.url}{request.path}?api-version={version}&$skiptoken={token}"
        return body

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ArmServer:
        for server in (self._arm, self._identity):
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        for server in (self._arm, self._identity):
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._cleanup()

    def __enter__(self) -> ArmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# --- sweep reads: the state the lists serve ------------------------------------------------

_ASSIGNMENTS = "/providers/microsoft.authorization/roleassignments"
_ELIGIBLE = "/providers/microsoft.authorization/roleeligibilityscheduleinstances"
_CREDENTIALS = "/federatedidentitycredentials"
_STORAGE_LIST = re.compile(r"/subscriptions/[^/]+/providers/microsoft\.storage/storageaccounts")
_LIGHTHOUSE_LIST = re.compile(
    r"/subscriptions/[^/]+/providers/microsoft\.managedservices/registrationassignments"
)
_ACTIVITY_LOG = re.compile(
    r"/subscriptions/[^/]+/providers/microsoft\.insights/eventtypes/management/values"
)
_PRINCIPAL = re.compile(r"principalId eq '([^']+)'", re.IGNORECASE)
_WINDOW = re.compile(
    r"eventTimestamp ge '([^']+)' and eventTimestamp le '([^']+)'"
    r"(?: and resourceProvider eq '([^']+)')?",
    re.IGNORECASE,
)
_MANAGEMENT_GROUP = "/providers/microsoft.management/managementgroups/"


@dataclass
class ArmState:
    """What the stand-in's lists return (bodies as ARM returns them)."""

    role_assignments: list[dict[str, Any]] = field(default_factory=list)
    # PIM eligibility schedule instances, filtered as assignments are
    eligible_assignments: list[dict[str, Any]] = field(default_factory=list)
    # management group id -> the subscription ids under it (any depth)
    management_groups: dict[str, list[str]] = field(default_factory=dict)
    # user-assigned identity resource id -> its federated identity credentials
    federated_credentials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    storage_accounts: list[dict[str, Any]] = field(default_factory=list)
    # Lighthouse registration assignments, their definitions expanded
    lighthouse: list[dict[str, Any]] = field(default_factory=list)
    # REST-schema Activity Log records (every subscription's)
    activity_log: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2

    def assignments_for(
        self, scope: str, filter: str | None, *, eligible: bool = False
    ) -> list[dict[str, Any]] | None:
        target = _norm(scope)
        principal: str | None = None
        below = True
        if filter is None:
            pass
        elif filter.strip() == "atScope()":
            below = False
        elif (m := _PRINCIPAL.fullmatch(filter.strip())) is not None:
            principal = m[1].lower()
        else:
            return None
        out = []
        for assignment in self.eligible_assignments if eligible else self.role_assignments:
            props = assignment["properties"]
            if principal is not None and props["principalId"].lower() != principal:
                continue
            at = _norm(props["scope"])
            if self._above_or_at(at, target) or (below and _within(at, target)):
                out.append(assignment)
        return out

    def _above_or_at(self, grant: str, target: str) -> bool:
        if grant == "/" or _within(target, grant):
            return True
        if not grant.startswith(_MANAGEMENT_GROUP) or not target.startswith("/subscriptions/"):
            return False
        group = grant[len(_MANAGEMENT_GROUP) :]
        subscription = target.split("/")[2]
        under = {k.lower(): v for k, v in self.management_groups.items()}.get(group, [])
        return subscription in {s.lower() for s in under}

    def activity_log_for(
        self, subscription: str, filter: str | None, select: str | None
    ) -> list[dict[str, Any]] | None:
        m = _WINDOW.fullmatch((filter or "").strip())
        if m is None:
            return None  # the start time is required; other patterns are not served here
        since, until, provider = _when(m[1]), _when(m[2]), (m[3] or "").lower()
        keep = [k.strip() for k in select.split(",")] if select else None
        out = []
        for record in self.activity_log:
            if str(record.get("subscriptionId", "")).lower() != subscription:
                continue
            if not since <= _when(record["eventTimestamp"]) <= until:
                continue
            if provider and record["resourceProviderName"]["value"].lower() != provider:
                continue
            out.append({k: v for k, v in record.items() if keep is None or k in keep})
        # newest first, as the portal and the API list them
        return sorted(out, key=lambda r: _when(r["eventTimestamp"]), reverse=True)


def _unexpanded(assignment: dict[str, Any]) -> dict[str, Any]:
    """A registration assignment without its definition (no $expandRegistrationDefinition)."""
    props = {k: v for k, v in assignment["properties"].items() if k != "registrationDefinition"}
    return {**assignment, "properties": props}


def _norm(scope: str) -> str:
    text = re.sub("/{2,}", "/", scope.strip().lower()).rstrip("/")
    return text or "/"


def _within(scope: str, parent: str) -> bool:
    return parent == "/" or scope == parent or scope.startswith(parent + "/")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
