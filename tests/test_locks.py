"""GetLock / CheckLock / IsLocked / ReleaseLock on the database and on Redis."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.utils import timezone

from incidents import workflow
from incidents.engine import locks
from incidents.exceptions import LockTimeout, WorkflowError
from incidents.models import Lock

from .conftest import need_service


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    if request.param == "redis":
        settings.WORKFLOW_REDIS_URL = need_service("WF_TEST_REDIS_URL", "Redis")
    else:
        settings.WORKFLOW_REDIS_URL = ""
    yield locks.backend()


def test_a_lock_is_exclusive_until_released(backend, incident_id):
    assert backend.acquire("L", incident_id, "a", 60)
    assert backend.acquire("L", incident_id, "a", 60)  # re-entrant for its holder
    assert not backend.acquire("L", incident_id, "b", 60)
    assert backend.is_locked("L", incident_id)
    assert not backend.release("L", incident_id, "b")  # only the holder releases
    assert backend.release("L", incident_id, "a")
    assert not backend.is_locked("L", incident_id)
    assert backend.acquire("L", incident_id, "b", 60)


def test_clear_removes_only_that_incidents_locks(backend, incident_id):
    other = workflow.CreateIncident(name="other", kind="TEST")
    backend.acquire("L", incident_id, "a", 60)
    backend.acquire("M", incident_id, "a", 60)
    backend.acquire("L", other, "a", 60)
    assert backend.clear(incident_id) == 2
    assert backend.is_locked("L", other) and not backend.is_locked("L", incident_id)
    backend.clear(other)


def test_a_lease_that_ran_out_can_be_taken_over(backend, incident_id, settings):
    if isinstance(backend, locks.DatabaseLocks):
        backend.acquire("L", incident_id, "dead", 60)
        Lock.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    else:
        backend.acquire("L", incident_id, "dead", 0.001)
        backend.client.pexpire(backend._key("L", incident_id), 1)
        assert locks.wait_for("L", incident_id, "probe", timeout=5)  # the key expires in 1 ms
        backend.release("L", incident_id, "probe")
        backend.acquire("L", incident_id, "dead", 0.001)
        backend.client.delete(backend._key("L", incident_id))
    assert backend.acquire("L", incident_id, "alive", 60)
    backend.clear(incident_id)


def test_get_lock_waits_for_the_holder_and_times_out(backend, transactional_db):
    incident_id = workflow.CreateIncident(name="shared", kind="TEST")
    workflow.GetLock("region", incident_id)
    assert workflow.IsLocked("region", incident_id)
    outcome = {}

    def contender():
        try:
            workflow.GetLock("region", incident_id, timeout=0.2)
            outcome["got"] = True
        except LockTimeout as exc:
            outcome["error"] = exc
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=contender)
    thread.start()
    thread.join(30)
    assert isinstance(outcome.get("error"), LockTimeout)
    assert workflow.ReleaseLock("region", incident_id) is True
    assert not workflow.IsLocked("region", incident_id)
    assert workflow.ReleaseLock("region", incident_id) is False


def test_locks_a_handler_takes_are_released_when_it_returns(backend, incident_id):
    @workflow.handler
    def holder(message):
        workflow.GetLock("region", message["IncidentID"])
        message["held"] = workflow.IsLocked("region", message["IncidentID"])

    message = {"IncidentID": incident_id}
    holder(message)
    assert message["held"] is True
    assert not workflow.IsLocked("region", incident_id)


@pytest.mark.parametrize(("label", "timeout"), [("", None), (5, None), ("ok", -1), ("ok", "1")])
def test_bad_lock_arguments_are_refused(incident_id, label, timeout):
    with pytest.raises(WorkflowError):
        workflow.GetLock(label, incident_id, timeout=timeout)
    assert not Lock.objects.exists()


def test_a_lock_held_longer_than_its_lease_is_renewed_not_lost(backend, transactional_db, settings):
    settings.WORKFLOW_LOCK_LEASE_SECONDS = 1.0
    incident_id = workflow.CreateIncident(name="long hold", kind="TEST")
    assert locks.take("long", incident_id, "runner")
    try:
        # Wait three leases; without renewal another worker could take the lock by now.
        wait_end = threading.Event()
        wait_end.wait(3.0)
        assert not backend.acquire("long", incident_id, "intruder", 60)
    finally:
        locks.give_back("long", incident_id, "runner")
    assert backend.acquire("long", incident_id, "intruder", 60)
    backend.release("long", incident_id, "intruder")


def test_check_lock_is_the_originals_try_acquire_it_takes_a_free_lock_and_never_waits(
        backend, transactional_db):
    incident_id = workflow.CreateIncident(name="try", kind="TEST")
    assert workflow.CheckLock("region", incident_id) is True  # free: taken
    assert workflow.IsLocked("region", incident_id)
    outcome = {}

    def other_process():
        try:
            outcome["second"] = workflow.CheckLock("region", incident_id)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=other_process)  # another owner (thread id)
    thread.start()
    thread.join(30)
    assert outcome == {"second": False}
    assert workflow.ReleaseLock("region", incident_id) is True
    assert not workflow.IsLocked("region", incident_id)


def test_a_lock_a_handler_takes_with_check_lock_is_released_when_it_returns(backend, incident_id):
    @workflow.handler
    def try_holder(message):
        message["took"] = workflow.CheckLock("region", message["IncidentID"])
        message["held"] = workflow.IsLocked("region", message["IncidentID"])

    message = {"IncidentID": incident_id}
    try_holder(message)
    assert (message["took"], message["held"]) == (True, True)
    assert not workflow.IsLocked("region", incident_id)
