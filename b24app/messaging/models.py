"""Messaging: saved open lines, deliveries, the weekly-limit ledger, drafts and templates."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils.translation import gettext_lazy as _

from b24app.portals.models import Portal

#: The server's weekly limit is a rolling 7×24 h per (portal, line, recipient) (spec §5.7).
WEEKLY_LIMIT = timedelta(days=7)


class Line(models.Model):
    """An open line (Bitrix24.Network channel) an admin saved for the portal, by its CODE."""

    class JoinStatus(models.TextChoices):
        PENDING = "pending", _("not joined yet")
        JOINED = "joined", _("joined")
        NOT_FOUND = "not_found", _("line not found")
        INACTIVE = "inactive", _("line inactive")
        FAILED = "failed", _("join failed")

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="lines")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True, default="")
    bot_id = models.PositiveIntegerField(null=True, blank=True)
    join_status = models.CharField(
        max_length=20, choices=JoinStatus.choices, default=JoinStatus.PENDING
    )
    join_error = models.CharField(max_length=300, blank=True, default="")
    joined_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "code"], name="line_unique_code_per_portal")
        ]
        ordering = ["name", "code"]

    def __str__(self) -> str:
        return self.name or self.code


class Delivery(models.Model):
    """One message to one recipient, with its payload and outcome.

    States: queued → sending → sent | limited | rejected | unknown. `sending → queued` happens
    only when the request provably never reached Bitrix. `unknown` means it may have executed
    (a timeout or reset after sending, a 5xx): it is never blindly repeated.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        LIMITED = "limited", _("weekly limit")
        REJECTED = "rejected", _("rejected")
        UNKNOWN = "unknown", _("outcome unknown")

    class Kind(models.TextChoices):
        SINGLE = "single", _("single message")
        TEST = "test", _("test to self")
        CAMPAIGN = "campaign", _("campaign")

    FINAL = (Status.SENT, Status.LIMITED, Status.REJECTED, Status.UNKNOWN)

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="deliveries")
    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="deliveries")
    user_id = models.PositiveIntegerField(help_text="Recipient's Bitrix24 user id.")
    recipient_name = models.CharField(max_length=200, blank=True, default="")
    author_user_id = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SINGLE)
    message = models.TextField()
    attach = models.JSONField(null=True, blank=True)
    keyboard = models.JSONField(null=True, blank=True)
    url_preview = models.BooleanField(default=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=60, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["portal", "-created_at"]),
            models.Index(fields=["status", "claimed_at"]),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"delivery {self.pk} to {self.user_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class LimitEntry(models.Model):
    """Our copy of the server's weekly-limit ledger: the last send per (portal, line, user).

    No REST method reads the server's ledger (spec §5.7), so every success writes a row here,
    and a USER_MESSAGE_LIMIT we did not predict writes a `server` row dated now.
    """

    class Source(models.TextChoices):
        APP = "app", _("sent by the app")
        SERVER = "server", _("reported by Bitrix24")

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="limit_entries")
    line_code = models.CharField(max_length=32)
    user_id = models.PositiveIntegerField()
    sent_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.APP)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["portal", "line_code", "user_id"], name="limit_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.line_code}/{self.user_id} at {self.sent_at:%Y-%m-%d %H:%M}"

    @property
    def next_allowed_at(self) -> datetime:
        return self.sent_at + WEEKLY_LIMIT

    def blocks(self, now: datetime) -> bool:
        """Eligible again when now ≥ sent + 7×24 h, the same rule as the server."""
        return now < self.next_allowed_at


class Draft(models.Model):
    """A user's unsent composer state, autosaved."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="drafts")
    user_id = models.PositiveIntegerField()
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "user_id"], name="draft_one_per_user")
        ]

    def __str__(self) -> str:
        return f"draft of {self.user_id}"


class Template(models.Model):
    """A reusable message (text, ATTACH, KEYBOARD) shared within a portal."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    created_by = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
