"""Incident priority: every message carries its incident's, and waiting messages of a higher
priority are delivered first (RabbitMQ priority queues; the same order on the embedded
broker), also after an operator raises a live incident's priority."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents import workflow
from incidents.engine import (
    celery_app,
    deadletter,
    dispatch,
    operations,
    publisher,
    queue_migration,
    registry,
    worker,
)
from incidents.engine import priority as priorities
from incidents.exceptions import MessageError, WorkflowError
from incidents.models import (
    Incident,
    IncidentPriority,
    MessageLog,
    MessageStatus,
    OperatorAction,
)
from incidents.processes import WorkerGroup, worker_env

from .conftest import TEST_MODULES, wait_until
from .test_fsbroker import connection as fs_connection

registry.load_workflow_modules(["tests.workflows.priority"])

WORK, NEXT = "priority_work", "priority_next"
URGENT, NORMAL = int(IncidentPriority.URGENT), int(IncidentPriority.NORMAL)


@pytest.fixture
def priority_workers(transactional_db, broker) -> Iterator[WorkerGroup]:
    modules = f"{TEST_MODULES},tests.workflows.priority"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


def incident(level: str | None = None) -> str:
    return workflow.CreateIncident(name=f"{level or 'default'} incident", kind="TEST",
                                   priority=level)


def send(incident_id: str, queue: str = WORK, **fields) -> str:
    message_id = workflow.send({"IncidentID": incident_id, **fields}, queue)
    assert message_id is not None
    return message_id


def take_waiting(queue: str) -> dict[str, tuple[int | None, dict]]:
    """Take every message waiting in the queue from the broker: task id -> (its priority
    property, its body)."""
    publisher.for_this_thread().settle()  # what was published is in its queue
    app = celery_app.get()
    taken = {}
    with app.connection_for_write() as conn:
        waiting = deadletter.handler_queue(queue).bind(conn.default_channel)
        while (message := waiting.get(no_ack=False, accept=["json"])) is not None:
            taken[message.headers["id"]] = (message.properties.get("priority"),
                                            message.payload[0][0])
            message.ack()
    return taken


# -- levels -------------------------------------------------------------------------------

@pytest.mark.parametrize(("level", "value"), [
    ("urgent", 3), ("URGENT", 3), (" High ", 2), (3, 3), ("3", 3), ("low", 0), (0, 0),
    (IncidentPriority.NORMAL, 1)])
def test_a_level_is_read_from_its_name_in_any_case_or_its_number(level, value):
    assert priorities.parse_level(level, where="test") == value


@pytest.mark.parametrize("level", ["critical", 4, -1, "", None, True, 2.0, "9"])
def test_a_level_that_is_none_of_the_scale_is_refused_naming_the_levels(level):
    with pytest.raises(MessageError, match=r"test: priority .* use one of low \(0\), normal "
                                           r"\(1\), high \(2\), urgent \(3\)"):
        priorities.parse_level(level, where="test")


def test_an_incident_is_normal_unless_created_with_a_priority(transactional_db):
    assert Incident.objects.get(pk=incident()).priority == NORMAL
    assert Incident.objects.get(pk=incident("urgent")).priority == URGENT
    with pytest.raises(MessageError, match=r"CreateIncident\(\): priority 'asap'"):
        incident("asap")
    started = operations.start_incident(kind="TEST", name="x", queue=WORK, message={},
                                        priority="high")
    assert Incident.objects.get(pk=started).priority == IncidentPriority.HIGH
    assert MessageLog.objects.get(incident_id=started).priority == IncidentPriority.HIGH


def test_create_incident_takes_a_priority_on_the_command_line(transactional_db, capsys):
    call_command("create_incident", "--name", "cli", "--kind", "TEST", "--queue", WORK,
                 "--priority", "Urgent")
    incident_id = capsys.readouterr().out.strip()
    assert Incident.objects.get(pk=incident_id).priority == URGENT


# -- the embedded broker's order ----------------------------------------------------------

def test_the_embedded_broker_delivers_higher_priorities_first_then_oldest_first(tmp_path):
    with fs_connection(tmp_path) as conn:
        queue = conn.SimpleQueue("prio")
        for name, level in [("normal-1", 1), ("low", 0), ("urgent-1", 3), ("normal-2", 1),
                            ("urgent-2", 3), ("high", 2), ("none", None)]:
            queue.put({"n": name}, **({} if level is None else {"priority": level}))

        def take():
            message = queue.get(timeout=1)
            message.ack()
            return message.payload["n"]

        assert [take() for _ in range(3)] == ["urgent-1", "urgent-2", "high"]
        given_back = queue.get(timeout=1)  # normal-1, given back as a dying worker would
        assert given_back.payload["n"] == "normal-1"
        given_back.requeue()
        queue.put({"n": "urgent-3"}, priority=3)
        assert [take() for _ in range(5)] == ["urgent-3", "normal-1", "normal-2", "low", "none"]
        queue.close()


def test_the_embedded_broker_still_delivers_files_named_before_priorities(tmp_path):
    with fs_connection(tmp_path) as conn:
        queue = conn.SimpleQueue("old")
        queue.put({"n": "written before the upgrade"}, priority=1)
        [new] = list((tmp_path / "queue").rglob("*.old.msg"))
        assert new.name.startswith("p8_") and new.parent == tmp_path / "queue" / "old.q" / "p8"
        new.rename(tmp_path / "queue" / f"000000012345678_000000000001_{uuid.uuid4()}.old.msg")
        queue.put({"n": "urgent"}, priority=3)
        assert queue.get(timeout=1).payload["n"] == "written before the upgrade"
        assert queue.get(timeout=1).payload["n"] == "urgent"
        queue.close()


# -- every message carries its incident's priority ---------------------------------------

def test_messages_sent_outside_a_handler_carry_their_incidents_priority(transactional_db,
                                                                         broker):
    urgent, normal, low = incident("urgent"), incident(), incident("low")
    ids = {send(urgent): URGENT, send(normal): NORMAL, send(low): 0}
    with CaptureQueriesContext(connection) as queries:
        workflow.FlushMessages()
    read = [q["sql"] for q in queries if q["sql"].startswith("SELECT")
            and "incidents_incident" in q["sql"]]
    assert len(read) == 1  # one query for the priorities of the whole flush
    assert {str(r.pk): r.priority for r in MessageLog.objects.all()} == ids
    assert {task_id: level for task_id, (level, _) in take_waiting(WORK).items()} == ids


def test_a_handlers_sends_carry_its_incidents_priority_read_with_its_message(transactional_db,
                                                                            broker):
    urgent, normal = incident("urgent"), incident()
    Incident.objects.filter(pk__in=[urgent, normal]).update(status="ACTIVE")
    own = send(urgent, to=NEXT)
    other = send(normal, to=NEXT, **{"for": urgent})  # a send to another incident
    plain = send(normal, to=NEXT)
    workflow.FlushMessages()
    waiting = take_waiting(WORK)
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.deliver(WORK, waiting[own][1]).result is dispatch.Result.COMPLETE
    read = [q["sql"] for q in queries if q["sql"].startswith("SELECT")
            and "incidents_incident" in q["sql"]]
    assert len(read) == 1  # the look-up before the handler: no query more for the priority
    for message_id in (other, plain):
        assert dispatch.deliver(WORK, waiting[message_id][1]).result is dispatch.Result.COMPLETE
    sent = MessageLog.objects.filter(destination=NEXT)
    assert sorted(sent.values_list("incident_id", "priority")) == sorted(
        [(uuid.UUID(urgent), URGENT), (uuid.UUID(urgent), URGENT), (uuid.UUID(normal), NORMAL)])
    assert sorted(level for level, _ in take_waiting(NEXT).values()) == [NORMAL, URGENT, URGENT]


def test_an_incidents_cleanup_and_timers_carry_its_priority(transactional_db, broker):
    urgent = incident("urgent")
    timer = workflow.send({"IncidentID": urgent}, WORK, delay=3600)
    workflow.FlushMessages()
    assert MessageLog.objects.get(pk=timer).priority == URGENT
    workflow.Complete(urgent)
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(incident_id=urgent, destination=registry.CLEANUP_QUEUE)
    assert cleanup.priority == URGENT
    assert take_waiting(registry.CLEANUP_QUEUE)[str(cleanup.pk)][0] == URGENT


# -- delivery order on real workers --------------------------------------------------------

def handled_order(*incident_ids: str) -> list[str]:
    rows = MessageLog.objects.filter(incident_id__in=incident_ids, destination=WORK)
    assert all(r.status == MessageStatus.COMPLETE and r.attempts == 1 for r in rows), [
        (r.status, r.attempts) for r in rows]
    return [str(r.incident_id) for r in rows.order_by("received")]


def all_handled(*incident_ids: str, count: int) -> bool:
    return MessageLog.objects.filter(incident_id__in=incident_ids, destination=WORK,
                                     status=MessageStatus.COMPLETE).count() == count


def overtaken_by(order: list[str], first: str) -> int:
    """How many messages of other incidents were handled before the last one of `first`."""
    last = max(i for i, incident_id in enumerate(order) if incident_id == first)
    return sum(incident_id != first for incident_id in order[:last])


# One worker process, prefetch 1 (worker_prefetch_multiplier = 1) and acks late: it holds at
# most one message it has not finished. Everything here waits in the queue before the
# worker starts, so the broker's first delivery is already an urgent one; at most one normal
# message (one prefetched before the urgent ones arrived) could go before them.
MAY_GO_FIRST = 1


@pytest.mark.e2e
def test_an_urgent_incidents_messages_overtake_a_waiting_backlog(priority_workers):
    normal, urgent = incident(), incident("urgent")
    for _ in range(30):
        send(normal)
    workflow.FlushMessages()
    for _ in range(5):
        send(urgent)
    workflow.FlushMessages()
    priority_workers.start("w1", concurrency=1)
    wait_until(lambda: all_handled(normal, urgent, count=35), what="35 messages handled")
    order = handled_order(normal, urgent)
    assert overtaken_by(order, urgent) <= MAY_GO_FIRST, order


@pytest.mark.e2e
def test_raising_a_priority_republishes_waiting_messages_so_they_overtake(priority_workers):
    backlog, raised = incident(), incident()
    for _ in range(20):
        send(backlog)
    workflow.FlushMessages()
    raised_ids = [send(raised) for _ in range(5)]
    workflow.FlushMessages()

    report = priorities.set_priority(raised, "urgent", reason="evacuation",
                                     by="alice")

    assert (report.incident_id, report.before, report.after, report.republished) == (
        raised, NORMAL, URGENT, 5)
    assert set(MessageLog.objects.filter(incident_id=raised).values_list("priority", flat=True)) \
        == {URGENT}
    action = OperatorAction.objects.get(incident_id=raised, action="set_priority")
    assert (action.by, action.reason, action.details) == (
        "alice", "evacuation", {"before": NORMAL, "after": URGENT, "republished": 5})
    worker = priority_workers.start("w1", concurrency=1)
    wait_until(lambda: all_handled(backlog, raised, count=25), what="25 messages handled")
    order = handled_order(backlog, raised)  # each handled once, on its first attempt
    assert overtaken_by(order, raised) <= MAY_GO_FIRST, order
    # The old copies, behind the backlog, are dropped once each.
    wait_until(lambda: all(worker.log_text().count(f"message {m} already COMPLETE; duplicate "
                                                   "delivery dropped") == 1 for m in raised_ids),
               what="the old copies to be dropped")


def test_a_priority_change_to_the_same_level_changes_and_records_nothing(transactional_db,
                                                                          broker):
    urgent = incident("urgent")
    send(urgent)
    workflow.FlushMessages()
    report = priorities.set_priority(urgent, 3, by="bob")
    assert (report.before, report.after, report.republished) == (URGENT, URGENT, 0)
    assert not OperatorAction.objects.filter(incident_id=urgent).exists()
    assert len(take_waiting(WORK)) == 1


def test_a_priority_change_moves_pending_timers_without_publishing_them(transactional_db,
                                                                         broker):
    normal = incident()
    timer = workflow.send({"IncidentID": normal}, WORK, delay=3600)
    workflow.FlushMessages()
    assert priorities.set_priority(normal, "high").republished == 0
    row = MessageLog.objects.get(pk=timer)
    assert (row.priority, row.status) == (IncidentPriority.HIGH, MessageStatus.QUEUED)
    assert take_waiting(WORK) == {}


def test_an_ended_or_unknown_incidents_priority_cannot_change(transactional_db, broker):
    ended = incident()
    workflow.Cancel(ended)
    workflow.FlushMessages()
    with pytest.raises(MessageError, match=r"has ended \(CANCELLED\); only a live"):
        priorities.set_priority(ended, "urgent")
    with pytest.raises(WorkflowError, match="no incident"):
        priorities.set_priority(str(uuid.uuid4()), "urgent")
    with pytest.raises(MessageError, match="use one of"):
        priorities.set_priority(ended, "asap")
    assert Incident.objects.get(pk=ended).priority == NORMAL


# -- RabbitMQ: queues declared before priorities -----------------------------------------

OLD_ARGUMENTS = {"x-dead-letter-exchange": "",
                 "x-dead-letter-routing-key": deadletter.DEAD_LETTER_QUEUE}


@pytest.fixture
def old_queue(transactional_db, broker) -> Iterator[str]:
    """NEXT as an older version declared it (no x-max-priority), holding one message."""
    app = celery_app.get()
    if not app.conf.broker_url.startswith("amqp"):
        pytest.skip("queue arguments are RabbitMQ's; the embedded broker has none")
    with app.connection_for_write() as conn:
        channel = conn.channel()
        channel.queue_delete(NEXT)
        channel.queue_delete(queue_migration.temporary(NEXT))
        channel.queue_declare(NEXT, durable=True, auto_delete=False, arguments=OLD_ARGUMENTS)
        channel.queue_bind(NEXT, NEXT, NEXT)
        channel.close()
        conn.Producer().publish({"old": True}, exchange=NEXT, routing_key=NEXT,
                                headers={"id": "old-1", "x-extra": "kept"}, priority=2)
    try:
        yield NEXT
    finally:
        with app.connection_for_write() as conn:
            conn.channel().queue_delete(NEXT)


def state_of(name: str) -> queue_migration.QueueState:
    with celery_app.get().connection_for_write() as conn:
        [state] = queue_migration.survey(conn, [name])
    return state


@pytest.mark.services
def test_migrate_queues_keeps_the_messages_of_a_queue_declared_before_priorities(
        old_queue, capsys):
    call_command("migrate_queues")
    out = capsys.readouterr().out
    assert f"would {NEXT}: move its 1 message(s)" in out and "--apply" in out
    assert state_of(NEXT).outdated  # a dry run changes nothing

    call_command("migrate_queues", "--apply")
    assert "migrated 1 queue(s) (1 message(s) kept)" in capsys.readouterr().out
    state = state_of(NEXT)
    assert (state.outdated, state.messages, state.leftover) == (False, 1, None)
    with celery_app.get().connection_for_write() as conn:
        message = deadletter.handler_queue(NEXT).bind(conn.default_channel).get()
        assert message.payload == {"old": True}
        assert message.headers == {"id": "old-1", "x-extra": "kept"}
        assert message.properties["priority"] == 2
        message.ack()
    call_command("migrate_queues", "--apply")
    assert "up to date: nothing to migrate" in capsys.readouterr().out


@pytest.mark.services
def test_migrate_queues_moves_back_what_an_interrupted_run_left_behind(old_queue, capsys):
    holding = queue_migration.temporary(NEXT)
    with celery_app.get().connection_for_write() as conn:  # as if it died after the move
        channel = conn.channel()
        channel.queue_declare(holding, durable=True, auto_delete=False,
                              arguments=deadletter.QUEUE_ARGUMENTS)
        channel.close()
        assert queue_migration._move(conn, NEXT, holding) == 1
    call_command("migrate_queues")
    assert f"move the 1 message(s) left in {holding} (an interrupted migration) back" in \
        capsys.readouterr().out
    call_command("migrate_queues", "--apply")
    state = state_of(NEXT)
    assert (state.outdated, state.messages, state.leftover) == (False, 1, None)


@pytest.mark.services
def test_a_worker_refuses_to_start_on_a_queue_declared_before_priorities(old_queue,
                                                                        priority_workers):
    with pytest.raises(WorkflowError) as refused:
        priority_workers.start("w-old", concurrency=1, timeout=30)
    assert f"RabbitMQ queue(s) {NEXT} were declared by an older version" in str(refused.value)
    assert "manage.py migrate_queues --apply" in str(refused.value)
    assert state_of(NEXT).messages == 1  # untouched


@pytest.mark.services
def test_a_publish_to_a_queue_declared_before_priorities_says_to_migrate(old_queue):
    # A connection that declared the queue before (another test) would not declare it again.
    worker.close_connection()
    urgent = incident("urgent")
    message_id = send(urgent, NEXT)
    workflow.FlushMessages()
    row = MessageLog.objects.get(pk=message_id)
    assert row.status == MessageStatus.QUEUED and row.publish_failures == 1
    assert "PRECONDITION_FAILED" in row.comment and "manage.py migrate_queues" in row.comment


def test_migrate_queues_on_the_embedded_broker_has_nothing_to_do(transactional_db, capsys):
    if celery_app.get().conf.broker_url.startswith("amqp"):
        pytest.skip("the embedded broker's answer")
    call_command("migrate_queues", "--apply")
    assert "nothing to migrate" in capsys.readouterr().out

