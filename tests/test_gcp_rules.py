"""Every gcp.* rule: audit entries that fire it and near-misses that must not (Panther style).

Each case is one entry (built from the real entries in tests/data/gcp) with the rule ids it
must give, replayed in every delivery shape: the raw LogEntry, a Pub/Sub push body, the
Pub/Sub CloudEvent, the Eventarc audit-log CloudEvent, a JSON array and JSON Lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import CORPUS, EXAMPLE_BASELINE
from test_gcp_events import (
    ADMINS,
    BUCKET,
    COMPUTE,
    CUSTOM_ROLE,
    MALLORY,
    OTHER_SA,
    PROJECT,
    RESPONDER,
    SHAPES,
    TERRAFORM,
    UC_SA,
    UNRELATED,
    add,
    bucket_policy,
    bucket_resource,
    bucket_update,
    documents,
    failed,
    key_created,
    load,
    project_policy,
    pubsub_push,
    remove,
    role_call,
    sa_call,
    sa_policy,
)
from trustwatch.baseline import Baseline
from trustwatch.cli import main
from trustwatch.engine import all_rules, evaluate
from trustwatch.gcp.events import complete
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

BA = "gcp.iam.binding_added"
IG = "gcp.iam.impersonation_granted"
BR = "gcp.iam.binding_removed"
KC = "gcp.sa.key_created"
SD = "gcp.sa.deleted_or_disabled"
BBA = "gcp.bucket.binding_added"
BBR = "gcp.bucket.binding_removed"
CR = "gcp.role.custom_role_changed"
PAO = "gcp.bucket.public_access_opened"
SA = "serviceAccount:"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
EXPECTED_POLICY = {
    "roles/logging.logWriter": [SA + COMPUTE],
    "roles/monitoring.metricWriter": [SA + COMPUTE],
    "roles/owner": [SA + TERRAFORM],
    "roles/viewer": ["user:username@gmail.com"],
}


@dataclass(frozen=True)
class Case:
    name: str
    entry: dict[str, Any]
    expected: list[str]


CASES = [
    # --- project-level grants ---
    # storage.admin on the project reaches the watched bucket too (issue 11)
    Case("compute SA granted storage.admin on its project", project_policy(add("roles/storage.admin", SA + COMPUTE)), [BBA, BA]),
    Case("compute SA granted pubsub.subscriber", project_policy(add("roles/pubsub.subscriber", SA + COMPUTE)), [BA]),
    Case("compute SA granted a role on another project", project_policy(add("roles/viewer", SA + COMPUTE), project="other-proj"), [BA]),
    Case(
        "compute SA made editor: it may now act as the automation and responder SAs",
        project_policy(add("roles/editor", SA + COMPUTE)),
        [BA, IG, IG],
    ),
    # a project grant reaches the responder's own SA (actors.responder) too (issue 11)
    Case("TokenCreator on the project reaches both SAs and the responder's", project_policy(add(TOKEN_CREATOR, MALLORY)), [IG, IG, IG]),
    Case("serviceAccountUser on the project", project_policy(add("roles/iam.serviceAccountUser", MALLORY)), [IG, IG, IG]),
    Case("owner on the project", project_policy(add("roles/owner", MALLORY)), [IG, IG, IG]),
    Case(
        "TokenCreator to the automation SA's listed impersonators, on the project",
        project_policy(add(TOKEN_CREATOR, ADMINS)),
        [IG, IG],  # listed for the automation SA only; the compute and responder SAs are reached too
    ),
    Case("compute SA loses logWriter", project_policy(remove("roles/logging.logWriter", SA + COMPUTE)), [BR]),
    Case("automation SA loses owner", project_policy(remove("roles/owner", SA + TERRAFORM)), [BR]),
    Case("expected logWriter (re)granted", project_policy(add("roles/logging.logWriter", SA + COMPUTE)), []),
    Case("automation SA's expected owner (re)granted", project_policy(add("roles/owner", SA + TERRAFORM)), []),
    Case("the published delta: viewer to a user", project_policy(add("roles/viewer", "user:username@gmail.com")), []),
    Case("someone's viewer removed", project_policy(remove("roles/viewer", "user:username@gmail.com")), []),
    Case("TokenCreator on another project", project_policy(add(TOKEN_CREATOR, MALLORY), project="other-proj"), []),
    Case("the responder's own change", project_policy(add(TOKEN_CREATOR, MALLORY), actor=RESPONDER), []),
    Case("a failed call", failed(project_policy(add(TOKEN_CREATOR, MALLORY))), []),
    # --- only the full policy logged ---
    Case("full policy as expected", project_policy(policy=EXPECTED_POLICY), []),
    Case(
        "full policy with an extra role for the compute SA",
        project_policy(policy=EXPECTED_POLICY | {"roles/compute.viewer": [SA + COMPUTE]}),
        [BA],
    ),
    Case(
        "full policy without the compute SA's metricWriter",
        project_policy(policy={k: v for k, v in EXPECTED_POLICY.items() if "metric" not in k}),
        [BR],
    ),
    # --- grants on a service account ---
    Case("TokenCreator on the compute SA", sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY)), [IG]),
    Case("workloadIdentityUser on the compute SA", sa_policy(COMPUTE, add("roles/iam.workloadIdentityUser", MALLORY)), [IG]),
    Case("OpenIdTokenCreator on the compute SA", sa_policy(COMPUTE, add("roles/iam.serviceAccountOpenIdTokenCreator", MALLORY)), [IG]),
    Case("editor on the automation SA", sa_policy(TERRAFORM, add("roles/editor", MALLORY)), [IG]),
    Case(
        "compute SA may act as the automation SA",
        sa_policy(TERRAFORM, add("roles/iam.serviceAccountUser", SA + COMPUTE)),
        [BA, IG],
    ),
    Case("listed impersonator on the automation SA", sa_policy(TERRAFORM, add("roles/iam.serviceAccountUser", ADMINS)), []),
    Case("a viewer role on the compute SA", sa_policy(COMPUTE, add("roles/iam.serviceAccountViewer", MALLORY)), []),
    Case("TokenCreator on an unrelated SA (the published entry)", sa_policy(OTHER_SA, add(TOKEN_CREATOR, MALLORY)), []),
    Case("TokenCreator removed from the compute SA", sa_policy(COMPUTE, remove(TOKEN_CREATOR, MALLORY)), []),
    Case("approved automation grants TokenCreator", sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=TERRAFORM), [IG]),
    # --- keys, deletion, disabling ---
    Case("key created for the compute SA", key_created(COMPUTE), [KC]),
    Case("key created for the automation SA", key_created(TERRAFORM), [KC]),
    Case("key created for an unrelated SA", key_created(OTHER_SA), []),
    Case("key creation denied", failed(key_created(COMPUTE)), []),
    Case("the responder mints a key", key_created(COMPUTE, actor=RESPONDER), []),
    Case("compute SA deleted", sa_call("DeleteServiceAccount", COMPUTE), [SD]),
    Case("automation SA disabled", sa_call("DisableServiceAccount", TERRAFORM), [SD]),
    Case("unrelated SA deleted", sa_call("DeleteServiceAccount", OTHER_SA), []),
    Case("compute SA re-enabled", sa_call("EnableServiceAccount", COMPUTE), []),
    # --- the watched bucket ---
    Case("bucket made public", bucket_policy(BUCKET, add("roles/storage.objectViewer", "allUsers")), [BBA]),
    Case("bucket open to all authenticated users", bucket_policy(BUCKET, add("roles/storage.objectViewer", "allAuthenticatedUsers")), [BBA]),
    Case("bucket objectAdmin to a user", bucket_policy(BUCKET, add("roles/storage.objectAdmin", MALLORY)), [BBA]),
    Case("UC SA's objectAdmin removed", bucket_policy(BUCKET, remove("roles/storage.objectAdmin", UC_SA)), [BBR]),
    Case("UC SA's expected objectAdmin (re)granted", bucket_policy(BUCKET, add("roles/storage.objectAdmin", UC_SA.upper())), []),
    Case("an unexpected binding removed", bucket_policy(BUCKET, remove("roles/storage.objectViewer", MALLORY)), []),
    Case("the published entry: another bucket made public", load("auditlog-storage-setiampermissions-bucket-allusers-panther"), []),
    Case("compute SA given objectAdmin on another bucket", bucket_policy("scratch-4821", add("roles/storage.objectAdmin", SA + COMPUTE)), [BA]),
    # --- the watched bucket's settings, when the entry logs the bucket after the call ---
    # (the published entries do not: test_gcp_bucket_settings.py covers those)
    # https://cloud.google.com/storage/docs/public-access-prevention
    # https://cloud.google.com/storage/docs/uniform-bucket-level-access
    Case("PAP turned off: inherited", bucket_update(BUCKET, response=bucket_resource(BUCKET, "inherited")), [PAO]),
    Case("PAP turned off: unspecified", bucket_update(BUCKET, response=bucket_resource(BUCKET, "unspecified")), [PAO]),
    Case("UBLA disabled", bucket_update(BUCKET, response=bucket_resource(BUCKET, ubla=False)), [PAO]),
    Case("PAP and UBLA both off", bucket_update(BUCKET, response=bucket_resource(BUCKET, "inherited", False)), [PAO, PAO]),
    Case("request body logging both off", bucket_update(BUCKET, request={"resource": bucket_resource(BUCKET, "INHERITED", False)}), [PAO, PAO]),
    Case("labels changed, both still on", bucket_update(BUCKET, response=bucket_resource(BUCKET)), []),
    Case("another bucket opened", bucket_update("scratch-4821", response=bucket_resource("scratch-4821", "inherited", False)), []),
    Case("opening denied", failed(bucket_update(BUCKET, response=bucket_resource(BUCKET, "inherited", False))), []),
    # --- the watched custom role ---
    Case("permission added to the watched role", role_call("UpdateRole", added=("iam.serviceAccounts.actAs",)), [CR]),
    Case("permission removed from the watched role", role_call("UpdateRole", removed=("compute.instances.get",)), [CR]),
    Case("watched role deleted", role_call("DeleteRole"), [CR]),
    Case("watched role's title changed", role_call("UpdateRole", mask=("title",)), []),
    Case("an unwatched role changed", role_call("UpdateRole", "projects/dbx-prod-4821/roles/scratch", added=("a.b.c",)), []),
    Case("role update denied", failed(role_call("UpdateRole", added=("iam.serviceAccounts.actAs",))), []),
    # --- unrelated ---
    Case("unrelated call: an instance template", UNRELATED, []),
]  # fmt: skip

PARAMS = [pytest.param(c, s, id=f"{c.name} [{s}]") for c in CASES for s in SHAPES]


def findings_of(docs: list[Any], baseline: Baseline) -> tuple[list, list]:
    found, not_evaluated = [], []
    for doc in docs:
        for parsed in parse_document(doc, "test"):
            assert parsed.error is None, parsed.error
            for change in parsed.changes:
                if change.needs_enrichment:
                    not_evaluated.append(change)
                found.extend(evaluate(change, baseline))
    return found, not_evaluated


@pytest.mark.parametrize(("case", "shape"), PARAMS)
def test_rule_cases(case: Case, shape: str, baseline):
    found, not_evaluated = findings_of(documents(case.entry, shape), baseline)
    assert not_evaluated == []
    assert sorted(f.rule for f in found) == case.expected
    assert len({f.id for f in found}) == len(found)


def test_every_gcp_rule_has_a_firing_case():
    fired = {rule for case in CASES for rule in case.expected}
    assert fired == {r.id for r in all_rules() if r.cloud == "gcp"}


def by_rule(entry: dict[str, Any], baseline: Baseline) -> dict[str, list]:
    found, _ = findings_of([entry], baseline)
    out: dict[str, list] = {}
    for finding in found:
        out.setdefault(finding.rule, []).append(finding)
    return out


@pytest.mark.parametrize(
    ("role", "severity"),
    [("roles/owner", "critical"), ("roles/editor", "critical"), ("roles/storage.admin", "critical"),
     ("roles/iam.securityAdmin", "critical"), ("roles/pubsub.subscriber", "high")],
)  # fmt: skip
def test_binding_added_severity(role, severity, baseline):
    (finding,) = by_rule(project_policy(add(role, SA + COMPUTE)), baseline)[BA]
    assert finding.severity == severity


def test_finding_fields(baseline):
    hits = by_rule(project_policy(add(TOKEN_CREATOR, MALLORY)), baseline)[IG]
    assert sorted(f.identity for f in hits) == sorted([COMPUTE, TERRAFORM, RESPONDER])
    assert {f.scope for f in hits} == {PROJECT} and {f.severity for f in hits} == {"critical"}
    compute = next(f for f in hits if f.identity == COMPUTE)
    assert compute.actual == {
        "resource": f"projects/{PROJECT}",
        "role": TOKEN_CREATOR,
        "member": MALLORY,
    }
    assert compute.remediation.action == "remove_iam_binding"
    assert compute.remediation.status == "planned"  # the compute SA has mode: remediate
    automation = next(f for f in hits if f.identity == TERRAFORM)
    assert automation.remediation.status == "none"  # defaults.mode: alert

    (public,) = by_rule(
        bucket_policy(BUCKET, add("roles/storage.objectViewer", "allUsers")), baseline
    )[BBA]
    assert (public.severity, public.identity, public.scope) == ("critical", BUCKET, PROJECT)
    assert public.remediation.action == "remove_bucket_binding"
    (private,) = by_rule(
        bucket_policy(BUCKET, add("roles/storage.objectAdmin", MALLORY)), baseline
    )[BBA]
    assert private.severity == "high"

    (key,) = by_rule(key_created(COMPUTE), baseline)[KC]
    assert (key.severity, key.identity, key.actor) == ("critical", COMPUTE, "alice@example.com")
    assert key.remediation.action == "disable_service_account_key"
    assert key.actual == {"key_id": "69049163b190437ab9279b28e8afa24bb5c5b076"}

    (deleted,) = by_rule(sa_call("DeleteServiceAccount", COMPUTE), baseline)[SD]
    assert deleted.remediation.action == "undelete_service_account"
    (disabled,) = by_rule(sa_call("DisableServiceAccount", COMPUTE), baseline)[SD]
    assert disabled.remediation.action == "enable_service_account"

    (removed,) = by_rule(project_policy(remove("roles/logging.logWriter", SA + COMPUTE)), baseline)[
        BR
    ]
    assert (removed.severity, removed.identity) == ("medium", COMPUTE)
    assert removed.remediation.action == "restore_iam_binding"

    (role,) = by_rule(role_call("UpdateRole", added=("iam.serviceAccounts.actAs",)), baseline)[CR]
    assert role.identity == CUSTOM_ROLE and role.actual == {
        "added": ["iam.serviceAccounts.actAs"],
        "removed": [],
    }
    assert role.remediation.action == "restore_custom_role"


def test_approved_automation_is_reported_not_reverted(baseline):
    (finding,) = by_rule(
        sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=TERRAFORM), baseline
    )[IG]
    assert finding.remediation.status == "skipped"


def test_delta_and_full_policy_give_the_same_finding_id(baseline):
    (a,) = by_rule(project_policy(add("roles/compute.viewer", SA + COMPUTE)), baseline)[BA]
    policy = EXPECTED_POLICY | {"roles/compute.viewer": [SA + COMPUTE]}
    (b,) = by_rule(project_policy(policy=policy), baseline)[BA]
    assert a.id == b.id


def test_pinned_custom_role_permissions(baseline):
    data = baseline.model_dump(mode="json", exclude_none=True)
    data["gcp"]["projects"][PROJECT]["custom_roles"][CUSTOM_ROLE] = {
        "permissions": ["logging.logEntries.create"]
    }
    pinned = Baseline.model_validate(data)
    same = role_call("UpdateRole", permissions=("logging.logEntries.create",))
    assert by_rule(same, pinned) == {}
    (more,) = by_rule(role_call("UpdateRole", added=("iam.serviceAccounts.actAs",)), pinned)[CR]
    assert more.actual == {"added": ["iam.serviceAccounts.actAs"], "removed": []}
    fewer = role_call("UpdateRole", permissions=(), removed=("logging.logEntries.create",))
    (lost,) = by_rule(fewer, pinned)[CR]
    assert lost.actual == {"added": [], "removed": ["logging.logEntries.create"]}


def test_folder_grant_of_an_impersonation_role_reaches_every_baseline_sa(baseline):
    entry = project_policy(add(TOKEN_CREATOR, MALLORY))
    entry["protoPayload"]["resourceName"] = "folders/9876543210"
    entry["resource"] = {"type": "folder", "labels": {"folder_id": "9876543210"}}
    entry["logName"] = "folders/9876543210/logs/cloudaudit.googleapis.com%2Factivity"
    hits = by_rule(entry, baseline)
    assert sorted(f.identity for f in hits[IG]) == sorted([COMPUTE, TERRAFORM, RESPONDER])
    assert {f.scope for f in hits[IG]} == {"folders/9876543210"}


# --- end to end: `trustwatch replay` ---


def replay(tmp_path, capsys, name: str, content: str) -> tuple[int, list[dict], str]:
    path = tmp_path / name
    path.write_text(content)
    code = main(["replay", "--baseline", str(EXAMPLE_BASELINE), str(path)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_cli_pubsub_push_lines(tmp_path, capsys):
    lines = [
        pubsub_push(key_created(COMPUTE)),
        pubsub_push(bucket_policy(BUCKET, add("roles/storage.objectViewer", "allUsers"))),
        pubsub_push(UNRELATED),
        pubsub_push(project_policy(add("roles/logging.logWriter", SA + COMPUTE))),
    ]
    code, findings, err = replay(tmp_path, capsys, "push.jsonl", "\n".join(map(json.dumps, lines)))
    assert code == 1 and err == ""
    assert [(f["rule"], f["identity"]) for f in findings] == [(KC, COMPUTE), (BBA, BUCKET)]


def test_cli_near_misses_exit_zero(tmp_path, capsys):
    entries = [
        failed(key_created(COMPUTE)),
        key_created(COMPUTE, actor=RESPONDER),
        project_policy(add("roles/owner", SA + TERRAFORM)),
        role_call("UpdateRole", mask=("title",)),
    ]
    code, findings, err = replay(tmp_path, capsys, "quiet.json", json.dumps(entries))
    assert (code, findings, err) == (0, [], "")


def test_cli_unique_id_only_is_reported_not_evaluated(tmp_path, capsys):
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), email_at="nowhere")
    code, findings, err = replay(tmp_path, capsys, "sa.json", json.dumps(entry))
    assert (code, findings) == (0, [])
    assert "not evaluated" in err


def test_cli_subprocess_over_the_corpus():
    """Every published GCP and Azure record replays: findings or skips, never bad input."""
    paths = sorted(
        str(p)
        for cloud in ("gcp", "azure")
        for p in (CORPUS / cloud).glob("*.json")
        # drift by itself (User Access Administrator at /): test_azure_attack_paths replays it
        if "elevateaccess" not in p.name
    )
    proc = subprocess.run(
        [sys.executable, "-m", "trustwatch", "replay", "--baseline", str(EXAMPLE_BASELINE), *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "error" not in proc.stderr


# --- enrichment: what the function does when the entry lacks a name or the policy ---


def test_completed_unique_id_change(baseline):
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), email_at="nowhere")
    account = {"name": f"projects/{PROJECT}/serviceAccounts/{COMPUTE}", "email": COMPUTE}
    parsed = parse_document(entry, "sa")
    (outcome,) = evaluate_records(parsed, baseline, enrich=lambda c: complete(c, account))
    (finding,) = outcome.findings
    assert (finding.rule, finding.identity) == (IG, COMPUTE)
    with pytest.raises(ValueError, match="expected an IAM ServiceAccount"):
        complete(next(c for p in parse_document(entry, "sa") for c in p.changes), {})


def test_completed_policy_change(baseline):
    entry = project_policy(add("roles/viewer", MALLORY))
    del entry["protoPayload"]["serviceData"]  # neither delta nor policy logged
    (change,) = [c for p in parse_document(entry, "p") for c in p.changes]
    assert change.needs_enrichment and change.not_evaluated == "policy not in event"
    current = {"bindings": [{"role": r, "members": m} for r, m in EXPECTED_POLICY.items()]}
    current["bindings"].append({"role": "roles/compute.viewer", "members": [SA + COMPUTE]})
    done = complete(change, current)
    assert not done.needs_enrichment
    assert [f.rule for f in evaluate(done, baseline)] == [BA]
