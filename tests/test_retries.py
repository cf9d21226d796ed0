"""Retries with backoff: RegisterHandler(retries=...) and raise workflow.Retry(...)."""
from __future__ import annotations

import datetime as dt

import pytest

from incidents import workflow
from incidents.engine import dispatch, graph, registry, retrying, screening, tasks
from incidents.engine.runs import Result, RetryScheduled
from incidents.exceptions import HandlerRegistrationError
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from tests.conftest import TEST_MODULES, ended, wait_until
from tests.workflows import flaky

registry.load_workflow_modules(["tests.workflows.flaky"])

pytestmark = pytest.mark.usefixtures("broker")


def sent(incident_id, queue, folder):
    message = {"IncidentID": incident_id, "folder": str(folder)}
    workflow.send(message=message, queue=queue)
    workflow.FlushMessages()
    return message


def deliver_with_retries(queue, message, *, deliveries=10, retried=0, notes=""):
    """Deliver as the worker's task does, carrying the retry count and notes from one
    delivery to the next, at once; the outcome and the delays the retries asked for."""
    delays = []
    for _ in range(deliveries):
        try:
            return dispatch.deliver(queue, message, retried=retried, notes=notes), delays
        except RetryScheduled as retry:
            retried, notes = retry.retried, retry.notes
            delays.append(retry.delay)
    pytest.fail(f"still retrying after {deliveries} deliveries")


def row(message):
    return MessageLog.objects.get(pk=message["MessageID"])


def test_a_handler_failing_twice_completes_on_its_third_attempt_with_each_retry_noted(
        incident_id, tmp_path):
    message = sent(incident_id, "flaky_twice", tmp_path)
    outcome, delays = deliver_with_retries("flaky_twice", message)
    assert outcome.result is Result.COMPLETE
    logged = row(message)
    assert logged.status == MessageStatus.COMPLETE and logged.attempts == 3
    lines = logged.comment.splitlines()
    assert lines[0].startswith("retry 1/3 in ") and "after ValueError: flaky on run 1" in lines[0]
    assert lines[1].startswith("retry 2/3 in ") and "after ValueError: flaky on run 2" in lines[1]
    assert len(delays) == 2 and all(0.75 <= d <= 1.25 for d in delays)  # backoff 1, +-25%
    # The failed runs' sends and Puts were discarded; the third run's Put stayed.
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="flaky_side").exists()
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == [{"attempt": 3}]
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert "\n1 retried" in graph.build(incident_id).nodes["flaky_twice"].label


def test_a_handler_that_always_fails_ends_error_after_its_retries(incident_id, tmp_path):
    message = sent(incident_id, "flaky_always", tmp_path)
    outcome, delays = deliver_with_retries("flaky_always", message)
    assert outcome.result is Result.ERROR and len(delays) == 2
    logged = row(message)
    assert logged.status == MessageStatus.ERROR and logged.attempts == 3
    assert "retry 2/2" in logged.comment and "failed after 3 attempts (2 retries)" in logged.comment
    assert len(list(tmp_path.glob("run-*"))) == 3
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and "after 3 attempts" in incident.comment


def test_an_error_outside_retry_on_fails_at_once(incident_id, tmp_path):
    message = sent(incident_id, "flaky_filtered", tmp_path)
    outcome = dispatch.deliver("flaky_filtered", message)  # no RetryScheduled
    assert outcome.result is Result.ERROR
    assert row(message).attempts == 1 and "retry" not in row(message).comment


def test_retry_with_a_delay_is_scheduled_on_celery_with_that_countdown(
        incident_id, tmp_path, monkeypatch):
    message = sent(incident_id, "flaky_asks", tmp_path)
    scheduled = []

    def retry_later(task, countdown, **kwargs):
        scheduled.append((countdown, kwargs["kwargs"]))
        return RuntimeError("scheduled")

    monkeypatch.setattr(tasks, "_retry_later", retry_later)
    task = tasks.celery_app.get().tasks[registry.task_name("flaky_asks")]
    task.apply(args=[message])
    assert len(scheduled) == 1
    countdown, kwargs = scheduled[0]
    assert countdown == 7.5 and kwargs["retried"] == 1
    assert kwargs["notes"].startswith("retry 1/3 in 7.5 s after Retry: the input is not ready")
    logged = row(message)  # waiting again, its run counted
    assert logged.status == MessageStatus.SENT and logged.attempts == 1
    assert logged.comment == kwargs["notes"]
    # Retry() without `retries` configured: 3 retries, then the error policy.
    outcome, delays = deliver_with_retries("flaky_asks", message, retried=1, notes=kwargs["notes"])
    assert outcome.result is Result.ERROR and delays == [7.5, 7.5]  # retries 2 and 3
    assert row(message).attempts == 4


def test_a_cancel_while_a_retry_waits_leaves_the_retry_not_processed(incident_id, tmp_path):
    message = sent(incident_id, "flaky_always", tmp_path)
    with pytest.raises(RetryScheduled) as retry:
        dispatch.deliver("flaky_always", message)
    workflow.Cancel(incident_id, reason="operator")
    workflow.FlushMessages()
    outcome = dispatch.deliver("flaky_always", message, retried=retry.value.retried)
    assert outcome.result is Result.NOT_PROCESSED
    assert row(message).status == MessageStatus.NOT_PROCESSED
    assert len(list(tmp_path.glob("run-*"))) == 1


def test_a_kill_revokes_a_waiting_retry(incident_id, tmp_path):
    from incidents.engine import operations

    message = sent(incident_id, "flaky_always", tmp_path)
    with pytest.raises(RetryScheduled) as retry:
        dispatch.deliver("flaky_always", message)
    operations.kill_incident(incident_id, reason="operator")
    assert row(message).status == MessageStatus.NOT_PROCESSED
    outcome = dispatch.deliver("flaky_always", message, retried=retry.value.retried)
    assert outcome.result is Result.DUPLICATE
    assert len(list(tmp_path.glob("run-*"))) == 1


def test_retries_do_not_use_up_the_attempts_meant_for_runs_that_died(
        incident_id, tmp_path, settings):
    settings.WORKFLOW_MAX_ATTEMPTS = 2
    message = sent(incident_id, "flaky_twice", tmp_path)
    outcome, _ = deliver_with_retries("flaky_twice", message)
    assert outcome.result is Result.COMPLETE and row(message).attempts == 3


def test_the_backoff_grows_with_jitter_and_is_capped():
    policy = retrying.policy(5, 2, (Exception,), "q")
    for _ in range(50):
        assert 3.0 <= retrying.delay(policy, ValueError(), 3) <= 5.0  # 2**2, +-25%
    assert retrying.delay(policy, ValueError(), 40) <= retrying.MAX_DELAY_SECONDS


@pytest.mark.parametrize(("options", "fault"), [
    ({"retries": -1}, "retries -1 must be a whole number from 0 to 100"),
    ({"retries": 101}, "retries 101 must be"),
    ({"retries": True}, "retries True must be"),
    ({"retry_backoff": 0.5}, "retry_backoff 0.5 must be a number >= 1"),
    ({"retry_on": ValueError("x")}, "retry_on ValueError('x') must be an exception class"),
    ({"retry_on": (ValueError, int)}, "must be an exception class or a tuple of them"),
])
def test_bad_retry_options_are_refused_at_registration(options, fault):
    with pytest.raises(HandlerRegistrationError, match=fault.replace("(", r"\(").replace(")", r"\)")):
        workflow.RegisterHandler(flaky.flaky_side, "flaky_bad", **options)
    assert registry.handler_for("flaky_bad") is None


@pytest.fixture
def flaky_workers(transactional_db, broker):
    modules = f"{TEST_MODULES},tests.workflows.flaky"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


@pytest.mark.e2e
def test_workers_retry_a_flaky_handler_and_give_up_on_a_broken_one(flaky_workers, tmp_path):
    flaky_workers.start("flaky1")
    (tmp_path / "twice").mkdir()
    (tmp_path / "always").mkdir()
    flaky = workflow.CreateIncident(name="flaky", kind="TEST")
    broken = workflow.CreateIncident(name="broken", kind="TEST")
    twice = sent(flaky, "flaky_twice", tmp_path / "twice")
    always = sent(broken, "flaky_always", tmp_path / "always")
    assert wait_until(lambda: ended(flaky), what="the flaky incident").status == \
        IncidentStatus.COMPLETE
    logged = row(twice)
    assert logged.attempts == 3 and logged.comment.count("retry ") == 2
    assert wait_until(lambda: ended(broken), what="the broken incident").status == \
        IncidentStatus.ERROR
    logged = row(always)
    assert logged.status == MessageStatus.ERROR and logged.attempts == 3
    assert "failed after 3 attempts (2 retries)" in logged.comment


def test_a_handler_retry_the_longest_wait_away_is_not_taken_for_a_foreign_eta():
    in_ten_minutes = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retrying.MAX_DELAY_SECONDS)
    body = b'[[{"IncidentID": "x"}], {}, {}]'
    ours = {"task": "workflow.q", "id": "m", "retries": 1, "eta": in_ten_minutes.isoformat()}
    assert screening.refusal(body, ours) is None
    far = {**ours, "eta": (in_ten_minutes + dt.timedelta(hours=1)).isoformat()}
    assert "further off than any retry" in (screening.refusal(body, far) or "")
