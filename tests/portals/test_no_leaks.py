"""Tokens and secrets never reach logs, pages or error pages (issue 6, security)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from b24app.bitrix import client as bitrix
from b24app.portals import services
from b24app.portals.models import Portal
from tests.fakes import CLIENT_SECRET, FakeBitrix
from tests.portals.conftest import DOMAIN, MEMBER_ID, install_post

pytestmark = pytest.mark.django_db(transaction=True)


def test_no_token_or_secret_appears_in_logs_or_pages(
    client: Client,
    fake_bitrix: FakeBitrix,
    make_portal: Callable[..., Portal],
    caplog: Any,
    settings: Any,
):
    settings.DEBUG = False
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 and requests-oauthlib included
    pages: list[str] = []

    def keep(response: Any) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items() if k != "X-Frame-Token")
        pages.append(headers + "\n" + response.content.decode(errors="replace"))

    # Install (with a refresh inside), a repeated install, a forged install, an entry, events.
    query, body = install_post(fake_bitrix)
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    keep(client.post(f"/b24/install/?{qs}", body))
    keep(client.post(f"/b24/install/?{qs}", body))  # replay: refused
    secrets_seen = {body["AUTH_ID"], body["REFRESH_ID"], body["APPLICATION_TOKEN"], CLIENT_SECRET}
    opener, opener_refresh = fake_bitrix.issue(MEMBER_ID, 7)
    secrets_seen |= {opener, opener_refresh}
    keep(
        client.post(
            f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1",
            {"AUTH_ID": opener, "REFRESH_ID": opener_refresh, "member_id": MEMBER_ID},
        )
    )
    keep(
        client.post(
            f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1",
            {"AUTH_ID": "forged-" + opener, "member_id": MEMBER_ID},
        )
    )
    keep(
        client.post(
            "/b24/events/",
            {
                "event": "ONAPPUNINSTALL",
                "auth[member_id]": MEMBER_ID,
                "auth[application_token]": "wrong-" + body["APPLICATION_TOKEN"],
            },
        )
    )

    # A token refresh, and one refused with invalid_grant.
    portal = Portal.objects.get()
    secrets_seen |= {portal.access_token, portal.refresh_token}
    Portal.objects.filter(pk=portal.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    services.portal_call(Portal.objects.get(), bitrix.profile)
    refreshed = Portal.objects.get()
    secrets_seen |= {refreshed.access_token, refreshed.refresh_token}
    Portal.objects.filter(pk=portal.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    fake_bitrix.refresh.clear()  # the stored refresh token is no longer known: invalid_grant
    with pytest.raises(services.PortalUnavailable):
        services.portal_call(Portal.objects.get(), bitrix.profile)

    logs = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert "token refresh rejected" in logs  # the logs did record the events
    for secret in secrets_seen:
        assert secret not in logs, "a token or secret reached the logs"
        for page in pages:
            assert secret not in page, "a token or secret reached a page"


@pytest.mark.sandbox
def test_real_http_refresh_logs_no_secrets_even_at_debug_level(
    sandbox: Any, caplog: Any, settings: Any
):
    hosts = ["localhost:81??", "127.0.0.1:81??"]
    settings.B24_SANDBOX, settings.B24_SANDBOX_HOSTS = True, hosts
    settings.B24_OAUTH_HOSTS = settings.B24_PORTAL_HOSTS = hosts
    settings.B24_CLIENT_ID = sandbox.state.client_id
    settings.B24_CLIENT_SECRET = sandbox.state.client_secret
    tokens = sandbox.tokens(portal=1, user=1)
    portal = Portal.objects.create(
        member_id=sandbox.member_id(1),
        domain=sandbox.domain(1),
        https=False,
        client_endpoint=f"{sandbox.portal_url(1)}/rest/",
        server_endpoint=sandbox.server_endpoint,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    caplog.set_level(logging.DEBUG)

    services.portal_call(portal, bitrix.profile)

    refreshed = Portal.objects.get()
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "localhost" in logs  # urllib3 did log the requests
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed.access_token,
        refreshed.refresh_token,
        sandbox.state.client_secret,
    ):
        assert secret not in logs
