from __future__ import annotations

from django.urls import path

from b24app.portals import views

app_name = "portals"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
