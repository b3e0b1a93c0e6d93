"""The core remediation path (trustwatch.remediation), on the toy cloud of tests/toycloud.

Every safety decision is core's, the same for each cloud: dry run unless asked to apply,
mode per baseline entry, approved actors left alone, the responder's own changes never a
finding, re-read before acting, the circuit breaker, `applied` only when verified. The
clouds' own remediators are tested against their stand-ins (tests/test_remediate_*.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from trustwatch import clouds
from trustwatch.baseline import parse_baseline
from trustwatch.cli import main
from trustwatch.clouds import CloudFolder
from trustwatch.dedup import SqliteDedupStore
from trustwatch.findings import Finding
from trustwatch.remediation import CIRCUIT_RULE, Breaker, remediate
from trustwatch.respond import Responder

TOY = """\
version: 1
defaults:
  mode: {mode}
actors:
  responder: [trustwatch-fn]
  approved: [terraform-ci]
toy:
  grants:
    reader: [alice]
"""


@pytest.fixture
def toy() -> Iterator[Any]:
    unregister = clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))
    from toycloud.remediate import TOY_API

    TOY_API.members = {"reader": {"alice", "eve"}}
    TOY_API.writes = 0
    TOY_API.faults = []
    try:
        yield TOY_API
    finally:
        unregister()
        for module in [m for m in sys.modules if m == "toycloud" or m.startswith("toycloud.")]:
            del sys.modules[module]


def _grant(member: str = "eve", actor: str = "mallory") -> dict[str, Any]:
    return {"toyEvent": "Grant", "role": "reader", "member": member, "actor": actor}


def _responder(mode: str, *, apply: bool, store: Any = None) -> Responder:
    baseline = parse_baseline(TOY.format(mode=mode))
    plugin = clouds.get("toy")
    sent: list[Finding] = []

    class Recorder:
        def send(self, findings: list[Finding]) -> None:
            sent.extend(findings)

    responder = Responder(
        baseline=lambda: baseline,
        sender=Recorder(),
        environ={},
        remediator=plugin.remediator({}),
        apply_remediation=apply,
        breaker=Breaker(store) if store is not None else None,
    )
    responder.sent = sent  # type: ignore[attr-defined]
    return responder


def test_remediate_mode_applies_verifies_and_the_alert_says_so(toy) -> None:
    responder = _responder("remediate", apply=True)
    outcome = responder.handle(_grant(), "toy-event")
    (finding,) = outcome.findings
    assert finding.remediation.status == "applied", finding.remediation
    assert finding.remediation.before == ["alice", "eve"]
    assert finding.remediation.after == ["alice"]
    assert toy.members["reader"] == {"alice"}
    assert responder.sent == [finding]  # type: ignore[attr-defined]


def test_dry_run_plans_and_changes_nothing(toy) -> None:
    (finding,) = _responder("remediate", apply=False).handle(_grant(), "e").findings
    assert finding.remediation.status == "planned"
    assert finding.remediation.detail.startswith("dry run; would remove_member on reader")
    assert toy.members["reader"] == {"alice", "eve"} and toy.writes == 0


def test_alert_mode_changes_nothing_even_when_asked_to_apply(toy) -> None:
    (finding,) = _responder("alert", apply=True).handle(_grant(), "e").findings
    assert finding.remediation.status == "none"
    assert finding.remediation.detail.startswith("mode is alert; would remove_member")
    assert finding.remediation.after == ["alice"]  # the plan is shown
    assert toy.writes == 0


def test_an_approved_actor_is_left_alone(toy) -> None:
    (finding,) = (
        _responder("remediate", apply=True).handle(_grant(actor="terraform-ci"), "e").findings
    )
    assert finding.remediation.status == "skipped"
    assert "approved" in finding.remediation.detail
    assert toy.writes == 0


def test_the_responders_own_change_fed_back_is_nothing(toy) -> None:
    outcome = _responder("remediate", apply=True).handle(_grant(actor="trustwatch-fn"), "e")
    assert outcome.findings == [] and toy.writes == 0


def test_a_stale_event_already_fixed_is_skipped_without_a_write(toy) -> None:
    toy.members["reader"] = {"alice"}  # someone removed eve before the event arrived
    (finding,) = _responder("remediate", apply=True).handle(_grant(), "e").findings
    assert finding.remediation.status == "skipped"
    assert "already back" in finding.remediation.detail
    assert toy.writes == 0


def test_a_permission_error_fails_and_still_alerts(toy) -> None:
    toy.faults = ["denied"]
    responder = _responder("remediate", apply=True)
    (finding,) = responder.handle(_grant(), "e").findings
    assert finding.remediation.status == "failed"
    assert "PermissionError: toy: not allowed" in finding.remediation.detail
    assert responder.sent == [finding]  # type: ignore[attr-defined]


def test_a_write_that_does_not_take_is_failed_not_applied(toy) -> None:
    toy.faults = ["lost"]
    (finding,) = _responder("remediate", apply=True).handle(_grant(), "e").findings
    assert finding.remediation.status == "failed"
    assert finding.remediation.detail.startswith("not applied: eve still holds reader")


def test_the_breaker_stops_the_fourth_remediation_in_ten_minutes(toy, tmp_path) -> None:
    clock = [1_000_000.0]
    store = SqliteDedupStore(tmp_path / "state.sqlite")
    baseline = parse_baseline(TOY.format(mode="remediate"))
    breaker = Breaker(store, clock=lambda: clock[0])
    remediator = clouds.get("toy").remediator({})
    from trustwatch.engine import evaluate
    from trustwatch.intake import parse_document

    def fight() -> list[Finding]:
        toy.members["reader"].add("eve")  # the attacker grants again
        (parsed,) = list(parse_document(_grant(), "e"))
        found = evaluate(parsed.changes[0], baseline)
        return remediate(found, baseline, lambda _c: remediator, apply=True, breaker=breaker)

    for _ in range(3):
        (done,) = fight()
        assert done.remediation.status == "applied"
        clock[0] += 60
    stopped, circuit = fight()
    assert stopped.remediation.status == "skipped"
    assert "circuit open" in stopped.remediation.detail
    assert (circuit.rule, circuit.severity.value) == (CIRCUIT_RULE, "critical")
    assert circuit.identity == "reader" and "fighting the baseline" in circuit.summary
    assert toy.writes == 3 and "eve" in toy.members["reader"]
    clock[0] += 600  # the window has passed the first remediations: allowed again
    (again,) = fight()
    assert again.remediation.status == "applied"
    store.close()


def test_the_breaker_is_shared_by_instances_on_one_store(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    with SqliteDedupStore(path) as one, SqliteDedupStore(path) as two:
        a, b = Breaker(one, clock=lambda: 5.0), Breaker(two, clock=lambda: 5.0)
        assert [a.allow("Role"), b.allow("role"), a.allow("ROLE")] == [True, True, True]
        assert not b.allow("role")  # names compare as the clouds do: case-insensitively
        assert a.allow("other-role")


def _findings_file(tmp_path: Path, mode: str, **grant: str) -> tuple[Path, Path]:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(TOY.format(mode=mode))
    events = tmp_path / "events.json"
    events.write_text(json.dumps(_grant(**grant)))
    return baseline, events


def test_cli_remediate_shows_then_applies_the_plan(toy, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli.sqlite"))
    baseline, events = _findings_file(tmp_path, "remediate")
    assert main(["replay", "--baseline", str(baseline), str(events)]) == 1
    findings = tmp_path / "findings.jsonl"
    findings.write_text(capsys.readouterr().out)

    assert main(["remediate", "--baseline", str(baseline), str(findings)]) == 0
    (planned,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    assert planned.remediation.status == "planned" and toy.writes == 0

    assert main(["remediate", "--baseline", str(baseline), "--apply", str(findings)]) == 0
    (applied,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    assert applied.remediation.status == "applied"
    assert toy.members["reader"] == {"alice"}


def test_cli_remediate_reports_bad_lines_and_failures(toy, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli.sqlite"))
    baseline, events = _findings_file(tmp_path, "remediate")
    main(["replay", "--baseline", str(baseline), str(events)])
    findings = tmp_path / "findings.jsonl"
    findings.write_text(capsys.readouterr().out + "{not json\n")
    toy.faults = ["denied"]
    code = main(["remediate", "--baseline", str(baseline), "--apply", str(findings)])
    out, err = capsys.readouterr()
    assert code == 4, err  # a failed remediation and a bad line: neither hides the other
    assert f"{findings}:2: not a finding" in err
    (failed,) = [Finding.model_validate_json(x) for x in out.splitlines()]
    assert failed.remediation.status == "failed"


def test_cli_remediate_leaves_findings_of_approved_actors(
    toy, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TRUSTWATCH_STATE_DB", str(tmp_path / "cli.sqlite"))
    baseline, events = _findings_file(tmp_path, "remediate", actor="Terraform-CI")
    main(["replay", "--baseline", str(baseline), str(events)])
    (finding,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    # a findings file edited to look planned is still refused: the baseline decides
    edited = finding.model_copy(
        update={"remediation": finding.remediation.model_copy(update={"status": "planned"})}
    )
    path = tmp_path / "findings.jsonl"
    path.write_text(edited.to_json() + "\n")
    assert main(["remediate", "--baseline", str(baseline), "--apply", str(path)]) == 0
    (left,) = [Finding.model_validate_json(x) for x in capsys.readouterr().out.splitlines()]
    assert left.remediation.status == "skipped" and toy.writes == 0


def test_an_unreadable_breaker_store_fails_closed(toy) -> None:
    class Broken:
        def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
            raise ConnectionError("state table unreachable")

        def release(self, finding_id: str) -> None:
            raise AssertionError("never called")

    responder = _responder("remediate", apply=True, store=Broken())
    (finding,) = responder.handle(_grant(), "e").findings
    assert finding.remediation.status == "failed"
    assert "circuit breaker state unreadable" in finding.remediation.detail
    assert toy.writes == 0
    assert responder.sent == [finding]  # type: ignore[attr-defined]


def _aged(finding: Finding, event_time: str) -> Finding:
    return finding.model_copy(update={"event_time": event_time})


def test_an_event_older_than_the_age_limit_is_planned_not_applied(toy) -> None:
    """A late or retried event (Lambda retries an async event for up to 6 hours,
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html) may
    describe a state someone approved has changed since: past
    TRUSTWATCH_REMEDIATION_MAX_AGE it is only planned, and says why."""
    from trustwatch.engine import evaluate
    from trustwatch.intake import parse_document
    from trustwatch.remediation import stale_after_from_env

    baseline = parse_baseline(TOY.format(mode="remediate"))
    remediator = clouds.get("toy").remediator({})
    (parsed,) = list(parse_document(_grant(), "e"))
    (found,) = evaluate(parsed.changes[0], baseline)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
    limit = stale_after_from_env({"TRUSTWATCH_REMEDIATION_MAX_AGE": "3600"})

    def run(event_time: str) -> Finding:
        (done,) = remediate(
            [_aged(found, event_time)],
            baseline,
            lambda _c: remediator,
            apply=True,
            stale_after_s=limit,
            clock=lambda: now,
        )
        return done

    old = run("2026-12-01T10:30:00Z")
    assert old.remediation.status == "skipped"
    assert old.remediation.detail.startswith("event is 90 min old (more than 60)")
    assert "would remove_member on reader" in old.remediation.detail  # the plan is shown
    assert toy.writes == 0
    fresh = run("2026-12-01T11:30:00Z")
    assert fresh.remediation.status == "applied" and toy.writes == 1
    assert stale_after_from_env({}) is None  # unset: recordings replayed stay remediable
    assert stale_after_from_env({"TRUSTWATCH_REMEDIATION_MAX_AGE": "0"}) is None
    assert stale_after_from_env({"TRUSTWATCH_REMEDIATION_MAX_AGE": "soon"}) == 3600
