"""Records of the workflow: incidents, the message log, persisted handler state, locks,
result files and what operators did."""
from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import models
from django.db.models import Q


class IncidentStatus(models.TextChoices):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"
    KILLED = "KILLED"


LIVE_INCIDENT_STATUSES = (IncidentStatus.PENDING, IncidentStatus.ACTIVE)
ENDED_INCIDENT_STATUSES = (
    IncidentStatus.COMPLETE,
    IncidentStatus.CANCELLED,
    IncidentStatus.ERROR,
    IncidentStatus.KILLED,
)


class MessageStatus(models.TextChoices):
    QUEUED = "QUEUED", "queued (committed, not yet published)"
    SENT = "SENT", "sent (published to its queue)"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    NOT_PROCESSED = "NOT PROCESSED"


WAITING_STATUSES = (MessageStatus.QUEUED, MessageStatus.SENT)  # committed, not yet claimed
IN_FLIGHT_STATUSES = (*WAITING_STATUSES, MessageStatus.PROCESSING)
FINAL_STATUSES = (MessageStatus.COMPLETE, MessageStatus.ERROR, MessageStatus.NOT_PROCESSED)


class IncidentPriority(models.IntegerChoices):
    """How urgent an incident is: its messages overtake waiting ones of lower priority."""

    LOW = 0, "low"
    NORMAL = 1, "normal"
    HIGH = 2, "high"
    URGENT = 3, "urgent"


#: RabbitMQ's x-max-priority of every handler queue (a queue's arguments never change).
MAX_PRIORITY = max(IncidentPriority.values)


class Incident(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False,
                          help_text="The IncidentID every message of this incident carries.")
    name = models.CharField(max_length=200, help_text="A human name for this incident.")
    kind = models.CharField(max_length=100, db_index=True,
                            help_text="The kind of incident, e.g. WILDFIRE; selects the workflow.")
    status = models.CharField(max_length=16, choices=IncidentStatus.choices,
                              default=IncidentStatus.PENDING, help_text="Where the incident is in its life.")
    incident_date = models.DateTimeField(help_text="When the real-world incident started.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the incident was declared.")
    activated_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When the incident became ACTIVE.")
    completed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the incident was completed, cancelled, failed or killed.")
    cleaned_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When cleanup removed its locks and persisted state.")
    comment = models.TextField(blank=True, default="",
                               help_text="Why the incident ended the way it did.")
    ended_by = models.CharField(max_length=200, blank=True, default="",
                                help_text="Who ended it: a handler's name or an operator's.")
    parameters = models.JSONField(default=dict, blank=True,
                                  help_text="JSON parameters given when the incident was declared.")
    owner = models.CharField(max_length=150, blank=True, default="", db_index=True,
                             help_text="The user_id given to CreateIncident(): who owns it.")
    upper_left_latlong = models.CharField(
        max_length=100, blank=True, default="",
        help_text='Upper-left corner of the area, "latitude/longitude" as given; empty: none.')
    lower_right_latlong = models.CharField(
        max_length=100, blank=True, default="",
        help_text='Lower-right corner of the area, "latitude/longitude" as given; empty: none.')
    duration = models.FloatField(null=True, blank=True, help_text=(
        "The duration given to CreateIncident() (the original's unit, e.g. hours); empty: none."))
    priority = models.PositiveSmallIntegerField(
        choices=IncidentPriority.choices, default=IncidentPriority.NORMAL, help_text=(
            "Its messages are delivered before waiting ones of incidents of lower priority."))

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "kind"], name="incident_status_kind")]
        permissions = [
            ("cancel_incident", "Can cancel incidents"),
            ("kill_incident", "Can kill incidents"),
            ("resume_incident", "Can resume failed incidents"),
            ("inject_message", "Can send a message into an incident"),
            ("set_priority", "Can change a live incident's priority"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_INCIDENT_STATUSES


class MessageLog(models.Model):
    id = models.UUIDField(primary_key=True, editable=False,
                          help_text="The MessageID; also the Celery task id of its delivery.")
    # No index of its own: the composite indexes below start with it (one index fewer to
    # write per row).
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="messages",
                                 db_index=False, help_text="The incident this message belongs to.")
    originator = models.CharField(max_length=200, blank=True, default="",
                                  help_text="Handler that sent it; empty when sent from outside any handler.")
    destination = models.CharField(max_length=200, help_text="The queue it was sent to.")
    src_tag = models.CharField(max_length=200, blank=True, default="",
                               help_text="Optional name of the sending node in the graph.")
    dest_tag = models.CharField(max_length=200, blank=True, default="",
                                help_text="Optional name of the receiving node in the graph.")
    status = models.CharField(max_length=16, choices=MessageStatus.choices,
                              default=MessageStatus.QUEUED, help_text="Where the message is in its life.")
    submitted = models.DateTimeField(help_text=(
        "When the send was committed (or last handed to the relay); a timer's due time until "
        "it fires."))
    received = models.DateTimeField(null=True, blank=True, help_text="When a handler started on it.")
    completed = models.DateTimeField(null=True, blank=True, help_text="When its handling ended.")
    duration = models.FloatField(null=True, blank=True, help_text="Handling time in seconds.")
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a handler started on it.")
    lock_wait = models.FloatField(null=True, blank=True, help_text=(
        "Seconds it waited for its @atomic handler's lock, over all tries; empty otherwise."))
    consumer = models.CharField(max_length=200, blank=True, default="",
                                help_text="host:pid of the worker that handled it last.")
    publish_failures = models.PositiveSmallIntegerField(default=0, help_text=(
        "How many times the broker refused to take it (its queue's declaration, permissions); "
        "it is given up as ERROR after a few."))
    comment = models.TextField(blank=True, default="",
                               help_text="Why it ended as it did (traceback for ERROR).")
    body = models.JSONField(help_text="The message as sent, with MessageID and originator.")
    not_before = models.DateTimeField(null=True, blank=True, help_text=(
        "A timer (send(delay=...)): not published before this time; empty for other messages."))
    priority = models.PositiveSmallIntegerField(
        choices=IncidentPriority.choices, default=IncidentPriority.NORMAL, help_text=(
            "Its incident's priority when it was (last) published."))

    class Meta:
        ordering = ["-submitted"]
        indexes = [
            models.Index(fields=["incident", "status"], name="message_incident_status"),
            # The relay's: committed and not yet handled (QUEUED, SENT).
            models.Index(fields=["submitted"], name="message_waiting",
                         condition=Q(status__in=["QUEUED", "SENT"])),
            # The timer loop's: timers not yet published, by due time (engine/timers.py).
            models.Index(fields=["not_before"], name="message_timers",
                         condition=Q(status="QUEUED", not_before__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.id} -> {self.destination} ({self.status})"


class HandlerState(models.Model):
    """One Persist.Put(); read back in insertion order."""

    # No index of its own: the composite indexes below start with it (one index fewer to
    # write per row).
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="states",
                                 db_index=False, help_text="The incident the state belongs to.")
    handler = models.CharField(max_length=200, help_text="Name of the handler that stored it.")
    key = models.CharField(max_length=200, blank=True, default="",
                           help_text="Optional key given to Persist.Put(); Get(key=...) reads only it.")
    # JSON text, not a JSON column: PostgreSQL's jsonb turns the float 1e16 into an integer,
    # and a handler must get back on every stack exactly what it put.
    data = models.TextField(null=True, help_text="The value given to Persist.Put(), as JSON text.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was committed.")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["incident", "handler", "id"], name="state_incident_handler"),
                   models.Index(fields=["incident", "key", "id"], name="state_incident_key")]

    def __str__(self) -> str:
        return f"{self.handler} @ {self.incident_id}"


class Lock(models.Model):
    """A leased lock; an expired lease may be taken over."""

    # No index of its own: the composite indexes below start with it (one index fewer to
    # write per row).
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="locks",
                                 db_index=False, help_text="The incident the lock is scoped to.")
    label = models.CharField(max_length=200, help_text="What the lock protects.")
    owner = models.CharField(max_length=200, help_text="Token of the holder (message run or process).")
    acquired_at = models.DateTimeField(help_text="When the holder took it.")
    expires_at = models.DateTimeField(help_text="When the lease ends unless renewed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "label"], name="lock_unique_label"),
        ]

    def __str__(self) -> str:
        return f"{self.label} @ {self.incident_id} by {self.owner}"


#: The STORAGES alias that, when a deployment defines it, holds the result files.
RESULTS_STORAGE = "workflow_results"


def results_storage() -> Storage:
    """Where result files live: settings.STORAGES["workflow_results"] when defined (S3 and the
    like, the Django way), else a folder: WORKFLOW_RESULTS_DIR, by default var/results."""
    from incidents import conf

    if RESULTS_STORAGE in settings.STORAGES:
        return storages[RESULTS_STORAGE]
    return FileSystemStorage(location=conf.get("RESULTS_DIR") or Path(settings.VAR_DIR) / "results")


class ResultFile(models.Model):
    """A file a handler attached to its incident (workflow.AttachResult): kept after the
    incident's cleanup, until WORKFLOW_RESULTS_RETENTION_DAYS. One per name and incident."""

    # No index of its own: the unique constraint below starts with it.
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="results",
                                 db_index=False, help_text="The incident the result belongs to.")
    name = models.CharField(max_length=100, help_text=(
        "File name given to AttachResult(); attaching the name again replaces the result."))
    title = models.CharField(max_length=200, blank=True, default="",
                             help_text="Optional caption shown with it in the admin.")
    content_type = models.CharField(max_length=100, help_text=(
        "MIME type it is served with, e.g. image/png (guessed from the name unless given)."))
    size = models.PositiveBigIntegerField(help_text="Size of the file in bytes.")
    file = models.FileField(storage=results_storage, max_length=300, help_text=(
        "The stored file: <IncidentID>/<MessageID or a random id>/<name> in the results storage."))
    handler = models.CharField(max_length=200, blank=True, default="", help_text=(
        "Handler that attached it; empty when attached from outside any handler."))
    created = models.DateTimeField(help_text=(
        "When it was attached (its handler's commit); retention counts from here."))

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "name"], name="result_unique_name"),
        ]
        indexes = [models.Index(fields=["created"], name="result_created")]

    def __str__(self) -> str:
        return f"{self.name} @ {self.incident_id}"


class OperatorAction(models.Model):
    """Something an operator did to an incident (admin or command): who, when, why, what."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="actions",
                                 db_index=False, help_text="The incident acted on.")
    action = models.CharField(max_length=32, help_text=(
        "What was done: cancel, kill, resume, inject, drain, ..."))
    by = models.CharField(max_length=200, help_text='Who: "alice (admin)", "bob (command line)".')
    at = models.DateTimeField(auto_now_add=True, help_text="When it was done.")
    reason = models.TextField(blank=True, default="", help_text="Why, as the operator gave it.")
    details = models.JSONField(default=dict, blank=True, help_text=(
        "What it touched: the message sent, the messages resumed, the drain's deadline, ..."))

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["incident", "at"], name="action_incident_at")]

    def __str__(self) -> str:
        return f"{self.action} by {self.by} at {self.at:%Y-%m-%d %H:%M:%S}"


class ResourceStatus(models.TextChoices):
    HELD = "HELD", "held (the incident still uses it)"
    RELEASING = "RELEASING", "releasing (its release message is on its way)"
    RELEASED = "RELEASED"
    FAILED = "FAILED", "failed (its release failed: retry it)"


#: Not yet released: what would still cost money if everything were killed now.
OUTSTANDING_RESOURCE_STATUSES = (ResourceStatus.HELD, ResourceStatus.RELEASING,
                                 ResourceStatus.FAILED)


class ExternalResource(models.Model):
    """Something an incident holds outside the engine (an HPC job, a transfer, a
    subscription): released by a message to `release_queue` when the incident ends."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="resources",
                                 db_index=False, help_text="The incident that holds it.")
    kind = models.CharField(max_length=100, help_text='What it is: "hpc_job", "transfer", ...')
    ref = models.CharField(max_length=500, help_text=(
        "Its reference outside (a job id, a transfer id); unique within the incident."))
    release_queue = models.CharField(max_length=200, blank=True, default="", help_text=(
        "The queue whose handler releases it (cancels the job); empty: nothing to call."))
    data = models.JSONField(default=dict, blank=True, help_text=(
        "What the release handler needs besides the reference."))
    status = models.CharField(max_length=16, choices=ResourceStatus.choices,
                              default=ResourceStatus.HELD)
    registered_by = models.CharField(max_length=200, blank=True, default="", help_text=(
        "The handler that registered it; empty: code outside any handler."))
    registered_at = models.DateTimeField(help_text="When its registration was committed.")
    released_at = models.DateTimeField(null=True, blank=True, help_text=(
        "When it was released (by ReleaseResource or its release handler)."))
    release_message = models.UUIDField(null=True, blank=True, help_text=(
        "The MessageID of its latest release message."))
    release_attempts = models.PositiveSmallIntegerField(default=0, help_text=(
        "Release messages sent for it (a retry from the admin sends another)."))
    comment = models.TextField(blank=True, default="", help_text=(
        "How it was released, or why its release failed."))

    class Meta:
        ordering = ["-registered_at"]
        constraints = [models.UniqueConstraint(fields=["incident", "ref"],
                                               name="resource_unique_ref")]
        indexes = [models.Index(fields=["status"], name="resource_outstanding",
                                condition=Q(status__in=["HELD", "RELEASING", "FAILED"])),
                   models.Index(fields=["release_message"], name="resource_release_message")]
        permissions = [("retry_release", "Can retry a failed resource release")]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} ({self.status})"
