"""trustwatch.gcp.remediate against the local Google Cloud API stand-in (tests/gcpserver.py,
with the services' etag semantics): findings made by the real parser and rules from audit
log entries, planned and applied through the one core path (trustwatch.remediation).

The GCP semantics relied on, from Google's documentation:
- IAM policies are changed by read-modify-write; the etag makes a write with a stale read
  fail (409 ABORTED), and the whole read-modify-write is then retried:
  https://cloud.google.com/iam/docs/policies#etag
- a policy with conditional bindings is read with `requestedPolicyVersion: 3` and written
  with `version: 3`; a binding with a condition is a separate binding of the same role:
  https://cloud.google.com/iam/docs/policies#versions,
  https://cloud.google.com/iam/docs/conditions-overview
- Cloud Storage's bucket policy: `PUT storage/v1/b/BUCKET/iam`, the Policy in the body:
  https://cloud.google.com/storage/docs/json_api/v1/buckets/setIamPolicy
- a service account key is disabled with `keys/K:disable`, deleted with DELETE:
  https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/disable
- an HMAC key is deactivated by hmacKeys.update with `state: INACTIVE`:
  https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
- a bucket's public access prevention and uniform bucket-level access are
  `iamConfiguration` fields a bucket PATCH sets:
  https://cloud.google.com/storage/docs/json_api/v1/buckets/patch

The same paths through the real function and the CLI: test_remediate_gcp_function.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import DATA
from gcpserver import GcpServer, hmac_key_metadata, policy, service_account_key
from test_gcp_attack_paths import hmac_created
from test_gcp_events import (
    BUCKET,
    COMPUTE,
    MALLORY,
    PROJECT,
    TERRAFORM,
    UC_SA,
    add,
    bucket_policy,
    bucket_resource,
    bucket_update,
    key_created,
    project_policy,
    remove,
    sa_policy,
)
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.dedup import MemoryDedupStore
from trustwatch.engine import evaluate
from trustwatch.findings import Finding
from trustwatch.gcp.remediate import GcpRemediator, remediator_from_env
from trustwatch.intake import parse_document
from trustwatch.remediation import CIRCUIT_RULE, Breaker, remediate

BASELINE_FILE = DATA / "baselines" / "gcp-remediate.yaml"
SA = "serviceAccount:"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
REPORTING = "databricks-reporting@dbx-prod-4821.iam.gserviceaccount.com"
STORAGE_SA = "databricks-storage@dbx-prod-4821.iam.gserviceaccount.com"
PROJECT_KEY = f"projects/{PROJECT}"
COMPUTE_KEY = f"serviceAccounts/{COMPUTE}"
BUCKET_KEY = f"buckets/{BUCKET}"
PROJECT_POLICY = {
    "roles/logging.logWriter": [SA + COMPUTE, SA + REPORTING],
    "roles/monitoring.metricWriter": [SA + COMPUTE],
    "roles/storage.objectAdmin": [SA + STORAGE_SA],
    "roles/owner": [SA + TERRAFORM],
}
BUCKET_POLICY = {"roles/storage.objectAdmin": [UC_SA], "roles/storage.legacyBucketReader": [UC_SA]}
KEY_ID = "69049163b190437ab9279b28e8afa24bb5c5b076"
HMAC_ID = "GOOG1EXAMPLEAEU"


@pytest.fixture(scope="module")
def rbaseline() -> Baseline:
    return load_baseline(BASELINE_FILE)


@pytest.fixture
def gcp() -> Iterator[GcpServer]:
    with GcpServer() as server:
        yield server


def remediator_for(gcp: GcpServer, **kwargs: Any) -> GcpRemediator:
    from google.auth.credentials import AnonymousCredentials
    from trustwatch.gcp.enrich import RETRIES, ApiClient

    retries = {**RETRIES, "backoff_factor": 0}
    return GcpRemediator(ApiClient(AnonymousCredentials(), gcp.url, retries), **kwargs)


def findings_of(entry: dict[str, Any], baseline: Baseline) -> list[Finding]:
    (parsed,) = parse_document(entry, "test")
    return [f for change in parsed.changes for f in evaluate(change, baseline)]


def run(
    gcp: GcpServer,
    entry: dict[str, Any],
    baseline: Baseline,
    *,
    apply: bool = True,
    breaker: Breaker | None = None,
    **kwargs: Any,
) -> list[Finding]:
    remediator = remediator_for(gcp, **kwargs)
    found = findings_of(entry, baseline)
    assert found, "the entry should give a finding"
    return remediate(found, baseline, lambda _cloud: remediator, apply=apply, breaker=breaker)


def one(findings: list[Finding]) -> Finding:
    (finding,) = findings
    return finding


def members(gcp: GcpServer, key: str, role: str) -> list[str]:
    return sorted(
        m
        for b in gcp.policies[key]["bindings"]
        if b["role"] == role and not b.get("condition")
        for m in b["members"]
    )


# --- each action, applied and verified -------------------------------------------------------


def test_impersonation_grant_on_the_account_is_removed(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY, "user:bob@example.com"]})
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.rule == "gcp.iam.impersonation_granted"
    assert (done.remediation.status, done.remediation.action) == ("applied", "remove_iam_binding")
    assert done.remediation.target == f"projects/-/serviceAccounts/{COMPUTE}"
    assert done.remediation.before == {
        "role": TOKEN_CREATOR,
        "members": [MALLORY, "user:bob@example.com"],
    }
    assert done.remediation.after == {"role": TOKEN_CREATOR, "members": ["user:bob@example.com"]}
    # bob is not what the finding is about: still there (he has his own finding)
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == ["user:bob@example.com"]
    read, write, reread = gcp.requests
    assert read.path == f"/v1/projects/-/serviceAccounts/{COMPUTE}:getIamPolicy"
    assert read.query == {"options.requestedPolicyVersion": "3"} and read.body is None
    assert write.path == f"/v1/projects/-/serviceAccounts/{COMPUTE}:setIamPolicy"
    assert write.body["policy"]["etag"] == "BwX1a2b3c4d="  # the etag read
    assert write.body["policy"]["version"] == 1  # kept: no condition in the policy
    assert reread.path == read.path  # verified by reading back


def test_project_grant_is_removed_and_an_emptied_binding_dropped(gcp, rbaseline):
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {TOKEN_CREATOR: [MALLORY]})
    # a project grant reaches every protected account of the project: one finding each
    done = run(gcp, project_policy(add(TOKEN_CREATOR, MALLORY)), rbaseline)
    assert {f.rule for f in done} == {"gcp.iam.impersonation_granted"}
    by_identity = {f.identity: f.remediation for f in done}
    compute = by_identity.pop(COMPUTE)
    assert compute.status == "applied", compute.detail
    assert compute.after is None  # the binding is gone
    # the responder's own account is in alert mode (the defaults'): its plan is shown; every
    # other account of the project finds the member removed already
    responder = "trustwatch@dbx-prod-4821.iam.gserviceaccount.com"
    assert by_identity.pop(responder).status == "none"
    others = set(rbaseline.gcp.projects[PROJECT].service_accounts) - {COMPUTE}
    assert {i: r.status for i, r in by_identity.items()} == dict.fromkeys(others, "skipped")
    roles = [b["role"] for b in gcp.policies[PROJECT_KEY]["bindings"]]
    assert roles == list(PROJECT_POLICY)  # everything else as it was, in order
    (write,) = gcp.writes()
    assert write.path == f"/v3/projects/{PROJECT}:setIamPolicy"


def test_unexpected_project_role_of_a_baseline_account_is_removed(gcp, rbaseline):
    admin = "roles/compute.admin"
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {admin: [SA + COMPUTE]})
    done = one(run(gcp, project_policy(add(admin, SA + COMPUTE)), rbaseline))
    assert (done.rule, done.severity) == ("gcp.iam.binding_added", "critical")
    assert done.remediation.status == "applied"
    assert admin not in {b["role"] for b in gcp.policies[PROJECT_KEY]["bindings"]}


def test_watched_bucket_binding_is_removed(gcp, rbaseline):
    gcp.policies[BUCKET_KEY] = policy(BUCKET_POLICY | {"roles/storage.objectViewer": ["allUsers"]})
    entry = bucket_policy(BUCKET, add("roles/storage.objectViewer", "allUsers"))
    done = one(run(gcp, entry, rbaseline))
    assert (done.rule, done.remediation.action) == (
        "gcp.bucket.binding_added",
        "remove_bucket_binding",
    )
    assert done.remediation.status == "applied"
    assert done.remediation.target == f"projects/_/buckets/{BUCKET}"
    assert {b["role"] for b in gcp.policies[BUCKET_KEY]["bindings"]} == set(BUCKET_POLICY)
    read, write, _ = gcp.requests
    assert (read.method, read.query) == ("GET", {"optionsRequestedPolicyVersion": "3"})
    assert (write.method, write.path) == ("PUT", f"/storage/v1/b/{BUCKET}/iam")
    assert write.body["etag"] == "BwX1a2b3c4d="


def test_storage_grant_on_the_project_reaching_the_bucket_is_removed(gcp, rbaseline):
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {"roles/storage.objectViewer": [MALLORY]})
    entry = project_policy(add("roles/storage.objectViewer", MALLORY))
    done = one(run(gcp, entry, rbaseline))
    assert (done.rule, done.identity) == ("gcp.bucket.binding_added", BUCKET)
    assert (done.remediation.action, done.remediation.status) == ("remove_iam_binding", "applied")
    assert done.remediation.target == PROJECT_KEY
    assert "roles/storage.objectViewer" not in {
        b["role"] for b in gcp.policies[PROJECT_KEY]["bindings"]
    }


def test_user_managed_key_is_disabled(gcp, rbaseline):
    gcp.keys[f"{COMPUTE}/{KEY_ID}"] = service_account_key(COMPUTE, KEY_ID)
    done = one(run(gcp, key_created(COMPUTE), rbaseline))
    assert (done.rule, done.remediation.status) == ("gcp.sa.key_created", "applied")
    assert done.remediation.action == "disable_service_account_key"
    assert (done.remediation.before, done.remediation.after) == (
        {"key": KEY_ID, "disabled": False},
        {"key": KEY_ID, "disabled": True},
    )
    assert gcp.keys[f"{COMPUTE}/{KEY_ID}"]["disabled"] is True
    (write,) = gcp.writes()
    assert (write.method, write.path) == (
        "POST",
        f"/v1/projects/-/serviceAccounts/{COMPUTE}/keys/{KEY_ID}:disable",
    )


def test_user_managed_key_is_deleted_when_configured(gcp, rbaseline):
    gcp.keys[f"{COMPUTE}/{KEY_ID}"] = service_account_key(COMPUTE, KEY_ID)
    done = one(run(gcp, key_created(COMPUTE), rbaseline, key_action="delete"))
    assert (done.remediation.action, done.remediation.status) == (
        "delete_service_account_key",
        "applied",
    )
    assert f"{COMPUTE}/{KEY_ID}" not in gcp.keys
    assert [w.method for w in gcp.writes()] == ["DELETE"]


def test_key_action_comes_from_the_environment(caplog):
    assert remediator_from_env({}).key_action == "disable"
    assert remediator_from_env({"TRUSTWATCH_GCP_KEY_ACTION": "Delete"}).key_action == "delete"
    # a typo falls back to the reversible action, loudly: the alerts must still go out
    assert remediator_from_env({"TRUSTWATCH_GCP_KEY_ACTION": "shred"}).key_action == "disable"
    assert "TRUSTWATCH_GCP_KEY_ACTION='shred' is not disable or delete" in caplog.text


def test_hmac_key_is_deactivated(gcp, rbaseline):
    key = hmac_key_metadata(PROJECT, HMAC_ID, COMPUTE, "ACTIVE")
    gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"] = key
    done = one(run(gcp, hmac_created(COMPUTE), rbaseline))
    assert (done.remediation.action, done.remediation.status) == ("deactivate_hmac_key", "applied")
    assert gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"]["state"] == "INACTIVE"
    (write,) = gcp.writes()
    assert (write.method, write.path) == (
        "PUT",
        f"/storage/v1/projects/{PROJECT}/hmacKeys/{HMAC_ID}",
    )
    assert write.body == {"state": "INACTIVE", "etag": key["etag"]}


def test_a_re_enabled_key_and_a_re_activated_hmac_key_are_turned_off_again(gcp, rbaseline):
    """EnableServiceAccountKey and hmacKeys.update to ACTIVE undo an earlier remediation."""
    from test_gcp_attack_paths import key_call
    from test_gcp_hmac_keys import hmac_updated

    gcp.keys[f"{COMPUTE}/a1b2c3"] = service_account_key(COMPUTE, "a1b2c3")
    done = one(run(gcp, key_call("EnableServiceAccountKey", COMPUTE), rbaseline))
    assert (done.remediation.action, done.remediation.status) == (
        "disable_service_account_key",
        "applied",
    )
    assert gcp.keys[f"{COMPUTE}/a1b2c3"]["disabled"] is True
    gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"] = hmac_key_metadata(PROJECT, HMAC_ID, COMPUTE, "ACTIVE")
    (finding,) = [f for f in run(gcp, hmac_updated(COMPUTE), rbaseline)]
    assert (finding.remediation.action, finding.remediation.status) == (
        "deactivate_hmac_key",
        "applied",
    )
    assert gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"]["state"] == "INACTIVE"


def test_hmac_key_etag_conflict_is_read_again(gcp, rbaseline):
    key = hmac_key_metadata(PROJECT, HMAC_ID, COMPUTE, "ACTIVE")
    gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"] = key

    def someone_touches_it(_request: Any) -> None:  # a new etag, still ACTIVE
        gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"] = {**key, "etag": "ChangedEtag="}

    gcp.before_write(someone_touches_it)
    done = one(run(gcp, hmac_created(COMPUTE), rbaseline))
    assert done.remediation.status == "applied", done.remediation.detail
    first, second = gcp.writes()
    assert (first.body["etag"], second.body["etag"]) == (key["etag"], "ChangedEtag=")


def test_hmac_key_of_another_account_is_not_touched(gcp, rbaseline):
    other = "someone-else@dbx-prod-4821.iam.gserviceaccount.com"
    gcp.hmac_keys[f"{PROJECT}/{HMAC_ID}"] = hmac_key_metadata(PROJECT, HMAC_ID, other, "ACTIVE")
    done = one(run(gcp, hmac_created(COMPUTE), rbaseline))
    assert done.remediation.status == "none"
    assert "not touched" in done.remediation.detail
    assert gcp.writes() == []


def test_bucket_settings_are_put_back(gcp, rbaseline):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    from trustwatch.gcp.events import complete

    (parsed,) = parse_document(bucket_update(BUCKET), "test")
    (change,) = parsed.changes
    change = complete(change, gcp.buckets[BUCKET])
    found = evaluate(change, rbaseline)
    remediator = remediator_for(gcp)
    done = remediate(found, rbaseline, lambda _c: remediator, apply=True)
    assert [(f.remediation.action, f.remediation.status) for f in done] == [
        ("enforce_public_access_prevention", "applied"),
        ("enable_uniform_bucket_level_access", "applied"),
    ]
    config = gcp.buckets[BUCKET]["iamConfiguration"]
    assert config["publicAccessPrevention"] == "enforced"
    assert config["uniformBucketLevelAccess"] == {"enabled": True}
    patches = [w.body for w in gcp.writes()]
    assert patches == [
        {"iamConfiguration": {"publicAccessPrevention": "enforced"}},
        {"iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}},
    ]


def test_bucket_settings_already_back_or_lost_writes(gcp, rbaseline):
    from trustwatch.gcp.events import complete

    (parsed,) = parse_document(bucket_update(BUCKET), "test")
    (change,) = parsed.changes
    found = evaluate(complete(change, bucket_resource(BUCKET, None, False)), rbaseline)
    # public access prevention left out of the answer reads as not enforced
    assert [f.remediation.action for f in found] == [
        "enforce_public_access_prevention",
        "enable_uniform_bucket_level_access",
    ]
    remediator = remediator_for(gcp)
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "enforced", False)  # one already back
    gcp.lose_writes = 1  # the other's PATCH answered, not kept
    done = remediate(found, rbaseline, lambda _c: remediator, apply=True)
    assert [f.remediation.status for f in done] == ["skipped", "failed"]
    assert done[1].remediation.detail.startswith("not applied: ")
    gcp.buckets.clear()  # gone
    done = remediate(found, rbaseline, lambda _c: remediator, apply=True)
    assert {f.remediation.detail for f in done} == {f"bucket {BUCKET} is gone (404)"}


# --- the etag: conflicts, conditions --------------------------------------------------------


def test_etag_conflict_mid_write_rereads_and_keeps_the_other_writers_binding(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    # between our read and our write someone else adds a binding: our etag is stale now
    gcp.before_write(
        lambda _request: gcp.other_writer(
            COMPUTE_KEY,
            lambda p: p["bindings"].append(
                {"role": "roles/iam.serviceAccountViewer", "members": ["user:carol@example.com"]}
            ),
        )
    )
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "applied", done.remediation.detail
    first, second = gcp.writes()
    assert first.body["policy"]["etag"] == "BwX1a2b3c4d="  # answered 409 ABORTED
    assert second.body["policy"]["etag"] == "BwY0000001="  # the other writer's, re-read
    # the whole read-modify-write was redone: a read between the two writes
    between = gcp.requests[gcp.requests.index(first) + 1 : gcp.requests.index(second)]
    assert [r.path.endswith(":getIamPolicy") for r in between] == [True]
    assert gcp.policies[COMPUTE_KEY]["bindings"] == [
        {"role": "roles/iam.serviceAccountViewer", "members": ["user:carol@example.com"]}
    ]


def test_a_policy_that_keeps_changing_is_not_written(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    for n in range(5):
        gcp.before_write(
            lambda _r, n=n: gcp.other_writer(
                COMPUTE_KEY,
                lambda p: p["bindings"].append(
                    {"role": f"roles/x{n}", "members": ["user:x@example.com"]}
                ),
            )
        )
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline, rounds=5))
    assert done.remediation.status == "failed"
    assert "changed under each of 5" in done.remediation.detail
    assert len(gcp.writes()) == 5
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == [MALLORY]


def conditional_policy() -> dict[str, Any]:
    expiring = {
        "title": "until-new-year",
        "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
    }
    return {
        "version": 3,
        "etag": "BwX1a2b3c4d=",
        "bindings": [
            {"role": TOKEN_CREATOR, "members": [MALLORY, "user:bob@example.com"]},
            {"role": TOKEN_CREATOR, "members": [MALLORY], "condition": expiring},
        ],
    }


def test_a_binding_with_a_condition_is_kept_intact(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = conditional_policy()
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "applied", done.remediation.detail
    (write,) = gcp.writes()
    assert write.body["policy"]["version"] == 3  # a policy with a condition: version 3
    assert gcp.policies[COMPUTE_KEY]["bindings"] == [
        {"role": TOKEN_CREATOR, "members": ["user:bob@example.com"]},
        conditional_policy()["bindings"][1],
    ]


def test_a_conditional_grant_is_removed_from_its_own_binding_only(gcp, rbaseline):
    """The audit entry's binding delta names the condition: that binding is the one the
    finding is about; the unconditional binding of the same role is another grant."""
    gcp.policies[COMPUTE_KEY] = conditional_policy()
    expiring = conditional_policy()["bindings"][1]["condition"]
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))
    entry["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"][0]["condition"] = expiring
    done = one(run(gcp, entry, rbaseline))
    assert done.actual["condition"] == expiring
    assert done.remediation.status == "applied", done.remediation.detail
    assert done.remediation.before == {
        "role": TOKEN_CREATOR,
        "members": [MALLORY],
        "condition": expiring,
    }
    assert done.remediation.after is None  # that binding is dropped, the other kept
    assert gcp.policies[COMPUTE_KEY]["bindings"] == [conditional_policy()["bindings"][0]]
    assert gcp.policies[COMPUTE_KEY]["version"] == 3


def test_an_unconditional_grant_finding_keeps_its_id(rbaseline):
    """Only a conditional grant's finding names a condition: the others' ids are as before."""
    (finding,) = findings_of(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline)
    assert "condition" not in finding.actual
    from trustwatch.findings import fingerprint

    assert finding.id == fingerprint(
        "gcp.iam.impersonation_granted",
        COMPUTE,
        {"resource": COMPUTE, "role": TOKEN_CREATOR, "member": MALLORY},
    )


def test_a_member_only_under_a_condition_is_left_alone(gcp, rbaseline):
    stored = conditional_policy()
    del stored["bindings"][0]
    gcp.policies[COMPUTE_KEY] = stored
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "none"
    assert "only in another binding of the role" in done.remediation.detail
    assert gcp.writes() == []


# --- throttling, refusals, writes that do not stick ------------------------------------------


def test_throttled_write_is_retried_then_applied(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    gcp.fail(429, writes=True, headers={"Retry-After": "0"})
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "applied", done.remediation.detail
    first, second = gcp.writes()
    assert first.body == second.body  # the same write: its etag was not used yet
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == []


def test_permission_denied_ends_as_failed(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    gcp.fail(403, writes=True)
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "failed"
    assert "HTTP 403" in done.remediation.detail
    assert "tried to remove_iam_binding" in done.remediation.detail
    assert len(gcp.writes()) == 1  # not retried
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == [MALLORY]


def test_a_write_that_does_not_stick_verifies_as_failed(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    gcp.lose_writes = 1
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "failed"
    assert done.remediation.detail.startswith("not applied: ")
    assert f"{MALLORY} still holds {TOKEN_CREATOR}" in done.remediation.detail


def test_a_key_disable_that_does_not_stick_verifies_as_failed(gcp, rbaseline):
    gcp.keys[f"{COMPUTE}/{KEY_ID}"] = service_account_key(COMPUTE, KEY_ID)
    gcp.lose_writes = 1
    done = one(run(gcp, key_created(COMPUTE), rbaseline))
    assert done.remediation.status == "failed"
    assert "still enabled" in done.remediation.detail


# --- safety ----------------------------------------------------------------------------------


def test_stale_event_whose_member_is_already_gone_is_skipped(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({"roles/iam.serviceAccountViewer": [MALLORY]})
    done = one(run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline))
    assert done.remediation.status == "skipped"
    assert done.remediation.detail.startswith("already removed")
    assert gcp.writes() == []


def test_stale_key_events_are_skipped(gcp, rbaseline):
    gcp.keys[f"{COMPUTE}/{KEY_ID}"] = service_account_key(COMPUTE, KEY_ID, disabled=True)
    done = one(run(gcp, key_created(COMPUTE), rbaseline))
    assert (done.remediation.status, gcp.writes()) == ("skipped", [])
    gcp.keys.clear()
    done = one(run(gcp, key_created(COMPUTE), rbaseline))
    assert done.remediation.status == "skipped" and "already deleted" in done.remediation.detail


def test_a_grant_the_baseline_now_allows_is_skipped(gcp, rbaseline):
    found = findings_of(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline)
    widened = copy.deepcopy(rbaseline)
    widened.gcp.projects[PROJECT].service_accounts[COMPUTE].impersonators.append(MALLORY)
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    remediator = remediator_for(gcp)
    (done,) = remediate(found, widened, lambda _c: remediator, apply=True)
    assert done.remediation.status == "skipped"
    assert "not drift against the current baseline" in done.remediation.detail
    assert gcp.requests == []


def test_a_binding_the_baseline_expects_is_never_removed(gcp, rbaseline):
    """storage.objectAdmin of databricks-storage on the project reaches the watched bucket
    (whose bindings do not list it), but it is that account's expected project role."""
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY)
    entry = project_policy(add("roles/storage.objectAdmin", SA + STORAGE_SA))
    done = one(run(gcp, entry, rbaseline))
    assert (done.rule, done.identity) == ("gcp.bucket.binding_added", BUCKET)
    assert done.remediation.status == "none"
    assert "the baseline expects" in done.remediation.detail
    assert gcp.requests == []


def test_a_finding_its_rule_would_not_make_is_not_acted_on(gcp, rbaseline):
    """A findings file given to `trustwatch remediate` may say anything: a remove action
    under a rule that does not judge IAM policies, or about a grant that never reached the
    account it names, changes nothing."""
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {TOKEN_CREATOR: [MALLORY]})
    (real,) = findings_of(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline)
    remediator = remediator_for(gcp)
    wrong_rule = real.model_copy(update={"rule": "gcp.sa.key_created"})
    elsewhere = real.model_copy(
        update={
            "actual": {
                "resource": "projects/other-project",
                "role": TOKEN_CREATOR,
                "member": MALLORY,
            }
        }
    )
    unknown = real.model_copy(update={"rule": "gcp.made.up"})
    done = remediate([wrong_rule, elsewhere, unknown], rbaseline, lambda _c: remediator, apply=True)
    assert [f.remediation.status for f in done] == ["none", "skipped", "none"]
    assert "not drift against the current baseline" in done[1].remediation.detail
    assert gcp.writes() == []


def test_grants_above_the_project_are_alert_only(gcp, rbaseline):
    entry = project_policy(add(TOKEN_CREATOR, MALLORY))
    entry["protoPayload"]["resourceName"] = "folders/4711"
    entry["resource"] = {"type": "folder", "labels": {"folder_id": "4711"}}
    entry["logName"] = "folders/4711/logs/cloudaudit.googleapis.com%2Factivity"
    done = run(gcp, entry, rbaseline)
    assert {f.remediation.status for f in done} == {"none"}
    assert all("above the project" in f.remediation.detail for f in done)
    assert gcp.requests == []


def test_breakage_is_alert_only(gcp, rbaseline):
    entry = project_policy(remove("roles/logging.logWriter", SA + COMPUTE))
    done = one(run(gcp, entry, rbaseline))
    assert (done.rule, done.remediation.status) == ("gcp.iam.binding_removed", "none")
    assert done.remediation.detail.startswith("alert only")
    assert gcp.requests == []


def test_alert_mode_and_dry_run_change_nothing_and_show_the_plan(gcp, rbaseline):
    admin = "roles/bigquery.admin"
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {admin: [SA + REPORTING]})
    alert = one(run(gcp, project_policy(add(admin, SA + REPORTING)), rbaseline))
    assert (alert.rule, alert.identity) == ("gcp.iam.binding_added", REPORTING)
    assert alert.remediation.status == "none"
    assert alert.remediation.detail.startswith("mode is alert; would remove_iam_binding on ")
    assert alert.remediation.before == {"role": admin, "members": [SA + REPORTING]}
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))
    dry = one(run(gcp, entry, rbaseline, apply=False))
    assert dry.remediation.status == "planned"
    assert dry.remediation.detail.startswith("dry run; would remove_iam_binding")
    assert dry.remediation.after is None
    assert gcp.writes() == []


def test_approved_actor_is_left_alone(gcp, rbaseline):
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=TERRAFORM)
    done = one(run(gcp, entry, rbaseline))
    assert done.remediation.status == "skipped"
    assert "approved automation" in done.remediation.detail
    assert gcp.requests == []


def test_the_responders_own_change_gives_nothing(rbaseline):
    from test_gcp_events import RESPONDER

    entry = sa_policy(COMPUTE, remove(TOKEN_CREATOR, MALLORY), actor=RESPONDER)
    assert findings_of(entry, rbaseline) == []


def test_the_breaker_trips_on_the_fourth_remediation_within_ten_minutes(gcp, rbaseline):
    now = [1_000_000.0]
    breaker = Breaker(MemoryDedupStore(), clock=lambda: now[0])
    statuses = []
    for n in range(4):
        member = f"user:fighter-{n}@example.com"
        gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [member]})
        done = run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, member)), rbaseline, breaker=breaker)
        statuses.append([(f.rule, f.remediation.status) for f in done])
        now[0] += 120  # 4 changes in 6 minutes
    assert statuses[:3] == [[("gcp.iam.impersonation_granted", "applied")]] * 3
    assert statuses[3] == [
        ("gcp.iam.impersonation_granted", "skipped"),
        (CIRCUIT_RULE, "none"),
    ]
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == ["user:fighter-3@example.com"]
    # the window passes: remediation resumes
    now[0] += 600
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    done = run(gcp, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), rbaseline, breaker=breaker)
    assert [f.remediation.status for f in done] == ["applied"]


# --- a property: exactly the finding's member leaves exactly the finding's binding -----------

_ROLES = (TOKEN_CREATOR, "roles/iam.serviceAccountUser", "roles/iam.serviceAccountViewer")
_MEMBERS = (MALLORY, "user:MALLORY@example.com", "user:bob@example.com", "group:ops@example.com")
_CONDITIONS = (
    None,
    {"title": "until-new-year", "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'},
    {"title": "office", "expression": 'request.time.getHours("Europe/Berlin") < 18'},
)


def _triples(stored: dict[str, Any]) -> list[tuple[str, str, str]]:
    import json

    return sorted(
        (b["role"], json.dumps(b.get("condition"), sort_keys=True), m)
        for b in stored["bindings"]
        for m in b["members"]
    )


def test_only_the_findings_member_leaves_only_the_findings_binding(rbaseline):
    """Random policies of several roles, members and conditions, and a finding about one
    grant (with or without its condition): after remediation every other (role,
    condition, member) is still there, and the finding's grant is gone."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    binding = st.tuples(
        st.sampled_from(_ROLES),
        st.sampled_from(range(len(_CONDITIONS))),
        st.lists(st.sampled_from(_MEMBERS), min_size=1, max_size=4, unique_by=str.lower),
    )
    policies = st.lists(binding, max_size=5, unique_by=lambda b: (b[0], b[1]))

    with GcpServer() as gcp:

        @settings(
            max_examples=40,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(policies, st.sampled_from((0, 1)))
        def check(bindings: list[tuple[str, int, list[str]]], condition: int) -> None:
            stored: dict[str, Any] = {"version": 3, "etag": "BwX1a2b3c4d=", "bindings": []}
            for role, c, members_ in bindings:
                entry: dict[str, Any] = {"role": role, "members": members_}
                if _CONDITIONS[c] is not None:
                    entry["condition"] = _CONDITIONS[c]
                stored["bindings"].append(entry)
            gcp.policies[COMPUTE_KEY] = json.loads(json.dumps(stored))
            event = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))
            if _CONDITIONS[condition] is not None:
                delta = event["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"][0]
                delta["condition"] = _CONDITIONS[condition]
            done = one(run(gcp, event, rbaseline))
            target = (TOKEN_CREATOR, json.dumps(_CONDITIONS[condition], sort_keys=True))
            wanted = [
                t for t in _triples(stored) if not (t[:2] == target and t[2].lower() == MALLORY)
            ]
            assert _triples(gcp.policies[COMPUTE_KEY]) == wanted
            if len(wanted) < len(_triples(stored)):  # the grant was there
                assert done.remediation.status == "applied", done.remediation.detail
            else:
                assert done.remediation.status in ("skipped", "none")
                assert gcp.policies[COMPUTE_KEY]["etag"] == stored["etag"]  # not written
            assert all(b["members"] for b in gcp.policies[COMPUTE_KEY]["bindings"])

        check()
