"""Celery tasks for messaging. Tasks take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from b24app.messaging import services


@shared_task(ignore_result=True, acks_late=True)
def delivery_send_later(delivery_id: int) -> None:
    """Send a queued single message once the pacer or Bitrix allows (idempotent: it claims)."""
    services.delivery_send(delivery_id=delivery_id, interactive=True)
