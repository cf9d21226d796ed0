"""Foreign and broken messages put straight on a handler's queue are dead-lettered with a
reason, and the worker keeps serving other incidents (real workers, both stacks)."""
from __future__ import annotations

import json
import pickle
import uuid
import zlib

import pytest
from kombu import Producer

from incidents import workflow
from incidents.engine import deadletter
from incidents.models import IncidentStatus, MessageLog

from ..conftest import ended, wait_until

pytestmark = pytest.mark.e2e

QUEUE = "probe_chain"


def celery_headers(task_id: str) -> dict[str, object]:
    return {"lang": "py", "task": f"workflow.{QUEUE}", "id": task_id, "retries": 0,
            "argsrepr": "", "kwargsrepr": "", "origin": "test"}


def publish_raw(body: bytes, content_type: str, headers: dict[str, object] | None = None) -> None:
    from wfproject.celery import app

    with app.connection_for_write() as connection:
        queue = deadletter.handler_queue(QUEUE)
        Producer(connection.default_channel).publish(
            body, exchange=queue.exchange, routing_key=QUEUE, declare=[queue],
            content_type=content_type, content_encoding="utf-8" if "json" in content_type else "binary",
            headers=headers or {})


def celery_body(argument: object) -> bytes:
    return json.dumps([[argument], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                        "chord": None}]).encode()


def a_real_incident_completes_and_dead_letters_number(known: str, expected: int) -> list:
    """The worker still serves real incidents after the garbage, which is dead-lettered."""
    workflow.send(message={"IncidentID": known, "left": 3}, queue=QUEUE)
    workflow.FlushMessages()
    assert wait_until(lambda: ended(known), what="a real incident").status == IncidentStatus.COMPLETE
    letters = wait_until(lambda: (found := deadletter.inspect()) and len(found) >= expected
                         and found, what=f"{expected} dead letters")
    assert len(letters) == expected
    return letters


def test_broken_and_foreign_messages_are_dead_lettered_and_the_worker_carries_on(workers):
    worker = workers.start("w1")
    deadletter.inspect(purge=True)
    known = workflow.CreateIncident(name="known", kind="TEST")
    unknown_message = {"IncidentID": known, "MessageID": str(uuid.uuid4()), "left": 1}
    publish_raw(b"{not json", "application/json", celery_headers(str(uuid.uuid4())))
    publish_raw(pickle.dumps({"IncidentID": known}), "application/x-python-serialize",
                celery_headers(str(uuid.uuid4())))
    publish_raw(b'{"no": "celery headers"}', "application/json")
    publish_raw(celery_body([1, 2, 3]), "application/json", celery_headers(str(uuid.uuid4())))
    publish_raw(celery_body({"left": 1}), "application/json", celery_headers(str(uuid.uuid4())))
    publish_raw(celery_body({"IncidentID": str(uuid.uuid4()), "MessageID": str(uuid.uuid4())}),
                "application/json", celery_headers(str(uuid.uuid4())))
    publish_raw(celery_body(unknown_message), "application/json",
                celery_headers(unknown_message["MessageID"]))
    publish_raw(celery_body({"IncidentID": known, "junk": "x" * 2_000_000}), "application/json",
                celery_headers(str(uuid.uuid4())))
    letters = a_real_incident_completes_and_dead_letters_number(known, 8)
    assert {letter.queue for letter in letters} == {QUEUE}
    assert any("not json" in letter.body for letter in letters)
    assert any(letter.content_type == "application/x-python-serialize" for letter in letters)
    reasons = " | ".join(letter.reason for letter in letters)
    for reason in ("undecodable (application/json)", "Refusing to deserialize untrusted content",
                   "no 'task' header", "no MessageID or IncidentID", "not in the message log"):
        assert reason in reasons  # stored with the dead letter, not only in the worker's log
    assert "rejected" not in reasons
    log = worker.log_text()
    assert "Traceback" not in log, log  # one line per dead letter
    assert "not in the message log" in log
    assert worker.process.poll() is None  # still running
    assert MessageLog.objects.filter(incident_id=known).count() == 5  # 4 hops + cleanup


def test_dead_letters_command_lists_and_purges(workers):
    from io import StringIO

    from django.core.management import call_command

    workers.start("w1")
    deadletter.inspect(purge=True)
    publish_raw(b"[1, 2", "application/json", celery_headers(str(uuid.uuid4())))
    wait_until(lambda: deadletter.inspect(), what="the dead letter")
    out = StringIO()
    call_command("dead_letters", stdout=out)
    assert f"from {QUEUE}" in out.getvalue() and "1 dead letter(s)" in out.getvalue()
    assert "undecodable (application/json): Expecting" in out.getvalue()  # the reason
    out = StringIO()
    call_command("dead_letters", "--purge", stdout=out)
    assert "1 dead letter(s) purged" in out.getvalue()
    assert deadletter.inspect() == []


def test_poison_messages_are_dead_lettered_before_anything_decodes_them(workers):
    worker = workers.start("w1", concurrency=2)
    deadletter.inspect(purge=True)
    known = workflow.CreateIncident(name="known", kind="TEST")
    deep = json.loads("[" * 500 + "]" * 500)  # 4 KB of valid JSON, 500 levels deep
    publish_raw(celery_body({"IncidentID": known, "MessageID": str(uuid.uuid4()), "d": deep}),
                "application/json", celery_headers(str(uuid.uuid4())))
    publish_raw(zlib.compress(celery_body({"IncidentID": known, "pad": "0" * 100_000})),
                "application/json",
                {**celery_headers(str(uuid.uuid4())), "compression": "application/x-gzip"})
    for retries in (0, 3):  # a foreign ETA, and one dressed as a retry but years off
        publish_raw(celery_body({"IncidentID": known}), "application/json",
                    {**celery_headers(str(uuid.uuid4())), "eta": "2031-01-01T00:00:00+00:00",
                     "retries": retries})
    letters = a_real_incident_completes_and_dead_letters_number(known, 4)
    reasons = " | ".join(letter.reason for letter in letters)
    log = worker.log_text()
    for reason in ("nests deeper than 103 levels", "compressed", "the engine did not set",
                   "further off than any retry"):
        assert reason in log and reason in reasons
    assert "Unrecoverable error" not in log and worker.process.poll() is None
