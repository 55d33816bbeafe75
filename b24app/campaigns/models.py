"""Campaigns: one message to many recipients of a portal, sent in batches by Celery.

A `Campaign` snapshots its message when it is created, so later edits to templates or lines never
change what a running campaign sends. Each recipient is a `Recipient(campaign, user_id)` row; the
message itself, once it is about to be sent, is a `messaging.Delivery` linked one-to-one, so the
state machine (queued → sending → sent | limited | rejected | unknown) lives in one place.

`Recipient.due` is the work queue: True while the recipient needs an attempt (not yet sent, sent
back to the queue because Bitrix provably did not execute it, or an `unknown` to resolve by one
resend). A partial index keeps "the next 50 due recipients of campaign X" a short index walk
however large the campaign is.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from b24app.messaging.models import Delivery, Line
from b24app.portals.models import Portal


class CampaignSettings(models.Model):
    """Per-portal campaign settings an administrator changes.

    Campaigns are for administrators until one allows named users or departments. A portal that
    answered ERROR_BATCH_METHOD_NOT_ALLOWED is remembered here and sent to one call at a time.
    """

    portal = models.OneToOneField(
        Portal, on_delete=models.CASCADE, primary_key=True, related_name="campaign_settings"
    )
    allowed_user_ids = models.JSONField(default=list, blank=True)
    allowed_department_ids = models.JSONField(default=list, blank=True)
    # The zone new campaigns suggest for their sending window; empty: the Bitrix24's own zone
    # (services.time_zone_default).
    time_zone = models.CharField(max_length=64, blank=True, default="")
    single_calls = models.BooleanField(default=False)
    single_calls_since = models.DateTimeField(null=True, blank=True)
    # Unix time of the next free send slot once the pacer makes lanes wait: each waiting lane
    # reserves its own slot, one request interval apart, instead of all waking for one token.
    next_slot_at = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "campaign settings"

    def __str__(self) -> str:
        return f"campaign settings of portal {self.portal_id}"


class Exclusion(models.Model):
    """A user who opted out: no campaign of this portal ever messages them."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="exclusions")
    user_id = models.PositiveIntegerField()
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "user_id"], name="exclusion_unique_user")
        ]
        ordering = ["user_id"]

    def __str__(self) -> str:
        return f"exclusion of {self.user_id}"


class Campaign(models.Model):
    """One message to many users, with its audience, schedule and progress."""

    class Status(models.TextChoices):
        RESOLVING = "resolving", _("finding recipients")
        DRAFT = "draft", _("draft")
        READY = "ready", _("ready to start")
        SCHEDULED = "scheduled", _("scheduled")
        RUNNING = "running", _("sending")
        PAUSED = "paused", _("paused")
        BLOCKED = "blocked", _("blocked")
        COMPLETED = "completed", _("completed")
        CANCELLED = "cancelled", _("cancelled")

    FINAL = (Status.COMPLETED, Status.CANCELLED)
    STARTABLE = (Status.READY,)

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="campaigns")
    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    author_user_id = models.PositiveIntegerField(null=True, blank=True)
    author_name = models.CharField(max_length=200, blank=True, default="")
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="duplicates"
    )

    # The message snapshot (MESSAGE may hold {NAME} and {LAST_NAME}).
    line_code = models.CharField(max_length=32)
    message = models.TextField()
    attach = models.JSONField(null=True, blank=True)
    keyboard = models.JSONField(null=True, blank=True)
    url_preview = models.BooleanField(default=True)

    # Who: {"kind": users|departments|all|csv, "user_ids": [...], "department_ids": [...],
    # "subdepartments": bool, "user_types": ["employee", ...]}
    audience = models.JSONField(default=dict)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RESOLVING)
    blocked_code = models.CharField(max_length=60, blank=True, default="")
    blocked_detail = models.CharField(max_length=500, blank=True, default="")
    autostart = models.BooleanField(
        default=False, help_text="Start as soon as the recipients are known."
    )

    # Recipient resolution progress (a Celery task, one REST request per step).
    resolve_state = models.JSONField(default=dict, blank=True)
    resolve_done = models.PositiveIntegerField(default=0)
    resolve_total = models.PositiveIntegerField(default=0)
    resolve_error = models.CharField(max_length=500, blank=True, default="")
    resolve_lease = models.DateTimeField(null=True, blank=True)

    # When: an optional scheduled start and a daily window in `time_zone`.
    scheduled_at = models.DateTimeField(null=True, blank=True)
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a batch was last taken from this campaign: lanes serve the least recent first.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every resume. A batch remembers the generation it was claimed in, and its
    # campaign-wide error blocks only that generation: a reply to a batch sent before the admin
    # fixed the cause must not block the campaign again after the resume.
    generation = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["portal", "-created_at"]),
            models.Index(fields=["status", "portal"]),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    @property
    def has_window(self) -> bool:
        return (
            self.window_start is not None
            and self.window_end is not None
            and self.window_start != self.window_end
        )

    def window_open(self, now: datetime) -> bool:
        """True when `now` falls inside the daily sending window (always, without one)."""
        if not self.has_window:
            return True
        assert self.window_start is not None and self.window_end is not None
        local = now.astimezone(self.tz).time()
        return _in_window(local, self.window_start, self.window_end)

    def window_opens_at(self, now: datetime) -> datetime:
        """The next moment the window opens (`now` when it is open)."""
        if self.window_open(now) or self.window_start is None:
            return now
        local = now.astimezone(self.tz)
        candidate = datetime.combine(local.date(), self.window_start, tzinfo=self.tz)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate


def _in_window(local: time, start: time, end: time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight, e.g. 22:00–06:00


class Recipient(models.Model):
    """One user of a campaign. Unique per campaign; its message is `delivery` once created."""

    class Skip(models.TextChoices):
        EXCLUDED = "excluded", _("on the exclusion list")
        LIMIT = "limit", _("weekly limit: already messaged from this line within 7 days")
        INACTIVE = "inactive", _("user is not active")
        NOT_FOUND = "not_found", _("no such user on this Bitrix24")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    user_id = models.PositiveIntegerField()
    name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    skip_reason = models.CharField(max_length=12, choices=Skip.choices, blank=True, default="")
    due = models.BooleanField(default=True)
    # The lane chain that last claimed this recipient (recovery finds a dead chain's rows).
    claim_token = models.CharField(max_length=32, blank=True, default="")
    resends = models.PositiveSmallIntegerField(default=0)
    delivery = models.OneToOneField(
        Delivery,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_recipient",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user_id"], name="recipient_unique_user")
        ]
        indexes = [
            models.Index(
                fields=["campaign", "id"], condition=Q(due=True), name="recipient_due_idx"
            ),
            models.Index(fields=["claim_token"], name="recipient_claim_idx"),
        ]

    def __str__(self) -> str:
        return f"recipient {self.user_id} of campaign {self.campaign_id}"

    @property
    def full_name(self) -> str:
        return f"{self.name} {self.last_name}".strip()


class Lane(models.Model):
    """One of a portal's few sending chains: the task of a lane sends one batch, then
    re-enqueues itself.

    A lane is alive while `token` is set and `lease_until` lies ahead; a task whose token no
    longer matches the row exits at once, so recovery can start a replacement chain without
    waiting for the broker to give up on the old one. `holder` names the worker that last ran
    it, so a restarted worker knows which chains died with it.
    """

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="campaign_lanes")
    slot = models.PositiveSmallIntegerField()
    token = models.CharField(max_length=32, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=200, blank=True, default="")
    wake = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "slot"], name="lane_unique_slot")]

    def __str__(self) -> str:
        return f"lane {self.slot} of portal {self.portal_id}"


class DownloadToken(models.Model):
    """A single-use, 60-second link to a report download (a plain GET cannot carry the frame
    token header, so the frame view hands out one of these instead)."""

    token_hash = models.CharField(max_length=64, unique=True)
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    status_filter = models.CharField(max_length=20, blank=True, default="")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"download of campaign {self.campaign_id}"
