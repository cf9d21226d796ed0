"""URL routes: the Django admin is the operator's console; /health/ for load balancers."""
from django.contrib import admin
from django.urls import path

from incidents.health import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
]
