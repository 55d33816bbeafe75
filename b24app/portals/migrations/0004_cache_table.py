"""Create the database cache table (rate limits) as part of `migrate`.

`createcachetable` is idempotent and does nothing when CACHE_URL points at Redis, so every
deployment gets the table it needs from the one command it already runs.
"""

from __future__ import annotations

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):  # type: ignore[no-untyped-def]
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("portals", "0003_audit")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
