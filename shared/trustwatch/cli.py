"""`trustwatch` command line (Contract 4)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from trustwatch.baseline import Baseline, BaselineError, load_baseline
from trustwatch.changes import EventError
from trustwatch.findings import Finding, Severity
from trustwatch.intake import Parsed, parse_document, read_documents, read_path
from trustwatch.respond import RecordEvaluator, RecordOutcome

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2
EXIT_ALERT_FAILED = 3  # findings that no sink accepted: never a silent 0 or 1
SEVERITIES = [s.value for s in Severity]


@dataclass
class ReplayResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_evaluated: list[str] = field(default_factory=list)
    records: int = 0
    skipped: int = 0


def _documents(paths: Sequence[str]) -> Iterator[tuple[str, object]]:
    for path in paths:
        if path == "-":
            yield from read_documents(sys.stdin.read(), "<stdin>")
        else:
            yield from read_path(path)


def replay(
    paths: Sequence[str],
    baseline: Baseline,
    *,
    keep_going: bool = False,
    on_error: TextIO | None = None,
) -> ReplayResult:
    """Read recorded events and evaluate them; stops at the first bad record unless
    keep_going (what was found before it is still returned)."""
    result = ReplayResult()
    evaluator = RecordEvaluator(baseline)
    for parsed in _parsed(paths):
        if parsed.error is None and parsed.skipped is not None:
            # noise, most of a trail: counted as its outcome would be, without building it
            result.records += 1
            result.skipped += 1 if parsed.skipped.reason else 0
            continue
        for record in evaluator.outcomes(parsed):
            _tally(result, record, on_error)
            if record.errors and not keep_going:
                return result
    return result


def _tally(result: ReplayResult, record: RecordOutcome, on_error: TextIO | None) -> None:
    result.records += 1
    result.findings.extend(record.findings)
    if record.skipped:
        result.skipped += 1
    if record.not_evaluated:
        result.not_evaluated.append(record.not_evaluated)
        if on_error is not None:
            print(f"trustwatch: {record.not_evaluated}", file=on_error)
    for message in record.errors:
        result.errors.append(message)
        if on_error is not None:
            print(f"trustwatch: error: {message}", file=on_error)


def _parsed(paths: Sequence[str]) -> Iterator[Parsed]:
    for path in paths:
        try:
            for where, doc in _documents([path]):
                yield from parse_document(doc, where)
        except EventError as exc:
            yield Parsed(str(path), [], error=exc)


def print_findings(findings: Iterable[Finding], fmt: str, out: TextIO) -> None:
    findings = list(findings)
    if fmt == "jsonl":
        for finding in findings:
            out.write(finding.to_json() + "\n")
        return
    from trustwatch.table import render_table

    render_table(findings, out)


def _replay_command(args: argparse.Namespace) -> int:
    try:
        baseline = load_baseline(args.baseline)
    except BaselineError as exc:
        print(f"trustwatch: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = replay(args.paths, baseline, keep_going=args.keep_going, on_error=sys.stderr)
    print_findings(result.findings, args.format, sys.stdout)
    if args.alert and result.findings:
        code = _send_alerts(result.findings, args.routing)
        if code != EXIT_OK:
            return code
    if result.errors:
        return EXIT_BAD_INPUT
    worst = [f for f in result.findings if f.severity.at_least(args.fail_on)]
    return EXIT_FINDINGS if worst else EXIT_OK


def _send_alerts(findings: list[Finding], routing: str | None) -> int:
    """Send through the sinks the environment (and optional routing file) configure."""
    from trustwatch.alerts import AlertConfigError, AlertDeliveryError, Dispatcher
    from trustwatch.dedup import SqliteDedupStore

    try:
        store = SqliteDedupStore(_state_path())
        dispatcher = Dispatcher.from_env(routing_file=routing, store=store)
    except (AlertConfigError, OSError) as exc:
        print(f"trustwatch: alert configuration: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not dispatcher.sinks:
        print(
            "trustwatch: --alert: no sink configured (set TRUSTWATCH_SLACK_WEBHOOK_URL, "
            "TRUSTWATCH_SMTP_URL, … or --routing FILE)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        report = dispatcher.send(findings)
    except AlertDeliveryError as exc:
        print(f"trustwatch: alert delivery failed: {exc}", file=sys.stderr)
        return EXIT_ALERT_FAILED
    print(f"trustwatch: alerts: {report.summary()}", file=sys.stderr)
    return EXIT_OK


def _state_path() -> str:
    """The CLI's dedup store: TRUSTWATCH_STATE_DB or ~/.cache/trustwatch/dedup.sqlite."""
    import os
    from pathlib import Path

    path = os.environ.get("TRUSTWATCH_STATE_DB")
    if path:
        return path
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trustwatch"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "dedup.sqlite")


def _validate_command(args: argparse.Namespace) -> int:
    try:
        baseline = load_baseline(args.file)
    except BaselineError as exc:
        print(f"trustwatch: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from trustwatch import clouds

    counts = ", ".join(c.describe_baseline(baseline.section(c.name)) for c in clouds.registered())
    print(f"{args.file}: valid baseline ({counts})")
    return EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    from trustwatch.demo import run_demo

    return run_demo(sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustwatch",
        description="Drift responder for the cloud identities Databricks uses.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="evaluate recorded audit events against a baseline")
    rp.add_argument("--baseline", required=True, help="baseline YAML file")
    rp.add_argument("--format", choices=["jsonl", "table"], default="jsonl")
    rp.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        default="medium",
        help="exit 1 when a finding is at or above this severity (default: medium)",
    )
    rp.add_argument(
        "--keep-going",
        action="store_true",
        help="report bad records and continue (exit is still 2 if any was bad)",
    )
    rp.add_argument(
        "--alert",
        action="store_true",
        help="send findings through the sinks configured by TRUSTWATCH_* variables",
    )
    rp.add_argument("--routing", metavar="FILE", help="alert routing file (with --alert)")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="event files ('-' for stdin)")
    rp.set_defaults(func=_replay_command)

    bp = sub.add_parser("baseline", help="baseline file commands")
    bsub = bp.add_subparsers(dest="baseline_command", required=True)
    vp = bsub.add_parser("validate", help="check a baseline file")
    vp.add_argument("file")
    vp.set_defaults(func=_validate_command)

    dp = sub.add_parser("demo", help="the whole loop on bundled example events")
    dp.set_defaults(func=_demo_command)

    from trustwatch.package import add_package_command

    add_package_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
