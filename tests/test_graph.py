"""The incident graph: nodes and edges from the message log, colours, labels, collapse, rendering."""
from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from incidents import workflow
from incidents.engine import graph
from incidents.engine.graph import GREEN, GREY, ORANGE, RED, WHITE, Edge
from incidents.exceptions import MessageError, UnknownIncident, WorkflowConfigError
from incidents.models import MessageLog

LEAF_SIZE = 16  # as in workflows/quicksort.py


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
    return [(edge.sender, edge.receiver) for edge in graph.build(incident_id).edges]


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


def test_messages_between_the_same_nodes_make_one_edge_labelled_with_their_count(incident, log):
    for _ in range(3):
        log("A_handler", "B_queue")
    log("", "A_queue")
    built = graph.build(incident)
    assert built.edges == [Edge("A", "B", 3), Edge("Start", "A", 1)]
    dot = graph.to_dot(built)
    assert '"A" -> "B" [label="3"];' in dot
    assert '"Start" -> "A";' in dot


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
    assert 'label="4 tagged nodes collapsed by handler"; labelloc=t;' in graph.to_dot(built)


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
