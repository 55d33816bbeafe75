"""Signals other apps listen to (portals cannot import them: dependencies point one way)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the uninstall transaction with `portal` and `clean` (the admin's "delete data"
# choice). Receivers erase users' personal data always, and with clean=True everything else.
portal_uninstalled = Signal()
