from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from b24app.campaigns import services
from b24app.campaigns.models import Campaign, Exclusion, Recipient
from b24app.messaging.models import Delivery, Line
from b24app.portals import frame
from b24app.portals.models import Portal
from tests.campaigns.conftest import Messenger

pytestmark = pytest.mark.django_db

MakeCampaign = Callable[..., Campaign]


def headers(
    portal: Portal,
    *,
    admin: bool = True,
    user_id: int = 1,
    htmx: bool = True,
    user_name: str = "",
    language: str = "en",
) -> Any:
    token = frame.issue_token(
        portal=portal, user_id=user_id, admin=admin, language=language, user_name=user_name
    )
    found = {"HTTP_X_FRAME_TOKEN": token}
    if htmx:
        found["HTTP_HX_REQUEST"] = "true"
    return found


def test_campaigns_refuse_users_an_admin_did_not_allow(client: Client, portal: Portal):
    response = client.get("/app/campaigns/", **headers(portal, admin=False, user_id=7))

    assert response.status_code == 403
    assert "administrators" in response.content.decode()


def test_campaigns_need_the_frame_token(client: Client, portal: Portal):
    assert client.get("/app/campaigns/").status_code == 403


def test_list_shows_history_with_counts(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    make_campaign([1, 2], name="Spring news")

    response = client.get("/app/campaigns/", **headers(portal, htmx=False))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Spring news" in body and "<html" in body
    partial = client.get("/app/campaigns/", **headers(portal)).content.decode()
    assert "<html" not in partial and 'id="app-page"' in partial


def test_creating_a_campaign_starts_finding_recipients(
    client: Client,
    portal: Portal,
    line: Line,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    from b24app.campaigns import tasks

    enqueued: list[Any] = []
    monkeypatch.setattr(
        tasks.campaign_resolve, "apply_async", lambda args, countdown=0: enqueued.append(args)
    )
    form = {
        "name": "Launch",
        "line": str(line.pk),
        "message": "Hi {NAME}",
        "url_preview": "on",
        "audience": "users",
        "user_ids": "1, 2, 2, 3",
        "time_zone": "Europe/Berlin",
        "subdepartments": "on",
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/app/campaigns/new/", form, **headers(portal))

    campaign = Campaign.objects.get()
    assert response.status_code == 200
    assert "Finding recipients" in response.content.decode()
    assert campaign.audience["user_ids"] == [1, 2, 3]  # duplicates removed
    assert campaign.time_zone == "Europe/Berlin" and campaign.author_user_id == 1
    assert enqueued == [(campaign.pk, campaign.resolve_state["token"])]


def test_invalid_message_is_shown_inline(client: Client, portal: Portal, line: Line):
    form = {
        "name": "x",
        "line": str(line.pk),
        "message": "ok",
        "audience": "users",
        "user_ids": "1",
        "time_zone": "UTC",
        "attach": '[{"MESSAGE": ',
    }
    response = client.post("/app/campaigns/new/", form, **headers(portal))

    assert response.status_code == 200
    assert "not valid JSON" in response.content.decode()
    assert not Campaign.objects.exists()


def test_csv_upload_reports_every_bad_line(client: Client, portal: Portal, line: Line):
    upload = SimpleUploadedFile("ids.csv", b"ID\n1\n2\nbob\n\n-4\n2\n", content_type="text/csv")
    form = {
        "name": "x",
        "line": str(line.pk),
        "message": "Hi",
        "audience": "csv",
        "time_zone": "UTC",
        "csv_file": upload,
    }

    response = client.post("/app/campaigns/new/", form, **headers(portal))

    body = response.content.decode()
    assert "line 4" in body and "bob" in body and "line 6" in body
    assert not Campaign.objects.exists()


def test_summary_and_personalised_preview_before_the_start(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1, 2, 3])
    services.exclusion_add(portal=portal, user_ids=[2])

    body = client.get(f"/app/campaigns/{campaign.pk}/", **headers(portal)).content.decode()

    assert 'data-count="will_receive">2<' in body and 'data-count="excluded">1<' in body
    assert "on the exclusion list" in body
    assert "Hello Name1!" in body
    preview = client.get(
        f"/app/campaigns/{campaign.pk}/preview/?user_id=3", **headers(portal)
    ).content.decode()
    assert "Hello Name3!" in preview


def test_the_poll_that_sees_the_recipients_found_redraws_the_preview(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    # Just created: nobody found yet, so the page polls (saying so) and the preview waits.
    campaign = make_campaign([], status=Campaign.Status.RESOLVING)
    body = client.get(f"/app/campaigns/{campaign.pk}/", **headers(portal)).content.decode()
    state_url = f"/app/campaigns/{campaign.pk}/state/?resolving=1"
    assert f'hx-get="{state_url}"' in body and 'id="preview-pending"' in body
    polled = client.get(state_url, **headers(portal)).content.decode()
    assert 'id="preview"' not in polled and f'hx-get="{state_url}"' in polled

    # The worker finds them: the next poll brings the preview along, out of band, personalised
    # for the first recipient who will receive the message (2 is on the exclusion list).
    Recipient.objects.bulk_create(
        Recipient(campaign=campaign, user_id=uid, name=f"Name{uid}", last_name=f"Last{uid}")
        for uid in [2, 3]
    )
    Recipient.objects.filter(campaign=campaign, user_id=2).update(
        skip_reason=Recipient.Skip.EXCLUDED
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.READY)
    polled = client.get(state_url, **headers(portal)).content.decode()
    assert 'data-status="ready"' in polled and "hx-trigger" not in polled
    assert '<section id="preview" class="b24-card" hx-swap-oob="true">' in polled
    assert "Hello Name3!" in polled and 'name="user_id" inputmode="numeric" value="3"' in polled
    assert "preview-pending" not in polled

    # Polls of a campaign that was not finding anyone (a running one's) leave the preview alone.
    polled = client.get(f"/app/campaigns/{campaign.pk}/state/", **headers(portal)).content.decode()
    assert 'id="preview"' not in polled


def test_start_pause_resume_and_live_state(
    client: Client, portal: Portal, make_campaign: MakeCampaign, messenger: Messenger
):
    campaign = make_campaign([1, 2])
    url = f"/app/campaigns/{campaign.pk}/action/"

    client.post(url, {"action": "start"}, **headers(portal))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING

    state = client.get(f"/app/campaigns/{campaign.pk}/state/", **headers(portal)).content.decode()
    assert 'hx-trigger="every 2s"' in state and "messages/s" in state
    assert 'data-state="queued"' in state

    client.post(url, {"action": "pause"}, **headers(portal))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    client.post(url, {"action": "resume"}, **headers(portal))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_another_portals_campaign_is_not_found(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1])
    other = Portal.objects.create(
        member_id="f" * 32,
        domain="other.bitrix24.com",
        client_endpoint="https://other.bitrix24.com/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
    )

    response = client.get(f"/app/campaigns/{campaign.pk}/", **headers(other))

    assert response.status_code == 404


def _finish(campaign: Campaign, states: dict[int, str]) -> None:
    for recipient in Recipient.objects.filter(campaign=campaign):
        status = states.get(recipient.user_id)
        if status:
            recipient.delivery = Delivery.objects.create(
                portal=campaign.portal,
                line=campaign.line,
                user_id=recipient.user_id,
                message="x",
                kind=Delivery.Kind.CAMPAIGN,
                status=status,
                error_code="UNKNOWN" if status == "unknown" else "",
            )
            recipient.due = False
            recipient.save()
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)


def test_report_filters_and_offers_resend_or_mark_for_unknown(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1, 2, 3])
    _finish(campaign, {1: "sent", 2: "unknown", 3: "rejected"})
    url = f"/app/campaigns/{campaign.pk}/report/"

    body = client.get(url + "?state=unknown", **headers(portal)).content.decode()
    assert body.count('data-state="unknown"') == 1 and 'data-state="sent"' not in body
    assert "Resend" in body and "Mark as delivered" in body

    unknown = Recipient.objects.get(campaign=campaign, user_id=2)
    client.post(
        f"/app/campaigns/{campaign.pk}/recipients/",
        {"action": "mark", "recipients": [unknown.pk]},
        **headers(portal),
    )
    unknown.refresh_from_db()
    assert unknown.delivery is not None and unknown.delivery.status == Delivery.Status.SENT


def test_csv_export_uses_a_single_use_link(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1, 2])
    Recipient.objects.filter(campaign=campaign, user_id=2).update(name="=cmd|'/c calc'!A0")
    _finish(campaign, {1: "sent", 2: "rejected"})

    response = client.post(
        f"/app/campaigns/{campaign.pk}/export/", {"state": ""}, **headers(portal)
    )

    link = response["HX-Redirect"]
    download = client.get(link)
    body = b"".join(download.streaming_content).decode("utf-8-sig")
    assert download["Content-Disposition"].startswith("attachment;")
    assert body.splitlines()[0].startswith("user_id,name")
    assert "1,Name1,Last1,sent" in body
    assert "'=cmd" in body  # no formula injection into spreadsheets
    assert client.get(link).status_code == 410


def test_settings_are_for_admins_and_manage_the_exclusion_list(client: Client, portal: Portal):
    assert client.get("/app/campaigns/settings/", **headers(portal, admin=False)).status_code == 403

    client.post(
        "/app/campaigns/settings/",
        {"form": "exclusions", "user_ids": "5, 9", "note": "asked"},
        **headers(portal),
    )
    client.post(
        "/app/campaigns/settings/",
        {
            "form": "settings",
            "allowed_user_ids": "7",
            "allowed_department_ids": "",
            "time_zone": "UTC",
        },
        **headers(portal),
    )

    assert sorted(Exclusion.objects.values_list("user_id", flat=True)) == [5, 9]
    assert (
        client.get("/app/campaigns/", **headers(portal, admin=False, user_id=7)).status_code == 200
    )


def test_actions_in_the_frame_are_audited_with_the_acting_user(
    client: Client, portal: Portal, make_campaign: MakeCampaign, messenger: Messenger
):
    from b24app.portals.models import AuditEntry

    campaign = make_campaign([1, 2])
    who = headers(portal, user_id=5, user_name="Anna Admin")

    client.post(f"/app/campaigns/{campaign.pk}/action/", {"action": "start"}, **who)
    client.post(f"/app/campaigns/{campaign.pk}/action/", {"action": "cancel"}, **who)
    client.post(
        "/app/campaigns/settings/",
        {"form": "settings", "allowed_user_ids": "7", "time_zone": "UTC"},
        **who,
    )
    client.post("/app/campaigns/settings/", {"form": "exclusions", "user_ids": "9"}, **who)
    client.post(
        "/app/campaigns/settings/", {"form": "exclusions", "user_ids": "9", "remove": "1"}, **who
    )

    entries = list(
        AuditEntry.objects.filter(portal=portal)
        .order_by("pk")
        .values_list("action", "actor_user_id", "actor_name")
    )
    assert entries == [
        ("campaign.start", 5, "Anna Admin"),
        ("campaign.cancel", 5, "Anna Admin"),
        ("settings.campaigns", 5, "Anna Admin"),
        ("exclusion.add", 5, "Anna Admin"),
        ("exclusion.remove", 5, "Anna Admin"),
    ]


def _csv_form(line: Line, data: bytes) -> dict[str, Any]:
    return {
        "name": "x",
        "line": str(line.pk),
        "message": "Hi",
        "audience": "csv",
        "time_zone": "UTC",
        "csv_file": SimpleUploadedFile("ids.csv", data, content_type="text/csv"),
    }


def test_a_csv_of_one_and_a_half_megabytes_is_checked_line_by_line(
    client: Client, portal: Portal, line: Line
):
    ids = b"".join(b"%d\n" % n for n in range(1_000_000, 1_180_000))  # 1.44 MB
    data = ids + b"not-an-id\n" + ids[:60_000]
    assert 1_400_000 < len(data) < 1_600_000

    response = client.post("/app/campaigns/new/", _csv_form(line, data), **headers(portal))

    body = response.content.decode()
    assert response.status_code == 200
    assert "line 180001" in body and "not-an-id" in body
    assert not Campaign.objects.exists()


def test_a_csv_near_the_limit_gets_a_form_error_not_a_413(
    client: Client, portal: Portal, line: Line
):
    data = b"1\n" * 975_000  # 1.95 MB: under the request limit, over the file limit

    response = client.post("/app/campaigns/new/", _csv_form(line, data), **headers(portal))

    assert response.status_code == 200
    assert "The file is larger than 1900 KB." in response.content.decode()


def test_a_request_over_two_megabytes_is_refused_with_413_and_a_clear_message(
    client: Client, portal: Portal, line: Line
):
    data = b"1\n" * 1_050_000  # 2.1 MB

    response = client.post("/app/campaigns/new/", _csv_form(line, data), **headers(portal))

    assert response.status_code == 413
    assert "too large" in response.content.decode() and "2000 KB" in response.content.decode()
    assert not Campaign.objects.exists()


def test_report_says_who_marked_a_message_as_delivered(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1, 2])
    _finish(campaign, {1: "unknown", 2: "unknown"})
    Delivery.objects.filter(campaign_recipient__user_id=2).update(
        status="sent", error_code="USER_MESSAGE_LIMIT"
    )
    marked = Recipient.objects.get(campaign=campaign, user_id=1)

    client.post(
        f"/app/campaigns/{campaign.pk}/recipients/",
        {"action": "mark", "recipients": [marked.pk]},
        **headers(portal, user_id=5, user_name="Anna Admin"),
    )
    body = client.get(f"/app/campaigns/{campaign.pk}/report/", **headers(portal)).content.decode()

    assert body.count("Marked as delivered by Anna Admin (user 5).") == 1
    assert body.count("Delivered by the first attempt") == 1  # only user 2's proven resend


def test_cancelled_campaign_shows_unsent_recipients_as_not_sent_without_an_eta(
    client: Client, portal: Portal, make_campaign: MakeCampaign, messenger: Messenger
):
    from datetime import timedelta

    from django.utils import timezone

    campaign = make_campaign([1, 2, 3, 4])
    _finish(campaign, {1: "sent", 2: "queued"})  # 2 went back to the queue; 3, 4 never tried
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.RUNNING, started_at=timezone.now() - timedelta(seconds=10)
    )
    campaign.refresh_from_db()
    services.campaign_cancel(campaign=campaign)

    progress = services.campaign_progress(campaign=campaign)
    detail = client.get(f"/app/campaigns/{campaign.pk}/", **headers(portal)).content.decode()
    report = client.get(f"/app/campaigns/{campaign.pk}/report/", **headers(portal)).content.decode()
    not_sent = client.get(
        f"/app/campaigns/{campaign.pk}/report/?state=not_sent", **headers(portal)
    ).content.decode()

    assert progress.counts["not_sent"] == 3 and "queued" not in progress.counts
    assert progress.eta_s is None and progress.done == 1
    assert 'data-state="not_sent"' in detail and 'data-state="queued"' not in detail
    assert "s left" not in detail
    assert report.count('data-state="not_sent"') == 3 and 'data-state="queued"' not in report
    assert ">queued<" not in report
    assert not_sent.count('data-state="not_sent"') == 3
    rows = list(services.report_csv_rows(campaign=campaign))
    assert [row[3] for row in rows[1:]] == ["sent", "not_sent", "not_sent", "not_sent"]


def test_resend_is_refused_and_not_offered_on_a_cancelled_campaign(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1, 2])
    _finish(campaign, {1: "unknown", 2: "sent"})
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)
    unknown = Recipient.objects.get(campaign=campaign, user_id=1)

    report = client.get(f"/app/campaigns/{campaign.pk}/report/", **headers(portal)).content.decode()
    response = client.post(
        f"/app/campaigns/{campaign.pk}/recipients/",
        {"action": "resend", "recipients": [unknown.pk]},
        **headers(portal),
    )

    assert 'value="resend"' not in report and 'value="mark"' in report
    assert "was cancelled" in response.content.decode()
    unknown.refresh_from_db()
    assert not unknown.due
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED


def test_every_skipped_user_is_listed_before_the_start_page_by_page(
    client: Client, portal: Portal, make_campaign: MakeCampaign
):
    ids = list(range(1, 251))
    campaign = make_campaign(ids)
    services.exclusion_add(portal=portal, user_ids=ids)

    detail = client.get(f"/app/campaigns/{campaign.pk}/", **headers(portal)).content.decode()
    last = client.get(
        f"/app/campaigns/{campaign.pk}/skipped/?page=3", **headers(portal)
    ).content.decode()

    assert detail.count("data-skipped=") == 100 and "page 1 of 3" in detail
    assert f"/app/campaigns/{campaign.pk}/skipped/?page=2" in detail
    assert last.count("data-skipped=") == 50 and 'data-skipped="250"' in last
    assert "<html" not in last


def test_new_campaign_suggests_the_time_zone_of_the_bitrix24(
    client: Client, portal: Portal, line: Line, messenger: Messenger
):
    messenger.set_time_zone("Asia/Yekaterinburg")

    first = client.get("/app/campaigns/new/", **headers(portal)).content.decode()
    again = client.get("/app/campaigns/new/", **headers(portal)).content.decode()

    assert 'value="Asia/Yekaterinburg"' in first and 'value="Asia/Yekaterinburg"' in again
    assert "data-browser-zone" not in first
    assert messenger.profile_calls == 1  # cached per portal


def test_the_administrators_time_zone_setting_wins_over_the_bitrix24s(
    client: Client, portal: Portal, line: Line, messenger: Messenger
):
    messenger.set_time_zone("Asia/Yekaterinburg")
    services.settings_update(
        portal=portal, allowed_user_ids=[], allowed_department_ids=[], time_zone="Europe/Berlin"
    )

    body = client.get("/app/campaigns/new/", **headers(portal)).content.decode()

    assert 'value="Europe/Berlin"' in body and messenger.profile_calls == 0


def test_without_a_known_time_zone_the_form_takes_the_browsers(
    client: Client, portal: Portal, line: Line, messenger: Messenger
):
    messenger.set_time_zone("")  # the token's user keeps the portal default: Bitrix24 names none

    body = client.get("/app/campaigns/new/", **headers(portal, htmx=False)).content.decode()

    assert 'data-browser-zone="1"' in body and 'value="UTC"' in body
    assert "js/campaigns.js" in body


def test_an_empty_time_zone_setting_means_the_bitrix24s_own(
    client: Client, portal: Portal, messenger: Messenger
):
    messenger.set_time_zone("Europe/Samara")

    client.post(
        "/app/campaigns/settings/",
        {"form": "settings", "allowed_user_ids": "", "time_zone": ""},
        **headers(portal),
    )
    page = client.get("/app/campaigns/settings/", **headers(portal)).content.decode()

    assert services.settings_for(portal).time_zone == ""
    assert 'placeholder="Europe/Samara"' in page


def test_department_picker_shows_the_tree_with_sub_departments_ticked_as_typed(
    client: Client, portal: Portal, messenger: Messenger
):
    messenger.departments = {1: None, 2: 1, 3: 2, 4: 1}
    messenger.departments.update({d: 4 for d in range(10, 80)})  # more than one page of 50
    messenger.department_names = {1: "Acme", 2: "Sales", 3: "Sales <North>", 4: "Support"}

    body = client.get(
        "/app/campaigns/departments/?field=department_ids&department_ids=3,+999",
        **headers(portal),
    ).content.decode()

    assert 'id="field-department_ids"' in body  # it takes the ID input's place
    assert 'name="department_ids" value="3" checked' in body
    assert 'name="department_ids" value="2">' in body and 'value="79"' in body
    assert "Sales &lt;North&gt;" in body  # names are escaped
    # Sub-departments sit inside their department's item: Acme > Sales > Sales <North>.
    acme, sales, north = (body.index(n) for n in ("Acme", "Sales<", "Sales &lt;North"))
    assert acme < sales < north
    assert body.count('<ul class="b24-tree-level">') == 4  # top, under Acme, Sales, Support
    assert 'id="id_department_ids" value="999"' in body  # an ID not in the tree is kept
    assert messenger.requests == ["department.get", "batch"]


def test_department_picker_refused_by_bitrix24_keeps_the_id_input(
    client: Client, portal: Portal, messenger: Messenger
):
    messenger.department_error = "insufficient_scope"

    body = client.get(
        "/app/campaigns/departments/?field=department_ids&department_ids=7", **headers(portal)
    ).content.decode()

    assert "did not list its departments" in body and "insufficient_scope" in body
    assert 'id="id_department_ids" value="7"' in body


def test_department_picker_for_campaign_access_is_for_administrators(
    client: Client, portal: Portal, messenger: Messenger
):
    settings_ = services.settings_update(
        portal=portal, allowed_user_ids=[7], allowed_department_ids=[], time_zone=""
    )
    assert settings_.allowed_user_ids == [7]
    url = "/app/campaigns/departments/?field=allowed_department_ids"

    assert client.get(url, **headers(portal, admin=False, user_id=7)).status_code == 403
    assert client.get(url, **headers(portal)).status_code == 200
    assert client.get("/app/campaigns/departments/?field=x", **headers(portal)).status_code == 404


def test_ticked_departments_and_typed_ids_are_taken_together(
    client: Client,
    portal: Portal,
    line: Line,
    django_capture_on_commit_callbacks: Any,
):
    form = {
        "name": "Launch",
        "line": str(line.pk),
        "message": "Hi",
        "audience": "departments",
        "department_ids": ["5", "2", "7, 8"],  # two ticked boxes and the typed IDs
        "subdepartments": "on",
        "time_zone": "UTC",
    }
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/app/campaigns/new/", form, **headers(portal))
    client.post(
        "/app/campaigns/settings/",
        {"form": "settings", "allowed_user_ids": ["4", "6"], "allowed_department_ids": ["3", "9"]},
        **headers(portal),
    )

    assert Campaign.objects.get().audience["department_ids"] == [5, 2, 7, 8]
    current = services.settings_for(portal)
    assert current.allowed_user_ids == [4, 6] and current.allowed_department_ids == [3, 9]


def test_pickers_are_offered_beside_the_id_inputs(client: Client, portal: Portal, line: Line):
    new = client.get("/app/campaigns/new/", **headers(portal)).content.decode()
    settings_page = client.get("/app/campaigns/settings/", **headers(portal)).content.decode()

    assert 'data-select-users="id_user_ids" hidden' in new
    assert "/app/campaigns/departments/?field=department_ids" in new
    assert 'name="user_ids"' in new and 'name="department_ids"' in new  # the no-script way
    assert 'data-select-users="id_allowed_user_ids"' in settings_page
    assert "/app/campaigns/departments/?field=allowed_department_ids" in settings_page


def test_a_campaign_message_in_the_history_shows_its_attachment_and_buttons(
    client: Client, messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    from django.urls import reverse

    from tests.campaigns.test_services import drain

    messenger.add_users(1)
    attach = [{"LINK": {"NAME": "Release notes", "LINK": "https://example.com/notes"}}]
    keyboard = [{"TEXT": "Open the site", "LINK": "https://example.com"}]
    campaign = services.campaign_start(
        campaign=make_campaign([1], attach=attach, keyboard=keyboard)
    )
    drain(portal)
    delivery = Recipient.objects.get(campaign=campaign, user_id=1).delivery
    assert delivery is not None and delivery.status == Delivery.Status.SENT

    response = client.get(reverse("messaging:delivery", args=[delivery.pk]), **headers(portal))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Release notes" in body and "https://example.com/notes" in body
    assert "Open the site" in body
