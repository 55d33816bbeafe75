"""Deliver app lifecycle events to handlers bound with `event.bind`, from a background thread.

Bitrix POSTs events server-to-server as a form with PHP-style nesting (spec §1.4) and may do so
with a delay (§1.3 step 5); the dispatcher waits `event_delay_ms` before each POST. Delivery is
attempted once: the real platform gives no retry guarantee either. Every attempt is logged in
`Sandbox.event_log` (served at /_sandbox/events) so tests and people can see what was sent.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from b24app.sandbox import phpquery
from b24app.sandbox.state import APP_STATUS, Portal, Sandbox, iso

__all__ = ["EventDispatcher", "install_payload", "uninstall_payload", "update_payload"]


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    url: str = field(compare=False)
    data: dict[str, Any] = field(compare=False)
    member_id: str = field(compare=False)


def _auth_block(sandbox: Sandbox, portal: Portal, tokens: dict[str, Any] | None) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if tokens is not None:
        auth.update(
            access_token=tokens["access_token"],
            expires=str(tokens["expires"]),
            expires_in=str(tokens["expires_in"]),
            scope=tokens["scope"],
        )
    auth.update(
        domain=portal.domain,
        server_endpoint=sandbox.server_endpoint,
        client_endpoint=portal.client_endpoint,
        member_id=portal.member_id,
    )
    if tokens is not None:
        auth.update(
            user_id=str(tokens["user_id"]),
            status=APP_STATUS,
            refresh_token=tokens["refresh_token"],
        )
    auth["application_token"] = portal.application_token
    return auth


def install_payload(
    sandbox: Sandbox, portal: Portal, tokens: dict[str, Any], lang: str
) -> dict[str, Any]:
    """ONAPPINSTALL fields (spec §1.4/§8) for the installing user's tokens."""
    return {
        "event": "ONAPPINSTALL",
        "data": {
            "VERSION": str(portal.version),
            "ACTIVE": "Y",
            "INSTALLED": "Y",
            "LANGUAGE_ID": lang,
        },
        "ts": str(int(sandbox.now())),
        "auth": _auth_block(sandbox, portal, tokens),
    }


def update_payload(
    sandbox: Sandbox, portal: Portal, tokens: dict[str, Any], lang: str, previous: int
) -> dict[str, Any]:
    """ONAPPUPDATE: like install, data holds VERSION and PREVIOUS_VERSION, new application_token."""
    return {
        "event": "ONAPPUPDATE",
        "data": {
            "VERSION": str(portal.version),
            "PREVIOUS_VERSION": str(previous),
            "LANGUAGE_ID": lang,
        },
        "ts": str(int(sandbox.now())),
        "auth": _auth_block(sandbox, portal, tokens),
    }


def uninstall_payload(sandbox: Sandbox, portal: Portal, lang: str, clean: bool) -> dict[str, Any]:
    """ONAPPUNINSTALL: no tokens at all, only the portal's identity and application_token."""
    return {
        "event": "ONAPPUNINSTALL",
        "data": {"LANGUAGE_ID": lang, "CLEAN": "1" if clean else "0"},
        "ts": str(int(sandbox.now())),
        "auth": _auth_block(sandbox, portal, None),
    }


class EventDispatcher:
    """A single worker thread that POSTs queued events when they fall due."""

    def __init__(self, sandbox: Sandbox, timeout: float = 10.0) -> None:
        self.sandbox = sandbox
        self.timeout = timeout
        self._queue: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-events", daemon=True)
        self._thread.start()

    def send(self, portal: Portal, event: str, data: dict[str, Any]) -> int:
        """Queue `data` for every handler of `event` on the portal; returns how many were queued.

        Call with the sandbox lock held, so the handler list is read consistently.
        """
        delay = float(self.sandbox.setting(portal, "event_delay_ms")) / 1000
        urls = [h["handler"] for h in portal.handlers if h["event"] == event]
        with self._cond:
            for url in urls:
                heapq.heappush(
                    self._queue,
                    _Job(time.monotonic() + delay, next(self._seq), url, data, portal.member_id),
                )
            self._cond.notify_all()
        return len(urls)

    def idle(self) -> bool:
        """Nothing queued and nothing being sent."""
        with self._cond:
            return not self._queue and self._busy == 0

    def clear(self) -> None:
        """Drop queued events (used by reset)."""
        with self._cond:
            self._queue.clear()

    def stop(self) -> None:
        """Stop the worker thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._queue or self._queue[0].due > time.monotonic()
                ):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                job = heapq.heappop(self._queue)
                self._busy += 1
            try:
                self._post(job)
            finally:
                with self._cond:
                    self._busy -= 1

    def _post(self, job: _Job) -> None:
        entry: dict[str, Any] = {
            "event": job.data.get("event"),
            "handler": job.url,
            "member_id": job.member_id,
            "sent_at": iso(self.sandbox.now()),
            "data": job.data,
        }
        try:
            response = requests.post(
                job.url,
                data=phpquery.build_query(job.data),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "Bitrix24 Sandbox Webhook Engine",
                },
                timeout=self.timeout,
                allow_redirects=False,
            )
            entry["status"] = response.status_code
        except requests.RequestException as exc:
            entry["status"] = None
            entry["error"] = f"{type(exc).__name__}: {exc}"
        with self.sandbox.lock:
            self.sandbox.event_log.append(entry)
