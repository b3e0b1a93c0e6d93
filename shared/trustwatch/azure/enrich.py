"""Fetch what an Event Grid event leaves out: the role assignment or access connector it
names, read from Azure Resource Manager (ARM) with the function's identity.

`arm_enricher()` is the `Enricher` the Azure function wires into its responder. For a
`needs_enrichment` Change it GETs `change.identity` (the resource id) and hands the resource,
as ARM returns it, to `events.complete()`:
- a role assignment through azure-mgmt-authorization (`role_assignments.get_by_id`);
- an access connector, a storage account, a PIM request, a custom role definition or a Lighthouse
  registration (the assignment with its definition expanded) through a plain
  authenticated ARM GET (no SDK is worth its import for one read).
A 404 means the resource is gone by the time we look: the change is reported as not
evaluated with that reason, never as an error. The Activity Log path (`on_activity_log`)
carries the request body of the same operation, so a grant removed within seconds is still
judged there; so is a grant that ARM has not replicated yet and answers 404 for.
Throttling (429) and 5xx are retried by the azure-core retry policy; what still fails
raises, so the platform retries the event and finally dead-letters it.

The SDK and azure-identity are imported on the first enrichment, not at import: most events
need none, and the function's cold start should not pay for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from trustwatch.azure.events import complete
from trustwatch.changes import Change, EventError
from trustwatch.respond import Enricher

ARM_ENDPOINT = "https://management.azure.com"
# A Microsoft.Databricks API version that returns the connector's identity.
ACCESS_CONNECTOR_API_VERSION = "2024-05-01"
# A Microsoft.Storage API version whose GET returns allowBlobPublicAccess,
# allowSharedKeyAccess, networkAcls and publicNetworkAccess ("Storage Accounts - Get
# Properties", https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/get-properties).
STORAGE_API_VERSION = "2023-05-01"
# A function invocation has minutes, not the SDK defaults (10 retries, 300 s reads):
# fail within that budget and let the platform retry the event.
CLIENT_DEFAULTS: dict[str, Any] = {"retry_total": 3, "connection_timeout": 10, "read_timeout": 30}

ASSIGNMENT_DELETED = "role assignment already deleted (404)"
CONNECTOR_DELETED = "access connector already deleted (404)"
STORAGE_DELETED = "storage account already deleted (404)"
# resource type in the id -> (what it is, an API version whose GET returns the body
# events.complete() reads, extra query parameters)
RESOURCE_READS: dict[str, tuple[str, str, dict[str, str]]] = {
    "/roleeligibilityschedulerequests/": ("PIM request", "2020-10-01", {}),
    "/roleassignmentschedulerequests/": ("PIM request", "2020-10-01", {}),
    "/roledefinitions/": ("role definition", "2022-04-01", {}),
    "/registrationdefinitions/": ("Lighthouse registration definition", "2022-10-01", {}),
    # the assignment alone names its definition; expanded, it says what is delegated
    "/registrationassignments/": (
        "Lighthouse registration assignment",
        "2022-10-01",
        {"$expandRegistrationDefinition": "true"},
    ),
}
DELETE_NOT_READABLE = (
    "a deleted role assignment cannot be read back from ARM; "
    "the Activity Log record of the operation carries its principal and role"
)


def arm_enricher(
    *,
    credential: Any = None,
    base_url: str | None = None,
    connection_verify: bool | str = True,
    **client_options: Any,
) -> Enricher:
    """An Enricher reading from ARM at `base_url` (public cloud by default).

    `credential` is any azure-core TokenCredential (default: DefaultAzureCredential, i.e.
    the Function App's managed identity); `connection_verify` a CA bundle path to trust
    instead of the system store; `client_options` go to the azure-core pipeline
    (e.g. `retry_total`).
    """
    reader = arm_reader(
        credential=credential,
        base_url=base_url,
        connection_verify=connection_verify,
        **client_options,
    )

    def enrich(change: Change) -> Change | str:
        if change.kind == "role_assignment.deleted":
            return DELETE_NOT_READABLE  # a GET could only answer 404
        if change.kind == "storage_account.written":
            # by kind: a role assignment's id may name a storage account as its scope
            resource = reader.resource(change.identity, STORAGE_API_VERSION)
            return _completed(change, resource, STORAGE_DELETED)
        lower = change.identity.lower()
        read = next((v for k, v in RESOURCE_READS.items() if k in lower), None)
        if read is not None:
            what, api_version, params = read
            resource = reader.resource(change.identity, api_version, params)
            return _completed(change, resource, f"{what} already deleted (404)")
        if change.kind == "role_assignment.created":
            resource = reader.role_assignment(change.identity)
            return _completed(change, resource, ASSIGNMENT_DELETED)
        if change.kind == "access_connector.written":
            resource = reader.resource(change.identity, ACCESS_CONNECTOR_API_VERSION)
            return _completed(change, resource, CONNECTOR_DELETED)
        return f"no ARM read for {change.kind} changes"

    return enrich


def _completed(change: Change, resource: Any, gone: str) -> Change | str:
    if resource is None:
        return gone
    try:
        return complete(change, resource)
    except EventError as exc:  # asking again would get the same answer
        return f"ARM's answer is not readable: {exc}"


def enricher_from_env(environ: Mapping[str, str]) -> Enricher:
    """arm_enricher() configured by TRUSTWATCH_ARM_ENDPOINT (another cloud's ARM, e.g.
    https://management.chinacloudapi.cn, or a test server) and TRUSTWATCH_ARM_CA_BUNDLE
    (a CA file to trust for it)."""
    return arm_enricher(**arm_settings_from_env(environ))


def arm_settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The `base_url` and `connection_verify` of arm_reader() the app settings give
    (TRUSTWATCH_ARM_ENDPOINT, TRUSTWATCH_ARM_CA_BUNDLE): one ARM for every Azure part."""
    return {
        "base_url": environ.get("TRUSTWATCH_ARM_ENDPOINT") or None,
        "connection_verify": environ.get("TRUSTWATCH_ARM_CA_BUNDLE") or True,
    }


def arm_reader(
    *,
    credential: Any = None,
    base_url: str | None = None,
    connection_verify: bool | str = True,
    **client_options: Any,
) -> ArmReader:
    """The ARM clients of arm_enricher() (same arguments), for the other Azure parts."""
    return ArmReader(
        credential,
        (base_url or ARM_ENDPOINT).rstrip("/"),
        {**CLIENT_DEFAULTS, **client_options, "connection_verify": connection_verify},
    )


class ArmReader:
    """Reads ARM resources by id and lists; the credential and clients are made on first
    use. `calls` counts the HTTP requests sent (a sweep reports them)."""

    def __init__(self, credential: Any, base_url: str, options: dict[str, Any]) -> None:
        self._credential = credential
        self._base_url = base_url
        # The token audience is the ARM endpoint itself (sovereign clouds differ).
        self._scope = f"{base_url}/.default"
        self._options = options
        self._authorization: Any = None
        self._pipeline: Any = None
        self._clients: dict[tuple[type, str], Any] = {}
        self.calls = 0  # HTTP requests sent to ARM, retries included

    def _token_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def role_assignment(self, assignment_id: str) -> dict[str, Any] | None:
        """The assignment as ARM returns it, or None if ARM answers 404."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            # `cls` hands back the response body itself: the ARM JSON complete() reads,
            # with nothing lost to a model round trip.
            return self.authorization().role_assignments.get_by_id(
                assignment_id, cls=lambda response, _model, _headers: _json(response)
            )
        except ResourceNotFoundError:
            return None

    def authorization(self) -> Any:
        """The AuthorizationManagementClient (azure-mgmt-authorization), made on first use."""
        if self._authorization is None:
            from azure.mgmt.authorization import AuthorizationManagementClient

            # the *_by_id operations never use the client's subscription: one client
            # serves them all.
            self._authorization = self.client(
                AuthorizationManagementClient, "00000000-0000-0000-0000-000000000000"
            )
        return self._authorization

    def client(self, client_class: type, subscription_id: str) -> Any:
        """An azure-mgmt client (AuthorizationManagementClient, MonitorManagementClient…)
        of `subscription_id` on this endpoint, with this credential, retry and timeouts."""
        key = (client_class, subscription_id)
        if key not in self._clients:
            self._clients[key] = client_class(
                self._token_credential(),
                subscription_id,
                base_url=self._base_url,
                credential_scopes=[self._scope],
                per_retry_policies=[_counting_policy(self)],
                **self._options,
            )
        return self._clients[key]

    def resource(
        self, resource_id: str, api_version: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """GET any ARM resource by id, or None if ARM answers 404."""
        return self._read(self._send("GET", resource_id, api_version, params))

    def pages(
        self, path: str, api_version: str, params: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]] | None:
        """The items of an ARM list (`{"value": [...], "nextLink": …}`), every page
        followed; None if ARM answers 404 on the first page (the parent is gone)."""
        first = self.resource(path, api_version, params)
        if first is None:
            return None

        def items() -> Iterator[dict[str, Any]]:
            page: dict[str, Any] | None = first
            while page is not None:
                value = page.get("value")
                if not isinstance(value, list):  # not a list page: no items is no answer
                    raise ValueError(f"ARM list {path}: a page without a value list")
                yield from (v for v in value if isinstance(v, dict))
                link = page.get("nextLink")
                if not isinstance(link, str) or not link:
                    return
                if not link.lower().startswith(self._base_url.lower() + "/"):
                    # the bearer token goes wherever the link points
                    raise ValueError(f"ARM list nextLink leaves {self._base_url}: {link[:200]}")
                # a nextLink carries its query (api-version, skip token) already
                page = self._read(self._request("GET", link, {}))
                if page is None:  # the list broke off: what follows is unknown, not empty
                    raise ValueError(f"ARM list {path}: a later page answered 404")

        return items()

    def delete(self, resource_id: str, api_version: str) -> None:
        """DELETE any ARM resource by id: 200 (deleted) or 204 (none there), else raises
        with ARM's error code and message (e.g. 403 AuthorizationFailed)."""
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.core.exceptions import ARMErrorFormat

        response = self._send("DELETE", resource_id, api_version)
        if response.status_code not in (200, 204):
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)

    @staticmethod
    def _read(response: Any) -> dict[str, Any] | None:
        """A GET's body; None for 404; raises for any other failure."""
        from azure.core.exceptions import HttpResponseError

        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        body: dict[str, Any] = response.json()
        return body

    def _send(
        self,
        method: str,
        resource_id: str,
        api_version: str,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        query = {**(params or {}), "api-version": api_version}
        return self._request(method, self._base_url + resource_id, query)

    def _request(self, method: str, url: str, params: Mapping[str, str]) -> Any:
        from azure.core.rest import HttpRequest

        if self._pipeline is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import RetryPolicy, UserAgentPolicy
            from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

            policies = [
                UserAgentPolicy(sdk_moniker="trustwatch"),
                RetryPolicy(**self._options),
                _counting_policy(self),
                ARMChallengeAuthenticationPolicy(self._token_credential(), self._scope),
            ]
            self._pipeline = PipelineClient(self._base_url, policies=policies, **self._options)
        return self._pipeline.send_request(HttpRequest(method, url, params=dict(params)))


def _counting_policy(reader: ArmReader) -> Any:
    """A pipeline policy counting each request sent, placed after the retry policy (so
    each attempt counts): the `calls` a sweep reports."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class Counted(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            reader.calls += 1

    return Counted()


def _json(pipeline_response: Any) -> Any:
    return json.loads(pipeline_response.http_response.text())
