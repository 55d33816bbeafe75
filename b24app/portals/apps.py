from __future__ import annotations

from django.apps import AppConfig


class PortalsConfig(AppConfig):
    name = "b24app.portals"
    label = "portals"
    default_auto_field = "django.db.models.BigAutoField"
