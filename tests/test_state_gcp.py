"""trustwatch.gcp.state against the Google Cloud API stand-in (tests/gcpserver.py): a sweep
reads each baseline project back as changes, the GCP rules judge them unchanged, and drift
no event reported is found; a clean project gives no finding. Catch-up reads the project's
audit entries of a window from Cloud Logging's entries:list, paged, with the timestamp
clauses always in the filter.

google-auth signs in with a service account key file whose token endpoint is the stand-in
(GOOGLE_APPLICATION_CREDENTIALS), so every request carries the issued bearer token (the
server refuses others)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import DATA
from gcpserver import GcpServer, hmac_key_metadata, service_account
from test_gcp_events import (
    BUCKET,
    COMPUTE,
    MALLORY,
    PROJECT,
    TERRAFORM,
    UC_SA,
    UNRELATED,
    add,
    key_created,
    sa_policy,
)
from trustwatch import clouds
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.engine import evaluate
from trustwatch.findings import Finding
from trustwatch.gcp import state
from trustwatch.intake import parse_document

SWEEP_BASELINE = DATA / "sweep-gcp-baseline.yaml"
DEV = "dbx-dev-0917"
DEV_COMPUTE = f"databricks-compute@{DEV}.iam.gserviceaccount.com"
SA = "serviceAccount:"
ADMINS = "group:platform-admins@example.com"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
PINNED_ROLE = f"projects/{PROJECT}/roles/databricks_project_role_v2"
ANY_ROLE = f"projects/{PROJECT}/roles/any_permissions"
PINNED = ["compute.instances.create", "compute.instances.delete", "compute.instances.get"]
KEY_ID = "69049163b190437ab9279b28e8afa24bb5c5b076"
CONDITION = {
    "title": "until-2027",
    "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
}


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return load_baseline(SWEEP_BASELINE)


def v3_policy(*bindings: dict[str, Any], etag: str = "BwYk3xQ1r2s=") -> dict[str, Any]:
    """An IAM Policy as getIamPolicy returns it with requestedPolicyVersion 3: conditional
    bindings carry their condition, a role may be bound twice (with and without one).
    https://cloud.google.com/iam/docs/policies#versions"""
    return {"version": 3, "etag": etag, "bindings": list(bindings)}


def binding(role: str, *members: str, condition: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "members": list(members)}
    if condition:
        out["condition"] = condition
    return out


def user_managed_key(email: str, key_id: str, *, disabled: bool = False) -> dict[str, Any]:
    """A ServiceAccountKey as keys.list returns it (no private key material).
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys"""
    project = email.split("@", 1)[1].split(".", 1)[0]
    key = {
        "name": f"projects/{project}/serviceAccounts/{email}/keys/{key_id}",
        "validAfterTime": "2026-11-20T08:00:00Z",
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    }
    if disabled:
        key["disabled"] = True
    return key


def add_key(gcp: GcpServer, key: dict[str, Any]) -> None:
    """The key in the stand-in's `keys` (by EMAIL/KEY_ID)."""
    email, key_id = key["name"].split("/serviceAccounts/", 1)[1].split("/keys/")
    gcp.keys[f"{email}/{key_id}"] = key


def system_managed_key(email: str, key_id: str) -> dict[str, Any]:
    return {**user_managed_key(email, key_id), "keyType": "SYSTEM_MANAGED"}


def custom_role(name: str, permissions: list[str], stage: str = "GA") -> dict[str, Any]:
    """A Role as iam v1 roles.get returns it.
    https://cloud.google.com/iam/docs/reference/rest/v1/organizations.roles#Role"""
    return {
        "name": name,
        "title": name.rsplit("/", 1)[-1],
        "includedPermissions": permissions,
        "stage": stage,
        "etag": "BwXoR5Y0h6E=",
    }


def bucket(name: str, pap: str = "enforced", ubla: bool = True) -> dict[str, Any]:
    """A Bucket resource as buckets.get returns it.
    https://cloud.google.com/storage/docs/json_api/v1/buckets#resource"""
    return {
        "kind": "storage#bucket",
        "name": name,
        "id": name,
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": ubla},
            "bucketPolicyOnly": {"enabled": ubla},
            "publicAccessPrevention": pap,
        },
    }


def clean_state(gcp: GcpServer) -> None:
    """Both projects exactly as the sweep baseline says (plus what it tolerates)."""
    gcp.policies[f"projects/{PROJECT}"] = v3_policy(
        binding("roles/logging.logWriter", SA + COMPUTE),
        binding("roles/monitoring.metricWriter", SA + COMPUTE),
        binding("roles/owner", SA + TERRAFORM),
        binding("roles/viewer", ADMINS),  # holds nothing the rules watch
    )
    gcp.policies[f"projects/{DEV}"] = v3_policy(
        binding("roles/logging.logWriter", SA + DEV_COMPUTE)
    )
    for email, unique_id in (
        (COMPUTE, "105537103139416651075"),
        (TERRAFORM, "117744220198326510933"),
        (DEV_COMPUTE, "109231774416508812247"),
    ):
        gcp.accounts[email] = service_account(email, unique_id)
        gcp.policies[f"serviceAccounts/{email}"] = v3_policy()
    # the listed impersonator of the automation account
    gcp.policies[f"serviceAccounts/{TERRAFORM}"] = v3_policy(binding(TOKEN_CREATOR, ADMINS))
    for key in (
        system_managed_key(COMPUTE, "a1b2c3"),  # Google's own: not a user-managed key
        user_managed_key(COMPUTE, "d4e5f6", disabled=True),  # disabled: signs nothing
        user_managed_key(TERRAFORM, "0f0f0f"),  # its baseline allows keys
    ):
        add_key(gcp, key)
    gcp.hmac_keys[f"{PROJECT}/GOOG1EOLDKEY"] = hmac_key_metadata(
        PROJECT, "GOOG1EOLDKEY", COMPUTE, "INACTIVE"
    )
    gcp.policies[f"buckets/{BUCKET}"] = v3_policy(
        binding("roles/storage.objectAdmin", UC_SA),
        binding("roles/storage.legacyBucketReader", UC_SA),
    )
    gcp.buckets[BUCKET] = bucket(BUCKET)
    gcp.roles[PINNED_ROLE] = custom_role(PINNED_ROLE, list(reversed(PINNED)))
    gcp.roles[ANY_ROLE] = custom_role(ANY_ROLE, ["storage.objects.list"])


@pytest.fixture
def gcp(tmp_path, monkeypatch) -> Iterator[GcpServer]:
    with GcpServer(require_token=True) as server:
        for name in list(os.environ):
            if name.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_METADATA")):
                monkeypatch.delenv(name)
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS", str(server.service_account_key_file(tmp_path))
        )
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        clean_state(server)
        yield server


def environ(gcp: GcpServer) -> dict[str, str]:
    return {"TRUSTWATCH_GCP_API_ENDPOINT": gcp.url}


def sweep(gcp: GcpServer, baseline: Baseline, project: str = PROJECT) -> list[Finding]:
    read = state.read(project, baseline, environ(gcp))
    assert read.errors == []
    return [f for change in read.changes for f in evaluate(change, baseline)]


def rules(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule, f.identity) for f in findings}


# --- the part trustwatch.clouds finds --------------------------------------------------------


def test_the_gcp_cloud_offers_this_state_part(baseline):
    assert clouds.get("gcp").state() is state
    assert state.units(baseline, {}) == [PROJECT, DEV]


# --- a clean project -------------------------------------------------------------------------


def test_clean_state_gives_no_finding_and_counts_every_call(gcp, baseline):
    for project in state.units(baseline, environ(gcp)):
        before = len(gcp.requests)
        read = state.read(project, baseline, environ(gcp))
        assert read.unit == project and read.errors == []
        assert [f for c in read.changes for f in evaluate(c, baseline)] == []
        assert read.calls == len(gcp.requests) - before
        assert all(c.event_name.startswith("sweep:") and c.scope == project for c in read.changes)
    kinds = {c.kind for c in state.read(PROJECT, baseline, environ(gcp)).changes}
    assert kinds == {
        "resource.iam_policy_set",
        "service_account.iam_policy_set",
        "bucket.iam_policy_set",
        "bucket.settings_updated",
        "custom_role.updated",
    }
    # each baseline account's keys are listed only where its baseline allows none
    key_lists = [r.path for r in gcp.requests if r.path.endswith("/keys")]
    assert sorted(set(key_lists)) == sorted(
        f"/v1/projects/-/serviceAccounts/{e}/keys" for e in (COMPUTE, DEV_COMPUTE)
    )


def test_reads_ask_for_version_3_policies_and_user_managed_keys(gcp, baseline):
    state.read(PROJECT, baseline, environ(gcp))
    by_path = {(r.method, r.path): r for r in gcp.requests}
    v3 = {"options": {"requestedPolicyVersion": 3}}
    assert by_path[("POST", f"/v3/projects/{PROJECT}:getIamPolicy")].body == v3
    sa_path = f"/v1/projects/-/serviceAccounts/{COMPUTE}:getIamPolicy"
    # iam v1 takes it as a query parameter, with an empty body
    assert by_path[("POST", sa_path)].query == {"options.requestedPolicyVersion": "3"}
    assert by_path[("POST", sa_path)].body is None
    iam = by_path[("GET", f"/storage/v1/b/{BUCKET}/iam")]
    assert iam.query == {"optionsRequestedPolicyVersion": "3"}
    keys = by_path[("GET", f"/v1/projects/-/serviceAccounts/{COMPUTE}/keys")]
    assert keys.query == {"keyTypes": "USER_MANAGED"}
    hmac = by_path[("GET", f"/storage/v1/projects/{PROJECT}/hmacKeys")]
    assert "serviceAccountEmail" not in hmac.query  # one listing for every account
    assert len([r for r in gcp.requests if r.path.endswith("/hmacKeys")]) == 1
    assert ("GET", f"/v1/{PINNED_ROLE}") in by_path
    assert all(r.headers["authorization"] == f"Bearer {gcp.token}" for r in gcp.requests)


# --- drift that no event reported --------------------------------------------------------------


def test_token_creator_for_an_outsider_on_a_baseline_account(gcp, baseline):
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))
    (finding,) = sweep(gcp, baseline)
    assert (finding.rule, finding.identity) == ("gcp.iam.impersonation_granted", COMPUTE)
    assert finding.actual == {"resource": COMPUTE, "role": TOKEN_CREATOR, "member": MALLORY}


def test_editor_on_the_project_for_a_baseline_account(gcp, baseline):
    policy = gcp.policies[f"projects/{PROJECT}"]
    policy["bindings"].append(binding("roles/editor", SA + COMPUTE))
    found = sweep(gcp, baseline)
    added = [f for f in found if f.rule == "gcp.iam.binding_added"]
    assert [(f.identity, f.severity.value) for f in added] == [(COMPUTE, "critical")]
    # editor's permissions are unknown: it may act as the project's other accounts
    assert ("gcp.iam.impersonation_granted", TERRAFORM) in rules(found)


def test_a_user_managed_key_gives_the_finding_its_creation_event_gives(gcp, baseline):
    """keys.list with keyTypes=USER_MANAGED; a disabled key signs nothing.
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/list"""
    add_key(gcp, user_managed_key(COMPUTE, KEY_ID))
    (finding,) = sweep(gcp, baseline)
    assert (finding.rule, finding.identity) == ("gcp.sa.key_created", COMPUTE)
    assert finding.actual == {"key_id": KEY_ID}
    # the same drift seen through its event has the same id: dedup sends it once
    (parsed,) = parse_document(key_created(COMPUTE, key_id=KEY_ID), "event")
    (from_event,) = [f for c in parsed.changes for f in evaluate(c, baseline)]
    assert from_event.id == finding.id


def test_an_active_hmac_key_of_a_baseline_account_pages(gcp, baseline):
    """projects.hmacKeys.list: every account's keys, paged by nextPageToken; ACTIVE ones sign.
    https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/list"""
    gcp.hmac_page_size = 1
    for access_id, email in (
        ("GOOG1EAAAA", COMPUTE),
        ("GOOG1EBBBB", COMPUTE.upper()),  # emails compare case-insensitively
        ("GOOG1ECCCC", TERRAFORM),  # its baseline allows keys
        ("GOOG1EDDDD", "etl@dbx-prod-4821.iam.gserviceaccount.com"),  # not a baseline account
    ):
        gcp.hmac_keys[f"{PROJECT}/{access_id}"] = hmac_key_metadata(
            PROJECT, access_id, email, "ACTIVE"
        )
    found = sweep(gcp, baseline)
    assert sorted((f.rule, f.actual["hmac_access_id"]) for f in found) == [
        ("gcp.sa.key_created", "GOOG1EAAAA"),
        ("gcp.sa.key_created", "GOOG1EBBBB"),
    ]
    pages = [r for r in gcp.requests if r.path.endswith("/hmacKeys")]
    assert [r.query.get("pageToken") for r in pages] == [None, "1", "2", "3", "4"]


def test_all_users_on_a_watched_bucket(gcp, baseline):
    gcp.policies[f"buckets/{BUCKET}"]["bindings"].append(
        binding("roles/storage.objectViewer", "allUsers")
    )
    (finding,) = sweep(gcp, baseline)
    assert (finding.rule, finding.identity, finding.severity.value) == (
        "gcp.bucket.binding_added",
        BUCKET,
        "critical",
    )


def test_bucket_settings_that_let_it_go_public(gcp, baseline):
    """iamConfiguration.publicAccessPrevention and uniformBucketLevelAccess.enabled.
    https://cloud.google.com/storage/docs/json_api/v1/buckets#resource"""
    gcp.buckets[BUCKET] = bucket(BUCKET, pap="inherited", ubla=False)
    found = sweep(gcp, baseline)
    assert [(f.rule, f.actual) for f in found] == [
        ("gcp.bucket.public_access_opened", {"public_access_prevention": "inherited"}),
        ("gcp.bucket.public_access_opened", {"uniform_bucket_level_access": False}),
    ]


def test_expected_bindings_removed(gcp, baseline):
    project = gcp.policies[f"projects/{PROJECT}"]
    project["bindings"] = [
        b for b in project["bindings"] if b["role"] != "roles/monitoring.metricWriter"
    ]
    gcp.policies[f"buckets/{BUCKET}"]["bindings"].pop(0)  # objectAdmin of the UC account
    found = sweep(gcp, baseline)
    assert {(f.rule, f.identity, f.expected["role"]) for f in found} == {
        ("gcp.iam.binding_removed", COMPUTE, "roles/monitoring.metricWriter"),
        ("gcp.bucket.binding_removed", BUCKET, "roles/storage.objectAdmin"),
    }


def test_a_pinned_custom_role_widened(gcp, baseline):
    gcp.roles[PINNED_ROLE]["includedPermissions"].append("iam.serviceAccounts.actAs")
    (finding,) = sweep(gcp, baseline)
    assert (finding.rule, finding.identity) == ("gcp.role.custom_role_changed", PINNED_ROLE)
    assert finding.actual == {"added": ["iam.serviceAccounts.actAs"], "removed": []}


def test_an_unpinned_custom_role_is_judged_by_its_stage_only(gcp, baseline):
    gcp.roles[ANY_ROLE]["includedPermissions"].append("iam.serviceAccounts.actAs")
    assert sweep(gcp, baseline) == []  # nothing to compare its permissions with
    gcp.roles[ANY_ROLE]["stage"] = "DISABLED"
    (finding,) = sweep(gcp, baseline)
    assert (finding.rule, finding.actual) == ("gcp.role.custom_role_changed", {"stage": "DISABLED"})


def test_a_deleted_custom_role(gcp, baseline):
    """A deleted custom role is still read, `deleted: true`, until it is purged (then 404).
    https://cloud.google.com/iam/docs/creating-custom-roles#deleting-custom-role"""
    gcp.roles[PINNED_ROLE]["deleted"] = True  # soft-deleted: still read for 7 days
    del gcp.roles[ANY_ROLE]  # gone for good: 404
    found = sweep(gcp, baseline)
    assert rules(found) == {
        ("gcp.role.custom_role_changed", PINNED_ROLE),
        ("gcp.role.custom_role_changed", ANY_ROLE),
    }
    assert all(f.actual is None for f in found)


def test_a_disabled_and_a_deleted_service_account(gcp, baseline):
    """ServiceAccount.disabled; a deleted account is 404.
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts#ServiceAccount"""
    gcp.accounts[COMPUTE]["disabled"] = True
    del gcp.accounts[TERRAFORM]
    found = sweep(gcp, baseline)
    assert {(f.rule, f.identity, f.actual["state"]) for f in found} == {
        ("gcp.sa.deleted_or_disabled", COMPUTE, "disabled"),
        ("gcp.sa.deleted_or_disabled", TERRAFORM, "deleted"),
    }
    # a deleted account has no policy or keys to read
    assert not [
        r
        for r in gcp.requests
        if TERRAFORM in r.path and r.path != f"/v1/projects/-/serviceAccounts/{TERRAFORM}"
    ]


def test_the_second_project_is_its_own_unit(gcp, baseline):
    gcp.policies[f"serviceAccounts/{DEV_COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))
    assert sweep(gcp, baseline) == []
    assert rules(sweep(gcp, baseline, DEV)) == {("gcp.iam.impersonation_granted", DEV_COMPUTE)}


# --- conditional bindings ----------------------------------------------------------------------


def test_a_conditional_grant_is_still_a_grant(gcp, baseline):
    """A conditional binding grants its role whenever its condition holds: still access.
    https://cloud.google.com/iam/docs/conditions-overview"""
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(
        binding(TOKEN_CREATOR, MALLORY, condition=CONDITION)
    )
    assert rules(sweep(gcp, baseline)) == {("gcp.iam.impersonation_granted", COMPUTE)}


def test_an_expected_grant_held_only_under_a_condition_is_missing(gcp, baseline):
    """Under a condition (one that may be false) the grant is not the one the baseline
    expects. https://cloud.google.com/iam/docs/conditions-overview"""
    # logWriter both ways: held; metricWriter only under a condition: not as the baseline says
    gcp.policies[f"projects/{PROJECT}"] = v3_policy(
        binding("roles/logging.logWriter", SA + COMPUTE),
        binding("roles/logging.logWriter", SA + COMPUTE, condition=CONDITION),
        binding("roles/monitoring.metricWriter", SA + COMPUTE, condition=CONDITION),
        binding("roles/owner", SA + TERRAFORM),
    )
    found = sweep(gcp, baseline)
    assert [(f.rule, f.expected["role"]) for f in found] == [
        ("gcp.iam.binding_removed", "roles/monitoring.metricWriter")
    ]


def test_conditional_and_plain_bindings_of_one_role_are_not_merged():
    policy = v3_policy(
        binding("roles/storage.objectAdmin", UC_SA, condition=CONDITION),
        binding("roles/storage.objectAdmin", "user:bob@example.com"),
    )
    deltas = state.policy_deltas(policy, [("roles/storage.objectAdmin", UC_SA)])
    assert [(d.action, d.member) for d in deltas] == [
        ("ADD", UC_SA),
        ("ADD", "user:bob@example.com"),
        ("REMOVE", UC_SA),  # bob's plain binding does not make the UC account's plain
    ]


# --- what cannot be read ------------------------------------------------------------------------


def test_a_refused_read_is_an_error_and_the_others_go_on(gcp, baseline):
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))
    gcp.fail(403)  # the first request: the project's policy
    read = state.read(PROJECT, baseline, environ(gcp))
    (error,) = read.errors
    assert error.startswith(f"project {PROJECT} IAM policy: GcpApiError: POST ")
    assert "HTTP 403" in error
    # whose findings the project policy gives: their last ones stay open (trustwatch.sweep)
    assert read.unreadable == [
        "trustwatch@dbx-prod-4821.iam.gserviceaccount.com",  # the responder's own
        COMPUTE,
        TERRAFORM,
        BUCKET,
    ]
    findings = [f for c in read.changes for f in evaluate(c, baseline)]
    assert rules(findings) == {("gcp.iam.impersonation_granted", COMPUTE)}


def test_a_missing_bucket_and_an_unknown_project_are_errors(gcp, baseline):
    del gcp.policies[f"buckets/{BUCKET}"], gcp.buckets[BUCKET]
    read = state.read(PROJECT, baseline, environ(gcp))
    assert read.errors == [
        f"bucket {BUCKET} IAM policy: EventError: bucket not found (404)",
        f"bucket {BUCKET} settings: EventError: bucket not found (404)",
    ]
    assert read.unreadable == [BUCKET]
    assert state.read("nope-1234", baseline, environ(gcp)).errors == [
        "project nope-1234: not in the baseline"
    ]


def test_an_unreadable_policy_is_an_error(gcp, baseline):
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = {"bindings": [{"role": "roles/x"}]}
    read = state.read(PROJECT, baseline, environ(gcp))
    assert read.errors == [
        f"service account {COMPUTE} IAM policy: EventError: "
        "a policy binding without a role and a members list"
    ]


# --- catch-up --------------------------------------------------------------------------------


SINCE = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def logged(entry: dict[str, Any], at: datetime, insert_id: str) -> dict[str, Any]:
    entry = copy.deepcopy(entry)
    entry["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + "123456789Z"  # nanoseconds
    entry["receiveTimestamp"] = entry["timestamp"]
    entry["insertId"] = insert_id
    return entry


@pytest.fixture
def audit_log(gcp: GcpServer) -> list[dict[str, Any]]:
    """A day of the project's audit log: three watched entries inside the window."""
    grant = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))
    key = key_created(COMPUTE, key_id=KEY_ID)
    other_project = sa_policy(DEV_COMPUTE, add(TOKEN_CREATOR, MALLORY))
    unrelated = copy.deepcopy(UNRELATED)
    unrelated["logName"] = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    inside = [
        logged(grant, SINCE, "in-1"),  # at `since`: inside
        logged(key, SINCE + timedelta(minutes=20), "in-2"),
        logged(grant, UNTIL - timedelta(seconds=1), "in-3"),
    ]
    gcp.log_entries = [
        logged(key, SINCE - timedelta(seconds=1), "before"),
        *inside,
        logged(unrelated, SINCE + timedelta(minutes=5), "unwatched-method"),
        logged(other_project, SINCE + timedelta(minutes=6), "other-project"),
        logged(grant, UNTIL, "at-until"),  # the window is half-open
        logged(grant, UNTIL + timedelta(hours=1), "after"),
    ]
    gcp.now = UNTIL + timedelta(days=3)  # the window is older than entries:list's default day
    return inside


def test_catch_up_returns_the_window_s_watched_entries_paged(gcp, audit_log):
    gcp.entries_page_size = 2  # fewer than asked for: the client must follow the token
    got = list(state.catch_up(PROJECT, SINCE, UNTIL, environ(gcp)))
    assert [e["insertId"] for e in got] == ["in-1", "in-2", "in-3"]
    calls = [r for r in gcp.requests if r.path == "/v2/entries:list"]
    assert len(calls) == 2 and "pageToken" not in calls[0].body
    assert calls[1].body["pageToken"] and calls[1].body["filter"] == calls[0].body["filter"]
    for call in calls:
        assert call.method == "POST" and call.body["resourceNames"] == [f"projects/{PROJECT}"]
        assert call.body["orderBy"] == "timestamp asc"


def test_the_filter_always_has_the_timestamp_clauses(gcp, audit_log):
    naive = (SINCE.replace(tzinfo=None), UNTIL.replace(tzinfo=None))  # taken as UTC
    other_zone = tuple(
        t.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")) for t in (SINCE, UNTIL)
    )
    for since, until in ((SINCE, UNTIL), naive, other_zone):
        assert [e["insertId"] for e in state.catch_up(PROJECT, since, until, environ(gcp))] == [
            "in-1",
            "in-2",
            "in-3",
        ]
    filters = [r.body["filter"] for r in gcp.requests if r.path == "/v2/entries:list"]
    assert len(filters) == 3
    for text in filters:
        clauses = text.split(" AND ")
        assert 'timestamp>="2026-11-30T09:00:00.000000Z"' in clauses
        assert 'timestamp<"2026-11-30T10:00:00.000000Z"' in clauses
        assert f'logName="projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"' in clauses


def test_the_stand_in_searches_only_the_last_day_without_a_timestamp_clause(gcp, audit_log):
    """Why the clause matters: without a timestamp in the filter, entries:list searches the
    last 24 hours only (its `filter` field):
    https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list"""
    from trustwatch.gcp.state import reader_from_env

    body = {"resourceNames": [f"projects/{PROJECT}"], "filter": ""}
    assert reader_from_env(environ(gcp)).entries(body) == {}
    gcp.now = SINCE + timedelta(days=1, minutes=10)
    last_day = reader_from_env(environ(gcp)).entries(body)["entries"]
    assert [e["insertId"] for e in last_day] == ["in-2", "in-3", "at-until", "after"]


def test_caught_up_entries_go_through_the_event_path(gcp, audit_log, baseline):
    found = [
        f
        for entry in state.catch_up(PROJECT, SINCE, UNTIL, environ(gcp))
        for parsed in parse_document(entry, "catch-up")
        for change in parsed.changes
        for f in evaluate(change, baseline)
    ]
    assert [(f.rule, f.event_id) for f in found] == [
        ("gcp.iam.impersonation_granted", "in-1"),
        ("gcp.sa.key_created", "in-2"),
        ("gcp.iam.impersonation_granted", "in-3"),
    ]
    # the same grant logged twice is one finding id: dedup alerts once
    assert found[0].id == found[2].id


def test_audit_filter_matches_the_watched_methods_only(gcp):
    from gcpserver import entry_filter

    keep = entry_filter(state.audit_filter(PROJECT, SINCE, UNTIL), UNTIL)
    grant = logged(sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), SINCE, "x")
    assert keep(grant)
    get_policy = copy.deepcopy(grant)
    get_policy["protoPayload"]["methodName"] = "google.iam.admin.v1.GetIAMPolicy"
    assert not keep(get_policy)


# --- through the sweep engine (trustwatch.sweep) ---------------------------------------------


def test_sweep_unit_reports_new_then_open_then_resolved(gcp, baseline, tmp_path, audit_log):
    from trustwatch.sweep import sweep_unit
    from trustwatch.sweepstate import SqliteSweepStore

    store = SqliteSweepStore(tmp_path / "sweep.sqlite")
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))

    def run(at: datetime):
        return sweep_unit("gcp", PROJECT, baseline, environ=environ(gcp), store=store,
                          sender=None, now=at)  # fmt: skip

    first = run(UNTIL)
    assert [(f.rule, f.source, f.sweep_status) for f in first.findings] == [
        ("gcp.iam.impersonation_granted", "sweep", "new")
    ]
    assert first.errors == [] and first.saved and first.calls > 0
    # the first sweep caught up on the hour before it: the window's entries, judged
    assert {f.event_id for f in first.event_findings} == {"in-1", "in-2", "in-3"}
    second = run(UNTIL + timedelta(hours=1))
    assert [f.sweep_status for f in second.findings] == ["open"] and second.new == []
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy()
    third = run(UNTIL + timedelta(hours=2))
    assert third.findings == []
    assert [(f.rule, f.sweep_status) for f in third.resolved] == [
        ("gcp.iam.impersonation_granted", "resolved")
    ]
    # each catch-up started at the last watermark (less the overlap) and ended at its start
    windows = [r.body["filter"] for r in gcp.requests if r.path == "/v2/entries:list"]
    from trustwatch.sweep import CATCH_UP_OVERLAP

    assert f'timestamp>="{state.rfc3339(UNTIL - CATCH_UP_OVERLAP)}"' in windows[1]
    assert 'timestamp<"2026-11-30T11:00:00.000000Z"' in windows[1]


# --- the scheduled message in a Pub/Sub delivery ---------------------------------------------


def _pubsub(message: Any, *, raw: str | None = None) -> dict[str, Any]:
    import base64
    import json

    data = raw if raw is not None else base64.b64encode(json.dumps(message).encode()).decode()
    return {
        "message": {"data": data, "messageId": "1"},
        "subscription": "projects/p/subscriptions/s",
    }


def test_sweep_request_reads_a_push_body_and_a_cloudevent():
    from trustwatch.sweep import ScheduledSweep

    unit = {"trustwatch": "sweep", "cloud": "gcp", "unit": PROJECT}
    assert state.sweep_request(_pubsub({"trustwatch": "sweep"})) == ScheduledSweep()
    event = {"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished"}
    assert state.sweep_request({**event, "data": _pubsub(unit)}) == ScheduledSweep("gcp", PROJECT)


def test_anything_else_is_no_sweep_request():
    grant = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))
    assert state.sweep_request(_pubsub(grant)) is None  # an audit entry from the sink
    assert state.sweep_request(grant) is None
    assert state.sweep_request(_pubsub(None, raw="%%% not base64")) is None
    assert state.sweep_request(_pubsub({"trustwatch": "other"})) is None
    with pytest.raises(ValueError, match="unknown field"):
        state.sweep_request(_pubsub({"trustwatch": "sweep", "units": "all"}))


def test_the_fan_out_needs_its_topic():
    for topic in ("", "trustwatch-audit", "projects/p/subscriptions/s"):
        with pytest.raises(ValueError, match="TRUSTWATCH_SWEEP_TOPIC"):
            state.dispatcher({"TRUSTWATCH_SWEEP_TOPIC": topic})


# --- `trustwatch sweep --cloud gcp` --------------------------------------------------------------


def test_the_cli_sweeps_the_gcp_projects(gcp, tmp_path, monkeypatch, capsys):
    import json

    from trustwatch.cli import main

    for name in ("TRUSTWATCH_STATE_URL", "TRUSTWATCH_STATE_TABLE", "TRUSTWATCH_ALERT_ROUTING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli-state.sqlite"))
    monkeypatch.setenv("TRUSTWATCH_GCP_API_ENDPOINT", gcp.url)
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))
    args = ["sweep", "--baseline", str(SWEEP_BASELINE), "--cloud", "gcp"]

    def findings() -> tuple[int, list[tuple[str, str, str]]]:
        code = main(args)
        out, _ = capsys.readouterr()
        found = [json.loads(line) for line in out.splitlines()]
        return code, [
            (f["rule"], f["scope"], f["sweep_status"]) for f in found if f["source"] == "sweep"
        ]

    assert findings() == (1, [("gcp.iam.impersonation_granted", PROJECT, "new")])
    assert findings() == (1, [("gcp.iam.impersonation_granted", PROJECT, "open")])
