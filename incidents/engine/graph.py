"""The graph of one incident, drawn from its message log: nodes, edges, DOT, SVG and PNG."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Sum

from incidents import conf
from incidents.engine import incidents_db, registry
from incidents.engine.validation import check_incident_id
from incidents.exceptions import MessageError, WorkflowConfigError, WorkflowError
from incidents.models import MessageLog, MessageStatus

START = "Start"
FORMATS = ("dot", "svg", "png")
DOT_TIMEOUT_SECONDS = 60

WHITE, GREEN, ORANGE, RED, GREY = "#ffffff", "#b7e4c7", "#ffb347", "#f28482", "#d3d3d3"


@dataclass
class Node:
    """A handler, queue or tagged step; `statuses` are those of the messages it received."""

    name: str
    messages: int = 0
    seconds: float = 0.0
    statuses: set[str] = field(default_factory=set)

    @property
    def colour(self) -> str:
        return colour_of(self.statuses)

    @property
    def label(self) -> str:
        if not self.messages:
            return self.name
        unit = "msg" if self.messages == 1 else "msgs"
        return f"{self.name}\n{self.seconds:.2f} s, {self.messages:,} {unit}"


@dataclass(frozen=True, order=True)
class Edge:
    """All messages one node sent to another."""

    sender: str
    receiver: str
    messages: int


@dataclass
class Graph:
    """Nodes by name, edges sorted by (sender, receiver), and a note drawn as the graph label."""

    nodes: dict[str, Node]
    edges: list[Edge]
    note: str = ""


def colour_of(statuses: set[str]) -> str:
    """The fill colour of a node that received messages with these statuses."""
    if MessageStatus.ERROR in statuses:
        return RED
    if MessageStatus.PROCESSING in statuses:
        return ORANGE
    if statuses & {MessageStatus.SENT, MessageStatus.QUEUED} or not statuses:
        return WHITE
    if MessageStatus.COMPLETE in statuses:
        return GREEN
    return GREY


def sender_name(originator: str, src_tag: str = "") -> str:
    """The node a message leaves: its src_tag; else the node of the queue its handler serves
    (so a handler's in- and out-going edges meet); else the handler's name without
    "_handler"; Start when sent from outside any handler."""
    if src_tag:
        return src_tag
    if not originator:
        return START
    queue = registry.only_queue_of(originator)
    if queue is not None:
        return receiver_name(queue)
    return originator.removesuffix("_handler") or originator


def receiver_name(destination: str, dest_tag: str = "") -> str:
    """The node a message reaches: its dest_tag, else its queue without "_queue"."""
    return dest_tag or destination.removesuffix("_queue") or destination


def max_nodes() -> int:
    return int(conf.get("GRAPH_MAX_NODES"))


def _rows(incident_id: str, *, tagged: bool) -> Iterator[dict[str, Any]]:
    """The incident's messages grouped in the database; never a row per message in Python."""
    keys = ["originator", "destination", "status"] + (["src_tag", "dest_tag"] if tagged else [])
    return (MessageLog.objects.filter(incident_id=incident_id).order_by().values(*keys)
            .annotate(n=Count("id"), seconds=Sum("duration")).iterator(chunk_size=2000))


def _assemble(rows: Iterable[dict[str, Any]]) -> Graph:
    nodes: dict[str, Node] = {}
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        sender = sender_name(row["originator"], row.get("src_tag", ""))
        receiver = receiver_name(row["destination"], row.get("dest_tag", ""))
        if sender.startswith("_") or receiver.startswith("_"):
            continue
        nodes.setdefault(sender, Node(sender))
        node = nodes.setdefault(receiver, Node(receiver))
        node.messages += row["n"]
        node.seconds += row["seconds"] or 0.0
        node.statuses.add(row["status"])
        counts[sender, receiver] = counts.get((sender, receiver), 0) + row["n"]
    edges = sorted(Edge(s, r, n) for (s, r), n in counts.items())
    return Graph(nodes=dict(sorted(nodes.items())), edges=edges)


def build(incident_id: str) -> Graph:
    """The incident's graph; tags are collapsed by handler when they make too many nodes.

    >>> graph = build(incident_id)      # seed workflow: Start -> A -> B
    >>> [(e.sender, e.receiver) for e in graph.edges]
    [('A', 'B'), ('Start', 'A')]
    """
    incident_id = check_incident_id(incident_id, where="graph")
    incidents_db.require(incident_id, where="graph")
    graph = _assemble(_rows(incident_id, tagged=True))
    if len(graph.nodes) > max_nodes():
        tagged = len(graph.nodes)
        graph = _assemble(_rows(incident_id, tagged=False))
        graph.note = f"{tagged:,} tagged nodes collapsed by handler"
    return graph


def quote(text: str) -> str:
    """`text` as a DOT quoted string, also safe as an escString label (\\N, \\n stay literal)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "\\r").replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    """The graph as DOT text; the same graph always gives the same text."""
    lines = ["digraph incident {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
             '  edge [fontname="Helvetica"];']
    if graph.note:
        lines.append(f"  label={quote(graph.note)}; labelloc=t;")
    for node in graph.nodes.values():
        lines.append(f"  {quote(node.name)} [label={quote(node.label)}, fillcolor={quote(node.colour)}];")
    for edge in graph.edges:
        attrs = f" [label={quote(f'{edge.messages:,}')}]" if edge.messages > 1 else ""
        lines.append(f"  {quote(edge.sender)} -> {quote(edge.receiver)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Lay out DOT text with Graphviz's `dot` into svg or png bytes."""
    program = shutil.which("dot")
    if program is None:
        raise WorkflowConfigError(
            f"graph: Graphviz's 'dot' program is not on PATH, so {fmt!r} cannot be drawn; "
            "install graphviz (e.g. apt-get install graphviz) or ask for the 'dot' format")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WorkflowError(f"graph: dot -T{fmt} took over {DOT_TIMEOUT_SECONDS} s; "
                            "lower WORKFLOW_GRAPH_MAX_NODES to draw a smaller graph") from exc
    if done.returncode != 0:
        raise WorkflowError(f"graph: dot -T{fmt} failed (exit {done.returncode}): "
                            f"{done.stderr.decode(errors='replace').strip()[:500]}")
    return done.stdout


def render(incident_id: str, fmt: str) -> bytes:
    """The incident's graph as DOT text, SVG or PNG bytes.

    >>> render(incident_id, "svg")[:5]
    b'<?xml'
    """
    if fmt not in FORMATS:
        raise MessageError(f"graph: format {fmt!r} is not one of {', '.join(FORMATS)}; pick one of them")
    dot_text = to_dot(build(incident_id))
    return dot_text.encode() if fmt == "dot" else run_dot(dot_text, fmt)
