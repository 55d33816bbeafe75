"""Celery tasks for campaigns. Tasks take ids, call one service, and never sleep.

Every task here is idempotent, so `acks_late` is safe: a task run twice finds its work claimed
or its token retired and does nothing. Recovery does not rely on the broker redelivering a task
(Redis waits an hour, the SQLite transport may never): `campaigns_recover` runs when a worker
starts and every 30 s on beat.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready
from django.db import close_old_connections

from b24app.campaigns import services

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def lane_run(
    self: Task[Any, Any], portal_id: int, slot: int, token: str, granted: bool = False
) -> str:
    """Send one batch for a portal's lane and re-enqueue the lane (see `services.lane_run`)."""
    try:
        return services.lane_run(
            portal_id=portal_id,
            slot=slot,
            token=token,
            holder=str(self.request.hostname or ""),
            granted=granted,
        )
    except Exception:
        # A crash (a locked database, a bug) must not end the chain until beat notices: the
        # lane tries again shortly. Rows it left `sending` are settled by recovery.
        log.exception("lane %s of portal %s failed; retrying", slot, portal_id)
        services.lane_retry(portal_id=portal_id, slot=slot, token=token)
        return "error"


@shared_task(acks_late=True, ignore_result=True)
def campaign_resolve(campaign_id: int, token: str) -> None:
    """One step (one REST request) of finding a campaign's recipients; re-enqueues itself."""
    services.campaign_resolve_step(campaign_id=campaign_id, token=token)


@shared_task(acks_late=True, ignore_result=True)
def campaign_activate(campaign_id: int) -> None:
    """Start a scheduled campaign at its time (beat's recovery does the same if this is lost)."""
    services.campaign_activate(campaign_id=campaign_id)


@shared_task(ignore_result=True)
def campaigns_recover() -> None:
    """Beat, every 30 s: settle lost sends, restart stopped lanes and resolutions."""
    services.campaigns_recover()


@worker_ready.connect
def _recover_on_worker_start(sender: Any = None, **_kwargs: Any) -> None:
    """A worker that starts under a name that ran lanes before knows those lanes died with it."""
    hostname = str(getattr(sender, "hostname", "") or "")
    try:
        close_old_connections()
        services.campaigns_recover(dead_holders=[hostname] if hostname else [])
    except Exception:  # recovery must never keep a worker from starting; beat retries it
        log.exception("campaigns recovery on worker start failed")
    finally:
        close_old_connections()
