"""Fetch what a Cloud Audit Log entry leaves out, from the Google Cloud APIs, with the
function's own service account.

`gcp_enricher()` is the `Enricher` the GCP function wires into its responder
(`enricher_from_env`, found by trustwatch.clouds). For a `needs_enrichment` Change it reads
what the entry lacks and hands it, as the API returns it, to `events.complete()`:

- an account named by unique id only ("service account email not in event"): the
  `ServiceAccount` from iam v1 `GET projects/-/serviceAccounts/{unique id}`;
- a SetIamPolicy that logs neither the binding deltas nor the policy ("policy not in
  event"): the resource's current IAM policy, version 3 (`options.requestedPolicyVersion`)
  — cloudresourcemanager v3 `POST {projects|folders|organizations}/X:getIamPolicy`, iam v1
  `POST projects/-/serviceAccounts/{email}:getIamPolicy`, storage v1
  `GET b/{bucket}/iam?optionsRequestedPolicyVersion=3`. The rules then judge that policy
  as the full policy the call set (a later change may already be in it, as with Azure);
- a bucket update (`storage.buckets.update`: "bucket settings not in event"): the bucket's
  `iamConfiguration` (public access prevention, uniform bucket-level access) from storage
  v1 `GET b/{bucket}?fields=iamConfiguration`, judged as the call's after-state (the same
  caveat: a later update may already be in it);
- an HMAC key update naming the key only ("HMAC key's account not in event"): the key's
  metadata (`serviceAccountEmail`, `state`) from storage v1
  `GET projects/{project}/hmacKeys/{access id}`; the logged state, if any, is kept.

An account named by unique id whose entry logs no policy either takes both reads.
A 404 means the account or resource is gone by the time we look: the change is reported
as not evaluated with that reason, never as an error; so is an HMAC key entry naming no
account at all (there is nothing to look up). Throttling (429) and 5xx, and connection
errors, are retried by the session's urllib3 retry policy (`RETRIES`, honouring
Retry-After); what still fails raises `GcpApiError` (a 403 too: the grant below not
propagated yet), so the platform retries the event and finally dead-letters it.

The function's identity needs exactly `PERMISSIONS` (`deploy/gcp/main.tf` grants them as
a custom role; tests/test_deploy.py checks the two agree).

Settings (the function's environment):
- `TRUSTWATCH_GCP_API_ENDPOINT`: where the APIs are. A URL template with `{service}`
  (`cloudresourcemanager`, `iam`, `storage`), e.g. `https://{service}-myendpoint.p.googleapis.com`
  for Private Service Connect endpoints; without `{service}`, one base URL for all three
  (a proxy, or a test server). Default `https://{service}.googleapis.com`.
- the credentials are google-auth's application default credentials: on Cloud Functions
  the function's service account from the metadata server (`GCE_METADATA_HOST` moves it).

google-auth and requests are imported on the first enrichment, not at import: most
entries need none, and the function's cold start should not pay for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from trustwatch.changes import Change, EventError
from trustwatch.gcp.changes import AccountPayload, BucketSettings, HmacKeyUpdated, PolicySet
from trustwatch.gcp.events import complete
from trustwatch.respond import Enricher

API_ENDPOINT = "https://{service}.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
POLICY_VERSION = 3  # conditional bindings are returned as they are, not refused
# urllib3 Retry settings: a function invocation has minutes; fail within that budget and
# let the platform retry the event.
RETRIES: dict[str, Any] = {
    "total": 3,
    "backoff_factor": 0.5,
    "status_forcelist": (429, 500, 502, 503, 504),
    "allowed_methods": None,  # getIamPolicy is a POST, and a read: retry it too
    "raise_on_status": False,  # the last answer is returned and reported below
    "respect_retry_after_header": True,
}
TIMEOUT_S = (10, 30)  # connect, read

# What each read needs: the function identity's custom role holds exactly these.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "project": ("resourcemanager.projects.getIamPolicy",),
    "folder": ("resourcemanager.folders.getIamPolicy",),
    "organization": ("resourcemanager.organizations.getIamPolicy",),
    "service_account": ("iam.serviceAccounts.get", "iam.serviceAccounts.getIamPolicy"),
    # storage.buckets.get: a bucket's metadata, its iamConfiguration with it
    # https://cloud.google.com/storage/docs/json_api/v1/buckets/get
    "bucket": ("storage.buckets.getIamPolicy", "storage.buckets.get"),
    # an HMAC key's metadata (its service account, its state)
    # https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/get
    "hmac_key": ("storage.hmacKeys.get",),
}
# the reads a project-level deployment makes (its sink sees no folder or org entries)
PROJECT_READS = ("project", "service_account", "bucket", "hmac_key")

ACCOUNT_DELETED = "service account already deleted (404)"
NO_ACCOUNT_NAME = "service account email not in event, and no unique id to look it up by"
NO_HMAC_KEY_NAME = "HMAC key's account not in event, and no project and access id to read it by"
_ACCOUNT = re.compile(r"serviceAccounts/([^/]+)(?:/|$)")


class GcpApiError(RuntimeError):
    """A Google Cloud API read that failed for another reason than "not found"."""

    def __init__(self, method: str, url: str, status: int, message: str) -> None:
        super().__init__(f"{method} {url}: HTTP {status}: {message}")
        self.status = status


def gcp_enricher(
    *,
    credentials: Any = None,
    endpoint: str | None = None,
    retries: Mapping[str, Any] | None = None,
) -> Enricher:
    """An Enricher reading from the Google Cloud APIs at `endpoint` (see the module doc).

    `credentials` is any google-auth Credentials (default: `google.auth.default()`, the
    function's service account; tests pass `AnonymousCredentials()`); `retries` overrides
    `RETRIES` (urllib3 `Retry` keyword arguments).
    """
    reader = ApiClient(credentials, endpoint or API_ENDPOINT, {**RETRIES, **(retries or {})})

    def enrich(change: Change) -> Change | str:
        for _ in range(2):  # an account named by unique id may lack its policy too
            payload = change.payload
            if isinstance(payload, HmacKeyUpdated):
                if not payload.project or not payload.key_id:
                    return NO_HMAC_KEY_NAME
                fetched = reader.hmac_key(payload.project, payload.key_id)
                gone = f"HMAC key {payload.key_id} already deleted (404)"
            elif isinstance(payload, AccountPayload) and not payload.email:
                account = payload.unique_id or _account_in(change.identity)
                if not account:
                    return NO_ACCOUNT_NAME
                fetched = reader.service_account(account)
                gone = ACCOUNT_DELETED
            elif isinstance(payload, BucketSettings):
                fetched = reader.bucket(payload.bucket)
                gone = f"bucket {payload.bucket} already deleted (404)"
            elif (
                isinstance(payload, PolicySet)
                and payload.deltas is None
                and payload.bindings is None
            ):
                fetched = reader.policy(payload)
                what = payload.resource_type.replace("_", " ")
                gone = f"{what} {payload.resource} already deleted (404)"
            else:
                return change.not_evaluated or f"no GCP API read for {change.kind} changes"
            if fetched is None:
                return gone
            try:
                change = complete(change, fetched)
            except (EventError, ValueError) as exc:  # asking again would get the same answer
                return f"the GCP API's answer is not readable: {exc}"
            if not change.needs_enrichment:
                return change
        return change.not_evaluated

    return enrich


def enricher_from_env(environ: Mapping[str, str]) -> Enricher:
    """gcp_enricher() configured by TRUSTWATCH_GCP_API_ENDPOINT (see the module doc)."""
    return gcp_enricher(endpoint=environ.get("TRUSTWATCH_GCP_API_ENDPOINT") or None)


def _account_in(identity: str) -> str:
    """The account id of a resource name (projects/-/serviceAccounts/ID[/keys/K])."""
    m = _ACCOUNT.search(identity)
    return m[1] if m else ""


class ApiClient:
    """The Google Cloud REST APIs over one AuthorizedSession, made on first use; the reads
    the enricher makes (trustwatch.gcp.remediate writes through it too)."""

    def __init__(self, credentials: Any, endpoint: str, retries: dict[str, Any]) -> None:
        self._credentials = credentials
        self._endpoint = endpoint.rstrip("/")
        self._retries = retries
        self._session: Any = None

    def url(self, service: str, path: str) -> str:
        if "{service}" in self._endpoint:
            return self._endpoint.replace("{service}", service) + path
        return self._endpoint + path

    def _http(self) -> Any:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            credentials = self._credentials
            if credentials is None:
                credentials, _ = google.auth.default(scopes=list(SCOPES))
            session = AuthorizedSession(credentials)
            adapter = HTTPAdapter(max_retries=Retry(**self._retries))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._session = session
        return self._session

    def call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any] | None:
        response = self._http().request(method, url, timeout=TIMEOUT_S, **kwargs)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GcpApiError(method, url, response.status_code, _message(response))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise EventError(f"{method} {url} answered 200 without a JSON object")
        return body

    def service_account(self, account: str) -> dict[str, Any] | None:
        """The ServiceAccount (email or unique id) as iam v1 returns it; None on 404."""
        path = f"/v1/projects/-/serviceAccounts/{quote(account, safe='@')}"
        return self.call("GET", self.url("iam", path))

    def bucket(self, name: str) -> dict[str, Any] | None:
        """The bucket's iamConfiguration (a partial Bucket resource); None on 404."""
        url = self.url("storage", f"/storage/v1/b/{quote(name, safe='')}")
        return self.call("GET", url, params={"fields": "iamConfiguration"})

    def hmac_key(self, project: str, access_id: str) -> dict[str, Any] | None:
        """The HMAC key's metadata as storage v1 hmacKeys.get returns it; None on 404."""
        path = (
            f"/storage/v1/projects/{quote(project, safe='')}/hmacKeys/{quote(access_id, safe='')}"
        )
        return self.call("GET", self.url("storage", path))

    def policy(self, payload: PolicySet) -> dict[str, Any] | None:
        """The current IAM policy of the resource the payload names; None on 404."""
        options = {"options": {"requestedPolicyVersion": POLICY_VERSION}}
        resource = payload.resource
        if payload.resource_type == "bucket":
            path = f"/storage/v1/b/{quote(resource, safe='')}/iam"
            url = self.url("storage", path)
            return self.call("GET", url, params={"optionsRequestedPolicyVersion": POLICY_VERSION})
        if payload.resource_type == "service_account":
            # iam v1 takes the options as a query parameter, and "the request body must be
            # empty": https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/getIamPolicy
            path = f"/v1/projects/-/serviceAccounts/{quote(resource, safe='@')}:getIamPolicy"
            version = {"options.requestedPolicyVersion": str(POLICY_VERSION)}
            return self.call("POST", self.url("iam", path), params=version)
        # projects/P, folders/F, organizations/O
        kind, _, name = resource.partition("/")
        path = f"/v3/{kind}/{quote(name, safe='')}:getIamPolicy"
        return self.call("POST", self.url("cloudresourcemanager", path), json=options)


def _message(response: Any) -> str:
    """Google's error message ({"error": {"message": …}}), else the start of the body."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    except (ValueError, AttributeError):
        pass
    return json.dumps(response.text[:200])
