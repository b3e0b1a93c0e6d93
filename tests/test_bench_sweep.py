"""The benchmark's sweep row at a small size: the stand-in account served in pages of
varying size, read by the AWS state part in a fresh worker interpreter, found and counted.

Behaviour only, no timing: the read makes the calls the paging stand-in answered (fewer
than one per 50 roles), reads every role (the drift planted in one role in a hundred is
found in each), and the row's figures are derived from that run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow  # a fresh worker interpreter compiles its imports: some 10 s
def test_sweep_row_reads_every_role_in_few_calls(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run
    finally:
        sys.path.remove(str(BENCHMARKS))

    plan = run.Plan(1, 1, {}, 1, 1, 1, False, 1, 1, sweep_roles=1_200, sweep_runs=1)
    (tmp_path / "cache").mkdir()
    bench = run.Bench(
        tmp_path / "cache", tmp_path, None, "http://127.0.0.1:9", "http://127.0.0.1:9"
    )
    result = run.measure_sweep(bench, plan)
    # 1,200 roles + 502 policies in pages of 1000 and 713 (short, and truncated all the same)
    assert result["calls"] == 2
    assert result["calls_per_role"] < 1 / 50
    assert result["findings"] == {"aws.role.untracked_trusts_databricks": 12}
    assert result["roles_per_s"] == 1_200 / result["seconds"]
    assert result["c7n_calls_per_role"] > 3
