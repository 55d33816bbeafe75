from __future__ import annotations

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "b24app.campaigns"
    label = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"
