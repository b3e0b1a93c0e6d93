"""The GCP entry point served by the real functions-framework server; CloudEvents POSTed in
binary and structured mode; alerts land at a local webhook receiver. What an entry lacks is
read from a local Google Cloud API stand-in (tests/gcpserver.py), signed in through its
metadata server as on Cloud Functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cloudservers import free_port, wait_for_port
from conftest import EXAMPLE_BASELINE, ROOT
from gcpserver import GcpServer, is_write, policy
from test_gcp_enrich import without_policy
from test_gcp_events import (
    BUCKET,
    COMPUTE,
    MALLORY,
    UNRELATED,
    add,
    bucket_policy,
    bucket_resource,
    bucket_update,
    eventarc,
    failed,
    pubsub_cloudevent,
    sa_policy,
)
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply

TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"


@pytest.fixture(scope="module")
def webhook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpServer]:
    with GcpServer(require_token=True) as server:
        yield server


# google-auth's own settings: none may leak in from the machine running the tests
_GOOGLE_AUTH_ENV = ("GOOGLE_", "GCE_METADATA", "NO_GCE_CHECK", "CLOUDSDK_")


@pytest.fixture(scope="module")
def function_url(webhook: RecordingHTTPServer, gcp: GcpServer, tmp_path_factory) -> Iterator[str]:
    with serve_function(webhook, gcp, tmp_path_factory) as url:
        yield url


@contextmanager
def serve_function(
    webhook: RecordingHTTPServer, gcp: GcpServer, tmp_path_factory: Any, **settings: str
) -> Iterator[str]:
    """functions-framework serving on_audit_log, alerting to `webhook`, reading from `gcp`
    (signed in through its metadata server); `settings` add to (or replace) its
    environment, e.g. TRUSTWATCH_REMEDIATION="apply"."""
    port = free_port()
    log = tmp_path_factory.mktemp("ff") / "server.log"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRUSTWATCH_", *_GOOGLE_AUTH_ENV))
        },
        "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
        "TRUSTWATCH_WEBHOOK_URL": webhook.url,
        "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
        "TRUSTWATCH_ALERT_ATTEMPTS": "1",
        "TRUSTWATCH_GCP_API_ENDPOINT": gcp.url,
        # no gcloud user credentials: google.auth.default() finds the metadata server
        "CLOUDSDK_CONFIG": str(tmp_path_factory.mktemp("gcloud")),
        **gcp.metadata_environ(),
        **settings,
    }
    bin_dir = Path(sys.executable).parent
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(bin_dir / "functions-framework"),
                "--target=on_audit_log",
                f"--source={ROOT / 'functions' / 'gcp' / 'main.py'}",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if not wait_for_port(port, alive=lambda: proc.poll() is None):
            raise RuntimeError(f"functions-framework did not start:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(log.read_text())


def post(url: str, body: dict, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def post_structured(url: str, event: dict) -> int:
    return post(url, event, {"Content-Type": "application/cloudevents+json"})


def post_binary(url: str, event: dict) -> int:
    headers = {"Content-Type": "application/json"}
    for key, value in event.items():
        if key not in ("data", "datacontenttype"):
            headers[f"ce-{key}"] = str(value)
    return post(url, event["data"], headers)


def grant_token_creator() -> dict:
    return sa_policy(COMPUTE, add(TOKEN_CREATOR, MALLORY))


@pytest.mark.parametrize(
    ("shape", "send"),
    [
        ("pubsub binary", lambda url, entry: post_binary(url, pubsub_cloudevent(entry))),
        ("pubsub structured", lambda url, entry: post_structured(url, pubsub_cloudevent(entry))),
        ("eventarc binary", lambda url, entry: post_binary(url, eventarc(entry))),
        ("eventarc structured", lambda url, entry: post_structured(url, eventarc(entry))),
    ],
)
def test_drift_alerts_in_every_delivery_mode(function_url, webhook, shape, send):
    before = len(webhook.requests)
    # a distinct grantee per mode: the same finding within the dedup window alerts once
    member = f"user:mallory-{shape.replace(' ', '-')}@example.com"
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, member))
    assert send(function_url, entry) == 200
    new = webhook.requests[before:]
    assert len(new) == 1, shape
    finding = new[0].json()
    assert finding["rule"] == "gcp.iam.impersonation_granted"
    assert finding["identity"] == COMPUTE
    assert member in json.dumps(finding["actual"])
    assert new[0].headers.get("X-Trustwatch-Signature", "").startswith("sha256=")


def test_same_finding_redelivered_alerts_once(function_url, webhook):
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:eve@example.com"))
    before = len(webhook.requests)
    assert post_structured(function_url, eventarc(entry)) == 200
    assert post_structured(function_url, eventarc(entry)) == 200
    assert len(webhook.requests) - before == 1


def test_noise_and_malformed_events_are_acknowledged(function_url, webhook):
    before = len(webhook.requests)
    assert post_structured(function_url, eventarc(UNRELATED)) == 200
    broken = pubsub_cloudevent(grant_token_creator())
    broken["data"]["message"]["data"] = "%%% not base64 %%%"
    assert post_structured(function_url, broken) == 200
    assert len(webhook.requests) == before


def test_type_confused_entry_is_acknowledged_and_the_next_alerts(function_url, webhook):
    """`bindingDeltas` given as a number (an outside fuzz run's TypeError, which made the
    function fail and Pub/Sub redeliver it until the dead-letter topic) is a record error:
    acknowledged (200); the next delivery still alerts."""
    before = len(webhook.requests)
    confused = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:oscar@example.com"))
    confused["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] = 7
    assert post_structured(function_url, eventarc(confused)) == 200
    assert post_structured(function_url, pubsub_cloudevent(confused)) == 200
    assert len(webhook.requests) == before
    good = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:peggy@example.com"))
    assert post_structured(function_url, eventarc(good)) == 200
    (alert,) = webhook.requests[before:]
    assert "user:peggy@example.com" in json.dumps(alert.json()["actual"])


def test_alert_failure_returns_an_error_so_pubsub_redelivers(function_url, webhook):
    webhook.reply(Reply(status=500))
    entry = sa_policy(COMPUTE, add(TOKEN_CREATOR, "user:trudy@example.com"))
    assert post_structured(function_url, eventarc(entry)) == 500
    # the redelivery succeeds: the failed claim was released
    assert post_structured(function_url, eventarc(entry)) == 200
    assert webhook.requests[-1].json()["rule"] == "gcp.iam.impersonation_granted"


# --- entries that lack what the rules need: read from the Google Cloud APIs ----------------


def test_entry_without_the_policy_is_judged_after_the_read(function_url, webhook, gcp):
    member = "user:mallory-unlogged@example.com"
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = policy({TOKEN_CREATOR: [member]})
    before, reads = len(webhook.requests), len(gcp.requests)
    entry = without_policy(sa_policy(COMPUTE, add(TOKEN_CREATOR, member)))
    assert post_structured(function_url, eventarc(entry)) == 200
    # the first read completes the entry; the rest plan the remediation (dry run: no write)
    request, *planning = gcp.requests[reads:]
    assert not [r for r in planning if is_write(r)]
    assert request.path == f"/v1/projects/-/serviceAccounts/{COMPUTE}:getIamPolicy"
    assert request.query == {"options.requestedPolicyVersion": "3"} and request.body is None
    assert request.headers["authorization"] == f"Bearer {gcp.token}"  # from the metadata server
    assert any(r.path.endswith("/token") for r in gcp.token_requests)
    (alert,) = webhook.requests[before:]
    finding = alert.json()
    assert (finding["rule"], finding["identity"]) == ("gcp.iam.impersonation_granted", COMPUTE)
    assert member in json.dumps(finding["actual"])


def test_resource_gone_is_not_evaluated_and_acknowledged(function_url, webhook, gcp):
    bucket = "dbx-bucket-deleted-since"
    before, reads = len(webhook.requests), len(gcp.requests)
    entry = without_policy(bucket_policy(bucket, add("roles/storage.admin", MALLORY)))
    assert post_structured(function_url, eventarc(entry)) == 200  # 404: nothing to retry
    assert [r.path for r in gcp.requests[reads:]] == [f"/storage/v1/b/{bucket}/iam"]
    assert len(webhook.requests) == before


def test_refused_read_raises_so_pubsub_redelivers(function_url, webhook, gcp):
    member = "user:mallory-refused@example.com"
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = policy({TOKEN_CREATOR: [member]})
    entry = without_policy(sa_policy(COMPUTE, add(TOKEN_CREATOR, member)))
    before, reads = len(webhook.requests), len(gcp.requests)
    gcp.fail(403)  # e.g. the reader role not propagated yet: not retried in-process
    assert post_structured(function_url, eventarc(entry)) == 500
    assert len(gcp.requests) - reads == 1 and len(webhook.requests) == before
    # the redelivery reads again and alerts
    assert post_structured(function_url, eventarc(entry)) == 200
    assert webhook.requests[-1].json()["rule"] == "gcp.iam.impersonation_granted"


# --- storage.buckets.update: the bucket's settings read back (gcp.bucket.public_access_opened)
# The entry logs no settings; public access prevention and uniform bucket-level access:
# https://cloud.google.com/storage/docs/public-access-prevention
# https://cloud.google.com/storage/docs/uniform-bucket-level-access


def test_bucket_opened_alerts_after_the_read(function_url, webhook, gcp):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    before, reads = len(webhook.requests), len(gcp.requests)
    assert post_binary(function_url, pubsub_cloudevent(bucket_update(BUCKET))) == 200
    # the first read completes the entry; the rest plan the remediation (dry run: no write)
    request, *planning = gcp.requests[reads:]
    assert not [r for r in planning if is_write(r)]
    assert (request.path, request.query) == (
        f"/storage/v1/b/{BUCKET}",
        {"fields": "iamConfiguration"},
    )
    assert request.headers["authorization"] == f"Bearer {gcp.token}"
    alerts = [r.json() for r in webhook.requests[before:]]
    assert [(a["rule"], a["identity"], a["severity"]) for a in alerts] == [
        ("gcp.bucket.public_access_opened", BUCKET, "critical")
    ] * 2
    assert [a["actual"] for a in alerts] == [
        {"public_access_prevention": "inherited"},
        {"uniform_bucket_level_access": False},
    ]
    # through Eventarc too: the same bucket, public access prevention now `unspecified`
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "unspecified", True)
    before = len(webhook.requests)
    assert post_structured(function_url, eventarc(bucket_update(BUCKET))) == 200
    (alert,) = webhook.requests[before:]
    assert alert.json()["actual"] == {"public_access_prevention": "unspecified"}


def test_bucket_still_private_or_unwatched_stays_quiet(function_url, webhook, gcp):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET)  # e.g. a label changed
    gcp.buckets["scratch-4821"] = bucket_resource("scratch-4821", "inherited", False)
    before, reads = len(webhook.requests), len(gcp.requests)
    assert post_structured(function_url, pubsub_cloudevent(bucket_update(BUCKET))) == 200
    assert post_binary(function_url, eventarc(bucket_update("scratch-4821"))) == 200
    assert len(gcp.requests) - reads == 2
    # a refused update is neither read nor judged
    denied = failed(bucket_update(BUCKET))
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    assert post_structured(function_url, eventarc(denied)) == 200
    assert len(gcp.requests) - reads == 2
    assert len(webhook.requests) == before
