"""`trustwatch demo`: the whole loop on bundled example events, no cloud account needed."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from trustwatch.baseline import Baseline, BaselineError, load_baseline
from trustwatch.findings import Finding
from trustwatch.intake import parse_paths
from trustwatch.respond import replay
from trustwatch.table import render_table


def examples_dir() -> Path:
    """The project's examples/ folder (the demo runs from a checkout's dev install)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples"
        if (candidate / "baseline.yaml").is_file():
            return candidate
    raise FileNotFoundError("examples/baseline.yaml not found: run the demo from a checkout")


def run_demo(out: TextIO) -> int:
    examples = examples_dir()
    try:
        baseline = load_baseline(examples / "baseline.yaml")
    except BaselineError as exc:
        out.write(f"trustwatch demo: {exc}\n")
        return 2
    events = sorted((examples / "events").glob("*.json"))
    out.write(f"Baseline: {examples / 'baseline.yaml'}\n")
    out.write(f"Replaying {len(events)} recorded audit events from {examples / 'events'}:\n")
    for path in events:
        out.write(f"  - {path.name}\n")
    result = replay(parse_paths(events), baseline, keep_skip_reasons=False)
    out.write(
        f"\n{result.records} records read, {result.skips} skipped (not an identity change, "
        f"or superseded within its operation), {len(result.findings)} findings:\n"
    )
    render_table(result.findings, out)
    for note in result.not_evaluated:
        out.write(f"{note}\n")
    for error in result.errors:
        out.write(f"error: {error}\n")
    if result.errors:
        return 2
    code = _show_alerts(result.findings, out)
    from trustwatch import clouds

    remediated: list[Finding] = []
    for cloud in clouds.registered():  # each cloud's own act (AWS: remediation on moto)
        act = cloud.demo()
        if act is not None:
            remediated.extend(act.show(baseline, examples, out))
    # one row per finding: the remediation act's copy (with what was done) over the first
    latest = {f.id: f for f in [*result.findings, *remediated]}
    _write_report(baseline, list(latest.values()), out)
    return code


def _write_report(baseline: Baseline, findings: list[Finding], out: TextIO) -> None:
    """The HTML report `trustwatch sweep --format html` writes, of the demo's findings."""
    import tempfile
    from datetime import UTC, datetime

    from trustwatch.report import render_html

    html = render_html(
        findings,
        baseline,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        title="trustwatch demo",
    )
    path = Path(tempfile.gettempdir()) / "trustwatch-demo-report.html"
    path.write_text(html, encoding="utf-8")
    out.write(f"\nHTML report (trust graph, drift in red; opens offline): {path}\n")


def _show_alerts(findings: list, out: TextIO) -> int:
    """Deliver the findings for real to local Slack/Teams/webhook/SMTP receivers."""
    try:
        from trustwatch.alerts.local import deliver_locally, write_preview
    except ImportError as exc:  # the demo's receivers need the `cli` extra (aiosmtpd)
        out.write(f"\n(alerts not shown: {exc}; install with: pip install -e '.[cli]')\n")
        return 0
    out.write(
        "\nSending them through the real sinks to local receivers "
        "(Slack, Teams, signed webhook, SMTP on 127.0.0.1):\n"
    )
    delivery = deliver_locally(sorted(findings, key=lambda f: -f.severity.rank))
    write_preview(delivery, out)
    return 0 if not delivery.report.undelivered else 3
