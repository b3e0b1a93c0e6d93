"""trustwatch benchmarks, side by side with Cloud Custodian and with bare JSON parsing.

    python benchmarks/run.py [--quick] [--json FILE]

Prints one table (medians over several runs, and the ratios) and writes the figures as
JSON (default .benchmarks/results.json). benchmarks/README.md says how to read them.
Every measurement runs in a fresh interpreter (benchmarks/workers.py); moto and a
recording webhook receiver run in this process, on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

sys.path.insert(0, str(ROOT / "shared"))  # the checkout's trustwatch packages the function

from local import DUMMY_AWS, MotoServer, RecordingServer, c7n_python  # noqa: E402
from stream import cached_stream  # noqa: E402
from trustwatch.package import baseline_files  # noqa: E402

WORKERS = HERE / "workers.py"
DRIFT_EVENT = ROOT / "examples" / "events" / "aws-trust-backdoor.eventbridge.json"
# the same call on the same role, re-applying the baseline's trust: no finding, no alert
BENIGN_RECORD = ROOT / "examples" / "events" / "aws-terraform-reapply-benign.json"
BASELINE = ROOT / "examples" / "baseline.yaml"
C7N_POLICY = {
    "policies": [
        {
            "name": "iam-role-trust",
            "resource": "iam-role",
            "mode": {
                "type": "cloudtrail",
                "events": [
                    {
                        "source": "iam.amazonaws.com",
                        "event": "UpdateAssumeRolePolicy",
                        "ids": "requestParameters.roleName",
                    }
                ],
            },
            "filters": [{"type": "cross-account"}],
        }
    ]
}
# the team's goals (issue #6), not assertions: the table says whether each is met
GOALS = {
    "cold_ratio_vs_c7n": ("<=", 0.25),
    "warm_ms_per_event": ("<=", 1.0),
    "warm_ratio_vs_c7n": ("<=", 0.04),  # issue #14
    "replay_ratio_vs_orjson": (">=", 0.5),
    "peak_rss_mb": ("<=", 128.0),
    "replay_peak_rss_mb": ("<=", 256.0),
    "concurrency_duplicates": ("<=", 0),
    "sweep_calls_per_role": ("<", 1 / 50),  # issue #13: under 1 API call per 50 roles
}
# the replay RSS row: a stream this long, whatever the run (issue #14: a trail's size)
REPLAY_RSS_RECORDS = 1_000_000


@dataclass(frozen=True)
class Plan:
    cold_runs: int
    warm_runs: int
    warm_events: dict[str, int]
    replay_records: int
    replay_runs: int
    rss_events: int
    profile: bool
    concurrency_processes: int
    concurrency_findings: int
    sweep_roles: int = 10_000
    sweep_runs: int = 1


FULL = Plan(
    7, 3, {"trustwatch": 1000, "c7n": 200}, 1_000_000, 3, 10_000, True, 16, 64, sweep_runs=3
)
QUICK = Plan(3, 2, {"trustwatch": 300, "c7n": 40}, 100_000, 2, 10_000, False, 8, 24)
# the concurrency row: each finding is made by this many CloudTrail events (distinct
# eventIDs: the same change seen twice), each event delivered to this many instances
EVENTS_PER_FINDING = 2
DELIVERIES_PER_EVENT = 3
CONCURRENCY_TIMEOUT_S = 120


class Bench:
    """Starts workers with the right interpreter and environment and collects their JSON."""

    def __init__(self, cache: Path, work: Path, c7n: str | None, moto_url: str, hook: str):
        self.cache, self.work, self.c7n, self.count = cache, work, c7n, 0
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRUSTWATCH_", "AWS_", "POWERTOOLS_", "C7N_", "PYTHON"))
        }
        # both tools run with cached bytecode (kept in the cache folder): a cold start
        # measures imports and first-event work, not compiling sources
        base.update(DUMMY_AWS, PYTHONPYCACHEPREFIX=str(cache / "pycache"))
        self.function_dir = function_folder(work)
        self.env = {
            "trustwatch": {
                **base,
                # the deployed shape: the bundled baseline.yaml and its compiled form
                "BENCH_FUNCTION_DIR": str(self.function_dir),
                "TRUSTWATCH_WEBHOOK_URL": hook,
                "TRUSTWATCH_WEBHOOK_SECRET": "benchmark-secret",
                "TRUSTWATCH_DEDUP_WINDOW": "0",  # every event alerts: delivery is measured
                # like for like with the c7n policy, which has no action: detect and alert,
                # plan no remediation (so no state read, no boto3)
                "TRUSTWATCH_REMEDIATION": "off",
            },
            "c7n": {**base, "AWS_ENDPOINT_URL": moto_url},
        }
        # the cold row's variant: a raw YAML baseline given at run time, validated lazily
        self.env["trustwatch_yaml"] = {
            **self.env["trustwatch"],
            "TRUSTWATCH_BASELINE": str(BASELINE),
        }
        # the deployed default, a dry run: each finding's plan re-reads the role (STS
        # GetCallerIdentity once, IAM GetRole per finding) from moto, as c7n reads it
        self.env["trustwatch_plan"] = {
            **self.env["trustwatch"],
            "TRUSTWATCH_REMEDIATION": "dry-run",
            "AWS_ENDPOINT_URL": moto_url,
        }
        envelope = json.loads(DRIFT_EVENT.read_text())
        envelope["detail"] = json.loads(BENIGN_RECORD.read_text())
        self.benign_event = work / "benign.eventbridge.json"
        self.benign_event.write_text(json.dumps(envelope))
        self.c7n_dir = work / "c7n"
        self.c7n_dir.mkdir()
        (self.c7n_dir / "config.json").write_text(json.dumps(C7N_POLICY))

    def run(
        self, mode: str, tool: str, *args: str, timeout: float = 3600, env_name: str | None = None
    ) -> dict[str, Any]:
        self.count += 1
        out = self.work / f"{self.count:04d}-{mode}-{tool}.json"
        log = out.with_suffix(".log")
        python = self.c7n if tool == "c7n" else sys.executable
        assert python is not None
        argv = [python, str(WORKERS), mode, tool, "--out", str(out), *args]
        if tool == "c7n":
            argv += ["--c7n-dir", str(self.c7n_dir)]
        env = self.env[env_name or ("c7n" if tool == "c7n" else "trustwatch")]
        started = time.perf_counter()
        with log.open("wb") as err:
            proc = subprocess.run(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout, cwd=ROOT
            )
        wall = (time.perf_counter() - started) * 1000
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {mode} {tool} failed ({proc.returncode}):\n{tail}")
        result = json.loads(out.read_text())
        result["process_ms"] = wall
        return result


def function_folder(work: Path) -> Path:
    """The AWS function as `trustwatch package aws` bundles it (without the vendored
    wheels: the dev environment has them): handler.py beside baseline.yaml and
    baseline.compiled.json."""
    folder = work / "function-aws"
    folder.mkdir()
    shutil.copyfile(ROOT / "functions" / "aws" / "handler.py", folder / "handler.py")
    for name, data in baseline_files(BASELINE).items():
        (folder / name).write_bytes(data)
    return folder


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure_cold(bench: Bench, plan: Plan, tools: list[str], hook: RecordingServer) -> dict:
    event = ["--event", str(DRIFT_EVENT)]
    # "trustwatch_yaml": the same function given the raw YAML (TRUSTWATCH_BASELINE);
    # "trustwatch_plan": in the default dry run, planning the remediation (AWS reads)
    sides = [*tools, "trustwatch_yaml", "trustwatch_plan"]
    for side in sides:  # unmeasured: fills the bytecode and OS file caches
        bench.run("cold", side.split("_")[0], *event, env_name=side)
    runs: dict[str, list[dict]] = {t: [] for t in sides}
    for index in range(plan.cold_runs):
        order = sides if index % 2 == 0 else sides[::-1]  # interleaved: noise hits all
        for side in order:
            posts = hook.posts
            hook.keep_bodies()
            result = bench.run("cold", side.split("_")[0], *event, env_name=side)
            bodies = hook.kept_bodies()
            if side.startswith("trustwatch") and hook.posts == posts:
                raise RuntimeError("trustwatch's cold run delivered no alert")
            _check_remediation(side, bodies)
            runs[side].append(result)
    return {
        tool: {
            "cold_ms": median([r["cold_ms"] for r in rs]),
            "cold_cpu_ms": median([r["cold_cpu_ms"] for r in rs]),
            "import_ms": median([r["import_ms"] for r in rs]),
            "first_event_ms": median([r["first_event_ms"] for r in rs]),
            "process_ms": median([r["process_ms"] for r in rs]),
            "detected": all(r["detected"] for r in rs),
            "runs_ms": [round(r["cold_ms"], 2) for r in rs],
        }
        for tool, rs in runs.items()
    }


def _check_remediation(side: str, bodies: list[bytes]) -> None:
    """Each trustwatch side did what its setting says: a plan made from the state read
    (dry run), or none at all (off); a failed read would make the rows compare nothing."""
    for body in bodies:
        remediation = json.loads(body).get("remediation", {})
        if side == "trustwatch_plan":
            if remediation.get("status") != "planned" or not remediation.get("target"):
                raise RuntimeError(f"the dry run planned nothing: {remediation}")
        elif side.startswith("trustwatch") and remediation.get("target"):
            raise RuntimeError(f"{side} planned a remediation with it off: {remediation}")


def measure_warm(bench: Bench, plan: Plan, tools: list[str], hook: RecordingServer) -> dict:
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for index in range(plan.warm_runs):
        for tool in tools if index % 2 == 0 else tools[::-1]:
            count = str(plan.warm_events[tool])
            runs[tool].append(
                bench.run("warm", tool, "--event", str(DRIFT_EVENT), "--count", count)
            )
    # trustwatch alone on an event that gives no finding: evaluation without delivery
    count = str(plan.warm_events["trustwatch"])
    runs["trustwatch_no_finding"] = [
        bench.run("warm", "trustwatch", "--event", str(bench.benign_event), "--count", count)
        for _ in range(plan.warm_runs)
    ]
    if any(r["detected"] for r in runs["trustwatch_no_finding"]):
        raise RuntimeError("the no-finding event alerted")
    # the default dry run: every finding's plan reads the role from moto
    hook.keep_bodies()
    runs["trustwatch_plan"] = [
        bench.run(
            "warm",
            "trustwatch",
            "--event",
            str(DRIFT_EVENT),
            "--count",
            count,
            env_name="trustwatch_plan",
        )
        for _ in range(plan.warm_runs)
    ]
    _check_remediation("trustwatch_plan", hook.kept_bodies())
    return {
        tool: {
            "ms_per_event": median([r["median_ms"] for r in rs]),
            "p90_ms": median([r["p90_ms"] for r in rs]),
            "events_per_run": plan.warm_events[tool.split("_", 1)[0]],
            "detected": all(r["detected"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "run_medians_ms": [round(r["median_ms"], 3) for r in rs],
        }
        for tool, rs in runs.items()
    }


def measure_replay(bench: Bench, plan: Plan) -> dict:
    path, mix = cached_stream(bench.cache, plan.replay_records)
    runs: dict[str, list[dict]] = {"trustwatch": [], "json": [], "orjson": []}
    for _ in range(plan.replay_runs):
        for tool in runs:
            runs[tool].append(bench.run("replay", tool, "--stream", str(path)))
    tw = runs["trustwatch"][0]
    if tw["records"] != plan.replay_records or tw["errors"]:
        raise RuntimeError(f"trustwatch replay read {tw['records']} records, {tw['errors']} errors")
    out: dict[str, Any] = {
        tool: {
            "records_per_s": median([r["records_per_s"] for r in rs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "runs_records_per_s": [round(r["records_per_s"]) for r in rs],
        }
        for tool, rs in runs.items()
    }
    out["trustwatch"].update(
        findings=tw["findings"], skipped=tw["skipped"], not_evaluated=tw["not_evaluated"]
    )
    out["stream"] = {
        "path": str(path),
        "records": plan.replay_records,
        "mix": mix,
        "bytes": path.stat().st_size,
    }
    return out


def measure_replay_rss(bench: Bench, records: int) -> dict:
    """Peak RSS of `trustwatch replay` over a generated stream of `records` records."""
    result = bench.run(
        "replay_rss", "trustwatch", "--count", str(records), "--work-dir", str(bench.work)
    )
    result.pop("process_ms", None)
    return result


def concurrency_events(findings: int) -> list[dict[str, Any]]:
    """`findings` distinct drifts (an outside account each), each in EVENTS_PER_FINDING events."""
    event = json.loads(DRIFT_EVENT.read_text())
    document = event["detail"]["requestParameters"]["policyDocument"]
    events = []
    for finding in range(findings):
        attacker = f"{800000000000 + finding:012d}"
        for copy_index in range(EVENTS_PER_FINDING):
            fresh = json.loads(json.dumps(event))
            fresh["id"] = f"conc-{finding:05d}-{copy_index}"
            fresh["detail"]["eventID"] = f"conc-{finding:05d}-{copy_index}"
            fresh["detail"]["requestParameters"]["policyDocument"] = document.replace(
                "193672423079", attacker
            )
            events.append(fresh)
    return events


def measure_concurrency(
    bench: Bench, plan: Plan, moto: MotoServer, hook: RecordingServer
) -> dict[str, Any]:
    """N handler processes, one state table: every finding alerted exactly once.

    Each event goes to DELIVERIES_PER_EVENT of the N processes (as redeliveries and
    concurrent instances do), every process walks its events in the same order, so the
    same event is often in flight in several processes at once.
    """
    processes, findings = plan.concurrency_processes, plan.concurrency_findings
    moto.serialise()  # conditional writes atomic, as in DynamoDB (see MotoServer.serialise)
    table = moto.create_state_table(f"trustwatch-bench-state-{os.getpid()}")
    events = concurrency_events(findings)
    shares: list[list[dict[str, Any]]] = [[] for _ in range(processes)]
    for index, event in enumerate(events):
        for k in range(DELIVERIES_PER_EVENT):
            shares[(index + k) % processes].append(event)
    env = {
        **bench.env["trustwatch"],
        "TRUSTWATCH_STATE_TABLE": table,
        "AWS_ENDPOINT_URL": moto.url,
        "TRUSTWATCH_DEDUP_WINDOW": "3600",  # the deployed default: one alert per finding
    }
    work = bench.work / "concurrency"
    work.mkdir()
    go = work / "go"
    hook.keep_bodies()
    procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    try:
        for index, share in enumerate(shares):
            events_file = work / f"events-{index:02d}.json"
            events_file.write_text(json.dumps(share))
            out, ready = work / f"result-{index:02d}.json", work / f"ready-{index:02d}"
            argv = [sys.executable, str(WORKERS), "concurrent", "trustwatch", "--out", str(out)]
            argv += ["--events", str(events_file), "--ready", str(ready), "--go", str(go)]
            with (work / f"worker-{index:02d}.log").open("wb") as log:
                proc = subprocess.Popen(
                    argv, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT
                )
            procs.append((proc, out, ready))
        deadline = time.monotonic() + CONCURRENCY_TIMEOUT_S
        while not all(ready.exists() for _, _, ready in procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in procs):
                raise RuntimeError("a concurrency worker did not get ready")
            time.sleep(0.01)
        go.write_text("go")
        for proc, _, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    bodies = hook.kept_bodies()
    failed = [i for i, (proc, _, _) in enumerate(procs) if proc.returncode != 0]
    if failed:
        tail = (work / f"worker-{failed[0]:02d}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"concurrency workers {failed} failed:\n{tail}")
    results = [json.loads(out.read_text()) for _, out, _ in procs]
    ids = [json.loads(body)["id"] for body in bodies]
    distinct = len(set(ids))
    seconds = max(r["finished"] for r in results) - min(r["started"] for r in results)
    invocations = sum(r["invocations"] for r in results)
    if distinct != findings:
        raise RuntimeError(f"{findings} findings, but alerts for {distinct} distinct ones")
    if any(r["errors"] for r in results):
        raise RuntimeError("a concurrency worker reported unprocessable events")
    return {
        "processes": processes,
        "events": len(events),
        "deliveries_per_event": DELIVERIES_PER_EVENT,
        "deliveries": sum(r["events"] for r in results),
        "invocations": invocations,
        "in_progress_retries": sum(r["in_progress_retries"] for r in results),
        "findings": findings,
        "alerts_sent": len(ids),
        "distinct_alerted": distinct,
        "duplicates": len(ids) - distinct,
        "seconds": seconds,
        "events_per_s": sum(r["events"] for r in results) / seconds,  # deliveries handled
        "state_table": table,
    }


def measure_sweep(bench: Bench, plan: Plan) -> dict:
    """The AWS state read of a stand-in account of plan.sweep_roles roles, evaluated."""
    import sweep_account

    server, expected = sweep_account.serve(plan.sweep_roles)
    runs = []
    with server:
        for _ in range(plan.sweep_runs):
            before = server.calls
            run = bench.run("sweep", "trustwatch", "--iam-url", server.url)
            if run["errors"] or run["calls"] != server.calls - before:
                raise RuntimeError(f"sweep worker: {run['errors']} ({run['calls']} calls)")
            if run["findings"].get("aws.role.untracked_trusts_databricks") != expected:
                raise RuntimeError(f"sweep worker missed the drift: {run['findings']}")
            runs.append(run)
    seconds = median([r["seconds"] for r in runs])
    calls = runs[0]["calls"]
    return {
        "roles": plan.sweep_roles,
        "runs": runs,
        "seconds": seconds,
        "calls": calls,
        "roles_per_s": plan.sweep_roles / seconds,
        "calls_per_role": calls / plan.sweep_roles,
        "c7n_calls_per_role": sweep_account.C7N_CALLS_PER_ROLE,
        "findings": runs[0]["findings"],
    }


def measure_profile(bench: Bench) -> dict:
    path, _ = cached_stream(bench.cache, QUICK.replay_records)
    return bench.run("profile", "trustwatch", "--stream", str(path), "--top", "15")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarize(
    cold: dict,
    warm: dict,
    replay: dict,
    rss: dict,
    replay_rss: dict,
    concurrency: dict,
    sweep: dict,
) -> dict[str, Any]:
    c7n_cold = cold.get("c7n", {}).get("cold_ms")
    c7n_cold_cpu = cold.get("c7n", {}).get("cold_cpu_ms")
    c7n_warm = warm.get("c7n", {}).get("ms_per_event")
    summary = {
        "cold_ms": cold["trustwatch"]["cold_ms"],
        "c7n_cold_ms": c7n_cold,
        "cold_ratio_vs_c7n": _ratio(cold["trustwatch"]["cold_ms"], c7n_cold),
        "cold_cpu_ms": cold["trustwatch"]["cold_cpu_ms"],
        "c7n_cold_cpu_ms": c7n_cold_cpu,
        "cold_cpu_ratio_vs_c7n": _ratio(cold["trustwatch"]["cold_cpu_ms"], c7n_cold_cpu),
        "cold_yaml_ms": cold["trustwatch_yaml"]["cold_ms"],
        "cold_yaml_ratio_vs_c7n": _ratio(cold["trustwatch_yaml"]["cold_ms"], c7n_cold),
        "cold_plan_ms": cold["trustwatch_plan"]["cold_ms"],
        "cold_plan_ratio_vs_c7n": _ratio(cold["trustwatch_plan"]["cold_ms"], c7n_cold),
        "warm_ms_per_event": warm["trustwatch"]["ms_per_event"],
        "warm_no_finding_ms_per_event": warm["trustwatch_no_finding"]["ms_per_event"],
        "c7n_warm_ms_per_event": c7n_warm,
        "warm_ratio_vs_c7n": _ratio(warm["trustwatch"]["ms_per_event"], c7n_warm),
        "warm_plan_ms_per_event": warm["trustwatch_plan"]["ms_per_event"],
        "warm_plan_ratio_vs_c7n": _ratio(warm["trustwatch_plan"]["ms_per_event"], c7n_warm),
        "replay_records_per_s": replay["trustwatch"]["records_per_s"],
        "json_records_per_s": replay["json"]["records_per_s"],
        "orjson_records_per_s": replay["orjson"]["records_per_s"],
        "replay_ratio_vs_orjson": _ratio(
            replay["trustwatch"]["records_per_s"], replay["orjson"]["records_per_s"]
        ),
        "replay_ratio_vs_json": _ratio(
            replay["trustwatch"]["records_per_s"], replay["json"]["records_per_s"]
        ),
        "peak_rss_mb": rss["peak_rss_mb"],
        "rss_events": rss["events"],
        "replay_peak_rss_mb": replay_rss["peak_rss_mb"],
        "replay_rss_records": replay_rss["records"],
        "concurrency_processes": concurrency["processes"],
        "concurrency_alerts_sent": concurrency["alerts_sent"],
        "concurrency_duplicates": concurrency["duplicates"],
        "concurrency_events_per_s": concurrency["events_per_s"],
        "sweep_roles": sweep["roles"],
        "sweep_roles_per_s": sweep["roles_per_s"],
        "sweep_calls_per_role": sweep["calls_per_role"],
        "c7n_sweep_calls_per_role": sweep["c7n_calls_per_role"],
        "sweep_calls_ratio_vs_c7n": _ratio(sweep["calls_per_role"], sweep["c7n_calls_per_role"]),
    }
    summary["goals"] = {
        key: {"goal": f"{op} {limit:g}", "met": _met(summary[key], op, limit)}
        for key, (op, limit) in GOALS.items()
    }
    return summary


def _met(value: float | None, op: str, limit: float) -> bool | None:
    if value is None:
        return None
    if op == "<":
        return value < limit
    return value <= limit if op == "<=" else value >= limit


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.3f}x"
    if value >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}" if value < 10 else f"{value:.1f}{unit}"


def render_table(s: dict[str, Any], c7n_note: str) -> str:
    goal = s["goals"]

    def met(key: str) -> str:
        return {True: "yes", False: "NO", None: "-"}[goal[key]["met"]]

    rows = [
        ("measure", "trustwatch", "reference", "ratio", "goal", "met"),
        (
            "cold: import + 1st event (ms)",
            _fmt(s["cold_ms"]),
            f"c7n {_fmt(s['c7n_cold_ms'])}",
            _fmt(s["cold_ratio_vs_c7n"], "x"),
            "<= 0.25x",
            met("cold_ratio_vs_c7n"),
        ),
        (
            "  same, CPU time (ms)",
            _fmt(s["cold_cpu_ms"]),
            f"c7n {_fmt(s['c7n_cold_cpu_ms'])}",
            _fmt(s["cold_cpu_ratio_vs_c7n"], "x"),
            "",
            "",
        ),
        (
            "  raw YAML baseline (ms)",
            _fmt(s["cold_yaml_ms"]),
            "",
            _fmt(s["cold_yaml_ratio_vs_c7n"], "x"),
            "",
            "",
        ),
        (
            "  dry run, plan read (ms)",
            _fmt(s["cold_plan_ms"]),
            "",
            _fmt(s["cold_plan_ratio_vs_c7n"], "x"),
            "",
            "",
        ),
        (
            "warm: per event (ms)",
            _fmt(s["warm_ms_per_event"]),
            f"c7n {_fmt(s['c7n_warm_ms_per_event'])}",
            _fmt(s["warm_ratio_vs_c7n"], "x"),
            "<= 0.04x",
            met("warm_ratio_vs_c7n"),
        ),
        (
            "  dry run, plan read (ms)",
            _fmt(s["warm_plan_ms_per_event"]),
            "",
            _fmt(s["warm_plan_ratio_vs_c7n"], "x"),
            "",
            "",
        ),
        (
            "warm: no-finding event (ms)",
            _fmt(s["warm_no_finding_ms_per_event"]),
            "",
            "",
            "",
            "",
        ),
        (
            "replay (records/s)",
            _fmt(s["replay_records_per_s"]),
            f"orjson {_fmt(s['orjson_records_per_s'])}",
            _fmt(s["replay_ratio_vs_orjson"], "x"),
            ">= 0.5x",
            met("replay_ratio_vs_orjson"),
        ),
        (
            "",
            "",
            f"json {_fmt(s['json_records_per_s'])}",
            _fmt(s["replay_ratio_vs_json"], "x"),
            "",
            "",
        ),
        (
            f"peak RSS, {s['rss_events']:,} events (MB)",
            _fmt(s["peak_rss_mb"]),
            "",
            "",
            "<= 128 MB",
            met("peak_rss_mb"),
        ),
        (
            f"replay peak RSS, {s['replay_rss_records']:,} records (MB)",
            _fmt(s["replay_peak_rss_mb"]),
            "",
            "",
            "<= 256 MB",
            met("replay_peak_rss_mb"),
        ),
        (
            f"concurrency, {s['concurrency_processes']} processes: duplicate alerts",
            f"{s['concurrency_duplicates']}",
            f"{s['concurrency_alerts_sent']} alerts, {_fmt(s['concurrency_events_per_s'])} ev/s",
            "",
            "duplicates = 0",
            met("concurrency_duplicates"),
        ),
        (
            f"sweep, {s['sweep_roles']:,} roles: API calls/role",
            f"{s['sweep_calls_per_role']:.4f}",
            f"c7n {s['c7n_sweep_calls_per_role']:.2f} (source)",
            f"{s['sweep_calls_ratio_vs_c7n']:.4f}x",
            "< 0.02",
            met("sweep_calls_per_role"),
        ),
        (
            "sweep: roles/s (read + evaluate)",
            _fmt(s["sweep_roles_per_s"]),
            "",
            "",
            "",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if c7n_note:
        lines.append(f"c7n: {c7n_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, 100k-record stream")
    parser.add_argument("--json", metavar="FILE", help="results file (default: CACHE/results.json)")
    parser.add_argument("--cache", default=str(ROOT / ".benchmarks"), help="generated data")
    parser.add_argument("--c7n-python", help="an interpreter that imports c7n")
    parser.add_argument("--no-c7n", action="store_true", help="skip the Cloud Custodian side")
    parser.add_argument(
        "--profile", action="store_true", help="profile the replay path (default: full runs)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    c7n, c7n_note = (
        (None, "skipped (--no-c7n)") if args.no_c7n else c7n_python(cache, args.c7n_python)
    )
    c7n_version = c7n_note if c7n else None
    c7n_note = "" if c7n else c7n_note
    tools = ["trustwatch", "c7n"] if c7n else ["trustwatch"]
    drift = json.loads(DRIFT_EVENT.read_text())

    # moto answers as the drift event's account (read per request, in this process only),
    # so the dry run's plan finds the role in the account its baseline names
    os.environ["MOTO_ACCOUNT_ID"] = drift["detail"]["recipientAccountId"]
    with tempfile.TemporaryDirectory(prefix="trustwatch-bench-") as tmp, RecordingServer() as hook:
        with MotoServer() as moto:
            # c7n reads the role's current state from the API: the state after the event
            moto.create_role(
                drift["detail"]["requestParameters"]["roleName"],
                drift["detail"]["requestParameters"]["policyDocument"],
            )
            bench = Bench(cache, Path(tmp), c7n, moto.url, hook.url)
            print("benchmarks: cold path ...", file=sys.stderr)
            cold = measure_cold(bench, plan, tools, hook)
            print("benchmarks: warm path ...", file=sys.stderr)
            warm = measure_warm(bench, plan, tools, hook)
            print(
                f"benchmarks: {plan.concurrency_processes} concurrent handlers, "
                "one state table ...",
                file=sys.stderr,
            )
            concurrency = measure_concurrency(bench, plan, moto, hook)
        print(f"benchmarks: replay over {plan.replay_records:,} records ...", file=sys.stderr)
        replay = measure_replay(bench, plan)
        print(f"benchmarks: sweep of {plan.sweep_roles:,} roles ...", file=sys.stderr)
        sweep = measure_sweep(bench, plan)
        print(f"benchmarks: RSS over {plan.rss_events:,} events ...", file=sys.stderr)
        rss = bench.run(
            "rss", "trustwatch", "--event", str(DRIFT_EVENT), "--count", str(plan.rss_events)
        )
        print(f"benchmarks: replay RSS over {REPLAY_RSS_RECORDS:,} records ...", file=sys.stderr)
        replay_rss = measure_replay_rss(bench, REPLAY_RSS_RECORDS)
        summary = summarize(cold, warm, replay, rss, replay_rss, concurrency, sweep)
        profile = None
        if args.profile or (plan.profile and not summary["goals"]["replay_ratio_vs_orjson"]["met"]):
            print("benchmarks: profiling the replay path ...", file=sys.stderr)
            profile = measure_profile(bench)
        alerts_delivered = hook.posts

    result = {
        **summary,
        "quick": args.quick,
        "cold": cold,
        "warm": warm,
        "replay": replay,
        "rss": rss,
        "replay_rss": replay_rss,
        "concurrency": concurrency,
        "replay_profile": profile,
        "sweep": sweep,
        "alerts_delivered": alerts_delivered,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "c7n": c7n_version,
            "c7n_note": c7n_note or None,
            "commit": _commit(),
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    out = Path(args.json) if args.json else cache / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render_table(summary, c7n_note))
    if profile:
        print("\nreplay profile (top own time, 100k records under cProfile):")
        for row in profile["top_own"][:10]:
            print(f"  {row['own_s']:7.2f} s  {row['calls']:>9,}  {row['function']}")
    print(f"\nresults: {out}  ({result['environment']['seconds']} s)")
    return 0


def _commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return proc.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
