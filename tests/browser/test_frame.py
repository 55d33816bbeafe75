"""The frame bridge against the sandbox's parent side (issue 6), and failures shown in the page.

The sandbox's portal page (static/sandbox/portal.js) plays Bitrix24's side of the postMessage
protocol: it resizes the iframe on `resizeWindow`, answers `refreshAuth` with a fresh AUTH_ID and
reloads the app page on `reloadWindow`. These tests watch what reaches that page, not only what the
app's frame believes it sent.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.core import signing
from django.utils import translation

from b24app.campaigns.audience import Audience
from b24app.campaigns.models import Campaign, Recipient
from b24app.messaging.models import Line
from b24app.portals import frame as frame_token
from b24app.portals.models import Portal
from tests.browser.conftest import APP_ID
from tests.plugins.sandbox import SandboxHelper

if TYPE_CHECKING:
    from playwright.sync_api import FrameLocator, Page, Request, Response, Route

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

ADMIN, RU_ADMIN, MANAGER, RU_MANAGER = 1, 2, 3, 4  # sandbox users; 2 and 4 have LANG=ru

# The parent page records every frame command that reaches it, as Bitrix24 would receive it.
RECORD_COMMANDS = """() => {
  window.__frameCommands = [];
  window.addEventListener("message", (event) => {
    if (typeof event.data === "string") { window.__frameCommands.push(event.data); }
  });
}"""


def open_app(page: Page, site: SandboxHelper, *, user: int = ADMIN) -> FrameLocator:
    """Install the app as the portal's admin, then open it from the left menu as `user`."""
    page.goto(site.portal_url(1) + "/")
    page.click("form[action='/_sandbox/portal/install'] button")
    app = page.frame_locator("#b24-app-frame")
    app.locator("#composer").wait_for()
    if user != ADMIN:
        port = site.portal_url(1).rsplit(":", 1)[1]
        page.context.add_cookies(
            [{"name": f"b24sandbox_user_{port}", "value": str(user), "url": site.portal_url(1)}]
        )
        page.goto(site.portal_url(1) + f"/marketplace/app/{APP_ID}/")
        app.locator("#composer").wait_for()
    return app


def join_line(app: FrameLocator, site: SandboxHelper) -> None:
    app.locator("#id_line_code").fill(site.LINE_CODE)
    app.locator("#id_line_name").fill("Support")
    app.locator("button[name=add_line]").click()
    app.locator("[data-join-status=joined]").wait_for()


def set_app_width(page: Page, width: int) -> None:
    """Make the app's frame (not the portal's window) `width` px wide."""
    frame = page.locator("#b24-app-frame")
    box = frame.bounding_box()
    assert box is not None
    window = page.viewport_size
    assert window is not None
    page.set_viewport_size({"width": width + round(window["width"] - box["width"]), "height": 900})
    page.wait_for_timeout(300)
    box = frame.bounding_box()
    assert box is not None and abs(box["width"] - width) <= 2


def frame_height(page: Page) -> float:
    box = page.locator("#b24-app-frame").bounding_box()
    assert box is not None
    return box["height"]


def content_height(app: FrameLocator) -> int:
    return int(app.locator("html").evaluate("el => Math.ceil(el.getBoundingClientRect().height)"))


def sideways_overflow(app: FrameLocator) -> int:
    return int(app.locator("html").evaluate("el => el.scrollWidth - el.clientWidth"))


def text(language: str, message: str) -> str:
    with translation.override(language):
        return translation.gettext(message)


def settle(page: Page) -> None:
    """Wait until the app's frame has no htmx request in flight (nor one about to start)."""
    handle = page.locator("#b24-app-frame").element_handle()
    frame = handle.content_frame() if handle else None
    assert frame is not None
    page.wait_for_timeout(400)  # longer than the preview's 300 ms debounce
    frame.wait_for_function("() => !document.querySelector('.htmx-request')")


def age_token(page: Page, app: FrameLocator, seconds: int) -> str:
    """Replace the page's frame token with the same one issued `seconds` ago, as if the person
    had left the page open that long (the server keeps its real clock and max age)."""
    settle(page)  # a response still on its way would bring a fresh token
    headers = json.loads(app.locator("body").get_attribute("hx-headers") or "{}")
    payload = signing.loads(headers["X-Frame-Token"], salt=frame_token._SALT)

    # Signed with a clock `seconds` behind, by this signer alone: travelling in time for the
    # whole process would also age the tokens the live server issues meanwhile (an autosave
    # can be answered at that very moment), and the test would end the session itself.
    class AgedSigner(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - seconds)

    aged = AgedSigner(salt=frame_token._SALT).sign_object(payload, compress=True)
    app.locator("body").evaluate("(body, token) => window.B24Frame.setToken(token)", aged)
    return aged


# --- the frame bridge --------------------------------------------------------------------------


def test_the_frame_grows_and_shrinks_with_the_builders(page: Page, portal_site: SandboxHelper):
    app = open_app(page, portal_site)
    page.evaluate(RECORD_COMMANDS)
    page.wait_for_timeout(300)
    before = frame_height(page)
    # The whole app is visible: the portal sized the frame to the app's content.
    assert abs(before - content_height(app)) <= 2

    for count in range(4):
        app.locator("button[name=add_block][value=MESSAGE]").click()
        app.locator(".b24m-block").nth(count).wait_for()
    grown = content_height(app)
    assert grown > before + 200
    page.wait_for_function(
        "height => document.getElementById('b24-app-frame').offsetHeight >= height", arg=grown - 2
    )
    assert abs(frame_height(page) - content_height(app)) <= 2
    # What reached the portal is Bitrix's own resizeWindow command, with this app's APP_SID.
    commands = page.evaluate("window.__frameCommands")
    resizes = [c for c in commands if c.startswith("resizeWindow:")]
    assert resizes, commands
    params = json.loads(resizes[-1].split(":", 1)[1].rsplit(":", 2)[0])
    assert params["width"] == "100%"
    assert abs(params["height"] - frame_height(page)) <= 2

    # Removing the blocks gives the space back to the portal page.
    page.on("dialog", lambda dialog: dialog.accept())
    app.locator("button[name=clear_attach]").click()
    app.locator(".b24m-block").first.wait_for(state="detached")
    page.wait_for_function(
        "height => document.getElementById('b24-app-frame').offsetHeight <= height",
        arg=content_height(app) + 2,
    )
    assert frame_height(page) < grown - 200


def test_an_expired_frame_token_is_renewed_through_the_portal_and_the_draft_is_kept(
    page: Page, portal_site: SandboxHelper
):
    app = open_app(page, portal_site)
    message = app.locator("#id_message")
    message.fill("A draft that must survive")
    app.locator("#preview").get_by_text("A draft that must survive").wait_for()

    seen: list[tuple[str, str, int]] = []

    def record(response: Response) -> None:
        request = response.request
        seen.append((request.method, request.url, response.status))

    reentries: list[Request] = []
    page.on("response", record)
    page.on("request", lambda r: reentries.append(r) if r.headers.get("x-frame-reenter") else None)

    age_token(page, app, 31 * 60)  # past B24_FRAME_TOKEN_MAX_AGE (30 minutes)
    app.locator("button[name=add_block][value=LINK]").click()

    # The builder action went through after all, and nothing typed was lost.
    app.locator("#id_attach-0-link").wait_for()
    assert message.input_value() == "A draft that must survive"
    attach = [(status, url) for method, url, status in seen if url.endswith("/messages/attach/")]
    assert [status for status, _ in attach] == [401, 200]
    # The fresh auth came from the portal page (refreshAuth), and the app traded it for a token.
    assert any(url.endswith("/_sandbox/frame/refresh-auth") for _, url, _ in seen)
    assert len(reentries) == 1 and reentries[0].method == "POST"
    # The page goes on with the new token, without another re-entry.
    app.locator("#id_attach-0-link").fill("https://example.com/notes")
    app.locator("button[name=add_block][value=MESSAGE]").click()
    app.locator("#id_attach-1-text").wait_for()
    assert len(reentries) == 1

    # A repeated request is not asked about twice: "Remove all" confirms once, then goes through.
    questions: list[str] = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    age_token(page, app, 31 * 60)
    app.locator("button[name=clear_attach]").click()
    app.locator(".b24m-block").first.wait_for(state="detached")
    assert len(questions) == 1 and len(reentries) == 2
    assert message.input_value() == "A draft that must survive"
    notices = app.locator("#b24-notices")
    assert not notices.locator("[data-notice]").count(), notices.inner_text()


@pytest.mark.parametrize("failure", ["refused", "stale"])
def test_a_session_that_cannot_be_renewed_says_so_and_reloads_the_app(
    page: Page, portal_site: SandboxHelper, failure: str
):
    """The portal's re-entry is refused, or hands out a token that is refused again: either way
    one notice says so (no request loops) and its button has the portal reload the app."""
    app = open_app(page, portal_site)
    app.locator("#id_message").fill("Typed before the session ended")
    aged = ""

    def spoil_reentry(route: Route) -> None:
        if not route.request.headers.get("x-frame-reenter"):
            route.continue_()
        elif failure == "refused":
            route.fulfill(status=403, content_type="text/plain", body="refused")
        else:
            route.fulfill(status=200, json={"frame_token": aged})

    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/attach/") else None)
    page.route("**/b24/app/**", spoil_reentry)
    aged = age_token(page, app, 31 * 60)
    app.locator("button[name=add_block][value=LINK]").click()

    notice = app.locator("#b24-notices [data-notice]")
    notice.wait_for()
    assert notice.get_attribute("role") == "alert"
    assert "Your session in the app has ended" in notice.inner_text()
    settle(page)
    assert len(sent) == (1 if failure == "refused" else 2)
    assert notice.count() == 1
    assert app.locator("#id_message").input_value() == "Typed before the session ended"
    assert app.locator("#id_attach-0-link").count() == 0  # nothing half-done behind the notice
    assert notice.is_visible()

    page.unroute("**/b24/app/**")
    with page.expect_navigation():
        notice.get_by_role("button", name="Reload the app").click()
    app = page.frame_locator("#b24-app-frame")
    app.locator("#composer").wait_for()
    assert app.locator("#b24-notices [data-notice]").count() == 0


# --- failures are shown ------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "language"), [(MANAGER, "en"), (RU_MANAGER, "ru")])
def test_a_manager_without_campaign_rights_sees_why_on_the_campaigns_tab(
    page: Page, portal_site: SandboxHelper, user: int, language: str
):
    app = open_app(page, portal_site, user=user)
    campaigns = text(language, "Campaigns")
    english = (
        "Campaigns are for Bitrix24 administrators, unless an administrator allowed you or your "
        "department in the campaign settings."
    )
    refusal = text(language, english)
    assert (refusal != english) == (language == "ru")

    responses: list[int] = []

    def record(response: Response) -> None:
        if "/app/campaigns/" in response.url:
            responses.append(response.status)

    page.on("response", record)
    app.locator(".b24-tabs button", has_text=campaigns).click()

    alert = app.locator("#app-page [data-refused]")
    alert.wait_for()
    assert alert.inner_text().strip() == refusal
    assert responses == [403]
    # The refusal is a page of the app: the tabs stay, with Campaigns marked as the current one.
    current = app.locator(".b24-tabs button[aria-current=page]")
    assert current.inner_text().strip() == campaigns
    assert app.locator("#composer").count() == 0
    # And the way back works.
    app.locator(".b24-tabs button", has_text=text(language, "New message")).click()
    app.locator("#composer").wait_for()


def test_server_errors_and_lost_connections_show_a_notice_and_keep_the_input(
    page: Page, portal_site: SandboxHelper
):
    app = open_app(page, portal_site, user=RU_ADMIN)
    message = app.locator("#id_message")
    message.fill("Черновик")
    notices = app.locator("#b24-notices [data-notice]")

    page.route(
        "**/app/messages/attach/",
        lambda route: route.fulfill(
            status=500,
            content_type="text/html",
            body="<!doctype html><html><body><h1>Server Error (500)</h1></body></html>",
        ),
    )
    app.locator("button[name=add_block][value=LINK]").click()
    notices.first.wait_for()
    english = "Something went wrong on our side. Nothing was lost: try again in a moment."
    server = text("ru", english)
    assert server != english
    assert server in notices.first.inner_text()
    assert "500" in notices.first.inner_text()
    assert app.get_by_text("Server Error (500)").count() == 0  # the error page is not swapped in
    page.unroute("**/app/messages/attach/")

    page.route("**/app/messages/attach/", lambda route: route.abort("connectionreset"))
    app.locator("button[name=add_block][value=LINK]").click()
    unreachable = text(
        "ru", "The app could not be reached. Nothing was lost: check your connection and try again."
    )
    app.locator("#b24-notices [data-notice]", has_text=unreachable).wait_for()
    page.unroute("**/app/messages/attach/")

    assert message.input_value() == "Черновик"
    assert app.locator("#id_attach-0-link").count() == 0
    # The notice sits beside the button that was used, inside the part of the frame in view.
    button = app.locator("button[name=add_block][value=LINK]").bounding_box()
    shown = notices.last.bounding_box()
    assert button is not None and shown is not None
    assert abs(shown["y"] - (button["y"] + button["height"])) < 120
    # Once the server answers again, the same action works.
    app.locator("button[name=add_block][value=LINK]").click()
    app.locator("#id_attach-0-link").wait_for()


def test_a_request_over_the_size_limit_says_so_in_the_persons_language(
    page: Page, portal_site: SandboxHelper, settings: Any
):
    app = open_app(page, portal_site, user=RU_ADMIN)
    settings.B24_BODY_LIMIT = 20_000
    app.locator("#id_message").fill("Очень длинный текст. " * 1200)
    app.locator("button[name=add_block][value=LINK]").click()

    with translation.override("ru"):
        expected = translation.gettext("The request is too large (the limit is %(size)s KB).") % {
            "size": 20
        }
    assert not expected.startswith("The request")
    app.locator("#b24-notices [data-notice]", has_text=expected).first.wait_for()
    assert "413" in app.locator("#b24-notices [data-notice]").first.inner_text()
    assert app.locator("#id_message").input_value().startswith("Очень длинный текст.")


# --- 600 px: no page scrolls sideways ----------------------------------------------------------


def make_campaign(site: SandboxHelper) -> Campaign:
    portal = Portal.objects.get(member_id=site.member_id(1))
    line = Line.objects.get(portal=portal, code=site.LINE_CODE)
    campaign = Campaign.objects.create(
        portal=portal,
        line=line,
        line_code=line.code,
        name="Release 2.4 for every department of the company, with a long name to wrap",
        author_user_id=ADMIN,
        author_name="Administrator",
        message="Hello {NAME}, release 2.4 is out: https://example.com/a/very/long/link/to/wrap",
        audience=Audience(kind="users", user_ids=(3, 5, 8)).to_json(),
        status=Campaign.Status.READY,
        resolve_done=3,
        resolve_total=3,
    )
    for user_id, name in ((3, "John"), (5, "Emily"), (8, "Susan")):
        Recipient.objects.create(campaign=campaign, user_id=user_id, name=name, last_name="Smith")
    return campaign


def test_no_page_of_the_app_scrolls_sideways_at_600_px(page: Page, portal_site: SandboxHelper):
    app = open_app(page, portal_site)
    join_line(app, portal_site)
    campaign = make_campaign(portal_site)
    set_app_width(page, 600)
    assert sideways_overflow(app) <= 1, "composer"

    def visit(label: str, ready: str) -> None:
        app.locator(".b24-tabs button", has_text=label).click()
        app.locator(ready).first.wait_for()
        page.wait_for_timeout(200)
        assert sideways_overflow(app) <= 1, label

    visit("Campaigns", "#app-page table.b24-table")
    app.locator("#app-page a", has_text=campaign.name).click()
    app.locator("#app-page h1", has_text="Release 2.4").wait_for()
    page.wait_for_timeout(200)
    assert sideways_overflow(app) <= 1, "campaign page"
    app.get_by_role("button", name="New campaign").first.click()
    app.locator("#campaign-form").wait_for()
    assert sideways_overflow(app) <= 1, "new campaign"
    app.get_by_role("button", name="Who may send, exclusions").click()
    app.locator("#app-page button[aria-current=page]", has_text="Who may send").wait_for()
    assert sideways_overflow(app) <= 1, "campaign settings"
    visit("History", "#app-page h1, #app-page h2")
    visit("Status", "#connection-title")
    visit("Settings", "#app-page form.b24-form")
    visit("Audit log", "#app-page table, #app-page .b24-empty")
