"""Signals other apps listen to (portals cannot import them: dependencies point one way)."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal


class DependentsFirstSignal(Signal):
    """A signal whose receivers run newest-connected first.

    Apps connect their receivers in `ready()`, which Django calls in INSTALLED_APPS order, and
    that order follows the dependencies (portals, messaging, campaigns). Reversed, an app whose
    rows point at another app's rows cleans up first, as Django's own deletion collector does:
    campaigns delete their campaigns before messaging deletes the lines those campaigns protect
    (`Campaign.line` is on_delete=PROTECT).
    """

    def _live_receivers(self, sender: Any) -> tuple[list[Any], list[Any]]:
        sync_receivers, async_receivers = super()._live_receivers(sender)
        return sync_receivers[::-1], async_receivers[::-1]


# Sent inside the uninstall transaction with `portal` and `clean` (the admin's "delete data"
# choice). Receivers erase users' personal data always, and with clean=True everything else.
portal_uninstalled = DependentsFirstSignal()
