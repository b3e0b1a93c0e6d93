"""gcp.sa.key_created on `storage.hmacKeys.update` setting a key back to ACTIVE (red team:
re-activating a deactivated HMAC key of a baseline service account gave no finding).

What the rule guards, from Google Cloud's documentation:
- an HMAC key is a long-lived Cloud Storage credential of its service account:
  https://cloud.google.com/storage/docs/authentication/hmackeys
- `hmacKeys.update` sets the key's `state`, ACTIVE or INACTIVE (DELETED is
  `hmacKeys.delete`); the request body and the response are the key's metadata
  (`accessId`, `projectId`, `serviceAccountEmail`, `state`):
  https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
  https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys#resource
- the update modifies access to Cloud Storage: an Admin Activity audit entry, always
  written: https://cloud.google.com/storage/docs/audit-logging
- `hmacKeys.get` reads the key's metadata (permission `storage.hmacKeys.get`):
  https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/get

The request names the key (projects/P/hmacKeys/ACCESS_ID), not always its account: such an
entry is not evaluated in `replay`, and the enricher reads the key from tests/gcpserver.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE
from gcpserver import GcpServer, hmac_key_metadata
from test_gcp_attack_paths import by_rule, findings_of, hmac_created
from test_gcp_events import (
    ALICE,
    BUCKET,
    COMPUTE,
    OTHER_SA,
    PROJECT,
    RESPONDER,
    SHAPES,
    TERRAFORM,
    bucket_policy,
    documents,
    failed,
)
from trustwatch.baseline import Baseline
from trustwatch.cli import main
from trustwatch.gcp import enrich, events
from trustwatch.gcp.changes import HmacKeyUpdated
from trustwatch.gcp.enrich import GcpApiError, gcp_enricher
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

KC = "gcp.sa.key_created"
ACCESS_ID = "GOOG1EXAMPLEAEU"
KEY = f"projects/{PROJECT}/hmacKeys/{ACCESS_ID}"


def hmac_updated(email: str, state: str = "ACTIVE", *, logged: str = "json") -> dict:
    """storage.hmacKeys.update (Cloud Storage Admin Activity audit log) setting `state`.

    `logged`: "json", the JSON API's body (the state) and response (the key's metadata);
    "grpc", the key's metadata as the request's `hmacKey` and the response's `metadata`
    (the red team's shape); "key only", the state set and nothing naming the account."""
    entry = bucket_policy(BUCKET, actor=ALICE)
    proto = entry["protoPayload"]
    proto["methodName"] = "storage.hmacKeys.update"
    proto["resourceName"] = KEY
    proto["authorizationInfo"] = [
        {"resource": f"projects/{PROJECT}", "permission": "storage.hmacKeys.update"}
    ]
    proto.pop("serviceData", None)
    metadata = {
        "kind": "storage#hmacKeyMetadata",
        "accessId": ACCESS_ID,
        "projectId": PROJECT,
        "serviceAccountEmail": email,
        "state": state,
    }
    if logged == "json":
        proto["request"] = {"state": state}
        proto["response"] = metadata
    elif logged == "grpc":
        proto["request"] = {
            "@type": "type.googleapis.com/google.storage.v2.UpdateHmacKeyRequest",
            "hmacKey": {"accessId": ACCESS_ID, "state": state, "serviceAccountEmail": email},
        }
        proto["response"] = {"metadata": metadata}
    else:
        proto["request"] = {"state": state}
        proto.pop("response", None)
    entry["resource"] = {"type": "gcs_bucket", "labels": {"project_id": PROJECT}}
    return entry


@pytest.fixture(scope="module")
def watched() -> Baseline:
    from trustwatch.baseline import load_baseline

    return load_baseline(EXAMPLE_BASELINE)


@pytest.fixture
def gcp() -> Iterator[GcpServer]:
    with GcpServer() as server:
        yield server


@pytest.fixture
def enricher(gcp: GcpServer) -> Any:
    from google.auth.credentials import AnonymousCredentials

    return gcp_enricher(credentials=AnonymousCredentials(), endpoint=gcp.url)


def judged(entry: dict[str, Any], baseline, enrich) -> tuple[list, list[str]]:
    """(findings, not-evaluated notes) of one entry through the responder's record path."""
    findings, notes = [], []
    for outcome in evaluate_records(parse_document(entry, "e"), baseline, enrich=enrich):
        assert outcome.errors == [], outcome.errors
        findings.extend(outcome.findings)
        notes.extend([outcome.not_evaluated] if outcome.not_evaluated else [])
    return findings, notes


def allowed_keys(base: Baseline) -> Baseline:
    data = base.model_dump(mode="json", exclude_none=True)
    data["gcp"]["projects"][PROJECT]["service_accounts"][COMPUTE]["user_managed_keys"] = True
    return Baseline.model_validate(data)


CASES = [
    # must fire: a baseline (or the responder's) account's key made ACTIVE again
    ("compute SA's key re-activated (JSON API entry)", hmac_updated(COMPUTE), [KC]),
    ("compute SA's key re-activated (request hmacKey, response metadata)", hmac_updated(COMPUTE, logged="grpc"), [KC]),
    ("automation SA's key re-activated", hmac_updated(TERRAFORM), [KC]),
    ("responder's key re-activated", hmac_updated(RESPONDER), [KC]),
    ("state in lower case", hmac_updated(COMPUTE, "active"), [KC]),
    # must stay quiet
    ("compute SA's key deactivated (stricter)", hmac_updated(COMPUTE, "INACTIVE"), []),
    ("compute SA's key deactivated (grpc)", hmac_updated(COMPUTE, "INACTIVE", logged="grpc"), []),
    ("state DELETED", hmac_updated(COMPUTE, "DELETED"), []),
    ("a key of an unrelated SA re-activated", hmac_updated(OTHER_SA), []),
    ("re-activation denied", failed(hmac_updated(COMPUTE)), []),
    ("re-activation denied (grpc)", failed(hmac_updated(COMPUTE, logged="grpc")), []),
    ("deactivation naming the key only (nothing to read)", hmac_updated("", "INACTIVE", logged="key only"), []),
]  # fmt: skip

PARAMS = [pytest.param(e, x, s, id=f"{n} [{s}]") for n, e, x in CASES for s in SHAPES]


@pytest.mark.parametrize(("entry", "expected", "shape"), PARAMS)
def test_every_shape(watched, entry, expected, shape):
    found = findings_of(entry, shape, watched)
    assert [f.rule for f in found] == expected
    for finding in found:
        assert finding.severity == "critical"


def test_the_red_team_entry_fires(watched):
    entry = hmac_updated(COMPUTE, logged="grpc")
    entry["protoPayload"]["response"] = {"metadata": {"accessId": ACCESS_ID, "state": "ACTIVE"}}
    (finding,) = by_rule(entry, watched)[KC]
    assert "re-activated" in finding.summary


def test_finding_fields(watched):
    (hit,) = by_rule(hmac_updated(COMPUTE), watched)[KC]
    assert (hit.identity, hit.scope, hit.actor) == (COMPUTE, PROJECT, ALICE)
    assert hit.expected == {"user_managed_keys": False}
    assert hit.actual == {"hmac_access_id": ACCESS_ID, "state": "ACTIVE"}
    assert hit.remediation.action == "deactivate_hmac_key"
    assert hit.remediation.status == "planned"  # the compute SA has mode: remediate
    assert "re-activated" in hit.summary and ACCESS_ID in hit.summary
    (created,) = by_rule(hmac_created(COMPUTE), watched)[KC]
    assert created.id != hit.id  # a re-activation after a deactivation is new drift
    (parsed,) = parse_document(hmac_updated(COMPUTE), "test")
    (change,) = parsed.changes
    assert change.kind == "service_account.hmac_key_updated"
    assert change.payload == HmacKeyUpdated(COMPUTE, "", ACCESS_ID, project=PROJECT, state="ACTIVE")


def test_accounts_allowed_keys_stay_quiet(watched):
    keyed = allowed_keys(watched)
    for logged in ("json", "grpc"):
        assert by_rule(hmac_updated(COMPUTE, logged=logged), keyed) == {}


# --- the account not in the entry ----------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_key_only_needs_enrichment(shape):
    found = []
    for doc in documents(hmac_updated("", logged="key only"), shape):
        for parsed in parse_document(doc, "test"):
            assert parsed.error is None, parsed.error
            found.extend(parsed.changes)
    (change,) = [c for c in found if c.kind == "service_account.hmac_key_updated"]
    assert change.needs_enrichment and change.not_evaluated == events.NO_HMAC_ACCOUNT
    assert change.not_evaluated == "HMAC key's account not in event"
    assert (change.identity, change.scope) == (KEY, PROJECT)
    assert change.payload == HmacKeyUpdated("", "", ACCESS_ID, project=PROJECT, state="ACTIVE")


@pytest.mark.parametrize("shape", SHAPES)
def test_replay_reports_it_not_evaluated(tmp_path, capsys, shape):
    """`trustwatch replay` has no API to read: not evaluated, with the reason, exit 0."""
    paths = []
    for i, doc in enumerate(documents(hmac_updated("", logged="key only"), shape)):
        path = tmp_path / f"update-{i}.json"
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    code = main(["replay", "--baseline", str(EXAMPLE_BASELINE), *paths])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "")
    assert "not evaluated: HMAC key's account not in event (storage.hmacKeys.update)" in err


def test_state_not_logged_needs_the_read_too():
    entry = hmac_updated(COMPUTE)
    proto = entry["protoPayload"]
    proto["request"] = {}
    del proto["response"]["state"]
    (parsed,) = parse_document(entry, "test")
    (change,) = parsed.changes
    assert change.needs_enrichment and change.not_evaluated == events.NO_HMAC_STATE


@pytest.mark.parametrize(
    ("owner", "state", "expected"),
    [
        (COMPUTE, "ACTIVE", [KC]),
        (RESPONDER, "ACTIVE", [KC]),
        (OTHER_SA, "ACTIVE", []),
        # deactivated again since: the call did re-activate it (the logged state is judged)
        (COMPUTE, "INACTIVE", [KC]),
    ],
)
def test_the_key_read_is_judged(gcp, enricher, watched, owner, state, expected):
    gcp.hmac_keys[f"{PROJECT}/{ACCESS_ID}"] = hmac_key_metadata(PROJECT, ACCESS_ID, owner, state)
    findings, notes = judged(hmac_updated("", logged="key only"), watched, enricher)
    assert notes == []
    assert [f.rule for f in findings] == expected
    assert all(f.identity == owner for f in findings)
    (request,) = gcp.requests
    assert (request.method, request.path) == (
        "GET",
        f"/storage/v1/projects/{PROJECT}/hmacKeys/{ACCESS_ID}",
    )


def test_the_read_state_is_used_when_none_is_logged(gcp, enricher, watched):
    entry = hmac_updated("", logged="key only")
    entry["protoPayload"]["request"] = {}
    for state, expected in (("ACTIVE", [KC]), ("INACTIVE", [])):
        gcp.hmac_keys[f"{PROJECT}/{ACCESS_ID}"] = hmac_key_metadata(
            PROJECT, ACCESS_ID, COMPUTE, state
        )
        findings, notes = judged(entry, watched, enricher)
        assert notes == [] and [f.rule for f in findings] == expected


def test_the_read_for_an_account_allowed_keys_stays_quiet(gcp, enricher, watched):
    gcp.hmac_keys[f"{PROJECT}/{ACCESS_ID}"] = hmac_key_metadata(
        PROJECT, ACCESS_ID, COMPUTE, "ACTIVE"
    )
    entry = hmac_updated("", logged="key only")
    assert judged(entry, allowed_keys(watched), enricher) == ([], [])


def test_a_deactivation_is_not_read(gcp, enricher, watched):
    assert judged(hmac_updated("", "INACTIVE", logged="key only"), watched, enricher) == ([], [])
    assert gcp.requests == []


def test_a_key_gone_is_not_evaluated(gcp, enricher, watched):
    findings, notes = judged(hmac_updated("", logged="key only"), watched, enricher)
    assert findings == []
    assert notes == [
        f"e: not evaluated: HMAC key {ACCESS_ID} already deleted (404) (storage.hmacKeys.update)"
    ]


def test_a_refused_read_raises_for_the_platform_to_retry(gcp, enricher):
    gcp.hmac_keys[f"{PROJECT}/{ACCESS_ID}"] = hmac_key_metadata(
        PROJECT, ACCESS_ID, COMPUTE, "ACTIVE"
    )
    gcp.fail(403)
    (parsed,) = parse_document(hmac_updated("", logged="key only"), "test")
    (change,) = parsed.changes
    with pytest.raises(GcpApiError, match="HTTP 403"):
        enricher(change)


def test_an_unreadable_answer_is_not_evaluated(gcp, enricher):
    gcp.hmac_keys[f"{PROJECT}/{ACCESS_ID}"] = {"accessId": ACCESS_ID, "serviceAccountEmail": 7}
    (parsed,) = parse_document(hmac_updated("", logged="key only"), "test")
    (change,) = parsed.changes
    assert "not readable" in enricher(change)


def test_no_key_name_is_not_read(gcp, enricher):
    entry = hmac_updated("", logged="key only")
    entry["protoPayload"]["resourceName"] = "projects/_/hmacKeys/"
    del entry["resource"]
    entry["logName"] = "organizations/1/logs/x"
    (parsed,) = parse_document(entry, "test")
    (change,) = parsed.changes
    assert enricher(change) == enrich.NO_HMAC_KEY_NAME
    assert gcp.requests == []


def test_the_read_needs_its_permission():
    assert "storage.hmacKeys.get" in enrich.PERMISSIONS["hmac_key"]
    assert "hmac_key" in enrich.PROJECT_READS
