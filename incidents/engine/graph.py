"""The graph of one incident, drawn from its message log: nodes, edges, how it ended, and
DOT, SVG and PNG with a legend."""
from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, Sum

from incidents import conf
from incidents.engine import incidents_db, registry
from incidents.engine.retrying import NOTE_PREFIX as RETRY_NOTE
from incidents.exceptions import MessageError, WorkflowConfigError, WorkflowError
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    IncidentStatus,
    MessageLog,
    MessageStatus,
)

START = "Start"
# The end node's name: names from the log that start with "_" are hidden, so no step clashes.
END = "_end"
FORMATS = ("dot", "svg", "png")
DOT_TIMEOUT_SECONDS = 60
FONT = "Helvetica"  # one font for nodes, edges and the legend
# A node that only sends is linked from the nodes where its handler ran, if there are at most
# this many; more would be a guess drawn as clutter, so it is linked from Start instead.
MAX_INFERRED_SOURCES = 3
#: The originator of a message an operator sent (admin, `send_message`): this, then who.
OPERATOR_PREFIX = "operator:"

WHITE, GREEN, ORANGE, RED, GREY = "#ffffff", "#b7e4c7", "#ffb347", "#f28482", "#d3d3d3"
INK, FAINT, FAINT_TEXT, FAILED_RED = "#333333", "#9e9e9e", "#757575", "#c62828"
OPERATOR_FILL, OPERATOR_INK = "#cfe2ff", "#1565c0"  # an operator's node and its edge from Start
# The end node's fill: the colours of the admin's status badges.
END_COLOURS: dict[str, str] = {IncidentStatus.COMPLETE: "#2e7d32", IncidentStatus.CANCELLED: "#795548",
               IncidentStatus.ERROR: "#c62828", IncidentStatus.KILLED: "#4a148c"}

# What became of the messages an edge stands for (an edge per sender, receiver and outcome).
HANDLED, FAILED, WAITING, NEVER_RAN, INFERRED, ENDED, BY_OPERATOR = (
    "handled", "failed", "waiting", "never ran", "inferred", "ended", "by operator")
EDGE_STYLES = {
    HANDLED: "",  # the default edge
    FAILED: f'color="{FAILED_RED}", fontcolor="{FAILED_RED}", penwidth=2',
    WAITING: "style=dashed",
    NEVER_RAN: f'color="{FAINT}", fontcolor="{FAINT_TEXT}", style=dashed',
    INFERRED: f'color="{FAINT}", style=dotted, arrowhead=empty',
    BY_OPERATOR: f'color="{OPERATOR_INK}", style=dotted, arrowhead=empty',
}


@dataclass
class Node:
    """A handler, queue or tagged step; `statuses` are those of the messages it received."""

    name: str
    messages: int = 0
    seconds: float = 0.0
    statuses: set[str] = field(default_factory=set)
    never_ran: int = 0
    retried: int = 0  # messages whose handler was retried after a failure

    @property
    def is_operator(self) -> bool:
        """An operator who sent messages into the incident (it receives none)."""
        return self.name.startswith(OPERATOR_PREFIX)

    @property
    def colour(self) -> str:
        return OPERATOR_FILL if self.is_operator else colour_of(self.statuses)

    @property
    def label(self) -> str:
        if self.is_operator:
            return f"{self.name.removeprefix(OPERATOR_PREFIX)}\noperator"
        if not self.messages:
            return self.name
        unit = "msg" if self.messages == 1 else "msgs"
        label = f"{self.name}\n{self.seconds:.2f} s, {self.messages:,} {unit}"
        label += f"\n{self.retried:,} retried" if self.retried else ""
        return label + (f"\n{self.never_ran:,} never ran" if self.never_ran else "")


@dataclass(frozen=True, order=True)
class Edge:
    """The messages one node sent to another that met one `outcome`; INFERRED and ENDED
    edges stand for no message (messages=0)."""

    sender: str
    receiver: str
    messages: int
    outcome: str = HANDLED


@dataclass(frozen=True)
class Ending:
    """How an ended incident ended, drawn as the END node."""

    status: str
    by: str = ""

    @property
    def colour(self) -> str:
        return END_COLOURS.get(self.status, INK)

    @property
    def label(self) -> str:
        return self.status + (f"\nby {self.by[:40]}" if self.by else "")


@dataclass
class Graph:
    """Nodes by name (Start always among them), edges sorted, a note drawn above the legend,
    and the ending of an ended incident (then END is a node of the drawing and of `edges`)."""

    nodes: dict[str, Node]
    edges: list[Edge]
    note: str = ""
    ending: Ending | None = None

    def unreached(self) -> set[str]:
        """The nodes (END included) no path from Start reaches: none, in a built graph."""
        names = set(self.nodes) | ({END} if self.ending else set())
        return names - _reach(self.edges, START)


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


def outcome_of(status: str, *, ended: bool) -> str:
    """What became of a message: a message still waiting when its incident ended never ran."""
    if status == MessageStatus.ERROR:
        return FAILED
    if status in (MessageStatus.COMPLETE, MessageStatus.PROCESSING):
        return HANDLED
    if status in WAITING_STATUSES and not ended:
        return WAITING
    return NEVER_RAN


def receiver_name(destination: str, dest_tag: str = "") -> str:
    """The node a message reaches: its dest_tag, else its queue without "_queue"."""
    return dest_tag or destination.removesuffix("_queue") or destination


class _Origins:
    """Which node each message leaves, knowing where the incident's messages arrived."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.arrivals: dict[str, set[str]] = {}  # queue -> the nodes its messages reached
        for row in rows:
            receiver = receiver_name(row["destination"], row.get("dest_tag", ""))
            if not receiver.startswith("_"):
                self.arrivals.setdefault(row["destination"], set()).add(receiver)
        self.received: set[str] = set().union(*self.arrivals.values())

    def inputs(self, handler: str) -> list[str]:
        """The nodes where the handler ran: those its queue's messages reached."""
        queue = registry.only_queue_of(handler)
        return sorted(self.arrivals.get(queue, ())) if queue else []

    def sender(self, originator: str, src_tag: str = "") -> str:
        """Start when sent from outside any handler (unless tagged); else its src_tag if a
        message arrives there; else the one node where the handler ran (julia_start_handler's
        "start" is where its message arrived, "julia_start"); else its src_tag, the node of
        its queue, or the handler's name without "_handler"."""
        if not originator:
            return src_tag or START
        if originator.startswith(OPERATOR_PREFIX):  # one node per operator, tags or not
            return originator
        if src_tag and src_tag in self.received:
            return src_tag
        inputs = self.inputs(originator)
        if len(inputs) == 1:
            return inputs[0]
        queue = registry.only_queue_of(originator)
        return src_tag or (receiver_name(queue) if queue else originator.removesuffix("_handler"))


def max_nodes() -> int:
    return int(conf.get("GRAPH_MAX_NODES"))


def _rows(incident_id: str, *, tagged: bool) -> Iterator[dict[str, Any]]:
    """The incident's messages grouped in the database; never a row per message in Python."""
    keys = ["originator", "destination", "status"] + (["src_tag", "dest_tag"] if tagged else [])
    return (MessageLog.objects.filter(incident_id=incident_id).order_by().values(*keys)
            .annotate(n=Count("id"), seconds=Sum("duration"),
                      retried=Count("id", filter=Q(comment__startswith=RETRY_NOTE)))
            .iterator(chunk_size=2000))


def _reach(edges: Iterable[Edge], root: str, reached: set[str] | None = None) -> set[str]:
    targets: dict[str, list[str]] = {}
    for edge in edges:
        targets.setdefault(edge.sender, []).append(edge.receiver)
    reached = set() if reached is None else reached
    stack = [root]
    while stack:
        name = stack.pop()
        if name not in reached:
            reached.add(name)
            stack.extend(targets.get(name, ()))
    return reached


def _link_unreached(names: list[str], edges: list[Edge]) -> list[Edge]:
    """INFERRED edges from Start to what no path from Start reaches (a handler whose input
    was not logged: cleaned messages, an unregistered handler): first to nodes nothing
    reaches, then into cycles."""
    reached, added = _reach(edges, START), []
    has_input = {edge.receiver for edge in edges}
    for roots_only in (True, False):
        for name in names:
            if name not in reached and not (roots_only and name in has_input):
                added.append(Edge(START, name, 0, INFERRED))
                _reach(edges, name, reached)
    return added


def _assemble(rows: Iterable[dict[str, Any]], ending: Ending | None) -> Graph:
    # The engine's own sends (the cleanup re-sending itself) are not the workflow's.
    kept = [row for row in rows if not row["originator"].startswith("_")]
    origins = _Origins(kept)
    nodes = {START: Node(START)}
    counts: dict[tuple[str, str, str], int] = {}
    handlers_at: dict[str, set[str]] = {}  # node -> the handlers whose sends leave it
    enders: set[str] = set()
    for row in kept:
        sender = origins.sender(row["originator"], row.get("src_tag", ""))
        receiver = receiver_name(row["destination"], row.get("dest_tag", ""))
        if row["destination"] == registry.CLEANUP_QUEUE:  # sent by what ended the incident
            receiver = END
            if ending is None:
                continue
        elif sender.startswith("_") or receiver.startswith("_"):
            continue
        nodes.setdefault(sender, Node(sender))
        if row["originator"]:
            handlers_at.setdefault(sender, set()).add(row["originator"])
        if receiver == END:
            enders.add(sender)
            continue
        outcome = outcome_of(row["status"], ended=ending is not None)
        node = nodes.setdefault(receiver, Node(receiver))
        node.messages += row["n"]
        node.seconds += row["seconds"] or 0.0
        node.never_ran += row["n"] if outcome == NEVER_RAN else 0
        node.retried += row.get("retried", 0)
        node.statuses.add(MessageStatus.NOT_PROCESSED if outcome == NEVER_RAN else row["status"])
        counts[sender, receiver, outcome] = counts.get((sender, receiver, outcome), 0) + row["n"]
    edges = [Edge(s, r, n, outcome) for (s, r, outcome), n in counts.items()]
    edges += [Edge(sender, END, 0, ENDED) for sender in enders]
    # An operator acts from outside, as Start does: their node hangs off Start.
    edges += [Edge(START, name, 0, BY_OPERATOR) for name in nodes if nodes[name].is_operator]
    for name, handlers in handlers_at.items():  # nodes that only send: link where they ran
        sources = sorted({n for h in handlers for n in origins.inputs(h)} - {name})
        if name not in origins.received and 0 < len(sources) <= MAX_INFERRED_SOURCES:
            edges += [Edge(source, name, 0, INFERRED) for source in sources]
    names = sorted(nodes) + ([END] if ending else [])
    edges += _link_unreached(names, edges)
    return Graph(nodes=dict(sorted(nodes.items())), edges=sorted(edges), ending=ending)


def build(incident_id: str) -> Graph:
    """The incident's graph, one component from Start (to END once the incident has ended);
    tags are collapsed by handler when they make too many nodes.

    >>> graph = build(incident_id)      # seed workflow: Start -> A -> B, completed by B
    >>> [(e.sender, e.receiver) for e in graph.edges]
    [('A', 'B'), ('B', '_end'), ('Start', 'A')]
    """
    incident = incidents_db.get(incident_id, where="graph")
    ended = incident.status not in LIVE_INCIDENT_STATUSES
    ending = Ending(incident.status, incident.ended_by) if ended else None
    graph = _assemble(_rows(str(incident.pk), tagged=True), ending)
    if len(graph.nodes) > max_nodes():
        tagged = len(graph.nodes)
        graph = _assemble(_rows(str(incident.pk), tagged=False), ending)
        graph.note = f"{tagged:,} tagged nodes collapsed by handler"
    return graph


def quote(text: str) -> str:
    """`text` as a DOT quoted string, also safe as an escString label (\\N, \\n stay literal)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "\\r").replace("\n", "\\n") + '"'


def edge_style(edge: Edge, ending: Ending | None) -> str:
    """The DOT attributes that draw an edge's outcome (see the legend)."""
    if edge.outcome == ENDED:
        colour = ending.colour if ending else INK
        return f'color="{colour}", penwidth=2'
    return EDGE_STYLES[edge.outcome]


_SWATCH = '<TD BGCOLOR="{}" BORDER="1" STYLE="{}" WIDTH="18"></TD><TD ALIGN="LEFT">{}</TD>'
_LINE = '<TD WIDTH="32" BORDER="{}" SIDES="B" STYLE="{}" COLOR="{}"></TD><TD ALIGN="LEFT">{}</TD>'
_LEGEND_ROWS = [  # (node fill, its border style, meaning) | (line width, style, colour, meaning)
    (_SWATCH.format(GREEN, "rounded", "handled"), _LINE.format(1, "solid", INK, "messages handled")),
    (_SWATCH.format(ORANGE, "rounded", "running"),
     _LINE.format(2, "solid", FAILED_RED, "failed (ERROR)")),
    (_SWATCH.format(WHITE, "rounded", "waiting"),
     _LINE.format(1, "dashed", INK, "waiting (QUEUED, SENT)")),
    (_SWATCH.format(RED, "rounded", "a message failed"),
     _LINE.format(1, "dashed", FAINT, "never ran (NOT PROCESSED)")),
    (_SWATCH.format(GREY, "dashed", "nothing ran"),
     _LINE.format(1, "dotted", FAINT, "link inferred, not logged")),
    (_SWATCH.format(OPERATOR_FILL, "solid", "an operator (hexagon)"),
     _LINE.format(1, "dotted", OPERATOR_INK, "an operator stepped in")),
]


def legend(note: str = "") -> str:
    """The graph's label, an HTML-like table: the note, then what colours and lines mean."""
    rows = [f'<TR><TD COLSPAN="4" ALIGN="LEFT"><B>{html.escape(note)}</B></TD></TR>'] if note else []
    rows += [f"<TR>{nodes}{lines}</TR>" for nodes, lines in _LEGEND_ROWS]
    ends = "".join(f'<TD BGCOLOR="{colour}"><FONT COLOR="#ffffff">{status}</FONT></TD>'
                   for status, colour in END_COLOURS.items())
    rows.append('<TR><TD COLSPAN="4" ALIGN="LEFT"><TABLE BORDER="0" CELLSPACING="2" CELLPADDING="2">'
                f'<TR><TD>how it ended (a thick line from what ended it):</TD>{ends}</TR>'
                '</TABLE></TD></TR>')
    return ('<<FONT POINT-SIZE="10"><TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" '
            f'CELLPADDING="1">{"".join(rows)}</TABLE></FONT>>')


def to_dot(graph: Graph) -> str:
    """The graph as DOT text; the same graph always gives the same text."""
    lines = ["digraph incident {",
             f'  rankdir=LR; fontname="{FONT}"; labelloc=t; labeljust=l;',
             f'  node [shape=box, style="rounded,filled", fontname="{FONT}"];',
             f'  edge [fontname="{FONT}", color="{INK}"];',
             f"  label={legend(graph.note)};"]
    for node in graph.nodes.values():
        shape = ', style="rounded,filled,dashed"' if node.colour == GREY else ""
        if node.is_operator:
            shape = f', shape=hexagon, style=filled, color="{OPERATOR_INK}"'
        lines.append(f"  {quote(node.name)} [label={quote(node.label)}, "
                     f"fillcolor={quote(node.colour)}{shape}];")
    if graph.ending:
        lines.append(f"  {quote(END)} [label={quote(graph.ending.label)}, "
                     f'fillcolor="{graph.ending.colour}", fontcolor="#ffffff", peripheries=2];')
        lines.append(f"  {{rank=sink; {quote(END)};}}")
    for edge in graph.edges:
        attrs = [f"label={quote(f'{edge.messages:,}')}"] if edge.messages > 1 else []
        attrs += [style] if (style := edge_style(edge, graph.ending)) else []
        # END sits in the last rank anyway; an edge ranking it would drag Start (an
        # operator's cancel) to the bottom of the drawing.
        attrs += ["constraint=false"] if edge.receiver == END else []
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {quote(edge.sender)} -> {quote(edge.receiver)}{suffix};")
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
