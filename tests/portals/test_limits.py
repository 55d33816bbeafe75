from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_body_over_the_limit_gets_413_with_a_clear_message(client: Client, settings: Any):
    settings.B24_BODY_LIMIT = 1000

    response = client.post("/b24/events/", {"event": "x" * 2000})

    assert response.status_code == 413
    assert "too large" in response.content.decode()


def test_a_chunked_body_without_content_length_is_also_limited(client: Client, settings: Any):
    settings.B24_BODY_LIMIT = 1000
    body = b"event=" + b"x" * 5000

    response = client.generic(
        "POST",
        "/b24/events/",
        data=b"",
        content_type="application/x-www-form-urlencoded",
        **{"CONTENT_LENGTH": "", "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )

    assert response.status_code == 413


def test_a_chunked_body_within_the_limit_still_reaches_the_view(client: Client, settings: Any):
    settings.B24_BODY_LIMIT = 1000
    body = b"event=ONAPPUNINSTALL"

    response = client.generic(
        "POST",
        "/b24/events/",
        data=b"",
        content_type="application/x-www-form-urlencoded",
        **{"CONTENT_LENGTH": "", "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "MALFORMED"


def test_the_413_message_is_translated_for_russian_portals(client: Client, settings: Any):
    settings.B24_BODY_LIMIT = 1000

    response = client.post("/b24/app/?LANG=ru", {"AUTH_ID": "x" * 2000})

    assert response.status_code == 413


def test_public_endpoints_are_rate_limited_per_address(client: Client, settings: Any):
    settings.B24_PUBLIC_RATE = "5/m"
    cache.clear()

    codes = [client.post("/b24/events/", {}).status_code for _ in range(7)]

    assert codes[:5] == [400] * 5
    assert codes[5:] == [429, 429]


def test_a_rate_limited_entry_may_be_framed_by_the_portal_it_names(client: Client, settings: Any):
    settings.B24_PUBLIC_RATE = "1/m"
    cache.clear()
    url = "/b24/app/?DOMAIN=acme.bitrix24.com&PROTOCOL=1&LANG=en"

    client.post(url, {})
    limited = client.post(url, {})
    events = [client.post("/b24/events/", {}) for _ in range(2)][-1]

    assert limited.status_code == 429
    assert "X-Frame-Options" not in limited
    assert "frame-ancestors https://acme.bitrix24.com" in limited["Content-Security-Policy"]
    assert events.status_code == 429 and events["X-Frame-Options"] == "DENY"
