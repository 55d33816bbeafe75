from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from b24app.campaigns import audience as aud
from b24app.campaigns import services
from b24app.campaigns.models import Campaign, CampaignSettings, Exclusion, Lane, Recipient
from b24app.messaging.models import Delivery, LimitEntry, Line
from b24app.portals.models import Portal
from tests.campaigns.conftest import LINE_CODE, Messenger

pytestmark = pytest.mark.django_db

MakeCampaign = Callable[..., Campaign]


def drain(portal: Portal, steps: int = 200) -> list[str]:
    """Run the portal's first lane step by step, as its task chain would."""
    services.lanes_kick(portal=portal)
    outcomes: list[str] = []
    for _ in range(steps):
        lane = Lane.objects.get(portal=portal, slot=0)
        if not lane.token:
            break
        outcome = services.lane_run(portal_id=portal.pk, slot=0, token=lane.token, holder="w1")
        outcomes.append(outcome)
        if outcome in ("idle", "blocked"):
            break
    return outcomes


def start(campaign: Campaign) -> Campaign:
    return services.campaign_start(campaign=campaign)


def states(campaign: Campaign) -> dict[str, int]:
    return {k: v for k, v in services.campaign_counts(campaign=campaign).items() if v}


# --- sending -----------------------------------------------------------------------------------


def test_campaign_sends_every_recipient_once_and_completes(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    ids = messenger.add_users(120)
    campaign = start(make_campaign(ids))

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 120}
    assert sorted(messenger.sent_users) == ids
    assert messenger.requests.count("batch") == 3  # 50 + 50 + 20
    first = messenger.inbox[0]
    assert first["MESSAGE"] == "Hello Name1!" and first["CODE"] == LINE_CODE
    assert LimitEntry.objects.filter(portal=portal, line_code=LINE_CODE).count() == 120


def test_attach_and_keyboard_travel_in_the_batch(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    attach = [{"MESSAGE": "Read more"}, {"LINK": {"NAME": "Site", "LINK": "https://example.com"}}]
    keyboard = [{"TEXT": "Open", "LINK": "https://example.com", "BLOCK": True}]
    campaign = start(make_campaign([1, 2], attach=attach, keyboard=keyboard))

    drain(portal)

    sent = messenger.inbox[0]
    assert sent["ATTACH"] == attach
    assert sent["KEYBOARD"] == {"0": {"TEXT": "Open", "LINK": "https://example.com", "BLOCK": "Y"}}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_per_recipient_errors_end_only_that_recipient(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(5)
    messenger.add_users(1, start=6, ACTIVE=False)
    messenger.ledger[2] = 0.0 + __import__("time").time()  # messaged this week elsewhere
    campaign = start(make_campaign([1, 2, 3, 4, 5, 6]))

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 4, "limited": 1, "rejected": 1}
    limited = Recipient.objects.get(campaign=campaign, user_id=2).delivery
    assert limited is not None and limited.error_code == "USER_MESSAGE_LIMIT"
    # Our ledger learns the server's row, so the next campaign skips user 2 up front.
    assert LimitEntry.objects.get(portal=portal, user_id=2).source == LimitEntry.Source.SERVER


def test_campaign_wide_error_blocks_with_a_reason_and_resume_continues(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    ids = messenger.add_users(80)
    messenger.joined = False  # the line was disconnected: NOT_FOUND for every message
    campaign = start(make_campaign(ids))

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.BLOCKED
    assert campaign.blocked_code == "NOT_FOUND"
    assert "open line" in services.blocked_reason(campaign.blocked_code)
    assert states(campaign) == {"queued": 80}  # none rejected
    assert Recipient.objects.filter(campaign=campaign, due=True).count() == 80

    services.campaign_resume(campaign=campaign)  # joins the line again first
    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 80}
    assert sorted(messenger.sent_users) == ids


def test_a_stale_reply_from_before_the_resume_does_not_block_the_campaign_again(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    ids = messenger.add_users(80)
    messenger.joined = False
    campaign = start(make_campaign(ids))

    def another_lane_blocks_and_the_admin_resumes() -> None:
        # While this batch's NOT_FOUND reply is on its way, another lane's NOT_FOUND blocked
        # the campaign and the admin resumed it, which joined the line.
        Campaign.objects.filter(pk=campaign.pk).update(
            status=Campaign.Status.BLOCKED, blocked_code="NOT_FOUND"
        )
        services.campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk))

    messenger.while_replying = another_lane_blocks_and_the_admin_resumes
    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED, campaign.blocked_code
    assert states(campaign) == {"sent": 80}
    assert sorted(messenger.sent_users) == ids


def test_portal_wide_refusal_blocks_without_sending(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(3)
    messenger.batch_reply = (403, "PORTAL_DELETED")
    campaign = start(make_campaign([1, 2, 3]))

    drain(portal)

    campaign.refresh_from_db()
    portal.refresh_from_db()
    assert campaign.status == Campaign.Status.BLOCKED
    assert campaign.blocked_code == "PORTAL_DELETED"
    assert states(campaign) == {"queued": 3}
    assert portal.status == Portal.Status.AUTH_FAILED


def test_rate_limited_sub_calls_go_back_to_the_queue(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(4)
    messenger.user_errors = {3: "QUERY_LIMIT_EXCEEDED"}
    campaign = start(make_campaign([1, 2, 3, 4]))
    services.lanes_kick(portal=portal)
    lane = Lane.objects.get(portal=portal, slot=0)

    services.lane_run(portal_id=portal.pk, slot=0, token=lane.token)

    delivery = Recipient.objects.get(campaign=campaign, user_id=3).delivery
    assert delivery is not None and delivery.status == Delivery.Status.QUEUED
    assert Recipient.objects.get(campaign=campaign, user_id=3).due is True
    messenger.user_errors = {}
    drain(portal)
    assert states(campaign) == {"sent": 4}
    assert messenger.sent_users.count(3) == 1


def test_lost_reply_is_unknown_and_one_resend_proves_it_landed(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(3)
    messenger.lose_reply_after_run = True
    campaign = start(make_campaign([1, 2, 3]))
    services.lanes_kick(portal=portal)
    lane = Lane.objects.get(portal=portal, slot=0)

    services.lane_run(portal_id=portal.pk, slot=0, token=lane.token)

    assert states(campaign) == {"unknown": 3}
    messenger.lose_reply_after_run = False
    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 3}
    assert sorted(messenger.sent_users) == [1, 2, 3]  # exactly once each
    delivery = Recipient.objects.get(campaign=campaign, user_id=1).delivery
    assert delivery is not None and delivery.error_code == "USER_MESSAGE_LIMIT"
    assert "first attempt" in delivery.error_message


def test_unknown_is_resent_only_once(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    messenger.lose_reply_after_run = True  # the resend's reply is lost as well
    campaign = start(make_campaign([1, 2]))

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"unknown": 2}
    assert messenger.requests.count("batch") == 2  # the first attempt and one resend
    assert sorted(messenger.sent_users) == [1, 2]


def test_unknown_on_nfr_portal_is_never_resent_automatically(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    portal.nfr = True
    portal.save()
    messenger.nfr = True
    messenger.add_users(2)
    messenger.lose_reply_after_run = True
    campaign = start(make_campaign([1, 2]))

    drain(portal)
    messenger.lose_reply_after_run = False
    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"unknown": 2}
    assert len(messenger.inbox) == 2  # the first attempt did land; nothing was repeated

    first = Recipient.objects.get(campaign=campaign, user_id=1)
    second = Recipient.objects.get(campaign=campaign, user_id=2)
    assert services.recipients_mark_delivered(campaign=campaign, recipient_ids=[first.pk]) == 1
    assert services.recipients_resend(campaign=campaign, recipient_ids=[second.pk]) == 1
    drain(portal)
    assert states(campaign) == {"sent": 2}
    assert messenger.sent_users.count(2) == 2  # the person chose to resend on an NFR portal


def test_batch_refusal_switches_the_portal_to_single_calls(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(3)
    messenger.batch_refuses_messages = True
    campaign = start(make_campaign([1, 2, 3]))

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 3}
    assert CampaignSettings.objects.get(portal=portal).single_calls is True
    assert messenger.requests.count("imopenlines.network.message.add") == 3


def test_expired_token_is_refreshed_once_mid_campaign(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    ids = messenger.add_users(60)
    campaign = start(make_campaign(ids))
    services.lanes_kick(portal=portal)
    lane = Lane.objects.get(portal=portal, slot=0)
    services.lane_run(portal_id=portal.pk, slot=0, token=lane.token)
    messenger.fake.expire_all()  # Bitrix now refuses the stored token

    drain(portal)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert states(campaign) == {"sent": 60}
    assert messenger.fake.refresh_count == 1


def test_exclusions_and_the_weekly_ledger_skip_before_sending(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(4)
    services.exclusion_add(portal=portal, user_ids=[2])
    LimitEntry.objects.create(
        portal=portal, line_code=LINE_CODE, user_id=3, sent_at=timezone.now() - timedelta(days=1)
    )
    campaign = make_campaign([1, 2, 3, 4])

    summary = services.campaign_summary(campaign=campaign)
    assert (summary.total, summary.will_receive, summary.excluded, summary.limited) == (4, 2, 1, 1)
    assert {row[0] for row in summary.skipped} == {2, 3}

    start(campaign)
    drain(portal)

    assert states(campaign) == {"sent": 2, "skipped": 2}
    assert sorted(messenger.sent_users) == [1, 4]


def test_pause_stops_taking_batches_and_cancel_ends(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    ids = messenger.add_users(100)
    campaign = start(make_campaign(ids))
    services.lanes_kick(portal=portal)
    lane = Lane.objects.get(portal=portal, slot=0)
    services.lane_run(portal_id=portal.pk, slot=0, token=lane.token)
    services.campaign_pause(campaign=campaign)

    assert drain(portal)[-1] == "idle"
    assert len(messenger.inbox) == 50

    services.campaign_cancel(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert not Recipient.objects.filter(campaign=campaign, due=True).exists()


def test_sending_window_holds_the_campaign_until_it_opens(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    now = timezone.now().astimezone(timezone.get_fixed_timezone(0))
    closed_from = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    closed_to = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    campaign = start(make_campaign([1, 2], window_start=closed_from, window_end=closed_to))

    outcomes = drain(portal, steps=1)

    assert outcomes == ["window"]
    assert messenger.inbox == []
    lane = Lane.objects.get(portal=portal, slot=0)
    assert lane.lease_until is not None and lane.lease_until > timezone.now() + timedelta(minutes=4)
    assert campaign.window_opens_at(timezone.now()) > timezone.now()


def test_two_campaigns_of_one_portal_take_turns(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(200)
    big = start(make_campaign(list(range(1, 151))))
    small = start(make_campaign(list(range(151, 201))))

    drain(portal, steps=2)

    assert states(big)["sent"] == 50
    assert states(small) == {"sent": 50}


def test_scheduled_campaign_starts_when_recovery_finds_it_due(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    campaign = make_campaign([1, 2])
    services.campaign_start(campaign=campaign, at=timezone.now() + timedelta(hours=1))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED

    report = services.campaigns_recover(now=timezone.now() + timedelta(hours=1, seconds=1))

    campaign.refresh_from_db()
    assert report.activated == 1 and campaign.status == Campaign.Status.RUNNING


# --- recovery ------------------------------------------------------------------------------


def _claim_without_sending(portal: Portal, campaign: Campaign, holder: str = "w1") -> Lane:
    """What a worker killed between the claim and the reply leaves behind."""
    services.lanes_kick(portal=portal)
    lane = Lane.objects.get(portal=portal, slot=0)
    Lane.objects.filter(pk=lane.pk).update(holder=holder)
    services._claim(campaign, portal, lane.token, 50, timezone.now())
    return lane


def test_recovery_settles_rows_of_a_dead_worker_and_resends_once(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(3)
    campaign = start(make_campaign([1, 2, 3]))
    _claim_without_sending(portal, campaign)
    assert states(campaign) == {"sending": 3}

    report = services.campaigns_recover(dead_holders=["w1"])

    assert report.unknown == 3 and report.resend == 3
    assert states(campaign) == {"unknown": 3}
    drain(portal)
    assert states(campaign) == {"sent": 3}
    assert sorted(messenger.sent_users) == [1, 2, 3]


def test_recovery_settles_stale_rows_by_age_and_keeps_fresh_ones(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    campaign = start(make_campaign([1, 2]))
    _claim_without_sending(portal, campaign, holder="alive")

    assert services.campaigns_recover().unknown == 0
    later = timezone.now() + services.stale_after() + timedelta(seconds=1)
    assert services.campaigns_recover(now=later).unknown == 2


def test_recovery_restarts_lanes_whose_lease_ran_out(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    campaign = start(make_campaign([1, 2]))
    old = Lane.objects.get(portal=portal, slot=0).token

    assert services.campaigns_recover().lanes_started == 0  # alive: leased
    report = services.campaigns_recover(now=timezone.now() + timedelta(minutes=5))

    assert report.lanes_started == services.lanes_for(portal)
    assert Lane.objects.get(portal=portal, slot=0).token != old
    assert services.lane_run(portal_id=portal.pk, slot=0, token=old) == "stale"
    assert campaign.status == Campaign.Status.RUNNING


def test_recovery_puts_the_enqueue_on_commit(
    messenger: Messenger,
    portal: Portal,
    make_campaign: MakeCampaign,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    from b24app.campaigns import tasks

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        tasks.lane_run,
        "apply_async",
        lambda args, kwargs=None, countdown=0: sent.append(tuple(args)),
    )
    messenger.add_users(1)
    campaign = make_campaign([1])

    with django_capture_on_commit_callbacks(execute=True):
        start(campaign)

    lanes = {lane.slot: lane.token for lane in Lane.objects.filter(portal=portal)}
    assert sorted(sent) == sorted((portal.pk, slot, token) for slot, token in lanes.items())


# --- constant queries ---------------------------------------------------------------------


def _queries_of_first_batch(portal: Portal, campaign: Campaign) -> int:
    start(campaign)
    lane = Lane.objects.get(portal=portal, slot=0)
    with CaptureQueriesContext(connection) as queries:
        assert services.lane_run(portal_id=portal.pk, slot=0, token=lane.token) == "sent"
    return len(queries)


def test_queries_per_batch_are_the_same_for_50_and_500_recipients(
    messenger: Messenger, portal: Portal, line: Line
):
    # Rows every portal gets on its first batch (settings, pacer state) exist beforehand.
    services.settings_for(portal)
    from b24app.portals import pacer

    pacer.pacer_acquire(portal=portal, interactive=False, method=services.METHOD)
    counts = {}
    for size in (50, 500):
        ids = messenger.add_users(size, start=size * 10)
        campaign = Campaign.objects.create(
            portal=portal,
            line=line,
            line_code=line.code,
            name=f"n{size}",
            message="Hi {NAME}",
            audience={"kind": "users"},
            status=Campaign.Status.READY,
        )
        Recipient.objects.bulk_create(
            [Recipient(campaign=campaign, user_id=uid) for uid in ids], batch_size=500
        )
        counts[size] = _queries_of_first_batch(portal, campaign)
        services.campaign_cancel(campaign=campaign)
    assert counts[50] == counts[500], counts


# --- resolution ----------------------------------------------------------------------------


def resolve(campaign: Campaign, steps: int = 50) -> Campaign:
    for _ in range(steps):
        campaign.refresh_from_db()
        if campaign.status != Campaign.Status.RESOLVING:
            break
        services.campaign_resolve_step(
            campaign_id=campaign.pk, token=campaign.resolve_state["token"]
        )
    campaign.refresh_from_db()
    return campaign


def test_resolving_a_user_list_marks_unknown_and_inactive_users(
    messenger: Messenger, portal: Portal, line: Line
):
    messenger.add_users(3)
    messenger.add_users(1, start=4, ACTIVE=False)
    campaign = services.campaign_create(
        portal=portal,
        line=line,
        name="x",
        message="Hi {NAME}",
        audience=aud.Audience("users", (1, 2, 3, 4, 99)),
    )

    campaign = resolve(campaign)

    assert campaign.status == Campaign.Status.READY
    reasons = dict(
        Recipient.objects.filter(campaign=campaign).values_list("user_id", "skip_reason")
    )
    assert reasons == {1: "", 2: "", 3: "", 4: "inactive", 99: "not_found"}
    summary = services.campaign_summary(campaign=campaign)
    assert (summary.total, summary.will_receive, summary.inactive, summary.not_found) == (
        5,
        3,
        1,
        1,
    )


def test_resolving_all_users_reads_pages_through_batch(
    messenger: Messenger, portal: Portal, line: Line
):
    messenger.add_users(230)
    messenger.add_users(5, start=231, USER_TYPE="extranet")
    messenger.add_users(5, start=236, ACTIVE=False)
    campaign = services.campaign_create(
        portal=portal,
        line=line,
        name="all",
        message="Hi",
        audience=aud.Audience("all"),
    )

    campaign = resolve(campaign)

    assert campaign.status == Campaign.Status.READY
    assert Recipient.objects.filter(campaign=campaign).count() == 230
    assert messenger.requests == ["user.get", "batch"]  # the first page, then the other 4 pages
    assert campaign.resolve_done == campaign.resolve_total == 230


def test_resolving_departments_includes_sub_departments(
    messenger: Messenger, portal: Portal, line: Line
):
    messenger.departments = {1: None, 2: 1, 3: 2, 4: 1}
    messenger.add_users(2, start=1, UF_DEPARTMENT=[2])
    messenger.add_users(2, start=3, UF_DEPARTMENT=[3])
    messenger.add_users(2, start=5, UF_DEPARTMENT=[4])
    with_sub = services.campaign_create(
        portal=portal,
        line=line,
        name="d",
        message="Hi",
        audience=aud.Audience("departments", department_ids=(2,)),
    )
    only = services.campaign_create(
        portal=portal,
        line=line,
        name="d",
        message="Hi",
        audience=aud.Audience("departments", department_ids=(2,), subdepartments=False),
    )

    assert set(resolve(with_sub).recipients.values_list("user_id", flat=True)) == {1, 2, 3, 4}
    assert set(resolve(only).recipients.values_list("user_id", flat=True)) == {1, 2}


def test_autostart_starts_once_recipients_are_known(
    messenger: Messenger, portal: Portal, line: Line
):
    messenger.add_users(2)
    campaign = services.campaign_create(
        portal=portal,
        line=line,
        name="x",
        message="Hi",
        autostart=True,
        audience=aud.Audience("users", (1, 2)),
    )

    assert resolve(campaign).status == Campaign.Status.RUNNING


def test_resolution_failure_is_shown_and_can_be_retried(
    messenger: Messenger, portal: Portal, line: Line
):
    messenger.fake.rsps.replace(
        "POST",
        "https://acme.bitrix24.com/rest/user.get",
        status=401,
        json={"error": "insufficient_scope", "error_description": "no user scope"},
    )
    campaign = services.campaign_create(
        portal=portal,
        line=line,
        name="x",
        message="Hi",
        audience=aud.Audience("all"),
    )

    campaign = resolve(campaign)

    assert campaign.status == Campaign.Status.DRAFT
    assert "permission" in campaign.resolve_error
    services.campaign_resolve_again(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RESOLVING


def test_invalid_message_is_refused_before_anything_is_stored(portal: Portal, line: Line):
    with pytest.raises(services.CampaignError) as caught:
        services.campaign_create(
            portal=portal,
            line=line,
            name="x",
            message="   ",
            audience=aud.Audience("users", (1,)),
        )
    assert caught.value.code == "MESSAGE_EMPTY"
    assert not Campaign.objects.exists()


def test_duplicate_copies_the_snapshot_and_finds_recipients_again(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    original = make_campaign([1, 2], attach=[{"MESSAGE": "x"}])

    copy = services.campaign_duplicate(campaign=original, author_user_id=7)

    assert copy.pk != original.pk and copy.duplicate_of == original
    assert (copy.message, copy.attach, copy.audience) == (
        original.message,
        original.attach,
        original.audience,
    )
    assert copy.status == Campaign.Status.RESOLVING


# --- permissions, downloads ----------------------------------------------------------------


def test_campaigns_are_for_admins_until_an_admin_allows_others(
    messenger: Messenger, portal: Portal
):
    messenger.add_users(1, start=7, UF_DEPARTMENT=[5])
    assert services.campaign_allowed(portal=portal, user_id=1, admin=True)
    assert not services.campaign_allowed(portal=portal, user_id=7, admin=False)

    services.settings_update(
        portal=portal, allowed_user_ids=[], allowed_department_ids=[5], time_zone="Europe/Berlin"
    )

    assert services.campaign_allowed(portal=portal, user_id=7, admin=False)


def test_download_token_is_single_use_and_short_lived(make_campaign: MakeCampaign):
    campaign = make_campaign([1])
    token = services.download_issue(campaign=campaign)

    assert services.download_consume(token=token) is not None
    assert services.download_consume(token=token) is None
    late = services.download_issue(campaign=campaign)
    import time_machine

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert services.download_consume(token=late) is None


def test_uninstall_blocks_running_campaigns_and_forgets_names(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    campaign = start(make_campaign([1, 2]))
    Campaign.objects.filter(pk=campaign.pk).update(author_name="Anna Admin")
    Exclusion.objects.create(portal=portal, user_id=7, note="Olga asked by phone")

    services.campaigns_on_uninstall(portal=portal, clean=False)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.BLOCKED
    assert set(Recipient.objects.values_list("name", flat=True)) == {""}
    assert campaign.author_name == ""
    # The opt-out stays (a reinstall must still skip user 7); what was written about it goes.
    assert list(Exclusion.objects.values_list("user_id", "note")) == [(7, "")]


def test_a_crashing_lane_step_keeps_its_chain_alive(
    portal: Portal,
    make_campaign: MakeCampaign,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
):
    from b24app.campaigns import tasks

    start(make_campaign([1]))
    lane = Lane.objects.get(portal=portal, slot=0)
    queued: list[tuple[Any, float]] = []
    monkeypatch.setattr(services, "lane_run", lambda **kw: 1 / 0)
    monkeypatch.setattr(
        tasks.lane_run,
        "apply_async",
        lambda args, kwargs=None, countdown=0: queued.append((tuple(args), countdown)),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.lane_run(portal.pk, 0, lane.token) == "error"

    assert queued and queued[0][0] == (portal.pk, 0, lane.token) and queued[0][1] >= 5.0


# --- audit -------------------------------------------------------------------------------------


def _audit(portal: Portal) -> list[tuple[str, int | None, str, dict[str, Any]]]:
    from b24app.portals.models import AuditEntry

    return [
        (e.action, e.actor_user_id, e.actor_name, e.details)
        for e in AuditEntry.objects.filter(portal=portal).order_by("pk")
    ]


def test_campaign_lifecycle_is_recorded_in_the_audit_log_with_who_did_it(
    messenger: Messenger, portal: Portal, line: Line, make_campaign: MakeCampaign
):
    who = {"actor_user_id": 7, "actor_name": "Anna Admin"}
    created = services.campaign_create(
        portal=portal,
        line=line,
        name="News",
        message="Hello {NAME}",
        audience=aud.Audience("users", (1, 2, 3)),
        author_user_id=7,
        author_name="Anna Admin",
    )
    campaign = make_campaign([1, 2])
    services.campaign_start(campaign=campaign, **who)
    services.campaign_pause(campaign=campaign, **who)
    services.campaign_resume(campaign=campaign, **who)
    services.campaign_cancel(campaign=campaign, **who)
    copy = services.campaign_duplicate(campaign=campaign, author_user_id=7, author_name="Anna")
    later = make_campaign([3])
    services.campaign_start(campaign=later, at=timezone.now() + timedelta(hours=1), **who)

    entries = _audit(portal)

    assert [action for action, *_rest in entries] == [
        "campaign.create",
        "campaign.start",
        "campaign.pause",
        "campaign.resume",
        "campaign.cancel",
        "campaign.duplicate",
        "campaign.schedule",
    ]
    assert all(actor == 7 for _action, actor, _name, _details in entries)
    create = entries[0][3]
    assert create["campaign"] == created.pk and create["line"] == LINE_CODE
    assert create["message"] == "Hello {NAME}"
    assert create["audience"] == {"kind": "users", "users": 3, "user_ids": [1, 2, 3]}
    assert entries[1][3]["recipients"] == 2
    assert entries[5][3] == {**entries[5][3], "campaign": copy.pk, "from": campaign.pk}


def test_a_refused_or_repeated_action_leaves_no_audit_entry(
    portal: Portal, make_campaign: MakeCampaign
):
    campaign = make_campaign([1], status=Campaign.Status.COMPLETED)

    services.campaign_pause(campaign=campaign, actor_user_id=7)
    services.campaign_cancel(campaign=campaign, actor_user_id=7)

    assert _audit(portal) == []


def test_resend_and_mark_as_delivered_are_recorded_in_the_audit_log(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    campaign = start(make_campaign([1, 2]))
    messenger.lose_reply_after_run = True
    portal.nfr = True
    portal.save()
    drain(portal)
    first, second = Recipient.objects.filter(campaign=campaign).order_by("user_id")

    services.recipients_resend(
        campaign=campaign, recipient_ids=[first.pk], actor_user_id=7, actor_name="Anna"
    )
    services.recipients_mark_delivered(
        campaign=campaign, recipient_ids=[second.pk], by_user_id=8, by_user_name="Boris"
    )

    entries = [e for e in _audit(portal) if e[0] != "campaign.start"]
    assert entries == [
        ("campaign.resend", 7, "Anna", {**entries[0][3], "count": 1, "user_ids": [1]}),
        ("campaign.mark_delivered", 8, "Boris", {**entries[1][3], "count": 1, "user_ids": [2]}),
    ]


def test_campaign_settings_and_exclusion_changes_are_recorded_in_the_audit_log(portal: Portal):
    services.settings_update(
        portal=portal,
        allowed_user_ids=[5],
        allowed_department_ids=[3],
        time_zone="Europe/Berlin",
        actor_user_id=1,
        actor_name="Anna",
    )
    services.settings_update(
        portal=portal,
        allowed_user_ids=[5],
        allowed_department_ids=[3],
        time_zone="Europe/Berlin",
        actor_user_id=1,
    )  # no change, no entry
    services.exclusion_add(portal=portal, user_ids=[9, 10], note="asked", created_by=1)
    services.exclusion_remove(portal=portal, user_ids=[10, 11], actor_user_id=1)

    entries = _audit(portal)

    assert [(action, actor) for action, actor, _n, _d in entries] == [
        ("settings.campaigns", 1),
        ("exclusion.add", 1),
        ("exclusion.remove", 1),
    ]
    changed = entries[0][3]
    assert changed["after"]["allowed_user_ids"] == [5]
    assert changed["after"]["time_zone"] == "Europe/Berlin"
    assert changed["before"]["allowed_user_ids"] == []
    assert entries[1][3] == {"count": 2, "user_ids": [9, 10], "note": "asked"}
    assert entries[2][3] == {"count": 1, "user_ids": [10]}


def test_resuming_a_paused_scheduled_campaign_waits_for_its_start(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    at = timezone.now() + timedelta(hours=1)
    campaign = services.campaign_start(campaign=make_campaign([1, 2]), at=at)
    services.campaign_pause(campaign=campaign)

    services.campaign_resume(campaign=campaign)

    assert campaign.status == Campaign.Status.SCHEDULED and campaign.scheduled_at == at
    assert campaign.started_at is None
    drain(portal)
    assert messenger.inbox == []
    services.campaigns_recover(now=at + timedelta(seconds=1))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_resuming_a_scheduled_campaign_after_its_start_time_runs_it(
    messenger: Messenger, portal: Portal, make_campaign: MakeCampaign
):
    messenger.add_users(2)
    at = timezone.now() + timedelta(hours=1)
    campaign = services.campaign_start(campaign=make_campaign([1, 2]), at=at)
    services.campaign_pause(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now() - timedelta(1))
    campaign.refresh_from_db()

    services.campaign_resume(campaign=campaign)

    assert campaign.status == Campaign.Status.RUNNING and campaign.started_at is not None


def test_portal_time_zone_comes_from_profile_and_ignores_unknown_names(
    messenger: Messenger, portal: Portal
):
    from django.core.cache import cache

    messenger.set_time_zone("Europe/Kaliningrad")
    assert services.portal_time_zone(portal=portal) == "Europe/Kaliningrad"
    cache.clear()
    messenger.set_time_zone("Mars/Olympus")
    assert services.portal_time_zone(portal=portal) == ""
    assert services.time_zone_default(portal=portal) == ""


def test_department_tree_nests_by_parent_and_survives_orphans_and_cycles():
    rows = [
        (1, "Acme", None, 500),
        (3, "Sales", 1, 200),
        (2, "Support", 1, 100),
        (4, "North", 3, 500),
        (5, "Lost", 99, 500),  # its parent is not listed
        (6, "Loop A", 7, 500),
        (7, "Loop B", 6, 500),
    ]

    tree = aud.department_tree(rows)

    def walk(nodes: list[aud.DepartmentNode], depth: int = 0) -> list[tuple[int, int]]:
        return [p for n in nodes for p in [(n.id, depth), *walk(n.children, depth + 1)]]

    assert walk(tree) == [(1, 0), (2, 1), (3, 1), (4, 2), (5, 0), (6, 0), (7, 1)]
