"""The trust graph of a report: who can act as which identity, and what it reaches.

Each cloud draws its part with a `GraphBuilder` (its `graph.py`: `draw(baseline,
findings, graph)`, found through `CloudPlugin.graph()`, see `clouds.GraphPart`): the baseline gives the expected
nodes and edges, the findings add drift (a principal added to a trust policy, an
unexpected role assignment, an impersonation grant, a public bucket member) and mark
expected edges that are gone. Three columns, left to right: the principals that can
assume or impersonate, the identities, what the identities reach. `layout` places it
deterministically (no layout library): the identities in the order drawn, the other
columns sorted by the mean row of their neighbours, so edges mostly run straight.

Keys are compared case-insensitively (IAM names, ARM ids and GUIDs, Google emails all
are); labels are kept as given and are plain text: the report escapes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Literal

from trustwatch.frozen import frozen

if TYPE_CHECKING:
    from trustwatch.findings import Finding

Column = Literal["principal", "identity", "reach"]
COLUMNS: tuple[Column, ...] = ("principal", "identity", "reach")
# expected: the baseline allows it and nothing says it is gone; drift: a finding says it
# holds and the baseline does not allow it; removed: expected, and a finding says it is gone
EdgeState = Literal["expected", "drift", "removed"]


@frozen
class Node:
    """One box of the graph."""

    key: str  # normalized (lower-case) identifier; edges and findings name nodes by it
    label: str  # what the box says (the report shortens it; the full text is its tooltip)
    kind: str  # what it is, in a word or two: "role", "managed policy", "service account"
    column: Column
    watched: bool = False  # the baseline names it: a row of the report's table
    drift: bool = False  # a finding that still holds concerns it


@frozen
class Edge:
    """Who can act as whom (principal -> identity) or what is reached (identity -> reach)."""

    source: str
    target: str
    label: str
    state: EdgeState = "expected"


@frozen
class TrustGraph:
    """A cloud's drawn graph and which findings concern which watched node."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    # node key -> the findings about it (in the order given), for the report's table
    findings: dict[str, tuple[Finding, ...]] = field(default_factory=dict)
    unplaced: tuple[Finding, ...] = ()  # findings the cloud tied to no node

    @property
    def drift(self) -> bool:
        """Does anything in the graph hold that the baseline does not allow?"""
        return any(n.drift for n in self.nodes) or any(e.state != "expected" for e in self.edges)


def graph_key(value: str) -> str:
    """How nodes are named: case and surrounding space do not matter."""
    return value.strip().lower()


def holds(finding: Finding) -> bool:
    """Is the finding's drift still there (not `resolved` since the last sweep)?"""
    return finding.sweep_status != "resolved"


class GraphBuilder:
    """Collects one cloud's nodes, edges and findings; `build()` freezes them.

    A node added twice keeps its first label and column (the first drawer knows it best);
    drift marks only ever add. An edge between the same nodes with the same label is one
    edge; drift beats removed beats expected.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._edges: dict[tuple[str, str], dict[str, Edge]] = {}  # (source, target) -> label
        self._findings: dict[str, list[Finding]] = {}
        self._placed: set[int] = set()

    def node(
        self, key: str, label: str, column: Column, *, kind: str, watched: bool = False
    ) -> str:
        """Add a node (or find the one of this key); returns its normalized key."""
        k = graph_key(key)
        known = self._nodes.get(k)
        if known is None:
            self._nodes[k] = Node(k, label, kind, column, watched=watched)
        elif watched and not known.watched:
            self._nodes[k] = replace(known, watched=True)
        return k

    def has(self, key: str) -> bool:
        """Is there a node of this key?"""
        return graph_key(key) in self._nodes

    def node_keys(self) -> tuple[str, ...]:
        """The nodes' keys, in the order added."""
        return tuple(self._nodes)

    def edge(self, source: str, target: str, label: str, state: EdgeState = "expected") -> None:
        """Add an edge between two nodes added before."""
        s, t = graph_key(source), graph_key(target)
        if s not in self._nodes or t not in self._nodes:
            raise KeyError(f"edge {source!r} -> {target!r}: add both nodes first")
        between = self._edges.setdefault((s, t), {})
        known = between.get(label)
        if known is None or _STATE_RANK[state] > _STATE_RANK[known.state]:
            between[label] = Edge(s, t, label, state)

    def drift_edge(self, source: str, target: str, label: str, finding: Finding) -> None:
        """An edge the finding says exists and the baseline does not allow (red).

        Drawn while the finding holds; a resolved finding's edge is not drawn.
        """
        if holds(finding):
            self.edge(source, target, label, "drift")
            self.mark(target)

    def removed_edge(self, source: str, target: str, label: str, finding: Finding) -> None:
        """Expected edges the finding says are gone (red, dashed), while it holds.

        Every edge drawn between the two nodes, else a new one with `label`.
        """
        if not holds(finding):
            return
        s, t = graph_key(source), graph_key(target)
        between = self._edges.get((s, t))
        if between:
            for name, known in between.items():
                if known.state == "expected":
                    between[name] = replace(known, state="removed")
        else:
            self.edge(s, t, label, "removed")
        self.mark(target)

    def mark(self, key: str) -> None:
        """Draw the node as drift."""
        k = graph_key(key)
        self._nodes[k] = replace(self._nodes[k], drift=True)

    def attach(self, key: str, finding: Finding) -> bool:
        """The finding is about this node: listed in its table row, drawn as drift.

        The node is drift while the finding holds. False (nothing done) when there is no
        such node.
        """
        k = graph_key(key)
        if k not in self._nodes:
            return False
        self._findings.setdefault(k, []).append(finding)
        self._placed.add(id(finding))
        if holds(finding):
            self.mark(k)
        return True

    def build(self, findings: Sequence[Finding] = ()) -> TrustGraph:
        """The graph; `findings` (the cloud's) not attached to a node become `unplaced`."""
        return TrustGraph(
            nodes=tuple(self._nodes.values()),
            edges=tuple(e for between in self._edges.values() for e in between.values()),
            findings={k: tuple(v) for k, v in self._findings.items()},
            unplaced=tuple(f for f in findings if id(f) not in self._placed),
        )


_STATE_RANK: dict[EdgeState, int] = {"expected": 0, "removed": 1, "drift": 2}


# -- layout ---------------------------------------------------------------------------------

NODE_WIDTH = 230
NODE_HEIGHT = 36
ROW = 50  # vertical distance between boxes of one column
COLUMN_GAP = 170  # room for edge labels between columns
MARGIN = 16
HEADER = 30  # the column titles
LABEL_CHARS = 30  # a box shows this many characters of its label, then "…"
EDGE_LABEL_CHARS = 24
# A graph of a whole organization does not fit a page: the identities drawn are capped,
# those with drift first; the table still lists every one.
MAX_IDENTITIES = 40


@frozen
class PlacedNode:
    """A node with its box (top-left corner, size) and its shortened label."""

    node: Node
    x: int
    y: int
    width: int
    height: int
    text: str


@frozen
class PlacedEdge:
    """An edge as an SVG path, with where its (shortened) label goes."""

    edge: Edge
    path: str
    label_x: int
    label_y: int
    text: str


@frozen
class Drawing:
    """Everything the template needs to write the SVG."""

    width: int
    height: int
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    columns: tuple[tuple[str, int], ...]  # (title, centre x)
    left_out: int  # identities not drawn (MAX_IDENTITIES)


def shorten(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _capped(graph: TrustGraph, max_identities: int) -> tuple[list[Node], list[Edge], int]:
    identities = [n for n in graph.nodes if n.column == "identity"]
    if len(identities) <= max_identities:
        return list(graph.nodes), list(graph.edges), 0
    drifted = {n.key for n in graph.nodes if n.drift}
    drifted |= {k for e in graph.edges if e.state != "expected" for k in (e.source, e.target)}
    ranked = sorted(identities, key=lambda n: n.key not in drifted)  # stable: drift first
    kept_ids = {n.key for n in ranked[:max_identities]}
    # what the kept identities touch stays; other principals and reaches go with theirs
    touching = {
        k for e in graph.edges if {e.source, e.target} & kept_ids for k in (e.source, e.target)
    }
    kept = [
        n
        for n in graph.nodes
        if n.key in kept_ids or (n.column != "identity" and (n.key in touching or n.drift))
    ]
    keys = {n.key for n in kept}
    edges = [e for e in graph.edges if e.source in keys and e.target in keys]
    return kept, edges, len(identities) - max_identities


def layout(graph: TrustGraph, *, max_identities: int = MAX_IDENTITIES) -> Drawing:
    """Place the graph in three columns, the same way for the same graph."""
    nodes, edges, left_out = _capped(graph, max_identities)
    by_column: dict[Column, list[Node]] = {c: [n for n in nodes if n.column == c] for c in COLUMNS}
    row: dict[str, float] = {n.key: float(i) for i, n in enumerate(by_column["identity"])}
    neighbours: dict[str, list[str]] = {n.key: [] for n in nodes}
    for e in edges:
        neighbours[e.source].append(e.target)
        neighbours[e.target].append(e.source)
    for column in ("principal", "reach"):
        # sorted() is stable: nodes of one mean row (or none) keep the order drawn
        by_column[column] = sorted(
            by_column[column], key=lambda n: _mean([row[k] for k in neighbours[n.key] if k in row])
        )
    xs = {c: MARGIN + i * (NODE_WIDTH + COLUMN_GAP) for i, c in enumerate(COLUMNS)}
    placed: dict[str, PlacedNode] = {}
    for column in COLUMNS:
        for i, n in enumerate(by_column[column]):
            y = MARGIN + HEADER + i * ROW
            placed[n.key] = PlacedNode(
                n, xs[column], y, NODE_WIDTH, NODE_HEIGHT, shorten(n.label, LABEL_CHARS)
            )
    rows_used = max((len(v) for v in by_column.values()), default=0)
    width = 2 * MARGIN + 3 * NODE_WIDTH + 2 * COLUMN_GAP
    height = 2 * MARGIN + HEADER + max(rows_used, 1) * ROW
    # drift over expected: red edges are drawn last, on top
    ordered = sorted(edges, key=lambda e: _STATE_RANK[e.state])
    # edges between the same two boxes (two roles at one scope) fan out, labels apart
    nth: dict[frozenset[str], int] = {}
    fanned = []
    for e in ordered:
        pair = frozenset((e.source, e.target))
        fanned.append((e, nth.get(pair, 0)))
        nth[pair] = nth.get(pair, 0) + 1
    return Drawing(
        width=width,
        height=height,
        nodes=tuple(placed[n.key] for c in COLUMNS for n in by_column[c]),
        edges=tuple(_route(e, placed[e.source], placed[e.target], i) for e, i in fanned),
        columns=tuple(
            (title, xs[c] + NODE_WIDTH // 2)
            for c, title in zip(COLUMNS, _COLUMN_TITLES, strict=True)
        ),
        left_out=left_out,
    )


def _mean(rows: list[float]) -> float:
    return sum(rows) / len(rows) if rows else float("inf")


_COLUMN_TITLES = ("can assume / impersonate", "identity", "reaches")


def _route(edge: Edge, a: PlacedNode, b: PlacedNode, nth: int = 0) -> PlacedEdge:
    """The edge's path: a cubic curve from the right side of `a` to the left side of `b`.

    A loop for an identity that may assume itself; an arc on the left for two boxes of
    one column. The `nth` edge between the same boxes is moved down by a label's height.
    """
    text = shorten(edge.label, EDGE_LABEL_CHARS)
    fan = 12 * nth
    ay, by = a.y + a.height // 2 + fan // 3, b.y + b.height // 2 + fan // 3
    if a.node.key == b.node.key:
        x, y = a.x + a.width, a.y + 8
        path = f"M {x - 30} {a.y} C {x - 30} {y - 34}, {x + 24} {y - 20}, {x} {y}"
        return PlacedEdge(edge, path, x + 6, a.y - 10, text)
    if a.x == b.x:
        bend = a.x - 40
        path = f"M {a.x} {ay} C {bend} {ay}, {bend} {by}, {b.x} {by}"
        return PlacedEdge(edge, path, bend - 2, (ay + by) // 2, text)
    if a.x > b.x:  # drawn from the right column back: enter b from its right side
        x1, x2 = a.x, b.x + b.width
    else:
        x1, x2 = a.x + a.width, b.x
    dx = (x2 - x1) // 2
    path = f"M {x1} {ay} C {x1 + dx} {ay + fan}, {x2 - dx} {by + fan}, {x2} {by}"
    # the label sits in the first gap between columns, where no box covers it
    gap = min(abs(x2 - x1), COLUMN_GAP)
    label_x = x1 + gap // 2 if x2 > x1 else x1 - gap // 2
    t = (label_x - x1) / (x2 - x1) if x2 != x1 else 0.5
    label_y = round(ay + (by - ay) * _ease(t)) - 4 + fan
    return PlacedEdge(edge, path, label_x, label_y, text)


def _ease(t: float) -> float:
    """Where, between its two ends, the curve is at the fraction t of its width (roughly)."""
    return t * t * (3 - 2 * t)
