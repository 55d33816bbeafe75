"""End to end: a real Celery worker subprocess sends campaigns to the sandbox over HTTP.

These tests use their own sandbox instance (ports 8170-8172) with 5 200 users per portal, since
the shared test sandbox has only 300. Rates are raised through the control API wherever a test is
not about pacing, so the suite stays quick.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from b24app.campaigns import audience as aud
from b24app.campaigns import services
from b24app.campaigns.models import Campaign, Recipient
from b24app.messaging import services as messaging
from b24app.messaging.models import Delivery, Line
from b24app.portals.models import Portal
from b24app.sandbox.control import ControlClient
from b24app.sandbox.server import SandboxServer
from b24app.sandbox.state import LINE_CODE, LINE_CODE_2
from tests.plugins.sandbox import app_sandbox
from tests.plugins.worker import WorkerControl

pytestmark = [
    pytest.mark.worker,
    pytest.mark.sandbox,
    pytest.mark.django_db(transaction=True),
]

HUB_PORT = 8170
USERS = 5200
FAST = {"rate": 50.0, "burst": 500}
# The embedded broker hands a worker about one task per pool process per poll (once a second),
# so where a test is not about the worker's size, four processes keep it short.
CONCURRENCY = 4


@pytest.fixture(scope="session")
def campaign_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(app_sandbox(base_port=HUB_PORT, users=USERS))
    try:
        server.start()
    except OSError as exc:
        pytest.skip(f"sandbox ports {HUB_PORT}+ are busy: {exc}")
    yield server
    server.stop()


@dataclass
class World:
    sandbox: SandboxServer
    control: ControlClient
    worker: WorkerControl

    def connect(self, index: int, *, nfr: bool = False, **limits: Any) -> Portal:
        """Install the app on sandbox portal `index` and store the portal as install would."""
        limits = {**FAST, **limits}
        self.control.control(portal=index, nfr=nfr, **limits)
        token = self.control.control(
            action="issue_token", portal=index, user=1, install_if_needed=True
        )["token"]
        now = timezone.now()
        return Portal.objects.create(
            member_id=token["member_id"],
            domain=self.sandbox.sandbox.portal(index).domain,
            https=False,
            client_endpoint=token["client_endpoint"],
            server_endpoint=token["server_endpoint"],
            access_token=token["access_token"],
            refresh_token=token["refresh_token"],
            expires_at=datetime.fromtimestamp(token["expires"], tz=UTC),
            token_refreshed_at=now,
            installed_at=now,
            nfr=nfr,
            rate=limits["rate"],
            burst=limits["burst"],
        )

    def inbox(self, portal: Portal) -> Counter[int]:
        return Counter(
            int(d["USER_ID"]) for d in self.control.deliveries(member_id=portal.member_id)
        )


@pytest.fixture
def world(campaign_sandbox: SandboxServer, celery_worker: WorkerControl, settings: Any) -> World:
    control = ControlClient(campaign_sandbox.sandbox.hub_url)
    control.reset()
    control.control(event_delay_ms=0)
    celery_worker.base_env.update(
        B24_CLIENT_ID="local.b24app.sandbox",
        B24_CLIENT_SECRET="sandbox-client-secret-0123456789",
        B24_REQUEST_TIMEOUT="5",
    )
    return World(sandbox=campaign_sandbox, control=control, worker=celery_worker)


def joined_line(portal: Portal, code: str = LINE_CODE) -> Line:
    line = messaging.line_join(portal=portal, code=code, name="News")
    assert line.join_status == Line.JoinStatus.JOINED, line.join_error
    return line


def create(portal: Portal, line: Line, user_ids: list[int], **kwargs: Any) -> Campaign:
    return services.campaign_create(
        portal=portal,
        line=line,
        name="Outreach",
        message="Hello {NAME} {LAST_NAME}, news from the open line.",
        audience=aud.Audience("users", tuple(user_ids)),
        **kwargs,
    )


def wait_for(
    campaign: Campaign, until: Callable[[Campaign], bool], timeout: float, poll: float = 0.05
) -> float:
    started = time.monotonic()
    while True:
        campaign.refresh_from_db()
        if until(campaign):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            counts = services.campaign_counts(campaign=campaign)
            raise AssertionError(f"timed out: {campaign.status} {counts}")
        time.sleep(poll)


def resolved(campaign: Campaign, timeout: float = 60.0) -> Campaign:
    wait_for(campaign, lambda c: c.status != Campaign.Status.RESOLVING, timeout, poll=0.1)
    assert campaign.status == Campaign.Status.READY, campaign.resolve_error
    return campaign


def finished(campaign: Campaign, timeout: float) -> float:
    return wait_for(campaign, lambda c: c.status == Campaign.Status.COMPLETED, timeout)


def assert_exactly_once(world: World, portal: Portal, campaign: Campaign) -> dict[str, int]:
    counts = services.campaign_counts(campaign=campaign)
    assert counts["queued"] == counts["sending"] == 0, counts
    sent = set(
        Recipient.objects.filter(
            campaign=campaign, delivery__status=Delivery.Status.SENT
        ).values_list("user_id", flat=True)
    )
    everyone = set(Recipient.objects.filter(campaign=campaign).values_list("user_id", flat=True))
    inbox = Counter({user: n for user, n in world.inbox(portal).items() if user in everyone})
    assert [user for user, n in inbox.items() if n > 1] == []  # no duplicates
    assert set(inbox) == sent  # one message per sent recipient, none for anyone else
    return counts


def test_2000_recipient_campaign_completes_exactly_once(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    portal = world.connect(1)
    campaign = resolved(create(portal, joined_line(portal), list(range(1, 2001))))

    services.campaign_start(campaign=campaign)
    finished(campaign, timeout=90)

    counts = assert_exactly_once(world, portal, campaign)
    assert sum(counts.values()) == 2000
    assert counts["sent"] > 1800 and counts["unknown"] == 0
    assert (
        counts["skipped"]
        == Recipient.objects.filter(campaign=campaign, skip_reason=Recipient.Skip.INACTIVE).count()
    )


def test_worker_killed_mid_run_and_restarted_still_sends_exactly_once(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    portal = world.connect(1, rate=20.0, burst=60)  # slower, so the kill lands mid-run
    campaign = resolved(create(portal, joined_line(portal), list(range(1, 2001))))

    services.campaign_start(campaign=campaign)
    wait_for(
        campaign,
        lambda c: Recipient.objects.filter(campaign=c, delivery__isnull=False).count() >= 500,
        timeout=60,
        poll=0.02,
    )
    world.worker.kill()
    in_flight = services.campaign_counts(campaign=campaign)["sending"]
    world.worker.restart()
    finished(campaign, timeout=120)

    counts = assert_exactly_once(world, portal, campaign)
    assert counts["unknown"] == 0  # the weekly limit settled every interrupted send
    assert sum(counts.values()) == 2000
    print(f"in flight at the kill: {in_flight}; final: {counts}")


def test_campaign_wide_error_blocks_and_resumes(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    portal = world.connect(1)
    # Saved as joined, but the portal never joined it: every message answers NOT_FOUND.
    line = Line.objects.create(
        portal=portal, code=LINE_CODE_2, name="Other", join_status=Line.JoinStatus.JOINED
    )
    campaign = resolved(create(portal, line, list(range(10, 130))))

    services.campaign_start(campaign=campaign)
    wait_for(
        campaign,
        lambda c: (
            c.status == Campaign.Status.BLOCKED
            and not services.campaign_counts(campaign=c)["sending"]
        ),  # batches in flight recorded
        timeout=30,
    )

    counts = services.campaign_counts(campaign=campaign)
    assert campaign.blocked_code == "NOT_FOUND"
    assert counts["rejected"] == 0 and counts["sent"] == 0
    assert counts["queued"] + counts["skipped"] == 120
    assert world.inbox(portal) == Counter()

    services.campaign_resume(campaign=campaign)  # the admin's resume joins the line first
    finished(campaign, timeout=30)
    counts = assert_exactly_once(world, portal, campaign)
    assert counts["sent"] > 100


def test_small_campaign_is_not_stuck_behind_another_portals_big_one(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    big_portal = world.connect(1)
    small_portal = world.connect(2)
    big_line, small_line = joined_line(big_portal), joined_line(small_portal)
    solo = resolved(create(small_portal, small_line, list(range(1, 51))))
    big = resolved(create(big_portal, big_line, list(range(1, 5001))), timeout=120)
    small = resolved(create(small_portal, small_line, list(range(51, 101))))

    services.campaign_start(campaign=solo)
    solo_time = finished(solo, timeout=30)

    services.campaign_start(campaign=big)
    time.sleep(1.0)
    services.campaign_start(campaign=small)
    shared_time = finished(small, timeout=30)

    big.refresh_from_db()
    big_done = services.campaign_counts(campaign=big)["sent"]
    print(f"solo {solo_time:.2f} s, beside the big one {shared_time:.2f} s; big sent {big_done}")
    assert big.status == Campaign.Status.RUNNING  # the big one was still going
    assert shared_time <= solo_time + 3.0
    finished(big, timeout=180)
    assert_exactly_once(world, big_portal, big)
    assert_exactly_once(world, small_portal, small)


def test_campaign_send_command_joins_the_line_and_waits_for_the_summary(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    portal = world.connect(2)
    out = io.StringIO()

    call_command(
        "campaign_send",
        "--portal", portal.domain,
        "--line", LINE_CODE_2,
        "--message", "Hi {NAME}",
        "--users", "1,2,3,6",
        "--wait",
        stdout=out,
    )  # fmt: skip

    lines = out.getvalue().strip().splitlines()
    assert lines[-1].startswith("campaign ") and "completed" in lines[-1]
    assert "sent 3" in lines[-1] and "skipped 1" in lines[-1]
    assert Line.objects.get(portal=portal, code=LINE_CODE_2).join_status == "joined"
    assert set(world.inbox(portal)) == {1, 2, 3}


def test_replies_lost_after_delivery_are_settled_without_duplicates(world: World):
    world.worker.start(concurrency=CONCURRENCY)
    limited = world.connect(1)
    nfr = world.connect(2, nfr=True)
    for index in (1, 2):  # a batch is stored, then the connection drops before the reply
        world.control.control(portal=index, drop_after_next=1)
    on_limit = resolved(create(limited, joined_line(limited), list(range(1, 501))))
    on_nfr = resolved(create(nfr, joined_line(nfr), list(range(1, 501))))

    services.campaign_start(campaign=on_limit)
    services.campaign_start(campaign=on_nfr)
    finished(on_limit, timeout=60)
    finished(on_nfr, timeout=60)

    # Weekly limit: every unknown was resent once and the limit proved where it had landed.
    counts = assert_exactly_once(world, limited, on_limit)
    assert counts["unknown"] == 0
    # NFR: nothing can prove it, so unknowns stay for a person, and nothing is sent twice.
    everyone = set(Recipient.objects.filter(campaign=on_nfr).values_list("user_id", flat=True))
    inbox = world.inbox(nfr)
    assert all(n == 1 for user, n in inbox.items() if user in everyone)
    nfr_counts = services.campaign_counts(campaign=on_nfr)
    assert nfr_counts["unknown"] == 50 and nfr_counts["queued"] == nfr_counts["sending"] == 0
    unknown_users = set(
        Recipient.objects.filter(
            campaign=on_nfr, delivery__status=Delivery.Status.UNKNOWN
        ).values_list("user_id", flat=True)
    )
    assert unknown_users <= set(inbox)  # each one did land: the reply was what got lost
