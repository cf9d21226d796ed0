"""The operator's console: incidents with their graph, message log, state and locks; start,
cancel and kill behind their own permissions. The message log is read-only."""
from __future__ import annotations

import uuid
from collections.abc import Callable
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
from django.utils.safestring import mark_safe

from incidents import (
    admin_diagnosis,
    admin_drain,
    admin_inject,
    admin_priority,
    admin_readonly,
    admin_resources,
    admin_results,
    admin_resume,
    conf,
)
from incidents.area import area_map
from incidents.engine import graph, incidents_db, operations
from incidents.exceptions import WorkflowError
from incidents.formatting import human_duration, timestamp
from incidents.forms import ReasonForm, StartIncidentForm, operator_name
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


def status_badge(status: str, *, live: bool = False) -> str:
    """The status in its colour; data-live marks rows the list's refresh script watches."""
    return format_html('<span class="wf-status"{} style="color:#fff;background:{};'
                       'padding:1px 6px;border-radius:3px">{}</span>',
                       mark_safe(' data-live="yes"') if live else "",
                       STATUS_COLOURS.get(status, "#333"), status)


def breakable(name: str) -> str:
    """A handler or queue name that may wrap after its underscores, in a narrow column."""
    return format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in name.split("_")))


def timestamp_column(field: str, description: str) -> Callable[[Any, Any], str]:
    """An admin column or read-only field showing a datetime field to the second."""
    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return timestamp(getattr(obj, field))
    return column


def duration_column(field: str, description: str) -> Callable[[Any, Any], str]:
    """An admin column or read-only field showing a field of seconds for humans."""
    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return human_duration(getattr(obj, field))
    return column


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


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("name", "kind_shown", "status_coloured", "priority_shown", "owner", "created",
                    "ran_for", "messages_by_status")
    list_filter = ("status", "priority", "kind", "owner", ("created_at", admin.DateFieldListFilter))
    search_fields = ("name",)
    search_help_text = "Search by name, or paste an IncidentID or its first 8 or more characters."
    actions = ["cancel_selected", "kill_selected"]
    readonly_fields = ("id", "name", "kind", "status_coloured", "priority_shown", "owner", "happened",
                       "duration", "area", "created", "activated", "ended", "cleaned",
                       "waited", "ran_for", "ended_by", "comment", "parameters")
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
        """An IncidentID, or the start of one, finds its incident; other text searches names.
        A prefix several ids share lists them all (a command would ask for more characters)."""
        term = search_term.strip().lower()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        if incidents_db.ID_PREFIX.fullmatch(term):
            by_prefix = queryset.filter(pk__startswith=term)
            if by_prefix.exists():
                return by_prefix, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="status", ordering="status")
    def status_coloured(self, incident: Incident) -> str:
        return admin_drain.badge(incident) or status_badge(incident.status, live=incident.is_live)

    @admin.display(description="area")
    def area(self, incident: Incident) -> str:
        return area_map(incident.upper_left_latlong, incident.lower_right_latlong)

    priority_shown = admin_priority.column

    @admin.display(description="kind", ordering="kind")
    def kind_shown(self, incident: Incident) -> str:
        """The kind, wrapping after its underscores: room for the priority at 1366 px."""
        return breakable(incident.kind)

    happened = timestamp_column("incident_date", "incident date")
    created = timestamp_column("created_at", "created")
    activated = timestamp_column("activated_at", "first handler started")
    ended = timestamp_column("completed_at", "ended")
    cleaned = timestamp_column("cleaned_at", "cleaned up")

    # The two spans split created -> ended at the first handler's start; run_demo's time also
    # counts its own set-up and its polling, so it reads a little longer.
    @admin.display(description="ran for")
    def ran_for(self, incident: Incident) -> str:
        """From the first handler's start to the end (to now, while live)."""
        if incident.activated_at is None:
            return "-"
        end = incident.completed_at or timezone.now()
        took = human_duration((end - incident.activated_at).total_seconds())
        return f"{took} so far" if incident.is_live else took

    @admin.display(description="waited for a worker")
    def waited(self, incident: Incident) -> str:
        """From its creation to the first handler's start (to now, while none has started)."""
        start = incident.activated_at or (timezone.now() if incident.is_live else None)
        return "-" if start is None else human_duration(
            (start - incident.created_at).total_seconds())

    @admin.display(description="messages")
    def messages_by_status(self, incident: Incident) -> str:
        counts = [(status, getattr(incident, f"n_{status.name.lower()}", 0)) for status in MessageStatus]
        return format_html_join(" ", '<span class="wf-count" title="{}" style="color:{}">{}&nbsp;{}</span>',
                                ((s.value, STATUS_COLOURS[s], n, s.value.lower()) for s, n in counts if n)
                                ) or "-"

    # Actions on the selection, each with a confirmation page.
    @admin.action(description="Cancel selected incidents", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> Any:
        return self._confirm_then(request, queryset, "cancel")

    @admin.action(description="Kill selected incidents (stops running handlers)",
                  permissions=["kill"])
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
            *admin_results.urls(self),
            *admin_resume.urls(self),
            *admin_diagnosis.urls(self),
            *admin_inject.urls(self),
            *admin_drain.urls(self),
            *admin_priority.urls(self),
            *admin_resources.urls(self),
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
            "drain": admin_drain.live(incident),
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
                                  "status", "submitted", "duration", "attempts", "comment",
                                  "not_before"),
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
            "result_files": admin_results.listed(incident),
            **admin_inject.context(request, incident),
            **admin_drain.context(request, incident),
            **admin_priority.context(request, incident),
            **admin_resources.context(request, incident),
            "states": incident.states.order_by("id")[:200], "locks": incident.locks.order_by("label"),
            "operator_actions": incident.actions.order_by("-at", "-id")[:100],
            "can_cancel": self.has_cancel_permission(request),
            "can_kill": self.has_kill_permission(request),
            "can_resume": admin_resume.can_resume(request),
            "results_url": task_results_url(),
            "flower_url": flower_url(),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)


#: The message row's times and seconds, shown by the columns of the same meaning below.
MESSAGE_FIELDS_SHOWN_AS = {"submitted": "submitted_at", "received": "received_at",
                           "completed": "completed_at", "duration": "handling_time",
                           "lock_wait": "lock_wait_time"}


@admin.register(MessageLog)
class MessageLogAdmin(admin_readonly.ViewOnlyAdmin):
    # Few and narrow columns, so that the list fits a 1366 px window beside the filters.
    list_display = ("message", "incident_link", "route", "tags", "status_coloured",
                    "submitted_at", "handling_time", "attempts", "result")
    list_display_links = ("message",)
    list_filter = ("status", "destination")
    search_fields = ("=id", "=incident__id", "originator", "destination")
    list_select_related = ("incident",)
    submitted_at = timestamp_column("submitted", "submitted")
    received_at = timestamp_column("received", "received")
    completed_at = timestamp_column("completed", "completed")
    handling_time = duration_column("duration", "took")
    lock_wait_time = duration_column("lock_wait", "lock wait")
    readonly_fields = [MESSAGE_FIELDS_SHOWN_AS.get(f.name, f.name)
                       for f in MessageLog._meta.fields] + ["result"]

    class Media:
        css = {"all": ("incidents/console.css",)}

    def get_list_display(self, request: HttpRequest) -> Any:
        """The Celery column only when it has a link to show (results kept, or Flower)."""
        columns = super().get_list_display(request)
        return columns if task_results_url() or flower_url() else [
            c for c in columns if c != "result"]

    @admin.display(description="id", ordering="id")
    def message(self, row: MessageLog) -> str:
        """The MessageID's first 8 characters (the whole id on hover and on its page)."""
        return format_html('<span title="{}">{}</span>', row.pk, str(row.pk)[:8])

    @admin.display(description="from → to", ordering="destination")
    def route(self, row: MessageLog) -> str:
        return format_html("{}<br>→ {}", breakable(row.originator or "Start"),
                           breakable(row.destination))

    @admin.display(description="tags")
    def tags(self, row: MessageLog) -> str:
        return f"{row.src_tag} → {row.dest_tag}" if row.dest_tag else row.src_tag or "-"

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


@admin.register(HandlerState)
class HandlerStateAdmin(admin_readonly.ReadOnlyRecordAdmin):
    list_display = ("incident", "handler", "created_at")
    list_filter = ("handler",)


@admin.register(Lock)
class LockAdmin(admin_readonly.ReadOnlyRecordAdmin):
    list_display = ("incident", "label", "owner", "acquired_at", "expires_at")
