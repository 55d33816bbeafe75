"""The Celery application. Configuration comes from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24app.settings")

app = Celery("b24app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _embedded_broker_polling() -> None:
    """Poll the embedded SQLite broker every B24_BROKER_POLL_S seconds (see settings)."""
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith(("sqla+", "sqlalchemy")):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = settings.B24_BROKER_POLL_S


_embedded_broker_polling()
