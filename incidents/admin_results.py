"""The incident page's result files (workflow.AttachResult): listed with the incident, images
shown inline, every file served by its id behind the incident's view permission (never from a
public media URL, and never by a path taken from the request)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse

from incidents.engine.result_files import INLINE_TYPES
from incidents.models import Incident, ResultFile

#: Served files run nothing: an SVG opened on its own cannot script the admin's origin.
SANDBOX = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


@dataclass
class Listed:
    row: ResultFile
    url: str
    inline: bool


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The URL of one result file, for IncidentAdmin.get_urls()."""

    def serve_view(request: HttpRequest, pk: Any, result_id: int) -> FileResponse:
        return serve(model_admin, request, pk, result_id)

    return [path("<uuid:pk>/results/<int:result_id>/", model_admin.admin_site.admin_view(serve_view),
                 name="incidents_incident_result")]


def listed(incident: Incident) -> list[Listed]:
    """The incident's result files for its page, images first."""
    rows = sorted(incident.results.all(), key=lambda r: (r.content_type not in INLINE_TYPES, r.name))
    return [Listed(row, reverse("admin:incidents_incident_result", args=[incident.pk, row.pk]),
                   row.content_type in INLINE_TYPES) for row in rows]


def serve(model_admin: admin.ModelAdmin, request: HttpRequest, pk: Any,
          result_id: int) -> FileResponse:
    """The file of result `result_id` of incident `pk`: images inline, others as downloads."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    row = get_object_or_404(ResultFile, pk=result_id, incident_id=pk)
    try:
        handle = row.file.storage.open(row.file.name, "rb")
    except FileNotFoundError:
        raise Http404(f"the file of result {row.name!r} is missing from the results "
                      "storage") from None
    inline = row.content_type in INLINE_TYPES
    response = FileResponse(handle, as_attachment=not inline, filename=row.name,
                            content_type=row.content_type)
    response["Content-Security-Policy"] = SANDBOX
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-cache"  # a replaced result must not show stale
    return response
