"""`trustwatch sweep` (Contract 4): a thin caller of `trustwatch.sweep.sweep`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from trustwatch import clouds
from trustwatch.baseline import Baseline, BaselineError, load_baseline
from trustwatch.findings import Finding, Severity
from trustwatch.sweep import SweepReport, UnitReport

if TYPE_CHECKING:
    from trustwatch.alerts import Dispatcher

SWEEP_EPILOG = """Reads the current state of every unit (AWS account, Azure subscription, GCP project) the
baseline names, with the cloud SDKs' default credentials and endpoints, and prints every
finding that holds now ("sweep_status": "new" or "open") and those resolved since the
last sweep ("resolved"), then what the catch-up found in the audit logs since then.
The last sweep of each unit is kept in TRUSTWATCH_STATE_DB (default
~/.cache/trustwatch/dedup.sqlite), or the store TRUSTWATCH_STATE_URL / _TABLE name.
With --alert, new and resolved findings alert, and one digest goes to Slack and email.

exit status:
  0  no finding at or above --fail-on, and every unit read
  1  findings at or above --fail-on, every unit read
  2  bad input or usage (a unit or identity not read), no finding at or above --fail-on
  3  --alert: some finding or the digest reached no alert sink
  4  findings at or above --fail-on AND bad input
"""


def add_sweep_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `trustwatch sweep` to the CLI."""
    sp = subparsers.add_parser(
        "sweep",
        help="read the real state and judge it against a baseline",
        description="Sweep the clouds' real state against a baseline (a scheduled "
        "compliance sweep, run once).",
        epilog=SWEEP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("--baseline", required=True, help="baseline YAML file")
    sp.add_argument("--cloud", required=True, choices=[*clouds.names(), "all"])
    sp.add_argument("--format", choices=["jsonl", "table", "html"], default="jsonl")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the report here, not stdout")
    sp.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default="medium",
        help="exit 1 (4 with bad input) when a finding is at or above this severity "
        "(default: medium)",
    )
    sp.add_argument(
        "--alert",
        action="store_true",
        help="alert new and resolved findings and send the digest (TRUSTWATCH_* sinks)",
    )
    sp.add_argument("--routing", metavar="FILE", help="alert routing file (with --alert)")
    sp.set_defaults(func=sweep_command)


def sweep_command(args: argparse.Namespace) -> int:
    """Run `trustwatch sweep`; the exit status as its help says."""
    from trustwatch.cli import (  # (cli imports this module lazily: no cycle at import)
        EXIT_ALERT_FAILED,
        EXIT_BAD_INPUT,
        EXIT_FINDINGS,
        EXIT_FINDINGS_AND_BAD_INPUT,
        EXIT_OK,
        _state_path,
    )
    from trustwatch.sweep import sweep
    from trustwatch.sweepstate import sweep_store_from_env

    try:
        baseline = load_baseline(args.baseline)
    except BaselineError as exc:
        print(f"trustwatch: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    names = _clouds(args.cloud)
    if not names:
        print("trustwatch: no cloud has a state part to sweep yet", file=sys.stderr)
        return EXIT_BAD_INPUT
    render = _renderer(args.format)
    if render is None:
        return EXIT_BAD_INPUT
    try:
        store = sweep_store_from_env(os.environ, default_sqlite=_state_path())
    except (ValueError, OSError) as exc:
        print(f"trustwatch: sweep state: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sender, failed = _sender(args.routing) if args.alert else (None, EXIT_OK)
    if failed:
        return failed
    started = datetime.now(UTC)
    with _progress(sys.stderr) as (on_units, on_unit):
        report = sweep(
            names,
            baseline,
            environ=os.environ,
            store=store,
            sender=sender,
            now=started,
            digest=sender is not None,
            on_units=on_units,
            on_unit=on_unit,
        )
    _summarize(report, sys.stderr)
    text = render(report.output(), baseline, started)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            print(f"trustwatch: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        sys.stdout.write(text)
    if report.alert_errors or report.digest_error:
        return EXIT_ALERT_FAILED
    holding = [f for f in report.output() if f.sweep_status != "resolved"]
    worst = any(f.severity.at_least(Severity(args.fail_on)) for f in holding)
    if report.all_errors:
        return EXIT_FINDINGS_AND_BAD_INPUT if worst else EXIT_BAD_INPUT
    return EXIT_FINDINGS if worst else EXIT_OK


def _clouds(choice: str) -> list[str]:
    """The clouds to sweep: the one named, or with `all` every cloud that has a state part."""
    if choice != "all":
        return [choice]  # one without a state part is the sweep's error to report
    return [c.name for c in clouds.registered() if c.state() is not None]


Render = Callable[[list[Finding], Baseline, datetime], str]


def _renderer(fmt: str) -> Render | None:
    """The function that turns the findings into the report text (None: reported error)."""
    from io import StringIO

    from trustwatch.cli import print_findings

    if fmt != "html":

        def text(findings: list[Finding], _baseline: Baseline, _at: datetime) -> str:
            out = StringIO()
            print_findings(findings, fmt, out)
            return out.getvalue()

        return text
    try:
        from trustwatch.report import render_html  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        print(
            f"trustwatch: --format html: the HTML report is not available ({exc})", file=sys.stderr
        )
        return None

    def html(findings: list[Finding], baseline: Baseline, at: datetime) -> str:
        generated = at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return str(render_html(findings, baseline, generated_at=generated))

    return html


def _sender(routing: str | None) -> tuple[Dispatcher | None, int]:
    """The alert dispatcher, deduplicating in the CLI's SQLite file; or an exit status."""
    from trustwatch.alerts import AlertConfigError, Dispatcher
    from trustwatch.cli import EXIT_BAD_INPUT, EXIT_OK, _state_path
    from trustwatch.dedup import SqliteDedupStore

    try:
        dispatcher = Dispatcher.from_env(
            routing_file=routing, store=SqliteDedupStore(_state_path())
        )
    except (AlertConfigError, OSError) as exc:
        print(f"trustwatch: alert configuration: {exc}", file=sys.stderr)
        return None, EXIT_BAD_INPUT
    if not dispatcher.sinks:
        print(
            "trustwatch: --alert: no sink configured (set TRUSTWATCH_SLACK_WEBHOOK_URL, "
            "TRUSTWATCH_SMTP_URL, … or --routing FILE)",
            file=sys.stderr,
        )
        return None, EXIT_BAD_INPUT
    return dispatcher, EXIT_OK


def _summarize(report: SweepReport, err: TextIO) -> None:
    """One line per unit on stderr, then every error, each on its own line.

    Error texts quote the clouds (names, API messages): each is one line of inert text
    (render.clean: no control characters, no terminal escapes).
    """
    from trustwatch.alerts.render import clean

    for unit in report.units:
        print(f"trustwatch: sweep {unit.cloud} {clean(unit.unit)}: {_counts(unit)}", file=err)
    for error in report.all_errors:
        print(f"trustwatch: error: {clean(error, 1000)}", file=err)
    for error in report.alert_errors:
        print(f"trustwatch: alert delivery failed: {clean(error, 1000)}", file=err)
    if report.digest_error:
        print(f"trustwatch: digest delivery failed: {clean(report.digest_error, 1000)}", file=err)


def _counts(unit: UnitReport) -> str:
    if unit.read_failed:
        return "not read (its last sweep's state is kept)"
    caught = len(unit.event_findings)
    return (
        f"{len(unit.new)} new, {len(unit.still_open)} open, {len(unit.resolved)} resolved, "
        f"{caught} from catch-up, {unit.calls} API call(s)"
    )


@contextmanager
def _progress(
    err: TextIO,
) -> Iterator[tuple[Callable[[int], None], Callable[[str, str], None]]]:
    """(on_units, on_unit) driving a rich progress bar on a terminal; quiet otherwise."""
    try:
        if not err.isatty():
            raise ImportError("not a terminal")
        from rich.console import Console
        from rich.progress import Progress
    except (ImportError, AttributeError, ValueError):
        yield (lambda _total: None), (lambda _cloud, _unit: None)
        return
    with Progress(console=Console(file=err), transient=True) as bar:
        task = bar.add_task("sweeping", total=None)

        def on_units(total: int) -> None:
            bar.update(task, total=total)

        def on_unit(cloud: str, unit: str) -> None:
            bar.update(task, advance=1, description=f"swept {cloud} {unit}")

        yield on_units, on_unit
