"""Every azure.* rule: operations that fire it and near-misses that must not (Panther style).

Each case is one operation (its Start and Success records, built from the real records in
tests/data/azure) with the rule ids it must give; every case is replayed in every delivery
shape: an Event Hub batch, records delivered one by one, the REST schema, upper-case
exports and the Event Grid event (which carries no body: not evaluated, never a finding).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from conftest import EXAMPLE_BASELINE
from test_azure_events import (
    CONNECTOR,
    CONNECTOR_PRINCIPAL,
    RESPONDER,
    RG,
    ROLE,
    STORAGE,
    STRANGER,
    SUB,
    TERRAFORM_SP,
    activity,
    assign,
    assignment_response,
    connector_body,
    delete,
    load,
    shout,
    to_event_grid,
    to_rest,
    unassign,
    write_connector,
)
from trustwatch.azure.events import complete
from trustwatch.baseline import Baseline
from trustwatch.cli import main
from trustwatch.engine import all_rules, evaluate
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

SUBSCRIPTION = f"/subscriptions/{SUB}"
CONTAINER = f"{STORAGE}/blobServices/default/containers/uc-root"
UAMI = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uc-identity"
UAMI_PRINCIPAL = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
OTHER_CONNECTOR = f"{RG}/providers/Microsoft.Databricks/accessConnectors/scratch"
NEW_PRINCIPAL = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"


@pytest.fixture(scope="module")
def azure_baseline() -> Baseline:
    """examples/baseline.yaml plus a user-assigned identity (the example has none)."""
    data = yaml.safe_load(EXAMPLE_BASELINE.read_text())
    data["azure"]["subscriptions"][SUB]["identities"]["uc-identity"] = {
        "principal_id": UAMI_PRINCIPAL,
        "resource_id": UAMI,
    }
    return Baseline.model_validate(data)


@dataclass(frozen=True)
class Case:
    name: str
    records: list[dict[str, Any]]  # one operation: Start and terminal record
    expected: list[str]
    # Event Grid carries no body: role assignments and connector writes are not evaluated
    grid_evaluated: bool = False
    shapes: tuple[str, ...] = field(default=("batch", "one by one", "rest", "upper case", "grid"))


UA = "azure.role_assignment.unexpected"
PS = "azure.role_assignment.protected_scope"
ER = "azure.role_assignment.expected_removed"
IC = "azure.identity.changed"
CONNECTOR_DELETE = "Microsoft.Databricks/accessConnectors/delete"
UAMI_DELETE = "Microsoft.ManagedIdentity/userAssignedIdentities/delete"
SYSTEM = connector_body("SystemAssigned", CONNECTOR_PRINCIPAL)
UAMI_DETAIL = {"principalId": UAMI_PRINCIPAL, "clientId": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"}

CASES = [
    # --- a baseline identity gets more ---
    Case("connector made Owner of the subscription", assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION), [UA]),
    Case("connector made Reader of the resource group", assign(CONNECTOR_PRINCIPAL, ROLE["Reader"], RG), [UA]),
    Case(
        "connector made Blob Data Owner of the protected account",
        assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Owner"], STORAGE),
        [PS, UA],
    ),
    Case("terraform SP made Owner of the subscription", assign(TERRAFORM_SP, ROLE["Owner"], SUBSCRIPTION), [UA]),
    # --- anyone at a protected scope ---
    Case("stranger gets Blob Data Reader on the protected account", assign(STRANGER, ROLE["Storage Blob Data Reader"], STORAGE), [PS]),
    Case("stranger gets Reader on a container inside it", assign(STRANGER, ROLE["Reader"], CONTAINER), [PS]),
    # --- expected grants, and unrelated ones ---
    Case("connector's expected Blob Data Contributor", assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE), []),
    Case(
        "connector's Blob Data Reader on a container: inside the expected Contributor",
        assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Reader"], CONTAINER),
        [],
    ),
    Case("terraform SP's expected Contributor, applied by itself", assign(TERRAFORM_SP, ROLE["Contributor"], RG, actor=TERRAFORM_SP), []),
    Case("stranger gets Reader on the resource group", assign(STRANGER, ROLE["Reader"], RG), []),
    Case("the responder's own change", assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION, actor=RESPONDER), []),
    Case(
        "a failed assignment (Start, then Failure)",
        [
            assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)[0],
            activity("Microsoft.Authorization/roleAssignments/write", "Failure", assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)[0]["resourceId"]),
        ],
        [],
        grid_evaluated=True,  # a ResourceWriteFailure event: failed, nothing to fetch
        # delivered alone, the Start record cannot know the call will fail
        shapes=("batch", "rest", "upper case", "grid"),
    ),
    # --- expected assignments removed ---
    Case("connector's Blob Data Contributor deleted", unassign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE), [ER]),
    Case("connector's Queue Data Contributor deleted", unassign(CONNECTOR_PRINCIPAL, ROLE["Storage Queue Data Contributor"], STORAGE), [ER]),
    Case("terraform SP's Contributor deleted", unassign(TERRAFORM_SP, ROLE["Contributor"], RG), [ER]),
    Case("an unexpected assignment of the connector deleted", unassign(CONNECTOR_PRINCIPAL, ROLE["Reader"], RG), []),
    Case("a stranger's assignment deleted", unassign(STRANGER, ROLE["Storage Blob Data Reader"], STORAGE), []),
    Case(
        "the connector's assignment at a container deleted (the expected one is the account's)",
        unassign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], CONTAINER),
        [],
    ),
    # --- the access connector's identity ---
    Case("connector identity removed", write_connector(connector_body("None")), [IC]),
    Case("connector identity block dropped", write_connector(connector_body(None), request={"identity": {"type": "None"}}), [IC]),
    Case("connector gets a new system identity", write_connector(connector_body("SystemAssigned", NEW_PRINCIPAL)), [IC]),
    Case(
        "a user-assigned identity added beside the system one",
        write_connector(connector_body("SystemAssigned,UserAssigned", CONNECTOR_PRINCIPAL, {UAMI: UAMI_DETAIL})),
        [IC],
    ),
    Case(
        "swapped to a user-assigned identity",
        write_connector(connector_body("UserAssigned", users={UAMI: UAMI_DETAIL})),
        [IC],
    ),
    Case("connector tags updated, same identity", write_connector(SYSTEM, request={"tags": {"team": "data"}}), []),
    Case("connector rewritten with the same identity", write_connector(SYSTEM), []),
    Case(
        "another connector's identity removed",
        write_connector(connector_body("None") | {"id": OTHER_CONNECTOR}),
        [],
    ),
    Case("access connector deleted", delete(CONNECTOR_DELETE, CONNECTOR), [IC], grid_evaluated=True),
    Case("baseline user-assigned identity deleted", delete(UAMI_DELETE, UAMI), [IC], grid_evaluated=True),
    Case("another connector deleted", delete(CONNECTOR_DELETE, OTHER_CONNECTOR), [], grid_evaluated=True),
    Case(
        "another user-assigned identity deleted",
        delete(UAMI_DELETE, UAMI.replace("uc-identity", "scratch")),
        [],
        grid_evaluated=True,
    ),
    Case(
        "connector deleted by the responder",
        delete(CONNECTOR_DELETE, CONNECTOR, actor=RESPONDER),
        [],
        grid_evaluated=True,
    ),
    Case(
        "unrelated operation: a VM deleted",
        delete("Microsoft.Compute/virtualMachines/delete", load("activitylog-vm-delete-panther-synthetic")["resourceId"]),
        [],
        grid_evaluated=True,
    ),
]  # fmt: skip


def documents(case: Case, shape: str) -> list[Any]:
    """The case's records as the documents one delivery shape brings."""
    if shape == "batch":
        return [{"records": case.records}]
    if shape == "one by one":
        return list(case.records)
    if shape == "rest":
        return [[to_rest(r) for r in case.records]]
    if shape == "upper case":
        return [{"records": [shout(r) for r in case.records]}]
    return [to_event_grid(case.records[-1])]


def findings_of(docs: list[Any], baseline: Baseline) -> tuple[list, list]:
    """Unique findings (by id: one operation's records share them) and unevaluated changes."""
    found, not_evaluated = {}, []
    for doc in docs:
        for parsed in parse_document(doc, "test"):
            assert parsed.error is None, parsed.error
            for change in parsed.changes:
                if change.needs_enrichment:
                    not_evaluated.append(change)
                for finding in evaluate(change, baseline):
                    found.setdefault(finding.id, finding)
    return list(found.values()), not_evaluated


PARAMS = [
    pytest.param(case, shape, id=f"{case.name} [{shape}]")
    for case in CASES
    for shape in case.shapes
]


@pytest.mark.parametrize(("case", "shape"), PARAMS)
def test_rule_cases(case: Case, shape: str, azure_baseline):
    found, not_evaluated = findings_of(documents(case, shape), azure_baseline)
    if shape == "grid" and not case.grid_evaluated:
        assert found == []
        assert [c.not_evaluated for c in not_evaluated] == ["body not in event"]
        return
    assert not_evaluated == []
    assert sorted(f.rule for f in found) == case.expected


def test_every_azure_rule_has_a_firing_case():
    from test_azure_attack_paths import CASES as ATTACK_PATHS  # it imports this module
    from test_azure_storage_entra import ENTRA_CASES, STORAGE_CASES

    fired = {rule for case in CASES + ATTACK_PATHS for rule in case.expected}
    fired |= {rule for case in STORAGE_CASES + ENTRA_CASES for rule in case.expected}
    assert fired == {r.id for r in all_rules() if r.cloud == "azure"}


def one(records: list[dict], baseline: Baseline):
    found, _ = findings_of([{"records": records}], baseline)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("role", "severity"),
    [("Owner", "critical"), ("Contributor", "critical"), ("User Access Administrator", "critical"),
     ("Reader", "high"), ("Storage Account Contributor", "high")],
)  # fmt: skip
def test_unexpected_severity(role, severity, azure_baseline):
    finding = one(assign(CONNECTOR_PRINCIPAL, ROLE[role], RG), azure_baseline)
    assert finding.severity == severity


def test_finding_fields(azure_baseline):
    finding = one(assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION), azure_baseline)
    assert finding.cloud == "azure" and finding.scope == SUB
    assert finding.identity == CONNECTOR_PRINCIPAL
    assert finding.actor == "admin@contoso.com"
    assert finding.actual["role"] == "Owner" and finding.actual["scope"] == SUBSCRIPTION
    assert {"role": "Storage Blob Data Contributor", "scope": STORAGE} in finding.expected
    assert finding.remediation.action == "delete_role_assignment"
    assert finding.remediation.status == "none"  # defaults.mode is alert

    removed = one(unassign(TERRAFORM_SP, ROLE["Contributor"], RG), azure_baseline)
    assert (removed.severity, removed.identity) == ("medium", TERRAFORM_SP)
    assert removed.remediation.action == "restore_role_assignment"

    changed = one(write_connector(connector_body("None")), azure_baseline)
    assert changed.identity == CONNECTOR and changed.severity == "high"
    assert changed.remediation.action == "restore_access_connector_identity"


def test_approved_automation_is_reported_not_reverted(azure_baseline):
    finding = one(
        assign(TERRAFORM_SP, ROLE["Owner"], SUBSCRIPTION, actor=TERRAFORM_SP), azure_baseline
    )
    assert finding.remediation.status == "skipped"


def test_identity_mode_override_plans_remediation(azure_baseline):
    data = azure_baseline.model_dump(mode="json", exclude_none=True)
    data["azure"]["subscriptions"][SUB]["identities"]["uc-access-connector"]["mode"] = "remediate"
    remediating = Baseline.model_validate(data)
    finding = one(assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION), remediating)
    assert finding.remediation.status == "planned"


def test_start_and_success_in_a_batch_give_one_finding(azure_baseline):
    records = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)
    findings = [
        f
        for parsed in parse_document({"records": records}, "test")
        for change in parsed.changes
        for f in evaluate(change, azure_baseline)
    ]
    assert len(findings) == 1


def test_baseline_spelled_in_other_case_and_by_guid(azure_baseline):
    """Ids and scopes compare case-insensitively; a role is the same by name or GUID."""
    text = EXAMPLE_BASELINE.read_text()
    text = text.replace("resourceGroups/dbx-prod", "RESOURCEGROUPS/DBX-PROD")
    text = text.replace(
        "role: Storage Blob Data Contributor",
        f"role: {ROLE['Storage Blob Data Contributor'].upper()}",
    )
    text = text.replace(CONNECTOR_PRINCIPAL, CONNECTOR_PRINCIPAL.upper())
    data = yaml.safe_load(text)
    shouted = Baseline.model_validate(data)
    for records, expected in [
        (assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE), []),
        (assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE.upper()), []),
        (assign(CONNECTOR_PRINCIPAL, ROLE["Reader"], RG.lower()), [UA]),
        (assign(STRANGER, ROLE["Reader"], STORAGE.lower()), [PS]),
        (
            unassign(
                CONNECTOR_PRINCIPAL.upper(), ROLE["Storage Blob Data Contributor"], STORAGE.upper()
            ),
            [ER],
        ),
        (delete(CONNECTOR_DELETE, CONNECTOR.upper()), [IC]),
    ]:
        for baseline in (azure_baseline, shouted):
            for doc in ({"records": records}, {"records": [shout(r) for r in records]}):
                found, _ = findings_of([doc], baseline)
                assert sorted(f.rule for f in found) == expected, records[-1]["resourceId"]


def test_corpus_panther_owner_grant_is_not_ours(azure_baseline):
    """The published Owner grant is to a principal and subscription not in the baseline."""
    found, _ = findings_of(
        [load("activitylog-roleassignments-write-owner-panther-synthetic")], azure_baseline
    )
    assert found == []


# --- end to end: `trustwatch replay` ---


def replay(tmp_path, capsys, name: str, content: str) -> tuple[int, list[dict], str]:
    path = tmp_path / name
    path.write_text(content)
    code = main(["replay", "--baseline", str(EXAMPLE_BASELINE), str(path)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_cli_event_hub_batch(tmp_path, capsys):
    records = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION) + unassign(
        TERRAFORM_SP, ROLE["Contributor"], RG, correlation="0b9c8d7e-0000-4000-8000-000000000001"
    )
    code, findings, _ = replay(tmp_path, capsys, "hub.json", json.dumps({"records": records}))
    assert code == 1
    assert [(f["rule"], f["severity"]) for f in findings] == [(UA, "critical"), (ER, "medium")]


def test_cli_json_lines_of_start_and_success_report_once(tmp_path, capsys):
    records = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)
    code, findings, _ = replay(tmp_path, capsys, "a.jsonl", "\n".join(map(json.dumps, records)))
    assert code == 1 and [f["rule"] for f in findings] == [UA]


def test_cli_event_grid_assignment_is_not_evaluated(tmp_path, capsys):
    events = [to_event_grid(assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)[1])]
    code, findings, err = replay(tmp_path, capsys, "grid.json", json.dumps(events))
    assert (code, findings) == (0, [])
    assert "not evaluated: body not in event" in err


def test_cli_expected_and_unrelated_give_nothing(tmp_path, capsys):
    records = (
        assign(CONNECTOR_PRINCIPAL, ROLE["Storage Blob Data Contributor"], STORAGE)
        + assign(STRANGER, ROLE["Reader"], RG, correlation="0b9c8d7e-0000-4000-8000-000000000002")
        + [load("activitylog-vm-delete-panther-synthetic")]
    )
    code, findings, err = replay(tmp_path, capsys, "quiet.json", json.dumps({"records": records}))
    assert (code, findings, err) == (0, [], "")


def test_cli_subprocess_rest_export(tmp_path):
    path = tmp_path / "activity.json"
    path.write_text(json.dumps([to_rest(r) for r in write_connector(connector_body("None"))]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustwatch",
            "replay",
            "--baseline",
            str(EXAMPLE_BASELINE),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    (finding,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert finding["rule"] == IC and finding["identity"] == CONNECTOR
    assert finding["actor"] == "admin@contoso.com"


# --- enrichment: what the function does with an Event Grid event ---


def test_completed_event_grid_change_gives_the_activity_log_finding(azure_baseline):
    records = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)
    fetched = assignment_response(CONNECTOR_PRINCIPAL, ROLE["Owner"], SUBSCRIPTION)
    parsed = parse_document(to_event_grid(records[-1]), "grid")
    (outcome,) = evaluate_records(parsed, azure_baseline, enrich=lambda c: complete(c, fetched))
    (direct,) = findings_of([{"records": records}], azure_baseline)[0]
    (finding,) = outcome.findings
    assert (finding.rule, finding.id) == (UA, direct.id)
    assert outcome.not_evaluated is None


def test_completed_connector_write(azure_baseline):
    success = write_connector(connector_body("None"))[-1]
    (change,) = [c for p in parse_document(to_event_grid(success), "g") for c in p.changes]
    done = complete(change, connector_body("None"))
    assert [f.rule for f in evaluate(done, azure_baseline)] == [IC]
    with pytest.raises(ValueError, match="does not wait for a body"):
        complete(done, connector_body("None"))
