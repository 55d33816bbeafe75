"""Steps shared by the benchmarks and the reliability suite: connect a sandbox portal, make a
campaign through the campaigns services, wait for it, and audit it against the sandbox inbox.

They work with any running sandbox (a subprocess in `make bench`/`make chaos`, in-process in the
tests) through its control API, and with any Celery worker that reads the same database.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from b24app.campaigns import audience as aud
from b24app.campaigns import services
from b24app.campaigns.models import Campaign, CampaignSettings, Recipient
from b24app.messaging import services as messaging
from b24app.messaging.models import Delivery, Line
from b24app.portals.models import PacerState, Portal
from b24app.sandbox.control import ControlClient
from b24app.sandbox.directory import build_directory
from b24app.sandbox.state import LINE_CODE

MESSAGE = "Hello {NAME} {LAST_NAME}, news from the open line."
# Delivery states a recipient may end in; anything else when the campaign is over is "lost".
FINAL_STATES = frozenset(
    {
        Delivery.Status.SENT,
        Delivery.Status.LIMITED,
        Delivery.Status.REJECTED,
        Delivery.Status.UNKNOWN,
    }
)


def active_user_ids(portal_index: int, users: int, count: int, *, start: int = 1) -> list[int]:
    """The first `count` active users (id >= start) of a sandbox portal's directory.

    The directory is generated from a seed, so this process can compute what the sandbox
    process holds; inactive users would only be skipped, and a benchmark wants N sends.
    """
    directory = build_directory(portal_index, users)
    ids = [u.id for u in directory.users.values() if u.active and u.id >= start]
    if len(ids) < count:
        raise ValueError(f"portal {portal_index} has only {len(ids)} active users from {start}")
    return ids[:count]


def users_for(count: int, *, start: int = 1) -> int:
    """How many users a sandbox directory needs so that `count` of them (from `start`) are
    active (about 6 % are inactive)."""
    return int((start + count) * 1.1) + 50


def connect_portal(
    control: ControlClient,
    index: int,
    *,
    nfr: bool = False,
    rate: float | None = None,
    burst: int | None = None,
) -> Portal:
    """Install the app on sandbox portal `index` and store the portal as the install view would.

    `rate`/`burst` are the portal's plan as the app knows it (None: the settings' defaults).
    """
    reply = control.control(action="issue_token", portal=index, user=1, install_if_needed=True)
    token = reply["token"]
    info = reply["state"]["portals"][str(index)]
    now = timezone.now()
    return Portal.objects.create(
        member_id=token["member_id"],
        domain=info["domain"],
        https=False,
        client_endpoint=token["client_endpoint"],
        server_endpoint=token["server_endpoint"],
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_at=datetime.fromtimestamp(token["expires"], tz=UTC),
        scope=token.get("scope", ""),
        # Kept as a digest, as install keeps it (events and the app page are checked against it).
        application_token_hash=hashlib.sha256(info["application_token"].encode()).hexdigest(),
        token_refreshed_at=now,
        installed_at=now,
        nfr=nfr,
        rate=rate,
        burst=burst,
    )


def joined_line(portal: Portal, code: str = LINE_CODE) -> Line:
    line = messaging.line_join(portal=portal, code=code, name="News")
    if line.join_status != Line.JoinStatus.JOINED:
        raise RuntimeError(f"could not join {code}: {line.join_error}")
    return line


def campaign_for(portal: Portal, line: Line, user_ids: Iterable[int], **kwargs: Any) -> Campaign:
    """A campaign to these users, created through the service (its recipients still resolving)."""
    return services.campaign_create(
        portal=portal,
        line=line,
        name="Benchmark",
        message=MESSAGE,
        audience=aud.Audience("users", tuple(user_ids)),
        author_name="bench",
        **kwargs,
    )


def wait_until(
    check: Callable[[], bool], *, timeout: float, poll: float = 0.1, what: str = "condition"
) -> float:
    """Poll `check` until it holds; returns the seconds it took; TimeoutError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic() - started


def wait_resolved(campaign: Campaign, *, timeout: float = 300.0) -> Campaign:
    def done() -> bool:
        campaign.refresh_from_db()
        return campaign.status != Campaign.Status.RESOLVING

    wait_until(done, timeout=timeout, poll=0.2, what=f"campaign {campaign.pk} resolved")
    if campaign.status != Campaign.Status.READY:
        raise RuntimeError(f"campaign {campaign.pk} is {campaign.status}: {campaign.resolve_error}")
    return campaign


def wait_finished(
    campaigns: list[Campaign], *, timeout: float, poll: float = 0.2
) -> dict[int, float]:
    """Wait until every campaign is completed; returns monotonic finish times seen per id."""
    seen: dict[int, float] = {}
    ids = [c.pk for c in campaigns]

    def done() -> bool:
        for pk, status in Campaign.objects.filter(pk__in=ids).values_list("pk", "status"):
            if status == Campaign.Status.COMPLETED and pk not in seen:
                seen[pk] = time.monotonic()
            if status == Campaign.Status.BLOCKED:
                campaign = Campaign.objects.get(pk=pk)
                raise RuntimeError(
                    f"campaign {pk} blocked: {campaign.blocked_code} {campaign.blocked_detail}"
                )
        return len(seen) == len(ids)

    wait_until(done, timeout=timeout, poll=poll, what="campaigns completed")
    return seen


def quiesce(control: ControlClient, portals: Iterable[Portal]) -> None:
    """Start from an empty request bucket and a full execution budget, on both sides.

    The ceiling T_min assumes that start; the line joins and recipient lookups before it used a
    few requests, which a portal left alone for a while would have drained anyway.
    """
    control.control(reset_limits=True)
    ids = [p.pk for p in portals]
    PacerState.objects.filter(portal_id__in=ids).delete()
    CampaignSettings.objects.filter(portal_id__in=ids).update(next_slot_at=0.0)


def inbox(control: ControlClient, member_id: str) -> Counter[int]:
    """Messages per user in the sandbox's store for one portal."""
    return Counter(int(d["USER_ID"]) for d in control.deliveries(member_id=member_id))


@dataclass
class Audit:
    """A campaign's end state against the sandbox inbox."""

    states: dict[str, int]
    recipients: int
    sent: int
    lost: int  # recipients not in a final state (nor skipped)
    duplicates: int  # messages beyond the first for one user
    missing: int  # `sent` in the app, nothing in the inbox
    unexpected: int  # in the inbox, but the app does not say `sent` (nor `unknown`)
    retries: int  # attempts beyond the first, over all deliveries

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def audit(control: ControlClient, campaign: Campaign) -> Audit:
    """Compare the campaign's recipients with what the sandbox stored for that portal.

    Only the campaign's recipients count, so other sends to the same portal do not disturb it.
    An `unknown` recipient may or may not be in the inbox (that is what unknown means) but must
    never be there twice.
    """
    rows = list(
        Recipient.objects.filter(campaign=campaign).values_list(
            "user_id", "skip_reason", "delivery__status", "delivery__attempts"
        )
    )
    everyone = {row[0] for row in rows}
    got = inbox(control, campaign.portal.member_id)
    got = Counter({user: n for user, n in got.items() if user in everyone})
    sent = {row[0] for row in rows if row[2] == Delivery.Status.SENT}
    unknown = {row[0] for row in rows if row[2] == Delivery.Status.UNKNOWN}
    lost = sum(1 for row in rows if not row[1] and row[2] not in FINAL_STATES)
    return Audit(
        states=services.campaign_counts(campaign=campaign),
        recipients=len(rows),
        sent=len(sent),
        lost=lost,
        duplicates=sum(n - 1 for n in got.values() if n > 1),
        missing=len(sent - set(got)),
        unexpected=len(set(got) - sent - unknown),
        retries=sum(max(0, (row[3] or 1) - 1) for row in rows if row[3] is not None),
    )
