"""The audit log: one service every app calls to record who did what."""

from __future__ import annotations

import logging
from typing import Any

from b24app.portals.models import AuditEntry, Portal

log = logging.getLogger(__name__)


def audit_record(
    *,
    portal: Portal,
    action: str,
    actor_user_id: int | None = None,
    actor_name: str = "",
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry. `details` must never hold tokens or secrets."""
    return AuditEntry.objects.create(
        portal=portal,
        action=action[:60],
        actor_user_id=actor_user_id,
        actor_name=actor_name[:200],
        target=str(target)[:200],
        details=details or {},
    )


def audit_erase_people(*, portal: Portal) -> None:
    """Drop personal data from the portal's audit entries (names), keeping the facts."""
    AuditEntry.objects.filter(portal=portal).exclude(actor_name="").update(actor_name="")


def audit_delete(*, portal: Portal) -> None:
    """Delete the portal's audit log (a clean uninstall: the admin asked for the data to go)."""
    AuditEntry.objects.filter(portal=portal).delete()
