"""The sweep engine on the toy cloud (tests/toycloud/state.py reads a JSON file): drift no
event reported, new / open / resolved across sweeps, catch-up of a lost event, failed
reads that keep the last state; alerts through the real Dispatcher to a recording
webhook, deduplicated in a real SQLite store."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from trustwatch import clouds
from trustwatch.alerts import Dispatcher
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply
from trustwatch.baseline import Baseline, parse_baseline
from trustwatch.clouds import CloudFolder
from trustwatch.dedup import SqliteDedupStore
from trustwatch.findings import fingerprint
from trustwatch.sweep import (
    CATCH_UP_OVERLAP,
    ScheduledSweep,
    UnitReport,
    run_scheduled,
    scheduled,
    sweep,
    sweep_unit,
    unit_message,
)
from trustwatch.sweepstate import SqliteSweepStore, SweepStateConflict

TOY_BASELINE = """\
version: 1
toy:
  grants:
    reader: [alice]
    writer: [bob]
"""
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RULE = "toy.grant.unexpected"


def finding_id(role: str, member: str) -> str:
    return fingerprint(RULE, role, member)


@pytest.fixture
def toy() -> Iterator[Baseline]:
    unregister = clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))
    try:
        yield parse_baseline(TOY_BASELINE, "toy.yaml")
    finally:
        unregister()
        for module in [m for m in sys.modules if m == "toycloud" or m.startswith("toycloud.")]:
            del sys.modules[module]


class ToyWorld:
    """The toy cloud's state file, the sweep store, and alerts to a recording webhook."""

    def __init__(self, folder: Path, hook: RecordingHTTPServer) -> None:
        self.path = folder / "toy-state.json"
        self.units: dict[str, dict[str, Any]] = {"toyland": {"grants": {}}}
        self.audit: list[dict[str, Any]] = []
        self.store = SqliteSweepStore(folder / "sweeps.sqlite")
        self.dedup = SqliteDedupStore(folder / "dedup.sqlite")
        self.hook = hook
        self.environ = {
            "TOY_STATE": str(self.path),
            "TRUSTWATCH_WEBHOOK_URL": hook.url + "/alerts",
            "TRUSTWATCH_WEBHOOK_SECRET": "whsec-sweep-test-0123456789",
            "TRUSTWATCH_ALERT_TIMEOUT": "2",
            "TRUSTWATCH_ALERT_ATTEMPTS": "1",
            "TRUSTWATCH_MIN_SEVERITY": "info",
        }
        self.sender = Dispatcher.from_env(self.environ, store=self.dedup, window_s=3 * 3600)

    def grants(self, unit: str = "toyland", **roles: list[str]) -> None:
        self.units.setdefault(unit, {})["grants"] = roles
        self._write()

    def set(self, unit: str = "toyland", **fields: Any) -> None:
        self.units.setdefault(unit, {}).update(fields)
        self._write()

    def log_event(self, role: str, member: str, at: datetime, unit: str = "toyland") -> None:
        record = {"toyEvent": "Grant", "role": role, "member": member, "actor": "mallory"}
        self.audit.append({**record, "unit": unit, "time": at.isoformat()})
        self._write()

    def _write(self) -> None:
        self.path.write_text(json.dumps({"units": self.units, "audit": self.audit}))

    def sweep(self, baseline: Baseline, now: datetime, unit: str = "toyland") -> UnitReport:
        return sweep_unit(
            "toy",
            unit,
            baseline,
            environ=self.environ,
            store=self.store,
            sender=self.sender,
            now=now,
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Every finding the webhook received, in order."""
        return [r.json() for r in self.hook.requests]

    def take_alerts(self) -> list[tuple[str, str | None, str]]:
        """(finding id, sweep_status, source) of the alerts since the last call."""
        got = [(a["id"], a.get("sweep_status"), a["source"]) for a in self.alerts()]
        self.hook.requests.clear()
        return got


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ToyWorld]:
    with RecordingHTTPServer(Reply(204, b"")) as hook:
        yield ToyWorld(tmp_path, hook)


def statuses(report: UnitReport) -> dict[str, str | None]:
    return {f.actual: f.sweep_status for f in [*report.findings, *report.resolved]}


def test_a_sweep_finds_drift_no_event_reported_and_alerts_it(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"], writer=["bob"])
    report = world.sweep(toy, T0)
    assert [(f.rule, f.identity, f.actual) for f in report.findings] == [(RULE, "reader", "eve")]
    finding = report.findings[0]
    assert (finding.source, finding.sweep_status, finding.event_id) == ("sweep", "new", "")
    assert finding.event_name == "sweep:ListGrants"
    assert report.saved and not report.errors and report.calls == 1
    assert world.take_alerts() == [(finding_id("reader", "eve"), "new", "sweep")]
    assert json.loads(finding.to_json())["sweep_status"] == "new"


def test_the_second_sweep_alerts_only_what_changed_and_still_lists_what_is_open(
    toy: Baseline, world: ToyWorld
):
    world.grants(reader=["alice", "eve"])
    world.sweep(toy, T0)
    world.take_alerts()
    world.grants(reader=["alice", "eve", "mallory"])
    second = world.sweep(toy, T0 + HOUR)
    assert statuses(second) == {"eve": "open", "mallory": "new"}
    assert world.take_alerts() == [(finding_id("reader", "mallory"), "new", "sweep")]
    third = world.sweep(toy, T0 + 2 * HOUR)  # nothing changed: nothing alerts, all listed
    assert statuses(third) == {"eve": "open", "mallory": "open"}
    assert world.take_alerts() == []


def test_drift_gone_since_the_last_sweep_is_resolved_and_alerted_once(
    toy: Baseline, world: ToyWorld
):
    world.grants(reader=["alice", "eve"])
    world.sweep(toy, T0)
    world.take_alerts()
    world.grants(reader=["alice"])
    second = world.sweep(toy, T0 + HOUR)
    assert second.findings == []
    assert [(f.actual, f.sweep_status, f.source) for f in second.resolved] == [
        ("eve", "resolved", "sweep")
    ]
    assert second.output() == second.resolved
    assert world.take_alerts() == [(finding_id("reader", "eve"), "resolved", "sweep")]
    assert world.sweep(toy, T0 + 2 * HOUR).resolved == []  # resolved once, then forgotten
    assert world.take_alerts() == []
    # the drift comes back within the dedup window: it alerts again, as new
    world.grants(reader=["alice", "eve"])
    assert statuses(world.sweep(toy, T0 + 3 * HOUR)) == {"eve": "new"}
    assert world.take_alerts() == [(finding_id("reader", "eve"), "new", "sweep")]


def test_catch_up_turns_a_lost_event_into_exactly_one_alert(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice"])
    world.sweep(toy, T0)
    # Two events the function never received: carol's grant is still there (the state
    # read sees it too), dave's was undone before the sweep (only the log remembers it).
    world.grants(reader=["alice", "carol"])
    world.log_event("reader", "carol", T0 + timedelta(minutes=20))
    world.log_event("reader", "dave", T0 + timedelta(minutes=25))
    second = world.sweep(toy, T0 + HOUR)
    assert statuses(second) == {"carol": "new"}
    assert second.catch_up is not None and second.catch_up.records == 2
    assert sorted(f.actual for f in second.event_findings) == ["carol", "dave"]
    alerts = world.take_alerts()
    assert sorted(a[0] for a in alerts) == sorted(
        [finding_id("reader", "carol"), finding_id("reader", "dave")]
    )
    # the next sweep reads the overlap again (late log delivery) but alerts nothing twice
    world.log_event("reader", "dave", T0 + HOUR - timedelta(minutes=2))
    third = world.sweep(toy, T0 + 2 * HOUR)
    assert [f.actual for f in third.event_findings] == ["dave"]
    assert statuses(third) == {"carol": "open"}
    assert world.take_alerts() == []


def test_the_catch_up_alert_of_a_lost_event_carries_the_event(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice"])
    world.sweep(toy, T0)
    world.grants(reader=["alice", "carol"])
    world.log_event("reader", "carol", T0 + timedelta(minutes=20))
    world.sweep(toy, T0 + HOUR)
    [alert] = world.alerts()
    assert (alert["source"], alert["actor"], alert["event_name"]) == ("event", "mallory", "Grant")


def test_catch_up_reads_from_the_watermark_less_the_overlap(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice"])
    world.log_event("reader", "old", T0 - 2 * HOUR)  # before the first sweep's lookback
    world.log_event("reader", "recent", T0 - 30 * timedelta(minutes=1))
    first = world.sweep(toy, T0)
    assert [f.actual for f in first.event_findings] == ["recent"]
    world.log_event("reader", "late", T0 - CATCH_UP_OVERLAP + timedelta(seconds=1))
    world.log_event("reader", "too-late", T0 - CATCH_UP_OVERLAP - timedelta(seconds=1))
    world.log_event("reader", "now", T0 + HOUR)  # at the sweep's start: the next one's
    second = world.sweep(toy, T0 + HOUR)
    assert [f.actual for f in second.event_findings] == ["late"]


def test_a_failed_read_keeps_the_last_state_and_resolves_nothing(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"])
    world.sweep(toy, T0)
    world.take_alerts()
    before = world.store.load("toy", "toyland")
    world.set(fail="AccessDenied: not authorized to list grants")
    failed = world.sweep(toy, T0 + HOUR)
    assert failed.read_failed and not failed.saved and failed.resolved == []
    assert failed.errors == [
        "toy toyland: state read failed: ConnectionError: AccessDenied: not authorized to "
        "list grants"
    ]
    assert statuses(failed) == {"eve": "open"}  # as last known
    assert world.take_alerts() == []
    after = world.store.load("toy", "toyland")
    assert after == before and after is not None and before is not None
    assert after.version == before.version
    # read again once it works: the drift gone since is resolved now, not before
    world.set(fail="", grants={"reader": ["alice"]})
    assert statuses(world.sweep(toy, T0 + 2 * HOUR)) == {"eve": "resolved"}


def test_an_unreadable_identity_keeps_its_findings_open(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"], writer=["bob", "zoe"])
    world.sweep(toy, T0)
    world.take_alerts()
    world.set(grants={"reader": ["alice"]}, errors=["writer: AccessDenied"], unreadable=["writer"])
    report = world.sweep(toy, T0 + HOUR)
    assert statuses(report) == {"zoe": "open", "eve": "resolved"}
    assert report.errors == ["toy toyland: writer: AccessDenied"]
    assert world.take_alerts() == [(finding_id("reader", "eve"), "resolved", "sweep")]


def test_read_errors_naming_no_identity_resolve_nothing(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"])
    world.sweep(toy, T0)
    world.set(grants={"reader": ["alice"]}, errors=["page 2 of the listing: throttled"])
    report = world.sweep(toy, T0 + HOUR)
    assert statuses(report) == {"eve": "open"} and report.resolved == []


def test_failed_alerts_save_nothing_and_the_next_sweep_sends_them_again(
    toy: Baseline, world: ToyWorld
):
    world.grants(reader=["alice", "eve"])
    world.hook.reply(Reply(500, b"down"))
    failed = world.sweep(toy, T0)
    assert failed.alert_error and not failed.saved
    assert world.store.load("toy", "toyland") is None
    world.take_alerts()
    retried = world.sweep(toy, T0 + timedelta(minutes=5))
    assert statuses(retried) == {"eve": "new"} and retried.saved
    assert world.take_alerts() == [(finding_id("reader", "eve"), "new", "sweep")]


def test_a_sweep_without_a_sender_reports_and_saves(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"])
    report = sweep_unit(
        "toy", "toyland", toy, environ=world.environ, store=world.store, sender=None, now=T0
    )
    assert report.saved and report.alerted == [] and world.alerts() == []


def test_state_is_kept_per_unit(toy: Baseline, world: ToyWorld):
    world.grants("toyland", reader=["alice", "eve"])
    world.grants("elsewhere", reader=["alice", "eve"])
    report = sweep(
        ["toy"], toy, environ=world.environ, store=world.store, sender=world.sender, now=T0
    )
    assert [(u.unit, statuses(u)) for u in report.units] == [
        ("elsewhere", {"eve": "new"}),
        ("toyland", {"eve": "new"}),
    ]
    world.grants("toyland", reader=["alice"])
    again = sweep(
        ["toy"], toy, environ=world.environ, store=world.store, sender=None, now=T0 + HOUR
    )
    assert [(u.unit, statuses(u)) for u in again.units] == [
        ("elsewhere", {"eve": "open"}),
        ("toyland", {"eve": "resolved"}),
    ]


def test_a_cloud_without_a_state_part_is_an_error(toy: Baseline, world: ToyWorld, monkeypatch):
    monkeypatch.setattr(CloudFolder, "state", lambda self: None)
    report = sweep(["toy"], toy, environ=world.environ, store=world.store, sender=None)
    assert report.errors == ["toy: no state part to sweep"] and report.units == []


def test_a_stale_save_is_a_conflict(tmp_path: Path, toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"])
    world.sweep(toy, T0)
    loaded = world.store.load("toy", "toyland")
    assert loaded is not None
    other = SqliteSweepStore(world.store.path)  # another process, same file
    other.save("toy", "toyland", loaded, expected=loaded.version)
    with pytest.raises(SweepStateConflict):
        world.store.save("toy", "toyland", loaded, expected=loaded.version)
    with pytest.raises(SweepStateConflict):
        world.store.save("toy", "toyland", loaded, expected=None)
    report = world.sweep(toy, T0 + HOUR)  # loads the newest: saves fine
    assert report.saved


# --- scheduled invocations -----------------------------------------------------------------


def test_scheduled_messages() -> None:
    assert scheduled({"trustwatch": "sweep"}) == ScheduledSweep()
    assert scheduled(unit_message("aws", "111122223333")) == ScheduledSweep("aws", "111122223333")
    assert scheduled({"detail-type": "Scheduled Event"}) is None
    assert scheduled(["trustwatch", "sweep"]) is None
    for bad in (
        {"trustwatch": "sweep", "unit": "1"},
        {"trustwatch": "sweep", "cloud": 3},
        {"trustwatch": "sweep", "cloud": "aws", "unit": ""},
        {"trustwatch": "sweep", "cloud": "aws", "units": ["1"]},
    ):
        with pytest.raises(ValueError, match="sweep message"):
            scheduled(bad)


def test_a_scheduled_fan_out_dispatches_one_message_per_unit(toy: Baseline, world: ToyWorld):
    world.grants("toyland", reader=["alice", "eve"])
    world.grants("elsewhere", reader=["alice"])
    dispatched: list[dict[str, str]] = []
    messages = run_scheduled(
        ScheduledSweep(),
        "toy",
        toy,
        environ=world.environ,
        store=world.store,
        sender=world.sender,
        dispatch=dispatched.append,
    )
    assert (
        messages == dispatched == [unit_message("toy", "elsewhere"), unit_message("toy", "toyland")]
    )
    assert world.alerts() == []  # fanning out sweeps nothing itself
    request = scheduled(dispatched[1])
    assert request is not None
    report = run_scheduled(
        request,
        "toy",
        toy,
        environ=world.environ,
        store=world.store,
        sender=world.sender,
        dispatch=dispatched.append,
        now=T0,
    )
    assert isinstance(report, UnitReport) and statuses(report) == {"eve": "new"}
    assert world.take_alerts() == [(finding_id("reader", "eve"), "new", "sweep")]


def test_a_scheduled_unit_whose_alerts_fail_raises_for_the_platform_to_retry(
    toy: Baseline, world: ToyWorld
):
    world.grants(reader=["alice", "eve"])
    world.hook.reply(Reply(500, b"down"))
    with pytest.raises(RuntimeError, match="alerts failed"):
        run_scheduled(
            ScheduledSweep("toy", "toyland"),
            "toy",
            toy,
            environ=world.environ,
            store=world.store,
            sender=world.sender,
            dispatch=lambda message: None,
            now=T0,
        )
    with pytest.raises(ValueError, match="reached the toy function"):
        run_scheduled(
            ScheduledSweep("aws", "1"),
            "toy",
            toy,
            environ=world.environ,
            store=world.store,
            sender=world.sender,
            dispatch=lambda message: None,
        )


def test_a_rule_that_fails_on_an_identity_keeps_its_findings_open(toy: Baseline, world: ToyWorld):
    world.grants(reader=["alice", "eve"], writer=["bob", "zoe"])
    world.sweep(toy, T0)
    world.set(grants={"reader": ["alice"]}, garbled=["writer"])
    report = world.sweep(toy, T0 + HOUR)
    assert statuses(report) == {"zoe": "open", "eve": "resolved"}
    [error] = report.errors
    assert error.startswith("toy toyland: internal error: rule toy.grant.unexpected failed")
    assert report.saved  # what was judged is kept; writer's last findings with it
    stored = world.store.load("toy", "toyland")
    assert stored is not None and [f.actual for f in stored.findings] == ["zoe"]


def test_of_two_racing_sweeps_of_a_unit_one_saves_and_each_finding_alerts_once(
    toy: Baseline, world: ToyWorld
):
    world.grants(reader=["alice", "eve"])

    class OvertakenStore(SqliteSweepStore):
        """Another sweep of the unit (a retried invocation) saves between our load and
        save: both are real sweeps on the same SQLite file."""

        def load(self, cloud: str, unit: str) -> Any:
            loaded = super().load(cloud, unit)
            other = sweep_unit(
                cloud,
                unit,
                toy,
                environ=world.environ,
                store=SqliteSweepStore(self.path),
                sender=world.sender,
                now=T0,
            )
            assert other.saved
            return loaded

    late = sweep_unit(
        "toy",
        "toyland",
        toy,
        environ=world.environ,
        store=OvertakenStore(world.store.path),
        sender=world.sender,
        now=T0,
    )
    assert not late.saved
    assert late.errors[-1].startswith("toy toyland: not saved: sweep state of toy#toyland changed")
    assert world.take_alerts() == [(finding_id("reader", "eve"), "new", "sweep")]
    stored = world.store.load("toy", "toyland")
    assert stored is not None and stored.version == "1"


def test_a_catch_up_flood_cannot_keep_the_state_read_from_being_saved(
    toy: Baseline, world: ToyWorld, monkeypatch
):
    """Red team: thousands of logged calls of watched names (failed ones too) would make
    the catch-up outlast the function's timeout every sweep, and nothing would ever be
    saved or alerted. Past TRUSTWATCH_SWEEP_CATCH_UP_BUDGET it stops: the state read's
    drift is alerted and saved, the watermark stays, the next sweep reads the rest.
    (CloudTrail LookupEvents serves 2 requests a second per account and region,
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html.)"""
    import trustwatch.sweep as sweep_module

    world.grants(reader=["alice"])
    world.sweep(toy, T0)
    world.grants(reader=["alice", "carol"])  # drift the state read sees
    for minute in range(10):  # the flood
        world.log_event("reader", f"noise-{minute}", T0 + timedelta(minutes=10 + minute))
    ticks = iter(range(0, 10_000, 50))  # each look at the clock: 50 s later
    monkeypatch.setattr(sweep_module, "_clock", lambda: float(next(ticks)))
    world.environ["TRUSTWATCH_SWEEP_CATCH_UP_BUDGET"] = "120"
    flooded = world.sweep(toy, T0 + HOUR)
    assert statuses(flooded) == {"carol": "new"}
    assert any("stopped after 120 s" in e for e in flooded.errors), flooded.errors
    assert flooded.catch_up is not None and flooded.catch_up.records < 10
    assert finding_id("reader", "carol") in [a[0] for a in world.take_alerts()]
    monkeypatch.setattr(sweep_module, "_clock", lambda: 0.0)  # a quiet hour
    calm = world.sweep(toy, T0 + 2 * HOUR)
    assert statuses(calm) == {"carol": "open"}  # saved by the flooded sweep
    caught = sorted(str(f.actual) for f in calm.event_findings)
    assert caught == [f"noise-{m}" for m in range(10)]  # the window read again, whole
