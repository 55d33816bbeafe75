"""`manage.py sandbox_install`: install the app on a sandbox portal without a browser.

Does what the faux portal's Install button and the frame do: the portal starts installing, the
app's install URL gets the exact POST of spec §1.2, then the frame's installFinish is reported and
the sandbox delivers ONAPPINSTALL to the handlers the app bound meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from b24app.sandbox.control import ControlClient, ControlError


class Command(BaseCommand):
    help = "Install the app on a running sandbox portal through its real install and event views."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--portal", type=int, default=1)
        parser.add_argument("--user", type=int, default=1, help="the installing admin")
        parser.add_argument("--hub", default=settings.B24_SANDBOX_URL, help="the sandbox hub URL")
        parser.add_argument(
            "--wait",
            type=float,
            default=10.0,
            help="seconds to wait for the install event to be delivered",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = ControlClient(options["hub"])
        portal, user = options["portal"], options["user"]
        try:
            begun = client.control(action="begin_install", portal=portal, user=user)
        except ControlError as exc:
            raise CommandError(str(exc)) from exc
        form = begun["form"]
        member_id = form["fields"]["member_id"]
        self.stdout.write(f"portal {portal} ({member_id}): installing as user {user}")
        self.stdout.write(f"POST {form['url']}")
        try:
            response = requests.post(
                form["url"], data=form["fields"], timeout=30, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise CommandError(f"the app's install URL is not reachable: {exc}") from exc
        self.stdout.write(f"  -> {response.status_code} {response.reason}")
        if response.status_code >= 400:
            raise CommandError("the app refused the install POST; the portal stays 'installing'")
        seen = len(client.events())
        try:
            finished = client.control(action="install_finish", portal=portal, user=user)
        except ControlError as exc:
            raise CommandError(str(exc)) from exc
        queued = int(finished["events_queued"])
        self.stdout.write(
            f"installFinish: app.info now says INSTALLED=true; "
            f"ONAPPINSTALL queued for {queued} bound handler(s)"
        )
        if queued == 0:
            self.stdout.write(
                self.style.WARNING(
                    "no ONAPPINSTALL handler was bound with event.bind during the install"
                )
            )
            return
        deadline = time.monotonic() + options["wait"]
        delivered: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            delivered = [e for e in client.events()[seen:] if e.get("member_id") == member_id]
            if len(delivered) >= queued:
                break
            time.sleep(0.2)
        for entry in delivered:
            status = entry.get("status") or entry.get("error")
            self.stdout.write(f"  {entry['event']} -> {entry['handler']}: {status}")
        if len(delivered) < queued:
            self.stdout.write(self.style.WARNING("not every event was delivered in time"))
        else:
            self.stdout.write(self.style.SUCCESS("installed"))
