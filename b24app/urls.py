"""Top-level URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("b24app.portals.urls")),
    path("app/messages/", include("b24app.messaging.urls")),
    path("app/campaigns/", include("b24app.campaigns.urls")),
    path("admin/", admin.site.urls),
]
