"""Red-team cases for remediation: each one a way to make a put-back misfire, on the real
parts the clouds' remediation tests use (the GCP stand-in tests/gcpserver.py with the real
REST client; moto server with boto3 through the Lambda entry point; the ARM stand-in
tests/armserver.py with the real azure-mgmt-authorization client).

The cloud semantics relied on:
- GCP: a caller impersonating a service account is logged with that account as
  `principalEmail` and the impersonator in `serviceAccountDelegationInfo`
  (https://cloud.google.com/iam/docs/audit-logging/examples-service-accounts): the change
  is the impersonator's, not the approved automation's;
- AWS: SetDefaultPolicyVersion makes any existing version of a customer managed policy the
  default, and every role it is attached to gets that version's permissions
  (https://docs.aws.amazon.com/IAM/latest/APIReference/API_SetDefaultPolicyVersion.html,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-versioning.html);
- Azure: Managed Identity Operator on a user-assigned identity lets its holder assign it to
  a resource it controls, so act as it
  (https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/identity#managed-identity-operator).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from gcpserver import policy
from test_azure_events import ROLE, STRANGER, assign
from test_gcp_events import COMPUTE, MALLORY, TERRAFORM, add, sa_policy
from test_remediate_aws import WRITE_ACTIONS, call, one, policy_arn
from test_remediate_azure import (
    REMEDIATE_BASELINE,
    SUB,
    UAMI,
    findings_of,
    granted,
    only,
    put_back,
)
from test_remediate_gcp import COMPUTE_KEY, TOKEN_CREATOR, members, remediator_for
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.findings import Finding
from trustwatch.respond import Responder

# their fixtures: the GCP stand-in and baseline; moto's world, the Lambda, its webhook
pytest_plugins = [
    "test_remediate_gcp",
    "test_remediate_aws",
    "test_remediate_azure",
    "test_remediation",
]


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Finding] = []

    def send(self, findings: list[Finding]) -> None:
        self.sent.extend(findings)


# --- approved actors: an impersonator does not borrow the approval ---------------------------


def test_impersonating_the_approved_account_does_not_freeze_remediation(gcp, rbaseline):
    """Mallory acts *as* the approved Terraform account (token creator on it): the engine
    does not take the change for the automation's (its delegation chain names Mallory), and
    remediation must not either: the grant she gave herself is removed."""
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=TERRAFORM)
    entry["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"] = [
        {"firstPartyPrincipal": {"principalEmail": MALLORY.removeprefix("user:")}}
    ]
    sender = Recorder()
    responder = Responder(
        baseline=lambda: rbaseline,
        sender=sender,
        environ={},
        remediator=remediator_for(gcp),
        apply_remediation=True,
    )
    (finding,) = responder.handle(entry, "test").findings
    assert finding.actor == TERRAFORM
    assert finding.remediation.status == "applied", finding.remediation.detail
    assert members(gcp, COMPUTE_KEY, TOKEN_CREATOR) == []
    assert sender.sent == [finding]


def test_the_approved_account_acting_alone_is_still_left_alone(gcp, rbaseline):
    gcp.policies[COMPUTE_KEY] = policy({TOKEN_CREATOR: [MALLORY]})
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY), actor=TERRAFORM)
    responder = Responder(
        baseline=lambda: rbaseline,
        sender=Recorder(),
        environ={},
        remediator=remediator_for(gcp),
        apply_remediation=True,
    )
    (finding,) = responder.handle(entry, "test").findings
    assert finding.remediation.status == "skipped"
    assert "approved automation" in finding.remediation.detail
    assert gcp.writes() == []


# --- AWS policy versions: only a version the baseline's roles use, only ever narrower ---------


def _doc(action: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
    }


def _new_default(world: Any, arn: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The attacker's CreatePolicyVersion (set as default) and its CloudTrail record."""
    text = json.dumps(doc)
    made = world.iam.create_policy_version(PolicyArn=arn, PolicyDocument=text, SetAsDefault=True)
    version = made["PolicyVersion"]["VersionId"]
    return call(
        "CreatePolicyVersion",
        {"policyArn": arn, "policyDocument": text, "setAsDefault": True},
        responseElements={"policyVersion": {"versionId": version, "isDefaultVersion": True}},
    )


def test_rollback_never_goes_to_a_version_granting_what_the_default_does_not(function, world):
    """v1 reads objects (the baseline role's); the attacker leaves v2 (`sqs:*`, neither admin
    nor an escalation) behind, then makes v3 (`s3:*`) the default. Going back to v2 would
    grant SQS, which no version the role ran with granted: v1 is the one to go back to."""
    fn = function()
    world.iam.create_policy_version(
        PolicyArn=world.data_read, PolicyDocument=json.dumps(_doc("sqs:*")), SetAsDefault=False
    )
    finding = one(
        fn.deliver(_new_default(world, world.data_read, _doc("s3:*"))),
        "aws.policy.version_changed",
    )
    assert finding["remediation"]["status"] == "applied", finding["remediation"]["detail"]
    assert finding["remediation"]["after"] == {"default_version": "v1"}
    assert world.default_version(world.data_read) == "v1"


def test_no_narrower_version_fails_without_a_write(function, world):
    """Every other version grants something the default does not: nothing is set."""
    fn = function()
    world.iam.create_policy_version(
        PolicyArn=world.data_read, PolicyDocument=json.dumps(_doc("sqs:*")), SetAsDefault=True
    )
    world.iam.delete_policy_version(PolicyArn=world.data_read, VersionId="v1")
    finding = one(
        fn.deliver(_new_default(world, world.data_read, _doc("s3:*"))),
        "aws.policy.version_changed",
    )
    assert finding["remediation"]["status"] == "failed"
    assert "grants what the default version does not (v2)" in finding["remediation"]["detail"]
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert world.default_version(world.data_read) == "v3"


def test_forged_finding_cannot_roll_back_a_policy_the_baseline_does_not_name(
    monkeypatch, moto_server, world, tmp_path, capsys
):
    """A findings file is untrusted input: one naming a customer policy no baseline role
    uses (here with `defaults.mode: remediate`) must not change that policy."""
    import os

    from trustwatch.cli import main

    for key in [k for k in os.environ if k.startswith(("TRUSTWATCH_", "AWS_"))]:
        monkeypatch.delenv(key)
    for key, value in moto_server.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", world.proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", world.proxy.url)
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "state.sqlite"))
    baseline = world.write_baseline("remediate")
    baseline.write_text(baseline.read_text().replace("mode: alert,", "mode: remediate,"))
    unwatched = policy_arn(f"unwatched-{world.sfx}")
    world.iam.create_policy(
        PolicyName=unwatched.rsplit("/", 1)[-1], PolicyDocument=json.dumps(_doc("s3:GetObject"))
    )
    events = tmp_path / "trail.json"
    events.write_text(json.dumps(_new_default(world, world.data_read, _doc("s3:*"))))
    assert main(["replay", "--baseline", str(baseline), str(events)]) == 1
    (real,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    world.iam.create_policy_version(
        PolicyArn=unwatched, PolicyDocument=json.dumps(_doc("s3:*")), SetAsDefault=True
    )
    forged = real.model_copy(update={"identity": unwatched})
    findings = tmp_path / "findings.jsonl"
    findings.write_text(forged.to_json() + "\n")
    world.proxy.calls.clear()
    main(["remediate", "--baseline", str(baseline), "--apply", str(findings)])
    (done,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    assert done.remediation.status == "none", done.remediation.detail
    assert "not a policy of a baseline role" in done.remediation.detail
    assert world.proxy.writes(WRITE_ACTIONS) == []
    assert world.default_version(unwatched) == "v2"


# --- Azure: the mode of the identity a role lets someone act as -------------------------------


def _azure_alerting_uc_identity() -> Baseline:
    data = yaml.safe_load(REMEDIATE_BASELINE.read_text())
    data["azure"]["subscriptions"][SUB]["identities"]["uc-identity"]["mode"] = "alert"
    return Baseline.model_validate(data)


def test_a_role_acting_as_an_alert_mode_identity_is_only_shown(arm):
    """Managed Identity Operator on a user-assigned identity lets its holder act as it
    ("Managed Identity Operator: read and assign user assigned identity",
    https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/identity#managed-identity-operator).
    The drift is about that identity: its `mode: alert` holds, whatever `defaults.mode`
    says (as for its federated credentials): the plan is shown, nothing deleted."""

    alerting = _azure_alerting_uc_identity()
    operator = ROLE["Managed Identity Operator"]
    rid = granted(arm, STRANGER, operator, UAMI)
    finding = only(
        findings_of(assign(STRANGER, operator, UAMI), alerting),
        "azure.role_assignment.protected_scope",
    )
    assert finding.remediation.status == "none", finding.remediation  # the engine says so
    (done,) = put_back([finding], alerting, arm)
    assert done.remediation.status == "none", done.remediation.detail
    assert done.remediation.detail.startswith("mode is alert; would delete_role_assignment")
    assert arm.calls("DELETE") == 0 and rid in arm.resources


def test_a_role_acting_as_a_remediate_mode_identity_is_deleted(arm):

    strict = load_baseline(REMEDIATE_BASELINE)
    operator = ROLE["Managed Identity Operator"]
    rid = granted(arm, STRANGER, operator, UAMI)
    finding = only(
        findings_of(assign(STRANGER, operator, UAMI), strict),
        "azure.role_assignment.protected_scope",
    )
    (done,) = put_back([finding], strict, arm)
    assert done.remediation.status == "applied", done.remediation.detail
    assert rid not in arm.resources


# --- the alert of a put-back that failed is never a duplicate of one that worked -------------


def test_a_failed_put_back_alerts_even_after_the_same_drift_was_put_back(toy):
    """The same drift again (same finding id) after a verified put-back: this time the
    write is refused. Its alert is not a duplicate of the first (`applied`): it is the
    only word that the drift is still there. (The toy cloud, tests/toycloud: one role's
    members, a write that can be refused.)"""
    from test_remediation import TOY, _grant
    from trustwatch import clouds
    from trustwatch.alerts import Dispatcher
    from trustwatch.alerts.receivers import RecordingHTTPServer
    from trustwatch.baseline import parse_baseline
    from trustwatch.dedup import MemoryDedupStore

    baseline = parse_baseline(TOY.format(mode="remediate"))
    with RecordingHTTPServer() as hook:
        env = {"TRUSTWATCH_WEBHOOK_URL": hook.url, "TRUSTWATCH_WEBHOOK_SECRET": "k"}
        responder = Responder(
            baseline=lambda: baseline,
            sender=Dispatcher.from_env(env, store=MemoryDedupStore()),
            environ={},
            remediator=clouds.get("toy").remediator({}),
            apply_remediation=True,
        )
        (first,) = responder.handle(_grant(), "e").findings
        assert first.remediation.status == "applied"
        toy.members["reader"].add("eve")  # mallory again
        toy.faults = ["denied"]
        (second,) = responder.handle(_grant(), "e").findings
        assert second.id == first.id and second.remediation.status == "failed"
        statuses = [r.json()["remediation"]["status"] for r in hook.requests]
        assert statuses == ["applied", "failed"]
        toy.faults = ["denied"]  # and refused again: that one is the duplicate
        responder.handle(_grant(), "e")
        assert len(hook.requests) == 2
