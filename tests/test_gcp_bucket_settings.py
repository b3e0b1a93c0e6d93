"""gcp.bucket.public_access_opened on the published `storage.buckets.update` entry, which logs
neither the request nor the bucket after the call: in every delivery shape `replay` reports
it not evaluated ("bucket settings not in event"), and the enricher reads the bucket's
`iamConfiguration` from a local Cloud Storage stand-in (tests/gcpserver.py) and judges it.
test_gcp_rules.py holds the cases where the entry logs the bucket; test_function_gcp.py runs
the read inside the real function.

What the rule guards, from Google Cloud's documentation:
- public access prevention `enforced` keeps `allUsers` / `allAuthenticatedUsers` out of the
  bucket's IAM policy and ACLs; `inherited` (formerly `unspecified`) leaves that to an
  organization policy, if any: https://cloud.google.com/storage/docs/public-access-prevention
- uniform bucket-level access off brings object ACLs back, which the bucket's IAM policy
  (and the baseline's bindings) do not show:
  https://cloud.google.com/storage/docs/uniform-bucket-level-access
- `storage.buckets.update` ("modify buckets") is an Admin Activity audit entry, always
  written: https://cloud.google.com/storage/docs/audit-logging
- the settings are the Bucket resource's `iamConfiguration.publicAccessPrevention` and
  `iamConfiguration.uniformBucketLevelAccess.enabled`:
  https://cloud.google.com/storage/docs/json_api/v1/buckets#resource
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import EXAMPLE_BASELINE
from gcpserver import GcpServer
from test_gcp_events import (
    ALICE,
    BUCKET,
    PROJECT,
    SHAPES,
    bucket_resource,
    bucket_update,
    documents,
    failed,
    load,
)
from trustwatch.baseline import BaselineError, parse_baseline
from trustwatch.changes import Skipped
from trustwatch.cli import main
from trustwatch.gcp import events
from trustwatch.gcp.changes import BucketSettings
from trustwatch.gcp.enrich import GcpApiError, gcp_enricher
from trustwatch.intake import parse_document
from trustwatch.respond import evaluate_records

PAO = "gcp.bucket.public_access_opened"
UNWATCHED = "scratch-4821"


@pytest.fixture
def gcp() -> Iterator[GcpServer]:
    with GcpServer() as server:
        yield server


@pytest.fixture
def enricher(gcp: GcpServer) -> Any:
    from google.auth.credentials import AnonymousCredentials

    return gcp_enricher(credentials=AnonymousCredentials(), endpoint=gcp.url)


def changes(doc: Any) -> list:
    out = []
    for parsed in parse_document(doc, "test"):
        assert parsed.error is None, parsed.error
        out.extend(parsed.changes)
    return out


def judged(entry: dict[str, Any], baseline, enrich) -> tuple[list, list[str]]:
    """(findings, not-evaluated notes) of one entry through the responder's record path."""
    findings, notes = [], []
    for outcome in evaluate_records(parse_document(entry, "e"), baseline, enrich=enrich):
        assert outcome.errors == [], outcome.errors
        findings.extend(outcome.findings)
        notes.extend([outcome.not_evaluated] if outcome.not_evaluated else [])
    return findings, notes


# --- the published entry: no settings in it ---------------------------------------------


def test_the_published_entry_logs_no_settings():
    (change,) = changes(load("auditlog-storage-buckets-update-panther"))
    assert (change.kind, change.identity, change.scope) == (
        "bucket.settings_updated",
        "test-bucket",
        "test-project",
    )
    assert change.actor == "denethor@lotr.com"
    assert change.needs_enrichment and change.not_evaluated == "bucket settings not in event"
    assert change.payload == BucketSettings("test-bucket")


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_needs_the_bucket_read(shape):
    found = [c for doc in documents(bucket_update(BUCKET), shape) for c in changes(doc)]
    (change,) = [c for c in found if c.kind == "bucket.settings_updated"]
    assert change.identity == BUCKET and change.scope == PROJECT
    assert change.needs_enrichment and change.not_evaluated == events.NO_SETTINGS


@pytest.mark.parametrize("shape", SHAPES)
def test_replay_reports_it_not_evaluated(tmp_path, capsys, shape):
    """`trustwatch replay` has no API to read: not evaluated, with the reason, exit 0."""
    paths = []
    for i, doc in enumerate(documents(bucket_update(BUCKET), shape)):
        path = tmp_path / f"update-{i}.json"
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    code = main(["replay", "--baseline", str(EXAMPLE_BASELINE), *paths])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "")
    assert "not evaluated: bucket settings not in event (storage.buckets.update)" in err


def test_one_setting_logged_is_not_enough():
    """A PUT resets what it omits, a PATCH keeps it: only the bucket can tell the other."""
    request = {"resource": {"iamConfiguration": {"publicAccessPrevention": "enforced"}}}
    (change,) = changes(bucket_update(BUCKET, request=request))
    assert change.needs_enrichment and change.not_evaluated == events.NO_SETTINGS


def test_the_logged_bucket_is_judged_without_a_read(baseline):
    entry = bucket_update(BUCKET, response=bucket_resource(BUCKET, "inherited", False))
    (change,) = changes(entry)
    assert not change.needs_enrichment
    assert change.payload == BucketSettings(BUCKET, "inherited", False)
    findings, notes = judged(entry, baseline, enrich=None)
    assert notes == [] and [f.rule for f in findings] == [PAO, PAO]


def test_a_failed_update_is_neither_read_nor_judged(baseline):
    (change,) = changes(failed(bucket_update(BUCKET)))
    assert change.error_code == "PERMISSION_DENIED" and not change.needs_enrichment
    assert judged(failed(bucket_update(BUCKET)), baseline, enrich=None) == ([], [])


@pytest.mark.parametrize(
    "resource_name",
    [
        "projects/_/buckets/dbx-uc-prod-4821/objects/report.csv",
        "projects/_/buckets/b/managedFolders/f",
    ],
)
def test_other_storage_updates_are_not_bucket_settings(resource_name):
    """The sink passes every storage method ending in `update`: objects and managed
    folders are skipped (storage.objects.update is a Data Access entry besides)."""
    entry = bucket_update(BUCKET)
    proto = entry["protoPayload"]
    proto["methodName"] = "storage.objects.update"
    proto["resourceName"] = resource_name
    (parsed,) = parse_document(entry, "o")
    assert isinstance(parsed.skipped, Skipped) and "not a bucket" in parsed.skipped.reason


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("enforced", "iamConfiguration is not an object"),
        (
            {"publicAccessPrevention": 1, "uniformBucketLevelAccess": {"enabled": True}},
            "not a string",
        ),
        (
            {"publicAccessPrevention": "enforced", "uniformBucketLevelAccess": {"enabled": "no"}},
            "not a bool",
        ),
        ({"publicAccessPrevention": "enforced", "uniformBucketLevelAccess": True}, "not an object"),
    ],
)
def test_type_confused_settings_are_record_errors(config, message):
    entry = bucket_update(BUCKET, response={"name": BUCKET, "iamConfiguration": config})
    (parsed,) = parse_document(entry, "bad")
    assert parsed.error is not None and message in str(parsed.error)


# --- the bucket read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pap", "ubla", "expected"),
    [
        ("inherited", True, [("public_access_prevention", "inherited")]),
        ("unspecified", True, [("public_access_prevention", "unspecified")]),
        ("enforced", False, [("uniform_bucket_level_access", False)]),
        (
            "inherited",
            False,
            [("public_access_prevention", "inherited"), ("uniform_bucket_level_access", False)],
        ),
        ("enforced", True, []),  # e.g. labels changed: still private
    ],
)
def test_the_bucket_read_is_judged(gcp, enricher, baseline, pap, ubla, expected):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, pap, ubla)
    findings, notes = judged(bucket_update(BUCKET), baseline, enricher)
    assert notes == []
    assert [next(iter(f.actual.items())) for f in findings] == expected
    (request,) = gcp.requests
    assert (request.method, request.path) == ("GET", f"/storage/v1/b/{BUCKET}")
    assert request.query == {"fields": "iamConfiguration"}


def test_finding_fields(gcp, enricher, baseline):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    findings, _ = judged(bucket_update(BUCKET), baseline, enricher)
    pap, ubla = (f.model_dump(mode="json") for f in findings)
    for finding in (pap, ubla):
        assert finding["rule"] == PAO and finding["severity"] == "critical"
        assert (finding["cloud"], finding["scope"], finding["identity"]) == ("gcp", PROJECT, BUCKET)
        assert finding["actor"] == ALICE and finding["source"] == "event"
    assert pap["expected"] == {"public_access_prevention": "enforced"}
    assert pap["remediation"]["action"] == "enforce_public_access_prevention"
    assert ubla["actual"] == {"uniform_bucket_level_access": False}
    assert ubla["remediation"]["action"] == "enable_uniform_bucket_level_access"
    assert pap["id"] != ubla["id"]


def test_an_absent_setting_is_the_buckets_default(gcp, enricher, baseline):
    """A Bucket without `publicAccessPrevention` is not enforced (the default, `inherited`)."""
    gcp.buckets[BUCKET] = {"name": BUCKET, "iamConfiguration": {}}
    findings, _ = judged(bucket_update(BUCKET), baseline, enricher)
    assert [f.actual for f in findings] == [
        {"public_access_prevention": "inherited"},
        {"uniform_bucket_level_access": False},
    ]


def test_an_unwatched_bucket_is_read_and_stays_quiet(gcp, enricher, baseline):
    gcp.buckets[UNWATCHED] = bucket_resource(UNWATCHED, "inherited", False)
    assert judged(bucket_update(UNWATCHED), baseline, enricher) == ([], [])


def test_a_deleted_bucket_is_not_evaluated(gcp, enricher, baseline):
    findings, notes = judged(bucket_update(BUCKET), baseline, enricher)
    assert findings == []
    assert notes == [
        f"e: not evaluated: bucket {BUCKET} already deleted (404) (storage.buckets.update)"
    ]


def test_a_refused_read_raises_for_the_platform_to_retry(gcp, enricher, baseline):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    gcp.fail(403)
    (change,) = changes(bucket_update(BUCKET))
    with pytest.raises(GcpApiError, match="HTTP 403"):
        enricher(change)


def test_an_unreadable_answer_is_not_evaluated(gcp, enricher):
    gcp.buckets[BUCKET] = {"name": BUCKET, "iamConfiguration": "enforced"}
    (change,) = changes(bucket_update(BUCKET))
    assert "not readable" in enricher(change)


# --- the baseline --------------------------------------------------------------------------


def _baseline_with(lines: str):
    text = EXAMPLE_BASELINE.read_text()
    anchor = f"        {BUCKET}:\n"
    assert text.count(anchor) == 1
    return parse_baseline(text.replace(anchor, anchor + lines), "b.yaml")


def test_watched_buckets_require_both_by_default(baseline):
    bucket = baseline.gcp.projects[PROJECT].buckets[BUCKET]
    assert (bucket.public_access_prevention, bucket.uniform_bucket_level_access) == (
        "enforced",
        "required",
    )


def test_ignore_turns_each_check_off(gcp, enricher):
    gcp.buckets[BUCKET] = bucket_resource(BUCKET, "inherited", False)
    only_ubla = _baseline_with("          public_access_prevention: ignore\n")
    findings, _ = judged(bucket_update(BUCKET), only_ubla, enricher)
    assert [f.actual for f in findings] == [{"uniform_bucket_level_access": False}]
    neither = _baseline_with(
        "          public_access_prevention: ignore\n          uniform_bucket_level_access: ignore\n"
    )
    assert judged(bucket_update(BUCKET), neither, enricher) == ([], [])


def test_an_unknown_setting_value_is_refused():
    with pytest.raises(BaselineError, match="public_access_prevention"):
        _baseline_with("          public_access_prevention: inherited\n")


# --- routing -------------------------------------------------------------------------------


def test_the_sink_routes_the_published_entry():
    """deploy/gcp's sink filter (its service and method clauses, from watched_operations.json)
    passes storage.buckets.update; its log_id clause keeps it to Admin Activity entries,
    where bucket updates are written (https://cloud.google.com/storage/docs/audit-logging)."""
    from test_deploy import _gcp_sink_matches

    proto = load("auditlog-storage-buckets-update-panther")["protoPayload"]
    assert _gcp_sink_matches(proto["serviceName"], proto["methodName"])
    assert not _gcp_sink_matches("storage.googleapis.com", "storage.buckets.get")
    assert "update" in events.watched_operations()["storage.googleapis.com"]
