"""The AWS sweep tests' shared set-up: a fresh moto account per test holding the sweep
baseline's roles as Terraform would create them, and CloudTrail records to look up.

Used by tests/test_state_aws.py and tests/test_function_aws_sweep.py.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

from cloudservers import MotoServer
from loopback import LoopbackServer
from trustwatch.aws import templates
from trustwatch.baseline import Baseline, load_baseline

BASELINE = Path(__file__).parent / "data" / "sweep" / "aws-baseline.yaml"
TEMPLATE_ACCOUNT = "111122223333"
DATABRICKS = "arn:aws:iam::414351767826:root"
EXTERNAL_ID = "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77"


def fresh_account() -> str:
    return str(random.randint(200_000_000_000, 999_999_999_999))


def baseline_for(account: str, tmp_path: Path) -> Baseline:
    path = tmp_path / "baseline.yaml"
    path.write_text(BASELINE.read_text().replace(TEMPLATE_ACCOUNT, account))
    return load_baseline(path)


class Account:
    """A fresh moto account: its IAM client, and the environment that reaches it."""

    def __init__(self, moto: MotoServer, account: str) -> None:
        import boto3

        self.id = account
        sts = moto.client("sts")
        role = f"arn:aws:iam::{account}:role/test-admin"
        creds = sts.assume_role(RoleArn=role, RoleSessionName="test-setup")["Credentials"]
        self.environ = {
            **moto.environ(),
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }
        self.iam = boto3.client(
            "iam",
            endpoint_url=moto.endpoint_url,
            region_name=moto.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def client(self, service: str) -> Any:
        """A boto3 client of this account."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.environ["AWS_ENDPOINT_URL"],
            region_name=self.environ["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.environ["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.environ["AWS_SESSION_TOKEN"],
        )

    def state_table(self) -> str:
        """A state table in this account, shaped as deploy/aws creates it."""
        from cloudservers import unique_name

        name = unique_name("tw-state")
        self.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return name

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:iam::{self.id}:{kind}/{name}"


def permissions(*actions: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }


def build_clean(account: Account, baseline: Baseline) -> None:
    """The baseline's roles as Terraform would create them: nothing drifted."""
    iam = account.iam
    for name in ("databricks-uc-metastore-access", "databricks-cluster-data-read"):
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(permissions("s3:GetObject")))
    iam.create_policy(
        PolicyName="databricks-boundary", PolicyDocument=json.dumps(permissions("s3:*"))
    )
    section = baseline.aws.accounts[account.id]
    for name, role in section.roles.items():
        trust = templates.expected_trust(
            role.trust,
            partition="aws",
            account_id=account.id,
            role_name=name,
            databricks_account_id=EXTERNAL_ID,
        )[0]
        extra = (
            {"PermissionsBoundary": role.permissions_boundary} if role.permissions_boundary else {}
        )
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), **extra)
        for arn in role.managed_policies:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        for policy_name, spec in role.inline_policies.items():
            document = templates.expected_policy(spec, partition="aws", account_id=account.id)
            iam.put_role_policy(
                RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
            )
    iam.create_instance_profile(InstanceProfileName="databricks-cluster-data")
    iam.add_role_to_instance_profile(
        InstanceProfileName="databricks-cluster-data", RoleName="databricks-cluster-data"
    )
    # the responder's own role and an unrelated service role: neither is reported
    lambda_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(
        RoleName="trustwatch-responder", AssumeRolePolicyDocument=json.dumps(lambda_trust)
    )
    iam.put_role_policy(
        RoleName="trustwatch-responder",
        PolicyName="sweep",
        PolicyDocument=json.dumps(permissions("iam:GetAccountAuthorizationDetails")),
    )
    iam.create_role(RoleName="some-lambda", AssumeRolePolicyDocument=json.dumps(lambda_trust))


def add_trust_principal(account: Account) -> None:
    iam = account.iam
    doc = iam.get_role(RoleName="databricks-cross-account")["Role"]["AssumeRolePolicyDocument"]
    doc["Statement"].append(
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": "sts:AssumeRole",
        }
    )
    iam.update_assume_role_policy(
        RoleName="databricks-cross-account", PolicyDocument=json.dumps(doc)
    )


def databricks_trust() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": DATABRICKS},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
            }
        ],
    }


def record(name: str, source: str, when: datetime, **params: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/dev/alice",
            "accountId": "111122223333",
        },
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "requestParameters": params,
        "responseElements": None,
        "eventID": f"{name}-{when.timestamp():.0f}-{random.random()}",
        "eventType": "AwsApiCall",
        "readOnly": name.startswith(("Get", "List")),
        "recipientAccountId": "111122223333",
    }


class ForwardProxy(LoopbackServer):
    """A loopback HTTP forward proxy to moto, for S3 Control.

    botocore sends S3 Control calls to `<account id>.<endpoint host>` (the endpoint rules
    put the account in the host name), which does not resolve for a loopback endpoint.
    With `HTTP_PROXY` pointing here, the client hands the whole URL to this proxy, which
    sends the request on to moto unchanged (moto reads the account from the
    x-amz-account-id header). `hosts` records the host names it was asked for.
    """

    def __init__(self, target: str) -> None:
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import urlsplit

        self.hosts: list[str] = []
        origin = urlsplit(target)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                import http.client

                url = urlsplit(self.path)
                proxy.hosts.append(url.hostname or "")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(origin.hostname, origin.port, timeout=30)
                path = url.path + (f"?{url.query}" if url.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                conn.request(self.command, path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)
