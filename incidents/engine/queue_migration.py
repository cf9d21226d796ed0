"""Moving RabbitMQ handler queues declared by an older version to today's arguments.

A queue's arguments never change once declared, and every handler queue is now a priority
queue (`x-max-priority`, engine/deadletter.py). A queue declared before that is refused by
RabbitMQ (PRECONDITION_FAILED) when a worker or a publisher declares it anew, so it is
replaced, with the workers stopped: its messages move to a temporary queue declared with the
new arguments, the old queue is deleted and declared anew, and the messages move back.
Each move takes one message, publishes a copy (same body, headers and properties) on a
confirmed channel and only then acks the original: a crash leaves a message twice (handled
once, by its log row), never nowhere. A run after a crash finds a leftover temporary queue
and moves its messages back, so migrate() can always be run again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import amqp
from amqp.exceptions import ChannelError, NotFound, PreconditionFailed

from incidents.engine import celery_app, deadletter, registry
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.exceptions import WorkflowConfigError

logger = logging.getLogger(__name__)

COMMAND = "python manage.py migrate_queues --apply"
HINT = (f"the queue was declared by an older version (before priority queues); stop the "
        f"workers and run `{COMMAND}`")
TEMPORARY_PREFIX = "_migrating."


class OutdatedQueues(WorkflowConfigError):
    """RabbitMQ holds handler queues declared with other arguments than this version's."""


@dataclass
class QueueState:
    """A handler queue as RabbitMQ has it, and its temporary queue (a crashed migration)."""

    name: str
    exists: bool
    outdated: bool  # declared with other arguments
    messages: int
    consumers: int
    leftover: int | None  # messages in its temporary queue; None: there is none

    @property
    def needs_work(self) -> bool:
        return self.outdated or self.leftover is not None

    def plan(self) -> str:
        steps = []
        if self.outdated:
            steps.append(f"move its {self.messages} message(s) to {temporary(self.name)}, "
                         "delete it, declare it with x-max-priority, move them back")
        if self.leftover is not None:
            steps.append(f"move the {self.leftover} message(s) left in {temporary(self.name)} "
                         "(an interrupted migration) back, then delete that queue")
        return f"{self.name}: " + "; ".join(steps)


@dataclass
class MigrationReport:
    applied: bool
    broker: str  # "rabbitmq", or "embedded": nothing to migrate
    queues: list[QueueState]
    moved: int = 0  # messages moved back into migrated queues

    @property
    def to_migrate(self) -> list[QueueState]:
        return [q for q in self.queues if q.needs_work]


def temporary(name: str) -> str:
    return TEMPORARY_PREFIX + name


def handler_queue_names() -> list[str]:
    return sorted({*registry.registered_queues(), CLEANUP_QUEUE})


def hint_for(error: BaseException) -> str:
    """What to do about a broker refusal, when it is an outdated queue's declaration."""
    text = str(error)
    return f"; {HINT}" if "inequivalent arg" in text and "x-max-priority" in text else ""


def is_rabbitmq(connection: Any) -> bool:
    return connection.transport.driver_type == "amqp"


@contextmanager
def _channel(connection: Any) -> Iterator[Any]:  # py-amqp's stubs are loose (Any)
    """A channel of its own: a refused declare closes the channel it was made on."""
    channel = connection.connection.channel()
    try:
        yield channel
    finally:
        if channel.is_open:
            channel.close()


def _declared(connection: Any, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of the queue, without creating it; None if it does not exist."""
    with _channel(connection) as channel:
        try:
            _, messages, consumers = channel.queue_declare(name, passive=True)
        except NotFound:
            return None
    return messages, consumers


def _declare_current(channel: Any, name: str) -> None:
    """Declare the queue as handler_queue() does (durable, not auto-deleted, its arguments)."""
    channel.queue_declare(name, durable=True, auto_delete=False,
                          arguments=deadletter.QUEUE_ARGUMENTS)


def _is_current(connection: Any, name: str) -> bool:
    """Whether an existing queue has today's arguments: RabbitMQ refuses a declare that
    differs (PRECONDITION_FAILED) and does nothing for one that matches."""
    with _channel(connection) as channel:
        try:
            _declare_current(channel, name)
        except PreconditionFailed:
            return False
    return True


def survey(connection: Any, names: list[str]) -> list[QueueState]:
    states = []
    for name in names:
        declared = _declared(connection, name)
        leftover = _declared(connection, temporary(name))
        messages, consumers = declared or (0, 0)
        states.append(QueueState(
            name, declared is not None,
            outdated=declared is not None and not _is_current(connection, name),
            messages=messages, consumers=consumers,
            leftover=None if leftover is None else leftover[0]))
    return states


def refuse_outdated(connection: Any, names: list[str]) -> None:
    """Raise OutdatedQueues, naming the command that fixes it, if any of these queues was
    declared by an older version (a worker would otherwise die on a bare PRECONDITION_FAILED)."""
    if not is_rabbitmq(connection):
        return
    outdated = [name for name in names
                if _declared(connection, name) is not None and not _is_current(connection, name)]
    if outdated:
        raise OutdatedQueues(
            f"RabbitMQ queue(s) {', '.join(outdated)} were declared by an older version "
            f"(without x-max-priority: handler queues are priority queues now); stop every "
            f"worker and run `{COMMAND}` (`python manage.py migrate_queues` first shows what "
            "it would do), then start the workers again")


def _move(connection: Any, source: str, destination: str) -> int:
    """Move every message of `source` to `destination` (through the default exchange), each
    copy confirmed before its original is acked; how many moved."""
    moved = 0
    with _channel(connection) as channel:
        channel.confirm_select()
        while True:
            message = channel.basic_get(source, no_ack=False)
            if message is None:
                return moved
            copy = amqp.Message(message.body, **message.properties)
            channel.basic_publish_confirm(copy, exchange="", routing_key=destination)
            channel.basic_ack(message.delivery_tag)
            moved += 1


def _delete_if_empty(connection: Any, name: str) -> bool:
    """Delete the queue if nothing is in it (a publish may have arrived meanwhile)."""
    with _channel(connection) as channel:
        try:
            channel.queue_delete(name, if_empty=True)
        except PreconditionFailed:
            return False
    return True


def _replace(connection: Any, state: QueueState, say: Callable[[str], None]) -> int:
    name, holding = state.name, temporary(state.name)
    if state.outdated:
        with _channel(connection) as channel:
            _declare_current(channel, holding)
        while True:  # a publisher may add a message between the move and the delete
            say(f"{name}: moved {_move(connection, name, holding)} message(s) to {holding}")
            if _delete_if_empty(connection, name):
                break
        say(f"{name}: deleted (it had the old arguments)")
    # Declared as workers and publishers declare it: its exchange, binding and arguments.
    with _channel(connection) as channel:
        deadletter.handler_queue(name).bind(channel).declare()
    say(f"{name}: declared with x-max-priority")
    moved = 0
    if _declared(connection, holding) is not None:
        while True:
            moved += _move(connection, holding, name)
            if _delete_if_empty(connection, holding):
                break
        say(f"{name}: moved {moved} message(s) back; {holding} deleted")
    return moved


def migrate(*, apply: bool = False, say: Callable[[str], None] = logger.info) -> MigrationReport:
    """Survey the handler queues (dry run) or, with `apply`, migrate those that need it.
    Refuses (OutdatedQueues) while a queue to migrate has consumers."""
    app = celery_app.get()
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        if not is_rabbitmq(connection):
            return MigrationReport(apply, "embedded", [])
        states = survey(connection, handler_queue_names())
        report = MigrationReport(apply, "rabbitmq", states)
        busy = [s.name for s in report.to_migrate if s.outdated and s.consumers]
        if busy:
            raise OutdatedQueues(f"queue(s) {', '.join(busy)} have consumers: stop the workers "
                                 "first (a queue with consumers cannot be replaced safely)")
        if apply:
            for state in report.to_migrate:
                try:
                    report.moved += _replace(connection, state, say)
                except ChannelError as exc:
                    raise OutdatedQueues(f"queue {state.name}: RabbitMQ refused a step of the "
                                         f"migration ({exc}); fix that and run `{COMMAND}` "
                                         "again: it carries on where it stopped") from exc
    return report
