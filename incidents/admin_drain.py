"""Drain, then kill, in the console: the button's confirmation page (seconds, reason), the
DRAINING badge with its countdown, and the countdown's part of the page's live refresh.
It needs both the cancel_incident and the kill_incident permission."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from incidents.engine import draining, interventions
from incidents.exceptions import WorkflowError
from incidents.forms import operator_name
from incidents.models import Incident

PERMISSIONS = ("incidents.cancel_incident", "incidents.kill_incident")
DRAINING_COLOUR = "#a1887f"  # between CANCELLED's brown and a live incident's orange
DEFAULT_SECONDS = 30


class DrainForm(forms.Form):
    seconds = forms.IntegerField(
        initial=DEFAULT_SECONDS, min_value=interventions.DRAIN_SECONDS_MIN,
        max_value=interventions.DRAIN_SECONDS_MAX, label="Kill after (seconds)",
        help_text="How long running handlers may go on before they are killed.")
    reason = forms.CharField(required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Kept with the incident.")
    confirmed = forms.CharField(widget=forms.HiddenInput, initial="yes")


def can_drain(request: HttpRequest) -> bool:
    return request.user.has_perms(PERMISSIONS)


def live(incident: Incident) -> dict[str, Any] | None:
    """The drain's part of the page's live.json: None unless DRAINING."""
    drain = draining.in_progress(incident)
    if drain is None:
        return None
    return {"deadline": drain.deadline.isoformat(), "seconds": drain.seconds,
            "seconds_left": round(drain.seconds_left())}


def context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The incident page's button (live incidents, both permissions) and countdown."""
    return {"can_drain": incident.is_live and can_drain(request), "drain": live(incident)}


def badge(incident: Incident) -> str | None:
    """DRAINING and the seconds left, for the list and the page; None unless DRAINING."""
    drain = draining.in_progress(incident)
    if drain is None:
        return None
    left = drain.seconds_left()
    return format_html('<span class="wf-status wf-draining" data-live="yes" title="cancelled; '
                       'handlers still running when the time is up are killed" style="color:#fff;'
                       'background:{};padding:1px 6px;border-radius:3px">{} {}</span>',
                       DRAINING_COLOUR, draining.DRAINING,
                       f"{left:.0f} s" if left else "(killing)")


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The button's confirmation page, for IncidentAdmin.get_urls()."""

    def drain_view(request: HttpRequest, pk: Any) -> Any:
        return confirm(model_admin, request, pk)

    return [path("<uuid:pk>/drain/", model_admin.admin_site.admin_view(drain_view),
                 name="incidents_incident_drain")]


def confirm(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any) -> Any:
    """Ask for the seconds and a reason; on confirmation, drain."""
    if not (model_admin.has_view_permission(request) and can_drain(request)):
        raise PermissionDenied
    incident = get_object_or_404(Incident, pk=pk)
    form = DrainForm(request.POST if request.POST.get("confirmed") else None)
    if form.is_valid():
        try:
            report = interventions.drain_incident(
                incident.pk, seconds=form.cleaned_data["seconds"],
                reason=form.cleaned_data["reason"],
                by=operator_name(request))
        except WorkflowError as exc:
            form.add_error(None, str(exc))
        else:
            if report.started:
                model_admin.message_user(
                    request, f"Draining: cancelled; handlers still running in "
                    f"{form.cleaned_data['seconds']} s will be killed.", messages.SUCCESS)
            else:
                model_admin.message_user(request, f"It had already ended ({report.status}); "
                                         "not drained.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                args=[incident.pk]))
    context = {**model_admin.admin_site.each_context(request), "opts": Incident._meta,
               "title": "Drain, then kill?", "incident": incident, "form": form}
    return TemplateResponse(request, "admin/incidents/incident/drain.html", context)
