"""GCP state for sweeps: each baseline project read back as the changes the GCP rules judge.

A sweep unit is a project id of the baseline (`gcp.projects.<id>`). `read(project, …)`
reads, over the same REST path as trustwatch.gcp.enrich (its `ApiClient`: google-auth's
`AuthorizedSession`, `TRUSTWATCH_GCP_API_ENDPOINT`, the urllib3 `RETRIES`):

- the project's IAM policy, version 3 (cloudresourcemanager v3 `projects/P:getIamPolicy`)
  -> one `resource.iam_policy_set` change;
- per baseline service account: the account (iam v1 GET; 404 -> `service_account.deleted`,
  `disabled` -> `service_account.disabled`), its IAM policy (v3) -> a
  `service_account.iam_policy_set`; where its baseline allows no keys, its user-managed keys
  (`keys?keyTypes=USER_MANAGED`; enabled ones -> `service_account.key_created`) and its
  HMAC keys in the project (one storage v1 `projects/P/hmacKeys` listing for all of them;
  ACTIVE ones -> `service_account.hmac_key_created`);
- per watched bucket: its IAM policy (v3) -> `bucket.iam_policy_set`, its `iamConfiguration`
  -> `bucket.settings_updated`;
- per watched custom role: the role (iam v1 GET; 404 or `deleted` ->
  `custom_role.deleted`, else a `custom_role.updated` carrying its stage, and its
  permissions where the baseline pins them: unpinned, there is nothing to compare them with).

A policy read back becomes binding deltas, so the rules judge it as they judge a logged
SetIamPolicy: an ADD for every (role, member) the policy grants (the rules skip what the
baseline lists) and a REMOVE for every grant the baseline expects (a project role of a
baseline account, a watched bucket's binding) that the policy does not hold. Conditional
bindings (IAM conditions, version 3 policies) are kept apart: a conditional grant is still
a grant (an ADD), but it does not satisfy an expected grant, which holds only unconditionally
(a condition may be false: Databricks would lose the access).
https://cloud.google.com/iam/docs/conditions-overview
https://cloud.google.com/iam/docs/policies#versions

A bucket made without an explicit policy holds the project's convenience members
(`projectOwner:P` and `projectEditor:P` as legacyBucketOwner, `projectViewer:P` as
legacyBucketReader): those are grants like any other, so a watched bucket's baseline lists
them (or the bucket drops them), else the sweep reports them.

The baseline names projects only, so folder and organization policies are not read (they
are judged from their SetIamPolicy events; a sweep of them needs a baseline setting first).

`catch_up(project, since, until, …)` reads the project's Admin Activity audit entries of
the watched methods (trustwatch.gcp.events.watched_operations) logged in [since, until),
through Cloud Logging v2 `entries:list` (POST, paged by `nextPageToken`), and yields each
LogEntry as the event path reads it. Its filter always has the timestamp clauses: without
one the API only searches the last 24 hours.
https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list

What a read could not get (a refusal, an outage after its retries, an unreadable answer) is
in `StateRead.errors`, one line each; the other reads go on. `PERMISSIONS` is what the
function's identity needs for each (deploy/gcp grants exactly these; tests/test_deploy.py
checks).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from trustwatch.baseline import Baseline
from trustwatch.changes import Change, EventError
from trustwatch.gcp.baseline import GcpProject
from trustwatch.gcp.changes import (
    BindingDelta,
    BucketSettings,
    CustomRoleChanged,
    CustomRoleUpdated,
    PolicySet,
    ServiceAccountChanged,
    ServiceAccountKeyCreated,
    ServiceAccountPolicySet,
)
from trustwatch.gcp.enrich import API_ENDPOINT, RETRIES, ApiClient, GcpApiError
from trustwatch.gcp.events import bucket_settings, watched_operations
from trustwatch.gcp.rules import protected
from trustwatch.intake import short_exception
from trustwatch.sweep import ScheduledSweep, StateRead, scheduled

T = TypeVar("T")

# What each read needs (deploy/gcp's sweeper role holds exactly these).
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "project": ("resourcemanager.projects.getIamPolicy",),
    "service_account": (
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccountKeys.list",
    ),
    # https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/list
    "hmac_keys": ("storage.hmacKeys.list",),
    "bucket": ("storage.buckets.getIamPolicy", "storage.buckets.get"),
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/get
    "custom_role": ("iam.roles.get",),
    # https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list
    "catch_up": ("logging.logEntries.list",),
}
# the fan-out's publish, granted on the sweep topic only (roles/pubsub.publisher holds it)
# https://cloud.google.com/pubsub/docs/access-control#roles
FAN_OUT_PERMISSIONS = ("pubsub.topics.publish",)
ACTIVITY_LOG = "cloudaudit.googleapis.com%2Factivity"  # the Admin Activity audit log
PAGE_SIZE = 1000  # entries:list's largest page
SA = "serviceAccount:"


class _StateReader(ApiClient):
    """The enricher's API client, counting its requests, with the calls only sweeps make."""

    calls = 0

    def call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any] | None:
        self.calls += 1
        return super().call(method, url, **kwargs)

    def user_managed_keys(self, email: str) -> dict[str, Any] | None:
        """iam v1 serviceAccounts.keys.list of the user-managed keys; None on 404.
        https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/list"""
        path = f"/v1/projects/-/serviceAccounts/{quote(email, safe='@')}/keys"
        return self.call("GET", self.url("iam", path), params={"keyTypes": "USER_MANAGED"})

    def hmac_keys(self, project: str, page_token: str = "") -> dict[str, Any] | None:
        """One page of storage v1 projects.hmacKeys.list (every account's); None on 404."""
        path = f"/storage/v1/projects/{quote(project, safe='')}/hmacKeys"
        params = {"maxResults": "1000"}
        if page_token:
            params["pageToken"] = page_token
        return self.call("GET", self.url("storage", path), params=params)

    def role(self, name: str) -> dict[str, Any] | None:
        """The Role (projects/P/roles/R, organizations/O/roles/R) as iam v1 returns it."""
        return self.call("GET", self.url("iam", f"/v1/{quote(name, safe='/')}"))

    def entries(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page of Cloud Logging v2 entries:list."""
        url = self.url("logging", "/v2/entries:list")
        page = self.call("POST", url, json=body)
        if page is None:
            raise GcpApiError("POST", url, 404, "not found")
        return page

    def publish(self, topic: str, data: bytes) -> str:
        """Pub/Sub v1 topics.publish of one message; its message id.
        https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/publish"""
        url = self.url("pubsub", f"/v1/{quote(topic, safe='/')}:publish")
        body = {"messages": [{"data": base64.b64encode(data).decode("ascii")}]}
        answer = self.call("POST", url, json=body)
        ids = (answer or {}).get("messageIds")
        if not isinstance(ids, list) or len(ids) != 1:
            raise GcpApiError("POST", url, 404 if answer is None else 200, "no message id")
        return str(ids[0])


def reader_from_env(environ: Mapping[str, str]) -> _StateReader:
    """A counting reader at TRUSTWATCH_GCP_API_ENDPOINT, signed in with google-auth's
    application default credentials (see trustwatch.gcp.enrich)."""
    endpoint = environ.get("TRUSTWATCH_GCP_API_ENDPOINT") or API_ENDPOINT
    return _StateReader(None, endpoint, dict(RETRIES))


def units(baseline: Baseline, environ: Mapping[str, str]) -> list[str]:
    """The baseline's project ids, each swept on its own."""
    return list(baseline.gcp.projects)


def read(unit: str, baseline: Baseline, environ: Mapping[str, str]) -> StateRead:
    """The project's current state as changes the GCP rules judge (see the module doc)."""
    project = baseline.gcp.projects.get(unit)
    if project is None:
        return StateRead(unit, errors=[f"project {unit}: not in the baseline"])
    # what a project policy's findings name: the accounts a grant on it reaches (the
    # responder's own too) and the buckets below it
    reached = [e for e, a in protected(baseline).items() if a.project == unit]
    return _ProjectRead(unit, project, reader_from_env(environ), [*reached, *project.buckets]).run()


class _ProjectRead:
    """One project's reads; each read that fails is one line of `errors` (and names the
    identities whose findings it would give: `unreadable`), the rest go on."""

    def __init__(
        self, project_id: str, project: GcpProject, reader: _StateReader, reached: list[str]
    ) -> None:
        self.project_id = project_id
        self.project = project
        self.reader = reader
        self.reached = reached
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self.unreadable: dict[str, None] = {}

    def run(self) -> StateRead:
        project = self.project_id
        self._guard(f"project {project} IAM policy", self.reached, self._project_policy)
        for email, spec in self.project.service_accounts.items():
            email = email.lower()
            account = self._guard(f"service account {email}", [email], self._account, email)
            if account is None:
                continue  # gone (a finding), or unreadable (an error): nothing more to read
            unique_id = str(account.get("uniqueId") or "")
            self._guard(f"service account {email} IAM policy", [email], self._account_policy,
                        email, unique_id)  # fmt: skip
            if spec.user_managed_keys:
                continue  # keys are allowed: no rule would judge them
            self._guard(f"service account {email} keys", [email], self._keys, email, unique_id)
        # one listing of the project's HMAC keys serves every account that may have none
        keyless = [e.lower() for e, spec in self.project.service_accounts.items()
                   if not spec.user_managed_keys]  # fmt: skip
        if keyless:
            self._guard(f"HMAC keys in {project}", keyless, self._hmac_keys, set(keyless))
        for name, bucket in self.project.buckets.items():
            expected = [(role, m) for role, members in bucket.bindings.items() for m in members]
            self._guard(f"bucket {name} IAM policy", [name], self._bucket_policy, name, expected)
            self._guard(f"bucket {name} settings", [name], self._bucket_settings, name)
        for key, role in self.project.custom_roles.items():
            full = key if "/" in key else f"projects/{project}/roles/{key}"
            pinned = role.permissions is not None
            self._guard(f"custom role {full}", [full], self._custom_role, full, pinned)
        return StateRead(
            project, self.changes, self.reader.calls, self.errors, list(self.unreadable)
        )

    def _guard(self, what: str, about: list[str], read: Callable[..., T], *args: Any) -> T | None:
        from google.auth.exceptions import GoogleAuthError  # the session made it importable

        try:
            return read(*args)
        # requests' errors are OSErrors; GoogleAuthError: no credentials, a refused token
        except (GcpApiError, EventError, OSError, GoogleAuthError) as exc:
            self.errors.append(f"{what}: {short_exception(exc)}")
            self.unreadable.update(dict.fromkeys(about))
            return None

    def _add(self, kind: str, call: str, identity: str, payload: Any, name: str = "") -> None:
        self.changes.append(
            Change(
                cloud="gcp",
                kind=kind,
                event_name=f"sweep:{call}",
                scope=self.project_id,
                identity=identity,
                name=name or identity,
                payload=payload,
            )
        )

    def _project_policy(self) -> None:
        resource = f"projects/{self.project_id}"
        policy = self.reader.policy(PolicySet("project", resource))
        if policy is None:
            raise EventError("project not found (404)")
        expected = [
            (role, SA + email)
            for email, spec in self.project.service_accounts.items()
            for role in spec.project_roles
        ]
        payload = PolicySet("project", resource, deltas=policy_deltas(policy, expected))
        self._add("resource.iam_policy_set", "getIamPolicy", resource, payload)

    def _account(self, email: str) -> dict[str, Any] | None:
        """The account, or None when it is gone (then a deleted change is added)."""
        name = email.split("@", 1)[0]
        account = self.reader.service_account(email)
        if account is None:
            self._add("service_account.deleted", "GetServiceAccount", email,
                      ServiceAccountChanged(email), name)  # fmt: skip
            return None
        if account.get("disabled") is True:
            self._add("service_account.disabled", "GetServiceAccount", email,
                      ServiceAccountChanged(email), name)  # fmt: skip
        return account

    def _account_policy(self, email: str, unique_id: str) -> None:
        asked = ServiceAccountPolicySet("service_account", email, email=email)
        policy = self.reader.policy(asked)
        if policy is None:  # gone since its GET, or no answer: not a policy granting nothing
            raise EventError("IAM policy not found (404)")
        payload = ServiceAccountPolicySet(
            "service_account",
            email,
            deltas=policy_deltas(policy, []),
            email=email,
            unique_id=unique_id,
        )
        self._add("service_account.iam_policy_set", "getIamPolicy", email, payload)

    def _keys(self, email: str, unique_id: str) -> None:
        for key in _items(self.reader.user_managed_keys(email), "keys"):
            # a disabled key authenticates nothing (and is what a remediation leaves)
            # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys
            if key.get("keyType", "USER_MANAGED") != "USER_MANAGED" or key.get("disabled"):
                continue
            key_id = str(key.get("name") or "").rsplit("/keys/", 1)[-1]
            payload = ServiceAccountKeyCreated(email, unique_id, key_id)
            self._add("service_account.key_created", "ListServiceAccountKeys", email, payload,
                      email.split("@", 1)[0])  # fmt: skip

    def _hmac_keys(self, emails: set[str]) -> None:
        token = ""
        while True:
            page = self.reader.hmac_keys(self.project_id, token)
            for key in _items(page, "items"):
                # INACTIVE keys sign nothing; DELETED ones are not listed by default
                # https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/list
                email = str(key.get("serviceAccountEmail") or "").lower()
                if email not in emails or str(key.get("state") or "").upper() != "ACTIVE":
                    continue
                payload = ServiceAccountKeyCreated(email, "", str(key.get("accessId") or ""))
                self._add("service_account.hmac_key_created", "storage.hmacKeys.list", email,
                          payload, email.split("@", 1)[0])  # fmt: skip
            token = str((page or {}).get("nextPageToken") or "")
            if not token:
                return

    def _bucket_policy(self, name: str, expected: list[tuple[str, str]]) -> None:
        policy = self.reader.policy(PolicySet("bucket", name))
        if policy is None:
            raise EventError("bucket not found (404)")
        payload = PolicySet("bucket", name, deltas=policy_deltas(policy, expected))
        self._add("bucket.iam_policy_set", "storage.buckets.getIamPolicy", name, payload)

    def _bucket_settings(self, name: str) -> None:
        bucket = self.reader.bucket(name)
        if bucket is None:
            raise EventError("bucket not found (404)")
        settings = bucket_settings(bucket, f"bucket {name}", defaults=True)
        if settings is None:  # with defaults, never: mypy cannot know
            raise EventError("no iamConfiguration")
        payload = BucketSettings(name, *settings)
        self._add("bucket.settings_updated", "storage.buckets.get", name, payload)

    def _custom_role(self, name: str, pinned: bool) -> None:
        role = self.reader.role(name)
        short = name.rsplit("/", 1)[-1]
        if role is None or role.get("deleted") is True:
            self._add("custom_role.deleted", "GetRole", name, CustomRoleChanged(name), short)
            return
        stage = role.get("stage")
        permissions = role.get("includedPermissions") or []
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise EventError("includedPermissions is not a list of names")
        payload = CustomRoleUpdated(
            name,
            stage=stage.strip().upper() if isinstance(stage, str) and stage.strip() else None,
            # unpinned permissions have nothing to be compared with: not read
            permissions=tuple(sorted(permissions)) if pinned else None,
        )
        self._add("custom_role.updated", "GetRole", name, payload, short)


def policy_deltas(
    policy: dict[str, Any], expected: Iterable[tuple[str, str]]
) -> tuple[BindingDelta, ...]:
    """An IAM policy read back as binding deltas against the `expected` (role, member)s.

    ADD: each (role, member) the policy grants, under a condition or not; REMOVE: each
    expected grant the policy holds under no condition. Members compare case-insensitively.
    """
    granted: dict[tuple[str, str], None] = {}
    unconditional: set[tuple[str, str]] = set()
    bindings = policy.get("bindings") or []
    if not isinstance(bindings, list):
        raise EventError("the policy's bindings are not a list")
    for binding in bindings:
        role = binding.get("role") if isinstance(binding, dict) else None
        members = binding.get("members") if isinstance(binding, dict) else None
        if not isinstance(role, str) or not role or not isinstance(members, list):
            raise EventError("a policy binding without a role and a members list")
        for member in members:
            if not isinstance(member, str) or not member.strip():
                raise EventError(f"a member of {role} is not a name")
            granted[(role, member.strip())] = None
            if not binding.get("condition"):
                unconditional.add((role, member.strip().lower()))
    deltas = [BindingDelta("ADD", role, member) for role, member in granted]
    for role, member in dict.fromkeys(expected):
        if (role, member.strip().lower()) not in unconditional:
            deltas.append(BindingDelta("REMOVE", role, member))
    return tuple(deltas)


def _items(page: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """The objects of a list answer (None, a 404: none)."""
    items = (page or {}).get(key) or []
    if not isinstance(items, list):
        raise EventError(f"the answer's {key} is not a list")
    return [item for item in items if isinstance(item, dict)]


# --- catch-up -------------------------------------------------------------------------------


def catch_up(
    unit: str, since: datetime, until: datetime, environ: Mapping[str, str]
) -> Iterator[Any]:
    """The project's watched Admin Activity audit entries logged in [since, until)."""
    reader = reader_from_env(environ)
    body: dict[str, Any] = {
        "resourceNames": [f"projects/{unit}"],
        "filter": audit_filter(unit, since, until),
        "orderBy": "timestamp asc",
        "pageSize": PAGE_SIZE,
    }
    while True:
        page = reader.entries(body)
        entries = page.get("entries") or []
        if not isinstance(entries, list):
            raise EventError("entries:list answered entries that are not a list")
        yield from entries
        # a page may be short, even empty, and still have a next one
        token = page.get("nextPageToken")
        if not token:
            return
        body = {**body, "pageToken": token}


def audit_filter(project: str, since: datetime, until: datetime) -> str:
    """The Logging query of catch_up: the project's Admin Activity log, the window (always:
    without a timestamp clause entries:list searches the last 24 hours only), the watched
    services and methods as deploy/gcp's log sink filters them."""
    watched = watched_operations()
    services = " OR ".join(f'"{service}"' for service in watched)
    methods = "|".join(
        dict.fromkeys(m.replace(".", "[.]") for names in watched.values() for m in names)
    )
    return " AND ".join(
        [
            f'logName="projects/{project}/logs/{ACTIVITY_LOG}"',
            f'timestamp>="{rfc3339(since)}"',
            f'timestamp<"{rfc3339(until)}"',
            f"protoPayload.serviceName=({services})",
            # =~ is an RE2 match: https://cloud.google.com/logging/docs/view/logging-query-language
            f'protoPayload.methodName=~"(?i)(^|[.])({methods})$"',
        ]
    )


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds, `Z` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- scheduled invocations (Cloud Scheduler -> Pub/Sub -> the function) -----------------------


def sweep_request(doc: Any) -> ScheduledSweep | None:
    """The sweep message (trustwatch.sweep.scheduled) a Pub/Sub delivery carries as its
    data: a `messagePublished` CloudEvent or a push body. None for anything else (an audit
    entry); ValueError for a malformed sweep message."""
    if isinstance(doc, dict) and doc.get("specversion") is not None:
        doc = doc.get("data")
    message = doc.get("message") if isinstance(doc, dict) else None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, str) or len(data) > 4096:  # a sweep message is a few bytes
        return None
    try:
        body = json.loads(base64.b64decode(data, validate=True))
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    return scheduled(body)


def dispatcher(environ: Mapping[str, str]) -> Callable[[dict[str, str]], None]:
    """What the fan-out hands each unit's message to: a publish to TRUSTWATCH_SWEEP_TOPIC
    (`projects/P/topics/T`, the topic that triggers the function), so that each project is
    swept by its own invocation."""
    topic = environ.get("TRUSTWATCH_SWEEP_TOPIC", "").strip()
    if not topic.startswith("projects/") or "/topics/" not in topic:
        raise ValueError(
            f"TRUSTWATCH_SWEEP_TOPIC={topic!r}: expected projects/P/topics/T, the topic "
            "that triggers this function"
        )
    reader = reader_from_env(environ)

    def dispatch(message: dict[str, str]) -> None:
        reader.publish(topic, json.dumps(message).encode())

    return dispatch
