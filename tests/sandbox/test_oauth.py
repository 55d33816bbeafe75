"""The sandbox's OAuth server: grants, rotation, code TTL, errors and statuses (spec §2, §8)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings

pytestmark = pytest.mark.sandbox

CLIENT = {"client_id": settings.B24_CLIENT_ID, "client_secret": settings.B24_CLIENT_SECRET}


def _authorize(sandbox, portal=1, user=1, state="s1"):
    session = requests.Session()
    session.cookies.set(f"b24sandbox_user_{8150 + portal}", str(user))
    return session.get(
        f"{sandbox.portal_url(portal)}/oauth/authorize/",
        params={"client_id": settings.B24_CLIENT_ID, "state": state},
        allow_redirects=False,
        timeout=5,
    )


def _code(sandbox, portal=1, user=1):
    response = _authorize(sandbox, portal, user)
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def _grant(sandbox, method="get", **params):
    call = requests.get if method == "get" else requests.post
    if method == "get":
        return call(sandbox.token_url, params={**CLIENT, **params}, timeout=5)
    return call(sandbox.token_url, data={**CLIENT, **params}, timeout=5)


def test_authorize_redirects_to_the_app_callback_with_code_and_portal(sandbox):
    sandbox.install()
    response = _authorize(sandbox, state="xyz")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{settings.B24_APP_URL}/b24/oauth/callback/"
    )
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["state"] == "xyz"
    assert query["domain"] == sandbox.domain(1)
    assert query["member_id"] == sandbox.member_id(1)
    assert query["scope"] == "imopenlines,user,department"
    assert query["server_domain"] == "localhost:8150"
    assert len(query["code"]) == 32


def test_authorize_shows_an_error_page_when_the_app_is_not_installed(sandbox):
    response = _authorize(sandbox)
    assert response.status_code == 200
    assert "not installed" in response.text


def test_authorize_shows_an_error_page_for_an_unknown_client(sandbox):
    sandbox.install()
    response = requests.get(
        f"{sandbox.portal_url()}/oauth/authorize/",
        params={"client_id": "nope"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 200
    assert "Application not found" in response.text


def test_authorization_code_grant_returns_the_documented_fields(sandbox):
    sandbox.install()
    response = _grant(sandbox, grant_type="authorization_code", code=_code(sandbox, user=3))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "scope",
        "domain",
        "server_endpoint",
        "client_endpoint",
        "member_id",
        "user_id",
        "status",
    }
    assert body["expires_in"] == 3600
    assert body["domain"] == "localhost:8150"
    assert body["server_endpoint"] == "http://localhost:8150/rest/"
    assert body["client_endpoint"] == f"{sandbox.portal_url(1)}/rest/"
    assert body["member_id"] == sandbox.member_id(1)
    assert body["user_id"] == 3
    assert body["status"] == "L"
    me = sandbox.call("user.current", token=body["access_token"]).json()["result"]
    assert me["ID"] == "3"


def test_authorization_code_is_single_use(sandbox):
    sandbox.install()
    code = _code(sandbox)
    assert _grant(sandbox, grant_type="authorization_code", code=code).status_code == 200
    again = _grant(sandbox, grant_type="authorization_code", code=code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_authorization_code_lives_thirty_seconds(sandbox):
    sandbox.install()
    fresh, stale = _code(sandbox), _code(sandbox)
    sandbox.advance(29)
    assert _grant(sandbox, grant_type="authorization_code", code=fresh).status_code == 200
    sandbox.advance(2)
    expired = _grant(sandbox, grant_type="authorization_code", code=stale)
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


def test_refresh_rotates_the_pair_and_keeps_the_user(sandbox):
    first = sandbox.tokens(user=4)
    response = _grant(sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["user_id"] == 4
    assert sandbox.call("profile", token=second["access_token"]).json()["result"]["ID"] == "4"


def test_reusing_a_rotated_refresh_token_is_invalid_grant(sandbox):
    first = sandbox.tokens()
    assert _grant(sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"]).ok
    reuse = _grant(sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}


def test_refresh_by_post_form_also_works(sandbox):
    first = sandbox.tokens()
    response = _grant(
        sandbox, method="post", grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


def test_refresh_token_expires_after_180_days(sandbox):
    first = sandbox.tokens()
    sandbox.advance(180 * 24 * 3600 + 1)
    response = _grant(sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client_401(sandbox):
    first = sandbox.tokens()
    response = requests.get(
        sandbox.token_url,
        params={
            "grant_type": "refresh_token",
            "client_id": settings.B24_CLIENT_ID,
            "client_secret": "wrong",
            "refresh_token": first["refresh_token"],
        },
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_missing_parameters_are_invalid_request_400(sandbox):
    response = requests.get(sandbox.token_url, params={"client_id": "x"}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    response = _grant(sandbox, grant_type="refresh_token")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_payment_required_blocks_new_tokens_with_402(sandbox):
    first = sandbox.tokens()
    sandbox.control(portal=1, payment_required=True)
    response = _grant(sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert response.status_code == 402
    assert response.json()["error"] == "PAYMENT_REQUIRED"


def test_access_token_expires_after_the_configured_ttl(sandbox):
    sandbox.control(token_ttl=60)
    token = sandbox.token()
    sandbox.advance(59)
    assert sandbox.call("profile", token=token).status_code == 200
    sandbox.advance(1)
    response = sandbox.call("profile", token=token)
    assert response.status_code == 401
    assert response.json()["error"] == "expired_token"


def test_uninstall_revokes_every_token_of_the_portal(sandbox):
    pair = sandbox.tokens()
    other = sandbox.tokens(portal=2)
    sandbox.control(portal=1, action="uninstall")
    response = sandbox.call("profile", token=pair["access_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    refresh = _grant(sandbox, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert sandbox.call("profile", 2, token=other["access_token"]).status_code == 200


def test_app_info_at_the_server_endpoint_reports_the_tokens_portal(sandbox):
    token = sandbox.token(portal=2)
    response = requests.post(f"{sandbox.server_endpoint}app.info", data={"auth": token}, timeout=5)
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["INSTALLED"] is True
    assert result["STATUS"] == "L"
    assert isinstance(result["VERSION"], int)
    assert "operating" in response.json()["time"]
    other = requests.post(f"{sandbox.server_endpoint}user.get", data={"auth": token}, timeout=5)
    assert other.status_code == 404
    assert other.json()["error"] == "ERROR_METHOD_NOT_FOUND"
