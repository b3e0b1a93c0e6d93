"""`trustwatch` command line (Contract 4): a thin caller of `respond.replay` (and of
`sweep.sweep`: `trustwatch sweep`, in sweep_cli.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from trustwatch.baseline import Baseline, BaselineError, load_baseline
from trustwatch.findings import Finding, Severity
from trustwatch.intake import parse_paths
from trustwatch.respond import Outcome, RecordOutcome
from trustwatch.respond import replay as replay_records

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2
EXIT_ALERT_FAILED = 3  # findings that no sink accepted: never a silent 0 or 1
EXIT_FINDINGS_AND_BAD_INPUT = 4  # neither hides the other
SEVERITIES = [s.value for s in Severity]

REPLAY_EPILOG = """Every readable record is evaluated: a bad record (unreadable file or line, malformed or
unknown record) is reported on stderr with its file, line or record index and reason,
and the records after it are still evaluated (--fail-fast stops at the first one).

exit status:
  0  no finding at or above --fail-on, and no bad input
  1  findings at or above --fail-on, no bad input
  2  bad input or usage, and no finding at or above --fail-on
  3  --alert: some finding reached no alert sink
  4  findings at or above --fail-on AND bad input
"""


def replay(
    paths: Sequence[str],
    baseline: Baseline,
    *,
    fail_fast: bool = False,
    on_error: TextIO | None = None,
) -> Outcome:
    """Read recorded events from files ('-': stdin) and evaluate every record; bad records
    are printed to `on_error` as they come."""

    def report(record: RecordOutcome) -> None:
        if on_error is None:
            return
        if record.not_evaluated:
            print(f"trustwatch: {record.not_evaluated}", file=on_error)
        for message in record.errors:
            print(f"trustwatch: error: {message}", file=on_error)

    return replay_records(
        parse_paths(paths, skip_reasons=False, baseline=baseline),
        baseline,
        fail_fast=fail_fast,
        keep_skip_reasons=False,
        on_record=report,
    )


def exit_code(outcome: Outcome, fail_on: Severity | str) -> int:
    """0/1/2/4 as the replay help says (3, alert delivery, is decided by the caller)."""
    worst = any(f.severity.at_least(Severity(fail_on)) for f in outcome.findings)
    if outcome.errors:
        return EXIT_FINDINGS_AND_BAD_INPUT if worst else EXIT_BAD_INPUT
    return EXIT_FINDINGS if worst else EXIT_OK


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
    outcome = replay(args.paths, baseline, fail_fast=args.fail_fast, on_error=sys.stderr)
    print_findings(outcome.findings, args.format, sys.stdout)
    if outcome.stopped_early:
        print("trustwatch: stopped at the first bad record (--fail-fast)", file=sys.stderr)
    code = exit_code(outcome, args.fail_on)
    if args.alert and outcome.findings:
        sent = _send_alerts(outcome.findings, args.routing)
        if sent == EXIT_BAD_INPUT:  # alert configuration: bad input, findings still count
            worst = code in (EXIT_FINDINGS, EXIT_FINDINGS_AND_BAD_INPUT)
            return EXIT_FINDINGS_AND_BAD_INPUT if worst else sent
        if sent != EXIT_OK:
            return sent
    return code


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


REMEDIATE_EPILOG = """Findings are JSON Lines as `replay` prints them. Each one's state is re-read and
its put-back planned; only identities whose baseline mode is `remediate` are changed, and
only with --apply (a change by actors.approved never is). `remediation.status` in the
output says what happened: planned (dry run), applied (read back and matching), failed
(with why), skipped (already back, approved actor, circuit open), none (mode is alert).

exit status:
  0  every remediation planned, applied or not needed
  1  some remediation failed, or a circuit opened
  2  bad input or usage
  4  both
"""


def _remediate_command(args: argparse.Namespace) -> int:
    from trustwatch import clouds
    from trustwatch.remediation import Breaker, Remediator, remediate

    try:
        baseline = load_baseline(args.baseline)
    except BaselineError as exc:
        print(f"trustwatch: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    findings, bad = _read_findings(args.findings)
    remediators: dict[str, Remediator | None] = {}

    def remediator_for(cloud: str) -> Remediator | None:
        if cloud not in remediators:
            import os

            remediators[cloud] = clouds.get(cloud).remediator(os.environ)
        return remediators[cloud]

    breaker = None
    if args.apply:
        from trustwatch.dedup import SqliteDedupStore

        breaker = Breaker(SqliteDedupStore(_state_path()))
    done = remediate(findings, baseline, remediator_for, apply=args.apply, breaker=breaker)
    print_findings(done, "jsonl", sys.stdout)
    failed = any(
        f.remediation.status == "failed" or f.rule == "trustwatch.remediation.circuit_open"
        for f in done
    )
    if bad:
        return EXIT_FINDINGS_AND_BAD_INPUT if failed else EXIT_BAD_INPUT
    return EXIT_FINDINGS if failed else EXIT_OK


def _read_findings(path: str) -> tuple[list[Finding], int]:
    """Findings from a JSON Lines file ('-': stdin); each bad line reported, then skipped."""
    from pydantic import ValidationError

    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"trustwatch: error: {path}: {exc.strerror or exc}", file=sys.stderr)
        return [], 1
    findings: list[Finding] = []
    bad = 0
    with stream if path != "-" else _no_close(stream):
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                findings.append(Finding.model_validate_json(line))
            except (ValidationError, ValueError) as exc:
                bad += 1
                reason = str(exc).splitlines()[0][:200]
                print(
                    f"trustwatch: error: {path}:{number}: not a finding: {reason}", file=sys.stderr
                )
    return findings, bad


@contextmanager
def _no_close(stream: TextIO) -> Iterator[TextIO]:
    yield stream


def _demo_command(args: argparse.Namespace) -> int:
    from trustwatch.demo import run_demo

    return run_demo(sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustwatch",
        description="Drift responder for the cloud identities Databricks uses.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser(
        "replay",
        help="evaluate recorded audit events against a baseline",
        description="Evaluate recorded audit events (CloudTrail, Activity Log, Cloud Audit\n"
        "Logs: one JSON document, a log file, JSON Lines, or .gz of either) against a baseline.",
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("--baseline", required=True, help="baseline YAML file")
    rp.add_argument("--format", choices=["jsonl", "table"], default="jsonl")
    rp.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        default="medium",
        help="exit 1 (4 with bad input) when a finding is at or above this severity "
        "(default: medium)",
    )
    rp.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first bad record (what was found before it is still printed)",
    )
    rp.add_argument(
        "--keep-going",
        action="store_true",
        help="accepted for compatibility, does nothing: every record is evaluated by default",
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

    mp = sub.add_parser(
        "remediate",
        help="show (default) or apply the put-back of findings from replay",
        description="Plan, and with --apply make, the changes that put findings back to "
        "the baseline.",
        epilog=REMEDIATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mp.add_argument("--baseline", required=True, help="baseline YAML file")
    mp.add_argument(
        "--apply",
        action="store_true",
        help="make the changes (identities in remediate mode only); default: dry run",
    )
    mp.add_argument("findings", metavar="FINDINGS.jsonl", help="findings file ('-' for stdin)")
    mp.set_defaults(func=_remediate_command)

    dp = sub.add_parser("demo", help="the whole loop on bundled example events")
    dp.set_defaults(func=_demo_command)

    from trustwatch.package import add_package_command
    from trustwatch.sweep_cli import add_sweep_command

    add_package_command(sub)
    add_sweep_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    with _log_to_stderr():
        return int(args.func(args))


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """The "trustwatch" logger's warnings (internal errors among them) as `trustwatch: …`
    lines on this run's stderr, like the CLI's own messages."""
    logger = logging.getLogger("trustwatch")
    handler = logging.StreamHandler(sys.stderr)  # the current one: tests swap sys.stderr
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("trustwatch: %(message)s"))
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


if __name__ == "__main__":
    sys.exit(main())
