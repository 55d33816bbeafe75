"""One caller of the token refresh race (bench.chaos.refresh_race), also run as a process.

`python -m bench.caller PORTAL_ID`: set up Django from the environment, load the portal, print
"ready", wait for a line on stdin (the start signal), call the portal once, print the outcome as
JSON. Threads in the racing process call `call_once` directly.
"""

from __future__ import annotations

import json
import os
import sys


def call_once(portal_id: int) -> str:
    """Load the portal, call `user.current` through `portal_call`, and name the outcome."""
    from django.db import close_old_connections

    from b24app.bitrix import client, errors
    from b24app.portals.models import Portal
    from b24app.portals.services import PortalError, portal_call

    try:
        portal = Portal.objects.get(pk=portal_id)
        portal_call(portal, client.user_current)
        return "ok"
    except PortalError as exc:
        return f"portal_error:{exc.code}"
    except errors.BitrixError as exc:
        return f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
    finally:
        close_old_connections()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24app.settings")
    import django

    django.setup()
    from b24app.portals.models import Portal

    portal_id = int(sys.argv[1])
    Portal.objects.get(pk=portal_id)  # connect and warm up before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps({"outcome": call_once(portal_id)}), flush=True)


if __name__ == "__main__":
    main()
