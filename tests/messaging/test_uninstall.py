"""Uninstall erases users' personal data in messaging; with the clean flag, all of its data.

Issue 2: uninstall "erases its tokens and users' personal data whatever the clean flag says;
with the clean flag it also deletes templates, campaigns and logs" (CLEAN of ONAPPUNINSTALL,
spec §1.4). The receivers run inside `portals.services.portal_uninstall`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from b24app.campaigns.models import Campaign, Recipient
from b24app.messaging.models import Delivery, Draft, LimitEntry, Line, Template
from b24app.portals import services as portal_services
from b24app.portals.models import Portal
from tests.messaging.conftest import CODE, OTHER_CODE, OTHER_DOMAIN, OTHER_MEMBER_ID

pytestmark = pytest.mark.django_db

USER_BLOCK = {"USER": {"NAME": "Irina O'Brien", "AVATAR": "https://example.com/irina.png"}}


def fill(portal: Portal) -> Line:
    """A line with a delivery, a draft, a template and a ledger row holding personal data."""
    line = Line.objects.create(portal=portal, code=CODE, name="Support")
    Delivery.objects.create(
        portal=portal,
        line=line,
        user_id=9,
        recipient_name="Irina O'Brien",
        author_user_id=7,
        message="Hello Irina, your order is ready",
        attach={"BLOCKS": [USER_BLOCK]},
        keyboard={"BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com/irina"}]},
        status=Delivery.Status.SENT,
    )
    Draft.objects.create(
        portal=portal, user_id=7, data={"user_id": "9", "recipient_name": "Irina O'Brien"}
    )
    Template.objects.create(portal=portal, name="Release", data={"message": "Release 2.4"})
    LimitEntry.objects.create(
        portal=portal, line_code=CODE, user_id=9, sent_at=timezone.now() - timedelta(days=1)
    )
    return line


def uninstall(portal: Portal, *, clean: bool) -> None:
    portal_services.portal_uninstall(portal=portal, clean=clean)


def test_uninstall_forgets_recipients_names_and_what_was_sent_to_them(portal: Portal):
    fill(portal)

    uninstall(portal, clean=False)

    delivery = Delivery.objects.get()
    assert delivery.recipient_name == ""
    assert (delivery.message, delivery.attach, delivery.keyboard) == ("", None, None)
    # Outcomes stay, naming people only by their Bitrix24 user id.
    assert (delivery.status, delivery.user_id, delivery.author_user_id) == ("sent", 9, 7)


def test_uninstall_deletes_drafts(portal: Portal):
    fill(portal)

    uninstall(portal, clean=False)

    assert not Draft.objects.exists()


def test_uninstall_without_the_clean_flag_keeps_templates_lines_and_the_weekly_ledger(
    portal: Portal,
):
    fill(portal)

    uninstall(portal, clean=False)

    assert Template.objects.filter(portal=portal).count() == 1
    assert Line.objects.filter(portal=portal).count() == 1
    # The server's own weekly limit outlives the uninstall (spec §5.7): a reinstall needs it.
    assert LimitEntry.objects.filter(portal=portal, user_id=9).count() == 1


def test_clean_uninstall_deletes_templates_deliveries_drafts_lines_and_the_ledger(
    portal: Portal,
):
    fill(portal)

    uninstall(portal, clean=True)

    for model in (Template, Delivery, Draft, Line, LimitEntry):
        assert not model.objects.exists(), model.__name__


def test_clean_uninstall_deletes_lines_that_campaigns_used(portal: Portal):
    # Campaign.line is PROTECT: the campaigns receiver must have run before lines are deleted.
    line = fill(portal)
    campaign = Campaign.objects.create(
        portal=portal, line=line, name="Spring", line_code=CODE, message="Hi {NAME}"
    )
    Recipient.objects.create(
        campaign=campaign, user_id=9, name="Irina", delivery=Delivery.objects.get()
    )

    uninstall(portal, clean=True)

    assert not Campaign.objects.exists() and not Recipient.objects.exists()
    assert not Line.objects.exists() and not Delivery.objects.exists()
    assert Portal.objects.get().status == Portal.Status.UNINSTALLED


def test_uninstall_leaves_other_portals_data_alone(portal: Portal, make_portal: Any):
    other = make_portal(member_id=OTHER_MEMBER_ID, domain=OTHER_DOMAIN)
    fill(portal)
    other_line = Line.objects.create(portal=other, code=OTHER_CODE)
    Delivery.objects.create(
        portal=other, line=other_line, user_id=9, recipient_name="Irina", message="Hello Irina"
    )
    Draft.objects.create(portal=other, user_id=7, data={"recipient_name": "Irina"})

    uninstall(portal, clean=True)

    kept = Delivery.objects.get()
    assert (kept.portal, kept.recipient_name, kept.message) == (other, "Irina", "Hello Irina")
    assert Draft.objects.get().portal == other and Line.objects.get() == other_line


@pytest.mark.parametrize("clean", ["0", "1"])
def test_the_uninstall_event_erases_messaging_personal_data(
    client: Client, portal: Portal, clean: str
):
    secret = "ec1b0000secret"
    Portal.objects.filter(pk=portal.pk).update(
        application_token_hash=portal_services._hash_secret(secret)
    )
    fill(portal)
    form = {
        "event": "ONAPPUNINSTALL",
        "ts": "1700000000",
        "data[CLEAN]": clean,
        "auth[domain]": portal.domain,
        "auth[member_id]": portal.member_id,
        "auth[application_token]": secret,
    }

    response = client.post("/b24/events/", form)

    assert response.json() == {"result": "uninstalled"}
    assert not Draft.objects.exists()
    assert not Delivery.objects.exclude(recipient_name="").exists()
    assert Template.objects.exists() is (clean == "0")
