"""Security walks over every URL the app serves (issue 6).

- Every view but the public Bitrix endpoints refuses a request without a frame token (403).
- With a valid token for portal A, any id belonging to portal B answers 404.
The routes come from the resolver, so a new view is covered the day it is added; a route with a
parameter this file does not know how to fill fails until it is taught.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from b24app.campaigns.models import Campaign
from b24app.messaging.models import Delivery, Line, Template
from b24app.portals import frame
from b24app.portals.models import Portal

pytestmark = pytest.mark.django_db

# Bitrix24 calls these without our token (each view says why); health is for load balancers;
# Django's admin site has its own login; downloads carry a single-use token of their own.
PUBLIC = {"portals:healthz", "portals:install", "portals:events", "portals:entry"}
OWN_AUTH_PREFIXES = ("admin:",)
DOWNLOADS = {"campaigns:download"}


def routes() -> Iterator[tuple[str, str, list[str]]]:
    """(name, route with <converters>, parameter names) of every named URL."""

    def walk(
        patterns: list[Any], prefix: str, namespace: str
    ) -> Iterator[tuple[str, str, list[str]]]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                ns = entry.namespace or namespace
                if ns == "admin":
                    continue
                yield from walk(entry.url_patterns, prefix + str(entry.pattern), ns)
            elif isinstance(entry, URLPattern) and entry.name:
                name = f"{namespace}:{entry.name}" if namespace else entry.name
                yield name, prefix + str(entry.pattern), list(entry.pattern.converters)

    yield from walk(get_resolver().url_patterns, "/", "")


def fill(route: str, values: dict[str, Any]) -> str:
    url = route
    for key, value in values.items():
        for converter in ("id", "int", "str", "slug", ""):
            tag = f"<{converter}:{key}>" if converter else f"<{key}>"
            url = url.replace(tag, str(value))
    assert "<" not in url, f"do not know how to fill {route}"
    return url.replace("^", "").replace("$", "")


def make_world() -> tuple[Portal, Portal, dict[str, Any]]:
    """Portal A (ours) and portal B with one object of every kind."""

    def portal(member: str, domain: str) -> Portal:
        return Portal.objects.create(
            member_id=member,
            domain=domain,
            client_endpoint=f"https://{domain}/rest/",
            server_endpoint="https://oauth.bitrix.info/rest/",
            access_token="a",
            refresh_token="r",
            expires_at=timezone.now() + timedelta(hours=1),
        )

    mine = portal("a" * 32, "mine.bitrix24.com")
    theirs = portal("b" * 32, "theirs.bitrix24.com")
    line = Line.objects.create(portal=theirs, code="c" * 32, name="theirs")
    delivery = Delivery.objects.create(portal=theirs, line=line, user_id=5, message="hi")
    template = Template.objects.create(portal=theirs, name="theirs", data={})
    campaign = Campaign.objects.create(
        portal=theirs, line=line, name="theirs", line_code=line.code, message="hi"
    )
    ids = {
        "line_id": line.pk,
        "delivery_id": delivery.pk,
        "template_id": template.pk,
        "pk": campaign.pk,
        "campaign_id": campaign.pk,
        "token": "not-a-real-token",
    }
    return mine, theirs, ids


def frame_routes() -> list[tuple[str, str, list[str]]]:
    return [r for r in routes() if r[0] not in PUBLIC and not r[0].startswith(OWN_AUTH_PREFIXES)]


def test_the_walk_finds_the_apps_views():
    names = {name for name, _route, _params in frame_routes()}
    assert {"messaging:compose", "messaging:send", "campaigns:list", "portals:status"} <= names


@pytest.mark.parametrize("method", ["get", "post"])
def test_every_frame_view_refuses_a_request_without_a_frame_token(client: Client, method: str):
    _mine, _theirs, ids = make_world()
    for name, route, _params in frame_routes():
        url = fill(route, ids)
        response = getattr(client, method)(url)
        # A download without its single-use token is gone (or never existed); never served.
        expected = {404, 405, 410} if name in DOWNLOADS else {403}
        assert response.status_code in expected, (
            f"{method.upper()} {name} {url}: {response.status_code}"
        )


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_portals_ids_answer_404(client: Client, method: str):
    mine, _theirs, ids = make_world()
    token = frame.issue_token(portal=mine, user_id=1, admin=True, language="en")
    for name, route, params in frame_routes():
        if not params or name in DOWNLOADS:
            continue
        url = fill(route, ids)
        response = getattr(client, method)(
            url, headers={"X-Frame-Token": token, "HX-Request": "true"}
        )
        assert response.status_code in (404, 405), (
            f"{method.upper()} {name}: {response.status_code}"
        )
        if response.status_code == 405:
            continue
        assert b"theirs" not in response.content


def test_a_token_for_another_portal_cannot_be_replayed_by_editing_it(client: Client):
    mine, theirs, _ids = make_world()
    token = frame.issue_token(portal=mine, user_id=1, admin=True, language="en")
    other = frame.issue_token(portal=theirs, user_id=1, admin=True, language="en")
    # Their payload with our timestamp and signature: the signature no longer matches.
    forged = ":".join([other.rsplit(":", 2)[0], *token.rsplit(":", 2)[1:]])
    assert forged != token and forged != other

    assert client.get("/app/messages/", headers={"X-Frame-Token": forged}).status_code == 403


def test_ids_too_large_for_the_database_answer_404_not_500(client: Client):
    mine, _theirs, _ids = make_world()
    token = frame.issue_token(portal=mine, user_id=1, admin=True, language="en")
    for url in ("/app/campaigns/2147483648/", "/app/messages/history/99999999999/"):
        response = client.get(url, headers={"X-Frame-Token": token})
        assert response.status_code == 404
