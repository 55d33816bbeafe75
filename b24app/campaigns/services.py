"""Campaign services: create, resolve recipients, start/pause/resume/cancel, send, recover.

How sending works
-----------------
Each portal has a few *lanes* (`Lane` rows). A lane is a chain of Celery tasks: one task takes
one batch of up to 50 due recipients from the portal's running campaigns (least recently served
first), sends them as one `batch` request paced by the shared per-portal pacer, records the
outcomes, and re-enqueues itself. It never sleeps: when the pacer says "wait", the task
re-enqueues itself with that countdown. Because a portal has a fixed, small number of chains in
the broker, however big its campaigns are, portals are served in turn and a small campaign on
portal B never queues behind portal A's hundred thousand recipients.

Exactly once
------------
- Claims are conditional updates inside one write transaction (`BEGIN IMMEDIATE` on SQLite,
  `FOR UPDATE SKIP LOCKED` on Postgres): due recipients → not due, then their deliveries
  `queued → sending`. Only the claimant sends.
- The HTTP request happens outside any transaction; its outcome is written only to rows that are
  still `sending`.
- `sending → queued` only when Bitrix provably did not execute the call (connection refused,
  QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT, a sub-call with a retryable code, an auth failure,
  a refusal of the whole campaign). Anything else that leaves the outcome open is `unknown`.
- `unknown` where the weekly limit applies: the message is sent once more. The server writes its
  limit row right after a successful send, so USER_MESSAGE_LIMIT on that second attempt proves
  that the first one landed (→ `sent`); success proves it did not (→ `sent` now). On NFR portals
  there is no limit to prove anything, so `unknown` stays for a person to decide.
- Recovery never waits for the broker to redeliver: on worker start and every 30 s on beat,
  `campaigns_recover` resolves `sending` rows older than the request timeout by the rules above and
  restarts lanes whose lease ran out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import secrets
import time as _time
import uuid
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import BooleanField, Count, Exists, F, OuterRef, Q, Value
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from b24app.bitrix import client, errors, replies
from b24app.campaigns import audience as aud
from b24app.campaigns.models import (
    Campaign,
    CampaignSettings,
    DownloadToken,
    Exclusion,
    Lane,
    Recipient,
)
from b24app.messaging import payload
from b24app.messaging import services as messaging
from b24app.messaging.models import WEEKLY_LIMIT, Delivery, LimitEntry, Line
from b24app.portals import audit, error_texts, pacer
from b24app.portals.models import Portal
from b24app.portals.services import PortalError, portal_call

log = logging.getLogger(__name__)

METHOD = client.MESSAGE_ADD
BATCH_SIZE = client.BATCH_LIMIT
# Retryable failures of one delivery before the campaign stops and asks a person.
MAX_ATTEMPTS = 10
# How long an idle lane lease lasts between a re-enqueue and the task running.
LANE_GRACE = timedelta(seconds=20)
# A lane finding only closed sending windows checks again at least this often.
WINDOW_POLL_S = 300.0
RESOLVE_LEASE = timedelta(minutes=2)
DOWNLOAD_TTL = timedelta(seconds=60)
INSERT_CHUNK = 500

# Refusals that concern the whole campaign (spec §5.3, §3.3); anything not per-recipient is
# treated like these, so an unexpected code stops the campaign instead of burning recipients.
SNAPSHOT_CODES = frozenset(
    {"MESSAGE_EMPTY", "ATTACH_ERROR", "ATTACH_OVERSIZE", "KEYBOARD_ERROR", "KEYBOARD_OVERSIZE"}
)
PORTAL_WIDE_CODES = frozenset(
    {
        "AUTH_FAILED",
        "UNINSTALLED",
        "PORTAL_DELETED",
        "PAYMENT_REQUIRED",
        "APPLICATION_NOT_FOUND",
        "ACCESS_DENIED",
        "insufficient_scope",
        "OVERLOAD_LIMIT",
    }
)


class CampaignError(Exception):
    """A campaign request the user must correct: `code` for logic, `message` for people."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


def blocked_reason(code: str, detail: str = "") -> str:
    """What a blocked campaign tells the administrator, in the current language.

    The cause is the app-wide sentence for the code, with the code beside it
    (`portals.error_texts`); then what to do about this campaign.
    """
    reason = error_texts.error_label(code)
    if detail and not error_texts.is_known(code):
        reason = f"{reason} {detail}"  # Bitrix's own words say more than the generic sentence
    if code in SNAPSHOT_CODES or code == "INVALID_SNAPSHOT":
        hint = _("Duplicate the campaign and correct the message.")
    elif code in ("CODE", "CODE_ERROR"):
        hint = _("Duplicate the campaign with a valid open line.")
    elif code in ("PORTAL_DELETED", "UNINSTALLED", "APPLICATION_NOT_FOUND"):
        return reason
    elif code == "RETRIES_EXHAUSTED":
        hint = _("Resume the campaign later.")
    else:
        hint = _("When the cause is fixed, resume the campaign.")
    return f"{reason} {hint}"


# --- Audit ----------------------------------------------------------------------------------

# How many ids an audit entry lists; the count is always there (a CSV may name 200 000 users).
AUDIT_IDS = 50


def _audit(
    campaign: Campaign | None,
    action: str,
    *,
    portal: Portal | None = None,
    actor_user_id: int | None = None,
    actor_name: str = "",
    **details: Any,
) -> None:
    """Record who did what to a campaign (or to the portal's campaign settings)."""
    where = portal or (campaign.portal if campaign is not None else None)
    assert where is not None
    if campaign is not None:
        details = {"campaign": campaign.pk, "name": campaign.name, **details}
    audit.audit_record(
        portal=where,
        action=action,
        actor_user_id=actor_user_id,
        actor_name=actor_name,
        target=f"campaign {campaign.pk}" if campaign is not None else "",
        details=details,
    )


def _audience_details(audience: aud.Audience) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": audience.kind}
    if audience.explicit:
        out["users"] = len(audience.user_ids)
        out["user_ids"] = list(audience.user_ids[:AUDIT_IDS])
    elif audience.kind == "departments":
        out["department_ids"] = list(audience.department_ids[:AUDIT_IDS])
        out["subdepartments"] = audience.subdepartments
    else:
        out["user_types"] = list(audience.user_types)
    return out


# --- Settings, permissions, exclusions -------------------------------------------------------


def settings_for(portal: Portal) -> CampaignSettings:
    """The portal's campaign settings (created with defaults on first use)."""
    found, _created = CampaignSettings.objects.get_or_create(portal=portal)
    return found


# How long the zone read from `profile` is kept (a portal's zone rarely changes; an answer that
# failed is asked again sooner).
TIME_ZONE_TTL = 3600
TIME_ZONE_RETRY_TTL = 300


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def portal_time_zone(*, portal: Portal) -> str:
    """The Bitrix24's time zone as `profile` tells it to the app's token ("" when unknown).

    `profile.TIME_ZONE` is the zone of the user the app's token belongs to (the administrator
    who installed or last reconnected it), empty when that user keeps the portal's default.
    One REST call per portal and hour at most.
    """
    key = f"campaigns:time-zone:{portal.pk}"
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    try:
        profile = portal_call(portal, client.profile)
    except (errors.BitrixError, PortalError) as exc:
        log.info("portal %s: no time zone from profile (%s)", portal.pk, type(exc).__name__)
        cache.set(key, "", TIME_ZONE_RETRY_TTL)
        return ""
    zone = profile.time_zone if _known_zone(profile.time_zone) else ""
    cache.set(key, zone, TIME_ZONE_TTL)
    return zone


def time_zone_default(*, portal: Portal) -> str:
    """The zone a new campaign suggests: the administrator's setting, else the Bitrix24's own
    (`profile`), else "" (the form then takes the browser's)."""
    return settings_for(portal).time_zone or portal_time_zone(portal=portal)


def settings_update(
    *,
    portal: Portal,
    allowed_user_ids: Sequence[int],
    allowed_department_ids: Sequence[int],
    time_zone: str,
    single_calls: bool | None = None,
    actor_user_id: int | None = None,
    actor_name: str = "",
) -> CampaignSettings:
    """Save who besides administrators may run campaigns, and the portal's time zone.

    A change is recorded in the audit log with its before and after values.
    """
    current = settings_for(portal)
    keys = ("allowed_user_ids", "allowed_department_ids", "time_zone", "single_calls")
    before = {key: getattr(current, key) for key in keys}
    current.allowed_user_ids = aud.unique_ids(allowed_user_ids)
    current.allowed_department_ids = aud.unique_ids(allowed_department_ids)
    current.time_zone = time_zone
    if single_calls is not None and single_calls != current.single_calls:
        current.single_calls = single_calls
        current.single_calls_since = timezone.now() if single_calls else None
    current.save()
    after = {key: getattr(current, key) for key in keys}
    if before != after:
        changed = [key for key in keys if before[key] != after[key]]
        _audit(
            None,
            "settings.campaigns",
            portal=portal,
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        )
    return current


def _user_departments(portal: Portal, user_id: int) -> tuple[int, ...]:
    key = f"campaigns:user-depts:{portal.pk}:{user_id}"
    cached = cache.get(key)
    if cached is not None:
        return tuple(cached)
    try:
        page = portal_call(portal, client.user_get, filter={"ID": user_id})
    except (errors.BitrixError, PortalError):
        return ()
    departments = page.items[0].departments if page.items else ()
    cache.set(key, list(departments), 600)
    return departments


def departments_read(*, portal: Portal) -> list[replies.Department]:
    """Every department of the portal (`department.get`, 50 per page, later pages through
    `batch`). Raises BitrixError or PortalError when Bitrix24 does not answer."""
    first = portal_call(portal, client.department_get, start=0)
    found = {dept.id: dept for dept in first.items}
    total = first.total or len(first.items)
    starts = list(range(client.BATCH_LIMIT, total, client.BATCH_LIMIT))
    for offset in range(0, len(starts), BATCH_SIZE):
        chunk = starts[offset : offset + BATCH_SIZE]
        result = portal_call(
            portal, client.batch, commands=_page_commands("department.get", {}, chunk)
        )
        _raise_sub_errors(result)
        for value in result.results.values():
            for item in value if isinstance(value, list) else []:
                if isinstance(item, dict):
                    dept = replies.Department.from_json(item)
                    found[dept.id] = dept
    return list(found.values())


def campaign_allowed(*, portal: Portal, user_id: int, admin: bool) -> bool:
    """Administrators always; others when an administrator allowed them or their department."""
    if admin:
        return True
    current = settings_for(portal)
    if user_id in current.allowed_user_ids:
        return True
    if not current.allowed_department_ids:
        return False
    return bool(set(_user_departments(portal, user_id)) & set(current.allowed_department_ids))


def exclusion_add(
    *,
    portal: Portal,
    user_ids: Iterable[int],
    note: str = "",
    created_by: int | None = None,
    actor_name: str = "",
) -> int:
    """Put users on the portal's opt-out list; returns how many were new (audited)."""
    ids = aud.unique_ids(user_ids)
    existing = set(
        Exclusion.objects.filter(portal=portal, user_id__in=ids).values_list("user_id", flat=True)
    )
    new = [
        Exclusion(portal=portal, user_id=uid, note=note[:200], created_by=created_by)
        for uid in ids
        if uid not in existing
    ]
    Exclusion.objects.bulk_create(new, ignore_conflicts=True)
    if new:
        _audit(
            None,
            "exclusion.add",
            portal=portal,
            actor_user_id=created_by,
            actor_name=actor_name,
            count=len(new),
            user_ids=[row.user_id for row in new[:AUDIT_IDS]],
            note=note[:200],
        )
    return len(new)


def exclusion_remove(
    *,
    portal: Portal,
    user_ids: Iterable[int],
    actor_user_id: int | None = None,
    actor_name: str = "",
) -> int:
    """Take users off the opt-out list; returns how many were removed (audited)."""
    found = Exclusion.objects.filter(portal=portal, user_id__in=list(user_ids))
    removed = list(found.values_list("user_id", flat=True)[:AUDIT_IDS])
    deleted, _detail = found.delete()
    if deleted:
        _audit(
            None,
            "exclusion.remove",
            portal=portal,
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            count=deleted,
            user_ids=removed,
        )
    return deleted


# --- Create, duplicate --------------------------------------------------------------------


def _check_snapshot(
    *, line: Line, message: str, attach: Any, keyboard: Any, url_preview: bool
) -> None:
    # Validate with placeholders filled by a plausible name, as a recipient would receive it.
    sample = aud.personalise(message, name="Alexandra", last_name="Konstantinopolskaya")
    params = messaging.build_params(
        line=line,
        user_id=1,
        message=sample,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
    )
    problems = messaging.message_validate(params)
    if problems:
        first = problems[0]
        raise CampaignError(first.code, first.message, first.field)
    try:
        _command(
            line.code,
            user_id=1,
            message=sample,
            attach=attach,
            keyboard=keyboard,
            url_preview=url_preview,
        )
    except (TypeError, ValueError) as exc:
        raise CampaignError(
            "INVALID_SNAPSHOT", _("The message cannot be sent in a batch: %(e)s") % {"e": exc}
        ) from exc


def campaign_create(
    *,
    portal: Portal,
    line: Line,
    name: str,
    message: str,
    audience: aud.Audience,
    attach: Any = None,
    keyboard: Any = None,
    url_preview: bool = True,
    author_user_id: int | None = None,
    author_name: str = "",
    scheduled_at: datetime | None = None,
    window: tuple[time, time] | None = None,
    time_zone: str = "",
    autostart: bool = False,
    duplicate_of: Campaign | None = None,
) -> Campaign:
    """Snapshot a message and an audience as a new campaign and start finding its recipients.

    Raises CampaignError (nothing stored) when the message would be refused or the audience is
    empty. Recipients are resolved by a Celery task (`campaign_resolve`); with `autostart` the
    campaign starts as soon as they are known.
    """
    if line.portal_id != portal.pk:
        raise CampaignError("LINE", _("Choose one of this Bitrix24's lines."), "line")
    if audience.kind in ("users", "csv") and not audience.user_ids:
        raise CampaignError("AUDIENCE_EMPTY", _("Name at least one user."), "audience")
    if audience.kind == "departments" and not audience.department_ids:
        raise CampaignError("AUDIENCE_EMPTY", _("Choose at least one department."), "audience")
    _check_snapshot(
        line=line, message=message, attach=attach, keyboard=keyboard, url_preview=url_preview
    )
    tz = time_zone or settings_for(portal).time_zone or settings.TIME_ZONE
    with transaction.atomic():
        campaign = Campaign.objects.create(
            portal=portal,
            line=line,
            line_code=line.code,
            name=" ".join(name.split())[:200] or _("Campaign"),
            message=message,
            attach=attach or None,
            keyboard=keyboard or None,
            url_preview=url_preview,
            audience=audience.to_json(),
            author_user_id=author_user_id,
            author_name=author_name[:200],
            scheduled_at=scheduled_at,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
            time_zone=tz,
            autostart=autostart,
            duplicate_of=duplicate_of,
            status=Campaign.Status.RESOLVING,
        )
        _resolve_restart(campaign)
        extra: dict[str, Any] = {"from": duplicate_of.pk} if duplicate_of is not None else {}
        _audit(
            campaign,
            "campaign.duplicate" if duplicate_of is not None else "campaign.create",
            actor_user_id=author_user_id,
            actor_name=author_name,
            line=line.code,
            message=message[:200],
            attach=attach is not None,
            keyboard=keyboard is not None,
            audience=_audience_details(audience),
            scheduled_at=scheduled_at.isoformat() if scheduled_at else None,
            window=[window[0].isoformat("minutes"), window[1].isoformat("minutes")]
            if window
            else None,
            time_zone=tz,
            **extra,
        )
    return campaign


def campaign_duplicate(
    *, campaign: Campaign, author_user_id: int | None, author_name: str = ""
) -> Campaign:
    """A new campaign with the same message, audience and window (recipients found afresh)."""
    return campaign_create(
        portal=campaign.portal,
        line=campaign.line,
        name=_("%(name)s (copy)") % {"name": campaign.name},
        message=campaign.message,
        audience=aud.Audience.from_json(campaign.audience),
        attach=campaign.attach,
        keyboard=campaign.keyboard,
        url_preview=campaign.url_preview,
        author_user_id=author_user_id,
        author_name=author_name,
        window=(campaign.window_start, campaign.window_end)
        if campaign.window_start and campaign.window_end
        else None,
        time_zone=campaign.time_zone,
        duplicate_of=campaign,
    )


# --- Recipient resolution -----------------------------------------------------------------


def _resolve_restart(campaign: Campaign) -> None:
    """Begin (or begin again) resolving; a new token retires any older chain of steps."""
    token = uuid.uuid4().hex
    state = {"token": token, "phase": "start"}
    Campaign.objects.filter(pk=campaign.pk).update(
        resolve_state=state,
        resolve_done=0,
        resolve_total=0,
        resolve_error="",
        resolve_lease=timezone.now() + RESOLVE_LEASE,
        status=Campaign.Status.RESOLVING,
    )
    campaign.resolve_state = state
    _enqueue_resolve(campaign.pk, token, 0.0)


def _enqueue_resolve(campaign_id: int, token: str, countdown: float) -> None:
    from b24app.campaigns import tasks

    transaction.on_commit(
        lambda: tasks.campaign_resolve.apply_async((campaign_id, token), countdown=countdown)
    )


def campaign_resolve_again(*, campaign: Campaign) -> None:
    """Find the recipients again (after a failed resolution)."""
    if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.READY):
        raise CampaignError("STATE", _("Only a campaign that has not started can do this."))
    with transaction.atomic():
        _resolve_restart(campaign)


def _user_filter(audience: aud.Audience, department_ids: Sequence[int]) -> dict[str, Any]:
    types = list(audience.user_types)
    # "true" rather than a JSON boolean: the same filter travels inside batch query strings,
    # where PHP would read a boolean as "1" (spec §3.4, §5.9).
    flt: dict[str, Any] = {"ACTIVE": "true", "USER_TYPE": types[0] if len(types) == 1 else types}
    if audience.kind == "departments":
        flt["UF_DEPARTMENT"] = list(department_ids)
    return flt


def _page_commands(method: str, params: dict[str, Any], starts: Sequence[int]) -> dict[str, Any]:
    return {f"p{start}": (method, {**params, "start": start}) for start in starts}


def _insert_recipients(
    campaign: Campaign, users: Iterable[replies.User], audience: aud.Audience
) -> int:
    rows = []
    for user in users:
        if audience.explicit:
            skip = "" if user.active else Recipient.Skip.INACTIVE
        else:
            if not user.active or user.user_type not in audience.user_types:
                continue  # a filter the server did not apply; never message them
            skip = ""
        rows.append(
            Recipient(
                campaign=campaign,
                user_id=user.id,
                name=user.name[:100],
                last_name=user.last_name[:100],
                skip_reason=skip,
                due=not skip,
            )
        )
    for start in range(0, len(rows), INSERT_CHUNK):
        Recipient.objects.bulk_create(rows[start : start + INSERT_CHUNK], ignore_conflicts=True)
    return len(rows)


def campaign_resolve_step(*, campaign_id: int, token: str) -> None:
    """Run one step of finding a campaign's recipients: one REST request, then re-enqueue.

    Explicit lists (users, CSV) are looked up 50 ids per `user.get` sub-call, 50 sub-calls per
    `batch`; departments and "all active users" read `user.get` pages, 50 pages per `batch`. The
    step's position is saved after each request, so a step repeated after a crash only repeats
    one request, and inserting an existing recipient is a no-op (unique constraint).
    """
    campaign = Campaign.objects.select_related("portal").filter(pk=campaign_id).first()
    if campaign is None or campaign.status != Campaign.Status.RESOLVING:
        return
    state = dict(campaign.resolve_state or {})
    if state.get("token") != token:
        return  # an older chain; a newer one owns this campaign
    portal = campaign.portal
    audience = aud.Audience.from_json(campaign.audience)
    wait = pacer.pacer_acquire(portal=portal, interactive=False, method="user.get")
    if wait > 0:
        _resolve_continue(campaign, state, countdown=wait)
        return
    try:
        finished = _resolve_request(campaign, portal, audience, state)
    except errors.RetryLater as exc:
        delay = exc.retry_after or 2.0 + random.random()
        _resolve_continue(campaign, state, countdown=delay)
        return
    except (errors.BitrixError, PortalError) as exc:
        code = getattr(exc, "code", type(exc).__name__)
        detail = getattr(exc, "description", "") or getattr(exc, "message", "")
        with translation.override(portal.language):  # stored text: the portal's language
            reason = blocked_reason(code, detail)
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RESOLVING).update(
            status=Campaign.Status.DRAFT,
            resolve_error=reason[:500],
            resolve_lease=None,
        )
        log.warning("campaign %s: resolving recipients failed (%s)", campaign.pk, code)
        return
    if not finished:
        _resolve_continue(campaign, state, countdown=0.0)
        return
    total = Recipient.objects.filter(campaign=campaign).count()
    changed = Campaign.objects.filter(
        pk=campaign.pk, status=Campaign.Status.RESOLVING, resolve_state__token=token
    ).update(
        status=Campaign.Status.READY,
        resolve_state={"token": token, "phase": "done"},
        resolve_done=total,
        resolve_total=total,
        resolve_lease=None,
    )
    if changed and campaign.autostart:
        campaign.refresh_from_db()
        try:
            with translation.override(portal.language):  # a refusal is stored as text
                campaign_start(
                    campaign=campaign,
                    actor_user_id=campaign.author_user_id,
                    actor_name=campaign.author_name,
                )
        except CampaignError as exc:
            Campaign.objects.filter(pk=campaign.pk).update(resolve_error=exc.message[:500])


def _resolve_continue(campaign: Campaign, state: dict[str, Any], *, countdown: float) -> None:
    Campaign.objects.filter(pk=campaign.pk, resolve_state__token=state["token"]).update(
        resolve_state=state,
        resolve_done=int(state.get("done", 0)),
        resolve_total=int(state.get("total", 0)),
        resolve_lease=timezone.now() + RESOLVE_LEASE + timedelta(seconds=countdown),
    )
    _enqueue_resolve(campaign.pk, state["token"], countdown)


def _resolve_request(
    campaign: Campaign, portal: Portal, audience: aud.Audience, state: dict[str, Any]
) -> bool:
    """One request of the resolution; mutates `state`; True when every recipient is known."""
    phase = state.get("phase", "start")
    if audience.explicit:
        ids = list(audience.user_ids)
        offset = int(state.get("offset", 0))
        chunk = ids[offset : offset + aud.IDS_PER_CALL * BATCH_SIZE]
        state.update(phase="ids", total=len(ids))
        if not chunk:
            return True
        commands = {
            f"i{n}": ("user.get", {"FILTER": {"ID": chunk[n : n + aud.IDS_PER_CALL]}})
            for n in range(0, len(chunk), aud.IDS_PER_CALL)
        }
        result = portal_call(portal, client.batch, commands=commands)
        _raise_sub_errors(result)
        found: dict[int, replies.User] = {}
        for value in result.results.values():
            for item in value if isinstance(value, list) else []:
                if isinstance(item, dict):
                    user = replies.User.from_json(item)
                    found[user.id] = user
        _insert_recipients(campaign, found.values(), audience)
        missing = [
            Recipient(
                campaign=campaign, user_id=uid, skip_reason=Recipient.Skip.NOT_FOUND, due=False
            )
            for uid in chunk
            if uid not in found
        ]
        Recipient.objects.bulk_create(missing, ignore_conflicts=True)
        done = offset + len(chunk)
        state.update(offset=done, done=done)
        return done >= len(ids)

    if audience.kind == "departments" and phase in ("start", "departments"):
        # The department tree first, to add sub-departments (PARENT links).
        parents: dict[int, int | None] = {
            int(k): v for k, v in (state.get("parents") or {}).items()
        }
        if phase == "start":
            dept_page = portal_call(portal, client.department_get, start=0)
            for dept in dept_page.items:
                parents[dept.id] = dept.parent
            total = dept_page.total or len(dept_page.items)
            pending = list(range(client.BATCH_LIMIT, total, client.BATCH_LIMIT))
        else:
            pending = [int(s) for s in state.get("dept_pending") or []]
            starts, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
            result = portal_call(
                portal, client.batch, commands=_page_commands("department.get", {}, starts)
            )
            _raise_sub_errors(result)
            for value in result.results.values():
                for item in value if isinstance(value, list) else []:
                    if isinstance(item, dict):
                        dept = replies.Department.from_json(item)
                        parents[dept.id] = dept.parent
        if pending:
            state.update(
                phase="departments",
                parents={str(k): v for k, v in parents.items()},
                dept_pending=pending,
            )
            return False
        chosen = aud.department_closure(
            audience.department_ids, parents, subdepartments=audience.subdepartments
        )
        state.update(phase="users", departments=chosen, parents={}, dept_pending=[])
        state.pop("started", None)
        return False

    # Paging user.get with a filter: the first page tells the total, then 50 pages per batch.
    departments = [int(d) for d in state.get("departments") or audience.department_ids]
    flt = _user_filter(audience, departments)
    if not state.get("started"):
        page = portal_call(portal, client.user_get, filter=flt, sort="ID", order="ASC", start=0)
        _insert_recipients(campaign, page.items, audience)
        total = page.total or len(page.items)
        state.update(
            phase="users", started=True, total=total, done=len(page.items), next=page.next or 0
        )
        return not page.next
    total = int(state.get("total", 0))
    start = int(state.get("next", 0))
    starts = list(range(start, total, client.BATCH_LIMIT))[:BATCH_SIZE]
    if not starts:
        return True
    params = {"FILTER": flt, "sort": "ID", "order": "ASC"}
    result = portal_call(portal, client.batch, commands=_page_commands("user.get", params, starts))
    _raise_sub_errors(result)
    users = [
        replies.User.from_json(item)
        for value in result.results.values()
        for item in (value if isinstance(value, list) else [])
        if isinstance(item, dict)
    ]
    _insert_recipients(campaign, users, audience)
    last = starts[-1] + client.BATCH_LIMIT
    state.update(next=last, done=min(total, int(state.get("done", 0)) + len(users)))
    return last >= total


def _raise_sub_errors(result: replies.BatchResult) -> None:
    """A read batch fails as a whole when any page failed (pages must not go missing)."""
    for exc in result.errors.values():
        raise exc


# --- Summary, preview, counts ---------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What the pre-start screen shows."""

    total: int
    will_receive: int
    excluded: int
    limited: int
    inactive: int
    not_found: int
    skipped: list[tuple[int, str, str]]  # (user_id, name, reason), the first page
    skipped_total: int = 0


def _recipients_annotated(campaign: Campaign, now: datetime) -> Any:
    portal = campaign.portal
    qs = Recipient.objects.filter(campaign=campaign).annotate(
        is_excluded=Exists(Exclusion.objects.filter(portal=portal, user_id=OuterRef("user_id")))
    )
    if portal.nfr:
        return qs.annotate(is_limited=Value(False, output_field=BooleanField()))
    return qs.annotate(
        is_limited=Exists(
            LimitEntry.objects.filter(
                portal=portal,
                line_code=campaign.line_code,
                user_id=OuterRef("user_id"),
                sent_at__gt=now - WEEKLY_LIMIT,
            )
        )
    )


# Skipped recipients listed per page before the start (the rest are a page away).
SKIPPED_PAGE = 100


def _pending() -> Q:
    return Q(skip_reason="") & Q(delivery__isnull=True)


def _skipped_rows(campaign: Campaign, now: datetime) -> Any:
    pending = _pending()
    return (
        _recipients_annotated(campaign, now)
        .filter(Q(skip_reason__gt="") | (pending & (Q(is_excluded=True) | Q(is_limited=True))))
        .order_by("pk")
        .values("user_id", "name", "last_name", "skip_reason", "is_excluded", "is_limited")
    )


def _skipped_labels(rows: Iterable[dict[str, Any]]) -> list[tuple[int, str, str]]:
    labels = dict(Recipient.Skip.choices)
    out = []
    for row in rows:
        reason = row["skip_reason"] or (
            Recipient.Skip.EXCLUDED if row["is_excluded"] else Recipient.Skip.LIMIT
        )
        name = f"{row['name']} {row['last_name']}".strip()
        out.append((row["user_id"], name, str(labels.get(reason, reason))))
    return out


def campaign_skipped(
    *, campaign: Campaign, page: int | str | None = 1, now: datetime | None = None
) -> Page[Any]:
    """One page (SKIPPED_PAGE) of who is skipped before the start, with the reason.

    `object_list` holds (user_id, name, reason) rows; every skipped user is on some page.
    """
    paginator = Paginator(_skipped_rows(campaign, now or timezone.now()), SKIPPED_PAGE)
    found = paginator.get_page(page)
    found.object_list = _skipped_labels(found.object_list)
    return found


def campaign_summary(
    *, campaign: Campaign, limit: int = SKIPPED_PAGE, now: datetime | None = None
) -> Summary:
    """Counts before the start: who receives the message and who is skipped, and why.

    `skipped` holds the first `limit` skipped users; `campaign_skipped` pages through all.
    """
    now = now or timezone.now()
    qs = _recipients_annotated(campaign, now)
    pending = _pending()
    counts = qs.aggregate(
        total=Count("pk"),
        inactive=Count("pk", filter=Q(skip_reason=Recipient.Skip.INACTIVE)),
        not_found=Count("pk", filter=Q(skip_reason=Recipient.Skip.NOT_FOUND)),
        excluded=Count(
            "pk", filter=Q(skip_reason=Recipient.Skip.EXCLUDED) | (pending & Q(is_excluded=True))
        ),
        limited=Count(
            "pk",
            filter=Q(skip_reason=Recipient.Skip.LIMIT)
            | (pending & Q(is_excluded=False) & Q(is_limited=True)),
        ),
    )
    skipped = _skipped_labels(_skipped_rows(campaign, now)[:limit])
    skipped_total = (
        counts["inactive"] + counts["not_found"] + counts["excluded"] + counts["limited"]
    )
    return Summary(
        total=counts["total"],
        will_receive=max(0, counts["total"] - skipped_total),
        excluded=counts["excluded"],
        limited=counts["limited"],
        inactive=counts["inactive"],
        not_found=counts["not_found"],
        skipped=skipped,
        skipped_total=skipped_total,
    )


def campaign_preview(
    *, campaign: Campaign, user_id: int | None = None
) -> tuple[Recipient | None, str]:
    """The message as one recipient (the first, or `user_id`) would receive it."""
    recipients = Recipient.objects.filter(campaign=campaign, skip_reason="").order_by("pk")
    if user_id is not None:
        recipients = recipients.filter(user_id=user_id)
    recipient = recipients.first()
    if recipient is None:
        return None, aud.personalise(campaign.message, name="", last_name="")
    return recipient, aud.personalise(
        campaign.message, name=recipient.name, last_name=recipient.last_name
    )


# Report states: the delivery states, plus recipients skipped or never sent.
STATE_SKIPPED = "skipped"
STATE_NOT_SENT = "not_sent"
REPORT_STATES = (
    Delivery.Status.QUEUED,
    Delivery.Status.SENDING,
    Delivery.Status.SENT,
    Delivery.Status.LIMITED,
    Delivery.Status.REJECTED,
    Delivery.Status.UNKNOWN,
    STATE_SKIPPED,
)


def report_states(status: str) -> tuple[str, ...]:
    """The report states of a campaign in `status`: a cancelled one has "not sent" instead of
    "queued", since it never sends those."""
    if status == Campaign.Status.CANCELLED:
        return tuple(STATE_NOT_SENT if s == Delivery.Status.QUEUED else s for s in REPORT_STATES)
    return REPORT_STATES


def state_label(state: str) -> str:
    """A report state as people read it, in the current language."""
    labels = {value: str(label) for value, label in Delivery.Status.choices}
    labels[STATE_SKIPPED] = _("skipped")
    labels[STATE_NOT_SENT] = _("not sent")
    return str(labels.get(state, state))


def campaign_counts(*, campaign: Campaign) -> dict[str, int]:
    """Recipients per report state, in one grouped query."""
    return campaigns_counts(campaigns=[campaign])[campaign.pk]


def campaigns_counts(*, campaigns: Sequence[Campaign]) -> dict[int, dict[str, int]]:
    """Recipients per report state for several campaigns, in one grouped query (the list).

    A cancelled campaign never sends its queued recipients: they count as "not sent".
    """
    out = {c.pk: dict.fromkeys(report_states(c.status), 0) for c in campaigns}
    cancelled = {c.pk for c in campaigns if c.status == Campaign.Status.CANCELLED}
    rows = (
        Recipient.objects.filter(campaign_id__in=list(out))
        .values("campaign_id", "skip_reason", "delivery__status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        if row["skip_reason"]:
            state = STATE_SKIPPED
        else:
            state = row["delivery__status"] or Delivery.Status.QUEUED
        if state == Delivery.Status.QUEUED and row["campaign_id"] in cancelled:
            state = STATE_NOT_SENT
        counts = out[row["campaign_id"]]
        counts[state] = counts.get(state, 0) + row["n"]
    return out


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    total: int
    done: int
    rate: float  # messages per second since the start
    eta_s: float | None

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100


def campaign_progress(*, campaign: Campaign, now: datetime | None = None) -> Progress:
    """Counts per state, the average rate since the start and the time left at that rate."""
    now = now or timezone.now()
    counts = campaign_counts(campaign=campaign)
    total = sum(counts.values())
    pending = counts.get(Delivery.Status.QUEUED, 0) + counts[Delivery.Status.SENDING]
    # A cancelled campaign's unsent recipients are not "done": the bar shows how far it got.
    done = total - pending - counts.get(STATE_NOT_SENT, 0)
    attempted = done - counts[STATE_SKIPPED]
    rate = 0.0
    if campaign.started_at and attempted > 0:
        end = campaign.finished_at or now
        elapsed = max(1.0, (end - campaign.started_at).total_seconds())
        rate = attempted / elapsed
    # Only a sending campaign has a time left: paused, blocked or ended ones are not moving.
    moving = campaign.status == Campaign.Status.RUNNING
    eta = pending / rate if moving and rate > 0 and pending else None
    return Progress(counts=counts, total=total, done=done, rate=rate, eta_s=eta)


def report_rows(*, campaign: Campaign, state: str = "") -> Any:
    """Recipients with their outcome for the report, filtered by report state."""
    qs = Recipient.objects.filter(campaign=campaign).select_related("delivery").order_by("pk")
    states = report_states(campaign.status)
    if state == STATE_SKIPPED:
        qs = qs.exclude(skip_reason="")
    elif state in (Delivery.Status.QUEUED, STATE_NOT_SENT):
        if state not in states:
            return qs.none()
        qs = qs.filter(skip_reason="").filter(
            Q(delivery__isnull=True) | Q(delivery__status=Delivery.Status.QUEUED)
        )
    elif state in states:
        qs = qs.filter(skip_reason="", delivery__status=state)
    return qs


def recipient_state(recipient: Recipient, campaign: Campaign) -> str:
    """The report state of one recipient (its delivery's, or skipped / queued / not sent)."""
    if recipient.skip_reason:
        return STATE_SKIPPED
    status = recipient.delivery.status if recipient.delivery is not None else "queued"
    if status == Delivery.Status.QUEUED and campaign.status == Campaign.Status.CANCELLED:
        return STATE_NOT_SENT
    return status


# --- Start, pause, resume, cancel ------------------------------------------------------------


def _line_ready(campaign: Campaign, *, rejoin: bool = False) -> None:
    """Join the campaign's line unless it is known joined (`rejoin`: Bitrix said it is not)."""
    line = campaign.line
    if rejoin or line.join_status != Line.JoinStatus.JOINED:
        line = messaging.line_join(portal=campaign.portal, code=line.code, name=line.name)
    if line.join_status != Line.JoinStatus.JOINED:
        cause = error_texts.code_of(line.join_error)
        raise CampaignError(
            "LINE_NOT_JOINED",
            _("The open line could not be joined: %(e)s")
            % {"e": error_texts.error_label(cause) if cause else line.code},
            "line",
        )


def _enqueue_activate(campaign_id: int, at: datetime) -> None:
    from b24app.campaigns import tasks

    transaction.on_commit(lambda: tasks.campaign_activate.apply_async((campaign_id,), eta=at))


def campaign_start(
    *,
    campaign: Campaign,
    at: datetime | None = None,
    actor_user_id: int | None = None,
    actor_name: str = "",
) -> Campaign:
    """Start now, or at `at` (beat then activates it). Joins the line first if needed."""
    if campaign.status not in Campaign.STARTABLE:
        raise CampaignError("STATE", _("This campaign cannot be started now."))
    if not campaign.portal.is_active:
        raise CampaignError("PORTAL", blocked_reason("AUTH_FAILED"))
    _line_ready(campaign)
    now = timezone.now()
    at = at or campaign.scheduled_at
    ready = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.READY)
    if at is not None and at > now:
        changed = ready.update(status=Campaign.Status.SCHEDULED, scheduled_at=at)
        if changed:
            _enqueue_activate(campaign.pk, at)
    else:
        changed = ready.update(status=Campaign.Status.RUNNING, started_at=now, scheduled_at=None)
        if changed and not _maybe_complete(campaign.pk, now):
            lanes_kick(portal=campaign.portal)
    campaign.refresh_from_db()
    if changed:
        _audit(
            campaign,
            "campaign.schedule"
            if campaign.status == Campaign.Status.SCHEDULED
            else "campaign.start",
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            line=campaign.line_code,
            recipients=Recipient.objects.filter(campaign=campaign, due=True).count(),
            scheduled_at=campaign.scheduled_at.isoformat() if campaign.scheduled_at else None,
        )
    return campaign


def campaign_activate(*, campaign_id: int, now: datetime | None = None) -> bool:
    """Turn a scheduled campaign whose time has come into a running one (idempotent)."""
    now = now or timezone.now()
    changed = Campaign.objects.filter(
        pk=campaign_id, status=Campaign.Status.SCHEDULED, scheduled_at__lte=now
    ).update(status=Campaign.Status.RUNNING, started_at=now)
    if changed:
        portal = Portal.objects.get(campaigns__pk=campaign_id)
        lanes_kick(portal=portal)
    return bool(changed)


def campaign_pause(
    *, campaign: Campaign, actor_user_id: int | None = None, actor_name: str = ""
) -> Campaign:
    """Stop taking new batches; a batch already in flight finishes and is recorded."""
    before = campaign.status
    changed = Campaign.objects.filter(
        pk=campaign.pk, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
    ).update(status=Campaign.Status.PAUSED)
    campaign.refresh_from_db()
    if changed:
        _audit(
            campaign,
            "campaign.pause",
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            was=str(before),
        )
    return campaign


def campaign_resume(
    *, campaign: Campaign, actor_user_id: int | None = None, actor_name: str = ""
) -> Campaign:
    """Continue a paused or blocked campaign (after the cause of a block was fixed).

    A campaign paused while it waited for its scheduled start goes back to waiting when that
    moment is still ahead; otherwise it runs at once.
    """
    if campaign.status not in (Campaign.Status.PAUSED, Campaign.Status.BLOCKED):
        raise CampaignError("STATE", _("Only a paused or blocked campaign can be resumed."))
    if not campaign.portal.is_active:
        raise CampaignError("PORTAL", blocked_reason("AUTH_FAILED"))
    if campaign.blocked_code in ("NOT_FOUND", "LINE_NOT_JOINED"):
        _line_ready(campaign, rejoin=True)
    now = timezone.now()
    waiting = (
        campaign.started_at is None
        and campaign.scheduled_at is not None
        and campaign.scheduled_at > now
    )
    stopped = Campaign.objects.filter(
        pk=campaign.pk, status__in=[Campaign.Status.PAUSED, Campaign.Status.BLOCKED]
    )
    if waiting:
        assert campaign.scheduled_at is not None
        changed = stopped.update(
            status=Campaign.Status.SCHEDULED,
            blocked_code="",
            blocked_detail="",
            generation=F("generation") + 1,
        )
        if changed:
            _enqueue_activate(campaign.pk, campaign.scheduled_at)
    else:
        changed = stopped.update(
            status=Campaign.Status.RUNNING,
            blocked_code="",
            blocked_detail="",
            started_at=campaign.started_at or now,
            generation=F("generation") + 1,
        )
        if changed:
            lanes_kick(portal=campaign.portal)
    was = campaign.status
    campaign.refresh_from_db()
    if changed:
        _audit(
            campaign,
            "campaign.resume",
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            was=str(was),
            status=str(campaign.status),
        )
    return campaign


def campaign_cancel(
    *, campaign: Campaign, actor_user_id: int | None = None, actor_name: str = ""
) -> Campaign:
    """End the campaign; recipients not yet sent are never sent."""
    with transaction.atomic():
        changed = (
            Campaign.objects.filter(pk=campaign.pk)
            .exclude(status__in=Campaign.FINAL)
            .update(status=Campaign.Status.CANCELLED, finished_at=timezone.now())
        )
        unsent = 0
        if changed:
            unsent = Recipient.objects.filter(campaign=campaign, due=True).update(due=False)
    campaign.refresh_from_db()
    if changed:
        _audit(
            campaign,
            "campaign.cancel",
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            not_sent=unsent,
        )
    return campaign


def _block(
    campaign_ids: Sequence[int], code: str, detail: str, *, generation: int | None = None
) -> int:
    """Block the running campaigns among `campaign_ids` (only in `generation`, when given)."""
    running = Campaign.objects.filter(pk__in=campaign_ids, status=Campaign.Status.RUNNING)
    if generation is not None:
        running = running.filter(generation=generation)
    count = running.update(
        status=Campaign.Status.BLOCKED, blocked_code=code[:60], blocked_detail=detail[:500]
    )
    if count:
        log.warning("campaigns %s blocked: %s", list(campaign_ids), code)
    return count


def recipients_resend(
    *,
    campaign: Campaign,
    recipient_ids: Sequence[int],
    actor_user_id: int | None = None,
    actor_name: str = "",
) -> int:
    """Send `unknown` messages once more (chosen in the report). Restarts a finished campaign.

    A cancelled campaign sends nothing any more, so it refuses (CampaignError): mark the
    messages as delivered, or duplicate the campaign.
    """
    if campaign.status == Campaign.Status.CANCELLED:
        raise CampaignError(
            "STATE",
            _(
                "This campaign was cancelled, so it sends nothing any more. Mark the messages "
                "as delivered if they arrived, or duplicate the campaign to send again."
            ),
        )
    with transaction.atomic():
        chosen = Recipient.objects.filter(
            campaign=campaign, pk__in=recipient_ids, delivery__status=Delivery.Status.UNKNOWN
        )
        user_ids = list(chosen.values_list("user_id", flat=True)[:AUDIT_IDS])
        count = chosen.update(due=True)
        if count and campaign.status == Campaign.Status.COMPLETED:
            Campaign.objects.filter(pk=campaign.pk).update(
                status=Campaign.Status.RUNNING, finished_at=None
            )
        if count:
            lanes_kick(portal=campaign.portal)
            _audit(
                campaign,
                "campaign.resend",
                actor_user_id=actor_user_id,
                actor_name=actor_name,
                count=count,
                user_ids=user_ids,
            )
    return count


def _person(user_id: int | None, name: str) -> str:
    if name and user_id:
        return _("%(name)s (user %(id)s)") % {"name": name, "id": user_id}
    if user_id:
        return _("user %(id)s") % {"id": user_id}
    return name or "?"


def recipients_mark_delivered(
    *,
    campaign: Campaign,
    recipient_ids: Sequence[int],
    by_user_id: int | None = None,
    by_user_name: str = "",
) -> int:
    """Record `unknown` messages as delivered because a person checked (chosen in the report).

    The delivery keeps error code MARKED and, as its message, who marked it (audited too).
    """
    rows = list(
        Recipient.objects.filter(
            campaign=campaign, pk__in=recipient_ids, delivery__status=Delivery.Status.UNKNOWN
        ).values_list("delivery_id", "user_id")
    )
    delivery_ids = [delivery_id for delivery_id, _user in rows]
    note = _("Marked as delivered by %(who)s.") % {"who": _person(by_user_id, by_user_name)}
    with transaction.atomic():
        Recipient.objects.filter(delivery_id__in=delivery_ids).update(due=False)
        count = Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.UNKNOWN).update(
            status=Delivery.Status.SENT, error_code="MARKED", error_message=note[:500]
        )
        if count:
            _audit(
                campaign,
                "campaign.mark_delivered",
                actor_user_id=by_user_id,
                actor_name=by_user_name,
                count=count,
                user_ids=[user for _delivery, user in rows[:AUDIT_IDS]],
            )
    return count


# --- Lanes: the per-portal sending chains -----------------------------------------------------


def lanes_for(portal: Portal) -> int:
    """How many chains send for one portal.

    Enough to keep the request rate busy while a task waits in the broker (the SQLite transport
    polls about once a second), few enough that many portals share a worker fairly.
    """
    rate = pacer.limits_for(portal).rate
    return max(4, min(8, math.ceil(rate * 2) + 2))


def stale_after() -> timedelta:
    """How old a `sending` row must be before no request can still be running for it."""
    timeout = float(settings.B24_REQUEST_TIMEOUT)
    return timedelta(seconds=2 * timeout + 5)


def _enqueue_lane(
    portal_id: int, slot: int, token: str, countdown: float, granted: bool = False
) -> None:
    from b24app.campaigns import tasks

    transaction.on_commit(
        lambda: tasks.lane_run.apply_async(
            (portal_id, slot, token), {"granted": granted}, countdown=countdown
        )
    )


def lanes_kick(*, portal: Portal, now: datetime | None = None) -> int:
    """Make sure the portal's lanes are running; returns how many chains were started.

    A lane that is alive is only told to look again (`wake`), so it does not go idle just as
    new work arrives. A lane whose lease ran out is replaced: its old task, if it ever runs, sees
    a different token and stops.
    """
    now = now or timezone.now()
    started = 0
    lanes = {lane.slot: lane for lane in Lane.objects.filter(portal=portal)}
    for slot in range(lanes_for(portal)):
        lane = lanes.get(slot)
        if lane is None:
            lane, _created = Lane.objects.get_or_create(portal=portal, slot=slot)
        if lane.token and lane.lease_until and lane.lease_until > now:
            Lane.objects.filter(pk=lane.pk, token=lane.token).update(wake=True)
            continue
        token = uuid.uuid4().hex
        if Lane.objects.filter(pk=lane.pk, token=lane.token).update(
            token=token, lease_until=now + LANE_GRACE, holder="", wake=False
        ):
            _enqueue_lane(portal.pk, slot, token, countdown=0.05 * slot)
            started += 1
    return started


def _lane_again(
    lane_pk: int, portal_id: int, slot: int, token: str, countdown: float, granted: bool = False
) -> None:
    countdown = max(0.0, countdown)
    Lane.objects.filter(pk=lane_pk, token=token).update(
        lease_until=timezone.now() + timedelta(seconds=countdown) + LANE_GRACE
    )
    _enqueue_lane(portal_id, slot, token, countdown, granted)


def lane_retry(*, portal_id: int, slot: int, token: str, countdown: float = 5.0) -> None:
    """Re-enqueue a lane whose step failed unexpectedly (only while it still owns the lane)."""
    lane = Lane.objects.filter(portal_id=portal_id, slot=slot, token=token).only("pk").first()
    if lane is not None:
        _lane_again(lane.pk, portal_id, slot, token, countdown * (1.0 + random.random()))


def _lane_idle(lane_pk: int, portal_id: int, slot: int, token: str) -> None:
    # Going idle loses to a concurrent kick (`wake`): then the chain simply continues.
    if not Lane.objects.filter(pk=lane_pk, token=token, wake=False).update(
        token="", lease_until=None
    ):
        _lane_again(lane_pk, portal_id, slot, token, 0.0)


def _due_campaigns(portal: Portal) -> list[Campaign]:
    return list(
        Campaign.objects.filter(portal=portal, status=Campaign.Status.RUNNING)
        .filter(Exists(Recipient.objects.filter(campaign=OuterRef("pk"), due=True)))
        .order_by(F("dispatched_at").asc(nulls_first=True), "pk")
        .only(
            "pk",
            "portal_id",
            "line_id",
            "line_code",
            "message",
            "attach",
            "keyboard",
            "url_preview",
            "author_user_id",
            "window_start",
            "window_end",
            "time_zone",
            "dispatched_at",
            "status",
            "generation",
        )[:50]
    )


@dataclass
class _Item:
    recipient_pk: int
    user_id: int
    delivery_id: int
    message: str
    resend: bool  # a second attempt after `unknown`
    attempts: int
    resends: int


@dataclass
class _Claim:
    items: list[_Item] = field(default_factory=list)
    taken: int = 0  # recipients taken off the queue, skipped ones included


def lane_run(
    *, portal_id: int, slot: int, token: str, holder: str = "", granted: bool = False
) -> str:
    """One step of a lane: send one batch for the portal, then re-enqueue (never sleeps).

    `granted` means the previous step already took this step's pacer token. A step takes the
    next step's token ahead of time: then the next step is either runnable at once or has a
    countdown, and a task with a countdown is fetched from the broker before it is due, so the
    broker's polling delay (about a second on the SQLite transport) is hidden whenever the
    rate limit, not the worker, sets the pace.

    Returns what happened (for logs and tests): stale, idle, window, wait, sent, blocked, empty.
    """
    now = timezone.now()
    if not Lane.objects.filter(portal_id=portal_id, slot=slot, token=token).update(
        lease_until=now + stale_after(), holder=holder[:200], wake=False
    ):
        return "stale"
    lane_pk = Lane.objects.only("pk").get(portal_id=portal_id, slot=slot).pk
    portal = Portal.objects.get(pk=portal_id)
    if not portal.is_active:
        code = "UNINSTALLED" if portal.status == Portal.Status.UNINSTALLED else "AUTH_FAILED"
        _block(
            list(
                Campaign.objects.filter(portal=portal, status=Campaign.Status.RUNNING).values_list(
                    "pk", flat=True
                )
            ),
            code,
            portal.status_reason,
        )
        _lane_idle(lane_pk, portal_id, slot, token)
        return "blocked"
    candidates = _due_campaigns(portal)
    campaign = next((c for c in candidates if c.window_open(now)), None)
    if campaign is None:
        if candidates:
            opens = min(c.window_opens_at(now) for c in candidates)
            wait = min(WINDOW_POLL_S, max(1.0, (opens - now).total_seconds()))
            _lane_again(lane_pk, portal_id, slot, token, wait)
            return "window"
        _lane_idle(lane_pk, portal_id, slot, token)
        return "idle"
    options = settings_for(portal)
    if not granted:
        wait = pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD)
        if wait > 0:
            _lane_again(lane_pk, portal_id, slot, token, _reserve(portal, wait))
            return "wait"
    size = 1 if options.single_calls else BATCH_SIZE
    claim = _claim(campaign, portal, token, size, now)
    if not claim.items:
        # Everything taken was skipped (exclusion list, weekly limit) or already settled.
        _maybe_complete(campaign.pk, now)
        _lane_again(lane_pk, portal_id, slot, token, 0.0, granted=True)
        return "empty"
    failures = _send(portal, campaign, claim.items, single=options.single_calls)
    countdown = _record(portal, campaign, claim.items, failures)
    if countdown > 0 or claim.taken < size:
        # Backing off, or the campaign ran dry: no token ahead of time.
        _lane_again(lane_pk, portal_id, slot, token, countdown)
        return "sent"
    wait = pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD)
    countdown = _reserve(portal, wait) if wait else _poll_interval()
    _lane_again(lane_pk, portal_id, slot, token, countdown, granted=wait == 0)
    return "sent"


def _poll_interval() -> float:
    """The countdown of a lane's next step when its token is already in hand.

    Zero on brokers that push (Redis, RabbitMQ). The embedded SQLite transport is polled
    (`B24_BROKER_POLL_S`, kombu's default being once a second), and a worker (acks_late,
    prefetch multiplier 1) takes only as many plain tasks per poll as it has pool processes: at
    one poll a second a portal could never go faster than about two batches a second, which is
    the platform's own rate, so the burst allowance would never be used. A task with an ETA is
    fetched ahead and does not count against that limit, so there the next step gets an ETA of
    one poll interval and every lane keeps moving.
    """
    from b24app.celery import app, is_polled

    if not is_polled(str(app.conf.broker_url or "")):
        return 0.0
    return float(settings.B24_BROKER_POLL_S)


def _reserve(portal: Portal, wait: float) -> float:
    """The countdown to a send slot of this lane's own, no sooner than the pacer's `wait`.

    The pacer answers every lane "wait w" for the same next token; if they all woke at w, one
    would send and the rest would only spend a task run each to hear "wait" again. Instead each
    waiting lane takes the next free slot, one request interval (1/rate) after the last one
    handed out, so in steady state every task run sends. The pacer still decides at run time.
    """
    gap = 1.0 / max(0.01, pacer.limits_for(portal).rate)
    now = _unix_now()
    with transaction.atomic():
        row = CampaignSettings.objects.select_for_update().filter(portal=portal).first()
        if row is None:
            return wait
        slot = max(now + wait, row.next_slot_at)
        CampaignSettings.objects.filter(portal=portal).update(next_slot_at=slot + gap)
    return slot - now


def _claim(campaign: Campaign, portal: Portal, token: str, size: int, now: datetime) -> _Claim:
    """Take up to `size` due recipients and move their deliveries to `sending`.

    One write transaction: on SQLite it holds the database write lock from its first statement
    (transaction_mode IMMEDIATE), on Postgres the rows are locked and others skip them, so no two
    lanes ever claim the same recipient. A constant number of queries, whatever the size.
    """
    claim = _Claim()
    with transaction.atomic():
        # Paused, blocked or resumed since the lane picked it: claim nothing (a resume bumps the
        # generation, so a lane holding the old one must look again).
        if not Campaign.objects.filter(
            pk=campaign.pk, status=Campaign.Status.RUNNING, generation=campaign.generation
        ).exists():
            return claim
        rows = list(
            Recipient.objects.select_for_update(skip_locked=True)
            .filter(campaign_id=campaign.pk, due=True)
            .order_by("pk")
            .values_list("pk", "user_id", "name", "last_name", "delivery_id", "resends")[:size]
        )
        if not rows:
            return claim
        claim.taken = len(rows)
        ids = [row[0] for row in rows]
        Recipient.objects.filter(pk__in=ids, due=True).update(due=False, claim_token=token)
        existing = {
            d["pk"]: d
            for d in Delivery.objects.filter(
                pk__in=[row[4] for row in rows if row[4] is not None]
            ).values("pk", "status", "message", "attempts")
        }
        fresh = [row for row in rows if row[4] is None]
        fresh_users = [row[1] for row in fresh]
        excluded = set(
            Exclusion.objects.filter(portal=portal, user_id__in=fresh_users).values_list(
                "user_id", flat=True
            )
        )
        limited: set[int] = set()
        if not portal.nfr:
            limited = set(
                LimitEntry.objects.filter(
                    portal=portal,
                    line_code=campaign.line_code,
                    user_id__in=fresh_users,
                    sent_at__gt=now - WEEKLY_LIMIT,
                ).values_list("user_id", flat=True)
            )
        skip_excluded = [row[0] for row in fresh if row[1] in excluded]
        skip_limited = [row[0] for row in fresh if row[1] in limited and row[1] not in excluded]
        if skip_excluded:
            Recipient.objects.filter(pk__in=skip_excluded).update(
                skip_reason=Recipient.Skip.EXCLUDED
            )
        if skip_limited:
            Recipient.objects.filter(pk__in=skip_limited).update(skip_reason=Recipient.Skip.LIMIT)
        to_create = [row for row in fresh if row[1] not in excluded and row[1] not in limited]
        # The per-recipient text is stored; ATTACH and KEYBOARD stay on the campaign snapshot
        # (one copy instead of one per recipient).
        deliveries = [
            Delivery(
                portal=portal,
                line_id=campaign.line_id,
                user_id=row[1],
                recipient_name=f"{row[2]} {row[3]}".strip()[:200],
                author_user_id=campaign.author_user_id,
                kind=Delivery.Kind.CAMPAIGN,
                message=aud.personalise(campaign.message, name=row[2], last_name=row[3]),
                url_preview=campaign.url_preview,
                status=Delivery.Status.QUEUED,
            )
            for row in to_create
        ]
        Delivery.objects.bulk_create(deliveries)
        links = [
            Recipient(pk=row[0], delivery_id=d.pk)
            for row, d in zip(to_create, deliveries, strict=True)
        ]
        if links:
            Recipient.objects.bulk_update(links, ["delivery"])
        queued_ids = [d.pk for d in deliveries] + [
            pk for pk, d in existing.items() if d["status"] == Delivery.Status.QUEUED
        ]
        unknown_ids = [pk for pk, d in existing.items() if d["status"] == Delivery.Status.UNKNOWN]
        if queued_ids:
            Delivery.objects.filter(pk__in=queued_ids, status=Delivery.Status.QUEUED).update(
                status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
            )
        if unknown_ids:
            Delivery.objects.filter(pk__in=unknown_ids, status=Delivery.Status.UNKNOWN).update(
                status=Delivery.Status.SENDING,
                claimed_at=now,
                attempts=F("attempts") + 1,
                error_code="",
                error_message="",
            )
            Recipient.objects.filter(delivery_id__in=unknown_ids).update(resends=F("resends") + 1)
        Campaign.objects.filter(pk=campaign.pk).update(dispatched_at=now)
        created = {row[0]: d for row, d in zip(to_create, deliveries, strict=True)}
        for pk, user_id, _name, _last, delivery_id, resends in rows:
            if delivery_id is None:
                fresh_delivery = created.get(pk)
                if fresh_delivery is not None:
                    claim.items.append(
                        _Item(
                            pk,
                            user_id,
                            fresh_delivery.pk,
                            fresh_delivery.message,
                            False,
                            1,
                            resends,
                        )
                    )
                continue
            known = existing.get(delivery_id)
            if known is None or known["status"] not in (
                Delivery.Status.QUEUED,
                Delivery.Status.UNKNOWN,
            ):
                continue  # already final (marked by a person): nothing to send
            claim.items.append(
                _Item(
                    pk,
                    user_id,
                    delivery_id,
                    known["message"],
                    known["status"] == Delivery.Status.UNKNOWN,
                    known["attempts"] + 1,
                    resends,
                )
            )
    return claim


_session_cache: dict[int, Any] = {}


def _unix_now() -> float:
    """Unix time (the pacer's clock)."""
    return _time.time()


def _session() -> Any:
    """A REST session whose read timeout is B24_REQUEST_TIMEOUT (one per process)."""
    pid = os.getpid()
    session = _session_cache.get(pid)
    if session is None:
        timeout = float(settings.B24_REQUEST_TIMEOUT)
        session = client.make_session(
            connect_timeout=min(client.CONNECT_TIMEOUT_S, timeout), read_timeout=timeout
        )
        _session_cache.clear()
        _session_cache[pid] = session
    return session


def _keyboard_fields(value: Any) -> Any:
    # Inside a batch KEYBOARD must be PHP bracket fields (spec §3.4), which have no booleans.
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, dict):
        return {k: _keyboard_fields(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keyboard_fields(v) for v in value]
    return value


def _command(
    code: str, *, user_id: int, message: str, attach: Any, keyboard: Any, url_preview: bool
) -> tuple[str, dict[str, Any]]:
    """One `imopenlines.network.message.add` sub-call.

    ATTACH goes as a JSON string, which the method decodes and which keeps numbers and nesting
    exactly as validated; KEYBOARD as bracket fields, since a JSON string fails in a batch.
    """
    method, params = client.network_message_add_command(
        code=code,
        user_id=user_id,
        message=message,
        keyboard=_keyboard_fields(keyboard) if keyboard else None,
        url_preview=url_preview,
    )
    if attach:
        params["ATTACH"] = _attach_json(attach)
    client.php_query(params)  # refuses now what the batch would refuse later
    return method, params


def _attach_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _send(
    portal: Portal, campaign: Campaign, items: Sequence[_Item], *, single: bool
) -> dict[int, BaseException | None]:
    """Send the claimed items; returns each recipient's failure (None = sent)."""
    try:
        commands = {
            f"r{item.recipient_pk}": _command(
                campaign.line_code,
                user_id=item.user_id,
                message=item.message,
                attach=campaign.attach,
                keyboard=campaign.keyboard,
                url_preview=campaign.url_preview,
            )
            for item in items
        }
    except (TypeError, ValueError) as exc:
        refusal = errors.Rejected("INVALID_SNAPSHOT", str(exc)[:200], None)
        return {item.recipient_pk: refusal for item in items}
    if single:
        item = items[0]
        _method, params = commands[f"r{item.recipient_pk}"]
        try:
            result = portal_call(
                portal,
                client.network_message_add,
                code=params["CODE"],
                user_id=item.user_id,
                message=item.message,
                attach=campaign.attach,
                keyboard=campaign.keyboard,
                url_preview=campaign.url_preview,
                session=_session(),
            )
        except (errors.BitrixError, PortalError) as exc:
            return {item.recipient_pk: exc}
        pacer.pacer_record(portal=portal, method=METHOD, call_time=result.time)
        return {item.recipient_pk: None}
    try:
        batch = portal_call(
            portal, client.batch, commands=commands, is_write=True, session=_session()
        )
    except (errors.BitrixError, PortalError) as exc:
        return {item.recipient_pk: exc for item in items}
    pacer.pacer_record_batch(portal=portal, method=METHOD, times=list(batch.times.values()))
    out: dict[int, BaseException | None] = {}
    for item in items:
        key = f"r{item.recipient_pk}"
        if key in batch.errors:
            out[item.recipient_pk] = batch.errors[key]
        elif key in batch.results:
            out[item.recipient_pk] = None
        else:
            out[item.recipient_pk] = errors.Unknown("the batch reply has no entry for it")
    return out


@dataclass(frozen=True)
class _Verdict:
    outcome: messaging.Outcome
    requeue: bool = False
    block: str = ""
    block_detail: str = ""
    single: bool = False
    resend: bool = False


def _verdict(exc: BaseException | None, item: _Item, nfr: bool) -> _Verdict:
    status = Delivery.Status
    if exc is None:
        return _Verdict(messaging.Outcome(status.SENT))
    if isinstance(exc, errors.RetryLater | errors.AuthExpired):
        outcome = messaging.Outcome(
            status.QUEUED, exc.code, str(exc.description), getattr(exc, "retry_after", None)
        )
        if item.attempts >= MAX_ATTEMPTS:
            return _Verdict(outcome, requeue=True, block="RETRIES_EXHAUSTED", block_detail=exc.code)
        return _Verdict(outcome, requeue=True)
    if isinstance(exc, PortalError):
        # Raised before any request for this message (portal unusable, tokens refused).
        outcome = messaging.Outcome(status.QUEUED, exc.code, exc.message)
        return _Verdict(outcome, requeue=True, block="AUTH_FAILED", block_detail=exc.message)
    if isinstance(exc, errors.Rejected):
        code = payload.canonical_error_code(exc.code) if exc.code.isupper() else exc.code
        if code == "ERROR_BATCH_METHOD_NOT_ALLOWED":
            return _Verdict(
                messaging.Outcome(status.QUEUED, code, str(exc.description)),
                requeue=True,
                single=True,
            )
        if code == "USER_MESSAGE_LIMIT" and item.resend:
            # The first attempt's outcome was unknown and our ledger allowed this user, so the
            # limit row Bitrix found can only be that first attempt's: it was delivered.
            return _Verdict(
                messaging.Outcome(
                    status.SENT,
                    code,
                    _("Delivered by the first attempt (the weekly limit confirmed it)."),
                )
            )
        if code in messaging.PER_RECIPIENT_CODES:
            final = status.LIMITED if code == "USER_MESSAGE_LIMIT" else status.REJECTED
            return _Verdict(messaging.Outcome(final, code, str(exc.description)))
        # Campaign-wide: nothing about this recipient; it stays queued for the resume.
        return _Verdict(
            messaging.Outcome(status.QUEUED, code, str(exc.description)),
            requeue=True,
            block=code,
            block_detail=str(exc.description),
        )
    if isinstance(exc, errors.Unknown):
        outcome = messaging.Outcome(status.UNKNOWN, exc.code, str(exc.description))
        # Where the weekly limit applies, one more attempt settles it (see module docstring);
        # only once: a resend whose reply is lost too stays `unknown` for a person.
        return _Verdict(outcome, resend=not nfr and not item.resend and item.resends == 0)
    raise exc


def _record(
    portal: Portal,
    campaign: Campaign,
    items: Sequence[_Item],
    failures: dict[int, BaseException | None],
) -> float:
    """Write the batch's outcomes in a constant number of queries; returns the lane's countdown."""
    now = timezone.now()
    verdicts = [
        (item, _verdict(failures.get(item.recipient_pk), item, portal.nfr)) for item in items
    ]
    with transaction.atomic():
        messaging.deliveries_record(
            portal=portal,
            line_code=campaign.line_code,
            results=[(item.delivery_id, item.user_id, v.outcome) for item, v in verdicts],
            now=now,
        )
        again = [item.recipient_pk for item, v in verdicts if v.requeue or v.resend]
        if again:
            Recipient.objects.filter(pk__in=again).update(due=True)
        blocks = {(v.block, v.block_detail) for _item, v in verdicts if v.block}
        if blocks:
            code, detail = sorted(blocks)[0]
            # Nothing is blocked when the campaign was resumed since this batch was claimed.
            if _block([campaign.pk], code, detail, generation=campaign.generation) and (
                code in PORTAL_WIDE_CODES
            ):
                others = Campaign.objects.filter(
                    portal=portal, status=Campaign.Status.RUNNING
                ).values_list("pk", flat=True)
                _block(list(others), code, detail)
        if any(v.single for _item, v in verdicts):
            CampaignSettings.objects.filter(portal=portal, single_calls=False).update(
                single_calls=True, single_calls_since=now
            )
            log.warning("portal %s refuses batched sends: switching to single calls", portal.pk)
    # After the commit, not inside it: of two lanes finishing the last batches at once, the one
    # that commits last must see the other's rows settled (READ COMMITTED on Postgres).
    _maybe_complete(campaign.pk, now)
    countdown = 0.0
    retry = [v.outcome for _item, v in verdicts if v.requeue and not v.block and not v.single]
    if retry:
        worst = max(item.attempts for item, v in verdicts if v.requeue)
        backoff = min(30.0, 2.0 ** max(0, worst - 1))
        hinted = max((o.retry_after or 0.0) for o in retry)
        countdown = max(hinted, backoff) * (1.0 + random.random() * 0.25)
    return countdown


def _maybe_complete(campaign_id: int, now: datetime) -> bool:
    """Mark a running campaign completed once nothing is due and nothing is in flight.

    One statement, so a batch costs the same queries at the end of a campaign as in its middle.
    """
    due = Recipient.objects.filter(campaign_id=OuterRef("pk"), due=True)
    in_flight = Delivery.objects.filter(
        status=Delivery.Status.SENDING, campaign_recipient__campaign_id=OuterRef("pk")
    )
    return bool(
        Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.RUNNING)
        .exclude(Exists(due))
        .exclude(Exists(in_flight))
        .update(status=Campaign.Status.COMPLETED, finished_at=now)
    )


# --- Recovery ---------------------------------------------------------------------------------


@dataclass
class Recovery:
    activated: int = 0
    unknown: int = 0
    resend: int = 0
    lanes_started: int = 0
    completed: int = 0
    resolving: int = 0


def _settle_lost(delivery_ids: Sequence[int], now: datetime) -> tuple[int, int]:
    """`sending` rows whose request may or may not have run → unknown (+ one resend where the
    weekly limit can prove the outcome). Returns (unknown, resend)."""
    if not delivery_ids:
        return 0, 0
    note = _("The worker stopped while this message was being sent; its outcome is unknown.")
    unknown = 0
    resend = 0
    for start in range(0, len(delivery_ids), INSERT_CHUNK):
        chunk = list(delivery_ids[start : start + INSERT_CHUNK])
        with transaction.atomic():
            settled = list(
                Delivery.objects.filter(pk__in=chunk, status=Delivery.Status.SENDING).values_list(
                    "pk", flat=True
                )
            )
            unknown += Delivery.objects.filter(
                pk__in=settled, status=Delivery.Status.SENDING
            ).update(
                status=Delivery.Status.UNKNOWN,
                error_code="WORKER_LOST",
                error_message=note[:500],
                finished_at=now,
            )
            resend += Recipient.objects.filter(
                delivery_id__in=settled, resends=0, campaign__portal__nfr=False
            ).update(due=True)
    return unknown, resend


def campaigns_recover(*, now: datetime | None = None, dead_holders: Sequence[str] = ()) -> Recovery:
    """Put every campaign back on its feet after a crash; safe to run any time, concurrently.

    - scheduled campaigns whose time has come start;
    - `sending` rows of lanes that died with a worker (`dead_holders`: the restarting worker's
      own name) and rows older than the request timeout are settled as `unknown`, and resent
      once where the weekly limit can prove the outcome;
    - lanes of portals with due recipients are restarted when their lease ran out;
    - resolutions whose step stopped are restarted; finished campaigns are completed.
    """
    now = now or timezone.now()
    report = Recovery()
    for campaign_id in Campaign.objects.filter(
        status=Campaign.Status.SCHEDULED, scheduled_at__lte=now
    ).values_list("pk", flat=True):
        report.activated += int(campaign_activate(campaign_id=campaign_id, now=now))

    if dead_holders:
        dead = list(
            Lane.objects.filter(holder__in=list(dead_holders))
            .exclude(token="")
            .values_list("pk", "token")
        )
        tokens = [token for _pk, token in dead]
        lost = list(
            Delivery.objects.filter(
                status=Delivery.Status.SENDING, campaign_recipient__claim_token__in=tokens
            ).values_list("pk", flat=True)
        )
        unknown, resend = _settle_lost(lost, now)
        report.unknown += unknown
        report.resend += resend
        for pk, token in dead:
            Lane.objects.filter(pk=pk, token=token).update(token="", lease_until=None, holder="")

    stale = list(
        Delivery.objects.filter(
            kind=Delivery.Kind.CAMPAIGN,
            status=Delivery.Status.SENDING,
            claimed_at__lt=now - stale_after(),
        ).values_list("pk", flat=True)
    )
    unknown, resend = _settle_lost(stale, now)
    report.unknown += unknown
    report.resend += resend

    running = Campaign.objects.filter(status=Campaign.Status.RUNNING)
    portal_ids = set(
        running.filter(
            Exists(Recipient.objects.filter(campaign=OuterRef("pk"), due=True))
        ).values_list("portal_id", flat=True)
    )
    for portal in Portal.objects.filter(pk__in=portal_ids):
        report.lanes_started += lanes_kick(portal=portal, now=now)
    for campaign_id in running.exclude(portal_id__in=portal_ids).values_list("pk", flat=True):
        report.completed += int(_maybe_complete(campaign_id, now))

    for campaign in Campaign.objects.filter(
        status=Campaign.Status.RESOLVING, resolve_lease__lt=now
    ):
        token = str((campaign.resolve_state or {}).get("token") or "")
        if not token:
            with transaction.atomic():
                _resolve_restart(campaign)
        else:
            Campaign.objects.filter(pk=campaign.pk).update(resolve_lease=now + RESOLVE_LEASE)
            _enqueue_resolve(campaign.pk, token, 0.0)
        report.resolving += 1
    if any(vars(report).values()):
        log.info("campaigns recovery: %s", report)
    return report


# --- Downloads ----------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def download_issue(*, campaign: Campaign, state: str = "") -> str:
    """A single-use token, valid for 60 seconds, for the report's CSV download."""
    token = secrets.token_urlsafe(32)
    DownloadToken.objects.filter(expires_at__lt=timezone.now() - timedelta(hours=1)).delete()
    DownloadToken.objects.create(
        token_hash=_hash(token),
        portal=campaign.portal,
        campaign=campaign,
        status_filter=state[:20],
        expires_at=timezone.now() + DOWNLOAD_TTL,
    )
    return token


def download_consume(*, token: str) -> DownloadToken | None:
    """Spend a download token: the row when it was unused and fresh, else None."""
    now = timezone.now()
    digest = _hash(token)
    if not DownloadToken.objects.filter(
        token_hash=digest, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now):
        return None
    return DownloadToken.objects.select_related("campaign", "portal").get(token_hash=digest)


def report_csv_rows(*, campaign: Campaign, state: str = "") -> Iterator[list[str]]:
    """The report as CSV rows, streamed from the database in chunks (flat memory)."""
    yield ["user_id", "name", "last_name", "state", "reason", "code", "detail", "finished_at"]
    skip_labels = dict(Recipient.Skip.choices)
    rows = report_rows(campaign=campaign, state=state).values_list(
        "user_id",
        "name",
        "last_name",
        "skip_reason",
        "delivery__status",
        "delivery__error_code",
        "delivery__error_message",
        "delivery__finished_at",
    )
    cancelled = campaign.status == Campaign.Status.CANCELLED
    for user_id, name, last_name, skip, status, code, detail, finished in rows.iterator(
        chunk_size=2000
    ):
        if skip:
            current = STATE_SKIPPED
        else:
            current = status or Delivery.Status.QUEUED
            if cancelled and current == Delivery.Status.QUEUED:
                current = STATE_NOT_SENT
        yield [
            str(user_id),
            _csv_safe(name),
            _csv_safe(last_name),
            current,
            str(skip_labels.get(skip, "")) if skip else "",
            code or "",
            _csv_safe(detail or ""),
            finished.isoformat() if finished else "",
        ]


def _csv_safe(value: str) -> str:
    # Spreadsheet apps run cells starting with = + - @ as formulas; names come from users.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- Uninstall --------------------------------------------------------------------------------


def campaign_payload_of(delivery: Delivery) -> tuple[Any, Any] | None:
    """The campaign's ATTACH and KEYBOARD for one of its deliveries (kept once per campaign)."""
    found = (
        Campaign.objects.filter(recipients__delivery=delivery)
        .values_list("attach", "keyboard")
        .first()
    )
    return (found[0], found[1]) if found else None


def campaigns_on_uninstall(*, portal: Portal, clean: bool) -> None:
    """Stop the portal's campaigns; forget people's names; with `clean`, delete everything."""
    Campaign.objects.filter(
        portal=portal,
        status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED],
    ).update(status=Campaign.Status.BLOCKED, blocked_code="UNINSTALLED", blocked_detail="")
    Recipient.objects.filter(campaign__portal=portal).update(name="", last_name="")
    # Names people typed or Bitrix24 gave: the authors' and whatever a note says about an opt-out.
    # The opt-outs themselves stay, so that a reinstall never messages those users.
    Campaign.objects.filter(portal=portal).update(author_name="")
    Exclusion.objects.filter(portal=portal).update(note="")
    if clean:
        Campaign.objects.filter(portal=portal).delete()
        Exclusion.objects.filter(portal=portal).delete()
        CampaignSettings.objects.filter(portal=portal).delete()
