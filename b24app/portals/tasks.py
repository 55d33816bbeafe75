"""Celery tasks for portals. Tasks take ids, load rows and call one service."""

from __future__ import annotations

from celery import shared_task

from b24app.portals import services


@shared_task(ignore_result=True)
def portals_refresh_idle() -> int:
    """Beat: refresh only portals idle long enough that their refresh token could lapse."""
    return services.portals_refresh_idle()
