"""Portal services: install, lifecycle events, iframe entry, and the single token refresher.

Every write about portals goes through here. The rule that shapes this module: a Bitrix refresh
token is single-use, so exactly one caller may spend it. `portal_token_refresh` takes the portal
row under a lock (`select_for_update()` on Postgres; on SQLite every transaction is
`BEGIN IMMEDIATE`, see settings), re-checks whether a refresh is still needed once the lock is
held, and only then calls the OAuth server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from b24app.bitrix import client, errors, oauth, pacing
from b24app.bitrix.replies import Profile, TokenSet
from b24app.portals import hosts, pacer
from b24app.portals.audit import audit_delete, audit_erase_people, audit_record
from b24app.portals.frame import FrameContext
from b24app.portals.models import PacerState, Portal, ProcessedEvent
from b24app.portals.signals import portal_uninstalled

log = logging.getLogger(__name__)

T = TypeVar("T")

# Spec §1.2: older portals send no SERVER_ENDPOINT; Bitrix's global OAuth server is the default.
DEFAULT_SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"
LIFECYCLE_EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")


class PortalError(Exception):
    """A failure the caller must show: `code` for logic, `message` for people, HTTP `status`."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class PortalUnavailable(PortalError):
    """The portal cannot be called now (uninstalled, or its tokens stopped working)."""


def _hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_matches(portal: Portal, application_token: str) -> bool:
    """Constant-time comparison of an event's application_token with the stored digest."""
    if not portal.application_token_hash or not application_token:
        return False
    return hmac.compare_digest(portal.application_token_hash, _hash_secret(application_token))


def _language(code: str) -> str:
    return "ru" if (code or "").lower().startswith("ru") else "en"


# --- Verifying what an unauthenticated POST claims ------------------------------------------------


@dataclass(frozen=True)
class VerifiedTokens:
    tokens: TokenSet
    server_endpoint: str
    client_endpoint: str
    domain: str
    https: bool


def _verify_tokens(
    *,
    access_token: str,
    refresh_token: str,
    member_id: str,
    domain: str,
    https: bool,
    server_endpoint: str,
    installed: bool,
) -> VerifiedTokens:
    """Prove that tokens handed to us by an install POST or event really are ours for this portal.

    1. `app.info` at the OAuth server's REST base (an allow-listed host) must answer for our app.
       It reports INSTALLED=false until the install page calls installFinish (spec §1.3), so the
       install POST (`installed=False`) checks only the app's identity. Events are delivered
       only after installFinish, so for them (`installed=True`) INSTALLED must be true as well.
    2. The refresh token is exchanged once at the same OAuth server. Its reply is authoritative
       for `member_id` and `client_endpoint`, which must match what the POST claimed; otherwise a
       caller holding tokens of their own portal could overwrite another portal's row.
    """
    try:
        portal_endpoint = hosts.portal_endpoint(domain, https=https)
        oauth_rest = hosts.oauth_endpoint(server_endpoint or DEFAULT_SERVER_ENDPOINT)
    except hosts.HostNotAllowed as exc:
        raise PortalError("HOST_NOT_ALLOWED", str(exc), 400) from exc
    try:
        info = client.app_info(client.Connection(endpoint=oauth_rest, access_token=access_token))
    except errors.BitrixError as exc:
        raise PortalError("TOKEN_NOT_CONFIRMED", _("Bitrix24 did not confirm the token.")) from exc
    # Uncertain [spec §5.9]: for a local app app.info's CODE equals the client id; a Market app
    # may report its own code, so B24_APP_CODE can be set to that value.
    expected = settings.B24_APP_CODE or settings.B24_CLIENT_ID
    if info.code != expected:
        raise PortalError("FOREIGN_APP", _("The token belongs to another application."))
    if installed and not info.installed:
        raise PortalError("NOT_INSTALLED", _("The app is not installed on this Bitrix24."))
    try:
        tokens = oauth.refresh_tokens(
            token_url=oauth.token_url_for(oauth_rest),
            client_id=settings.B24_CLIENT_ID,
            client_secret=settings.B24_CLIENT_SECRET,
            refresh_token=refresh_token,
        )
    except errors.BitrixError as exc:
        raise PortalError("TOKEN_NOT_CONFIRMED", _("Bitrix24 did not confirm the token.")) from exc
    if tokens.member_id != member_id or hosts.endpoint_domain(tokens.client_endpoint) != domain:
        raise PortalError("PORTAL_MISMATCH", _("The token belongs to another Bitrix24."))
    return VerifiedTokens(
        tokens=tokens,
        server_endpoint=oauth_rest,
        client_endpoint=portal_endpoint,
        domain=domain,
        https=https,
    )


def _store_tokens(portal: Portal, tokens: TokenSet) -> None:
    portal.access_token = tokens.access_token
    portal.refresh_token = tokens.refresh_token
    portal.expires_at = tokens.expires_at
    portal.scope = tokens.scope or portal.scope
    portal.app_status = tokens.status or portal.app_status
    portal.token_refreshed_at = timezone.now()


def _upsert(
    verified: VerifiedTokens, *, member_id: str, application_token: str, language: str, **extra: Any
) -> Portal:
    """Create or update the portal row for `member_id` (install is idempotent)."""
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(member_id=member_id).first()
        if portal is None:
            portal = Portal(member_id=member_id)
        portal.domain = verified.domain
        portal.https = verified.https
        portal.client_endpoint = verified.client_endpoint
        portal.server_endpoint = verified.server_endpoint
        _store_tokens(portal, verified.tokens)
        if application_token:
            portal.application_token_hash = _hash_secret(application_token)
        portal.status = Portal.Status.ACTIVE
        portal.status_reason = ""
        portal.language = language
        portal.uninstalled_at = None
        portal.installed_at = portal.installed_at or timezone.now()
        for key, value in extra.items():
            setattr(portal, key, value)
        portal.save()
    return portal


# --- Install ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallResult:
    portal: Portal
    frame: FrameContext
    events_bound: tuple[str, ...]


def portal_install(
    *,
    member_id: str,
    domain: str,
    https: bool,
    language: str,
    auth_id: str,
    refresh_id: str,
    server_endpoint: str = "",
    application_token: str = "",
) -> InstallResult:
    """Handle the installer POST (spec §1.2–1.3): verify, upsert by member_id, bind events.

    Raises PortalError when the POST cannot be trusted; nothing is stored then.
    """
    verified = _verify_tokens(
        access_token=auth_id,
        refresh_token=refresh_id,
        member_id=member_id,
        domain=domain,
        https=https,
        server_endpoint=server_endpoint,
        installed=False,  # INSTALLED stays false until this page calls installFinish
    )
    conn = client.Connection(
        endpoint=verified.client_endpoint, access_token=verified.tokens.access_token
    )
    try:
        profile = client.profile(conn)
    except errors.BitrixError as exc:
        raise PortalError("TOKEN_NOT_CONFIRMED", _("Bitrix24 did not confirm the token.")) from exc
    portal = _upsert(
        verified,
        member_id=member_id,
        application_token=application_token,
        language=_language(language),
        installer_user_id=profile.id,
        installer_name=f"{profile.name} {profile.last_name}".strip(),
    )
    bound = portal_events_bind(portal=portal)
    audit_record(
        portal=portal,
        action="portal.install",
        actor_user_id=profile.id,
        actor_name=portal.installer_name,
        target=portal.domain,
    )
    frame = FrameContext(
        portal=portal,
        user_id=profile.id,
        admin=profile.admin,
        language=_language(language),
        user_name=f"{profile.name} {profile.last_name}".strip(),
    )
    return InstallResult(portal=portal, frame=frame, events_bound=bound)


def events_handler_url() -> str:
    return f"{settings.B24_APP_URL}{reverse('portals:events')}"


def portal_events_bind(*, portal: Portal) -> tuple[str, ...]:
    """Bind the lifecycle events to our handler; an existing binding counts as success."""
    handler = events_handler_url()
    for event in LIFECYCLE_EVENTS:
        portal_call(portal, client.event_bind, event=event, handler=handler)
    return LIFECYCLE_EVENTS


# --- Lifecycle events -------------------------------------------------------------------------


def _fingerprint(event: str, data: Mapping[str, Any], auth: Mapping[str, Any], ts: str) -> str:
    parts = [event, str(auth.get("member_id", "")), ts, str(auth.get("application_token", ""))]
    parts += [f"{k}={data[k]}" for k in sorted(data)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def portal_event_receive(
    *, event: str, data: Mapping[str, Any], auth: Mapping[str, Any], ts: str
) -> str:
    """Apply ONAPPINSTALL / ONAPPUPDATE / ONAPPUNINSTALL (spec §1.4). Returns what happened.

    A repeated delivery of the same event is recognised and changes nothing. Raises PortalError
    (403 for a secret mismatch, 400 for malformed input) and then nothing is stored.
    """
    event = event.upper()
    member_id = str(auth.get("member_id") or "")
    application_token = str(auth.get("application_token") or "")
    if event not in LIFECYCLE_EVENTS:
        raise PortalError("UNKNOWN_EVENT", f"event {event!r} is not handled", 400)
    if not member_id or not application_token:
        raise PortalError("MALFORMED", "auth[member_id] and auth[application_token] required", 400)
    fingerprint = _fingerprint(event, data, auth, ts)
    if ProcessedEvent.objects.filter(fingerprint=fingerprint).exists():
        return "duplicate"
    portal = Portal.objects.filter(member_id=member_id).first()

    if event == "ONAPPUNINSTALL":
        # It carries no usable token: the stored secret is the only proof (spec §1.4).
        if portal is None or not _secret_matches(portal, application_token):
            log.warning("ONAPPUNINSTALL refused: application_token mismatch for a portal")
            raise PortalError("FORBIDDEN", "application_token does not match", 403)
        clean = str(data.get("CLEAN", "0")) in ("1", "Y", "true")
        with transaction.atomic():
            portal_uninstall(portal=portal, clean=clean)
            ProcessedEvent.objects.create(member_id=member_id, fingerprint=fingerprint, event=event)
        return "uninstalled"

    if (
        portal is not None
        and portal.is_active
        and event == "ONAPPINSTALL"
        and _secret_matches(portal, application_token)
    ):
        # The installer POST already stored and verified everything.
        ProcessedEvent.objects.get_or_create(
            fingerprint=fingerprint, defaults={"member_id": member_id, "event": event}
        )
        return "confirmed"

    for key in ("access_token", "refresh_token", "domain"):
        if not auth.get(key):
            raise PortalError("MALFORMED", f"auth[{key}] is required for {event}", 400)
    endpoint = str(auth.get("client_endpoint") or "")
    https = not endpoint.startswith("http://")
    verified = _verify_tokens(
        access_token=str(auth["access_token"]),
        refresh_token=str(auth["refresh_token"]),
        member_id=member_id,
        domain=str(auth["domain"]).lower(),
        https=https,
        server_endpoint=str(auth.get("server_endpoint") or ""),
        installed=True,  # events are delivered only after installFinish (spec §1.3)
    )
    extra: dict[str, Any] = {}
    if data.get("VERSION"):
        extra["app_version"] = str(data["VERSION"])[:40]
    if auth.get("user_id") and event == "ONAPPINSTALL":
        extra["installer_user_id"] = int(auth["user_id"])
    with transaction.atomic():
        portal = _upsert(
            verified,
            member_id=member_id,
            application_token=application_token,
            language=_language(str(data.get("LANGUAGE_ID", ""))),
            **extra,
        )
        ProcessedEvent.objects.get_or_create(
            fingerprint=fingerprint, defaults={"member_id": member_id, "event": event}
        )
        audit_record(
            portal=portal,
            action=f"event.{event.lower()}",
            details={"version": extra.get("app_version", "")},
        )
    return "installed" if event == "ONAPPINSTALL" else "updated"


def portal_uninstall(*, portal: Portal, clean: bool) -> None:
    """Mark the portal uninstalled; erase its tokens and users' personal data, whatever `clean`.

    Always: the tokens, the installer's name and the names in the audit log go here, and the
    `portal_uninstalled` receivers of the other apps erase theirs (messaging: recipients' names,
    delivered message contents and drafts; campaigns: recipients' names) and stop the portal's
    work. With `clean` (the admin ticked "delete application settings and data", spec §1.4)
    the receivers also delete templates, deliveries, lines, the weekly ledger and campaigns, and
    the audit log is deleted here. The portal row and its application_token digest stay, so a
    repeated event is still recognised, and the ledger of processed events stays for the same
    reason. Everything happens in one transaction: it all happens or none of it does.
    """
    with transaction.atomic():
        portal.status = Portal.Status.UNINSTALLED
        portal.status_reason = "uninstalled"
        portal.access_token = ""
        portal.refresh_token = ""
        portal.expires_at = None
        portal.installer_name = ""
        portal.uninstalled_at = timezone.now()
        portal.save()
        portal_uninstalled.send(sender=Portal, portal=portal, clean=clean)
        if clean:
            audit_delete(portal=portal)
            log.info("portal %s uninstalled; its data was deleted", portal.pk)
        else:
            audit_erase_people(portal=portal)
            audit_record(
                portal=portal,
                action="portal.uninstall",
                target=portal.domain,
                details={"clean": False},
            )


# --- Iframe entry ---------------------------------------------------------------------------------


def portal_enter(
    *,
    member_id: str,
    domain: str,
    https: bool,
    language: str,
    auth_id: str,
    refresh_id: str = "",
    application_token: str = "",
) -> FrameContext:
    """Identify the portal and user opening the app (spec §1.2, placement DEFAULT).

    The opener's AUTH_ID only identifies the user (`profile`, which also tells whether they are
    an admin); it is not stored, except that an admin opening an auth_failed portal re-seeds the
    portal's token pair with their own tokens.
    """
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None or portal.status == Portal.Status.UNINSTALLED:
        raise PortalError("NOT_INSTALLED", _("The app is not installed on this Bitrix24."), 403)
    if portal.domain != domain.lower():
        raise PortalError("DOMAIN_MISMATCH", _("This Bitrix24 address is not the one installed."))
    if (
        application_token
        and portal.application_token_hash
        and not _secret_matches(portal, application_token)
    ):
        raise PortalError("FORBIDDEN", _("application_token does not match"), 403)
    try:
        endpoint = hosts.portal_endpoint(domain, https=https)
    except hosts.HostNotAllowed as exc:
        raise PortalError("HOST_NOT_ALLOWED", str(exc), 400) from exc
    try:
        profile: Profile = client.profile(
            client.Connection(endpoint=endpoint, access_token=auth_id)
        )
    except errors.BitrixError as exc:
        raise PortalError(
            "TOKEN_NOT_CONFIRMED", _("Bitrix24 did not confirm who you are.")
        ) from exc
    if portal.status == Portal.Status.AUTH_FAILED and profile.admin and refresh_id:
        verified = _verify_tokens(
            access_token=auth_id,
            refresh_token=refresh_id,
            member_id=member_id,
            domain=portal.domain,
            https=portal.https,
            server_endpoint=portal.server_endpoint,
            installed=True,  # Bitrix opens the app page only after installFinish (spec §1.3)
        )
        portal = _upsert(
            verified, member_id=member_id, application_token="", language=portal.language
        )
        log.info("portal %s re-seeded by an administrator", portal.pk)
        audit_record(
            portal=portal,
            action="portal.reconnect",
            actor_user_id=profile.id,
            actor_name=f"{profile.name} {profile.last_name}".strip(),
        )
    name = f"{profile.name} {profile.last_name}".strip()
    return FrameContext(
        portal=portal,
        user_id=profile.id,
        admin=profile.admin,
        language=_language(language),
        user_name=name,
    )


# --- Tokens -------------------------------------------------------------------------------


def _mark_failed(portal_id: int, reason: str) -> None:
    Portal.objects.filter(pk=portal_id, status=Portal.Status.ACTIVE).update(
        status=Portal.Status.AUTH_FAILED, status_reason=reason[:200]
    )


def portal_token_refresh(
    *,
    portal_id: int,
    stale_token: str | None = None,
    idle_before: datetime | None = None,
    now: datetime | None = None,
) -> Portal:
    """Refresh the portal's token pair if, once the row is locked, it still needs it.

    - default: refresh when the access token is (nearly) expired;
    - `stale_token`: refresh when the stored access token is still the one Bitrix just refused
      (another worker may already have replaced it);
    - `idle_before`: refresh when the last refresh is older than that (beat, idle portals).

    A genuine `invalid_grant` marks the portal auth_failed and raises PortalUnavailable.
    Transient OAuth failures propagate as RetryLater/Unknown and change nothing.
    """
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(pk=portal_id)
        now = now or timezone.now()
        if portal.status != Portal.Status.ACTIVE or not portal.refresh_token:
            raise PortalUnavailable("AUTH_FAILED", _("The app must be reconnected by an admin."))
        if stale_token is not None:
            needed = portal.access_token == stale_token
        elif idle_before is not None:
            needed = portal.token_refreshed_at is None or portal.token_refreshed_at < idle_before
        else:
            needed = not portal.token_is_fresh(now)
        if not needed:
            return portal
        try:
            tokens = oauth.refresh_tokens(
                token_url=oauth.token_url_for(portal.server_endpoint),
                client_id=settings.B24_CLIENT_ID,
                client_secret=settings.B24_CLIENT_SECRET,
                refresh_token=portal.refresh_token,
            )
        except errors.Rejected as exc:
            rejected = exc
        else:
            _store_tokens(portal, tokens)
            portal.save()
            return portal
    # Marked outside the transaction above: raising inside it would roll the mark back.
    _mark_failed(portal_id, rejected.code)
    log.warning("portal %s: token refresh rejected (%s)", portal_id, rejected.code)
    raise PortalUnavailable(
        "AUTH_FAILED", _("Bitrix24 refused the app's tokens; an admin must reopen the app.")
    ) from rejected


def portal_call(portal: Portal, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Call a `bitrix.client` function for `portal` with a fresh token.

    On `AuthExpired` the token is refreshed once (under the lock) and the call repeated once:
    an auth failure proves the first call did not execute, so repeating a write is safe.
    Portal-fatal rejections (PORTAL_DELETED, PAYMENT_REQUIRED) mark the portal.
    """
    if not portal.is_active:
        raise PortalUnavailable("AUTH_FAILED", _("The app must be reconnected by an admin."))
    if not portal.token_is_fresh(timezone.now()):
        portal = portal_token_refresh(portal_id=portal.pk)
    token = portal.access_token
    try:
        return fn(client.Connection(endpoint=portal.client_endpoint, access_token=token), **kwargs)
    except errors.AuthExpired:
        portal = portal_token_refresh(portal_id=portal.pk, stale_token=token)
    except errors.Rejected as exc:
        if exc.portal_fatal:
            _mark_failed(portal.pk, exc.code)
        raise
    try:
        return fn(
            client.Connection(endpoint=portal.client_endpoint, access_token=portal.access_token),
            **kwargs,
        )
    except errors.AuthExpired as exc:
        _mark_failed(portal.pk, exc.code)
        raise PortalUnavailable(
            "AUTH_FAILED", _("Bitrix24 refused the app's tokens; an admin must reopen the app.")
        ) from exc


def portals_refresh_idle(*, now: datetime | None = None) -> int:
    """Refresh portals idle long enough that their refresh token could lapse (spec §2.2).

    Runs on beat. Only portals whose last refresh is older than B24_REFRESH_IDLE_DAYS are
    touched, never on a short fixed schedule (Bitrix warns against that). Returns the count.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.B24_REFRESH_IDLE_DAYS)
    ids = list(
        Portal.objects.filter(
            status=Portal.Status.ACTIVE, token_refreshed_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    done = 0
    for portal_id in ids:
        try:
            portal_token_refresh(portal_id=portal_id, idle_before=cutoff, now=now)
            done += 1
        except (PortalUnavailable, errors.BitrixError) as exc:
            log.warning("idle refresh of portal %s failed: %s", portal_id, type(exc).__name__)
    return done


# --- Settings and status (admins) -----------------------------------------------------------


def portal_settings_update(
    *,
    portal: Portal,
    nfr: bool,
    rate: float | None,
    burst: int | None,
    actor_user_id: int,
    actor_name: str = "",
) -> Portal:
    """Change the portal's NFR flag and plan limits; recorded in the audit log."""
    before = {"nfr": portal.nfr, "rate": portal.rate, "burst": portal.burst}
    portal.nfr, portal.rate, portal.burst = nfr, rate, burst
    portal.save(update_fields=["nfr", "rate", "burst", "updated_at"])
    after = {"nfr": nfr, "rate": rate, "burst": burst}
    if before != after:
        audit_record(
            portal=portal,
            action="settings.portal",
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            details={"before": before, "after": after},
        )
    return portal


@dataclass(frozen=True)
class PortalHealth:
    """What the status page shows about the connection and pacing."""

    status: str
    reason: str
    token_expires_at: datetime | None
    token_refreshed_at: datetime | None
    refresh_due_at: datetime | None
    bucket_level: float
    bucket_capacity: int
    rate: float
    budgets: list[dict[str, Any]]


def portal_health(*, portal: Portal, now: datetime | None = None) -> PortalHealth:
    """Token health and the pacer's current state for one portal."""
    now = now or timezone.now()
    limits = pacer.limits_for(portal)
    state = PacerState.objects.filter(portal=portal).first()
    level = 0.0
    budgets: list[dict[str, Any]] = []
    if state is not None:
        clock = time.time()
        level = pacing.drained(
            pacing.BucketState(level=state.level, updated_at=state.updated_at), clock, limits
        )
        for method, row in sorted(state.budgets.items()):
            budget = pacing.OperatingState.from_row(row)
            live = budget.reset_at > clock
            budgets.append(
                {
                    "method": method,
                    "used_s": round(budget.used_s if live else 0.0, 1),
                    "budget_s": limits.op_budget_s,
                    "resets_at": (
                        datetime.fromtimestamp(budget.reset_at, tz=UTC) if live else None
                    ),
                }
            )
    due = None
    if portal.token_refreshed_at:
        due = portal.token_refreshed_at + timedelta(days=settings.B24_REFRESH_IDLE_DAYS)
    return PortalHealth(
        status=portal.status,
        reason=portal.status_reason,
        token_expires_at=portal.expires_at,
        token_refreshed_at=portal.token_refreshed_at,
        refresh_due_at=due,
        bucket_level=round(level, 1),
        bucket_capacity=limits.burst,
        rate=limits.rate,
        budgets=budgets,
    )
