"""The Celery app works on every broker we support, with a real worker (issue 2).

The embedded SQLite transport and Redis are exercised by every worker test (CI runs the suite
on both); RabbitMQ, the third production choice, is exercised here: a task published to it
is consumed by a real worker that refreshes an idle portal's token at the sandbox.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from b24app.portals import tasks
from b24app.portals.models import Portal
from tests.conftest import port_open
from tests.plugins import worker as worker_plugin

pytestmark = [pytest.mark.rabbitmq, pytest.mark.worker, pytest.mark.sandbox]


@pytest.mark.django_db(transaction=True)
def test_a_task_published_to_rabbitmq_runs_on_a_real_worker(
    sandbox: Any, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    url = os.environ.get("B24_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if not port_open("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    tokens = sandbox.tokens(portal=1, user=1)
    portal = Portal.objects.create(
        member_id=sandbox.member_id(1),
        domain=sandbox.domain(1),
        https=False,
        client_endpoint=f"{sandbox.portal_url(1)}/rest/",
        server_endpoint=sandbox.server_endpoint,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=timezone.now() + timedelta(hours=1),
        token_refreshed_at=timezone.now() - timedelta(days=60),
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24app.settings",
        "DATABASE_URL": worker_plugin._database_url(),
        "CELERY_BROKER_URL": url,
        "B24_SANDBOX": "True",
        "B24_CLIENT_ID": sandbox.state.client_id,
        "B24_CLIENT_SECRET": sandbox.state.client_secret,
        "PYTHONUNBUFFERED": "1",
    }
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration, so
    # in CI's Redis run this test's producer must be told about RabbitMQ there too.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    previous = worker_plugin._point_producer_at(url)
    worker_plugin._purge(url)
    control = worker_plugin.WorkerControl(tmp=tmp_path, broker_url=url, env=env)
    try:
        control.start(concurrency=1)
        tasks.portals_refresh_idle.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            portal.refresh_from_db()
            if portal.token_refreshed_at > timezone.now() - timedelta(minutes=5):
                break
            time.sleep(0.2)
        assert portal.token_refreshed_at > timezone.now() - timedelta(minutes=5), control.log()
        assert portal.refresh_token != tokens["refresh_token"]
    finally:
        control.kill()
        worker_plugin._point_producer_at(previous)
