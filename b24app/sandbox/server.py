"""Run the sandbox: a threaded HTTP server for the hub and one per portal, plus the helpers.

Used by `manage.py sandbox` and by the test plugin, which runs it in-process on other ports.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from b24app.sandbox.events import EventDispatcher
from b24app.sandbox.state import Sandbox
from b24app.sandbox.web import SandboxWeb

__all__ = ["SandboxServer"]

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (benchmarks make thousands); errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class _VerboseHandler(WSGIRequestHandler):
    pass


class SandboxServer:
    """Owns the servers, their threads, the event dispatcher and the periodic state saver."""

    def __init__(self, sandbox: Sandbox, *, bind: str = "127.0.0.1", quiet: bool = True) -> None:
        self.sandbox = sandbox
        self.bind = bind
        self.quiet = quiet
        self.dispatcher = EventDispatcher(sandbox)
        self.web = SandboxWeb(sandbox, self.dispatcher)
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind every port and serve in background threads; raises OSError if a port is taken."""
        handler = _QuietHandler if self.quiet else _VerboseHandler
        apps: list[tuple[int, Any]] = [(self.sandbox.base_port, self.web.hub_app())]
        apps += [(p.port, self.web.portal_app(p.index)) for p in self.sandbox.portals.values()]
        try:
            for port, app in apps:
                self._servers.append(
                    make_server(self.bind, port, app, threaded=True, request_handler=handler)
                )
        except OSError:
            for server in self._servers:
                server.server_close()
            self._servers.clear()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, name=f"sandbox-{server.port}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.sandbox.state_file is not None:
            saver = threading.Thread(target=self._save_loop, name="sandbox-saver", daemon=True)
            saver.start()
            self._threads.append(saver)

    def _save_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sandbox.save()
            except OSError:
                log.exception("could not save the sandbox state")

    def stop(self) -> None:
        """Stop serving, stop the event thread, and save the state one last time."""
        self._stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self.dispatcher.stop()
        self.sandbox.save()
