"""Queries shared by the admin and the commands."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from incidents.models import Incident, MessageStatus


def with_message_counts(incidents: QuerySet[Incident]) -> QuerySet[Incident]:
    """Annotate n_<status> (n_complete, n_not_processed, ...): the incident's messages by status."""
    return incidents.annotate(**{
        f"n_{status.name.lower()}": Count("messages", filter=Q(messages__status=status))
        for status in MessageStatus
    })
