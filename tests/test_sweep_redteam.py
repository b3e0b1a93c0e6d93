"""Red-team tests of the sweep: what an attacker could do to hide drift from it, or an
operator would be misled by. Each test failed before its fix.

- A fanned-out unit message is a plain message on a topic / queue / invocation anyone
  with publish rights can write: one naming a unit the baseline does not list must sweep
  nothing (no reads, no catch-up, no stored state). Pub/Sub publishers are whoever holds
  `pubsub.topics.publish` on the topic (https://cloud.google.com/pubsub/docs/access-control).
- A list that breaks off is not a short list: ARM pages a list with `nextLink` and "the
  nextLink ... should be used to get the next page"; a page that answers 404, or a page
  without its `value` array, leaves the rest unknown
  (https://learn.microsoft.com/en-us/rest/api/azure/#async-operations-throttling-and-paging).
  Read as complete, the assignments after it would look removed and their findings resolved.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from armserver import ArmServer
from gcpserver import GcpServer
from test_function_gcp import post_binary
from test_function_gcp_sweep import function_url, gcp, scheduled, webhook  # noqa: F401
from test_state_azure import (  # noqa: F401
    ROLE,
    SUB,
    arm,
    arm_server,
    environ,
    lighthouse,
    sweep_baseline,
)
from test_sweep import T0, ToyWorld, toy, world  # noqa: F401
from test_sweep_digest import slack, smtp  # noqa: F401
from toycloud import state as toy_state
from trustwatch.alerts.receivers import RecordingHTTPServer
from trustwatch.azure.enrich import arm_reader, arm_settings_from_env
from trustwatch.baseline import Baseline

# --- forged fan-out messages ------------------------------------------------------------------


def test_a_unit_the_baseline_does_not_list_is_not_swept(toy: Baseline, world: ToyWorld):  # noqa: F811
    world.grants("toyland", reader=["alice", "eve"])
    toy_state.CALLS_LOG.clear()
    report = world.sweep(toy, T0, unit="forged-unit")
    assert report.read_failed and not report.saved
    assert report.errors == ["toy forged-unit: not a unit of the baseline"]
    assert toy_state.CALLS_LOG == []  # neither read nor caught up on
    assert world.store.load("toy", "forged-unit") is None
    assert world.take_alerts() == []


def test_a_forged_pubsub_unit_message_reads_no_other_project(
    function_url: str,  # noqa: F811
    gcp: GcpServer,  # noqa: F811
    webhook: RecordingHTTPServer,  # noqa: F811
):
    # a project outside the baseline, spelled to widen the catch-up's Logging filter
    forged = 'victim-project/logs/x" OR logName:"'
    message = {"trustwatch": "sweep", "cloud": "gcp", "unit": forged}
    before_requests, before_alerts = len(gcp.requests), len(webhook.requests)
    assert post_binary(function_url, scheduled(message, "forged-1")) == 200  # acknowledged
    asked = gcp.requests[before_requests:]
    assert [r.path for r in asked if r.path == "/v2/entries:list"] == []
    assert not any("victim-project" in json.dumps(r.body or "") + r.path for r in asked)
    assert len(webhook.requests) == before_alerts


def test_the_forged_message_shape_is_still_read_as_a_sweep_message():
    # what the test above sends is a well-formed sweep message: refused for its unit
    from trustwatch.gcp.state import sweep_request

    data = base64.b64encode(
        json.dumps({"trustwatch": "sweep", "cloud": "gcp", "unit": "p"}).encode()
    ).decode()
    request = sweep_request({"message": {"data": data}})
    assert request is not None and request.unit == "p"


# --- lists that break off ---------------------------------------------------------------------

LIGHTHOUSE = f"/subscriptions/{SUB}/providers/Microsoft.ManagedServices/registrationAssignments"


def test_an_arm_list_whose_next_page_answers_404_is_an_error_not_its_end(arm: ArmServer):  # noqa: F811
    arm.state.page_size = 1
    arm.state.lighthouse += [lighthouse(ROLE["Owner"]), lighthouse(ROLE["Contributor"])]
    reader = arm_reader(**arm_settings_from_env(environ(arm)))
    items = reader.pages(LIGHTHOUSE, "2022-10-01", {"$expandRegistrationDefinition": "true"})
    assert items is not None
    first = next(items)
    assert first["id"] == arm.state.lighthouse[0]["id"]
    arm.fail(404, code="NotFound")  # the nextLink's page
    try:
        rest = list(items)
    except ValueError as exc:
        assert "later page answered 404" in str(exc)
    else:
        raise AssertionError(f"the list ended quietly after its first page: {rest}")


# --- catch-up windows ---------------------------------------------------------------------------


def test_an_event_delivered_later_than_average_just_before_a_sweep_is_caught_up(
    toy: Baseline,  # noqa: F811
    world: ToyWorld,  # noqa: F811
):
    # CloudTrail delivers "within an average of about 5 minutes of an API call. This time
    # is not guaranteed." (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/how-cloudtrail-works.html)
    from datetime import timedelta

    world.grants(reader=["alice"])
    first = world.sweep(toy, T0 + timedelta(hours=1))
    assert first.saved
    # a grant made 10 minutes before that sweep, undone since, whose record reached the
    # log (and the function never) only after the sweep had read it: 10 minutes late
    world.log_event("reader", "mallory-helper", T0 + timedelta(minutes=50))
    world.take_alerts()
    second = world.sweep(toy, T0 + timedelta(hours=2))
    assert [f.actual for f in second.event_findings] == ["mallory-helper"]
    assert [a[2] for a in world.take_alerts()] == ["event"]


# --- a unit that cannot be read at all -----------------------------------------------------------


def test_a_fanned_out_unit_whose_read_fails_outright_still_sends_its_digest(
    toy: Baseline,  # noqa: F811
    tmp_path,
    slack: RecordingHTTPServer,  # noqa: F811
    smtp,  # noqa: F811
):
    # An attacker with IAM rights in a member account edits the sweep read role's trust
    # (or denies GetAccountAuthorizationDetails): every sweep of that account fails. In a
    # fanned-out invocation that must reach the digest, not only the function's log.
    # AssumeRole is refused unless the role's trust policy allows the caller:
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    from test_sweep_digest import _digests, env
    from trustwatch.alerts import Dispatcher
    from trustwatch.dedup import SqliteDedupStore
    from trustwatch.sweep import ScheduledSweep, run_scheduled
    from trustwatch.sweepstate import SqliteSweepStore

    state = tmp_path / "toy.json"
    state.write_text(json.dumps({"units": {"member": {"fail": "AccessDenied: AssumeRole"}}}))
    environ = env(slack, smtp, TOY_STATE=str(state), TRUSTWATCH_MIN_SEVERITY="info")
    dispatcher = Dispatcher.from_env(environ, store=SqliteDedupStore(tmp_path / "d.sqlite"))
    report = run_scheduled(
        ScheduledSweep("toy", "member"),
        "toy",
        toy,
        environ=environ,
        store=SqliteSweepStore(tmp_path / "s.sqlite"),
        sender=dispatcher,
        dispatch=lambda message: None,
    )
    assert not isinstance(report, list) and report.read_failed
    [digest] = _digests(slack)
    assert "toy member: state read failed: ConnectionError: AccessDenied" in json.dumps(digest)


# --- catch-up records that could not be judged ------------------------------------------------


def test_a_caught_up_record_that_could_not_be_judged_is_in_the_digest(
    tmp_path,
    monkeypatch,
    slack: RecordingHTTPServer,  # noqa: F811
    smtp,  # noqa: F811
):
    # Cloud Storage logs storage.buckets.update without the bucket's new settings, so the
    # function reads the bucket to judge it (DESIGN.md, and the Panther sample in
    # tests/data); when that read cannot answer, the record is not judged. A fanned-out
    # sweep's digest must say so: nobody reads the function's log.
    # https://cloud.google.com/storage/docs/audit-logging
    from datetime import timedelta

    from test_gcp_events import bucket_update
    from test_state_gcp import PROJECT, SWEEP_BASELINE, clean_state, logged
    from test_state_gcp import environ as gcp_environ
    from test_sweep_digest import _digests, env
    from trustwatch.alerts import Dispatcher
    from trustwatch.baseline import load_baseline
    from trustwatch.dedup import SqliteDedupStore
    from trustwatch.sweep import sweep_unit
    from trustwatch.sweepstate import SqliteSweepStore

    baseline = load_baseline(SWEEP_BASELINE)
    with GcpServer() as gcp_server:
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS",
            str(gcp_server.service_account_key_file(tmp_path)),
        )
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        clean_state(gcp_server)
        store = SqliteSweepStore(tmp_path / "s.sqlite")
        environ = {**gcp_environ(gcp_server), **env(slack, smtp)}
        dispatcher = Dispatcher.from_env(environ, store=SqliteDedupStore(tmp_path / "d.sqlite"))
        now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

        def run(at: datetime):
            return sweep_unit("gcp", PROJECT, baseline, environ=environ, store=store,
                              sender=dispatcher, now=at, digest=True)  # fmt: skip

        assert run(now).errors == [] and _digests(slack) == []  # clean: no digest
        # a bucket made, opened and deleted within the hour: its settings read answers 404
        entry = logged(bucket_update("dbx-uc-tmp-4821"), now + timedelta(minutes=50), "unjudged")
        gcp_server.log_entries = [entry]
        report = run(now + timedelta(hours=1))
    assert report.catch_up is not None and report.catch_up.not_evaluated
    [digest] = _digests(slack)
    assert report.catch_up.not_evaluated[0].split(": not evaluated: ")[1][:40] in json.dumps(digest)


# --- GCP: a conditional impersonation grant on a service account -------------------------------


def test_a_conditional_token_creator_on_a_service_account_is_found(tmp_path, monkeypatch):
    # "Requests for policies with any conditional role bindings must specify version 3",
    # and for a service account the version is a query parameter ("The request body must
    # be empty"): https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/getIamPolicy
    # A condition that is always true makes the grant as good as unconditional:
    # https://cloud.google.com/iam/docs/conditions-overview
    from test_gcp_events import COMPUTE, MALLORY
    from test_state_gcp import (
        PROJECT,
        SWEEP_BASELINE,
        TOKEN_CREATOR,
        binding,
        clean_state,
        v3_policy,
    )
    from test_state_gcp import environ as gcp_environ
    from trustwatch.baseline import load_baseline
    from trustwatch.engine import evaluate
    from trustwatch.gcp import state as gcp_state

    baseline = load_baseline(SWEEP_BASELINE)
    with GcpServer() as gcp_server:
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS",
            str(gcp_server.service_account_key_file(tmp_path)),
        )
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        clean_state(gcp_server)
        always = {
            "title": "always",
            "expression": 'request.time < timestamp("2999-01-01T00:00:00Z")',
        }
        gcp_server.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(
            binding(TOKEN_CREATOR, MALLORY, condition=always)
        )
        read = gcp_state.read(PROJECT, baseline, gcp_environ(gcp_server))
    assert read.errors == []
    found = [(f.rule, f.identity) for c in read.changes for f in evaluate(c, baseline)]
    assert ("gcp.iam.impersonation_granted", COMPUTE) in found


# --- AWS: the default credentials read another account -------------------------------------------


def test_an_account_read_with_another_accounts_credentials_keeps_its_findings(
    moto_server, tmp_path, monkeypatch
):
    # Without TRUSTWATCH_AWS_SWEEP_ROLE the default credential chain signs in to its own
    # account; an IAM ARN names the account it is in
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns).
    # A member account read that way must not look like an account whose roles are gone
    # and whose backdoor was taken back.
    from awsstate import Account, add_trust_principal, baseline_for, build_clean, fresh_account
    from trustwatch.sweep import sweep_unit
    from trustwatch.sweepstate import SqliteSweepStore

    member = Account(moto_server, fresh_account())
    other = Account(moto_server, fresh_account())
    baseline = baseline_for(member.id, tmp_path)
    build_clean(member, baseline)
    (tmp_path / "other").mkdir()
    build_clean(other, baseline_for(other.id, tmp_path / "other"))
    add_trust_principal(member)
    store = SqliteSweepStore(tmp_path / "s.sqlite")
    for key, value in member.environ.items():
        monkeypatch.setenv(key, value)
    first = sweep_unit("aws", member.id, baseline, environ=member.environ, store=store, sender=None)
    assert [f.rule for f in first.findings] == ["aws.trust.principal_added"]
    # the function's credentials now sign in to the other account (the setting removed)
    for key, value in other.environ.items():
        monkeypatch.setenv(key, value)
    second = sweep_unit("aws", member.id, baseline, environ=other.environ, store=store, sender=None)
    assert second.read_failed and second.resolved == []
    assert [(f.rule, f.sweep_status) for f in second.findings] == [
        ("aws.trust.principal_added", "open")
    ]
    assert "the credentials read account" in second.errors[0]


def test_a_service_account_policy_not_read_keeps_its_findings_open(tmp_path, monkeypatch):
    # An existing account always has an IAM policy (an empty one grants nothing); a 404
    # on getIamPolicy is no answer, so the impersonation found last time is not resolved.
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/getIamPolicy
    from datetime import timedelta

    from test_gcp_events import COMPUTE, MALLORY
    from test_state_gcp import (
        PROJECT,
        SWEEP_BASELINE,
        TOKEN_CREATOR,
        binding,
        clean_state,
        v3_policy,
    )
    from test_state_gcp import environ as gcp_environ
    from trustwatch.baseline import load_baseline
    from trustwatch.sweep import sweep_unit
    from trustwatch.sweepstate import SqliteSweepStore

    baseline = load_baseline(SWEEP_BASELINE)
    with GcpServer() as gcp_server:
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS",
            str(gcp_server.service_account_key_file(tmp_path)),
        )
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        clean_state(gcp_server)
        gcp_server.policies[f"serviceAccounts/{COMPUTE}"] = v3_policy(
            binding(TOKEN_CREATOR, MALLORY)
        )
        store = SqliteSweepStore(tmp_path / "s.sqlite")
        now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

        def run(at: datetime):
            return sweep_unit("gcp", PROJECT, baseline, environ=gcp_environ(gcp_server),
                              store=store, sender=None, now=at)  # fmt: skip

        first = run(now)
        assert [(f.rule, f.sweep_status) for f in first.findings] == [
            ("gcp.iam.impersonation_granted", "new")
        ]
        del gcp_server.policies[f"serviceAccounts/{COMPUTE}"]  # getIamPolicy answers 404
        second = run(now + timedelta(hours=1))
    assert second.resolved == []
    assert [(f.rule, f.sweep_status) for f in second.findings] == [
        ("gcp.iam.impersonation_granted", "open")
    ]
    assert any("IAM policy not found (404)" in e for e in second.errors)
