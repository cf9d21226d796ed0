"""The incident page's "Send a message" form: an operator with the inject_message permission
sends a JSON object to a registered queue of a live incident (engine/interventions.py)."""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from incidents.engine import interventions
from incidents.exceptions import WorkflowError
from incidents.forms import operator_name
from incidents.models import Incident

PERMISSION = "incidents.inject_message"


class InjectForm(forms.Form):
    queue = forms.ChoiceField(help_text="Queues a registered handler serves.")
    message = forms.CharField(initial="{}", widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
                              help_text="A JSON object; its IncidentID is added.")
    reason = forms.CharField(required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Kept in the incident's history.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [  # type: ignore[attr-defined]
            (q, q) for q in interventions.operator_queues()]

    def clean_message(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["message"])
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge numbers, deep nesting
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"values": [1, 2]}.')
        return value


def can_inject(request: HttpRequest) -> bool:
    return request.user.has_perm(PERMISSION)


def context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The form for the incident page, if it is live and the user may send."""
    return {"inject_form": InjectForm() if incident.is_live and can_inject(request) else None}


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The form's endpoint, for IncidentAdmin.get_urls()."""

    def inject_view(request: HttpRequest, pk: Any) -> Any:
        return inject(model_admin, request, pk)

    return [path("<uuid:pk>/inject/", model_admin.admin_site.admin_view(inject_view),
                 name="incidents_incident_inject")]


def inject(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any) -> Any:
    """Send the posted message; on a refusal, show the form again with the reason."""
    if not (model_admin.has_view_permission(request) and can_inject(request)):
        raise PermissionDenied
    incident = get_object_or_404(Incident, pk=pk)
    form = InjectForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            message_id = interventions.inject_message(
                incident.pk, data["queue"], data["message"], reason=data["reason"],
                by=operator_name(request))
        except WorkflowError as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.message_user(request, f"Sent message {message_id} to {data['queue']}.",
                                     messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                args=[incident.pk]))
    context = {**model_admin.admin_site.each_context(request), "opts": Incident._meta,
               "title": f"Send a message to {incident.name}", "incident": incident,
               "inject_form": form}
    return TemplateResponse(request, "admin/incidents/incident/inject.html", context)
