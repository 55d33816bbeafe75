"""event.bind/get/unbind; ONAPPINSTALL, ONAPPUNINSTALL and ONAPPUPDATE delivery (spec §1.3-§1.4)."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings

pytestmark = pytest.mark.sandbox


def _bind(sandbox, event, handler, token=None, **extra):
    return sandbox.call("event.bind", token=token, event=event, handler=handler, **extra)


def test_event_bind_get_and_unbind(sandbox):
    token = sandbox.token()
    assert _bind(sandbox, "ONAPPUNINSTALL", "http://127.0.0.1:9/x", token).json()["result"] is True
    bound = sandbox.call("event.get", token=token).json()["result"]
    assert bound == [
        {
            "event": "ONAPPUNINSTALL",
            "handler": "http://127.0.0.1:9/x",
            "auth_type": "0",
            "offline": 0,
        }
    ]
    gone = sandbox.call(
        "event.unbind", token=token, event="onappuninstall", handler="http://127.0.0.1:9/x"
    )
    assert gone.json()["result"] == {"count": 1}
    assert sandbox.call("event.get", token=token).json()["result"] == []


def test_binding_the_same_handler_twice_is_refused(sandbox):
    token = sandbox.token()
    assert _bind(sandbox, "ONAPPINSTALL", "http://127.0.0.1:9/e", token).status_code == 200
    again = _bind(sandbox, "onAppInstall", "http://127.0.0.1:9/e", token)
    assert again.status_code == 400
    assert again.json() == {
        "error": "ERROR_HANDLER_ALREADY_EXIST",
        "error_description": "Handler already exists!",
    }


def test_binding_an_unknown_event_is_refused(sandbox):
    response = _bind(sandbox, "ONNOTHING", "http://127.0.0.1:9/e")
    assert response.status_code == 400
    assert response.json()["error"] == "ERROR_EVENT_NOT_FOUND"


def test_install_flow_delivers_onappinstall_only_after_install_finish(sandbox, event_receiver):
    begun = sandbox.control(portal=1, action="begin_install")
    form = begun["form"]
    token = form["fields"]["AUTH_ID"]
    handler = f"{event_receiver.url}/b24/events/"
    assert _bind(sandbox, "ONAPPINSTALL", handler, token).status_code == 200
    assert event_receiver.wait(1, timeout=0.3) == []  # nothing before installFinish
    finished = sandbox.control(portal=1, action="install_finish")
    assert finished["events_queued"] == 1
    (post,) = event_receiver.wait(1)
    assert post["path"] == "/b24/events/"
    assert post["content_type"] == "application/x-www-form-urlencoded"
    assert "auth%5Baccess_token%5D=" in post["raw"]
    form_data = post["form"]
    assert form_data["event"] == "ONAPPINSTALL"
    assert form_data["data"] == {
        "VERSION": "1",
        "ACTIVE": "Y",
        "INSTALLED": "Y",
        "LANGUAGE_ID": "en",
    }
    assert form_data["ts"].isdigit()
    auth = form_data["auth"]
    assert set(auth) == {
        "access_token",
        "expires",
        "expires_in",
        "scope",
        "domain",
        "server_endpoint",
        "client_endpoint",
        "member_id",
        "user_id",
        "status",
        "refresh_token",
        "application_token",
    }
    assert auth["application_token"] == form["fields"]["APPLICATION_TOKEN"]
    assert auth["domain"] == sandbox.domain(1)
    assert auth["member_id"] == sandbox.member_id(1)
    assert auth["client_endpoint"] == f"{sandbox.portal_url(1)}/rest/"
    assert auth["server_endpoint"] == sandbox.server_endpoint
    assert auth["user_id"] == "1"
    assert auth["expires_in"] == "3600"
    assert sandbox.call("profile", token=auth["access_token"]).status_code == 200
    log = sandbox.events()
    assert log[-1]["status"] == 200 and log[-1]["event"] == "ONAPPINSTALL"


def test_uninstall_sends_no_tokens_and_the_clean_flag(sandbox, event_receiver):
    token = sandbox.token()
    _bind(sandbox, "ONAPPUNINSTALL", f"{event_receiver.url}/u", token)
    app_token = sandbox.control()["state"]["portals"]["1"]["application_token"]
    sandbox.control(portal=1, action="uninstall", clean=True)
    (post,) = event_receiver.wait(1)
    form = post["form"]
    assert form["event"] == "ONAPPUNINSTALL"
    assert form["data"] == {"LANGUAGE_ID": "en", "CLEAN": "1"}
    assert set(form["auth"]) == {
        "domain",
        "server_endpoint",
        "client_endpoint",
        "member_id",
        "application_token",
    }
    assert form["auth"]["application_token"] == app_token
    assert sandbox.call("profile", token=token).json()["error"] == "invalid_token"
    state = sandbox.control()["state"]["portals"]["1"]
    assert state["app_state"] == "none" and state["handlers"] == []


def test_version_bump_sends_onappupdate_with_a_new_application_token(sandbox, event_receiver):
    token = sandbox.token()
    _bind(sandbox, "ONAPPUPDATE", f"{event_receiver.url}/up", token)
    old = sandbox.control()["state"]["portals"]["1"]["application_token"]
    sandbox.control(portal=1, action="bump_version")
    (post,) = event_receiver.wait(1)
    form = post["form"]
    assert form["event"] == "ONAPPUPDATE"
    assert form["data"] == {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"}
    assert form["auth"]["application_token"] != old
    assert form["auth"]["refresh_token"]
    assert sandbox.call("app.info").json()["result"]["VERSION"] == 2


def test_events_go_only_to_handlers_of_that_event(sandbox, event_receiver):
    token = sandbox.token()
    _bind(sandbox, "ONAPPUPDATE", f"{event_receiver.url}/up", token)
    sandbox.control(portal=1, action="uninstall")
    assert event_receiver.wait(1, timeout=0.3) == []


def test_begin_install_form_is_the_exact_install_post(sandbox):
    form = sandbox.control(portal=1, action="begin_install", user=2)["form"]
    assert form["url"].startswith(f"{settings.B24_APP_URL}/b24/install/?")
    assert f"DOMAIN=localhost%3A{8151}" in form["url"]
    assert "PROTOCOL=0" in form["url"] and "LANG=ru" in form["url"]
    assert form["url"].endswith(f"APP_SID={form['app_sid']}")
    assert list(form["fields"]) == [
        "AUTH_ID",
        "AUTH_EXPIRES",
        "REFRESH_ID",
        "SERVER_ENDPOINT",
        "member_id",
        "status",
        "PLACEMENT",
        "APPLICATION_TOKEN",
        "APPLICATION_SCOPE",
    ]
    fields = form["fields"]
    assert fields["AUTH_EXPIRES"] == "3600"
    assert fields["SERVER_ENDPOINT"] == "http://localhost:8150/rest/"
    assert fields["status"] == "L"
    assert fields["PLACEMENT"] == "DEFAULT"
    assert fields["APPLICATION_SCOPE"] == "imopenlines,user,department"
    assert form["target"] == f"localhost:8151|0|{form['app_sid']}"
    assert form["init"]["INSTALL"] is True
    sandbox.control(portal=1, action="install_finish", user=2)
    handler_form = sandbox.control(portal=1, action="frame_form", user=3)["form"]
    assert handler_form["url"].startswith(f"{settings.B24_APP_URL}/b24/app/?")
    assert handler_form["init"]["INSTALL"] is False
    assert handler_form["init"]["IS_ADMIN"] is False


def test_old_portal_mode_omits_the_newer_fields(sandbox):
    sandbox.control(portal=1, old_portal=True)
    form = sandbox.control(portal=1, action="begin_install")["form"]
    assert list(form["fields"]) == [
        "AUTH_ID",
        "AUTH_EXPIRES",
        "REFRESH_ID",
        "member_id",
        "status",
        "PLACEMENT",
    ]


def test_only_admins_can_install(sandbox):
    response = requests.post(
        f"{sandbox.hub_url}/_sandbox/control",
        json={"portal": 1, "action": "begin_install", "user": 3},
        timeout=5,
    )
    assert response.status_code == 400
    assert "administrator" in response.json()["error"]
