"""pytest plugin: a real Celery worker (and beat, when asked) in a subprocess, for `worker` tests.

The worker runs `celery -A b24app worker` against the test database the test process uses:

- SQLite: the file test database (`.test-db.sqlite3`, settings' TEST NAME), so the test must be
  `@pytest.mark.django_db(transaction=True)`: rows the test writes are committed and visible to
  the worker, and the worker's writes are visible to the test.
- Postgres: the `test_<name>` database pytest-django created.

The broker is the embedded SQLite transport on a temporary file, or `CELERY_BROKER_URL` from the
environment when it is set (CI sets Redis; that broker is purged when the worker starts). The
test process's own Celery producer is pointed at the same broker, so services called in the test
enqueue for the subprocess.

`celery_worker` hands out a `WorkerControl`: `start()`, `kill()` (SIGKILL to the worker's whole
process group, prefork children included), `restart()`, `stop()`, and `log()`. Register with
`pytest_plugins = ["tests.plugins.worker"]` in tests/conftest.py; mark tests `worker`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from bench.procs import CeleryWorker

READY_TIMEOUT_S = 60.0
WORKER_NAME = "b24test@localhost"


def _database_url() -> str:
    """The URL of the database this test process is using (the test database)."""
    data = connection.settings_dict
    engine = data["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(data["NAME"])
        if not name or name == ":memory:" or "mode=memory" in name:
            pytest.skip("worker tests need a file test database (SQLite TEST NAME)")
        return f"sqlite:///{Path(name).resolve()}"
    if engine == "django.db.backends.postgresql":
        user = quote(str(data.get("USER") or ""), safe="")
        password = quote(str(data.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = data.get("HOST") or "localhost"
        port = f":{data['PORT']}" if data.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{data['NAME']}"
    pytest.skip(f"worker tests do not support {engine}")
    raise AssertionError  # unreachable


class WorkerControl(CeleryWorker):
    """One Celery worker subprocess that a test can start, kill with SIGKILL and restart."""

    ready_timeout_s = READY_TIMEOUT_S
    stop_timeout_s = 15.0

    def __init__(self, *, tmp: Path, broker_url: str, env: dict[str, str]) -> None:
        super().__init__(tmp=tmp, hostname=WORKER_NAME, log_name="worker", cwd=settings.BASE_DIR)
        self.broker_url = broker_url
        self.base_env = env

    def start(
        self,
        *,
        concurrency: int = 2,
        beat: bool = False,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerControl:
        """Start the worker (same node name every time, as a restarted worker would have)."""
        self.spawn(
            concurrency=concurrency, beat=beat, env={**self.base_env, **(env or {})}, wait=wait
        )
        return self

    def restart(self, **kwargs: Any) -> WorkerControl:
        """Start again after a kill or stop."""
        self.kill()
        return self.start(**kwargs)


def _point_producer_at(broker_url: str) -> str:
    """Make this process publish to `broker_url`; returns the URL it used before."""
    from b24app.celery import app

    previous = str(app.conf.broker_url or "")
    app.conf.broker_url = broker_url
    # Drop pooled connections and the cached producer pool, which would keep the old broker.
    app.close()
    app.amqp._producer_pool = None
    return previous


def _purge(broker_url: str) -> None:
    from b24app.celery import app

    with app.connection_for_write(broker_url) as conn:
        app.control.purge(connection=conn)


@pytest.fixture
def celery_worker(transactional_db: None, tmp_path: Path) -> Iterator[WorkerControl]:
    """A Celery worker subprocess on the test database (not started: call `.start()`)."""
    database_url = _database_url()
    configured = os.environ.get("CELERY_BROKER_URL", "")
    broker_url = configured or f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24app.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "beat-schedule"),
        "PYTHONUNBUFFERED": "1",
    }
    previous = _point_producer_at(broker_url)
    if configured:
        _purge(broker_url)
    control = WorkerControl(tmp=tmp_path, broker_url=broker_url, env=env)
    try:
        yield control
    finally:
        control.kill()  # nothing to finish cleanly: the test is over
        _point_producer_at(previous)
        # The worker held connections to the test database; make sure this process starts
        # the flush with a fresh one.
        connection.close()
