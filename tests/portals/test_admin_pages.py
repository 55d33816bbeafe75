from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from b24app.portals import frame
from b24app.portals.audit import audit_record
from b24app.portals.models import AuditEntry, Portal

pytestmark = pytest.mark.django_db


def headers(portal: Portal, *, admin: bool) -> dict[str, str]:
    token = frame.issue_token(
        portal=portal, user_id=1 if admin else 7, admin=admin, language="en", user_name="Anna Admin"
    )
    return {"X-Frame-Token": token, "HX-Request": "true"}


@pytest.mark.parametrize("url", ["/app/admin/settings/", "/app/admin/audit/"])
def test_admin_pages_refuse_managers(client: Client, make_portal: Callable[..., Portal], url: str):
    portal = make_portal()

    response = client.get(url, headers=headers(portal, admin=False))

    assert response.status_code == 403


def test_an_admin_switches_the_portal_to_the_enterprise_plan(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()

    response = client.post(
        "/app/admin/settings/",
        {"plan": "enterprise", "nfr": "on"},
        headers=headers(portal, admin=True),
    )

    assert response.status_code == 200
    assert "Settings saved" in response.content.decode()
    portal.refresh_from_db()
    assert (portal.rate, portal.burst, portal.nfr) == (5.0, 250, True)
    entry = AuditEntry.objects.get(action="settings.portal")
    assert entry.actor_user_id == 1
    assert entry.details["after"] == {"nfr": True, "rate": 5.0, "burst": 250}


def test_custom_limits_need_both_numbers_and_errors_show_inline(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()

    response = client.post(
        "/app/admin/settings/", {"plan": "custom", "rate": "3"}, headers=headers(portal, admin=True)
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="b24-field-error"' in html and "Required for custom limits" in html
    portal.refresh_from_db()
    assert portal.rate is None


def test_the_audit_log_lists_only_this_portals_entries(
    client: Client, make_portal: Callable[..., Portal]
):
    mine = make_portal()
    other = make_portal(member_id="e" * 32, domain="other.bitrix24.com")
    audit_record(portal=mine, action="message.single", actor_name="Anna", target="user 3")
    audit_record(portal=other, action="message.single", actor_name="Mallory", target="user 9")

    response = client.get("/app/admin/audit/", headers=headers(mine, admin=True))

    html = response.content.decode()
    assert "Anna" in html and "user 3" in html
    assert "Mallory" not in html


def test_the_status_page_shows_token_health_and_loads_its_details(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal()

    response = client.get("/app/admin/status/", headers=headers(portal, admin=True))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Connected" in html and "Access token valid until" in html
    assert "/app/campaigns/status-details/" in html


def test_the_status_page_explains_how_to_reconnect_a_failed_portal(
    client: Client, make_portal: Callable[..., Portal]
):
    portal = make_portal(status=Portal.Status.AUTH_FAILED, status_reason="invalid_grant")

    html = client.get("/app/admin/status/", headers=headers(portal, admin=True)).content.decode()

    assert "invalid_grant" in html and "open the app again" in html
