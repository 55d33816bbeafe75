"""Messaging services: sending and its outcomes, the weekly ledger, lines, drafts, templates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from b24app.messaging import services
from b24app.messaging.models import Delivery, Draft, LimitEntry, Line, Template
from b24app.portals.models import Portal
from tests.messaging.conftest import CODE, OTHER_CODE, MessagingBitrix

pytestmark = pytest.mark.django_db

ATTACH = {"BLOCKS": [{"MESSAGE": "Release [b]2.4[/b]"}]}
KEYBOARD = {"BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com"}]}


def send(line: Line, **overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "portal": line.portal,
        "line": line,
        "user_id": 9,
        "message": "Hello",
        "attach": ATTACH,
        "keyboard": KEYBOARD,
        "author_user_id": 7,
    }
    fields.update(overrides)
    return services.message_send(**fields)


# --- message_send ----------------------------------------------------------------------------


def test_a_sent_message_is_recorded_and_starts_the_weekly_limit(
    line: Line, bitrix: MessagingBitrix
):
    delivery = send(line)

    assert delivery.status == "sent"
    assert bitrix.sent[0]["ATTACH"] == ATTACH and bitrix.sent[0]["URL_PREVIEW"] == "Y"
    entry = LimitEntry.objects.get()
    assert (entry.line_code, entry.user_id, entry.source) == (CODE, 9, "app")


def test_a_message_the_policy_refuses_is_not_stored_or_sent(line: Line, bitrix: MessagingBitrix):
    with pytest.raises(services.SendRefused) as refused:
        send(line, keyboard={"BUTTONS": [{"TEXT": "x", "LINK": "javascript:1"}]})

    assert [(e.code, e.field) for e in refused.value.errors] == [
        ("KEYBOARD_ERROR", "KEYBOARD.BUTTONS[0].LINK")
    ]
    assert not Delivery.objects.exists() and bitrix.sent == []


def test_our_ledger_refuses_a_recipient_inside_the_week(line: Line, bitrix: MessagingBitrix):
    LimitEntry.objects.create(
        portal=line.portal, line_code=CODE, user_id=9, sent_at=timezone.now() - timedelta(days=6)
    )

    with pytest.raises(services.SendRefused) as refused:
        send(line)

    assert refused.value.errors[0].code == "USER_MESSAGE_LIMIT"
    assert bitrix.sent == []


def test_the_week_is_seven_times_24_hours(line: Line, bitrix: MessagingBitrix):
    sent = timezone.now() - timedelta(days=7)
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=9, sent_at=sent)

    assert send(line).status == "sent"


def test_nfr_portals_ignore_the_ledger(line: Line, bitrix: MessagingBitrix):
    Portal.objects.filter(pk=line.portal.pk).update(nfr=True)
    line.portal.refresh_from_db()
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=9, sent_at=timezone.now())

    assert send(line).status == "sent"


def test_a_limit_only_bitrix_knew_writes_a_server_row(line: Line, bitrix: MessagingBitrix):
    bitrix.ledger.add((CODE, 9))

    delivery = send(line)

    assert (delivery.status, delivery.error_code) == ("limited", "USER_MESSAGE_LIMIT")
    assert LimitEntry.objects.get().source == "server"


def test_a_limit_on_a_ledger_row_over_a_week_old_redates_it_from_the_server(
    line: Line, bitrix: MessagingBitrix
):
    stale = timezone.now() - timedelta(days=8)
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=9, sent_at=stale)
    bitrix.ledger.add((CODE, 9))  # someone else messaged them from this line meanwhile

    before = timezone.now()
    delivery = send(line)

    assert delivery.status == "limited"
    entry = LimitEntry.objects.get()
    assert entry.source == "server" and entry.sent_at >= before
    status = services.limit_status(portal=line.portal, line_code=CODE, user_id=9)
    assert status.blocked and status.next_allowed_at == entry.sent_at + timedelta(days=7)


def _sending(line: Line, user_id: int) -> Delivery:
    return Delivery.objects.create(
        portal=line.portal, line=line, user_id=user_id, message="Hi", status="sending"
    )


def test_a_limit_our_own_row_predicted_keeps_that_row(line: Line):
    sent = timezone.now() - timedelta(days=3)
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=9, sent_at=sent)
    limited = services.Outcome("limited", "USER_MESSAGE_LIMIT", "You cant send")

    services.delivery_record(delivery=_sending(line, 9), outcome=limited)

    entry = LimitEntry.objects.get()
    assert (entry.sent_at, entry.source) == (sent, "app")


def test_a_campaign_batch_limit_redates_stale_rows_and_keeps_blocking_ones(line: Line):
    now = timezone.now()
    stale, recent = now - timedelta(days=7, seconds=1), now - timedelta(days=2)
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=10, sent_at=stale)
    LimitEntry.objects.create(portal=line.portal, line_code=CODE, user_id=11, sent_at=recent)
    limited = services.Outcome("limited", "USER_MESSAGE_LIMIT", "You cant send")
    results = [(_sending(line, user).pk, user, limited) for user in (9, 10, 11)]

    services.deliveries_record(portal=line.portal, line_code=CODE, results=results, now=now)

    rows = {e.user_id: (e.sent_at, e.source) for e in LimitEntry.objects.all()}
    assert rows == {9: (now, "server"), 10: (now, "server"), 11: (recent, "app")}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"limited"}


@pytest.mark.parametrize("failure", ["timeout", "500"])
def test_an_ambiguous_failure_is_unknown_and_writes_no_ledger(
    line: Line, bitrix: MessagingBitrix, failure: str
):
    bitrix.next_send = failure

    delivery = send(line)

    assert delivery.status == "unknown"
    assert not LimitEntry.objects.exists()


def test_a_refusal_is_rejected_with_its_code(line: Line, bitrix: MessagingBitrix):
    bitrix.joined.clear()

    delivery = send(line)

    assert (delivery.status, delivery.error_code) == ("rejected", "NOT_FOUND")


# --- limit_status ----------------------------------------------------------------------------


def test_limit_status_reports_the_ledger_and_when_it_frees(portal: Portal):
    now = timezone.now()
    entry = LimitEntry.objects.create(
        portal=portal, line_code=CODE, user_id=9, sent_at=now - timedelta(days=2)
    )

    status = services.limit_status(portal=portal, line_code=CODE, user_id=9, now=now)

    assert status.blocked and not status.exempt
    assert status.next_allowed_at == entry.sent_at + timedelta(days=7)
    later = services.limit_status(
        portal=portal, line_code=CODE, user_id=9, now=now + timedelta(days=5)
    )
    assert not later.blocked and later.entry == entry


def test_limit_status_is_per_line_and_recipient(portal: Portal):
    LimitEntry.objects.create(portal=portal, line_code=CODE, user_id=9, sent_at=timezone.now())

    assert not services.limit_status(portal=portal, line_code=OTHER_CODE, user_id=9).blocked
    assert not services.limit_status(portal=portal, line_code=CODE, user_id=10).blocked


def test_limit_status_on_nfr_portals_is_exempt(make_portal: Any, bitrix: MessagingBitrix):
    portal = make_portal(nfr=True)
    LimitEntry.objects.create(portal=portal, line_code=CODE, user_id=9, sent_at=timezone.now())

    status = services.limit_status(portal=portal, line_code=CODE, user_id=9)

    assert status.exempt and not status.blocked and status.entry is None


# --- line_join -------------------------------------------------------------------------------


def test_joining_a_line_saves_it_with_its_bot(portal: Portal, bitrix: MessagingBitrix):
    line = services.line_join(portal=portal, code=OTHER_CODE, name="Sales")

    assert (line.join_status, line.name) == ("joined", "Sales") and line.bot_id
    assert line.joined_at is not None


@pytest.mark.parametrize(
    ("answer", "status"),
    [("NOT_FOUND", "not_found"), ("INACTIVE", "inactive"), ("CODE", "failed")],
)
def test_a_line_that_cannot_be_joined_is_saved_with_the_reason(
    portal: Portal, bitrix: MessagingBitrix, answer: str, status: str
):
    bitrix.joinable[OTHER_CODE] = answer

    line = services.line_join(portal=portal, code=OTHER_CODE)

    assert line.join_status == status and answer in line.join_error


# --- drafts ----------------------------------------------------------------------------------


def test_a_draft_is_one_per_user_and_portal(portal: Portal):
    services.draft_save(portal=portal, user_id=7, data={"message": "one"})
    services.draft_save(portal=portal, user_id=7, data={"message": "two"})
    services.draft_save(portal=portal, user_id=8, data={"message": "other"})

    draft = services.draft_get(portal=portal, user_id=7)
    assert draft is not None and draft.data == {"message": "two"}
    assert Draft.objects.count() == 2

    services.draft_delete(portal=portal, user_id=7)
    assert services.draft_get(portal=portal, user_id=7) is None


def test_a_huge_draft_is_refused(portal: Portal):
    with pytest.raises(services.MessagingError) as refused:
        services.draft_save(portal=portal, user_id=7, data={"message": "x" * 200_001})

    assert refused.value.code == "DRAFT_TOO_LARGE"
    assert not Draft.objects.exists()


# --- templates -------------------------------------------------------------------------------


def test_a_template_keeps_the_bitrix_structures(portal: Portal):
    template = services.template_save(
        portal=portal,
        name="  Release\tnote ",
        message="Hi",
        attach=ATTACH,
        keyboard=KEYBOARD,
        url_preview=False,
        created_by=7,
    )

    assert template.name == "Release note"
    assert template.data == {
        "message": "Hi",
        "attach": ATTACH,
        "keyboard": KEYBOARD,
        "url_preview": False,
    }


def test_the_same_name_replaces_a_template(portal: Portal):
    services.template_save(portal=portal, name="News", message="v1")
    services.template_save(portal=portal, name="News", message="v2")

    assert Template.objects.get().data["message"] == "v2"


def test_a_template_the_server_would_refuse_is_not_saved(portal: Portal):
    with pytest.raises(services.TemplateRefused) as refused:
        services.template_save(portal=portal, name="Bad", message=" ", attach={"BLOCKS": []})

    assert {e.code for e in refused.value.errors} == {"MESSAGE_EMPTY", "ATTACH_ERROR"}
    assert not Template.objects.exists()


def test_a_template_needs_a_name(portal: Portal):
    with pytest.raises(services.TemplateRefused) as refused:
        services.template_save(portal=portal, name=" ", message="Hi")

    assert refused.value.errors[0].field == "NAME"


# --- deliveries_for --------------------------------------------------------------------------


def test_deliveries_are_newest_first_and_filtered(line: Line):
    other_line = Line.objects.create(portal=line.portal, code=OTHER_CODE)
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        old = Delivery.objects.create(
            portal=line.portal, line=line, user_id=5, message="a", recipient_name="Anna"
        )
    new = Delivery.objects.create(
        portal=line.portal, line=other_line, user_id=6, message="b", status="sent", kind="test"
    )

    assert list(services.deliveries_for(portal=line.portal)) == [new, old]
    assert list(services.deliveries_for(portal=line.portal, status="sent")) == [new]
    assert list(services.deliveries_for(portal=line.portal, line=line)) == [old]
    assert list(services.deliveries_for(portal=line.portal, user_id=6)) == [new]
    assert list(services.deliveries_for(portal=line.portal, recipient="ann")) == [old]
    assert list(services.deliveries_for(portal=line.portal, kind="test")) == [new]
