"""Resume on the incident page: a button on a failed incident, and a confirmation page that
says what a resume would run again (or why it cannot), behind incidents.resume_incident."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from incidents.engine import resume
from incidents.exceptions import WorkflowError
from incidents.forms import ReasonForm, operator_name

PERMISSION = "incidents.resume_incident"


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The Resume page of one incident, for IncidentAdmin.get_urls()."""

    def resume_view(request: HttpRequest, pk: Any) -> Any:
        return confirm_then_resume(model_admin, request, pk)

    return [path("<uuid:pk>/resume/", model_admin.admin_site.admin_view(resume_view),
                 name="incidents_incident_resume")]


def can_resume(request: HttpRequest) -> bool:
    return request.user.has_perm(PERMISSION)


def confirm_then_resume(model_admin: Any, request: HttpRequest, pk: Any) -> Any:
    """GET: what a resume would do, or why it cannot. POST (confirmed): resume."""

    incident = model_admin._viewable(request, pk)
    if not can_resume(request):
        raise PermissionDenied
    form = ReasonForm(request.POST if request.POST.get("confirmed") else None)
    if request.method == "POST" and form.is_valid():
        try:
            report = resume.resume_incident(incident.pk, reason=form.cleaned_data["reason"],
                                            by=operator_name(request))
        except WorkflowError as exc:
            model_admin.message_user(request, str(exc), messages.ERROR)
        else:
            model_admin.message_user(request, (
                f"Resumed: {len(report.failed)} failed message(s) delivered again, "
                f"{report.refused} message(s) refused while it had failed queued again."),
                messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:incidents_incident_change",
                                                args=[incident.pk]))
    plan = resume.plan(incident.pk)
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
               "title": "Resume the incident?", "plan": plan, "form": form,
               "failed": [(row, resume.error_line(row.comment)) for row in plan.failed]}
    return TemplateResponse(request, "admin/incidents/incident/resume.html", context)
