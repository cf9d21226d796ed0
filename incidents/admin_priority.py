"""Priority in the console: a column of the incident list (an urgent one marked), the field
on the incident page, and its "Change priority" form behind incidents.set_priority
(engine/priority.py republishes the waiting messages and records who and why)."""
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

from incidents.engine import priority
from incidents.exceptions import WorkflowError
from incidents.forms import operator_name
from incidents.models import Incident, IncidentPriority

PERMISSION = "incidents.set_priority"
URGENT_COLOUR = "#c62828"  # ERROR's red: the one an operator must not miss
HIGH_COLOUR = "#e67e22"


class PriorityForm(forms.Form):
    level = forms.TypedChoiceField(choices=IncidentPriority.choices, coerce=int,
                                   label="Priority")
    reason = forms.CharField(required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Kept in the incident's history.")


# A soft hyphen: in a narrow window the list's header may wrap to "pri-ority".
@admin.display(description="pri\u00adority", ordering="priority")
def column(model_admin: Any, incident: Incident) -> str:
    """The priority's name; urgent as a red badge, high in orange, the others plain (in
    lower case and tight: the list has little room left at 1366 px)."""
    label = IncidentPriority(incident.priority).label
    if incident.priority == IncidentPriority.URGENT:
        return format_html('<span class="wf-priority wf-urgent" style="color:#fff;background:{};'
                           'padding:1px 3px;border-radius:3px;font-weight:bold">{}</span>',
                           URGENT_COLOUR, label)
    if incident.priority == IncidentPriority.HIGH:
        return format_html('<span class="wf-priority" style="color:{};font-weight:bold">{}</span>',
                           HIGH_COLOUR, label)
    return format_html('<span class="wf-priority">{}</span>', label)


def can_set_priority(request: HttpRequest) -> bool:
    return request.user.has_perm(PERMISSION)


def context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The incident page's form, if it is live and the user may change its priority."""
    form = None
    if incident.is_live and can_set_priority(request):
        form = PriorityForm(initial={"level": incident.priority})
    return {"priority_form": form}


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The form's endpoint, for IncidentAdmin.get_urls()."""

    def priority_view(request: HttpRequest, pk: Any) -> Any:
        return change_priority(model_admin, request, pk)

    return [path("<uuid:pk>/priority/", model_admin.admin_site.admin_view(priority_view),
                 name="incidents_incident_priority")]


def change_priority(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any) -> Any:
    """Set the posted priority; on a refusal, show the form again with the reason."""
    if not (model_admin.has_view_permission(request) and can_set_priority(request)):
        raise PermissionDenied
    incident = get_object_or_404(Incident, pk=pk)
    posted = request.method == "POST"
    form = PriorityForm(request.POST if posted else None,
                        initial={"level": incident.priority})
    if posted and form.is_valid():
        try:
            report = priority.set_priority(incident.pk, form.cleaned_data["level"],
                                           reason=form.cleaned_data["reason"],
                                           by=operator_name(request))
        except WorkflowError as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.message_user(request, said(report), messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                args=[incident.pk]))
    context = {**model_admin.admin_site.each_context(request), "opts": Incident._meta,
               "title": f"Change the priority of {incident.name}", "incident": incident,
               "priority_form": form}
    return TemplateResponse(request, "admin/incidents/incident/priority.html", context)


def said(report: priority.PriorityReport) -> str:
    before, after = (IncidentPriority(n).label for n in (report.before, report.after))
    if report.before == report.after:
        return f"The priority was {after} already; unchanged."
    return (f"Priority {before} -> {after}: {report.republished} waiting message(s) published "
            f"again at {after}.")
