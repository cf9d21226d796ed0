"""URL routes: the Django admin is the operator's console (/ leads there, and so does the
admin's "View site" link); /health/ for load balancers; /metrics for Prometheus (off unless
WORKFLOW_METRICS=1)."""
from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from incidents.health import health
from incidents.metrics import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
]
