"""Benchmark workers: each measurement runs here, in its own fresh interpreter.

    python benchmarks/workers.py MODE TOOL --out RESULT.json [options]

run.py starts these (trustwatch ones with the dev interpreter, Cloud Custodian ones with
the interpreter of the c7n venv) and reads RESULT.json. Only the standard library is
imported before a cold measurement starts, so both tools pay for their own imports.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the checkout's own trustwatch, not an installed copy (run.py strips PYTHONPATH)
sys.path.insert(0, str(ROOT / "shared"))
Handler = Callable[[dict[str, Any]], Any]


class LambdaContext:
    """The attributes Lambda's context object has that either entry point may read."""

    function_name = "benchmark"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:benchmark"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/benchmark"
    log_stream_name = "benchmark"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _simulate_lambda_logging() -> None:
    # The Lambda Python runtime puts a handler on the root logger before importing the
    # function; c7n logs through it (it sets the root level to DEBUG itself).
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))


def load_handler(tool: str, c7n_dir: str | None) -> tuple[Handler, Callable[[Any], bool]]:
    """Import the tool's Lambda entry point: (handle(event), did-it-detect-the-drift)."""
    context = LambdaContext()
    if tool == "trustwatch":
        # the function as `trustwatch package` lays it out (run.py: function_folder)
        sys.path.insert(0, os.environ.get("BENCH_FUNCTION_DIR", str(ROOT / "functions" / "aws")))
        from handler import lambda_handler  # type: ignore[import-not-found]

        def detected(result: Any) -> bool:
            return bool(result.get("sent")) and not result.get("errors")

        return (lambda event: lambda_handler(event, context)), detected
    assert c7n_dir is not None
    from c7n.handler import dispatch_event  # type: ignore[import-not-found]

    resources = Path("/tmp") / "iam-role-trust" / "resources.json"  # c7n's fixed output dir

    def c7n_detected(result: Any) -> bool:
        # dispatch_event returns True once the policy ran; a match writes resources.json
        return result is True and resources.is_file() and resources.stat().st_mtime >= START_WALL

    return (lambda event: dispatch_event(event, context)), c7n_detected


START_WALL = time.time()


def _rss_mb() -> dict[str, float]:
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a worker
    # would report its (larger) parent's peak
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    }


def cold(args: argparse.Namespace) -> dict[str, Any]:
    event = json.loads(Path(args.event).read_text())
    if args.c7n_dir:
        os.chdir(args.c7n_dir)  # c7n's handler reads ./config.json, as in its Lambda bundle
    start, start_cpu = time.perf_counter(), time.process_time()
    handle, detected = load_handler(args.tool, args.c7n_dir)
    imported = time.perf_counter()
    result = handle(event)
    done, done_cpu = time.perf_counter(), time.process_time()
    return {
        "cold_ms": (done - start) * 1000,
        # this process's CPU time: what a loaded machine's wait for a core does not inflate
        # (c7n's moto calls are served by the harness, so its side is, if anything, flattered)
        "cold_cpu_ms": (done_cpu - start_cpu) * 1000,
        "import_ms": (imported - start) * 1000,
        "first_event_ms": (done - imported) * 1000,
        "detected": detected(result),
        **_rss_mb(),
    }


def warm(args: argparse.Namespace) -> dict[str, Any]:
    event = json.loads(Path(args.event).read_text())
    if args.c7n_dir:
        os.chdir(args.c7n_dir)
    handle, detected = load_handler(args.tool, args.c7n_dir)
    first = handle(copy.deepcopy(event))
    times = []
    for _ in range(args.count):
        fresh = copy.deepcopy(event)  # c7n writes into the event; give both a fresh one
        start = time.perf_counter()
        handle(fresh)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "events": args.count,
        "median_ms": times[len(times) // 2],
        "p90_ms": times[int(len(times) * 0.9)],
        "mean_ms": sum(times) / len(times),
        "detected": detected(first),
        **_rss_mb(),
    }


def rss(args: argparse.Namespace) -> dict[str, Any]:
    """The AWS handler over N drift events, each a distinct finding (dedup never helps)."""
    event = json.loads(Path(args.event).read_text())
    handle, detected = load_handler("trustwatch", None)
    document = event["detail"]["requestParameters"]["policyDocument"]
    after_first = None
    start = time.perf_counter()
    for index in range(args.count):
        fresh = copy.deepcopy(event)
        fresh["detail"]["eventID"] = f"rss-{index:08d}"
        attacker = f"{900000000000 + index:012d}"
        fresh["detail"]["requestParameters"]["policyDocument"] = document.replace(
            "193672423079", attacker
        )
        result = handle(fresh)
        if after_first is None:
            after_first = _rss_mb()["rss_mb"]
            if not detected(result):
                raise SystemExit(f"the drift event was not detected: {result}")
    elapsed = time.perf_counter() - start
    return {
        "events": args.count,
        "events_per_s": args.count / elapsed,
        "rss_after_first_mb": after_first,
        **_rss_mb(),
    }


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    """One of N concurrent Lambda instances: the AWS handler over the events of --events.

    The environment names the shared state table (TRUSTWATCH_STATE_TABLE, on moto through
    AWS_ENDPOINT_URL) and the webhook. After importing the handler the worker writes
    --ready and waits for --go, so all N start handling together. An invocation that
    powertools refuses because another instance is handling the same event right now
    (IdempotencyAlreadyInProgressError) is what Lambda would retry: the worker retries it
    after a short pause, at most --retries times.
    """
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
    )

    events = json.loads(Path(args.events).read_text())
    handle, _ = load_handler("trustwatch", None)
    Path(args.ready).write_text("ready")
    go = Path(args.go)
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 120 s")
        time.sleep(0.005)
    started = time.time()
    invocations = in_progress = errors = 0
    for event in events:
        for _ in range(args.retries + 1):
            invocations += 1
            try:
                result = handle(copy.deepcopy(event))
            except IdempotencyAlreadyInProgressError:
                in_progress += 1
                time.sleep(0.05)
                continue
            errors += len(result.get("errors") or [])
            break
        else:
            raise SystemExit(f"event {event['detail']['eventID']} still in progress elsewhere")
    return {
        "events": len(events),
        "invocations": invocations,
        "in_progress_retries": in_progress,
        "errors": errors,
        "started": started,
        "finished": time.time(),
    }


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Records per second over the JSON Lines stream: trustwatch's replay path or a bare parse."""
    path = Path(args.stream)
    start = time.perf_counter()
    if args.tool == "trustwatch":
        from trustwatch.baseline import load_baseline
        from trustwatch.cli import replay as replay_paths

        baseline = load_baseline(args.baseline)
        start = time.perf_counter()  # the baseline is read once per run, not per record
        result = replay_paths([str(path)], baseline)
        records, extra = (
            result.records,
            {
                "findings": len(result.findings),
                "skipped": result.skips,
                "errors": len(result.errors),
                "not_evaluated": len(result.not_evaluated),
            },
        )
    elif args.tool == "orjson":
        import orjson

        start = time.perf_counter()
        records = 0
        with path.open("rb") as f:
            for line in f:
                orjson.loads(line)
                records += 1
        extra = {}
    else:
        records = 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                json.loads(line)
                records += 1
        extra = {}
    elapsed = time.perf_counter() - start
    return {
        "records": records,
        "seconds": elapsed,
        "records_per_s": records / elapsed,
        **extra,
        **_rss_mb(),
    }


def replay_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a `trustwatch replay` process over a freshly generated JSON Lines stream
    of --count records (in --work-dir, deleted after). This worker is a small, fresh
    interpreter: the replay process, its child, inherits no large peak from it (Linux
    keeps ru_maxrss across fork and execve); os.wait4 reads the child's own rusage."""
    import subprocess

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from stream import generate

    path = Path(args.work_dir) / f"replay-rss-{args.count}.jsonl"
    mix = generate(path, args.count)
    size = path.stat().st_size
    try:
        argv = [sys.executable, "-m", "trustwatch", "replay", "--baseline", args.baseline]
        argv += ["--format", "jsonl", str(path)]
        start = time.perf_counter()
        with open(os.devnull, "wb") as sink, Path(args.out + ".stdout").open("wb") as out:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "shared")}
            proc = subprocess.Popen(argv, stdout=out, stderr=sink, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        findings = len(Path(args.out + ".stdout").read_bytes().splitlines())
    finally:
        path.unlink(missing_ok=True)
    if code not in (0, 1):
        raise SystemExit(f"trustwatch replay exited {code}")
    return {
        "records": args.count,
        "bytes": size,
        "mix": mix,
        "exit_code": code,
        "findings": findings,
        "seconds": elapsed,
        "records_per_s": args.count / elapsed,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
    }


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Where trustwatch's replay spends its time: the top functions by own time."""
    import cProfile
    import pstats

    from trustwatch.baseline import load_baseline
    from trustwatch.cli import replay as replay_paths

    baseline = load_baseline(args.baseline)
    profiler = cProfile.Profile()
    profiler.enable()
    replay_paths([args.stream], baseline)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": calls,
                "own_s": own,
                "cumulative_s": cumulative,
            }
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return {
        "total_s": total,
        "top_own": rows[: args.top],
        "top_cumulative": sorted(rows, key=lambda r: r["cumulative_s"], reverse=True)[: args.top],
    }


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """One AWS state read of the stand-in account (--iam-url) and its evaluation."""
    os.environ["AWS_ENDPOINT_URL_IAM"] = args.iam_url
    from trustwatch import engine
    from trustwatch.aws import state
    from trustwatch.baseline import load_baseline

    baseline = load_baseline(args.baseline)
    start = time.perf_counter()
    read = state.read(args.account, baseline, os.environ)
    findings = [f for change in read.changes for f in engine.evaluate(change, baseline)]
    elapsed = time.perf_counter() - start
    rules: dict[str, int] = {}
    for finding in findings:
        rules[finding.rule] = rules.get(finding.rule, 0) + 1
    return {
        "seconds": elapsed,
        "calls": read.calls,
        "changes": len(read.changes),
        "findings": rules,
        "errors": read.errors,
        **_rss_mb(),
    }


MODES = {
    "cold": cold,
    "concurrent": concurrent,
    "warm": warm,
    "rss": rss,
    "replay": replay,
    "replay_rss": replay_rss,
    "profile": profile,
    "sweep": sweep,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("tool", choices=["trustwatch", "c7n", "json", "orjson"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--event")
    parser.add_argument("--c7n-dir", help="folder holding c7n's config.json")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--stream")
    parser.add_argument("--baseline", default=str(ROOT / "examples" / "baseline.yaml"))
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--events", help="concurrent: a JSON list of events to handle")
    parser.add_argument("--ready", help="concurrent: written once the handler is imported")
    parser.add_argument("--go", help="concurrent: start handling once this file exists")
    parser.add_argument("--retries", type=int, default=40)
    parser.add_argument("--work-dir", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--iam-url", help="sweep: the IAM stand-in")
    parser.add_argument("--account", default="111122223333", help="sweep: the account read")
    args = parser.parse_args()
    _simulate_lambda_logging()
    result = MODES[args.mode](args)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
