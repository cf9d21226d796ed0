"""URL routes: the Django admin is the operator's console; /health/ for load balancers;
/metrics for Prometheus (off unless WORKFLOW_METRICS=1)."""
from django.contrib import admin
from django.urls import path

from incidents.health import health
from incidents.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
]
