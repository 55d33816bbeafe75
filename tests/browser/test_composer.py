"""The composer end to end: Chromium, the sandbox portal framing the live app, real sends."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import save_screenshot
from tests.plugins.sandbox import SandboxHelper

if TYPE_CHECKING:
    from playwright.sync_api import FrameLocator, Page

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

JOHN = 3  # "John Smith" in the sandbox directory


def open_composer(page: Page, site: SandboxHelper) -> FrameLocator:
    """Install the app from the portal page as its admin, then join the sandbox's line."""
    page.goto(site.portal_url(1) + "/")
    page.click("form[action='/_sandbox/portal/install'] button")
    app = page.frame_locator("#b24-app-frame")
    app.locator("#composer").wait_for()
    app.locator("#id_line_code").fill(site.LINE_CODE)
    app.locator("#id_line_name").fill("Support")
    app.locator("button[name=add_line]").click()
    app.locator("[data-join-status=joined]").wait_for()
    return app


def test_a_message_with_an_attachment_and_a_keyboard_reaches_the_sandbox_inbox(
    page: Page, portal_site: SandboxHelper
):
    app = open_composer(page, portal_site)

    # The recipient comes from the portal's own user selector (a dialog of the parent page).
    app.locator("[data-select-user]").click()
    page.locator("#b24-user-picker li", has_text="John Smith").first.click()
    app.locator("[data-recipient-chip]", has_text="John Smith").wait_for()
    assert app.locator("[data-ledger=free]").is_visible()

    # Text with the toolbar: bold the selected word.
    message = app.locator("#id_message")
    message.fill("Hello John, release 2.4 is out.")
    message.evaluate("area => area.setSelectionRange(6, 10)")
    app.locator("[data-bb=b]").click()
    assert message.input_value() == "Hello [b]John[/b], release 2.4 is out."

    # An attachment: a link block and a grid with one cell.
    app.locator("button[name=add_block][value=LINK]").click()
    app.locator("#id_attach-0-link").fill("https://example.com/changelog")
    app.locator("#id_attach-0-name").fill("Changelog")
    app.locator("button[name=add_block][value=GRID]").click()
    app.locator("#id_attach-1-item-0-name").fill("Version")
    app.locator("#id_attach-1-item-0-value").fill("2.4")

    # A keyboard: one link button.
    app.locator("button[name=add_button]").click()
    app.locator("#id_kb-0-text").fill("Open site")
    app.locator("#id_kb-0-link").fill("https://example.com")

    preview = app.locator("#preview")
    preview.locator(".b24-chat-button", has_text="Open site").wait_for()
    assert preview.locator(".b24-chat-message__text b").inner_text() == "John"
    assert preview.locator("a", has_text="Changelog").get_attribute("href") == (
        "https://example.com/changelog"
    )
    assert re.fullmatch(
        r"ATTACH \d+\.\d of 30\.0 KB",
        preview.locator("[data-meter=ATTACH] .ui-progressbar-text-before").inner_text(),
    )
    # Removing a block refreshes the preview with the builder as it is after the action.
    app.locator("button[name=add_block][value=MESSAGE]").click()
    app.locator("#id_attach-2-text").fill("Temporary paragraph")
    preview.get_by_text("Temporary paragraph").wait_for()
    app.locator("button[name=remove_block_2]").click()
    preview.get_by_text("Temporary paragraph").wait_for(state="detached")

    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "composer")
    app.locator("label", has_text="Mobile").click()
    app.locator("#preview .b24-chat--mobile").wait_for()

    app.locator("#send-button").click()
    app.locator(".b24-toast", has_text="Message sent to John Smith.").wait_for()
    assert message.input_value() == ""

    [delivered] = portal_site.deliveries(user_id=JOHN)
    assert delivered["MESSAGE"] == "Hello [b]John[/b], release 2.4 is out."
    assert delivered["ATTACH"]["BLOCKS"][0]["LINK"][0]["NAME"] == "Changelog"
    assert delivered["KEYBOARD"]["BUTTONS"][0]["TEXT"] == "Open site"

    page.goto(portal_site.portal_url(1) + f"/_sandbox/inbox/{JOHN}")
    chat = page.locator(".b24-chat")
    save_screenshot(page, "inbox")
    assert chat.locator("b", has_text="John").count() == 1
    assert chat.locator("a", has_text="Changelog").count() == 1
    assert chat.locator(".b24-chat-button", has_text="Open site").count() == 1


def test_a_weekly_limit_bitrix_reports_is_shown_at_the_recipient(
    page: Page, portal_site: SandboxHelper
):
    app = open_composer(page, portal_site)
    # Someone messaged John from this line outside the app: only Bitrix24 knows.
    earlier = portal_site.call(
        "imopenlines.network.message.add",
        json={"CODE": portal_site.LINE_CODE, "USER_ID": JOHN, "MESSAGE": "Sent elsewhere"},
    )
    assert earlier.status_code == 200, earlier.text

    app.locator("input[name=recipient_q]").fill("John Sm")
    app.locator("#recipient-results button", has_text="John Smith").click()
    app.locator("[data-recipient-chip]", has_text="John Smith").wait_for()
    app.locator("#id_message").fill("A second message this week")
    app.locator("#send-button").click()

    error = app.locator('#recipient [data-code="USER_MESSAGE_LIMIT"]')
    error.wait_for()
    assert "can be messaged again from" in error.inner_text()
    assert app.locator("#recipient [data-ledger=blocked]").is_visible()
    assert app.locator("#id_message").input_value() == "A second message this week"
    assert len(portal_site.deliveries(user_id=JOHN)) == 1
