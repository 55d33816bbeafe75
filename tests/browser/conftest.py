"""Browser tests: Playwright drives Debian's Chromium against the app and the sandbox portal.

The app runs in pytest-django's `live_server`; the sandbox (tests/plugins/sandbox.py) runs its
hub and portals on 127.0.0.1:8150+, and is pointed at the live server through its control API
(`app_url`), so the sandbox's portal page frames the app exactly as a real Bitrix24 page would.
Tests are marked `browser` (and `sandbox`); they skip with the reason when Chromium or Playwright
is missing, and CI's B24_REQUIRE turns such a skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.plugins.sandbox import SandboxHelper

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def save_screenshot(page: Page, name: str) -> None:
    """Refresh the README's screenshot `name` from what the test is looking at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


APP_ID = 7  # the sandbox's marketplace id of b24app (/marketplace/app/7/)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module (not the session: see the environment note below)."""
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (CI installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[dev]')")
    # Playwright's sync API keeps an asyncio loop running in this thread while it is open, which
    # trips Django's async-safety check on every (synchronous) ORM call and test-database flush
    # made meanwhile; nothing in these tests runs inside that loop. The variable is restored when
    # the module ends, so no later test (or subprocess, e.g. `check --deploy`) inherits it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            headless=True,
            # Containers run as root, where Chromium's own sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def portal_site(sandbox: SandboxHelper, live_server: Any, settings: Any) -> SandboxHelper:
    """The sandbox's portal 1 framing this test's live app (nothing installed yet)."""
    hosts = ["localhost:81??", "127.0.0.1:81??"]
    settings.B24_SANDBOX = True
    settings.B24_SANDBOX_HOSTS = hosts
    settings.B24_OAUTH_HOSTS = hosts
    settings.B24_PORTAL_HOSTS = hosts
    settings.B24_APP_URL = live_server.url
    settings.B24_CLIENT_ID = sandbox.state.client_id
    settings.B24_CLIENT_SECRET = sandbox.state.client_secret
    sandbox.control(app_url=live_server.url)
    return sandbox
