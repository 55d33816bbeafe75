from __future__ import annotations

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "b24app.campaigns"
    label = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from typing import Any

        from b24app.campaigns import services, tasks  # noqa: F401 - connects worker_ready
        from b24app.portals.models import Portal
        from b24app.portals.signals import portal_uninstalled

        def on_uninstall(sender: Any, portal: Portal, clean: bool, **_kwargs: Any) -> None:
            services.campaigns_on_uninstall(portal=portal, clean=clean)

        portal_uninstalled.connect(on_uninstall, dispatch_uid="campaigns-uninstall", weak=False)

        from b24app.messaging import services as messaging

        messaging.delivery_payload_lookup(services.campaign_payload_of)
