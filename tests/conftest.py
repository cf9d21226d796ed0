"""Shared fixtures: a clean broker per test, incidents, local worker processes."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from django.db import connections

from incidents import workflow
from incidents.engine import context, locks, registry
from incidents.models import Incident, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import purge_queues

if TYPE_CHECKING:
    from django.test import Client

REQUIRE_SERVICES = os.environ.get("WF_REQUIRE_SERVICES") == "1"
TEST_MODULES = "workflows.simple,workflows.quicksort,workflows.julia,workflows.wildfire,tests.workflows.probe"
registry.load_workflow_modules(["tests.workflows.probe"])
# The live server answers each request in a new thread; persistent connections would outlive
# those threads and keep the test database busy at teardown.
connections.settings["default"]["CONN_MAX_AGE"] = 0


def need_service(env_name: str, what: str) -> str:
    """The service's URL; skip (or, in CI, fail) when it is not configured."""
    url = os.environ.get(env_name)
    if not url:
        message = f"{what} not available: set {env_name} (see .ci/services)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(autouse=True)
def _clean_staging() -> Iterator[None]:
    """Each test starts with nothing staged outside a handler, and no lock a test took in
    this process is renewed after it (its database is gone: the renewal would fail and log
    a traceback from its thread each second)."""
    context.outside_staging().outbox.clear()
    yield
    context.outside_staging().outbox.clear()
    locks.renewer.forget_all()


@pytest.fixture
def broker() -> Iterator[None]:
    """The configured broker with every registered queue empty."""
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def incident_id(transactional_db: None) -> str:
    return workflow.CreateIncident(name="test incident", kind="TEST")


@pytest.fixture
def workers(transactional_db: None, broker: None) -> Iterator[WorkerGroup]:
    """Start worker processes with group.start(name); all are stopped after the test."""
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": TEST_MODULES})) as group:
        yield group


def ended(incident_id: str) -> Incident | None:
    """The incident once it has ended and been cleaned up, else None."""
    incident = Incident.objects.get(pk=incident_id)
    return incident if incident.cleaned_at else None


def run_seed_example(name: str) -> Incident:
    """Run the seed's A -> B example on the running workers; the ended incident."""
    incident_id = workflow.CreateIncident(name=name, kind="DUMMY_INCIDENT")
    workflow.send(queue="A_queue", message={"IncidentID": incident_id})
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(incident_id), what="the incident to complete")
    assert isinstance(incident, Incident)
    return incident


def start_blocked_incident(folder, name: str) -> str:
    """An incident whose probe_block handler has started, waits for folder/release, and
    shows in the log as PROCESSING (a run is marked so once it lasts CLAIM_AFTER_SECONDS)."""
    incident_id = workflow.CreateIncident(name=name, kind="TEST")
    workflow.send(message={"IncidentID": incident_id, "folder": str(folder)}, queue="probe_block")
    workflow.FlushMessages()
    wait_until(lambda: (folder / "started-1").exists(), what="the handler to start")
    wait_until(lambda: MessageLog.objects.filter(
        incident_id=incident_id, destination="probe_block", status=MessageStatus.PROCESSING,
        attempts=1).exists(), what="the long run to show as PROCESSING")
    return incident_id


def wait_until(condition: Callable[[], object], *, timeout: float = 120, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.1)


def staff(username: str, *codenames: str) -> Client:
    """A logged-in admin client of a staff user with just these permissions."""
    # Imported here: plain scripts import tests modules (and so this one) before Django is set up.
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user(username, password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client
