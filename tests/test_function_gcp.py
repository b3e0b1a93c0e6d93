"""The GCP entry point served by the real functions-framework server; CloudEvents POSTed in
binary and structured mode; alerts land at a local webhook receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservers import free_port, wait_for_port
from conftest import EXAMPLE_BASELINE, ROOT
from test_gcp_events import (
    COMPUTE,
    MALLORY,
    UNRELATED,
    add,
    eventarc,
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
def function_url(webhook: RecordingHTTPServer, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("ff") / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRUSTWATCH_")},
        "TRUSTWATCH_BASELINE": str(EXAMPLE_BASELINE),
        "TRUSTWATCH_WEBHOOK_URL": webhook.url,
        "TRUSTWATCH_WEBHOOK_SECRET": "test-secret",
        "TRUSTWATCH_ALERT_ATTEMPTS": "1",
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
