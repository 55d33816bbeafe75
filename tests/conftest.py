"""Shared test set-up: no internet, required services, factory fixtures.

- Every test runs with an autouse guard that refuses socket connections to anything but
  loopback; Bitrix is stubbed at the HTTP edge with `responses` or served by the sandbox.
- Tests marked `sandbox`, `worker`, `postgres`, `redis`, `rabbitmq` or `browser` need a real
  service and skip when it is missing; `B24_REQUIRE=postgres,redis,...` (set by CI) turns
  such a skip into a failure, so a missing service can never pass green.
- Tests marked `gettext` need a system tool rather than a service (GNU gettext's xgettext,
  which Django's makemessages runs); `B24_REQUIRE=...,gettext` makes their skip a failure too.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.plugins.sandbox", "tests.plugins.worker"]

SERVICE_MARKERS = ("sandbox", "worker", "postgres", "redis", "rabbitmq", "browser")
TOOL_MARKERS = {"gettext": "needs GNU gettext (xgettext, msgmerge: apt-get install gettext)"}
REQUIRABLE = (*SERVICE_MARKERS, *TOOL_MARKERS)
REQUIRED = {s.strip() for s in os.environ.get("B24_REQUIRE", "").split(",") if s.strip()}

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield


@pytest.fixture(autouse=True)
def _test_cache_and_rates(settings: Any) -> None:
    # An in-process cache (no database needed) and public rate limits that tests which post
    # many times never reach; tests of the limits themselves set their own.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.B24_PUBLIC_RATE = "100000/m"


def pytest_configure(config: pytest.Config) -> None:
    # The service markers are registered in pyproject.toml; the tool markers here, with them.
    for name, meaning in TOOL_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or not REQUIRED:
        return
    needed = [m for m in REQUIRABLE if m in REQUIRED and item.get_closest_marker(m)]
    if needed:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"B24_REQUIRE names {', '.join(needed)} but the test skipped: {reason}"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
