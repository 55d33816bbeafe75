"""The short reliability suite (issue 7): `make chaos` scenarios, smaller, inside `make test`.

The sandbox runs in-process on ports of its own (the first free block of three among HUB_PORTS),
so it meets neither the other suites' sandboxes nor another run of this suite in the same tree;
the Celery worker is the shared worker plugin's subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from b24app.sandbox.control import ControlClient
from b24app.sandbox.server import SandboxServer
from bench.procs import port_free
from tests.plugins.sandbox import app_sandbox
from tests.plugins.worker import WorkerControl

# Hub ports; the portals follow it. All within the app's sandbox host pattern localhost:81??.
HUB_PORTS = (8160, 8164, 8180, 8184, 8188, 8192, 8196)
USERS = 700


@pytest.fixture(scope="session")
def chaos_sandbox() -> Iterator[SandboxServer]:
    for hub in HUB_PORTS:
        if not all(port_free(port) for port in range(hub, hub + 3)):
            continue
        server = SandboxServer(app_sandbox(base_port=hub, users=USERS))
        try:
            server.start()
        except (OSError, SystemExit):  # werkzeug exits when a port was taken meanwhile
            for started in getattr(server, "_servers", []):
                started.server_close()
            continue
        yield server
        server.stop()
        return
    pytest.skip(f"no free block of sandbox ports among {HUB_PORTS}")


@pytest.fixture
def control(chaos_sandbox: SandboxServer) -> ControlClient:
    """A reset sandbox's control API."""
    client = ControlClient(chaos_sandbox.sandbox.hub_url)
    client.reset()
    client.control(event_delay_ms=0)
    return client


@pytest.fixture
def worker(celery_worker: WorkerControl, settings: Any) -> WorkerControl:
    """The worker subprocess, configured for the sandbox (not started)."""
    settings.B24_CLIENT_ID = "local.b24app.sandbox"
    settings.B24_CLIENT_SECRET = "sandbox-client-secret-0123456789"
    celery_worker.base_env.update(
        B24_CLIENT_ID="local.b24app.sandbox",
        B24_CLIENT_SECRET="sandbox-client-secret-0123456789",
        B24_REQUEST_TIMEOUT="5",
    )
    return celery_worker
