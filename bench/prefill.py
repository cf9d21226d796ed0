"""Fill the database with finished incidents and their message log, as after months of use."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus

BATCH = 5000


def fill(incidents: int, log_rows: int) -> float:
    """Insert `incidents` COMPLETE incidents sharing `log_rows` COMPLETE log rows; return
    the seconds it took."""
    started = time.monotonic()
    day = timezone.now() - timedelta(days=30)
    ids = [uuid.uuid4() for _ in range(incidents)]
    with transaction.atomic():
        Incident.objects.bulk_create(
            [Incident(id=i, name=f"finished {n}", kind="CHAIN", status=IncidentStatus.COMPLETE,
                      incident_date=day, completed_at=day, cleaned_at=day)
             for n, i in enumerate(ids)], batch_size=BATCH)
    for first in range(0, log_rows, BATCH):
        rows = []
        for n in range(first, min(first + BATCH, log_rows)):
            incident_id = ids[n % incidents]
            message_id = uuid.uuid4()
            rows.append(MessageLog(
                id=message_id, incident_id=incident_id, originator="soak_hop_handler",
                destination="soak_hop", status=MessageStatus.COMPLETE, submitted=day,
                received=day, completed=day, duration=0.001, attempts=1, consumer="prefill",
                body={"IncidentID": str(incident_id), "MessageID": str(message_id), "left": n}))
        with transaction.atomic():
            MessageLog.objects.bulk_create(rows)
    return time.monotonic() - started
