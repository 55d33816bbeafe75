"""Re-encrypt every stored token under the newest key of B24_TOKEN_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from b24app.portals.models import Portal


class Command(BaseCommand):
    help = "Re-encrypt portal tokens with the first key of B24_TOKEN_KEYS (after prepending one)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        for pk in Portal.objects.values_list("pk", flat=True).iterator():
            with transaction.atomic():
                portal = Portal.objects.select_for_update().get(pk=pk)
                # Reading decrypts with any key; saving encrypts with the newest.
                portal.save(update_fields=["access_token", "refresh_token"])
                count += 1
        self.stdout.write(f"re-encrypted the tokens of {count} portal(s)")
