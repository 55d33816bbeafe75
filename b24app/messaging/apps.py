from __future__ import annotations

from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "b24app.messaging"
    label = "messaging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from typing import Any

        from b24app.messaging import services
        from b24app.portals.models import Portal
        from b24app.portals.signals import portal_uninstalled

        def on_uninstall(sender: Any, portal: Portal, clean: bool, **_kwargs: Any) -> None:
            services.messaging_on_uninstall(portal=portal, clean=clean)

        portal_uninstalled.connect(on_uninstall, dispatch_uid="messaging-uninstall", weak=False)
