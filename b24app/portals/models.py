"""Portals: one row per Bitrix24 account that installed the app."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils.translation import gettext_lazy as _

from b24app.portals.crypto import EncryptedTextField


class Portal(models.Model):
    """A Bitrix24 portal and the one service token pair the app keeps for it (the installer's).

    `member_id` is Bitrix's stable portal id (it survives a domain change), so it is the key that
    install upserts by. Tokens are encrypted at rest; the per-portal event secret
    (`application_token`) is kept only as a SHA-256 digest, which is all event checks need.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        AUTH_FAILED = "auth_failed", _("auth failed")
        UNINSTALLED = "uninstalled", _("uninstalled")

    member_id = models.CharField(max_length=64, unique=True)
    domain = models.CharField(max_length=255)
    https = models.BooleanField(default=True)
    client_endpoint = models.CharField(max_length=300)
    server_endpoint = models.CharField(max_length=300)

    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    scope = models.CharField(max_length=500, blank=True, default="")
    application_token_hash = models.CharField(max_length=64, blank=True, default="")

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=200, blank=True, default="")
    language = models.CharField(max_length=8, default="en")
    app_status = models.CharField(max_length=2, blank=True, default="")
    app_version = models.CharField(max_length=40, blank=True, default="")
    installer_user_id = models.PositiveIntegerField(null=True, blank=True)
    installer_name = models.CharField(max_length=200, blank=True, default="")

    # Settings an admin can change.
    nfr = models.BooleanField(
        default=False, help_text="Partner NFR licence: no weekly per-recipient limit."
    )
    rate = models.FloatField(null=True, blank=True, help_text="Requests per second (plan).")
    burst = models.PositiveIntegerField(null=True, blank=True, help_text="Request burst (plan).")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    installed_at = models.DateTimeField(null=True, blank=True)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    token_refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "token_refreshed_at"])]

    def __str__(self) -> str:
        return self.domain

    @property
    def origin(self) -> str:
        """The portal's web origin, e.g. `https://acme.bitrix24.de`."""
        return f"{'https' if self.https else 'http'}://{self.domain}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def token_is_fresh(self, now: datetime, margin: timedelta = timedelta(seconds=60)) -> bool:
        """True when the stored access token is still good for at least `margin`."""
        return (
            bool(self.access_token)
            and self.expires_at is not None
            and (self.expires_at - margin > now)
        )


class ProcessedEvent(models.Model):
    """Events already applied, so a second delivery of the same event changes nothing."""

    member_id = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64, unique=True)
    event = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event} {self.member_id}"


class PacerState(models.Model):
    """The shared pacing state of one portal (spec §4), updated under a row lock.

    `level`/`updated_at` are the request bucket; `budgets` maps a REST method to
    `[used_s, reset_at, request_cost_s, [grant times in flight]]`: its execution time as Bitrix
    last reported it, what one request was last seen to cost, and the requests not yet answered
    (rows written before the last two existed hold only the first two).
    """

    portal = models.OneToOneField(
        Portal, on_delete=models.CASCADE, primary_key=True, related_name="pacer"
    )
    level = models.FloatField(default=0.0)
    updated_at = models.FloatField(default=0.0)
    budgets = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"pacer of portal {self.portal_id}"


class AuditEntry(models.Model):
    """Who did what on a portal: sends, setting changes, installs, uninstalls, reconnects."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="audit_entries")
    actor_user_id = models.PositiveIntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["portal", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
