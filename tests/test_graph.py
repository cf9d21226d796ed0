"""The incident graph: nodes and edges from the message log, one component from Start to the
end, colours, line styles and legend, labels, collapse, rendering."""
from __future__ import annotations

import io
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from incidents import workflow
from incidents.engine import graph, ledger, operations, registry
from incidents.engine.graph import (
    END,
    ENDED,
    FAINT,
    GREEN,
    GREY,
    INFERRED,
    NEVER_RAN,
    ORANGE,
    RED,
    START,
    WHITE,
    Edge,
)
from incidents.exceptions import MessageError, UnknownIncident, WorkflowConfigError, WorkflowError
from incidents.models import IncidentStatus, MessageLog, MessageStatus
from incidents.testing import run_until_idle
from workflows import julia, wildfire
from workflows.wildfire import synthetic

LEAF_SIZE = 16  # as in workflows/quicksort.py
registry.load_workflow_modules(["workflows.julia", "workflows.wildfire"])  # whatever WORKFLOW_MODULES says
FIRMS = Path(__file__).parent / "data" / "firms"


def log_row(incident_id: str, originator: str, destination: str, *, src_tag: str = "",
            dest_tag: str = "", status: str = "COMPLETE", duration: float | None = 0.01) -> MessageLog:
    return MessageLog(id=uuid.uuid4(), incident_id=incident_id, originator=originator,
                      destination=destination, src_tag=src_tag, dest_tag=dest_tag, status=status,
                      submitted=timezone.now(), duration=duration, body={})


@pytest.fixture
def new_incident(db: None) -> Callable[[], str]:
    return lambda: workflow.CreateIncident(name="g", kind="TEST")


@pytest.fixture
def incident(new_incident: Callable[[], str]) -> str:
    return new_incident()


@pytest.fixture
def log(incident: str) -> Callable[..., MessageLog]:
    """log(originator, destination, **fields) inserts one message of `incident`."""
    def insert(originator: str, destination: str, **fields: Any) -> MessageLog:
        row = log_row(incident, originator, destination, **fields)
        row.save(force_insert=True)
        return row
    return insert


@pytest.fixture
def seed(incident: str, log: Callable[..., MessageLog]) -> str:
    """The seed workflow's log: Start -> A_queue, A_handler -> B_queue, B_handler -> _Cleanup."""
    log("", "A_queue")
    log("A_handler", "B_queue")
    log("B_handler", "_Cleanup")
    log("_cleanup", "_Cleanup", status="SENT")
    return incident


def edges_of(incident_id: str) -> list[tuple[str, str]]:
    """The edges that stand for messages (not the inferred links or the end)."""
    return [(edge.sender, edge.receiver) for edge in graph.build(incident_id).edges
            if edge.outcome not in (INFERRED, ENDED)]


DOT_NAME = r'"((?:[^"\\]|\\.)*)"'


def dot_components(dot: str) -> tuple[set[str], set[str], set[str]]:
    """From DOT text: the declared nodes, those no edge enters, and those reached from Start."""
    nodes = set(re.findall(rf"^  {DOT_NAME} \[", dot, re.MULTILINE))
    edges = re.findall(rf"^  {DOT_NAME} -> {DOT_NAME}", dot, re.MULTILINE)
    reached, frontier = set(), [START]
    while frontier:
        name = frontier.pop()
        if name not in reached:
            reached.add(name)
            frontier += [receiver for sender, receiver in edges if sender == name]
    return nodes, nodes - {receiver for _, receiver in edges}, reached


def assert_one_component_from_start(built: graph.Graph) -> None:
    assert built.unreached() == set()
    nodes, entered_by_nothing, reached = dot_components(graph.to_dot(built))
    assert entered_by_nothing == {START}, "exactly one start node"
    assert reached == nodes


def end_edges(built: graph.Graph) -> list[tuple[str, str]]:
    return [(edge.sender, edge.receiver) for edge in built.edges if edge.outcome == ENDED]


def node_line(dot: str, name: str) -> str:
    return next(line for line in dot.splitlines() if line.startswith(f'  "{name}" ['))


def quicksort_rows(incident_id: str, numbers: list[int]) -> list[MessageLog]:
    """The message log workflows/quicksort.py leaves after sorting `numbers`, without running it."""
    rows = [log_row(incident_id, "", "quicksort_split", dest_tag="split r")]

    def merge(sender: str, node: str, src_tag: str) -> None:
        rows.append(log_row(incident_id, sender, "quicksort_merge", src_tag=src_tag,
                            dest_tag=f"merge {node}"))

    def split(node: str, part: list[int]) -> None:
        pivot = sorted((part[0], part[len(part) // 2], part[-1]))[1]
        merge("split_handler", node + "M", f"split {node}")
        for side, child in (("L", [n for n in part if n < pivot]), ("R", [n for n in part if n > pivot])):
            if len(child) <= LEAF_SIZE:
                merge("split_handler", node + side, f"split {node}")
            else:
                rows.append(log_row(incident_id, "split_handler", "quicksort_split",
                                    src_tag=f"split {node}", dest_tag=f"split {node}{side}"))
                split(node + side, child)
                merge("merge_handler", node + side, f"merge {node}{side}R")

    split("r", numbers)
    merge("merge_handler", "r", "merge rR")
    rows.append(log_row(incident_id, "merge_handler", "quicksort_done", src_tag="merge r"))
    rows.append(log_row(incident_id, "done_handler", "_Cleanup"))
    return rows


# Nodes and edges


def test_the_seed_workflow_is_drawn_start_to_a_to_b(seed):
    built = graph.build(seed)
    assert list(built.nodes) == ["A", "B", "Start"]
    assert built.edges == [Edge("A", "B", 1), Edge("Start", "A", 1)]
    assert built.note == ""


def test_the_cleanup_queue_and_its_edges_are_hidden(seed):
    dot = graph.to_dot(graph.build(seed))
    assert "_Cleanup" not in dot and "_cleanup" not in dot
    assert '"B"' in dot


def test_tags_name_the_nodes_instead_of_handlers_and_queues(incident, log):
    log("", "quicksort_split", dest_tag="split r")
    log("split_handler", "quicksort_split", src_tag="split r", dest_tag="split rL")
    log("split_handler", "quicksort_merge", src_tag="split r", dest_tag="merge rM")
    assert edges_of(incident) == [("Start", "split r"), ("split r", "merge rM"), ("split r", "split rL")]


def test_a_message_with_only_a_source_tag_reaches_its_queue_node(incident, log):
    log("merge_handler", "quicksort_done", src_tag="merge r")
    assert edges_of(incident) == [("merge r", "quicksort_done")]
    # Where merge_handler ran is not in this log: a dotted link from Start keeps one graph.
    assert Edge(START, "merge r", 0, INFERRED) in graph.build(incident).edges


def test_messages_between_the_same_nodes_make_one_edge_labelled_with_their_count(incident, log):
    for _ in range(3):
        log("A_handler", "B_queue")
    log("", "A_queue")
    built = graph.build(incident)
    assert built.edges == [Edge("A", "B", 3), Edge("Start", "A", 1)]
    dot = graph.to_dot(built)
    assert '"A" -> "B" [label="3"];' in dot
    assert '"Start" -> "A";' in dot


# One graph, from Start to how the incident ended

local = pytest.mark.usefixtures("broker", "transactional_db")
SVG = "{http://www.w3.org/2000/svg}"


def svg_edge_strokes(svg: bytes) -> list[dict[str, str]]:
    """The attributes of each edge's line in an SVG drawing (the legend's samples are not edges)."""
    return [path.attrib for group in ET.fromstring(svg).iter(f"{SVG}g") if group.get("class") == "edge"
            for path in group.iter(f"{SVG}path")]


def svg_node_fill(svg: bytes, name: str) -> str:
    node = next(group for group in ET.fromstring(svg).iter(f"{SVG}g")
                if group.get("class") == "node" and group.findtext(f"{SVG}title") == name)
    return next(shape.get("fill") for shape in node if shape.tag in (f"{SVG}polygon", f"{SVG}path"))


@local
def test_a_julia_run_is_one_graph_from_start_through_its_tiles_to_the_end():
    incident_id = operations.start_incident(name="julia", kind=julia.KIND, parameters={
        "width": 16, "height": 16, "tiles": 2, "max_iter": 5})
    run_until_idle()
    built = graph.build(incident_id)
    assert_one_component_from_start(built)
    # julia_start_handler tags its sends "start": they leave where its message arrived.
    assert "start" not in built.nodes
    tiles = [f"tile {row},{col}" for row in range(2) for col in range(2)]
    assert sorted(edges_of(incident_id)) == sorted(
        [(START, "julia_start")] + [("julia_start", t) for t in tiles] + [(t, "stitch") for t in tiles])
    assert end_edges(built) == [("stitch", END)]
    assert built.ending == graph.Ending(IncidentStatus.COMPLETE, "julia_stitch_handler")


@local
def test_a_wildfire_run_is_one_graph_from_start_to_the_end():
    incident_id = operations.start_incident(name="Ridge fire", kind=wildfire.KIND, parameters={
        "bbox": list(synthetic.REGION), "hotspots": str(FIRMS / "viirs_pass1.csv"),
        "map_width": 64})
    run_until_idle()
    built = graph.build(incident_id)
    assert_one_component_from_start(built)
    assert "start" not in built.nodes
    assert {(START, "wildfire_start"), ("wildfire_start", "ingest")} <= set(edges_of(incident_id))
    assert any(name.startswith("simulate ") for name in built.nodes)
    assert end_edges(built) == [("merge", END)]
    assert built.ending is not None and built.ending.status == IncidentStatus.COMPLETE


def test_a_cancelled_quicksort_is_drawn_unlike_a_completed_one(new_incident):
    numbers = [(n * 7919) % 5001 for n in range(10_000)]
    done, cancelled = new_incident(), new_incident()
    MessageLog.objects.bulk_create(quicksort_rows(done, numbers), batch_size=500)
    ledger.end(done, IncidentStatus.COMPLETE, "", by="done_handler")
    rows = quicksort_rows(cancelled, numbers)[:-2]  # it never reached quicksort_done
    for row in rows[-1_103:]:
        row.status = MessageStatus.NOT_PROCESSED
    MessageLog.objects.bulk_create(rows, batch_size=500)
    operations.cancel_incident(cancelled, reason="enough", by="admin")  # its cleanup: from outside

    ok, stopped = graph.build(done), graph.build(cancelled)
    for built in (ok, stopped):
        assert_one_component_from_start(built)
    # The end node: the status, in its colour, entered from what ended the incident.
    assert ok.ending == graph.Ending(IncidentStatus.COMPLETE, "done_handler")
    assert stopped.ending == graph.Ending(IncidentStatus.CANCELLED, "admin")
    assert (ok.ending.colour, stopped.ending.colour) == ("#2e7d32", "#795548")
    assert end_edges(ok) == [("quicksort_done", END)]
    assert end_edges(stopped) == [(START, END)]  # the operator, outside any handler
    # What never ran: dashed grey edges of their own, and counted on the nodes.
    assert not [edge for edge in ok.edges if edge.outcome == NEVER_RAN]
    assert sum(edge.messages for edge in stopped.edges if edge.outcome == NEVER_RAN) == 1_103
    assert sum(node.never_ran for node in stopped.nodes.values()) == 1_103
    dot = graph.to_dot(stopped)
    for node in stopped.nodes.values():
        if node.never_ran:
            assert f"\\n{node.never_ran:,} never ran" in node_line(dot, node.name)
    # The drawings: only the cancelled one has dashed lines, all grey; the end nodes differ.
    ok_svg, stopped_svg = graph.render(done, "svg"), graph.render(cancelled, "svg")
    assert not [line for line in svg_edge_strokes(ok_svg) if "stroke-dasharray" in line]
    dashed = [line for line in svg_edge_strokes(stopped_svg) if "stroke-dasharray" in line]
    assert dashed and {line["stroke"] for line in dashed} == {FAINT}
    assert svg_node_fill(ok_svg, END) == "#2e7d32"
    assert svg_node_fill(stopped_svg, END) == "#795548"


@local
def test_a_quicksort_cancelled_while_running_shows_what_never_ran():
    incident_id = operations.start_incident(name="sort", kind="QUICKSORT",
                                            parameters={"size": 600, "seed": 3})
    with pytest.raises(WorkflowError, match="still busy"):
        run_until_idle(max_messages=12)
    operations.cancel_incident(incident_id, by="admin")
    run_until_idle()  # what was queued is delivered and logged NOT PROCESSED
    built = graph.build(incident_id)
    never_ran = MessageLog.objects.filter(incident_id=incident_id,
                                          status=MessageStatus.NOT_PROCESSED).count()
    assert never_ran > 0
    assert_one_component_from_start(built)
    assert sum(edge.messages for edge in built.edges if edge.outcome == NEVER_RAN) == never_ran
    assert built.ending == graph.Ending(IncidentStatus.CANCELLED, "admin")


@pytest.mark.parametrize(("ended", "outcome", "style"), [
    (False, graph.WAITING, "style=dashed"),
    (True, NEVER_RAN, f'color="{FAINT}", fontcolor="#757575", style=dashed'),
])
def test_messages_still_waiting_are_dashed_and_never_ran_once_the_incident_ended(
    incident, log, ended, outcome, style
):
    log("", "A_queue")
    log("A_handler", "B_queue", status="SENT")
    if ended:
        ledger.end(incident, IncidentStatus.KILLED, "", by="admin")
    built = graph.build(incident)
    assert Edge("A", "B", 1, outcome) in built.edges
    assert f'  "A" -> "B" [{style}];' in graph.to_dot(built)
    assert built.nodes["B"].colour == (GREY if ended else WHITE)


def test_a_failed_incident_draws_its_failed_edge_red_and_its_end_red(incident, log):
    log("", "A_queue")
    log("A_handler", "B_queue", status="ERROR")
    log("B_handler", "_Cleanup")
    ledger.end(incident, IncidentStatus.ERROR, "B_handler failed", by="B_handler")
    built = graph.build(incident)
    assert Edge("A", "B", 1, graph.FAILED) in built.edges
    assert end_edges(built) == [("B", END)]
    dot = graph.to_dot(built)
    assert f'"A" -> "B" [color="{graph.FAILED_RED}", fontcolor="{graph.FAILED_RED}", penwidth=2];' in dot
    assert (f'"{END}" [label="ERROR\\nby B_handler", fillcolor="#c62828", fontcolor="#ffffff", '
            "peripheries=2];") in dot


def test_a_live_incident_has_no_end_node(seed):
    built = graph.build(seed)
    assert built.ending is None and not end_edges(built)
    assert END not in graph.to_dot(built)


def test_a_node_where_nothing_ran_is_grey_and_dashed(incident, log):
    log("", "A_queue", status="NOT PROCESSED")
    assert 'fillcolor="#d3d3d3", style="rounded,filled,dashed"' in node_line(
        graph.to_dot(graph.build(incident)), "A")


def test_an_untagged_first_message_and_a_handler_tag_nothing_arrives_at_make_one_node(incident, log):
    # Julia's shape before a worker ran it: the handler of julia_start tags its sends "start".
    log("", "julia_start")
    log("julia_start_handler", "julia_tile", src_tag="start", dest_tag="tile 0,0")
    assert edges_of(incident) == [(START, "julia_start"), ("julia_start", "tile 0,0")]


def test_a_tag_sent_from_a_handler_that_ran_at_a_few_nodes_is_linked_from_each(incident, log):
    log("", "quicksort_merge", dest_tag="merge rL")
    log("", "quicksort_merge", dest_tag="merge rR")
    log("merge_handler", "quicksort_done", src_tag="combine")
    built = graph.build(incident)
    assert [edge for edge in built.edges if edge.outcome == INFERRED] == [
        Edge("merge rL", "combine", 0, INFERRED), Edge("merge rR", "combine", 0, INFERRED)]
    assert_one_component_from_start(built)


def test_a_log_whose_messages_were_cleaned_still_runs_from_start_to_the_end(incident, log):
    log("done_handler", "_Cleanup")  # CleanMessages=True keeps only the cleanup message
    ledger.end(incident, IncidentStatus.COMPLETE, "", by="done_handler")
    built = graph.build(incident)
    assert built.edges == [Edge(START, "quicksort_done", 0, INFERRED),
                           Edge("quicksort_done", END, 0, ENDED)]
    assert_one_component_from_start(built)


def test_an_ended_incident_without_a_cleanup_message_is_linked_to_its_end_from_start(incident, log):
    log("", "A_queue")
    ledger.end(incident, IncidentStatus.ERROR, "the broker refused it", by="broker")
    built = graph.build(incident)
    assert Edge(START, END, 0, INFERRED) in built.edges
    assert_one_component_from_start(built)


def test_a_handler_unknown_to_this_process_is_linked_from_start(incident, log):
    log("", "A_queue")
    log("elsewhere_handler", "B_queue")
    built = graph.build(incident)
    assert Edge(START, "elsewhere", 0, INFERRED) in built.edges
    assert_one_component_from_start(built)


# Font and legend


def test_nodes_edges_and_legend_are_drawn_in_one_font(incident, log, settings):
    settings.WORKFLOW_GRAPH_MAX_NODES = 2  # a note in the legend too
    for child in ("rL", "rR"):
        log("", "quicksort_split", dest_tag=f"split {child}", status="NOT PROCESSED")
    log("", "quicksort_split", dest_tag="split r")
    ledger.end(incident, IncidentStatus.KILLED, "", by="admin")
    dot = graph.to_dot(graph.build(incident))
    font = f'fontname="{graph.FONT}"'
    assert f"rankdir=LR; {font};" in dot and f"node [shape=box, style=\"rounded,filled\", {font}]" in dot
    assert f"edge [{font}," in dot
    texts = list(ET.fromstring(graph.run_dot(dot, "svg")).iter(f"{SVG}text"))
    assert len(texts) > 20  # node and edge labels, the legend, the note
    assert {text.get("font-family") for text in texts} == {"Helvetica,sans-Serif"}


def test_the_legend_draws_each_line_style_as_the_edges_are_drawn(incident, log):
    log("", "A_queue")
    log("A_handler", "B_queue", status="NOT PROCESSED")
    log("", "_Cleanup")
    ledger.end(incident, IncidentStatus.CANCELLED, "", by="admin")
    svg = graph.render(incident, "svg")
    text = svg.decode()
    for meaning in ("messages handled", "failed (ERROR)", "waiting (QUEUED, SENT)",
                    "never ran (NOT PROCESSED)", "link inferred, not logged", "nothing ran",
                    "COMPLETE", "CANCELLED", "KILLED"):
        assert f">{meaning}<" in text
    [never_ran] = [line for line in svg_edge_strokes(svg) if "stroke-dasharray" in line]
    samples = {(line.get("stroke"), line.get("stroke-dasharray"))
               for line in ET.fromstring(svg).iter(f"{SVG}polyline")}  # the legend's lines
    assert (never_ran["stroke"], never_ran["stroke-dasharray"]) == (FAINT, "5,2")
    assert (FAINT, "5,2") in samples


# Colours and labels


@pytest.mark.parametrize(
    ("statuses", "colour"),
    [
        (["COMPLETE", "ERROR", "PROCESSING"], RED),
        (["COMPLETE", "PROCESSING", "SENT"], ORANGE),
        (["COMPLETE", "SENT"], WHITE),
        (["COMPLETE", "QUEUED", "NOT PROCESSED"], WHITE),
        (["COMPLETE", "NOT PROCESSED"], GREEN),
        (["NOT PROCESSED"], GREY),
    ],
)
def test_a_node_is_coloured_by_the_statuses_of_the_messages_it_received(incident, log, statuses, colour):
    for status in statuses:
        log("", "A_queue", status=status)
    built = graph.build(incident)
    assert built.nodes["A"].colour == colour
    assert built.nodes["Start"].colour == WHITE
    assert f'fillcolor="{colour}"' in node_line(graph.to_dot(built), "A")


def test_a_node_label_gives_the_total_handling_time_and_message_count(incident, log):
    for duration in (0.1, 0.2, 0.12, None):
        log("", "quicksort_split", dest_tag="split", duration=duration)
    dot = graph.to_dot(graph.build(incident))
    assert '"split" [label="split\\n0.42 s, 4 msgs", fillcolor="#b7e4c7"];' in dot
    assert '"Start" [label="Start", fillcolor="#ffffff"];' in dot  # received nothing: no counts


def test_a_node_that_received_one_message_says_msg(seed):
    assert '"B" [label="B\\n0.01 s, 1 msg"' in graph.to_dot(graph.build(seed))


# DOT text


def test_tags_with_quotes_backslashes_and_newlines_are_quoted_and_dot_accepts_them(incident, log):
    log("", "A_queue", dest_tag='say "hi" \\N')
    log("A_handler", "B_queue", src_tag='say "hi" \\N', dest_tag="two\nlines")
    dot = graph.to_dot(graph.build(incident))
    assert '"Start" -> "say \\"hi\\" \\\\N";' in dot
    assert '"say \\"hi\\" \\\\N" -> "two\\nlines";' in dot
    svg = graph.render(incident, "svg").decode()
    assert "say &quot;hi&quot; \\N" in svg  # drawn literally, not as dot's \N (node name) escape
    assert svg.count("<g id=\"node") == 3


def test_the_dot_text_does_not_depend_on_the_order_messages_were_logged(new_incident):
    first, second = new_incident(), new_incident()
    shape = [("", "A_queue", "COMPLETE"), ("A_handler", "B_queue", "ERROR"),
             ("A_handler", "C_queue", "SENT"), ("C_handler", "B_queue", "COMPLETE")]
    MessageLog.objects.bulk_create([log_row(first, *row[:2], status=row[2]) for row in shape])
    MessageLog.objects.bulk_create([log_row(second, *row[:2], status=row[2]) for row in reversed(shape)])
    assert graph.to_dot(graph.build(first)) == graph.to_dot(graph.build(second))


# Large incidents


def test_more_tagged_nodes_than_the_setting_allows_are_collapsed_by_handler(incident, log, settings):
    settings.WORKFLOW_GRAPH_MAX_NODES = 3
    log("", "quicksort_split", dest_tag="split r")
    for child in ("rL", "rR"):
        log("split_handler", "quicksort_split", src_tag="split r", dest_tag=f"split {child}")
    built = graph.build(incident)
    # The registered handler's sends start from the node of the queue it serves.
    assert built.edges == [Edge("Start", "quicksort_split", 1),
                           Edge("quicksort_split", "quicksort_split", 2)]
    assert built.note == "4 tagged nodes collapsed by handler"
    assert "<B>4 tagged nodes collapsed by handler</B>" in graph.to_dot(built)  # atop the legend


def test_tagged_nodes_up_to_the_setting_are_kept(incident, log, settings):
    settings.WORKFLOW_GRAPH_MAX_NODES = 2
    log("", "quicksort_split", dest_tag="split r")
    built = graph.build(incident)
    assert list(built.nodes) == ["Start", "split r"]
    assert built.note == ""


def test_a_ten_thousand_number_quicksort_is_collapsed_and_drawn_as_svg(
    incident, django_assert_max_num_queries
):
    numbers = [(n * 7919) % 5001 for n in range(10_000)]
    rows = quicksort_rows(incident, numbers)
    MessageLog.objects.bulk_create(rows, batch_size=500)
    assert len(rows) > 2_000
    with django_assert_max_num_queries(3):  # look-up, tagged and collapsed aggregates
        built = graph.build(incident)
    assert built.note.endswith("tagged nodes collapsed by handler")
    assert int(built.note.split()[0].replace(",", "")) > 2_000
    assert set(built.nodes) == {"Start", "quicksort_split", "quicksort_merge", "quicksort_done"}
    svg = graph.render(incident, "svg")
    assert b"<svg" in svg and b"collapsed by handler" in svg


# Rendering and errors


def test_svg_and_png_are_real_drawings(seed):
    svg = graph.render(seed, "svg")
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b">Start</text>" in svg
    assert graph.render(seed, "png").startswith(b"\x89PNG\r\n\x1a\n")


def test_the_dot_format_is_the_dot_text(seed):
    assert graph.render(seed, "dot") == graph.to_dot(graph.build(seed)).encode()


def test_an_unknown_incident_is_refused(db):
    with pytest.raises(UnknownIncident, match="graph: no incident has IncidentID"):
        graph.render(str(uuid.uuid4()), "dot")


def test_a_malformed_incident_id_is_refused(db):
    with pytest.raises(MessageError, match="'nope' is not a UUID"):
        graph.build("nope")


def test_an_unknown_format_is_refused(seed):
    with pytest.raises(MessageError, match="format 'pdf' is not one of dot, svg, png"):
        graph.render(seed, "pdf")


def test_a_missing_dot_program_says_to_install_graphviz(seed, monkeypatch):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    with pytest.raises(WorkflowConfigError, match="install graphviz"):
        graph.render(seed, "svg")
    assert graph.render(seed, "dot").startswith(b"digraph")


# The management command


def test_the_command_writes_the_format_named_by_the_file_extension(seed, tmp_path):
    out, target = io.StringIO(), tmp_path / "seed.svg"
    call_command("incident_graph", seed, "-o", str(target), stdout=out)
    data = target.read_bytes()
    assert b"<svg" in data
    assert out.getvalue() == f"wrote {target} ({len(data)} bytes)\n"


def test_the_command_format_option_wins_over_the_extension(seed, tmp_path):
    target = tmp_path / "seed.out"
    call_command("incident_graph", seed, "-o", str(target), "--format", "png", stdout=io.StringIO())
    assert target.read_bytes().startswith(b"\x89PNG")


def test_the_command_prints_dot_text_to_stdout_by_default(seed):
    out = io.StringIO()
    call_command("incident_graph", seed, stdout=out)
    assert out.getvalue().startswith("digraph incident {") and '"Start" -> "A";' in out.getvalue()


def test_the_command_writes_png_bytes_to_a_stdout_that_is_not_a_terminal(seed):
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    call_command("incident_graph", seed, "--format", "png", stdout=out)
    assert raw.getvalue().startswith(b"\x89PNG")


def test_the_command_refuses_png_to_a_terminal(seed):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(CommandError, match=r"write it to a file with -o FILE\.png"):
        call_command("incident_graph", seed, "--format", "png", stdout=Terminal())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([str(uuid.UUID(int=1))], "no incident has IncidentID '00000000-0000-0000-0000-000000000001'"),
        (["not-a-uuid"], "IncidentID 'not-a-uuid' is not a UUID"),
        (["{incident}", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["{incident}", "-o", "graph.pdf"], "cannot tell the format from 'graph.pdf'"),
    ],
)
def test_each_bad_command_input_is_a_command_error_saying_what_is_wrong(incident, args, says):
    args = [arg.format(incident=incident) for arg in args]
    with pytest.raises(CommandError, match=says):
        call_command("incident_graph", *args, stdout=io.StringIO())


def test_the_command_reports_a_file_it_cannot_write(seed, tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        call_command("incident_graph", seed, "-o", str(tmp_path / "missing" / "g.dot"),
                     stdout=io.StringIO())
