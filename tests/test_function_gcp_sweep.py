"""The GCP function on its schedule, served by the real functions-framework server: Cloud
Scheduler's Pub/Sub message `{"trustwatch": "sweep"}` fans out one message per baseline
project (published to the stand-in's Pub/Sub), and a project's message sweeps it: drift no
event reported alerts, the next sweep alerts only on what changed, and a lost event the
catch-up reads alerts once. The function signs in through the stand-in's metadata server.

Cloud Scheduler's Pub/Sub target publishes the job's data as the message data:
https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#pubsubtarget
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gcpserver import GcpServer
from test_function_gcp import post_binary, post_structured, serve_function
from test_gcp_events import COMPUTE, MALLORY, PROJECT, key_created
from test_state_gcp import (
    DEV,
    KEY_ID,
    SWEEP_BASELINE,
    TOKEN_CREATOR,
    add_key,
    binding,
    clean_state,
    user_managed_key,
    v3_policy,
)
from trustwatch.alerts.receivers import RecordingHTTPServer

TOPIC = f"projects/{PROJECT}/topics/trustwatch-audit"


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
    state = tmp_path_factory.mktemp("state") / "trustwatch.sqlite"
    with serve_function(
        webhook,
        gcp,
        tmp_path_factory,
        TRUSTWATCH_BASELINE=str(SWEEP_BASELINE),
        TRUSTWATCH_STATE_URL=f"sqlite://{state}",  # dedup claims and sweep state
        TRUSTWATCH_SWEEP_TOPIC=TOPIC,
    ) as url:
        yield url


def scheduled(message: dict[str, Any], message_id: str) -> dict[str, Any]:
    """A messagePublished CloudEvent (structured) carrying `message` as the Pub/Sub data."""
    data = base64.b64encode(json.dumps(message).encode()).decode()
    return {
        "specversion": "1.0",
        "id": message_id,
        "source": f"//pubsub.googleapis.com/{TOPIC}",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "time": "2026-12-01T10:00:00Z",
        "data": {
            "message": {
                "data": data,
                "messageId": message_id,
                "publishTime": "2026-12-01T10:00:00Z",
            },
            "subscription": f"projects/{PROJECT}/subscriptions/eventarc-trigger",
        },
    }


def alerts(webhook: RecordingHTTPServer, before: int) -> list[tuple[str, str, str | None]]:
    return sorted(
        (a["rule"], a["source"], a.get("sweep_status"))
        for a in (r.json() for r in webhook.requests[before:])
    )


def test_the_schedule_fans_out_one_message_per_project(function_url, gcp, webhook):
    before, earlier = len(webhook.requests), len(gcp.published.get(TOPIC, []))
    assert post_structured(function_url, scheduled({"trustwatch": "sweep"}, "sched-1")) == 200
    messages = gcp.published[TOPIC][earlier:]
    published = [json.loads(base64.b64decode(m["data"])) for m in messages]
    assert published == [
        {"trustwatch": "sweep", "cloud": "gcp", "unit": PROJECT},
        {"trustwatch": "sweep", "cloud": "gcp", "unit": DEV},
    ]
    publishes = [r for r in gcp.requests if r.path.endswith(":publish")][-2:]
    assert [r.path for r in publishes] == [f"/v1/{TOPIC}:publish"] * 2
    assert all(r.headers["authorization"] == f"Bearer {gcp.token}" for r in publishes)
    assert len(webhook.requests) == before  # fanning out sweeps nothing itself


def test_a_unit_sweep_alerts_on_what_changed_and_catches_up_once(function_url, gcp, webhook):
    clean_state(gcp)
    # drift no event reported: TokenCreator for an outsider on the compute account
    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(binding(TOKEN_CREATOR, MALLORY))
    # a key whose creation event never reached the function: in the audit log, and in the state
    add_key(gcp, user_managed_key(COMPUTE, KEY_ID))
    lost = key_created(COMPUTE, key_id=KEY_ID)
    lost["timestamp"] = (datetime.now(UTC) - timedelta(minutes=10)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    lost["insertId"] = "lost-key-event"
    gcp.log_entries = [lost]
    unit = {"trustwatch": "sweep", "cloud": "gcp", "unit": PROJECT}

    before = len(webhook.requests)
    assert post_binary(function_url, scheduled(unit, "unit-1")) == 200
    # the key's finding from the state and from its caught-up event share one id: one alert
    # (the event's, which says who made the key)
    assert alerts(webhook, before) == [
        ("gcp.iam.impersonation_granted", "sweep", "new"),
        ("gcp.sa.key_created", "event", None),
    ]
    catch_up = [r for r in gcp.requests if r.path == "/v2/entries:list"]
    assert catch_up and all("timestamp>=" in r.body["filter"] for r in catch_up)

    before = len(webhook.requests)
    assert post_binary(function_url, scheduled(unit, "unit-2")) == 200
    assert alerts(webhook, before) == []  # all still open: nothing new to say

    gcp.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy()  # someone took the grant back
    before = len(webhook.requests)
    assert post_binary(function_url, scheduled(unit, "unit-3")) == 200
    assert alerts(webhook, before) == [("gcp.iam.impersonation_granted", "sweep", "resolved")]


def test_a_malformed_sweep_message_is_acknowledged(function_url, webhook, gcp):
    before, published = len(webhook.requests), len(gcp.published.get(TOPIC, []))
    bad = {"trustwatch": "sweep", "cloud": "gcp", "unit": PROJECT, "extra": 1}
    assert post_structured(function_url, scheduled(bad, "bad-1")) == 200
    elsewhere = {"trustwatch": "sweep", "cloud": "aws", "unit": "111122223333"}
    assert post_structured(function_url, scheduled(elsewhere, "bad-2")) == 200
    assert len(webhook.requests) == before
    assert len(gcp.published.get(TOPIC, [])) == published


def test_a_failed_publish_makes_pubsub_redeliver_the_schedule(function_url, gcp):
    gcp.fail(503, times=4)  # the first publish, and its three retries
    assert post_structured(function_url, scheduled({"trustwatch": "sweep"}, "sched-2")) == 500
