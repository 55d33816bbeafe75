"""`manage.py sandbox_token`: print a valid access token from the running sandbox."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from b24app.sandbox.control import ControlClient, ControlError


class Command(BaseCommand):
    help = "Print a fresh access token for a portal user of the running sandbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--portal", type=int, default=1)
        parser.add_argument("--user", type=int, default=1)
        parser.add_argument("--hub", default=settings.B24_SANDBOX_URL, help="the sandbox hub URL")
        parser.add_argument("--json", action="store_true", help="print the whole token reply")

    def handle(self, *args: Any, **options: Any) -> None:
        client = ControlClient(options["hub"])
        try:
            reply = client.control(
                action="issue_token", portal=options["portal"], user=options["user"]
            )
        except ControlError as exc:
            raise CommandError(str(exc)) from exc
        token = reply["token"]
        if options["json"]:
            import json

            self.stdout.write(json.dumps(token, indent=2))
        else:
            self.stdout.write(token["access_token"])
