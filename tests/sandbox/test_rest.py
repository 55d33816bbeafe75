"""REST conventions of a sandbox portal: auth placement, bodies, envelope, errors (spec §3, §8)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.sandbox


def test_token_is_accepted_as_auth_in_the_query_string(sandbox):
    token = sandbox.token()
    response = requests.get(sandbox.rest_url("profile"), params={"auth": token}, timeout=5)
    assert response.status_code == 200
    assert response.json()["result"]["ID"] == "1"


def test_token_is_accepted_as_auth_in_a_form_body(sandbox):
    response = requests.post(sandbox.rest_url("profile"), data={"auth": sandbox.token()}, timeout=5)
    assert response.status_code == 200


def test_token_is_accepted_as_access_token(sandbox):
    response = requests.post(
        sandbox.rest_url("profile"), data={"access_token": sandbox.token()}, timeout=5
    )
    assert response.status_code == 200


def test_token_is_accepted_as_a_bearer_header(sandbox):
    response = requests.post(
        sandbox.rest_url("profile"),
        headers={"Authorization": f"Bearer {sandbox.token()}"},
        timeout=5,
    )
    assert response.status_code == 200


def test_token_is_accepted_in_a_json_body(sandbox):
    response = requests.post(sandbox.rest_url("profile"), json={"auth": sandbox.token()}, timeout=5)
    assert response.status_code == 200


def test_json_suffix_and_upper_case_method_names_work(sandbox):
    token = sandbox.token()
    for method in ("profile.json", "PROFILE", "Profile.JSON", "user.CURRENT"):
        response = requests.post(sandbox.rest_url(method), data={"auth": token}, timeout=5)
        assert response.status_code == 200, method


def test_success_envelope_has_result_and_the_full_time_block(sandbox):
    response = sandbox.call("profile")
    body = response.json()
    assert set(body) == {"result", "time"}
    assert set(body["time"]) == {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    }
    assert isinstance(body["time"]["operating_reset_at"], int)
    assert body["time"]["operating"] == pytest.approx(0.005)
    assert body["time"]["date_start"].endswith("+00:00")


def test_no_token_is_no_auth_found_401(sandbox):
    response = requests.post(sandbox.rest_url("profile"), timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "error": "NO_AUTH_FOUND",
        "error_description": "Wrong authorization data",
    }


def test_unknown_token_is_invalid_token_401(sandbox):
    response = sandbox.call("profile", token="x" * 32)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_token_of_another_portal_is_invalid_token(sandbox):
    response = sandbox.call("profile", 1, token=sandbox.token(portal=2))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_forced_expiry_gives_expired_token_401(sandbox):
    token = sandbox.token()
    reply = sandbox.control(portal=1, expire_tokens=True)
    assert reply["expired"] >= 1
    response = sandbox.call("profile", token=token)
    assert response.status_code == 401
    assert response.json() == {
        "error": "expired_token",
        "error_description": "The access token provided has expired",
    }
    assert sandbox.call("profile").status_code == 200  # a new token works again


def test_missing_scope_is_insufficient_scope_401(sandbox):
    sandbox.control(portal=1, scope="imopenlines")
    token = sandbox.token()
    response = sandbox.call("user.get", token=token)
    assert response.status_code == 401
    assert response.json()["error"] == "insufficient_scope"
    assert sandbox.call("department.get", token=token).status_code == 401
    assert sandbox.call("profile", token=token).status_code == 200  # basic needs no scope


def test_unknown_method_is_error_method_not_found_404(sandbox):
    response = sandbox.call("crm.deal.list")
    assert response.status_code == 404
    assert response.json() == {
        "error": "ERROR_METHOD_NOT_FOUND",
        "error_description": "Method not found!",
    }


def test_deleted_portal_answers_portal_deleted_403(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, portal_deleted=True)
    response = sandbox.call("profile", token=token)
    assert response.status_code == 403
    assert response.json() == {"error": "PORTAL_DELETED", "error_description": "Portal was deleted"}
    assert sandbox.call("profile", 2).status_code == 200


def test_payment_required_answers_402_on_rest(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, payment_required=True)
    response = sandbox.call("profile", token=token)
    assert response.status_code == 402
    assert response.json()["error"] == "PAYMENT_REQUIRED"


def test_cors_headers_for_the_app_origin_only(sandbox):
    preflight = requests.options(
        sandbox.rest_url("profile"),
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8000"
    response = requests.post(
        sandbox.rest_url("profile"),
        data={"auth": sandbox.token()},
        headers={"Origin": "http://127.0.0.1:8000"},
        timeout=5,
    )
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8000"
    foreign = requests.post(
        sandbox.rest_url("profile"), headers={"Origin": "http://evil.test"}, timeout=5
    )
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_app_info_is_not_installed_until_install_finish(sandbox):
    begun = sandbox.control(portal=1, action="begin_install")
    token = begun["form"]["fields"]["AUTH_ID"]
    info = requests.post(f"{sandbox.server_endpoint}app.info", data={"auth": token}, timeout=5)
    assert info.json()["result"]["INSTALLED"] is False
    sandbox.control(portal=1, action="install_finish")
    info = requests.post(f"{sandbox.server_endpoint}app.info", data={"auth": token}, timeout=5)
    assert info.json()["result"]["INSTALLED"] is True
    assert sandbox.call("app.info", token=token).json()["result"]["INSTALLED"] is True


def test_profile_reports_admin_flag(sandbox):
    assert sandbox.call("profile", user=1).json()["result"]["ADMIN"] is True
    assert sandbox.call("profile", user=3).json()["result"]["ADMIN"] is False


def test_control_api_refuses_unknown_settings(sandbox):
    response = requests.post(f"{sandbox.hub_url}/_sandbox/control", json={"bogus": 1}, timeout=5)
    assert response.status_code == 400
    assert "bogus" in response.json()["error"]
