"""Concurrent AWS handler processes on one state table alert each finding exactly once.

The benchmark's concurrency row (benchmarks/run.py) at its smallest: 3 fresh
interpreters running functions/aws/handler.py against one moto DynamoDB table, every
event delivered to all 3 of them at about the same time. Behaviour only, no timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_three_processes_one_state_table_alert_each_finding_once(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run
        from local import MotoServer, RecordingServer
    finally:
        sys.path.remove(str(BENCHMARKS))

    plan = run.Plan(1, 1, {}, 1, 1, 1, False, concurrency_processes=3, concurrency_findings=4)
    with RecordingServer() as hook, MotoServer() as moto:
        bench = run.Bench(tmp_path / "cache", tmp_path, None, moto.url, hook.url)
        result = run.measure_concurrency(bench, plan, moto, hook)

    assert result["processes"] == 3
    assert result["events"] == 4 * run.EVENTS_PER_FINDING
    assert result["deliveries"] == result["events"] * run.DELIVERIES_PER_EVENT
    assert result["alerts_sent"] == 4  # one per finding, whichever process won its claim
    assert result["duplicates"] == 0
