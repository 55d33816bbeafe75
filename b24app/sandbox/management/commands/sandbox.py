"""`manage.py sandbox`: run the local Bitrix24 (hub on --port, portal i on --port + i)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from b24app.sandbox.server import SandboxServer
from b24app.sandbox.state import INACTIVE_LINE_CODE, LINE_CODE, LINE_CODE_2, Sandbox


class Command(BaseCommand):
    help = "Run the sandbox Bitrix24: OAuth hub, portals, REST, faux portal pages and inboxes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8100, help="hub port; portal i is port+i")
        parser.add_argument("--portals", type=int, default=1)
        parser.add_argument("--users", type=int, default=300, help="users per portal")
        parser.add_argument("--nfr", action="store_true", help="no weekly limit (NFR licence)")
        parser.add_argument(
            "--no-batch-send",
            action="store_true",
            help="refuse imopenlines.network.message.add inside batch",
        )
        parser.add_argument("--rate", type=float, help="leaky bucket drain, requests/s (2)")
        parser.add_argument("--burst", type=int, help="leaky bucket size (50)")
        parser.add_argument("--op-cost-ms", type=float, help="server time charged per call (5)")
        parser.add_argument("--op-budget-s", type=float, help="execution budget per method (480)")
        parser.add_argument("--op-window-s", type=float, help="execution budget window (600)")
        parser.add_argument("--token-ttl", type=int, help="access token lifetime, s (3600)")
        parser.add_argument("--app-url", default=settings.B24_APP_URL, help="the app's base URL")
        parser.add_argument(
            "--state",
            default=str(Path(settings.BASE_DIR) / ".sandbox-state.json"),
            help="state file kept across restarts",
        )
        parser.add_argument("--fresh", action="store_true", help="ignore the saved state")
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        flags = {
            "rate": options["rate"],
            "burst": options["burst"],
            "op_cost_ms": options["op_cost_ms"],
            "op_budget_s": options["op_budget_s"],
            "op_window_s": options["op_window_s"],
            "token_ttl": options["token_ttl"],
        }
        initial: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
        if options["nfr"]:
            initial["nfr"] = True
        if options["no_batch_send"]:
            initial["batch_send"] = False
        sandbox = Sandbox(
            base_port=options["port"],
            portals=options["portals"],
            users=options["users"],
            app_url=options["app_url"],
            client_id=settings.B24_CLIENT_ID or "local.b24app.sandbox",
            client_secret=settings.B24_CLIENT_SECRET or "sandbox-client-secret-0123456789",
            settings=initial,
            state_file=Path(options["state"]),
        )
        restored = False if options["fresh"] else sandbox.restore()
        if options["fresh"]:
            sandbox.dirty = True  # overwrite the old file with the empty state
        server = SandboxServer(sandbox, bind=options["bind"], quiet=not options["verbose"])
        server.start()
        out = self.stdout
        out.write(self.style.SUCCESS(f"Sandbox Bitrix24 running; hub {sandbox.hub_url}/"))
        out.write(f"  state: {sandbox.state_file} ({'restored' if restored else 'fresh'})")
        out.write(f"  OAuth server / SERVER_ENDPOINT: {sandbox.server_endpoint}")
        out.write(f"  app: {sandbox.app_url} (client_id {sandbox.client_id})")
        for portal in sandbox.portals.values():
            out.write(
                f"  portal {portal.index}: {portal.origin}/  member_id {portal.member_id}"
                f"  app {portal.app_state}"
            )
        out.write(f"  line CODEs: {LINE_CODE}, {LINE_CODE_2} (inactive: {INACTIVE_LINE_CODE})")
        out.write("  users 1, 2, 5 are admins; 6 is inactive; 7 is extranet")
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            server.stop()
            out.write("Sandbox stopped; state saved.")
