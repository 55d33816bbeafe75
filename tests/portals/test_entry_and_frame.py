from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from b24app.portals import frame
from b24app.portals.models import Portal
from tests.fakes import FakeBitrix
from tests.portals.conftest import DOMAIN, MEMBER_ID

pytestmark = pytest.mark.django_db


def open_app(client: Client, fake: FakeBitrix, user_id: int = 1, **body: str) -> Any:
    access, refresh = fake.issue(MEMBER_ID, user_id)
    form = {
        "AUTH_ID": access,
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": refresh,
        "member_id": MEMBER_ID,
        "status": "L",
        "PLACEMENT": "DEFAULT",
        **body,
    }
    lang = body.pop("LANG", "en") if "LANG" in body else "en"
    return client.post(f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1&LANG={lang}&APP_SID=abc", form)


def token_from(response: Any) -> str:
    return str(response[frame.HEADER])


def test_opening_the_app_identifies_the_user_and_issues_a_frame_token(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal()

    response = open_app(client, fake_bitrix, user_id=7)

    assert response.status_code == 200
    assert "Ivan Manager" in response.content.decode()
    ctx = frame.read_token(token_from(response))
    assert (ctx.user_id, ctx.admin, ctx.portal.member_id) == (7, False, MEMBER_ID)


def test_admin_flag_comes_from_bitrix_profile(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal()

    ctx = frame.read_token(token_from(open_app(client, fake_bitrix, user_id=1)))

    assert ctx.admin is True


def test_the_openers_token_is_not_stored(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    portal = make_portal()

    open_app(client, fake_bitrix, user_id=7)

    assert Portal.objects.get().access_token == portal.access_token


def test_the_app_page_may_be_framed_by_its_portal_only(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal()

    response = open_app(client, fake_bitrix)

    assert "frame-ancestors https://acme.bitrix24.com" in response["Content-Security-Policy"]
    assert "X-Frame-Options" not in response


def test_other_pages_cannot_be_framed(client: Client):
    response = client.get("/healthz")

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_opening_the_app_on_a_portal_that_never_installed_it_is_refused(
    client: Client, fake_bitrix: FakeBitrix
):
    response = open_app(client, fake_bitrix)

    assert response.status_code == 403
    assert "not installed" in response.content.decode()


def framed_by(response: Any) -> str | None:
    """The one origin allowed to frame the response, or None when framing is denied."""
    policy = response["Content-Security-Policy"]
    if "X-Frame-Options" in response:
        assert response["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in policy
        return None
    (ancestors,) = [
        d.split()[1:] for d in policy.split(";") if d.split()[:1] == ["frame-ancestors"]
    ]
    assert len(ancestors) == 1
    return str(ancestors[0])


def test_an_entry_refusal_may_be_framed_by_the_portal_it_names(
    client: Client, fake_bitrix: FakeBitrix
):
    response = open_app(client, fake_bitrix)  # the app was never installed there

    assert response.status_code == 403
    assert framed_by(response) == "https://acme.bitrix24.com"


def test_a_malformed_entry_naming_an_allowed_portal_may_be_framed_by_it(client: Client, db: Any):
    response = client.post(f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1", {"member_id": MEMBER_ID})

    assert response.status_code == 400
    assert framed_by(response) == "https://acme.bitrix24.com"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("DOMAIN=acme.evil.example.com&PROTOCOL=1", "host off the allow-list"),
        ("DOMAIN=acme.bitrix24.com.evil.example&PROTOCOL=1", "allow-list look-alike"),
        (f"DOMAIN={DOMAIN}&PROTOCOL=0", "plain HTTP outside the sandbox"),
        ("DOMAIN=x%3B%20script-src%20*.bitrix24.com&PROTOCOL=1", "CSP injection"),
        ("PROTOCOL=1", "no DOMAIN at all"),
    ],
)
def test_an_entry_refusal_naming_no_allowed_portal_cannot_be_framed(
    client: Client, db: Any, query: str, why: str
):
    body = {"AUTH_ID": "a" * 32, "member_id": MEMBER_ID}

    response = client.post(f"/b24/app/?{query}", body)

    assert response.status_code in (400, 403), why
    assert framed_by(response) is None, why
    assert "script-src *" not in response["Content-Security-Policy"]


def test_a_forged_auth_id_is_refused(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal()

    response = client.post(
        f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1", {"AUTH_ID": "forged", "member_id": MEMBER_ID}
    )

    assert response.status_code == 403
    assert frame.HEADER not in response


def test_an_admin_opening_a_disconnected_portal_reconnects_it(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    fake_bitrix.installed = True
    make_portal(
        status=Portal.Status.AUTH_FAILED,
        status_reason="invalid_grant",
        access_token="",
        refresh_token="",
    )

    response = open_app(client, fake_bitrix, user_id=1)

    assert response.status_code == 200
    portal = Portal.objects.get()
    assert portal.status == Portal.Status.ACTIVE
    assert portal.access_token in fake_bitrix.access


def test_a_disconnected_portal_is_not_reseeded_while_app_info_says_not_installed(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    fake_bitrix.installed = False
    make_portal(status=Portal.Status.AUTH_FAILED, access_token="", refresh_token="")

    response = open_app(client, fake_bitrix, user_id=1)

    assert response.status_code == 403
    portal = Portal.objects.get()
    assert (portal.status, portal.access_token) == (Portal.Status.AUTH_FAILED, "")


def test_a_manager_opening_a_disconnected_portal_is_told_to_ask_an_admin(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal(status=Portal.Status.AUTH_FAILED, access_token="", refresh_token="")

    response = open_app(client, fake_bitrix, user_id=7)

    assert response.status_code == 200
    assert "Ask a Bitrix24 administrator" in response.content.decode()
    assert Portal.objects.get().status == Portal.Status.AUTH_FAILED


def test_frame_views_refuse_requests_without_a_token(client: Client):
    response = client.get("/app/")

    assert response.status_code == 403
    assert "Open the app from your Bitrix24" in response.content.decode()


def test_frame_views_accept_the_token_and_renew_it(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")

    response = client.get("/app/", headers={"X-Frame-Token": token})

    assert response.status_code == 200
    assert frame.read_token(token_from(response)).user_id == 7


def test_frame_token_also_works_as_a_hidden_form_field(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")

    assert client.post("/app/", {"frame_token": token}).status_code == 200


def test_an_expired_frame_token_is_refused_with_401(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")

    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        response = client.get("/app/", headers={"X-Frame-Token": token})

    assert response.status_code == 401
    assert response["X-Frame-Expired"] == "1"


def test_a_tampered_frame_token_is_refused(client: Client, make_portal: Callable[..., Portal]):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")

    assert client.get("/app/", headers={"X-Frame-Token": tampered}).status_code == 403


def test_a_token_for_an_uninstalled_portal_is_refused(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")
    Portal.objects.update(status=Portal.Status.UNINSTALLED)

    assert client.get("/app/", headers={"X-Frame-Token": token}).status_code == 403


def test_a_token_cannot_be_replayed_against_a_reused_portal_id(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")
    Portal.objects.filter(pk=portal.pk).update(member_id="c" * 32)

    assert client.get("/app/", headers={"X-Frame-Token": token}).status_code == 403


def test_an_expired_frame_can_trade_a_fresh_auth_id_for_a_new_token(
    client: Client, make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    make_portal()
    access, _refresh = fake_bitrix.issue(MEMBER_ID, 7)

    response = client.post(
        f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1",
        {"AUTH_ID": access, "member_id": MEMBER_ID},
        headers={"X-Frame-Reenter": "1"},
    )

    assert response.status_code == 200
    assert frame.read_token(response.json()["frame_token"]).user_id == 7
