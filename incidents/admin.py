"""The operator's console: incidents with their graph, message log, state and locks; start,
cancel and kill behind their own permissions. The message log is read-only."""
from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from incidents import conf
from incidents.area import area_map
from incidents.engine import graph, operations
from incidents.exceptions import WorkflowError
from incidents.forms import ReasonForm, StartIncidentForm
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    HandlerState,
    Incident,
    IncidentStatus,
    Lock,
    MessageLog,
    MessageStatus,
)
from incidents.queries import with_message_counts

STATUS_COLOURS: dict[str, str] = {
    IncidentStatus.PENDING: "#6c757d", IncidentStatus.ACTIVE: "#e67e22",
    IncidentStatus.COMPLETE: "#2e7d32", IncidentStatus.CANCELLED: "#795548",
    IncidentStatus.ERROR: "#c62828", IncidentStatus.KILLED: "#4a148c",
    MessageStatus.QUEUED: "#6c757d", MessageStatus.SENT: "#6c757d",
    MessageStatus.PROCESSING: "#e67e22", MessageStatus.COMPLETE: "#2e7d32",
    MessageStatus.ERROR: "#c62828", MessageStatus.NOT_PROCESSED: "#757575",
}
MESSAGES_PER_PAGE = 50


def status_badge(status: str) -> str:
    return format_html('<span class="wf-status" style="color:#fff;background:{};padding:1px 6px;'
                       'border-radius:3px">{}</span>', STATUS_COLOURS.get(status, "#333"), status)


def flower_url() -> str:
    return str(conf.get("FLOWER_URL")).rstrip("/")


def task_results_url() -> str | None:
    """Where the handler tasks' results are listed, if they are kept."""
    if not conf.get("STORE_TASK_RESULTS"):
        return None
    return reverse("admin:django_celery_results_taskresult_changelist")


def celery_links(message_id: Any) -> str:
    """The message's task result (if kept) and, with WORKFLOW_FLOWER_URL set, its page in
    Flower (the task id is the MessageID)."""
    links = [format_html('<a href="{}?q={}">task result</a>', url, message_id)
             for url in [task_results_url()] if url]
    if flower_url():
        links.append(format_html('<a href="{}/task/{}">Flower</a>', flower_url(), message_id))
    return format_html_join(" · ", "{}", ((link,) for link in links)) or "-"


def operator_name(request: HttpRequest) -> str:
    return f"{request.user.get_username()} (admin)"


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status_coloured", "owner", "created_at", "completed_at",
                    "elapsed", "messages_by_status")
    list_filter = ("status", "kind", "owner", ("created_at", admin.DateFieldListFilter))
    search_fields = ("name",)
    search_help_text = "Search by name, or paste an IncidentID."
    actions = ["cancel_selected", "kill_selected"]
    readonly_fields = ("id", "name", "kind", "status_coloured", "owner", "incident_date",
                       "duration", "area", "created_at", "activated_at", "completed_at",
                       "cleaned_at", "ended_by", "comment", "parameters")
    fields = readonly_fields
    change_form_template = "admin/incidents/incident/change_form.html"

    # Permissions: viewing as Django does; starting needs add; cancel and kill their own.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.cancel_incident")

    def has_kill_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.kill_incident")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Incident]:
        return with_message_counts(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Incident],
                           search_term: str) -> tuple[QuerySet[Incident], bool]:
        try:
            return queryset.filter(pk=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="status", ordering="status")
    def status_coloured(self, incident: Incident) -> str:
        return status_badge(incident.status)

    @admin.display(description="area")
    def area(self, incident: Incident) -> str:
        return area_map(incident.upper_left_latlong, incident.lower_right_latlong)

    @admin.display(description="elapsed")
    def elapsed(self, incident: Incident) -> str:
        end = incident.completed_at or timezone.now()
        seconds = (end - incident.created_at).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    @admin.display(description="messages")
    def messages_by_status(self, incident: Incident) -> str:
        counts = [(status, getattr(incident, f"n_{status.name.lower()}", 0)) for status in MessageStatus]
        return format_html_join(" ", '<span title="{}" style="color:{}">{}&nbsp;{}</span>',
                                ((s.value, STATUS_COLOURS[s], n, s.value.lower()) for s, n in counts if n)
                                ) or "-"

    # Actions on the selection, each with a confirmation page.
    @admin.action(description="Cancel selected incidents", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> Any:
        return self._confirm_then(request, queryset, "cancel")

    @admin.action(description="Kill selected incidents", permissions=["kill"])
    def kill_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> Any:
        return self._confirm_then(request, queryset, "kill")

    def _confirm_then(self, request: HttpRequest, queryset: QuerySet[Incident], verb: str,
                      single: Incident | None = None) -> Any:
        form = ReasonForm(request.POST if request.POST.get("confirmed") else None)
        if form.is_valid():
            done = self._apply(request, list(queryset), verb, form.cleaned_data["reason"])
            self.message_user(request, f"{verb.title()}: {done} incident(s).", messages.SUCCESS)
            if single is not None:
                return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                    args=[single.pk]))
            return None
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"{verb.title()} incidents?", "verb": verb, "form": form,
                   "incidents": list(queryset), "single": single,
                   "action_checkbox_name": ACTION_CHECKBOX_NAME}
        return TemplateResponse(request, "admin/incidents/incident/confirm.html", context)

    def _apply(self, request: HttpRequest, incidents: list[Incident], verb: str, reason: str) -> int:
        done = 0
        for incident in incidents:
            try:
                if verb == "cancel":
                    done += operations.cancel_incident(incident.pk, reason=reason,
                                                       by=operator_name(request))
                else:
                    done += operations.kill_incident(incident.pk, reason=reason,
                                                     by=operator_name(request)).killed
            except WorkflowError as exc:
                self.message_user(request, f"{incident}: {exc}", messages.ERROR)
        return done

    # Pages of one incident.
    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("start/", view(self.start_view), name="incidents_incident_start"),
            path("<uuid:pk>/graph.svg", view(self.graph_view), name="incidents_incident_graph"),
            path("<uuid:pk>/live.json", view(self.live_view), name="incidents_incident_live"),
            path("<uuid:pk>/cancel/", view(self.single_view), {"verb": "cancel"},
                 name="incidents_incident_cancel"),
            path("<uuid:pk>/kill/", view(self.single_view), {"verb": "kill"},
                 name="incidents_incident_kill"),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, pk: Any) -> Incident:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            uuid.UUID(str(pk))
        except ValueError:
            raise Http404(f"{pk!r} is not an IncidentID") from None
        return get_object_or_404(Incident, pk=pk)

    def single_view(self, request: HttpRequest, pk: Any, verb: str) -> Any:
        incident = self._viewable(request, pk)
        allowed = self.has_cancel_permission if verb == "cancel" else self.has_kill_permission
        if not allowed(request):
            raise PermissionDenied
        return self._confirm_then(request, Incident.objects.filter(pk=incident.pk), verb, incident)

    def graph_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        incident = self._viewable(request, pk)
        try:
            return HttpResponse(graph.render(str(incident.pk), "svg"), content_type="image/svg+xml")
        except WorkflowError as exc:
            return HttpResponse(str(exc), status=503, content_type="text/plain")

    def live_view(self, request: HttpRequest, pk: Any) -> JsonResponse:
        incident = self._viewable(request, pk)
        counts = with_message_counts(Incident.objects.filter(pk=incident.pk)).get()
        return JsonResponse({
            "status": incident.status, "live": incident.status in LIVE_INCIDENT_STATUSES,
            "cleaned": incident.cleaned_at is not None,
            "counts": {s.value: getattr(counts, f"n_{s.name.lower()}") for s in MessageStatus},
        })

    def start_view(self, request: HttpRequest) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StartIncidentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                incident_id = operations.start_incident(
                    **form.incident_arguments(request.user.get_username()))
            except WorkflowError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Started incident {incident_id}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                    args=[incident_id]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Start an incident", "form": form}
        return TemplateResponse(request, "admin/incidents/incident/start.html", context)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:incidents_incident_start"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> Any:
        incident = self._viewable(request, object_id)
        log = incident.messages.order_by("-submitted")
        status_filter = request.GET.get("mstatus", "")
        if status_filter in MessageStatus.values:
            log = log.filter(status=status_filter)
        page = Paginator(log.only("id", "originator", "destination", "src_tag", "dest_tag",
                                  "status", "submitted", "duration", "attempts", "comment"),
                         MESSAGES_PER_PAGE).get_page(request.GET.get("mpage"))
        try:
            svg = graph.render(str(incident.pk), "svg").decode()
            graph_svg = svg[svg.find("<svg"):]
        except WorkflowError as exc:
            graph_svg = format_html("<p>Graph unavailable: {}</p>", exc)
        counted = with_message_counts(Incident.objects.filter(pk=incident.pk)).get()
        context = {
            "incident": incident, "live": incident.status in LIVE_INCIDENT_STATUSES,
            "graph_svg": graph_svg,
            "message_counts": [(s.value, n) for s in MessageStatus
                               if (n := getattr(counted, f"n_{s.name.lower()}"))],
            "message_page": page, "message_statuses": MessageStatus.values,
            "status_filter": status_filter,
            "states": incident.states.order_by("id")[:200], "locks": incident.locks.order_by("label"),
            "can_cancel": self.has_cancel_permission(request),
            "can_kill": self.has_kill_permission(request),
            "results_url": task_results_url(),
            "flower_url": flower_url(),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    list_display = ("id", "incident_link", "originator", "destination", "src_tag", "dest_tag",
                    "status_coloured", "submitted", "duration", "attempts", "result")
    list_filter = ("status", "destination")
    search_fields = ("=id", "=incident__id", "originator", "destination")
    list_select_related = ("incident",)
    readonly_fields = [f.name for f in MessageLog._meta.fields] + ["result"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="incident", ordering="incident__name")
    def incident_link(self, row: MessageLog) -> str:
        url = reverse("admin:incidents_incident_change", args=[row.incident_id])
        return format_html('<a href="{}">{}</a>', url, row.incident.name)

    @admin.display(description="status", ordering="status")
    def status_coloured(self, row: MessageLog) -> str:
        return status_badge(row.status)

    @admin.display(description="Celery")
    def result(self, row: MessageLog) -> str:
        return celery_links(row.pk)


class ReadOnlyRecordAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HandlerState)
class HandlerStateAdmin(ReadOnlyRecordAdmin):
    list_display = ("incident", "handler", "created_at")
    list_filter = ("handler",)


@admin.register(Lock)
class LockAdmin(ReadOnlyRecordAdmin):
    list_display = ("incident", "label", "owner", "acquired_at", "expires_at")
