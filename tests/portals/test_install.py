from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

from b24app.portals.models import Portal
from tests.fakes import FakeBitrix
from tests.portals.conftest import DOMAIN, MEMBER_ID, install_post

pytestmark = pytest.mark.django_db


def post_install(client: Client, fake: FakeBitrix, **overrides: Any) -> Any:
    query, body = install_post(fake, **overrides)
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return client.post(f"/b24/install/?{qs}", body)


def test_install_stores_the_portal_with_encrypted_tokens(client: Client, fake_bitrix: FakeBitrix):
    response = post_install(client, fake_bitrix)

    assert response.status_code == 200
    portal = Portal.objects.get(member_id=MEMBER_ID)
    assert portal.domain == DOMAIN
    assert portal.status == Portal.Status.ACTIVE
    assert portal.installer_user_id == 1
    assert portal.access_token in fake_bitrix.access
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM portals_portal")
        raw = cursor.fetchone()
    assert portal.access_token not in raw[0] and portal.refresh_token not in raw[1]
    assert raw[0].startswith("gAAAA")  # Fernet ciphertext


def test_install_page_finishes_installation_through_the_frame_api(
    client: Client, fake_bitrix: FakeBitrix
):
    response = post_install(client, fake_bitrix)

    html = response.content.decode()
    assert 'data-install-finish="1"' in html
    assert "frame-ancestors https://acme.bitrix24.com" in response["Content-Security-Policy"]
    assert "X-Frame-Options" not in response


def test_install_binds_the_three_lifecycle_events(client: Client, fake_bitrix: FakeBitrix):
    post_install(client, fake_bitrix)

    bound = fake_bitrix.portals[MEMBER_ID].bound
    handler = "https://app.example.com/b24/events/"
    assert bound == {
        ("ONAPPINSTALL", handler),
        ("ONAPPUPDATE", handler),
        ("ONAPPUNINSTALL", handler),
    }


def test_repeating_install_updates_the_portal_instead_of_duplicating_it(
    client: Client, fake_bitrix: FakeBitrix
):
    post_install(client, fake_bitrix)
    first_token = Portal.objects.get().access_token

    response = post_install(client, fake_bitrix, LANG="ru")

    assert response.status_code == 200  # existing event bindings count as success
    assert Portal.objects.count() == 1
    portal = Portal.objects.get()
    assert portal.access_token != first_token
    assert portal.language == "ru"


def test_install_without_the_optional_fields_of_newer_portals_still_works(
    client: Client, fake_bitrix: FakeBitrix
):
    response = post_install(
        client, fake_bitrix, SERVER_ENDPOINT=None, APPLICATION_TOKEN=None, APPLICATION_SCOPE=None
    )

    assert response.status_code == 200
    assert Portal.objects.get().server_endpoint == "https://oauth.bitrix.info/rest/"


def test_install_is_accepted_while_app_info_still_says_not_installed(
    client: Client, fake_bitrix: FakeBitrix
):
    # The installer page runs before installFinish: INSTALLED is false there (spec §1.3).
    fake_bitrix.installed = False

    assert post_install(client, fake_bitrix).status_code == 200
    assert Portal.objects.get().member_id == MEMBER_ID


def test_install_with_another_apps_token_is_refused_and_stores_nothing(
    client: Client, fake_bitrix: FakeBitrix
):
    fake_bitrix.app_code = "local.someone.else"

    response = post_install(client, fake_bitrix)

    assert response.status_code == 403
    assert "another application" in response.content.decode()
    assert not Portal.objects.exists()


def test_install_naming_an_unlisted_oauth_server_is_refused_without_calling_it(
    client: Client, fake_bitrix: FakeBitrix
):
    response = post_install(client, fake_bitrix, SERVER_ENDPOINT="https://evil.example/rest/")

    assert response.status_code == 400
    assert "not allowed" in response.content.decode()
    assert not Portal.objects.exists()
    assert all("evil" not in call.request.url for call in fake_bitrix.rsps.calls)


@pytest.mark.parametrize("domain", ["acme.bitrix24.evil.com", "evil.com", "localhost:8101"])
def test_install_for_a_host_off_the_allow_list_is_refused(
    client: Client, fake_bitrix: FakeBitrix, domain: str
):
    response = post_install(client, fake_bitrix, DOMAIN=domain)

    assert response.status_code == 400
    assert not Portal.objects.exists()


def test_plain_http_portals_are_refused_outside_the_sandbox(
    client: Client, fake_bitrix: FakeBitrix
):
    response = post_install(client, fake_bitrix, PROTOCOL="0")

    assert response.status_code == 400
    assert "HTTP" in response.content.decode()


def test_install_claiming_another_portals_member_id_is_refused(
    client: Client, fake_bitrix: FakeBitrix
):
    fake_bitrix.add_portal("b" * 32, "victim.bitrix24.com")

    response = post_install(client, fake_bitrix, member_id="b" * 32)

    assert response.status_code == 403
    assert not Portal.objects.exists()


def test_replayed_install_post_is_refused(client: Client, fake_bitrix: FakeBitrix):
    query, body = install_post(fake_bitrix)
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    assert client.post(f"/b24/install/?{qs}", body).status_code == 200
    before = Portal.objects.get().access_token

    replay = client.post(f"/b24/install/?{qs}", body)

    assert replay.status_code == 403  # its refresh token was single-use
    assert Portal.objects.get().access_token == before


@pytest.mark.parametrize("missing", ["DOMAIN", "AUTH_ID", "REFRESH_ID", "member_id"])
def test_malformed_install_gets_a_clear_400(client: Client, fake_bitrix: FakeBitrix, missing: str):
    response = post_install(client, fake_bitrix, **{missing: None})

    assert response.status_code == 400
    assert missing in response.content.decode()
    assert not Portal.objects.exists()


def test_install_answers_get_with_405(client: Client):
    assert client.get("/b24/install/").status_code == 405


def test_a_marketplace_app_is_recognised_by_the_code_set_in_b24_app_code(
    client: Client, fake_bitrix: FakeBitrix, settings: Any
):
    settings.B24_APP_CODE = fake_bitrix.app_code = "vendor.b24app"

    assert post_install(client, fake_bitrix).status_code == 200


def test_with_b24_app_code_set_a_token_reporting_the_client_id_is_another_app(
    client: Client, fake_bitrix: FakeBitrix, settings: Any
):
    settings.B24_APP_CODE = "vendor.b24app"

    response = post_install(client, fake_bitrix)

    assert response.status_code == 403
    assert not Portal.objects.exists()


def test_an_install_refusal_may_be_framed_by_the_portal_it_names(
    client: Client, fake_bitrix: FakeBitrix
):
    fake_bitrix.app_code = "local.someone.else"

    response = post_install(client, fake_bitrix)

    assert response.status_code == 403
    assert "X-Frame-Options" not in response
    assert "frame-ancestors https://acme.bitrix24.com" in response["Content-Security-Policy"]


def test_an_install_refusal_naming_a_host_off_the_allow_list_cannot_be_framed(
    client: Client, fake_bitrix: FakeBitrix
):
    response = post_install(client, fake_bitrix, DOMAIN="acme.evil.example.com")

    assert response.status_code == 400
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
