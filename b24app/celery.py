"""The Celery application. Configuration comes from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24app.settings")

app = Celery("b24app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def is_polled(broker_url: str) -> bool:
    """Whether the broker is kombu's database transport, which workers poll (the others push)."""
    return broker_url.startswith(("sqla+", "sqlalchemy"))


def _embedded_broker_polling() -> None:
    """Poll the embedded SQLite broker every B24_BROKER_POLL_S seconds (see settings)."""
    from django.conf import settings

    if is_polled(str(settings.CELERY_BROKER_URL)):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = settings.B24_BROKER_POLL_S


_embedded_broker_polling()
