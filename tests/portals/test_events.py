from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from b24app.portals.audit import audit_record
from b24app.portals.models import AuditEntry, Portal
from b24app.portals.services import _hash_secret
from tests.fakes import OAUTH, FakeBitrix
from tests.portals.conftest import DOMAIN, MEMBER_ID

pytestmark = pytest.mark.django_db
SECRET = "ec1b0000secret"


def event_form(
    event: str,
    *,
    secret: str = SECRET,
    data: dict[str, str] | None = None,
    tokens: tuple[str, str] | None = None,
    ts: str = "1700000000",
) -> dict[str, str]:
    form = {
        "event": event,
        "ts": ts,
        "auth[domain]": DOMAIN,
        "auth[member_id]": MEMBER_ID,
        "auth[application_token]": secret,
        "auth[server_endpoint]": f"{OAUTH}/rest/",
        "auth[client_endpoint]": f"https://{DOMAIN}/rest/",
    }
    if tokens:
        form.update(
            {
                "auth[access_token]": tokens[0],
                "auth[refresh_token]": tokens[1],
                "auth[expires_in]": "3600",
                "auth[user_id]": "1",
                "auth[status]": "L",
            }
        )
    for key, value in (data or {}).items():
        form[f"data[{key}]"] = value
    return form


@pytest.fixture
def installed(make_portal: Callable[..., Portal]) -> Portal:
    return make_portal(application_token_hash=_hash_secret(SECRET))


def test_uninstall_with_the_right_secret_erases_tokens(client: Client, installed: Portal):
    response = client.post("/b24/events/", event_form("ONAPPUNINSTALL", data={"CLEAN": "0"}))

    assert response.status_code == 200
    portal = Portal.objects.get()
    assert portal.status == Portal.Status.UNINSTALLED
    assert portal.access_token == "" and portal.refresh_token == ""
    assert portal.expires_at is None


def test_uninstall_with_a_wrong_secret_is_refused_and_changes_nothing(
    client: Client, installed: Portal, caplog: Any
):
    response = client.post("/b24/events/", event_form("ONAPPUNINSTALL", secret="forged"))

    assert response.status_code == 403
    portal = Portal.objects.get()
    assert portal.status == Portal.Status.ACTIVE
    assert portal.access_token == installed.access_token
    assert "refused" in caplog.text
    assert "forged" not in caplog.text


def test_uninstall_for_an_unknown_portal_is_refused(client: Client, db: Any):
    assert client.post("/b24/events/", event_form("ONAPPUNINSTALL")).status_code == 403


def test_clean_uninstall_deletes_the_portals_audit_log(client: Client, installed: Portal):
    audit_record(portal=installed, action="settings.portal", actor_user_id=1, actor_name="Anna")

    response = client.post("/b24/events/", event_form("ONAPPUNINSTALL", data={"CLEAN": "1"}))

    assert response.json() == {"result": "uninstalled"}
    assert not AuditEntry.objects.exists()
    assert Portal.objects.get().status == Portal.Status.UNINSTALLED


def test_uninstall_without_the_clean_flag_keeps_the_audit_log_without_names(
    client: Client, installed: Portal
):
    audit_record(portal=installed, action="settings.portal", actor_user_id=1, actor_name="Anna")

    client.post("/b24/events/", event_form("ONAPPUNINSTALL", data={"CLEAN": "0"}))

    entries = AuditEntry.objects.order_by("created_at", "pk")
    assert [e.action for e in entries] == ["settings.portal", "portal.uninstall"]
    assert {e.actor_name for e in entries} == {""}
    assert entries[0].actor_user_id == 1


def test_the_same_uninstall_delivered_twice_changes_nothing_the_second_time(
    client: Client, installed: Portal
):
    form = event_form("ONAPPUNINSTALL", data={"CLEAN": "1"})
    assert client.post("/b24/events/", form).json() == {"result": "uninstalled"}

    again = client.post("/b24/events/", form)

    assert again.status_code == 200
    assert again.json() == {"result": "duplicate"}


def test_install_event_for_an_installed_portal_is_confirmed(
    client: Client, installed: Portal, fake_bitrix: FakeBitrix
):
    tokens = fake_bitrix.issue(MEMBER_ID)
    response = client.post(
        "/b24/events/",
        event_form("ONAPPINSTALL", tokens=tokens, data={"VERSION": "1", "INSTALLED": "Y"}),
    )

    assert response.json() == {"result": "confirmed"}
    assert fake_bitrix.refresh_count == 0


def test_update_event_replaces_the_application_token_after_checking_its_tokens(
    client: Client, installed: Portal, fake_bitrix: FakeBitrix
):
    fake_bitrix.installed = True
    tokens = fake_bitrix.issue(MEMBER_ID)
    form = event_form(
        "ONAPPUPDATE",
        secret="new-secret",
        tokens=tokens,
        data={"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"},
    )

    response = client.post("/b24/events/", form)

    assert response.json() == {"result": "updated"}
    portal = Portal.objects.get()
    assert portal.application_token_hash == _hash_secret("new-secret")
    assert portal.app_version == "2"
    assert client.post("/b24/events/", event_form("ONAPPUNINSTALL")).status_code == 403


def test_update_event_with_forged_tokens_is_refused(client: Client, installed: Portal):
    form = event_form("ONAPPUPDATE", secret="new-secret", tokens=("forged", "forged"))

    response = client.post("/b24/events/", form)

    assert response.status_code == 403
    assert Portal.objects.get().application_token_hash == _hash_secret(SECRET)


def test_install_event_creates_a_portal_when_the_install_post_never_came(
    client: Client, fake_bitrix: FakeBitrix
):
    fake_bitrix.installed = True
    tokens = fake_bitrix.issue(MEMBER_ID)

    response = client.post("/b24/events/", event_form("ONAPPINSTALL", tokens=tokens))

    assert response.json() == {"result": "installed"}
    assert Portal.objects.get().domain == DOMAIN


def test_install_event_is_refused_while_app_info_says_the_app_is_not_installed(
    client: Client, fake_bitrix: FakeBitrix
):
    # Events come only after installFinish, when app.info reports INSTALLED=true (spec §1.3).
    fake_bitrix.installed = False
    tokens = fake_bitrix.issue(MEMBER_ID)

    response = client.post("/b24/events/", event_form("ONAPPINSTALL", tokens=tokens))

    assert response.status_code == 403
    assert response.json()["error"] == "NOT_INSTALLED"
    assert not Portal.objects.exists()


def test_update_event_is_refused_while_app_info_says_the_app_is_not_installed(
    client: Client, installed: Portal, fake_bitrix: FakeBitrix
):
    fake_bitrix.installed = False
    form = event_form(
        "ONAPPUPDATE",
        secret="new-secret",
        tokens=fake_bitrix.issue(MEMBER_ID),
        data={"VERSION": "2"},
    )

    response = client.post("/b24/events/", form)

    assert response.status_code == 403
    portal = Portal.objects.get()
    assert portal.application_token_hash == _hash_secret(SECRET)
    assert portal.app_version == ""


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"event": "ONAPPUNINSTALL"},
        {"event": "ONSOMETHINGELSE", "auth[member_id]": MEMBER_ID, "auth[application_token]": "x"},
        {"event": "ONAPPUPDATE", "auth[member_id]": MEMBER_ID, "auth[application_token]": "x"},
    ],
)
def test_malformed_events_get_a_400(client: Client, db: Any, form: dict[str, str]):
    response = client.post("/b24/events/", form)

    assert response.status_code == 400
    assert "error" in response.json()
