"""Admin bases for records only the engine writes: the console shows them, nobody edits them."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyRecordAdmin(admin.ModelAdmin):
    """Shown, never added or changed in the admin (deleting follows Django's permission)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewOnlyAdmin(ReadOnlyRecordAdmin):
    """Shown only: a record deleted by hand would make the engine's bookkeeping lie."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
