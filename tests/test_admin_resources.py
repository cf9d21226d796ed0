"""External resources in the admin: on the incident page (with Retry release behind its
permission), the warning while an ended incident's releases are outstanding, and the
read-only list of all resources, outstanding ones by default."""
from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.engine import operations, registry
from incidents.models import (
    ExternalResource,
    Incident,
    IncidentStatus,
    MessageLog,
    OperatorAction,
    ResourceStatus,
)
from workflows import batch, batch_scheduler

from .conftest import staff, wait_until
from .test_batch import batch_workers  # noqa: F401  (fixture)

registry.load_workflow_modules(["workflows.batch"])  # batch_cancel: the release queue used here

pytestmark = pytest.mark.usefixtures("broker")

VIEWER = ("view_incident",)
RETRIER = ("view_incident", "retry_release")


def an_incident(name: str, *, ended: bool) -> str:
    incident_id = workflow.CreateIncident(name=name, kind="TEST")
    if ended:  # as the engine leaves a killed one (its own tests cover how it gets there)
        Incident.objects.filter(pk=incident_id).update(status=IncidentStatus.KILLED,
                                                       completed_at=timezone.now())
    return incident_id


def a_resource(incident_id: str, status: str, ref: str | None = None, **fields) -> ExternalResource:
    return ExternalResource.objects.create(
        incident_id=incident_id, kind=fields.pop("kind", "batch_job"), ref=ref or str(uuid.uuid4()),
        release_queue="batch_cancel", status=status, registered_by="submit_handler",
        registered_at=timezone.now(), **fields)


def page_of(incident_id: str) -> str:
    return reverse("admin:incidents_incident_change", args=[incident_id])


def retry_url(resource: ExternalResource) -> str:
    return reverse("admin:incidents_incident_retry_release", args=[resource.incident_id, resource.pk])


# -- the incident page ------------------------------------------------------------------------

def test_the_incident_page_lists_its_resources_with_their_status(transactional_db):
    incident_id = an_incident("holds two jobs", ended=False)
    a_resource(incident_id, ResourceStatus.HELD, ref="job-held-1")
    a_resource(incident_id, ResourceStatus.RELEASED, ref="job-done-2", comment="released by the workflow",
               released_at=timezone.now())
    other = a_resource(an_incident("another", ended=False), ResourceStatus.HELD, ref="job-other")

    html = staff("viewer", *VIEWER).get(page_of(incident_id)).content.decode()

    assert 'id="wf-resources"' in html and "External resources (2)" in html
    assert "job-held-1" in html and "job-done-2" in html and other.ref not in html
    assert "wf-resource-held" in html and "wf-resource-released" in html  # the badges
    assert "batch_cancel" in html and "submit_handler" in html and "released by the workflow" in html
    assert "not fully cleaned" not in html  # still live: nothing to warn about yet


def test_an_incident_without_resources_shows_no_section(transactional_db):
    html = staff("viewer", *VIEWER).get(page_of(an_incident("plain", ended=True))).content.decode()
    assert 'id="wf-resources"' not in html and "not fully cleaned" not in html


def test_an_ended_incident_with_releases_outstanding_says_so_at_the_top(transactional_db):
    incident_id = an_incident("killed with jobs out", ended=True)
    a_resource(incident_id, ResourceStatus.FAILED, comment="scheduler unreachable")
    a_resource(incident_id, ResourceStatus.RELEASING)
    a_resource(incident_id, ResourceStatus.RELEASED, released_at=timezone.now())

    html = staff("viewer", *VIEWER).get(page_of(incident_id)).content.decode()

    notice = html.index("2 resource release(s) outstanding: not fully cleaned")
    assert notice < html.index('id="wf-resources"') and notice < html.index("<h2>Graph")


def test_the_retry_button_shows_only_with_the_permission_and_only_on_failed_ones(transactional_db):
    incident_id = an_incident("killed", ended=True)
    failed = a_resource(incident_id, ResourceStatus.FAILED)
    held = a_resource(incident_id, ResourceStatus.RELEASING)

    without = staff("viewer", *VIEWER).get(page_of(incident_id)).content.decode()
    allowed = staff("retrier", *RETRIER).get(page_of(incident_id)).content.decode()

    assert "Retry release" not in without and retry_url(failed) not in without
    assert allowed.count("Retry release</button>") == 1
    assert retry_url(failed) in allowed and retry_url(held) not in allowed
    assert "csrfmiddlewaretoken" in allowed.split(retry_url(failed), 1)[1].split("</form>", 1)[0]


def test_a_retry_sends_a_new_release_and_records_who_asked(transactional_db):
    incident_id = an_incident("killed", ended=True)
    failed = a_resource(incident_id, ResourceStatus.FAILED, comment="scheduler unreachable",
                        release_attempts=1)

    response = staff("retrier", *RETRIER).post(retry_url(failed), {"reason": "scheduler is back"})

    assert response.status_code == 302 and response["Location"].startswith(page_of(incident_id))
    failed.refresh_from_db()
    assert failed.status == ResourceStatus.RELEASING and failed.release_attempts == 2
    release = MessageLog.objects.get(pk=failed.release_message)
    assert release.destination == "batch_cancel" and release.body["Resource"]["ref"] == failed.ref
    action = OperatorAction.objects.get(incident_id=incident_id, action="retry_release")
    assert "retrier" in action.by and action.reason == "scheduler is back"


def test_a_retry_post_without_the_permission_is_refused(transactional_db):
    incident_id = an_incident("killed", ended=True)
    failed = a_resource(incident_id, ResourceStatus.FAILED)

    response = staff("viewer", *VIEWER).post(retry_url(failed), {"reason": "let me"})

    assert response.status_code == 403
    failed.refresh_from_db()
    assert failed.status == ResourceStatus.FAILED and failed.release_message is None
    assert not OperatorAction.objects.filter(action="retry_release").exists()


def test_a_retry_is_only_a_post(transactional_db):
    failed = a_resource(an_incident("killed", ended=True), ResourceStatus.FAILED)
    assert staff("retrier", *RETRIER).get(retry_url(failed)).status_code == 405


def test_retrying_a_resource_that_has_not_failed_says_why_and_changes_nothing(transactional_db):
    incident_id = an_incident("killed", ended=True)
    releasing = a_resource(incident_id, ResourceStatus.RELEASING)

    response = staff("retrier", *RETRIER).post(retry_url(releasing), follow=True)

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and "RELEASING" in shown[0]
    releasing.refresh_from_db()
    assert releasing.status == ResourceStatus.RELEASING and releasing.release_attempts == 0


def test_a_retry_with_a_reason_too_long_says_so_and_changes_nothing(transactional_db):
    failed = a_resource(an_incident("killed", ended=True), ResourceStatus.FAILED)

    response = staff("retrier", *RETRIER).post(retry_url(failed), {"reason": "x" * 2001}, follow=True)

    assert ["too long" in str(m) for m in response.context["messages"]] == [True]
    failed.refresh_from_db()
    assert failed.status == ResourceStatus.FAILED and failed.release_message is None


def test_a_retry_of_another_incidents_resource_is_not_found(transactional_db):
    failed = a_resource(an_incident("killed", ended=True), ResourceStatus.FAILED)
    elsewhere = an_incident("other", ended=True)
    url = reverse("admin:incidents_incident_retry_release", args=[elsewhere, failed.pk])
    assert staff("retrier", *RETRIER).post(url).status_code == 404


# -- the list of all resources ----------------------------------------------------------------

LIST = "admin:incidents_externalresource_changelist"


def test_the_list_shows_outstanding_resources_of_every_incident_by_default(transactional_db):
    first, second = an_incident("first", ended=True), an_incident("second", ended=False)
    a_resource(first, ResourceStatus.FAILED, ref="job-failed")
    a_resource(second, ResourceStatus.HELD, ref="job-held")
    a_resource(second, ResourceStatus.RELEASING, ref="job-releasing")
    a_resource(first, ResourceStatus.RELEASED, ref="job-released", released_at=timezone.now())
    client = staff("viewer", *VIEWER)

    default = client.get(reverse(LIST))
    everything = client.get(reverse(LIST), {"status": "all"})
    released = client.get(reverse(LIST), {"status": "RELEASED"})

    assert {r.ref for r in default.context["cl"].result_list} == {
        "job-failed", "job-held", "job-releasing"}
    assert "would still cost money" in default.content.decode()
    assert page_of(first) in default.content.decode()  # the incident, as a link
    assert len(everything.context["cl"].result_list) == 4
    assert [r.ref for r in released.context["cl"].result_list] == ["job-released"]


def test_the_list_filters_by_kind_and_finds_a_reference(transactional_db):
    incident_id = an_incident("mixed", ended=False)
    a_resource(incident_id, ResourceStatus.HELD, ref="job-123", kind="batch_job")
    a_resource(incident_id, ResourceStatus.HELD, ref="transfer-9", kind="transfer")
    client = staff("viewer", *VIEWER)

    by_kind = client.get(reverse(LIST), {"kind": "transfer"}).context["cl"].result_list
    found = client.get(reverse(LIST), {"q": "job-12"}).context["cl"].result_list

    assert [r.ref for r in by_kind] == ["transfer-9"]
    assert [r.ref for r in found] == ["job-123"]


def test_the_list_is_linked_from_the_admin_index(transactional_db):
    html = staff("viewer", *VIEWER).get(reverse("admin:index")).content.decode()
    assert reverse(LIST) in html


def test_no_one_adds_changes_or_deletes_a_resource_in_the_admin(transactional_db, admin_client):
    resource = a_resource(an_incident("held", ended=False), ResourceStatus.HELD, ref="job-1")
    change = reverse("admin:incidents_externalresource_change", args=[resource.pk])

    assert admin_client.get(reverse("admin:incidents_externalresource_add")).status_code == 403
    assert admin_client.post(change, {"status": "RELEASED", "ref": "x"}).status_code == 403
    delete = reverse("admin:incidents_externalresource_delete", args=[resource.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    page = admin_client.get(change)
    assert page.status_code == 200 and "job-1" in page.content.decode()  # viewable, read-only
    listing = admin_client.get(reverse(LIST)).content.decode()
    assert reverse("admin:incidents_externalresource_add") not in listing
    resource.refresh_from_db()
    assert (resource.status, resource.ref) == (ResourceStatus.HELD, "job-1")


# -- on workers: a release that failed, retried from the page once the scheduler is back ------

@pytest.mark.e2e
def test_a_release_that_failed_on_a_worker_is_retried_from_the_page(batch_workers):  # noqa: F811
    batch_workers.start("resources1")
    incident_id = operations.start_incident(kind=batch.KIND, name="its scheduler loses the job",
                                            parameters={"poll_seconds": 0.2, "job_polls": 100_000})
    job_id = wait_until(lambda: ExternalResource.objects.filter(incident_id=incident_id)
                        .values_list("ref", flat=True).first(), what="the job to be registered")
    assert isinstance(job_id, str)
    job_file = batch_scheduler.jobs_dir() / f"{job_id}.json"
    saved = job_file.read_text()
    job_file.unlink()  # the scheduler cannot find it: the release handler fails
    operations.kill_incident(incident_id, reason="stop", by="op")
    failed = wait_until(lambda: (r := ExternalResource.objects.get(incident_id=incident_id))
                        .status == ResourceStatus.FAILED and r, what="the release to fail")
    assert isinstance(failed, ExternalResource) and "UnknownJob" in failed.comment
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.KILLED  # unchanged
    page = staff("retrier", *RETRIER).get(page_of(incident_id)).content.decode()
    assert "1 resource release(s) outstanding: not fully cleaned" in page and retry_url(failed) in page

    job_file.write_text(saved)  # the scheduler is back
    staff("retrier2", *RETRIER).post(retry_url(failed), {"reason": "scheduler is back"})

    released = wait_until(lambda: (r := ExternalResource.objects.get(pk=failed.pk))
                          .status == ResourceStatus.RELEASED and r, what="the retried release")
    assert isinstance(released, ExternalResource) and released.release_attempts == 2
    assert batch_scheduler.job(job_id)["state"] == batch_scheduler.CANCELLED
    releases = MessageLog.objects.filter(incident_id=incident_id, destination="batch_cancel")
    assert sorted(r.status for r in releases) == ["COMPLETE", "ERROR"]
    page = staff("viewer", *VIEWER).get(page_of(incident_id)).content.decode()
    assert "not fully cleaned" not in page
