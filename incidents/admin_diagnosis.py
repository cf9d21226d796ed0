"""The incident page's "Why is it not moving?": computed on demand by a small view (the page
itself stays fast), behind the incident's view permission; each reason links to what it names."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from incidents.engine import diagnosis
from incidents.models import LIVE_INCIDENT_STATUSES, Incident


@dataclass
class Shown:
    reason: diagnosis.Reason
    age: float | None
    url: str | None  # None: no admin page (the dead letters: a command)
    evidence_json: str


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The diagnosis fragment's URL, for IncidentAdmin.get_urls()."""

    def diagnosis_view(request: HttpRequest, pk: Any) -> TemplateResponse:
        return diagnose(model_admin, request, pk)

    return [path("<uuid:pk>/diagnosis/", model_admin.admin_site.admin_view(diagnosis_view),
                 name="incidents_incident_diagnosis")]


def link(target: diagnosis.Target) -> str | None:
    """The admin page showing what a reason names."""
    p = target.params
    if target.page == "message":
        return reverse("admin:incidents_messagelog_change", args=[p["id"]])
    if target.page == "locks":
        return (reverse("admin:incidents_lock_changelist") + "?"
                + urlencode({"incident__exact": p["incident"]}))
    if target.page == "message_log":
        query = {"incident__exact": p["incident"], "destination__exact": p.get("queue"),
                 "status__in": p.get("status")}
        return (reverse("admin:incidents_messagelog_changelist") + "?"
                + urlencode({k: v for k, v in query.items() if v}))
    return None


def diagnose(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any) -> TemplateResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    incident = get_object_or_404(Incident, pk=pk)
    started = time.monotonic()
    reasons = diagnosis.diagnose(str(incident.pk))
    now = timezone.now()
    shown = [Shown(r, r.age(now), link(r.target),
                   json.dumps(r.evidence, cls=DjangoJSONEncoder, indent=1)) for r in reasons]
    return TemplateResponse(request, "admin/incidents/incident/_diagnosis_reasons.html", {
        "incident": incident, "reasons": shown, "checked": now,
        "took": time.monotonic() - started,
        "ended_and_cleaned": incident.status not in LIVE_INCIDENT_STATUSES and incident.cleaned_at,
    })
