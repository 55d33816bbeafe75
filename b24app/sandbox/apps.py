from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "b24app.sandbox"
    label = "sandbox"
    default_auto_field = "django.db.models.BigAutoField"
