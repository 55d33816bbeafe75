"""The faux portal in a browser's shoes: pages, the frame form, user switching, frame helpers."""

from __future__ import annotations

import json
import re

import pytest
import requests

pytestmark = pytest.mark.sandbox


def _browser(sandbox, user=1, portal=1):
    session = requests.Session()
    session.cookies.set(f"b24sandbox_user_{8150 + portal}", str(user))
    session.headers["Origin"] = sandbox.portal_url(portal)
    return session


def _frame_form(html):
    match = re.search(
        r'<script id="b24-frame-form" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, "no frame form on the page"
    return json.loads(match.group(1))


def test_hub_index_links_every_portal(sandbox):
    page = requests.get(f"{sandbox.hub_url}/", timeout=5)
    assert page.status_code == 200
    assert sandbox.portal_url(1) in page.text and sandbox.portal_url(2) in page.text
    assert sandbox.LINE_CODE in page.text


def test_portal_home_has_the_chrome_and_the_install_button_for_admins(sandbox):
    admin = _browser(sandbox, user=1).get(f"{sandbox.portal_url()}/", timeout=5).text
    assert 'class="sbx-menu"' in admin and 'class="sbx-top"' in admin
    assert 'action="/_sandbox/portal/install"' in admin
    user = _browser(sandbox, user=3).get(f"{sandbox.portal_url()}/", timeout=5).text
    assert 'action="/_sandbox/portal/install"' not in user


def test_install_button_opens_the_installer_in_a_named_iframe(sandbox):
    browser = _browser(sandbox)
    response = browser.post(f"{sandbox.portal_url()}/_sandbox/portal/install", timeout=5)
    assert response.status_code == 200  # followed the 303 to the app page
    form = _frame_form(response.text)
    assert form["url"].startswith("http://127.0.0.1:8000/b24/install/?DOMAIN=localhost%3A8151")
    assert f'name="localhost:8151|0|{form["app_sid"]}"' in response.text
    assert form["init"]["INSTALL"] is True
    assert "/_sandbox/static/portal.js" in response.text


def test_non_admins_see_the_not_fully_installed_notice_during_install(sandbox):
    _browser(sandbox).post(f"{sandbox.portal_url()}/_sandbox/portal/install", timeout=5)
    page = _browser(sandbox, user=3).get(f"{sandbox.portal_url()}/marketplace/app/7/", timeout=5)
    assert "not fully installed" in page.text
    assert "b24-frame-form" not in page.text


def test_frame_install_finish_then_the_page_opens_the_handler(sandbox):
    browser = _browser(sandbox)
    browser.post(f"{sandbox.portal_url()}/_sandbox/portal/install", timeout=5)
    finished = browser.post(
        f"{sandbox.portal_url()}/_sandbox/frame/install-finish", json={}, timeout=5
    )
    assert finished.json()["ok"] is True
    page = browser.get(f"{sandbox.portal_url()}/marketplace/app/7/", timeout=5)
    form = _frame_form(page.text)
    assert form["url"].startswith("http://127.0.0.1:8000/b24/app/?")
    assert form["init"]["INSTALL"] is False
    user_page = _browser(sandbox, user=4).get(
        f"{sandbox.portal_url()}/marketplace/app/7/", timeout=5
    )
    assert _frame_form(user_page.text)["init"]["LANG"] == "ru"


def test_frame_refresh_auth_gives_a_working_token_for_the_current_user(sandbox):
    sandbox.install()
    fresh = (
        _browser(sandbox, user=5)
        .post(f"{sandbox.portal_url()}/_sandbox/frame/refresh-auth", json={}, timeout=5)
        .json()
    )
    assert set(fresh) == {"AUTH_ID", "REFRESH_ID", "AUTH_EXPIRES"}
    assert sandbox.call("profile", token=fresh["AUTH_ID"]).json()["result"]["ID"] == "5"


def test_frame_helpers_refuse_cross_origin_posts(sandbox):
    sandbox.install()
    browser = _browser(sandbox)
    browser.headers["Origin"] = "http://127.0.0.1:8000"
    response = browser.post(
        f"{sandbox.portal_url()}/_sandbox/frame/refresh-auth", json={}, timeout=5
    )
    assert response.status_code == 404


def test_switch_user_sets_a_per_port_cookie(sandbox):
    browser = _browser(sandbox)
    response = browser.post(
        f"{sandbox.portal_url()}/_sandbox/switch-user",
        data={"user_id": "3", "next": "/company/"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/company/"
    assert "b24sandbox_user_8151=3" in response.headers["Set-Cookie"]


def test_directory_json_lists_active_employees_for_the_picker(sandbox):
    rows = requests.get(f"{sandbox.portal_url()}/_sandbox/directory.json?q=smith", timeout=5).json()
    assert rows and all(
        set(r) >= {"id", "name", "photo", "position", "url", "sub", "sup"} for r in rows
    )
    everyone = requests.get(f"{sandbox.portal_url()}/_sandbox/directory.json", timeout=5).json()
    ids = [r["id"] for r in everyone]
    assert "6" not in ids and "7" not in ids  # inactive and extranet are not offered


def test_uninstall_button_with_clean_checkbox(sandbox):
    sandbox.install()
    browser = _browser(sandbox)
    response = browser.post(
        f"{sandbox.portal_url()}/_sandbox/portal/uninstall", data={"clean": "1"}, timeout=5
    )
    assert response.status_code == 200
    assert sandbox.control()["state"]["portals"]["1"]["app_state"] == "none"


def test_employees_page_and_static_files(sandbox):
    page = requests.get(f"{sandbox.portal_url()}/company/", timeout=5)
    assert page.status_code == 200 and "Departments" in page.text
    for name in ("portal.css", "portal.js"):
        assert requests.get(f"{sandbox.portal_url()}/_sandbox/static/{name}", timeout=5).ok
