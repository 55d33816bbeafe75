"""pytest plugin: the sandbox Bitrix24 running in-process, for tests marked `sandbox`.

`sandbox_server` (session) starts the hub on port 8150 and two portals on 8151 and 8152, so it never
meets a developer's `make run` sandbox on 8100. `sandbox` (function) resets it and hands out a
`SandboxHelper`. Register with `pytest_plugins = ["tests.plugins.sandbox"]` in tests/conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from django.conf import settings

from b24app.sandbox import phpquery
from b24app.sandbox.control import ControlClient
from b24app.sandbox.server import SandboxServer
from b24app.sandbox.state import INACTIVE_LINE_CODE, LINE_CODE, LINE_CODE_2, Sandbox

SANDBOX_TEST_PORT = 8150
SANDBOX_TEST_PORTALS = 2
SANDBOX_TEST_USERS = 300


class SandboxHelper:
    """What a test needs to drive the sandbox: URLs, tokens, control, clock, deliveries."""

    LINE_CODE = LINE_CODE
    LINE_CODE_2 = LINE_CODE_2
    INACTIVE_LINE_CODE = INACTIVE_LINE_CODE

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.state: Sandbox = server.sandbox
        self.hub_url = self.state.hub_url
        self.client = ControlClient(self.hub_url)
        self.http = requests.Session()

    # --- addresses -------------------------------------------------------------------------
    def portal_url(self, i: int = 1) -> str:
        """`http://localhost:<port>` of portal i (no trailing slash)."""
        return self.state.portal(i).origin

    def domain(self, i: int = 1) -> str:
        """`DOMAIN` of portal i (`localhost:<port>`)."""
        return self.state.portal(i).domain

    def member_id(self, i: int = 1) -> str:
        """member_id of portal i."""
        return self.state.portal(i).member_id

    def rest_url(self, method: str, portal: int = 1) -> str:
        """`http://localhost:<port>/rest/<method>` of portal i."""
        return f"{self.portal_url(portal)}/rest/{method}"

    @property
    def server_endpoint(self) -> str:
        """The hub's REST base (SERVER_ENDPOINT)."""
        return self.state.server_endpoint

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return f"{self.hub_url}/oauth/token/"

    # --- control ---------------------------------------------------------------------------
    def control(self, portal: int | None = None, **body: Any) -> dict[str, Any]:
        """POST /_sandbox/control (settings, clock, actions); raises ControlError on refusal."""
        if portal is not None:
            body["portal"] = portal
        return self.client.control(**body)

    def reset(self) -> None:
        """Fresh state, keeping the directory; test defaults (no event delay) re-applied."""
        self.client.reset()

    def clock(self, offset_s: float) -> None:
        """Set the sandbox clock offset (seconds from wall time)."""
        self.client.control(clock_offset_s=offset_s)

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.client.control(advance_s=seconds)

    def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        """GET /_sandbox/deliveries (filters: member_id, since, after_id, user_id)."""
        return self.client.deliveries(**filters)

    def events(self) -> list[dict[str, Any]]:
        """The event POSTs the sandbox attempted."""
        return self.client.events()

    def wait_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least `count` event POSTs were attempted; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.events()
            if len(seen) >= count or time.monotonic() > deadline:
                return seen
            time.sleep(0.02)

    # --- app and tokens --------------------------------------------------------------------
    def install(self, portal: int = 1, user: int = 1) -> None:
        """Mark the app installed without a frame (begin + finish; events to bound handlers)."""
        self.client.control(action="install", portal=portal, user=user)

    def tokens(self, portal: int = 1, user: int = 1) -> dict[str, Any]:
        """A fresh OAuth token reply for a user; installs the app silently when needed."""
        reply = self.client.control(
            action="issue_token", portal=portal, user=user, install_if_needed=True
        )
        token: dict[str, Any] = reply["token"]
        return token

    def token(self, portal: int = 1, user: int = 1) -> str:
        """A valid access token for a user of a portal."""
        return str(self.tokens(portal, user)["access_token"])

    def call(
        self,
        method: str,
        portal: int = 1,
        *,
        token: str | None = None,
        user: int = 1,
        json: Any = None,
        **params: Any,
    ) -> requests.Response:
        """POST a REST call (form body with `auth`, or a JSON body when `json` is given)."""
        auth = token if token is not None else self.token(portal, user)
        url = self.rest_url(method, portal)
        if json is not None:
            return self.http.post(url, json={**json, "auth": auth}, timeout=10)
        return self.http.post(url, data={**params, "auth": auth}, timeout=10)

    def join(self, portal: int = 1, code: str = LINE_CODE, *, token: str | None = None) -> int:
        """Join a network line on a portal; returns the bot id."""
        response = self.call("imopenlines.network.join", portal, token=token, CODE=code)
        assert response.status_code == 200, response.text
        return int(response.json()["result"])


class EventReceiver:
    """A tiny loopback HTTP server that records the POSTs it gets (stands in for the app)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                with receiver._lock:
                    receiver.received.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "raw": raw,
                            "form": phpquery.parse_str(raw),
                        }
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` POSTs arrived (or the timeout passed); returns what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    break
            time.sleep(0.01)
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def event_receiver() -> Iterator[EventReceiver]:
    """A loopback HTTP receiver for event POSTs; `.url`, `.received`, `.wait(n)`."""
    receiver = EventReceiver()
    yield receiver
    receiver.close()


def app_sandbox(
    *,
    base_port: int,
    users: int,
    portals: int = 2,
    client_id: str = "local.b24app.sandbox",
    client_secret: str = "sandbox-client-secret-0123456789",
) -> Sandbox:
    """A sandbox with this app registered (the credentials of .env.example by default), its
    events delivered at once, pointing at the app's own URL."""
    return Sandbox(
        base_port=base_port,
        portals=portals,
        users=users,
        app_url=settings.B24_APP_URL,
        client_id=client_id,
        client_secret=client_secret,
        settings={"event_delay_ms": 0},
    )


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """The sandbox served in-process on 127.0.0.1:8150-8152 for the whole test session."""
    sandbox = app_sandbox(
        base_port=SANDBOX_TEST_PORT,
        portals=SANDBOX_TEST_PORTALS,
        users=SANDBOX_TEST_USERS,
        client_id=settings.B24_CLIENT_ID or "local.b24app.sandbox",
        client_secret=settings.B24_CLIENT_SECRET or "sandbox-client-secret-0123456789",
    )
    server = SandboxServer(sandbox)
    try:
        server.start()
    except OSError as exc:
        pytest.skip(f"sandbox test ports {SANDBOX_TEST_PORT}+ are busy: {exc}")
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxHelper:
    """A freshly reset sandbox and a helper to drive it."""
    helper = SandboxHelper(sandbox_server)
    helper.reset()
    return helper
