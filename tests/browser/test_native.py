"""The app inside the sandbox portal as different people (issue 6): both languages, an admin
and a manager, 600 and 1400 px wide, in a Chromium that blocks third-party cookies, with the
app and the portal on different sites (127.0.0.1 vs localhost)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.utils import translation

from tests.browser.conftest import APP_ID, CHROMIUM
from tests.plugins.sandbox import SandboxHelper

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def strict_browser() -> Iterator[Browser]:
    """Chromium with third-party cookies blocked (the setting Bitrix24 users increasingly have)."""
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # see tests/browser/conftest.py
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--test-third-party-cookie-phaseout"],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# (sandbox user, language, admin?, viewport width). Users 2 and 4 use Russian (LANG=ru).
PEOPLE = [
    pytest.param(1, "en", True, 1400, id="en-admin-1400"),
    pytest.param(4, "ru", False, 600, id="ru-manager-600"),
    pytest.param(2, "ru", True, 1400, id="ru-admin-1400"),
    pytest.param(3, "en", False, 600, id="en-manager-600"),
]


@pytest.mark.parametrize(("user", "language", "admin", "width"), PEOPLE)
def test_the_app_opens_in_the_portal_for_each_kind_of_person(
    strict_browser: Browser,
    portal_site: SandboxHelper,
    user: int,
    language: str,
    admin: bool,
    width: int,
    settings: Any,
):
    context = strict_browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        # The portal's admin installs the app; then the person opens it from the left menu.
        page.goto(portal_site.portal_url(1) + "/")
        page.click("form[action='/_sandbox/portal/install'] button")
        page.frame_locator("#b24-app-frame").locator("#composer").wait_for()
        context.add_cookies(
            [
                {
                    "name": f"b24sandbox_user_{portal_site.portal_url(1).rsplit(':', 1)[1]}",
                    "value": str(user),
                    "url": portal_site.portal_url(1),
                }
            ]
        )
        page.goto(portal_site.portal_url(1) + f"/marketplace/app/{APP_ID}/")
        app = page.frame_locator("#b24-app-frame")
        app.locator("#composer").wait_for()
        # `width` is the app's own width: widen the window by the portal's menu and margins.
        box = page.locator("#b24-app-frame").bounding_box()
        assert box is not None
        page.set_viewport_size({"width": width + round(width - box["width"]), "height": 900})
        page.wait_for_timeout(300)
        box = page.locator("#b24-app-frame").bounding_box()
        assert box is not None and abs(box["width"] - width) <= 2

        with translation.override(language):
            new_message = translation.gettext("New message")
            status = translation.gettext("Status")
        if language == "ru":
            assert new_message != "New message", "the Russian catalogue lacks 'New message'"
        assert app.locator("html").get_attribute("lang") == language
        assert app.get_by_role("button", name=new_message).first.is_visible()
        assert app.get_by_role("button", name=status, exact=True).count() == (1 if admin else 0)
        # The frame never scrolls sideways, at 600 px either.
        overflow = app.locator("html").evaluate("el => el.scrollWidth - el.clientWidth")
        assert overflow <= 1
        # No cookie of the app's own exists inside the frame: the frame token carries the session.
        assert app.locator("html").evaluate("() => document.cookie") == ""
    finally:
        context.close()
