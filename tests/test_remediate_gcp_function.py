"""GCP remediation through the entry points: the real functions-framework server running
`functions/gcp/main.py:on_audit_log` with TRUSTWATCH_REMEDIATION=apply (signed in through
the stand-in's metadata server, as on Cloud Functions), its alerts at a local webhook
receiver; and `trustwatch remediate` on the findings `trustwatch replay` prints.

The function instance keeps one circuit breaker for the whole module (3 remediations of
one identity per 10 minutes): each test remediates its own accounts, and only the breaker
test goes past three (on databricks-jobs). The GCP semantics relied on are cited in
test_remediate_gcp.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from gcpserver import GcpServer, hmac_key_metadata, policy, service_account_key
from test_function_gcp import _GOOGLE_AUTH_ENV, post_binary, post_structured, serve_function
from test_gcp_attack_paths import hmac_created
from test_gcp_events import (
    BUCKET,
    COMPUTE,
    MALLORY,
    PROJECT,
    RESPONDER,
    TERRAFORM,
    add,
    bucket_policy,
    bucket_resource,
    bucket_update,
    eventarc,
    key_created,
    project_policy,
    pubsub_cloudevent,
    remove,
    sa_policy,
)
from test_remediate_gcp import (
    BASELINE_FILE,
    BUCKET_KEY,
    BUCKET_POLICY,
    PROJECT_KEY,
    PROJECT_POLICY,
    REPORTING,
    SA,
    STORAGE_SA,
    TOKEN_CREATOR,
    conditional_policy,
    members,
)
from trustwatch.alerts.receivers import RecordingHTTPServer

ETL = "databricks-etl@dbx-prod-4821.iam.gserviceaccount.com"
KEYS = "databricks-keys@dbx-prod-4821.iam.gserviceaccount.com"
JOBS = "databricks-jobs@dbx-prod-4821.iam.gserviceaccount.com"
KEY_ID = "3f1e5a7c9b2d4f6e8a0c1e3f5a7b9d1f3e5a7c9b"


@pytest.fixture(scope="module")
def webhook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpServer]:
    with GcpServer(require_token=True) as server:
        yield server


@pytest.fixture(scope="module")
def function_url(webhook, gcp, tmp_path_factory) -> Iterator[str]:
    settings = {"TRUSTWATCH_BASELINE": str(BASELINE_FILE), "TRUSTWATCH_REMEDIATION": "apply"}
    with serve_function(webhook, gcp, tmp_path_factory, **settings) as url:
        yield url


def alerts_for(webhook: RecordingHTTPServer, function_url: str, entry: dict[str, Any]) -> list:
    """POST the entry (Eventarc), expect 200, return the alerts it sent."""
    before = len(webhook.requests)
    assert post_structured(function_url, eventarc(entry)) == 200
    return [r.json() for r in webhook.requests[before:]]


def writes_since(gcp: GcpServer, mark: int) -> list:
    from gcpserver import is_write

    return [r for r in gcp.requests[mark:] if is_write(r)]


# --- each action, applied and verified by the function ---------------------------------------


def test_impersonation_grant_is_removed_by_the_function(function_url, webhook, gcp):
    key = f"serviceAccounts/{COMPUTE}"
    gcp.policies[key] = policy({TOKEN_CREATOR: [MALLORY, "user:bob@example.com"]})
    mark = len(gcp.requests)
    (alert,) = alerts_for(webhook, function_url, sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)))
    assert alert["rule"] == "gcp.iam.impersonation_granted"
    remediation = alert["remediation"]
    assert (remediation["action"], remediation["status"]) == ("remove_iam_binding", "applied")
    assert remediation["detail"].startswith("verified; remove_iam_binding on ")
    assert remediation["after"] == {"role": TOKEN_CREATOR, "members": ["user:bob@example.com"]}
    assert members(gcp, key, TOKEN_CREATOR) == ["user:bob@example.com"]
    (write,) = writes_since(gcp, mark)
    assert write.headers["authorization"] == f"Bearer {gcp.token}"  # the function's identity


def test_project_role_bucket_binding_and_bucket_settings_are_put_back(function_url, webhook, gcp):
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {"roles/compute.admin": [SA + STORAGE_SA]})
    (alert,) = alerts_for(
        webhook, function_url, project_policy(add("roles/compute.admin", SA + STORAGE_SA))
    )
    assert (alert["rule"], alert["remediation"]["status"]) == ("gcp.iam.binding_added", "applied")
    assert [b["role"] for b in gcp.policies[PROJECT_KEY]["bindings"]] == list(PROJECT_POLICY)

    gcp.policies[BUCKET_KEY] = policy(BUCKET_POLICY | {"roles/storage.objectViewer": ["allUsers"]})
    entry = bucket_policy(BUCKET, add("roles/storage.objectViewer", "allUsers"))
    (alert,) = alerts_for(webhook, function_url, entry)
    assert (alert["severity"], alert["remediation"]["status"]) == ("critical", "applied")
    assert {b["role"] for b in gcp.policies[BUCKET_KEY]["bindings"]} == set(BUCKET_POLICY)

    # storage.buckets.update: read for the settings, then each one put back
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    before = len(webhook.requests)
    assert post_binary(function_url, pubsub_cloudevent(bucket_update(BUCKET))) == 200
    done = [r.json()["remediation"] for r in webhook.requests[before:]]
    assert [(d["action"], d["status"]) for d in done] == [
        ("enforce_public_access_prevention", "applied"),
        ("enable_uniform_bucket_level_access", "applied"),
    ]
    config = gcp.buckets[BUCKET]["iamConfiguration"]
    assert (config["publicAccessPrevention"], config["uniformBucketLevelAccess"]) == (
        "enforced",
        {"enabled": True},
    )


def test_storage_grant_on_a_project_reaching_its_bucket_is_removed(function_url, webhook, gcp):
    project = "projects/dbx-dev-4821"
    gcp.policies[project] = policy(
        {"roles/storage.objectViewer": [MALLORY, "user:bob@example.com"]}
    )
    entry = project_policy(add("roles/storage.objectViewer", MALLORY), project="dbx-dev-4821")
    (alert,) = alerts_for(webhook, function_url, entry)
    assert (alert["rule"], alert["identity"]) == ("gcp.bucket.binding_added", "dbx-uc-dev-4821")
    remediation = alert["remediation"]
    assert (remediation["action"], remediation["status"]) == ("remove_iam_binding", "applied")
    assert remediation["target"] == project
    assert members(gcp, project, "roles/storage.objectViewer") == ["user:bob@example.com"]


def test_keys_are_disabled_and_deactivated_by_the_function(function_url, webhook, gcp):
    gcp.keys[f"{KEYS}/{KEY_ID}"] = service_account_key(KEYS, KEY_ID)
    (alert,) = alerts_for(webhook, function_url, key_created(KEYS, key_id=KEY_ID))
    assert (alert["rule"], alert["remediation"]["status"]) == ("gcp.sa.key_created", "applied")
    assert alert["remediation"]["action"] == "disable_service_account_key"
    assert gcp.keys[f"{KEYS}/{KEY_ID}"]["disabled"] is True

    gcp.hmac_keys[f"{PROJECT}/GOOG1EXAMPLEAEU"] = hmac_key_metadata(
        PROJECT, "GOOG1EXAMPLEAEU", KEYS, "ACTIVE"
    )
    (alert,) = alerts_for(webhook, function_url, hmac_created(KEYS))
    assert alert["remediation"]["action"] == "deactivate_hmac_key"
    assert alert["remediation"]["status"] == "applied"
    assert gcp.hmac_keys[f"{PROJECT}/GOOG1EXAMPLEAEU"]["state"] == "INACTIVE"


# --- conflicts, throttling, refusals, lost writes --------------------------------------------


def test_etag_conflict_mid_write_through_the_function(function_url, webhook, gcp):
    key = f"serviceAccounts/{COMPUTE}"
    member = "user:mallory-conflict@example.com"
    gcp.policies[key] = policy({TOKEN_CREATOR: [member]})
    carol = {"role": "roles/iam.serviceAccountViewer", "members": ["user:carol@example.com"]}
    gcp.before_write(lambda _r: gcp.other_writer(key, lambda p: p["bindings"].append(carol)))
    mark = len(gcp.requests)
    (alert,) = alerts_for(webhook, function_url, sa_policy(COMPUTE, add(TOKEN_CREATOR, member)))
    assert alert["remediation"]["status"] == "applied", alert["remediation"]["detail"]
    first, second = writes_since(gcp, mark)
    assert first.body["policy"]["etag"] != second.body["policy"]["etag"]
    assert gcp.policies[key]["bindings"] == [carol]  # the other writer's binding survives


def test_throttling_refusal_and_a_lost_write(function_url, webhook, gcp):
    key = f"serviceAccounts/{ETL}"
    # 429 on the write, then success: retried by the session, applied
    gcp.policies[key] = policy({TOKEN_CREATOR: ["user:t1@example.com"]})
    gcp.fail(429, writes=True, headers={"Retry-After": "0"})
    (alert,) = alerts_for(
        webhook, function_url, sa_policy(ETL, add(TOKEN_CREATOR, "user:t1@example.com"))
    )
    assert alert["remediation"]["status"] == "applied", alert["remediation"]["detail"]
    # 403 PERMISSION_DENIED: failed, and the alert still goes out, with why
    gcp.policies[key] = policy({TOKEN_CREATOR: ["user:t2@example.com"]})
    gcp.fail(403, writes=True)
    (alert,) = alerts_for(
        webhook, function_url, sa_policy(ETL, add(TOKEN_CREATOR, "user:t2@example.com"))
    )
    assert alert["remediation"]["status"] == "failed"
    assert "HTTP 403" in alert["remediation"]["detail"]
    assert members(gcp, key, TOKEN_CREATOR) == ["user:t2@example.com"]
    # answered 200 but not kept: verified as not applied
    gcp.policies[key] = policy({TOKEN_CREATOR: ["user:t3@example.com"]})
    gcp.lose_writes = 1
    (alert,) = alerts_for(
        webhook, function_url, sa_policy(ETL, add(TOKEN_CREATOR, "user:t3@example.com"))
    )
    assert alert["remediation"]["status"] == "failed"
    assert alert["remediation"]["detail"].startswith("not applied: ")


def test_a_conditional_binding_is_kept_by_the_function(function_url, webhook, gcp):
    key = f"serviceAccounts/{KEYS}"
    gcp.policies[key] = conditional_policy()
    (alert,) = alerts_for(webhook, function_url, sa_policy(KEYS, add(TOKEN_CREATOR, MALLORY)))
    assert alert["remediation"]["status"] == "applied", alert["remediation"]["detail"]
    assert gcp.policies[key]["version"] == 3
    assert gcp.policies[key]["bindings"][1] == conditional_policy()["bindings"][1]


# --- safety ----------------------------------------------------------------------------------


def test_alert_mode_changes_nothing_and_shows_the_plan(function_url, webhook, gcp):
    gcp.policies[PROJECT_KEY] = policy(PROJECT_POLICY | {"roles/bigquery.admin": [SA + REPORTING]})
    mark = len(gcp.requests)
    (alert,) = alerts_for(
        webhook, function_url, project_policy(add("roles/bigquery.admin", SA + REPORTING))
    )
    assert alert["remediation"]["status"] == "none"
    assert alert["remediation"]["detail"].startswith("mode is alert; would remove_iam_binding")
    assert alert["remediation"]["target"] == PROJECT_KEY
    assert writes_since(gcp, mark) == []


def test_the_responders_own_change_fed_back_gives_nothing(function_url, webhook, gcp):
    """The audit entry of our own SetIamPolicy (actor: the function's account)."""
    mark = len(gcp.requests)
    entry = sa_policy(COMPUTE, remove(TOKEN_CREATOR, MALLORY), actor=RESPONDER)
    assert alerts_for(webhook, function_url, entry) == []
    # even one that granted something: our own changes are never judged
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=RESPONDER)
    assert alerts_for(webhook, function_url, entry) == []
    assert gcp.requests[mark:] == []


def test_approved_actor_and_stale_event_are_left_alone(function_url, webhook, gcp):
    key = f"serviceAccounts/{COMPUTE}"
    gcp.policies[key] = policy({TOKEN_CREATOR: ["user:iac@example.com"]})
    mark = len(gcp.requests)
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:iac@example.com"), actor=TERRAFORM)
    (alert,) = alerts_for(webhook, function_url, entry)
    assert alert["remediation"]["status"] == "skipped"
    assert "approved automation" in alert["remediation"]["detail"]
    assert gcp.requests[mark:] == []
    # the grant was already taken back by the time the event arrives: no write
    gcp.policies[key] = policy({})
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:gone@example.com"))
    (alert,) = alerts_for(webhook, function_url, entry)
    assert alert["remediation"]["status"] == "skipped"
    assert alert["remediation"]["detail"].startswith("already removed")
    assert writes_since(gcp, mark) == []


def test_the_breaker_trips_on_the_fourth_remediation(function_url, webhook, gcp):
    key = f"serviceAccounts/{JOBS}"
    statuses = []
    for n in range(4):
        member = f"user:fighter-{n}@example.com"
        gcp.policies[key] = policy({TOKEN_CREATOR: [member]})
        alerts = alerts_for(webhook, function_url, sa_policy(JOBS, add(TOKEN_CREATOR, member)))
        statuses.append([(a["rule"], a["remediation"]["status"]) for a in alerts])
    assert statuses[:3] == [[("gcp.iam.impersonation_granted", "applied")]] * 3
    assert statuses[3] == [
        ("gcp.iam.impersonation_granted", "skipped"),
        ("trustwatch.remediation.circuit_open", "none"),
    ]
    assert members(gcp, key, TOKEN_CREATOR) == ["user:fighter-3@example.com"]
    circuit = webhook.requests[-1].json()
    assert (circuit["severity"], circuit["identity"]) == ("critical", JOBS)
    assert "fighting the baseline" in circuit["summary"]


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(gcp, tmp_path, monkeypatch, capsys):
    """`trustwatch ARGS` in-process, configured as on a workstation pointed at the stand-in
    (google.auth.default() finds its metadata server): (exit code, stdout lines as JSON)."""
    import io

    from trustwatch.cli import main

    for name in list(os.environ):
        if name.startswith(("TRUSTWATCH_", *_GOOGLE_AUTH_ENV)):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTWATCH_GCP_API_ENDPOINT", gcp.url)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    for name, value in gcp.metadata_environ().items():
        monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = "") -> tuple[int, list[dict[str, Any]]]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    return run


def test_cli_remediate_shows_then_applies_the_plan(cli, gcp, tmp_path):
    key = f"serviceAccounts/{ETL}"
    member = "user:cli@example.com"
    gcp.policies[key] = policy({TOKEN_CREATOR: [member]})
    entry = tmp_path / "entry.json"
    entry.write_text(json.dumps(sa_policy(ETL, add(TOKEN_CREATOR, member))))
    code, found = cli("replay", "--baseline", str(BASELINE_FILE), str(entry))
    assert code == 1 and len(found) == 1  # a finding
    findings = tmp_path / "findings.jsonl"
    findings.write_text("".join(json.dumps(f) + "\n" for f in found))
    mark = len(gcp.requests)
    code, (planned,) = cli(
        "remediate", "--baseline", str(BASELINE_FILE), "-", stdin=findings.read_text()
    )
    assert code == 0
    assert planned["remediation"]["status"] == "planned"
    assert planned["remediation"]["detail"].startswith("dry run; would remove_iam_binding")
    assert writes_since(gcp, mark) == [] and members(gcp, key, TOKEN_CREATOR) == [member]
    code, (applied,) = cli("remediate", "--baseline", str(BASELINE_FILE), "--apply", str(findings))
    assert (code, applied["remediation"]["status"]) == (0, "applied")
    assert members(gcp, key, TOKEN_CREATOR) == []
    assert writes_since(gcp, mark)[0].headers["authorization"] == f"Bearer {gcp.token}"
    # the same findings again: already back at the baseline
    code, (again,) = cli("remediate", "--baseline", str(BASELINE_FILE), "--apply", str(findings))
    assert (code, again["remediation"]["status"]) == (0, "skipped")
    # a refused write: exit 1, the finding says why
    gcp.policies[key] = policy({TOKEN_CREATOR: [member]})
    gcp.fail(403, writes=True)
    code, (refused,) = cli("remediate", "--baseline", str(BASELINE_FILE), "--apply", str(findings))
    assert (code, refused["remediation"]["status"]) == (1, "failed")
