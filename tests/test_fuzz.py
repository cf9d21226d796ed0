"""Fuzzing the API's promise: bad arguments to every public function and management command
get a clear WorkflowError (a CommandError from a command), and nothing is stored or sent.

Each property draws arguments with hypothesis and makes the call. The call either succeeds and
stores what it was given (after a JSON round trip), or it raises a WorkflowError with a message
while the rows, the incidents and the broker queues stay as they were. Any other exception
escaping is a bug. Each example starts from a fresh world: one live and one ended incident,
empty tables and empty queues. The bugs this file found (and that were fixed) stay pinned by @example.
"""
from __future__ import annotations

import datetime as dt
import json
import operator
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from incidents import workflow
from incidents.engine import context, registry, scratch
from incidents.exceptions import WorkflowError
from incidents.models import HandlerState, Incident, IncidentStatus, Lock, MessageLog
from incidents.testing import purge_queues, queued_count

pytestmark = pytest.mark.usefixtures("transactional_db", "broker")

# Deterministic (derandomize), no example database, and hypothesis's caches under var/.
set_hypothesis_home_dir(django_settings.VAR_DIR / "hypothesis")
fuzz = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# The rule QueueNameError states: 1-200 of letters, digits and _ . : -, not starting with . : -
# (nor with _, which is reserved for the engine).
DOCUMENTED_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
CLEANUP_QUEUE = "_Cleanup"
PROBE_QUEUE = "probe_chain"


# --- strategies ------------------------------------------------------------------------------

SPECIAL_CHARACTERS = ["\x00", "\ud800", "\udfff", "\n", "\t", " ", "/", "_", "-", ".", ":",
                      "\u00e9", "\u2028", "{", "[", '"']
texts = st.one_of(
    # Joined lists, not st.text(): st.text() hardly ever yields the lone surrogates.
    st.lists(st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARACTERS)), max_size=20).map("".join),
    st.text(max_size=20),
    st.builds(operator.mul, st.sampled_from(["x", "\u00e9", " "]),
              st.sampled_from([100, 150, 151, 200, 201, 10_000, 10_001])),
)
not_json = st.one_of(
    st.binary(max_size=4), st.datetimes(), st.dates(), st.sets(st.integers(), max_size=3),
    st.builds(object), st.decimals(), st.complex_numbers(), st.just(Ellipsis), st.just(print),
)
keys = st.one_of(texts, st.integers(), st.tuples(st.integers(), st.text(max_size=2)), st.none(),
                 st.booleans(), st.floats(allow_nan=False))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
any_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, not_json),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
values = st.one_of(json_values, any_values)
dicts = st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=4),
                  st.dictionaries(keys, values, max_size=4))
json_texts = st.one_of(  # json.dumps writes nan and inf as NaN and Infinity
    texts,
    json_values.map(json.dumps),
    st.dictionaries(st.text(max_size=8), st.one_of(json_values, st.floats()), max_size=3).map(json.dumps),
)


@dataclass(frozen=True)
class Existing:
    """The id of one of the example's own incidents, in one of the forms uuid.UUID() reads."""

    which: str  # "live" or "ended"
    form: str  # "str", "upper", "urn", "braces" or "uuid"


existing_ids = st.builds(Existing, st.sampled_from(["live", "ended"]),
                         st.sampled_from(["str", "upper", "urn", "braces", "uuid"]))
incident_ids = st.one_of(existing_ids, st.uuids(), st.uuids().map(str), st.none(), st.integers(),
                         texts, values)
command_ids = st.one_of(existing_ids, st.uuids().map(str), st.integers().map(str), texts)
queue_names = st.one_of(
    st.sampled_from(["A_queue", PROBE_QUEUE, "fuzz.q:1-x", "", "_x", CLEANUP_QUEUE, "has space",
                     "a/b", "x" * 200, "x" * 201, ".x", "-x", ":x", "A_queue\n", "\u00e9",
                     "amq.direct", "amq.gen-1"]),
    st.from_regex(DOCUMENTED_QUEUE_NAME, fullmatch=True),
    texts, st.integers(), st.none(), values,
)
offsets = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                                               max_value=dt.timedelta(hours=23, minutes=59)))
aware_datetimes = st.datetimes(timezones=offsets)
incident_dates = st.one_of(
    st.none(), st.datetimes(), aware_datetimes, st.dates(),
    st.datetimes().map(dt.datetime.isoformat), aware_datetimes.map(dt.datetime.isoformat),
    st.dates().map(dt.date.isoformat), texts, values,
)
date_texts = st.one_of(texts, st.datetimes().map(dt.datetime.isoformat),
                       aware_datetimes.map(dt.datetime.isoformat), st.dates().map(dt.date.isoformat))
statuses = st.one_of(st.sampled_from(list(IncidentStatus)),
                     st.sampled_from(["COMPLETE", "CANCELLED", "ERROR", "KILLED", "PENDING", "ACTIVE",
                                      "cancelled", "Killed", " ERROR", "NOT PROCESSED"]),
                     texts, values)
flag_values = st.one_of(st.booleans(), st.sampled_from([0, 1, None, "True", 1.0]), values)
ending_flags = st.fixed_dictionaries(
    {}, optional={name: flag_values for name in ("CleanLocks", "CleanPersist", "CleanMessages",
                                                  "force")})
lock_timeouts = st.one_of(st.sampled_from([None, 0, -1, "1", 0.01, True, float("nan")]),
                          st.floats(), st.integers(), values)
not_handlers = st.one_of(st.none(), st.integers(), texts, st.just(print), st.just(object),
                         st.builds(lambda: lambda message: None), values)


# --- the world of one example and the refusal check ------------------------------------------

@dataclass
class World:
    live: str  # PENDING
    ended: str  # CANCELLED

    def resolve(self, value: Any) -> Any:
        """The value itself, or the drawn form of one of this world's incident ids."""
        if not isinstance(value, Existing):
            return value
        canonical = getattr(self, value.which)
        return {"str": canonical, "upper": canonical.upper(), "urn": f"urn:uuid:{canonical}",
                "braces": f"{{{canonical}}}", "uuid": uuid.UUID(canonical)}[value.form]

    def text(self, value: Any) -> str:
        return str(self.resolve(value))


def fresh_world() -> World:
    """Empty tables, staging and queues; one PENDING and one CANCELLED incident."""
    context.outside_staging().outbox.clear()
    for model in (MessageLog, HandlerState, Lock, Incident):
        model.objects.all().delete()
    purge_queues()
    live = workflow.CreateIncident(name="live", kind="FUZZ")
    ended = workflow.CreateIncident(name="ended", kind="FUZZ")
    Incident.objects.filter(pk=ended).update(status=IncidentStatus.CANCELLED,
                                             completed_at=timezone.now())
    return World(live=live, ended=ended)


def trace() -> tuple[Any, ...]:
    """What a refused call must leave as it found: rows, incidents and queued messages."""
    return (
        {model.__name__: model.objects.count() for model in (Incident, MessageLog, HandlerState, Lock)},
        sorted(Incident.objects.values_list("id", "status", "comment", "activated_at", "completed_at")),
        {queue: queued_count(queue) for queue in registry.registered_queues()},
    )


@dataclass
class Outcome:
    ok: bool
    value: Any  # the call's result, or the error that refused it


def attempt(call: Callable[[], Any], refusal: type[Exception] = WorkflowError) -> Outcome:
    """Make one call. It succeeds, or it raises `refusal` with a message, having stored and
    sent nothing (checked after FlushMessages()). Any other exception escapes the test."""
    assert not context.outside_staging().outbox, "the example left messages staged"
    before = trace()
    try:
        return Outcome(True, call())
    except refusal as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        workflow.FlushMessages()
        assert trace() == before, f"refused ({error}) but stored or sent something"
        return Outcome(False, error)


def command(*args: str) -> Outcome:
    """Run a management command as an operator would; a refusal is a CommandError."""
    out = StringIO()
    outcome = attempt(lambda: call_command(*args, stdout=out, stderr=StringIO()), CommandError)
    return Outcome(True, out.getvalue()) if outcome.ok else outcome


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def canonical_id(value: Any) -> str:
    return str(uuid.UUID(str(value)))


def assert_one_message_waits_if_registered(queue: str) -> None:
    # Only a registered queue is declared on the broker, so only its messages can be counted.
    if queue in registry.registered_queues():
        assert queued_count(queue) == 1


def is_a_documented_queue_name(queue: Any) -> bool:
    return (isinstance(queue, str) and DOCUMENTED_QUEUE_NAME.fullmatch(queue) is not None
            and not queue.startswith("amq."))


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    return isinstance(value, list) and any(contains_nul(item) for item in value)


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- send() ----------------------------------------------------------------------------------

@fuzz
@given(body=dicts, seed_order=st.booleans())
def test_send_logs_the_json_round_trip_of_any_body_or_refuses_it_cleanly(body, seed_order):
    world = fresh_world()
    message = {**body, "IncidentID": world.live}
    given_message = dict(message)
    sent = attempt(lambda: workflow.send("A_queue", message) if seed_order
                   else workflow.send(message=message, queue="A_queue"))
    if sent.ok:
        assert workflow.FlushMessages() == 1
        row = MessageLog.objects.get(pk=sent.value)
        assert row.body == json_round_trip({**given_message, "MessageID": sent.value, "originator": ""})
        assert (row.destination, queued_count("A_queue")) == ("A_queue", 1)


@fuzz
@given(shape=st.sampled_from(["with an id", "without an id", "not a dict"]), incident_id=incident_ids,
       other=values)
def test_send_refuses_a_message_without_the_id_of_an_existing_incident(shape, incident_id, other):
    world = fresh_world()
    target = world.resolve(incident_id)
    message = {"with an id": {"IncidentID": target}, "without an id": {"n": other},
               "not a dict": other}[shape]
    sent = attempt(lambda: workflow.send(message=message, queue=PROBE_QUEUE))
    if sent.ok:
        workflow.FlushMessages()
        assert shape == "with an id" and isinstance(incident_id, Existing)
        if incident_id.which == "ended":  # dropped with a warning
            assert sent.value is None
            assert not MessageLog.objects.exists() and queued_count(PROBE_QUEUE) == 0
        else:
            assert str(MessageLog.objects.get(pk=sent.value).incident_id) == world.live
            assert queued_count(PROBE_QUEUE) == 1


@fuzz
@given(queue=queue_names, seed_order=st.booleans())
@example(queue="A_queue\n", seed_order=False)
def test_send_refuses_every_queue_name_outside_the_documented_rule(queue, seed_order):
    world = fresh_world()
    message = {"IncidentID": world.live}
    sent = attempt(lambda: workflow.send(queue, message) if seed_order
                   else workflow.send(message=message, queue=queue))
    if sent.ok:
        assert is_a_documented_queue_name(queue), f"queue {queue!r} was accepted"
        assert workflow.FlushMessages() == 1
        assert MessageLog.objects.get(pk=sent.value).destination == queue
        assert_one_message_waits_if_registered(queue)


@fuzz
@given(src_tag=st.one_of(texts, values), dest_tag=st.one_of(texts, values))
def test_send_logs_any_tags_it_accepts_or_refuses_them_cleanly(src_tag, dest_tag):
    world = fresh_world()
    sent = attempt(lambda: workflow.send(message={"IncidentID": world.live}, queue=PROBE_QUEUE,
                                         src_tag=src_tag, dest_tag=dest_tag))
    if sent.ok:
        workflow.FlushMessages()
        row = MessageLog.objects.get(pk=sent.value)
        assert (row.src_tag, row.dest_tag) == (src_tag, dest_tag)
        assert queued_count(PROBE_QUEUE) == 1


# --- CreateIncident(), setIncidentActive() ---------------------------------------------------

@fuzz
@given(name=st.one_of(texts, values), kind=st.one_of(st.sampled_from(["WILDFIRE"]), texts, values),
       parameters=st.one_of(st.none(), dicts, values))
def test_create_incident_stores_what_it_was_given_or_refuses_cleanly(name, kind, parameters):
    fresh_world()
    created = attempt(lambda: workflow.CreateIncident(name, kind, parameters=parameters))
    if created.ok:
        incident = Incident.objects.get(pk=created.value)
        assert (incident.name, incident.kind, incident.status) == (name, kind, IncidentStatus.PENDING)
        assert incident.parameters == json_round_trip(parameters or {})


def as_stored(incident_date: Any) -> dt.datetime:
    """The incident_date CreateIncident() documents: ISO text parsed, a date at midnight, naive
    values in the current time zone (UTC)."""
    if isinstance(incident_date, str):
        incident_date = dt.datetime.fromisoformat(incident_date)
    if not isinstance(incident_date, dt.datetime):
        incident_date = dt.datetime.combine(incident_date, dt.time())
    return incident_date if incident_date.tzinfo else incident_date.replace(tzinfo=dt.UTC)


@fuzz
@given(incident_date=incident_dates)
@example(incident_date=dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
def test_create_incident_stores_any_date_it_accepts_or_refuses_it_cleanly(incident_date):
    fresh_world()
    created = attempt(lambda: workflow.CreateIncident("n", "WILDFIRE", incident_date))
    if created.ok:
        stored = Incident.objects.get(pk=created.value).incident_date
        if incident_date is None:
            assert abs(timezone.now() - stored) < dt.timedelta(minutes=1)
        else:
            assert stored == as_stored(incident_date)


@fuzz
@given(incident_id=incident_ids)
def test_set_incident_active_activates_only_a_pending_incident_or_refuses_cleanly(incident_id):
    world = fresh_world()
    activated = attempt(lambda: workflow.setIncidentActive(world.resolve(incident_id)))
    if activated.ok:
        assert isinstance(incident_id, Existing)
        incident = Incident.objects.get(pk=canonical_id(world.resolve(incident_id)))
        if incident_id.which == "live":
            assert activated.value is True and incident.status == IncidentStatus.ACTIVE
        else:
            assert activated.value is False and incident.status == IncidentStatus.CANCELLED


@fuzz
@given(incident_id=incident_ids)
def test_incident_dir_is_made_for_a_live_incident_only_or_refused_cleanly(incident_id):
    world = fresh_world()
    made = attempt(lambda: workflow.IncidentDir(world.resolve(incident_id)))
    if made.ok:
        assert isinstance(incident_id, Existing) and incident_id.which == "live"
        assert made.value.is_dir() and made.value.name == world.live
    else:
        assert not (scratch.root() / world.ended).exists()


# --- Persist ---------------------------------------------------------------------------------

@fuzz
@given(incident_id=incident_ids, data=values, ignore_originator=st.one_of(st.booleans(), values))
@example(incident_id=Existing("live", "str"), data=None, ignore_originator=False)
def test_persist_get_returns_the_json_round_trip_of_what_put_stored(incident_id, data,
                                                                   ignore_originator):
    world = fresh_world()
    target = world.resolve(incident_id)
    put = attempt(lambda: workflow.Persist.Put(target, data))
    got = attempt(lambda: workflow.Persist.Get(target))
    got_all = attempt(lambda: workflow.Persist.Get(target, ignoreOriginator=ignore_originator))
    if put.ok:
        assert got.value == got_all.value == [json_round_trip(data)]
    elif got.ok:
        assert got.value == got_all.value == []


@fuzz
@given(data=st.lists(json_values.filter(lambda value: value is not None), max_size=4))
def test_persist_get_returns_every_json_put_in_order(data):
    # Top-level None is left to the test above (it is refused by the database, not the API).
    world = fresh_world()
    kept = [value for value in data if attempt(lambda v=value: workflow.Persist.Put(world.live, v)).ok]
    assert workflow.Persist.Get(world.live) == workflow.Persist.Get(world.live, True) == kept
    assert len(kept) == sum(not contains_nul(value) for value in data)  # NUL is refused


# --- Complete(), Cancel() --------------------------------------------------------------------

@fuzz
@given(ending=st.sampled_from(["Complete", "Cancel"]), incident_id=incident_ids,
       reason=st.one_of(texts, values), status=statuses, flags=ending_flags)
def test_complete_and_cancel_end_the_incident_as_asked_or_refuse_cleanly(ending, incident_id, reason,
                                                                         status, flags):
    world = fresh_world()
    target = world.resolve(incident_id)
    if ending == "Complete":
        ended = attempt(lambda: workflow.Complete(target, **flags))
        status, reason = IncidentStatus.COMPLETE, ""
    else:
        ended = attempt(lambda: workflow.Cancel(target, reason=reason, status=status, **flags))
    if not ended.ok:
        return
    assert isinstance(incident_id, Existing)
    workflow.FlushMessages()
    incident = Incident.objects.get(pk=canonical_id(target))
    if incident_id.which == "live":
        assert (incident.status, incident.comment) == (status, reason)
        assert incident.completed_at is not None
    else:
        assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, "")
    cleanups = [row.body for row in MessageLog.objects.filter(destination=CLEANUP_QUEUE)]
    if incident_id.which == "live" or flags.get("force"):
        expected = {"CleanLocks": True, "CleanPersist": True, "CleanMessages": False, "force": False}
        expected.update(flags)
        assert [{key: body[key] for key in expected} for body in cleanups] == [expected]
        assert queued_count(CLEANUP_QUEUE) == 1
    else:
        assert cleanups == [] and queued_count(CLEANUP_QUEUE) == 0


# --- GetLock(), IsLocked(), ReleaseLock() ----------------------------------------------------

def lock_round_trip(label: Any, incident_id: Any, timeout: Any = 0) -> None:
    """IsLocked, GetLock (only ever on a free lock, so it never waits), IsLocked, ReleaseLock:
    each succeeds or refuses cleanly; a lock taken is seen, stored as given and released."""
    assert not Lock.objects.exists()
    checked = attempt(lambda: workflow.IsLocked(label, incident_id))
    assert not checked.ok or checked.value is False
    taken = attempt(lambda: workflow.GetLock(label, incident_id, timeout=timeout))
    if taken.ok:
        lock = Lock.objects.get()
        assert (lock.label, str(lock.incident_id)) == (label, canonical_id(incident_id))
        assert attempt(lambda: workflow.IsLocked(label, incident_id)).value is True
    released = attempt(lambda: workflow.ReleaseLock(label, incident_id))
    assert released.ok == checked.ok
    if released.ok:
        assert released.value is taken.ok
    assert not Lock.objects.exists()


@fuzz
@given(label=st.one_of(texts, values))
@example(label="\ud800")
def test_locks_take_any_label_they_accept_or_refuse_it_cleanly(label):
    world = fresh_world()
    lock_round_trip(label, world.live)


@fuzz
@given(incident_id=incident_ids)
def test_locks_refuse_an_id_that_is_not_an_existing_incident_cleanly(incident_id):
    world = fresh_world()
    lock_round_trip("L", world.resolve(incident_id), timeout=None)


@fuzz
@given(timeout=lock_timeouts)
@example(timeout=10**400)
def test_get_lock_takes_a_free_lock_with_any_timeout_it_accepts_or_refuses_it_cleanly(timeout):
    world = fresh_world()
    lock_round_trip("L", world.live, timeout=timeout)


# --- RegisterHandler() -----------------------------------------------------------------------

@pytest.fixture
def registry_restored():
    """Whatever a test registers is unregistered afterwards."""
    by_queue = dict(registry._by_queue)
    by_name = {name: set(queues) for name, queues in registry._queues_by_name.items()}
    yield
    registry._by_queue.clear()
    registry._by_queue.update(by_queue)
    registry._queues_by_name.clear()
    registry._queues_by_name.update(by_name)


def refused_registration(handler: Any, queue: Any) -> None:
    queues = registry.registered_queues()
    registered = attempt(lambda: workflow.RegisterHandler(handler=handler, queue=queue))
    assert not registered.ok, f"RegisterHandler({handler!r}, {queue!r}) was accepted"
    assert registry.registered_queues() == queues


@pytest.mark.usefixtures("registry_restored")
@fuzz
@given(handler=not_handlers, queue=queue_names)
def test_register_handler_refuses_anything_that_is_not_a_handler(handler, queue):
    fresh_world()
    refused_registration(handler, queue)


@pytest.mark.usefixtures("registry_restored")
@fuzz
@given(queue=queue_names.filter(lambda q: not is_a_documented_queue_name(q) or q == "A_queue"))
@example(queue="fuzz_queue\n")
def test_register_handler_refuses_bad_and_taken_queue_names(queue):
    fresh_world()

    @workflow.handler
    def fuzz_handler(message):
        pass

    refused_registration(fuzz_handler, queue)


# --- what escapes JSON: very long integers, very deep nesting --------------------------------

def store_through(api: str, world: World, value: Any) -> None:
    """Give `value` to one API that stores JSON; if it is accepted, it must round-trip."""
    if api == "send":
        sent = attempt(lambda: workflow.send(message={"IncidentID": world.live, "v": value},
                                             queue=PROBE_QUEUE))
        if sent.ok:
            workflow.FlushMessages()
            assert MessageLog.objects.get(pk=sent.value).body["v"] == value
    elif api == "Persist.Put":
        if attempt(lambda: workflow.Persist.Put(world.live, value)).ok:
            assert workflow.Persist.Get(world.live) == [value]
    else:
        created = attempt(lambda: workflow.CreateIncident("n", "K", parameters={"v": value}))
        if created.ok:
            assert Incident.objects.get(pk=created.value).parameters == {"v": value}


@fuzz
@given(api=st.sampled_from(["send", "Persist.Put", "CreateIncident"]),
       digits=st.integers(min_value=1, max_value=6000))
@example(api="send", digits=4301)
@example(api="Persist.Put", digits=4301)
@example(api="CreateIncident", digits=4301)
def test_integers_json_text_cannot_hold_are_refused_cleanly(api, digits):
    store_through(api, fresh_world(), 10 ** (digits - 1))


@fuzz
@given(api=st.sampled_from(["send", "Persist.Put", "CreateIncident"]),
       levels_short=st.integers(min_value=0, max_value=300))
@example(api="Persist.Put", levels_short=20)
@example(api="send", levels_short=20)
@example(api="CreateIncident", levels_short=20)
def test_values_nested_near_the_recursion_limit_are_refused_cleanly(api, levels_short):
    # Depth is drawn relative to the stack left here, so it does not depend on the caller.
    depth = sys.getrecursionlimit() - stack_depth() - levels_short
    store_through(api, fresh_world(), nested(depth))


# --- management commands ---------------------------------------------------------------------

KIND_QUEUES = {"PROBE_CHAIN": PROBE_QUEUE, "QUICKSORT": "quicksort_start",
               "DUMMY_INCIDENT": "A_queue"}


@fuzz
@given(name=texts, kind=st.one_of(st.sampled_from(sorted(KIND_QUEUES)), texts))
def test_create_incident_command_starts_a_kind_with_any_name_or_refuses_cleanly(name, kind):
    fresh_world()
    run = command("create_incident", f"--name={name}", f"--kind={kind}")
    if run.ok:
        incident = Incident.objects.get(pk=run.value.strip())
        assert (incident.name, incident.kind) == (name, kind)
        first = MessageLog.objects.get(incident_id=incident.pk)
        assert first.destination == KIND_QUEUES[kind]
        assert queued_count(KIND_QUEUES[kind]) == 1


@fuzz
@given(date=date_texts)
@example(date="0001-01-01T00:00:00+01:00")
def test_create_incident_command_stores_any_date_it_accepts_or_refuses_cleanly(date):
    fresh_world()
    run = command("create_incident", "--name=n", "--kind=PROBE_CHAIN", f"--date={date}")
    if run.ok:
        assert Incident.objects.get(pk=run.value.strip()).incident_date == as_stored(date)


@fuzz
@given(option=st.sampled_from(["--parameters", "--message"]), text=json_texts)
@example(option="--parameters", text="[" * 100_000)
@example(option="--message", text="[" * 100_000)
@example(option="--parameters", text='{"v": 1' + "0" * 4300 + "}")
def test_create_incident_command_stores_any_json_option_it_accepts_or_refuses_cleanly(option, text):
    fresh_world()
    run = command("create_incident", "--name=n", "--kind=PROBE_CHAIN", f"{option}={text}",
                  *([f"--queue={PROBE_QUEUE}"] if option == "--message" else []))
    if not run.ok:
        return
    incident = Incident.objects.get(pk=run.value.strip())
    body = MessageLog.objects.get(incident_id=incident.pk).body
    given_value = json.loads(text)
    if option == "--parameters":
        assert incident.parameters == body["parameters"] == given_value
    else:
        assert body == {**given_value, "IncidentID": str(incident.pk), "MessageID": body["MessageID"],
                        "originator": ""}
    assert queued_count(PROBE_QUEUE) == 1


@fuzz
@given(queue=queue_names.filter(lambda q: isinstance(q, str)))
@example(queue="probe_chain\n")
def test_create_incident_command_sends_only_to_documented_queue_names(queue):
    fresh_world()
    run = command("create_incident", "--name=n", "--kind=K", f"--queue={queue}", "--message={}")
    if run.ok:
        assert is_a_documented_queue_name(queue), f"queue {queue!r} was accepted"
        incident_id = run.value.strip()
        assert MessageLog.objects.get(incident_id=incident_id).destination == queue
        assert_one_message_waits_if_registered(queue)


@fuzz
@given(incident_id=command_ids, reason=texts)
def test_cancel_incident_cancels_only_a_live_incident_or_refuses_cleanly(incident_id, reason):
    world = fresh_world()
    run = command("cancel_incident", f"--reason={reason}", "--", world.text(incident_id))
    if run.ok:
        assert isinstance(incident_id, Existing)
        if incident_id.which == "ended":  # said so, and left it as it ended
            assert "had already ended (CANCELLED)" in run.value
            assert Incident.objects.get(pk=world.ended).status == IncidentStatus.CANCELLED
            assert queued_count(CLEANUP_QUEUE) == 0
            return
        incident = Incident.objects.get(pk=world.live)
        assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, reason)
        assert incident.ended_by.endswith("command line)") or incident.ended_by == "command line"
        assert queued_count(CLEANUP_QUEUE) == 1


@fuzz
@given(incident_ids=st.lists(command_ids, max_size=3), dry_run=st.booleans())
@example(incident_ids=[Existing("live", "str"), "x"], dry_run=False)
@example(incident_ids=["e3e70682-c209-4cac-629f-6fbed82c07cd"], dry_run=True)
def test_kill_incidents_kills_the_ids_given_or_refuses_them_all_cleanly(incident_ids, dry_run):
    world = fresh_world()
    ids = [world.text(incident_id) for incident_id in incident_ids]
    run = command("kill_incidents", "--noinput", *(["--dry-run"] if dry_run else []), "--", *ids)
    if not run.ok:
        return
    assert all(isinstance(incident_id, Existing) for incident_id in incident_ids)
    live = Incident.objects.get(pk=world.live).status
    ended = Incident.objects.get(pk=world.ended).status
    if dry_run:
        assert (live, ended) == (IncidentStatus.PENDING, IncidentStatus.CANCELLED)
        assert queued_count(CLEANUP_QUEUE) == 0
    else:
        killed = any(i.which == "live" for i in incident_ids)
        assert live == (IncidentStatus.KILLED if killed else IncidentStatus.PENDING)
        assert ended == IncidentStatus.CANCELLED
        # One cleanup per incident named, however often and however spelt.
        assert queued_count(CLEANUP_QUEUE) == len({i.which for i in incident_ids})


@fuzz
@given(reason=texts)
@example(reason="\ud800")
def test_kill_incidents_keeps_any_reason_it_accepts_or_refuses_cleanly(reason):
    world = fresh_world()
    run = command("kill_incidents", "--noinput", f"--reason={reason}", "--", world.live)
    if run.ok:
        incident = Incident.objects.get(pk=world.live)
        assert (incident.status, incident.comment) == (IncidentStatus.KILLED, reason)


@fuzz
@given(status=st.one_of(st.sampled_from(["pending", "CANCELLED", "Active", "NOT PROCESSED"]), texts))
def test_list_incidents_lists_the_status_asked_for_or_refuses_it_cleanly(status):
    world = fresh_world()
    run = command("list_incidents", f"--status={status}")
    if run.ok:
        assert (world.live in run.value) == (not status or status.upper() == "PENDING")
        assert (world.ended in run.value) == (not status or status.upper() == "CANCELLED")
