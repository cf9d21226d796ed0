"""Claiming a message for a run in one statement, in the common case.

The general path (dispatch.deliver) reads the log row and its incident, decides, then claims
the row: two round trips before the handler starts. Most deliveries are a first delivery of
a message to a plain (not @atomic) handler of an ACTIVE incident; for those one conditional
UPDATE ... RETURNING checks and claims at once. When it matches nothing, nothing changed and
the general path decides what the delivery is.
"""
from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Field

from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus


@functools.cache
def _statement(vendor: str) -> str:
    q = connection.ops.quote_name
    log, incident = q(MessageLog._meta.db_table), q(Incident._meta.db_table)

    def column(model: type[MessageLog] | type[Incident], name: str) -> str:
        return q(cast("Field[Any, Any]", model._meta.get_field(name)).column)

    status, attempts = column(MessageLog, "status"), column(MessageLog, "attempts")
    return (
        f"UPDATE {log} SET {status} = %s, {attempts} = {attempts} + 1, "
        f"{column(MessageLog, 'received')} = %s, {column(MessageLog, 'consumer')} = %s "
        f"WHERE {column(MessageLog, 'id')} = %s AND {column(MessageLog, 'incident')} = %s "
        f"AND {column(MessageLog, 'destination')} = %s AND {status} IN (%s, %s) "
        f"AND {attempts} < %s AND EXISTS (SELECT 1 FROM {incident} "
        f"WHERE {column(Incident, 'id')} = %s AND {column(Incident, 'status')} = %s) "
        f"RETURNING {attempts}")


def claim_first_delivery(queue: str, message_id: str, incident_id: str, *, received: datetime,
                         consumer: str, max_attempts: int) -> int | None:
    """Claim the message if it is QUEUED or SENT for `queue`, has attempts left and its
    incident is ACTIVE; return the attempt number, or None if it is not that simple."""
    if not connection.features.can_return_columns_from_insert:
        return None  # no RETURNING (SQLite before 3.35): the general path claims
    pk = MessageLog._meta.pk
    incident_pk = Incident._meta.pk
    assert pk is not None and incident_pk is not None
    message_key = pk.get_db_prep_value(message_id, connection)
    incident_key = incident_pk.get_db_prep_value(incident_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_statement(connection.vendor), [
            MessageStatus.PROCESSING,
            MessageLog._meta.get_field("received").get_db_prep_value(received, connection),
            consumer, message_key, incident_key, queue, MessageStatus.QUEUED,
            MessageStatus.SENT, max_attempts, incident_key, IncidentStatus.ACTIVE])
        row = cursor.fetchone()
    return None if row is None else int(row[0])
