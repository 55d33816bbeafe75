from __future__ import annotations

from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "b24app.messaging"
    label = "messaging"
    default_auto_field = "django.db.models.BigAutoField"
