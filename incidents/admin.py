"""Read-only admin views of the records (the operator's console grows from here)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin

from incidents.models import HandlerState, Incident, Lock, MessageLog


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(ReadOnly):
    list_display = ("name", "kind", "status", "created_at", "completed_at")
    list_filter = ("status", "kind")
    search_fields = ("name", "id")


@admin.register(MessageLog)
class MessageLogAdmin(ReadOnly):
    list_display = ("id", "incident", "originator", "destination", "status", "submitted", "duration")
    list_filter = ("status", "destination")
    search_fields = ("id", "incident__id")


@admin.register(HandlerState)
class HandlerStateAdmin(ReadOnly):
    list_display = ("incident", "handler", "created_at")


@admin.register(Lock)
class LockAdmin(ReadOnly):
    list_display = ("incident", "label", "owner", "expires_at")
