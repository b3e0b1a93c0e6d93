"""`--format table`: findings as a readable table (rich when installed, plain text otherwise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from trustwatch.findings import Finding

COLUMNS = ("severity", "rule", "identity", "actor", "summary", "remediation")
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _row(f: Finding) -> tuple[str, ...]:
    remediation = (
        f.remediation.status
        if f.remediation.action == "none"
        else (f"{f.remediation.action}: {f.remediation.status}")
    )
    return (f.severity.value, f.rule, f.identity, f.actor, f.summary, remediation)


def render_table(findings: Sequence[Finding], out: TextIO) -> None:
    if not findings:
        out.write("No findings.\n")
        return
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        _plain(findings, out)
        return
    table = Table(title=f"{len(findings)} finding(s)", show_lines=True)
    for column in COLUMNS:
        fixed = column in ("severity", "rule")
        table.add_column(column, overflow="fold", no_wrap=fixed, ratio=None if fixed else 1)
    for f in sorted(findings, key=lambda f: -f.severity.rank):
        cells = [escape(c) for c in _row(f)]  # event strings are data, never markup
        cells[0] = f"[{_STYLE[f.severity.value]}]{cells[0]}[/]"
        table.add_row(*cells)
    Console(file=out, width=160, soft_wrap=False).print(table)


def _plain(findings: Sequence[Finding], out: TextIO) -> None:
    rows = [COLUMNS, *(_row(f) for f in findings)]
    widths = [min(48, max(len(r[i]) for r in rows)) for i in range(len(COLUMNS))]
    for r in rows:
        out.write("  ".join(c[:w].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
