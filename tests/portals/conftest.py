from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from b24app.portals.models import Portal
from tests.fakes import CLIENT_ID, CLIENT_SECRET, OAUTH, FakeBitrix, start_fake_bitrix

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
DOMAIN = "acme.bitrix24.com"


@pytest.fixture(autouse=True)
def _app_settings(settings: Any) -> None:
    settings.B24_CLIENT_ID = CLIENT_ID
    settings.B24_CLIENT_SECRET = CLIENT_SECRET
    settings.B24_APP_URL = "https://app.example.com"
    settings.B24_OAUTH_HOSTS = ["oauth.bitrix.info", "oauth.bitrix24.tech"]
    settings.B24_PORTAL_HOSTS = ["*.bitrix24.*"]
    settings.B24_SANDBOX = False


@pytest.fixture
def fake_bitrix() -> Iterator[FakeBitrix]:
    fake = start_fake_bitrix()
    fake.add_portal(MEMBER_ID, DOMAIN)
    yield fake
    fake.rsps.stop()
    fake.rsps.reset()


@pytest.fixture
def make_portal(fake_bitrix: FakeBitrix) -> Callable[..., Portal]:
    def make(**overrides: Any) -> Portal:
        access, refresh = fake_bitrix.issue(MEMBER_ID, 1)
        fields: dict[str, Any] = {
            "member_id": MEMBER_ID,
            "domain": DOMAIN,
            "client_endpoint": f"https://{DOMAIN}/rest/",
            "server_endpoint": f"{OAUTH}/rest/",
            "access_token": access,
            "refresh_token": refresh,
            "expires_at": timezone.now() + timedelta(hours=1),
            "token_refreshed_at": timezone.now(),
            "installed_at": timezone.now(),
        }
        fields.update(overrides)
        return Portal.objects.create(**fields)

    return make


def install_post(fake: FakeBitrix, **overrides: str) -> tuple[dict[str, str], dict[str, str]]:
    """Query string and body of the installer POST of spec §1.2, with fresh fake tokens."""
    access, refresh = fake.issue(MEMBER_ID, 1)
    query = {"DOMAIN": DOMAIN, "PROTOCOL": "1", "LANG": "en", "APP_SID": "dd8c0000"}
    body = {
        "AUTH_ID": access,
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": refresh,
        "SERVER_ENDPOINT": f"{OAUTH}/rest/",
        "member_id": MEMBER_ID,
        "status": "L",
        "PLACEMENT": "DEFAULT",
        "APPLICATION_TOKEN": "ec1b0000secret",
        "APPLICATION_SCOPE": "imopenlines,user,department",
    }
    for key, value in overrides.items():
        target = query if key in query else body
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return query, body
