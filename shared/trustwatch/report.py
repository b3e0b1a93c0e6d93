"""The sweep's HTML report: one self-contained file (inline CSS and SVG, no script).

`render_html(findings, baseline, generated_at=…)` shows a summary (counts by severity of
what holds now, and by `sweep_status`), then per cloud its trust graph (drawn by the
cloud's `graph` part, trustwatch.trustgraph: drift in red) and a table of the identities
the baseline names, each passing or failing with the difference of each finding
(expected vs actual).

Every string that came from a cloud or the baseline (names, summaries, values) is cleaned
once by `trustwatch.alerts.render.clean` (controls, invisible and bidi characters out,
length capped) and escaped by the template, jinja2 with autoescape on: in HTML text, in
attributes and in the SVG's text and tooltips alike.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from trustwatch import clouds
from trustwatch.alerts.render import FIELD_MAX, SUMMARY_MAX, clean, rule_title, short_diff
from trustwatch.findings import Finding, Severity
from trustwatch.frozen import frozen
from trustwatch.trustgraph import Drawing, GraphBuilder, TrustGraph, holds, layout

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline

SWEEP_STATUSES = ("new", "open", "resolved")
TITLE_MAX = 1024  # a tooltip shows the whole name (within reason)


@frozen
class FindingView:
    """One finding as a table cell shows it (cleaned plain text; the template escapes)."""

    severity: Severity
    status: str  # new / open / resolved, or "event" for a finding not from a sweep
    rule: str
    title: str
    summary: str
    diff: tuple[str, ...]
    identity: str

    @property
    def holds(self) -> bool:
        """Is the drift still there?"""
        return self.status != "resolved"


@frozen
class Row:
    """A watched identity (or a node a finding is about) and its verdict."""

    label: str
    kind: str
    verdict: str  # fail: a finding holds; pass (resolved ones are listed, struck out)
    findings: tuple[FindingView, ...]


@frozen
class CloudSection:
    """One cloud's graph and table."""

    name: str
    drawing: Drawing
    rows: tuple[Row, ...]
    other: tuple[FindingView, ...]  # findings the cloud's graph tied to no identity
    failing: int

    @property
    def drift(self) -> bool:
        """Does the graph show anything the baseline does not allow?"""
        return any(n.node.drift for n in self.drawing.nodes) or any(
            e.edge.state != "expected" for e in self.drawing.edges
        )


def _view(finding: Finding) -> FindingView:
    return FindingView(
        severity=finding.severity,
        status=finding.sweep_status or "event",
        rule=clean(finding.rule, 120),
        title=rule_title(finding.rule),
        summary=clean(finding.summary, SUMMARY_MAX),
        diff=short_diff(finding.expected, finding.actual),
        identity=clean(finding.identity, FIELD_MAX),
    )


def _by_severity(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first; what still holds before what was resolved."""
    return sorted(findings, key=lambda f: (not holds(f), -f.severity.rank))


def _cleaned(graph: TrustGraph) -> TrustGraph:
    """The graph with every label cleaned (the drawing shortens them again)."""
    return replace(
        graph,
        nodes=tuple(
            replace(n, label=clean(n.label, TITLE_MAX), kind=clean(n.kind, 120))
            for n in graph.nodes
        ),
        edges=tuple(replace(e, label=clean(e.label, 120)) for e in graph.edges),
    )


def cloud_graph(name: str, baseline: Baseline, findings: Sequence[Finding]) -> TrustGraph | None:
    """The cloud's trust graph, or None when the cloud draws none."""
    part = clouds.get(name).graph()
    if part is None:
        return None
    builder = GraphBuilder()
    part.draw(baseline, findings, builder)
    return builder.build(findings)


def _section(name: str, baseline: Baseline, findings: Sequence[Finding]) -> CloudSection | None:
    graph = cloud_graph(name, baseline, findings)
    if graph is None:
        graph = TrustGraph(nodes=(), edges=(), unplaced=tuple(findings))
    if not graph.nodes and not graph.unplaced:
        return None  # the baseline names nothing of this cloud, and nothing was found
    graph = _cleaned(graph)
    rows = []
    for node in graph.nodes:
        about = graph.findings.get(node.key, ())
        if not node.watched and not about:
            continue
        rows.append(
            Row(
                label=node.label,
                kind=node.kind,
                verdict="fail" if any(holds(f) for f in about) else "pass",
                findings=tuple(_view(f) for f in _by_severity(about)),
            )
        )
    rows.sort(key=lambda r: r.verdict != "fail")  # stable: failing first, drawn order kept
    return CloudSection(
        name=name,
        drawing=layout(graph),
        rows=tuple(rows),
        other=tuple(_view(f) for f in _by_severity(graph.unplaced)),
        failing=sum(r.verdict == "fail" for r in rows),
    )


@frozen
class Summary:
    """The counts at the top of the report."""

    by_severity: tuple[tuple[str, int], ...]  # of the findings that hold now
    by_status: tuple[tuple[str, int], ...]
    holding: int


def _summary(findings: Sequence[Finding]) -> Summary:
    holding = [f for f in findings if holds(f)]
    statuses = [
        *SWEEP_STATUSES,
        *(["event"] if any(f.sweep_status is None for f in findings) else []),
    ]
    return Summary(
        by_severity=tuple((s.value, sum(1 for f in holding if f.severity == s)) for s in Severity),
        by_status=tuple(
            (s, sum(1 for f in findings if (f.sweep_status or "event") == s)) for s in statuses
        ),
        holding=len(holding),
    )


@functools.cache
def _template() -> Any:
    # jinja2 (the cli / alerts extras) is imported when a report is rendered, not before
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trustwatch", "templates"),
        autoescape=True,  # every {{ value }} is escaped, in HTML and SVG text and attributes
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def render_html(
    findings: Sequence[Finding],
    baseline: Baseline,
    *,
    generated_at: str,
    title: str = "trustwatch sweep",
) -> str:
    """The report as one HTML document that needs nothing else to display."""
    sections = [
        section
        for name in clouds.names()
        if (section := _section(name, baseline, [f for f in findings if f.cloud == name]))
    ]
    return str(
        _template().render(
            title=clean(title, 200),
            generated_at=clean(generated_at, 80),
            summary=_summary(findings),
            sections=sections,
        )
    )
