"""A campaign end to end: created in the app frame, resolved and sent by a real Celery worker.

Chromium drives the sandbox portal page framing the live app; a `celery -A b24app worker`
subprocess (tests/plugins/worker.py) finds the recipients and sends, over HTTP, to the sandbox.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import save_screenshot
from tests.browser.test_composer import open_composer
from tests.plugins.sandbox import SandboxHelper
from tests.plugins.worker import WorkerControl

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.sandbox,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

# Sandbox users (b24app/sandbox/directory.py fixes 1-7, the rest come from a seed): first names of
# the active ones, and 6, who left the company (inactive).
ACTIVE = {3: "John", 5: "Emily", 8: "Susan", 9: "Michael", 12: "Samuel"}
INACTIVE = 6
# Every REST request to the portal takes this long while the campaign runs, so the page's
# 2-second polling sees the batch in flight before it sees the campaign completed.
SEND_LATENCY_MS = 4000


@pytest.fixture
def worker(
    celery_worker: WorkerControl, portal_site: SandboxHelper, settings: Any
) -> WorkerControl:
    """The worker subprocess, configured like the live app: it reads its settings from env."""
    celery_worker.base_env.update(
        B24_SANDBOX="True",
        B24_SANDBOX_HOSTS=",".join(settings.B24_SANDBOX_HOSTS),
        B24_OAUTH_HOSTS=",".join(settings.B24_OAUTH_HOSTS),
        B24_PORTAL_HOSTS=",".join(settings.B24_PORTAL_HOSTS),
        B24_APP_URL=settings.B24_APP_URL,
        B24_CLIENT_ID=settings.B24_CLIENT_ID,
        B24_CLIENT_SECRET=settings.B24_CLIENT_SECRET,
    )
    # Not waited for here: it gets ready while the browser installs the app.
    return celery_worker.start(concurrency=2, wait=False)


def test_a_campaign_shows_live_progress_and_every_recipient_gets_one_message(
    page: Page, portal_site: SandboxHelper, worker: WorkerControl
):
    app = open_composer(page, portal_site)
    app.locator(".b24-tabs button", has_text="Campaigns").click()
    app.locator("#app-page .b24-empty", has_text="No campaign yet.").wait_for()
    app.get_by_role("button", name="New campaign").last.click()

    form = app.locator("#campaign-form")
    form.locator("#id_name").fill("Release 2.4")
    form.locator("#id_line").select_option(index=1)  # the line just joined
    form.locator("#id_message").fill("Hello {NAME}, release 2.4 is out.")
    assert form.locator("[name=audience][value=users]").is_checked()
    user_ids = sorted([*ACTIVE, INACTIVE])
    form.locator("#id_user_ids").fill(", ".join(str(i) for i in user_ids))
    worker.wait_ready()
    form.locator("button[type=submit]", has_text="Find recipients").click()

    # The worker finds the recipients; the page polls until the summary replaces the spinner.
    app.get_by_text("Campaign saved. Its recipients are being found.").wait_for()
    state = app.locator("#state")
    state.locator("[data-status=ready]").wait_for(timeout=20_000)
    assert state.locator("[data-count=will_receive]").inner_text() == str(len(ACTIVE))
    assert state.locator("#summary dt:has-text('inactive') + dd").inner_text() == "1"
    state.locator("summary", has_text="Who is skipped").click()
    assert "Олег Уволенный" in state.locator("details table").inner_text()
    # The preview, drawn before anyone was found, fills in by itself with the poll that saw the
    # recipients found: the message as the first recipient receives it, nothing clicked.
    preview = app.locator("#preview")
    preview.get_by_text("John Smith").wait_for(timeout=5_000)
    assert preview.locator("#preview-user").input_value() == "3"
    assert preview.locator("#preview-text").inner_text().strip() == (
        "Hello John, release 2.4 is out."
    )
    # ... and as one chosen recipient will read it.
    preview.locator("#preview-user").fill("8")
    preview.get_by_role("button", name="Show").click()
    preview.get_by_text("Susan Cooper").wait_for()
    assert preview.locator("#preview-text").inner_text().strip() == (
        "Hello Susan, release 2.4 is out."
    )

    portal_site.control(portal=1, latency_ms=SEND_LATENCY_MS)
    state.locator("button[data-action=start]").click()
    state.locator("[data-status=running]").wait_for()

    # Live: a later poll shows the batch on the wire, the inactive user already settled.
    counts = state.locator("#counts")
    counts.locator("tr[data-state=sending] td", has_text=str(len(ACTIVE))).wait_for()
    assert state.locator("[data-status=running]").is_visible()
    assert counts.locator("tr[data-state=skipped] td").inner_text() == "1"
    assert counts.locator("tr[data-state=sent] td").inner_text() == "0"
    total = len(user_ids)
    progress = state.locator("#progress")
    assert progress.locator(".ui-progressbar-text-before").inner_text() == f"1 of {total}"
    assert state.locator("button[data-action=pause]").is_visible()
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "campaign")

    # ... and a later one the campaign completed, with nothing left to poll for.
    state.locator("[data-status=completed]").wait_for(timeout=15_000)
    assert progress.locator(".ui-progressbar-text-before").inner_text() == f"{total} of {total}"
    assert progress.locator(".ui-progressbar-text-after").inner_text() == "100%"
    shown = {
        row.get_attribute("data-state"): int(row.locator("td").inner_text())
        for row in counts.locator("tr").all()
    }
    assert shown == {
        "queued": 0,
        "sending": 0,
        "sent": len(ACTIVE),
        "limited": 0,
        "rejected": 0,
        "unknown": 0,
        "skipped": 1,
    }
    assert state.get_attribute("hx-trigger") is None
    assert state.locator("button[data-action=pause]").count() == 0

    # The report names each recipient's outcome.
    state.get_by_role("button", name="Report").click()
    report = app.locator("#report-table")
    report.wait_for()
    assert report.locator("tr[data-state=sent]").count() == len(ACTIVE)
    [skipped] = report.locator("tr[data-state=skipped]").all()
    assert "Олег Уволенный" in skipped.inner_text()

    # The sandbox inbox: exactly one message per active recipient, personalised, no one else.
    delivered = portal_site.deliveries(member_id=portal_site.member_id(1))
    assert Counter(int(d["USER_ID"]) for d in delivered) == dict.fromkeys(ACTIVE, 1)
    for message in delivered:
        first_name = ACTIVE[int(message["USER_ID"])]
        assert message["MESSAGE"] == f"Hello {first_name}, release 2.4 is out."


def test_after_moving_to_new_campaign_inside_the_app_only_the_chosen_kinds_inputs_show(
    page: Page, portal_site: SandboxHelper
):
    # Entered at the composer: the campaign pages come in by htmx, only #app-page swapped, so
    # nothing of new.html's own <head> is there; the rule lives in a stylesheet of every page.
    app = open_composer(page, portal_site)
    app.locator(".b24-tabs button", has_text="Campaigns").click()
    app.get_by_role("button", name="New campaign").last.click()
    form = app.locator("#campaign-form")
    form.wait_for()

    fields = {
        "users": ["user_ids"],
        "departments": ["department_ids", "subdepartments"],
        "all": ["include_extranet", "include_email"],
        "csv": ["csv_file"],
    }
    every = [name for names in fields.values() for name in names]
    for kind in ["users", "departments", "all", "csv", "users"]:
        form.locator(f"[name=audience][value={kind}]").check()
        shown = {name for name in every if form.locator(f"#field-{name}").is_visible()}
        assert shown == set(fields[kind]), kind
