"""External resources in the console: an incident's resources on its page (with "Retry
release" on a failed one, behind incidents.retry_release), a warning while an ended
incident's releases are outstanding, and the read-only list of all resources across
incidents, outstanding ones by default (what would still cost money if everything were
killed now)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from incidents import admin_readonly
from incidents.engine import resources
from incidents.exceptions import WorkflowError
from incidents.formatting import timestamp
from incidents.forms import operator_name
from incidents.models import (
    OUTSTANDING_RESOURCE_STATUSES,
    ExternalResource,
    Incident,
    ResourceStatus,
)

PERMISSION = "incidents.retry_release"
RESOURCE_COLOURS: dict[str, str] = {
    ResourceStatus.HELD: "#e67e22", ResourceStatus.RELEASING: "#1565c0",
    ResourceStatus.RELEASED: "#2e7d32", ResourceStatus.FAILED: "#c62828",
}


class RetryReleaseForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, help_text=(
        "Kept in the incident's operator actions."))


def badge(status: str) -> str:
    """The resource's status in its colour, as the console shows statuses."""
    return format_html('<span class="wf-status wf-resource-{}" style="color:#fff;background:{};'
                       'padding:1px 6px;border-radius:3px">{}</span>',
                       status.lower(), RESOURCE_COLOURS.get(status, "#333"), status)


def can_retry(request: HttpRequest) -> bool:
    return request.user.has_perm(PERMISSION)


def context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The incident page's resources section and, once it has ended, what is still out."""
    rows = list(incident.resources.order_by("registered_at", "ref"))
    outstanding = ([] if incident.is_live
                   else [r for r in rows if r.status in OUTSTANDING_RESOURCE_STATUSES])
    return {"resources": [(row, badge(row.status)) for row in rows],
            "resources_outstanding": len(outstanding),
            "can_retry_release": can_retry(request)}


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The retry endpoint of one resource, for IncidentAdmin.get_urls()."""

    def retry_view(request: HttpRequest, pk: Any, resource_id: Any) -> Any:
        return retry(model_admin, request, pk, resource_id)

    return [path("<uuid:pk>/resources/<uuid:resource_id>/retry/",
                 model_admin.admin_site.admin_view(retry_view),
                 name="incidents_incident_retry_release")]


def retry(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any, resource_id: Any) -> Any:
    """POST: send the failed resource a new release message, as the operator; back to the page."""
    if not (model_admin.has_view_permission(request) and can_retry(request)):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    row = get_object_or_404(ExternalResource, pk=resource_id, incident_id=pk)
    form = RetryReleaseForm(request.POST)
    try:
        if not form.is_valid():
            raise WorkflowError("Retry release: the reason is too long; give at most 2,000 "
                                "characters (the rest belongs in the incident's notes)")
        resources.retry_release(row.pk, by=operator_name(request), reason=form.cleaned_data["reason"])
    except WorkflowError as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
    else:
        model_admin.message_user(request, f"Sent a new release of {row.kind} {row.ref} to "
                                          f"{row.release_queue}.", messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[pk])
                                + "#wf-resources")


class StatusFilter(admin.SimpleListFilter):
    """Outstanding resources unless another status (or all) is chosen."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*((s.value, s.value) for s in ResourceStatus), (self.ALL, "All")]

    def choices(self, changelist: Any) -> Any:
        yield {"selected": self.value() is None, "display": "Outstanding (held, releasing, failed)",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for value, title in self.lookup_choices:
            yield {"selected": self.value() == value, "display": title,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset.filter(status__in=OUTSTANDING_RESOURCE_STATUSES)
        return queryset if value == self.ALL else queryset.filter(status=value)


@admin.register(ExternalResource)
class ExternalResourceAdmin(admin_readonly.ViewOnlyAdmin):
    """Every incident's resources, read-only; outstanding ones first seen."""

    # Few and narrow columns, so that the list fits a 1366 px window beside the filters.
    list_display = ("reference", "kind", "status_coloured", "incident_link", "registered",
                    "released", "attempts", "comment_start")
    list_display_links = ("reference",)
    list_filter = (StatusFilter, "kind")
    search_fields = ("ref",)
    search_help_text = "Search by reference (a job id, a transfer id)."
    list_select_related = ("incident",)
    readonly_fields = ("incident", "kind", "ref", "status_coloured", "release_queue", "data",
                       "registered_by", "registered", "released", "release_message",
                       "release_attempts", "comment")
    fields = readonly_fields

    class Media:
        css = {"all": ("incidents/console.css",)}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        outstanding = "status" not in request.GET
        title = ("Outstanding external resources: what would still cost money if everything "
                 "were killed now" if outstanding else "External resources")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    # Seen by whoever may see incidents; changed only by the engine (and Retry release).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "incidents.view_incident")

    @admin.display(description="reference", ordering="ref")
    def reference(self, row: ExternalResource) -> str:
        """The reference's start (all of it on hover and on its page): job ids are long."""
        short = row.ref if len(row.ref) <= 14 else f"{row.ref[:12]}…"
        return format_html('<span title="{}">{}</span>', row.ref, short)

    @admin.display(description="tries", ordering="release_attempts")
    def attempts(self, row: ExternalResource) -> int:
        """Release messages sent."""
        return row.release_attempts

    @admin.display(description="comment")
    def comment_start(self, row: ExternalResource) -> str:
        short = row.comment if len(row.comment) <= 40 else f"{row.comment[:39]}…"
        return format_html('<span title="{}">{}</span>', row.comment, short or "-")

    @admin.display(description="status", ordering="status")
    def status_coloured(self, row: ExternalResource) -> str:
        return badge(row.status)

    @admin.display(description="incident", ordering="incident__name")
    def incident_link(self, row: ExternalResource) -> str:
        url = reverse("admin:incidents_incident_change", args=[row.incident_id])
        return format_html('<a href="{}#wf-resources">{}</a><br>{}', url, row.incident.name,
                           row.incident.status)

    @admin.display(description="registered", ordering="registered_at")
    def registered(self, row: ExternalResource) -> str:
        return timestamp(row.registered_at)

    @admin.display(description="released", ordering="released_at")
    def released(self, row: ExternalResource) -> str:
        return timestamp(row.released_at)
