"""b24app: a Bitrix24 marketplace app that sends open-line messages and runs outreach campaigns."""

from __future__ import annotations

from b24app.celery import app as celery_app

__all__ = ["celery_app"]
__version__ = "0.1.0"
