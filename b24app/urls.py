"""Top-level URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, register_converter

from b24app.portals.converters import DbId

register_converter(DbId, "id")

urlpatterns = [
    path("", include("b24app.portals.urls")),
    path("app/messages/", include("b24app.messaging.urls")),
    path("app/campaigns/", include("b24app.campaigns.urls")),
    path("admin/", admin.site.urls),
]
