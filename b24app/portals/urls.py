from __future__ import annotations

from django.urls import path

from b24app.portals import views

app_name = "portals"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("b24/install/", views.install, name="install"),
    path("b24/events/", views.events, name="events"),
    path("b24/app/", views.entry, name="entry"),
    path("app/", views.home, name="home"),
    path("app/admin/status/", views.portal_status, name="status"),
    path("app/admin/settings/", views.portal_settings, name="settings"),
    path("app/admin/audit/", views.audit_log, name="audit"),
]
