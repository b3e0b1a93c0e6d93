"""trustwatch.gcp.enrich against a local stand-in of the Google Cloud APIs (tests/gcpserver.py):
what each kind of incomplete entry reads, and what 404, 403, throttling and outages do.

These run the enricher in-process with anonymous credentials; test_function_gcp.py runs it
inside the real function, signed in through the metadata server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from gcpserver import GcpServer, policy, service_account
from test_gcp_events import (
    BUCKET,
    COMPUTE,
    MALLORY,
    PROJECT,
    TERRAFORM,
    UC_SA,
    UNIQUE_ID,
    add,
    bucket_policy,
    project_policy,
    sa_call,
    sa_policy,
)
from trustwatch.changes import Change
from trustwatch.engine import evaluate
from trustwatch.gcp import enrich
from trustwatch.gcp.changes import PolicySet
from trustwatch.gcp.enrich import GcpApiError, gcp_enricher
from trustwatch.intake import parse_document

SA = "serviceAccount:"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
PROJECT_POLICY = {
    "roles/logging.logWriter": [SA + COMPUTE],
    "roles/monitoring.metricWriter": [SA + COMPUTE],
    "roles/owner": [SA + TERRAFORM],
}
BUCKET_POLICY = {
    "roles/storage.objectAdmin": [UC_SA],
    "roles/storage.legacyBucketReader": [UC_SA],
}


@pytest.fixture
def gcp() -> Iterator[GcpServer]:
    with GcpServer() as server:
        yield server


@pytest.fixture
def enricher(gcp: GcpServer) -> Any:
    from google.auth.credentials import AnonymousCredentials

    return gcp_enricher(credentials=AnonymousCredentials(), endpoint=gcp.url)


def change_of(entry: dict[str, Any]) -> Change:
    (parsed,) = parse_document(entry, "test")
    (change,) = parsed.changes
    assert change.needs_enrichment, change
    return change


def without_policy(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with neither binding deltas nor a policy logged."""
    proto = entry["protoPayload"]
    for key in ("serviceData", "metadata", "response"):
        proto.pop(key, None)
    proto.get("request", {}).pop("policy", None)
    return entry


def rules_of(change: Change | str, baseline) -> list[tuple[str, str]]:
    assert isinstance(change, Change), change
    return [(f.rule, f.identity) for f in evaluate(change, baseline)]


# --- what each incomplete entry reads ------------------------------------------------------


def test_project_policy_is_read_when_the_entry_logs_none(gcp, enricher, baseline):
    gcp.policies[f"projects/{PROJECT}"] = policy(PROJECT_POLICY | {TOKEN_CREATOR: [MALLORY]})
    done = enricher(change_of(without_policy(project_policy(add(TOKEN_CREATOR, MALLORY)))))
    assert ("gcp.iam.impersonation_granted", COMPUTE) in rules_of(done, baseline)
    (request,) = gcp.requests
    assert (request.method, request.path) == ("POST", f"/v3/projects/{PROJECT}:getIamPolicy")
    assert request.body == {"options": {"requestedPolicyVersion": 3}}
    assert "authorization" not in request.headers  # anonymous credentials


def test_folder_and_organization_policies_are_read_from_resource_manager(gcp, enricher):
    entry = without_policy(project_policy(add(TOKEN_CREATOR, MALLORY)))
    entry["protoPayload"]["resourceName"] = "folders/4711"
    entry["resource"] = {"type": "folder", "labels": {"folder_id": "4711"}}
    entry["logName"] = "folders/4711/logs/cloudaudit.googleapis.com%2Factivity"
    gcp.policies["folders/4711"] = policy({TOKEN_CREATOR: [MALLORY]})
    done = enricher(change_of(entry))
    assert isinstance(done, Change) and not done.needs_enrichment
    assert [r.path for r in gcp.requests] == ["/v3/folders/4711:getIamPolicy"]


def test_bucket_policy_is_read_from_storage(gcp, enricher, baseline):
    gcp.policies[f"buckets/{BUCKET}"] = policy(
        BUCKET_POLICY | {"roles/storage.objectViewer": ["allUsers"]}
    )
    done = enricher(change_of(without_policy(bucket_policy(BUCKET, add("roles/x", MALLORY)))))
    assert rules_of(done, baseline) == [("gcp.bucket.binding_added", BUCKET)]
    (request,) = gcp.requests
    assert (request.method, request.path) == ("GET", f"/storage/v1/b/{BUCKET}/iam")
    assert request.query == {"optionsRequestedPolicyVersion": "3"}


def test_service_account_policy_is_read_from_iam(gcp, enricher, baseline):
    gcp.accounts[COMPUTE] = service_account(COMPUTE, UNIQUE_ID)
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = policy({TOKEN_CREATOR: [MALLORY]})
    done = enricher(change_of(without_policy(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)))))
    assert rules_of(done, baseline) == [("gcp.iam.impersonation_granted", COMPUTE)]
    (request,) = gcp.requests
    path = f"/v1/projects/-/serviceAccounts/{COMPUTE}:getIamPolicy"
    # iam v1: the version is a query parameter, the body empty
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/getIamPolicy
    assert (request.method, request.path, request.query, request.body) == (
        "POST",
        path,
        {"options.requestedPolicyVersion": "3"},
        None,
    )


def test_account_named_by_unique_id_is_looked_up(gcp, enricher, baseline):
    gcp.accounts[COMPUTE] = service_account(COMPUTE, UNIQUE_ID)
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), email_at="nowhere")
    done = enricher(change_of(entry))
    assert rules_of(done, baseline) == [("gcp.iam.impersonation_granted", COMPUTE)]
    assert [(r.method, r.path) for r in gcp.requests] == [
        ("GET", f"/v1/projects/-/serviceAccounts/{UNIQUE_ID}")
    ]


def test_unique_id_only_and_no_policy_takes_both_reads(gcp, enricher, baseline):
    gcp.accounts[COMPUTE] = service_account(COMPUTE, UNIQUE_ID)
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = policy({TOKEN_CREATOR: [MALLORY]})
    entry = without_policy(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), email_at="nowhere"))
    done = enricher(change_of(entry))
    assert rules_of(done, baseline) == [("gcp.iam.impersonation_granted", COMPUTE)]
    assert [r.path for r in gcp.requests] == [
        f"/v1/projects/-/serviceAccounts/{UNIQUE_ID}",
        f"/v1/projects/-/serviceAccounts/{COMPUTE}:getIamPolicy",
    ]


def test_disabled_account_named_by_unique_id(gcp, enricher, baseline):
    gcp.accounts[COMPUTE] = service_account(COMPUTE, UNIQUE_ID)
    entry = sa_call("DisableServiceAccount", COMPUTE)
    del entry["resource"]["labels"]["email_id"]
    done = enricher(change_of(entry))
    assert rules_of(done, baseline) == [("gcp.sa.deleted_or_disabled", COMPUTE)]


# --- what cannot be read --------------------------------------------------------------------


def test_deleted_account_is_not_evaluated(gcp, enricher):
    entry = sa_call("DeleteServiceAccount", COMPUTE)
    del entry["resource"]["labels"]["email_id"]
    assert enricher(change_of(entry)) == enrich.ACCOUNT_DELETED
    assert len(gcp.requests) == 1


def test_policy_of_a_resource_gone_is_not_evaluated(gcp, enricher):
    done = enricher(change_of(without_policy(bucket_policy(BUCKET, add("roles/x", MALLORY)))))
    assert done == f"bucket {BUCKET} already deleted (404)"


def test_unreadable_policy_is_not_evaluated(gcp, enricher):
    gcp.policies[f"projects/{PROJECT}"] = {"bindings": "everyone"}
    done = enricher(change_of(without_policy(project_policy(add(TOKEN_CREATOR, MALLORY)))))
    assert isinstance(done, str) and "not readable" in done


def test_hmac_key_naming_no_account_is_not_read(gcp, enricher):
    from test_gcp_attack_paths import hmac_created

    entry = hmac_created(COMPUTE, in_request=False)
    del entry["protoPayload"]["response"]["metadata"]["serviceAccountEmail"]
    assert enricher(change_of(entry)) == enrich.NO_ACCOUNT_NAME
    assert gcp.requests == []


# --- failures: refused, throttled, down -----------------------------------------------------


def test_refusal_raises_so_the_platform_retries(gcp, enricher):
    gcp.policies[f"projects/{PROJECT}"] = policy(PROJECT_POLICY)
    gcp.fail(403)
    change = change_of(without_policy(project_policy(add(TOKEN_CREATOR, MALLORY))))
    with pytest.raises(GcpApiError, match="HTTP 403: injected failure") as raised:
        enricher(change)
    assert raised.value.status == 403 and len(gcp.requests) == 1  # not retried in-process


def test_throttling_is_retried_by_the_session(gcp, enricher, baseline):
    gcp.policies[f"projects/{PROJECT}"] = policy(PROJECT_POLICY | {TOKEN_CREATOR: [MALLORY]})
    gcp.fail(429, headers={"Retry-After": "0"})
    gcp.fail(503, headers={"Retry-After": "0"})
    done = enricher(change_of(without_policy(project_policy(add(TOKEN_CREATOR, MALLORY)))))
    assert ("gcp.iam.impersonation_granted", COMPUTE) in rules_of(done, baseline)
    assert len(gcp.requests) == 3


def test_outage_raises_after_the_retries(gcp):
    from google.auth.credentials import AnonymousCredentials

    enricher = gcp_enricher(
        credentials=AnonymousCredentials(), endpoint=gcp.url, retries={"backoff_factor": 0}
    )
    gcp.fail(500, times=10)
    change = change_of(without_policy(project_policy(add(TOKEN_CREATOR, MALLORY))))
    with pytest.raises(GcpApiError, match="HTTP 500"):
        enricher(change)
    assert len(gcp.requests) == 1 + enrich.RETRIES["total"]


# --- settings -------------------------------------------------------------------------------


def test_endpoint_template_and_single_base():
    reader = enrich.ApiClient(None, "https://{service}-psc.p.googleapis.com/", {})
    assert reader.url("iam", "/v1/x") == "https://iam-psc.p.googleapis.com/v1/x"
    reader = enrich.ApiClient(None, "http://127.0.0.1:8080", {})
    assert reader.url("storage", "/storage/v1/b") == "http://127.0.0.1:8080/storage/v1/b"
    default = enrich.ApiClient(None, enrich.API_ENDPOINT, {})
    path = "/v3/projects/p:getIamPolicy"
    assert default.url("cloudresourcemanager", path) == (
        "https://cloudresourcemanager.googleapis.com/v3/projects/p:getIamPolicy"
    )


def test_complete_change_is_not_read(gcp, enricher):
    (parsed,) = parse_document(project_policy(add(TOKEN_CREATOR, MALLORY)), "test")
    (change,) = parsed.changes
    assert isinstance(change.payload, PolicySet) and not change.needs_enrichment
    assert enricher(change) == "no GCP API read for resource.iam_policy_set changes"
    assert gcp.requests == []


def test_google_auth_is_imported_on_first_enrichment_only():
    code = (
        "import sys\n"
        "from trustwatch.gcp.enrich import enricher_from_env\n"
        "enricher_from_env({'TRUSTWATCH_GCP_API_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "loaded = [m for m in ('google.auth', 'requests', 'urllib3') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
