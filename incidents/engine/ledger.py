"""The ledger: every status change of a logged message and of an incident, in one place.

A message is QUEUED when committed, SENT once published, PROCESSING while a claimed
run handles it, and ends COMPLETE, ERROR or NOT PROCESSED. An incident is PENDING, ACTIVE
once its first message is handled, and ends COMPLETE, CANCELLED, ERROR or KILLED. Each
change is a conditional update (the row must still be where the caller saw it), so two
processes racing for one message never both win. The per-message statements (look up,
claim, finish, insert) are written out by hand and built once: the ORM's query compiler
cost more than the database did on the hot path.
"""
from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import F, Field, Model, Q, QuerySet
from django.db.models.functions import Least
from django.utils import timezone

from incidents.engine.registry import CLEANUP_QUEUE
from incidents.models import (
    IN_FLIGHT_STATUSES,
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    ExternalResource,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
    ResourceStatus,
)


@dataclass(frozen=True)
class Entry:
    """What a delivery needs to know of its message's log row and incident."""

    incident_id: str
    destination: str
    status: str
    attempts: int
    incident_status: str
    incident_priority: int = 1  # IncidentPriority.NORMAL; what its handler's sends carry


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(str(_field(model, name).column))


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _prep(model: type[Model], name: str, value: Any) -> Any:
    return _field(model, name).get_db_prep_save(value, connection)


def _execute(sql: str, params: Sequence[Any]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else cursor.rowcount


# -- messages -----------------------------------------------------------------------------

@functools.cache
def _lookup_sql(vendor: str) -> str:
    m, i = _table(MessageLog), _table(Incident)
    return (f"SELECT {m}.{_column(MessageLog, 'incident')}, {m}.{_column(MessageLog, 'destination')}, "
            f"{m}.{_column(MessageLog, 'status')}, {m}.{_column(MessageLog, 'attempts')}, "
            f"{i}.{_column(Incident, 'status')}, {i}.{_column(Incident, 'priority')} "
            f"FROM {m} JOIN {i} ON {i}.{_column(Incident, 'id')} "
            f"= {m}.{_column(MessageLog, 'incident')} WHERE {m}.{_column(MessageLog, 'id')} = %s")


def lookup(message_id: str) -> Entry | None:
    """The message's row and its incident's status and priority, in one read; None if it is
    not logged."""
    row = _execute(_lookup_sql(connection.vendor), [_prep(MessageLog, "id", message_id)])
    if row is None:
        return None
    incident_id, destination, status, attempts, incident_status, priority = row
    return Entry(str(uuid.UUID(str(incident_id))), destination, status, int(attempts),
                 incident_status, int(priority))


@functools.cache
def _claim_sql(vendor: str) -> str:
    status, attempts = _column(MessageLog, "status"), _column(MessageLog, "attempts")
    return (f"UPDATE {_table(MessageLog)} SET {status} = %s, {attempts} = %s, "
            f"{_column(MessageLog, 'received')} = %s, {_column(MessageLog, 'consumer')} = %s, "
            f"{_column(MessageLog, 'lock_wait')} = %s WHERE {_column(MessageLog, 'id')} = %s "
            f"AND {attempts} = %s AND {status} IN (%s, %s, %s)")


def claim(message_id: str, attempt: int, *, received: datetime, consumer: str,
          lock_wait: float | None = None) -> bool:
    """In flight -> PROCESSING as attempt number `attempt`; False if another delivery got
    there first (the row's attempts moved on) or the message ended meanwhile."""
    return bool(_execute(_claim_sql(connection.vendor), [
        MessageStatus.PROCESSING, attempt, _prep(MessageLog, "received", received), consumer,
        lock_wait, _prep(MessageLog, "id", message_id), attempt - 1, *IN_FLIGHT_STATUSES]))


@functools.cache
def _finish_sql(vendor: str, claimed: bool) -> str:
    status, attempts = _column(MessageLog, "status"), _column(MessageLog, "attempts")
    sets = (f"{status} = %s, {_column(MessageLog, 'completed')} = %s, "
            f"{_column(MessageLog, 'duration')} = %s, {_column(MessageLog, 'comment')} = %s")
    where = f"{_column(MessageLog, 'id')} = %s AND {attempts} = %s"
    if claimed:
        return f"UPDATE {_table(MessageLog)} SET {sets} WHERE {where} AND {status} = %s"
    return (f"UPDATE {_table(MessageLog)} SET {sets}, {attempts} = %s, "
            f"{_column(MessageLog, 'received')} = %s, {_column(MessageLog, 'consumer')} = %s "
            f"WHERE {where} AND {status} IN (%s, %s)")


def _finish_params(message_id: str, attempt: int, status: str, *, claimed: bool,
                   received: datetime, consumer: str, duration: float,
                   comment: str = "") -> list[Any]:
    params: list[Any] = [status, _prep(MessageLog, "completed", timezone.now()), duration,
                         comment]
    if not claimed:
        params += [attempt, _prep(MessageLog, "received", received), consumer]
    params += [_prep(MessageLog, "id", message_id), attempt if claimed else attempt - 1]
    return params + ([MessageStatus.PROCESSING] if claimed else list(WAITING_STATUSES))


def finish(message_id: str, attempt: int, status: str, *, claimed: bool, received: datetime,
           consumer: str, duration: float, comment: str = "") -> bool:
    """A run's message -> COMPLETE or ERROR. A claimed run is fenced by its claim; an
    unclaimed one (a first delivery to a plain handler) by the row still waiting at the
    attempt before `attempt`, and the finish records the attempt, its start and its
    consumer. False if the run lost its message (another delivery claimed it, or a Kill
    stopped it): then nothing changed."""
    return bool(_execute(_finish_sql(connection.vendor, claimed), _finish_params(
        message_id, attempt, status, claimed=claimed, received=received, consumer=consumer,
        duration=duration, comment=comment)))


_INSERTED = ("id", "incident", "originator", "destination", "src_tag", "dest_tag", "status",
             "submitted", "attempts", "consumer", "publish_failures", "comment", "body",
             "not_before", "priority")


def _values(rows: int, vendor: str) -> str:
    # Typed on PostgreSQL: in SELECT ... FROM (VALUES ...) an all-NULL column would be text.
    typed = {"not_before": "%s::timestamptz"} if vendor == "postgresql" else {}
    one = "(" + ", ".join(typed.get(name, "%s") for name in _INSERTED) + ")"
    return "VALUES " + ", ".join([one] * rows)


def _insert_into(source: str) -> str:
    """INSERT of log rows from `source` (VALUES or a SELECT); an existing id is left alone."""
    columns = ", ".join(_column(MessageLog, name) for name in _INSERTED)
    return (f"INSERT INTO {_table(MessageLog)} ({columns}) {source} "
            f"ON CONFLICT ({_column(MessageLog, 'id')}) DO NOTHING")


@functools.cache
def _insert_sql(vendor: str, rows: int) -> str:
    return _insert_into(_values(rows, vendor))


def insert(rows: Sequence[MessageLog]) -> None:
    """Log committed messages (QUEUED), inside the caller's transaction; a row that exists is
    left alone (a rerun of a handler regenerates the same MessageIDs)."""
    if not rows:
        return
    _execute(_insert_sql(connection.vendor, len(rows)), _insert_params(rows))


def _insert_params(rows: Sequence[MessageLog]) -> list[Any]:
    return [_prep(MessageLog, name, getattr(row, _field(MessageLog, name).attname))
            for row in rows for name in _INSERTED]


def commits_in_one_statement() -> bool:
    """Whether finish_and_log() can run as one statement (PostgreSQL's data-modifying WITH),
    without a transaction around it."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


@functools.cache
def _finish_and_log_sql(vendor: str, claimed: bool, rows: int) -> str:
    finish = _finish_sql(vendor, claimed) + " RETURNING 1"
    if not rows:
        return f"WITH finished AS ({finish}) SELECT count(*) FROM finished"
    logged = _insert_into(f"SELECT * FROM ({_values(rows, vendor)}) AS sent "
                          "WHERE EXISTS (SELECT 1 FROM finished)")
    return (f"WITH finished AS ({finish}), logged AS ({logged} RETURNING 1) "
            "SELECT count(*) FROM finished")


def finish_and_log(message_id: str, attempt: int, *, claimed: bool, received: datetime,
                   consumer: str, duration: float, rows: Sequence[MessageLog]) -> bool:
    """finish() COMPLETE and insert() `rows` in one statement, one round trip that is its
    own transaction: the rows are logged only if the finish's fence holds."""
    params = _finish_params(message_id, attempt, MessageStatus.COMPLETE, claimed=claimed,
                            received=received, consumer=consumer, duration=duration)
    row = _execute(_finish_and_log_sql(connection.vendor, claimed, len(rows)),
                   params + _insert_params(rows))
    return bool(row[0])


def wait_for_retry(message_id: str, attempt: int, *, claimed: bool, comment: str,
                   retry_at: datetime, received: datetime, consumer: str,
                   duration: float) -> bool:
    """A failed run to be retried -> SENT again (its retry is on the broker), counting the
    run as attempt `attempt`; fenced as finish() is. `submitted` moves to `retry_at`, so the
    relay does not take the waiting row for a lost one before its retry is due. False if the
    run lost its message (claimed by another delivery, or a Kill stopped it)."""
    rows = MessageLog.objects.filter(pk=message_id)
    rows = (rows.filter(status=MessageStatus.PROCESSING, attempts=attempt) if claimed
            else rows.filter(status__in=WAITING_STATUSES, attempts=attempt - 1))
    return bool(rows.update(status=MessageStatus.SENT, attempts=attempt, comment=comment,
                            submitted=retry_at, received=received, consumer=consumer,
                            duration=duration))


def give_claim_back(message_id: str, attempt: int) -> None:
    """PROCESSING -> SENT, before a retry: the retried copy is not marked redelivered and
    would otherwise be dropped as a copy of a message being handled."""
    MessageLog.objects.filter(pk=message_id, status=MessageStatus.PROCESSING,
                              attempts=attempt).update(status=MessageStatus.SENT)


def not_processed(message_id: str, reason: str) -> bool:
    """In flight -> NOT PROCESSED (its incident has ended, or it is not for this handler);
    a release message among them fails its resource's release."""
    stopped = bool(MessageLog.objects.filter(pk=message_id, status__in=IN_FLIGHT_STATUSES).update(
        status=MessageStatus.NOT_PROCESSED, completed=timezone.now(), comment=reason))
    if stopped:
        fail_releases([message_id], f"release message not processed: {reason}")
    return stopped


def give_up(message_id: str, attempts: int, reason: str) -> bool:
    """In flight -> ERROR, for a message whose handling keeps dying; False if it moved on."""
    failed = bool(MessageLog.objects.filter(pk=message_id, attempts=attempts,
                                            status__in=IN_FLIGHT_STATUSES).update(
        status=MessageStatus.ERROR, completed=timezone.now(), comment=reason))
    if failed:
        fail_releases([message_id], reason)
    return failed


def abandon_waiting(incident_id: str, *, besides: str, comment: str) -> Counter[str]:
    """The incident's messages no worker took (QUEUED/SENT, but `besides`) -> NOT PROCESSED;
    how many per queue."""
    rows = (MessageLog.objects.select_for_update()
            .filter(incident_id=incident_id, status__in=WAITING_STATUSES).exclude(pk=besides))
    found = list(rows.values_list("pk", "destination"))
    rows.update(status=MessageStatus.NOT_PROCESSED, completed=timezone.now(), comment=comment)
    fail_releases([str(pk) for pk, _ in found], f"release message not processed: {comment}")
    return Counter(destination for _, destination in found)


def stop_in_flight(incident_id: str, comment: str, *, besides: str | None = None) -> list[str]:
    """Every in-flight message of the incident (but `besides`) -> NOT PROCESSED (a Kill, a
    drain that ran out); their ids. Its pending timers go too, but are not among the ids:
    never published, they have nothing to revoke."""
    drop_timers(incident_id, comment)
    rows = MessageLog.objects.select_for_update().filter(incident_id=incident_id,
                                                         status__in=IN_FLIGHT_STATUSES)
    if besides:
        rows = rows.exclude(pk=besides)
    in_flight = [str(pk) for pk in rows.values_list("pk", flat=True)]
    MessageLog.objects.filter(pk__in=in_flight, status__in=IN_FLIGHT_STATUSES).update(
        status=MessageStatus.NOT_PROCESSED, completed=timezone.now(), comment=comment)
    fail_releases(in_flight, f"release message not processed: {comment}")
    return in_flight


def to_run_again(incident_id: str, failed_at: datetime) -> QuerySet[MessageLog]:
    """What a Resume queues again: the incident's failed messages (ERROR) and those refused
    because it had failed (NOT PROCESSED since `failed_at`), not its cleanups'."""
    return (MessageLog.objects.filter(incident_id=incident_id).exclude(destination=CLEANUP_QUEUE)
            .filter(Q(status=MessageStatus.ERROR)
                    | Q(status=MessageStatus.NOT_PROCESSED, completed__gte=failed_at)))


def requeue_for_resume(incident_id: str, *, failed_at: datetime, max_attempts: int,
                       comment: str) -> list[MessageLog]:
    """A Resume: to_run_again() -> QUEUED, to be published again with their MessageIDs; the
    rows. Attempts go on counting, but a message that used them all up (its runs kept dying)
    keeps one: it is set to `max_attempts` - 1."""
    ids = list(to_run_again(incident_id, failed_at).select_for_update()
               .values_list("pk", flat=True))
    MessageLog.objects.filter(pk__in=ids).update(
        status=MessageStatus.QUEUED, submitted=timezone.now(), completed=None, duration=None,
        publish_failures=0, comment=comment,
        attempts=Least(F("attempts"), max(max_attempts - 1, 0)))
    # A timer not yet due waits for the timer loop again (engine/timers.py).
    MessageLog.objects.filter(pk__in=ids, not_before__gt=timezone.now()).update(
        submitted=F("not_before"))
    return list(MessageLog.objects.filter(pk__in=ids).order_by("submitted", "pk"))


def mark_sent(ids: Sequence[str], *, skip_locked: bool = False) -> None:
    """QUEUED -> SENT for what the broker has taken. A fast consumer may have moved a row on
    already; that is left alone. `skip_locked`: rows another transaction holds (a claim, a
    kill) are skipped, not waited for (the marks are advisory)."""
    if not ids:
        return
    rows = MessageLog.objects.filter(pk__in=ids, status=MessageStatus.QUEUED)
    if skip_locked:
        rows = MessageLog.objects.filter(pk__in=rows.select_for_update(skip_locked=True)
                                         .values("pk"))
    rows.update(status=MessageStatus.SENT)


def take_for_relay(row: MessageLog, now: datetime) -> bool:
    """Claim a stale QUEUED or SENT row for this relay pass by moving `submitted` forward, so
    relays in other workers skip it."""
    return bool(MessageLog.objects.filter(pk=row.pk, status=row.status,
                                          submitted=row.submitted).update(submitted=now))


@functools.cache
def _take_due_timers_sql(vendor: str) -> str:
    m, pk = _table(MessageLog), _column(MessageLog, "id")
    submitted, not_before = _column(MessageLog, "submitted"), _column(MessageLog, "not_before")
    # Literal QUEUED: the planner matches it against the message_timers partial index.
    pending = (f"{_column(MessageLog, 'status')} = '{MessageStatus.QUEUED.value}' AND "
               f"{not_before} IS NOT NULL AND {submitted} = {not_before}")
    skip_locked = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    return (f"UPDATE {m} SET {submitted} = %s WHERE {pending} AND {pk} IN (SELECT {pk} FROM {m} "
            f"WHERE {pending} AND {not_before} < %s ORDER BY {not_before} LIMIT %s{skip_locked}) "
            f"RETURNING {pk}")


def take_due_timers(now: datetime, *, limit: int) -> list[MessageLog]:
    """Claim up to `limit` due timers (QUEUED, not_before before `now`, not yet taken) for
    this worker to publish, in one statement: their `submitted` moves to `now`, so no other
    worker takes them (and the relay does, as any unpublished row, if the publish fails)."""
    stamp = _prep(MessageLog, "submitted", now)
    with connection.cursor() as cursor:
        cursor.execute(_take_due_timers_sql(connection.vendor), [stamp, stamp, limit])
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return list(MessageLog.objects.filter(pk__in=ids).order_by("not_before"))


def drop_timers(incident_id: str, comment: str, *, at: datetime | None = None) -> int:
    """The incident's timers not yet published -> NOT PROCESSED (its end, a Kill)."""
    return MessageLog.objects.filter(incident_id=incident_id, status=MessageStatus.QUEUED,
                                     not_before__isnull=False).update(
        status=MessageStatus.NOT_PROCESSED, completed=at or timezone.now(), comment=comment)


def refused(row: MessageLog, failures: int, reason: str, *, retry_at: datetime | None) -> bool:
    """The broker refused a QUEUED row: try again from `retry_at`, or (None) QUEUED -> ERROR."""
    rows = MessageLog.objects.filter(pk=row.pk, status=MessageStatus.QUEUED)
    if retry_at is not None:
        return bool(rows.update(publish_failures=failures, submitted=retry_at, comment=reason))
    return bool(rows.update(status=MessageStatus.ERROR, publish_failures=failures,
                            completed=timezone.now(), comment=reason))


# -- incidents ----------------------------------------------------------------------------

def activate(incident_id: str) -> bool:
    """PENDING -> ACTIVE; False if it was not PENDING."""
    return bool(Incident.objects.filter(pk=incident_id, status=IncidentStatus.PENDING)
                .update(status=IncidentStatus.ACTIVE, activated_at=timezone.now()))


def end(incident_id: str, status: str, reason: str, by: str) -> bool:
    """Live -> an end status; False if it had ended already (it keeps its status). Any end
    drops the incident's pending timers (when due they would only be refused), so its
    cleanup does not wait for them; stamped with the end time, so a Resume takes them up."""
    now = timezone.now()
    ended = bool(Incident.objects.filter(pk=incident_id, status__in=LIVE_INCIDENT_STATUSES)
                 .update(status=status, completed_at=now, comment=reason, ended_by=by[:200]))
    if ended:
        drop_timers(incident_id, f"timer dropped: incident {status.lower()}", at=now)
    return ended


def kill_cancelled(incident_id: str, comment: str) -> bool:
    """CANCELLED -> KILLED: a drain (a Cancel with a deadline) ran out while handlers still
    ran; it keeps when and by whom it ended. False if it was not CANCELLED."""
    return bool(Incident.objects.filter(pk=incident_id, status=IncidentStatus.CANCELLED)
                .update(status=IncidentStatus.KILLED, comment=comment))


def reopen(incident_id: str, ended_as: str) -> bool:
    """An ended incident -> ACTIVE again, as new (the health check's fixed incident)."""
    return bool(Incident.objects.filter(pk=incident_id, status=ended_as).update(
        status=IncidentStatus.ACTIVE, activated_at=timezone.now(), completed_at=None,
        cleaned_at=None, comment="", ended_by=""))


def resume(incident_id: str, failed_at: datetime) -> bool:
    """ERROR -> ACTIVE again (an operator's Resume), as if it had not ended; its first start
    is kept. Fenced by when it failed: False if it moved on (resumed, failed anew)."""
    return bool(Incident.objects.filter(pk=incident_id, status=IncidentStatus.ERROR,
                                        completed_at=failed_at).update(
        status=IncidentStatus.ACTIVE, completed_at=None, cleaned_at=None, comment="",
        ended_by=""))


def mark_cleaned(incident_id: str) -> None:
    Incident.objects.filter(pk=incident_id).update(cleaned_at=timezone.now())


# -- external resources (engine/releases.py) ---------------------------------------------

def hold_resource(incident_id: str, ref: str, *, kind: str, release_queue: str, data: Any,
                  by: str) -> str:
    """Record that the incident holds `ref` (HELD); one it holds already gets the new kind,
    queue and data, one released before is held again. "" if held, else the status that
    kept it from being held (its release is outstanding: RELEASING or FAILED)."""
    fields = {"kind": kind, "release_queue": release_queue, "data": data}
    resource, created = ExternalResource.objects.select_for_update().get_or_create(
        incident_id=incident_id, ref=ref,
        defaults={**fields, "registered_by": by[:200], "registered_at": timezone.now()})
    if created:
        return ""
    rows = ExternalResource.objects.filter(pk=resource.pk)
    if rows.filter(status=ResourceStatus.HELD).update(**fields):
        return ""
    if rows.filter(status=ResourceStatus.RELEASED).update(
            status=ResourceStatus.HELD, registered_by=by[:200], registered_at=timezone.now(),
            released_at=None, release_message=None, release_attempts=0, comment="", **fields):
        return ""
    return str(rows.values_list("status", flat=True).first())


def release_held(incident_id: str, *, comment: str) -> list[ExternalResource]:
    """The incident's HELD resources -> RELEASING, each with a new release message id (a
    release_queue) or RELEASED with `comment` (none: nothing to call); those RELEASING."""
    held = list(ExternalResource.objects.select_for_update()
                .filter(incident_id=incident_id, status=ResourceStatus.HELD))
    now, releasing = timezone.now(), []
    for resource in held:
        rows = ExternalResource.objects.filter(pk=resource.pk, status=ResourceStatus.HELD)
        if not resource.release_queue:
            rows.update(status=ResourceStatus.RELEASED, released_at=now, comment=comment)
            continue
        resource.release_message = uuid.uuid4()
        resource.release_attempts += 1
        if rows.update(status=ResourceStatus.RELEASING, release_message=resource.release_message,
                       release_attempts=resource.release_attempts, comment=""):
            releasing.append(resource)
    return releasing


def release_again(resource: ExternalResource, comment: str) -> bool:
    """FAILED -> RELEASING with a new release message id (set on `resource`); False if it
    was not FAILED."""
    message_id, attempts = uuid.uuid4(), resource.release_attempts + 1
    if not ExternalResource.objects.filter(pk=resource.pk, status=ResourceStatus.FAILED).update(
            status=ResourceStatus.RELEASING, release_message=message_id,
            release_attempts=attempts, comment=comment):
        return False
    resource.release_message, resource.release_attempts = message_id, attempts
    resource.status = ResourceStatus.RELEASING
    return True


def resource_released(rows: QuerySet[ExternalResource], comment: str) -> int:
    """Those of `rows` not yet RELEASED -> RELEASED (their release, or ReleaseResource)."""
    return rows.exclude(status=ResourceStatus.RELEASED).update(
        status=ResourceStatus.RELEASED, released_at=timezone.now(), comment=comment)


def fail_releases(message_ids: Sequence[str], comment: str) -> int:
    """Resources whose release is one of these messages (it failed, or was not processed)
    RELEASING -> FAILED with `comment`, to be retried; how many."""
    if not message_ids:
        return 0
    return ExternalResource.objects.filter(
        release_message__in=list(message_ids), status=ResourceStatus.RELEASING).update(
        status=ResourceStatus.FAILED, comment=comment[-20_000:])
