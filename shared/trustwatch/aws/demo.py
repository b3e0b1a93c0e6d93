"""AWS's act in `trustwatch demo`: the function's event path putting drift back, on moto.

A moto server on loopback stands in for account 111122223333 of the example baseline:
its roles are created as the baseline says, the recorded attacker calls of
`examples/events` are made for real, then each recorded event goes through the responder
the Lambda runs (`TRUSTWATCH_REMEDIATION=apply`), whose remediator re-reads IAM, puts back
what the baseline's `remediate` mode covers, and reads it back. Needs the dev extras (moto).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from trustwatch.baseline import Baseline
from trustwatch.findings import Finding

ACCOUNT = "111122223333"
EVENTS = ("aws-trust-backdoor.eventbridge.json", "aws-attach-admin.json")


def show(baseline: Baseline, examples: Path, out: TextIO) -> list[Finding]:
    """Run the act, write what happened to `out`; the findings with their remediation."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        out.write(f"\n(remediation not shown: {exc}; install with: pip install -e '.[dev]')\n")
        return []
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    # AWS managed policies (AdministratorAccess) exist in moto only when asked for
    saved = os.environ.get("MOTO_IAM_LOAD_MANAGED_POLICIES")
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with _environment(f"http://{host}:{port}") as iam:
            return _act(baseline, examples, iam, out)
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
        else:
            os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = saved


@contextmanager
def _environment(endpoint: str) -> Iterator[Any]:
    """boto3's default chain pointed at moto, acting in ACCOUNT (restored afterwards)."""
    import boto3

    plain = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TRUSTWATCH_REMEDIATION": "apply",
    }
    saved = {k: os.environ.get(k) for k in [*plain, "AWS_SESSION_TOKEN"]}
    os.environ.update(plain)
    try:
        # moto acts in the account whose role the credentials come from
        sts = boto3.session.Session().client("sts")
        role = f"arn:aws:iam::{ACCOUNT}:role/demo-admin"
        creds = sts.assume_role(RoleArn=role, RoleSessionName="demo")["Credentials"]
        os.environ["AWS_ACCESS_KEY_ID"] = creds["AccessKeyId"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = creds["SecretAccessKey"]
        os.environ["AWS_SESSION_TOKEN"] = creds["SessionToken"]
        boto3.DEFAULT_SESSION = None  # a session made earlier keeps its first credentials
        yield boto3.session.Session().client("iam")
    finally:
        boto3.DEFAULT_SESSION = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _act(baseline: Baseline, examples: Path, iam: Any, out: TextIO) -> list[Finding]:
    from trustwatch import clouds
    from trustwatch.dedup import MemoryDedupStore
    from trustwatch.remediation import Breaker
    from trustwatch.respond import Responder
    from trustwatch.table import render_table

    _create_baseline_roles(baseline, iam)
    out.write(
        f"\nRemediation, on a moto stand-in of account {ACCOUNT} (the baseline's roles "
        "created as it says, the recorded attacker calls made for real, each event then "
        "handled as the Lambda does with TRUSTWATCH_REMEDIATION=apply):\n"
    )
    findings: list[Finding] = []

    class Alerts:  # the act's alerts are the table below (the first act sent them for real)
        def send(self, sent: list[Finding]) -> None:
            pass

    responder = Responder(
        baseline=lambda: baseline,
        sender=Alerts(),
        environ=os.environ,
        remediator=clouds.get("aws").remediator(os.environ),
        apply_remediation=True,
        breaker=Breaker(MemoryDedupStore()),
    )
    for name in EVENTS:
        event = json.loads((examples / "events" / name).read_text())
        _attacker_call(event, iam)
        findings.extend(responder.handle(event, name).findings)
    render_table(findings, out)
    for finding in findings:
        r = finding.remediation
        out.write(f"  {finding.rule} on {finding.identity}: {r.status}: {r.detail[:160]}\n")
    trust = iam.get_role(RoleName="databricks-cross-account")["Role"]["AssumeRolePolicyDocument"]
    principals = [s.get("Principal") for s in trust.get("Statement", [])]
    out.write(f"  databricks-cross-account trusts now: {json.dumps(principals)}\n")
    attached = iam.list_attached_role_policies(RoleName="databricks-cluster-data")
    names = [p["PolicyName"] for p in attached["AttachedPolicies"]]
    out.write(f"  databricks-cluster-data (mode: alert) still holds: {names}\n")
    return findings


def _create_baseline_roles(baseline: Baseline, iam: Any) -> None:
    from trustwatch.aws import templates

    section = baseline.aws.accounts[ACCOUNT]
    for name, role in section.roles.items():
        trust = templates.expected_trust(
            role.trust,
            partition="aws",
            account_id=ACCOUNT,
            role_name=name,
            databricks_account_id=baseline.databricks.account_id if baseline.databricks else "",
        )[0]
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        for policy_name, spec in role.inline_policies.items():
            document = templates.expected_policy(spec, partition="aws", account_id=ACCOUNT)
            iam.put_role_policy(
                RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
            )


def _attacker_call(event: dict[str, Any], iam: Any) -> None:
    """Make the call the recorded CloudTrail event logged, so the state drifted for real."""
    detail = event.get("detail", event)
    params = detail["requestParameters"]
    if detail["eventName"] == "UpdateAssumeRolePolicy":
        iam.update_assume_role_policy(
            RoleName=params["roleName"], PolicyDocument=params["policyDocument"]
        )
    elif detail["eventName"] == "AttachRolePolicy":
        iam.attach_role_policy(RoleName=params["roleName"], PolicyArn=params["policyArn"])
