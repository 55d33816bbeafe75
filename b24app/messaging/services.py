"""Messaging services: validate, send one message, record its outcome, keep the weekly ledger.

`message_send` is what the composer calls. It validates like the server and the app's stricter
policy (`payload.validate_params`), checks our copy of the weekly-limit ledger, creates the
Delivery as `queued`, claims it exactly as a worker would, calls Bitrix *outside* any database
transaction, and records the outcome. Campaigns reuse `delivery_claim` / `delivery_record`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from b24app.bitrix import client, errors
from b24app.messaging import payload
from b24app.messaging.models import WEEKLY_LIMIT, Delivery, Draft, LimitEntry, Line, Template
from b24app.portals import pacer
from b24app.portals.audit import audit_record
from b24app.portals.models import Portal
from b24app.portals.services import PortalError, PortalUnavailable, portal_call

log = logging.getLogger(__name__)

METHOD = "imopenlines.network.message.add"

# A refusal about one recipient ends that recipient; anything else is about the whole message.
PER_RECIPIENT_CODES = frozenset({"USER_MESSAGE_LIMIT", "WRONG_REQUEST", "USER_ID_EMPTY"})


@dataclass(frozen=True)
class FieldError:
    """A refusal to show next to a form field (`field` is a payload path such as USER_ID)."""

    code: str
    field: str
    message: str


class SendRefused(Exception):
    """The message was not sent; each error belongs next to its field."""

    def __init__(self, field_errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.code}" for e in field_errors))
        self.errors = list(field_errors)


# Where a server code belongs in the form.
FIELD_OF_CODE = {
    "CODE": "CODE",
    "NOT_FOUND": "CODE",
    "INACTIVE": "CODE",
    "USER_ID_EMPTY": "USER_ID",
    "USER_MESSAGE_LIMIT": "USER_ID",
    "WRONG_REQUEST": "USER_ID",
    "MESSAGE_EMPTY": "MESSAGE",
    "ATTACH_OVERSIZE": "ATTACH",
    "ATTACH_ERROR": "ATTACH",
    "KEYBOARD_ERROR": "KEYBOARD",
    "KEYBOARD_OVERSIZE": "KEYBOARD",
}


def build_params(
    *, line: Line, user_id: int, message: str, attach: Any, keyboard: Any, url_preview: bool
) -> dict[str, Any]:
    """The method's parameters as they go in the JSON body (spec §5.2)."""
    params: dict[str, Any] = {
        "CODE": line.code,
        "USER_ID": user_id,
        "MESSAGE": message,
        "URL_PREVIEW": "Y" if url_preview else "N",
    }
    if attach:
        params["ATTACH"] = attach
    if keyboard:
        params["KEYBOARD"] = keyboard
    return params


def message_validate(params: Mapping[str, Any]) -> list[FieldError]:
    """Every problem with the message, in the order the server would report them."""
    return [
        FieldError(code=p.code, field=p.field, message=str(p.message))
        for p in payload.validate_params(params)
    ]


def limit_entry(*, portal: Portal, line_code: str, user_id: int) -> LimitEntry | None:
    return LimitEntry.objects.filter(portal=portal, line_code=line_code, user_id=user_id).first()


def limit_blocks(
    *, portal: Portal, line_code: str, user_id: int, now: datetime | None = None
) -> LimitEntry | None:
    """The ledger row that blocks this recipient now, or None (always None on NFR portals)."""
    if portal.nfr:
        return None
    entry = limit_entry(portal=portal, line_code=line_code, user_id=user_id)
    if entry is not None and entry.blocks(now or timezone.now()):
        return entry
    return None


def limit_record(
    *, portal: Portal, line_code: str, user_id: int, sent_at: datetime, source: str
) -> LimitEntry:
    """Remember a send (or a server-reported limit) for the weekly ledger."""
    entry, _created = LimitEntry.objects.update_or_create(
        portal=portal,
        line_code=line_code,
        user_id=user_id,
        defaults={"sent_at": sent_at, "source": source},
    )
    return entry


def limit_message(entry: LimitEntry) -> str:
    when = timezone.localtime(entry.next_allowed_at).strftime("%Y-%m-%d %H:%M %Z")
    return _(
        "This person was already messaged from this line this week; "
        "they can be messaged again from %(when)s."
    ) % {"when": when}


def message_send(
    *,
    portal: Portal,
    line: Line,
    user_id: int,
    message: str,
    attach: Any = None,
    keyboard: Any = None,
    url_preview: bool = True,
    author_user_id: int | None = None,
    kind: str = Delivery.Kind.SINGLE,
    recipient_name: str = "",
) -> Delivery:
    """Validate and send one message now; returns the Delivery with its outcome.

    Raises SendRefused (nothing stored) for anything the server or our policy would refuse,
    including a recipient our ledger knows is inside the weekly limit.
    """
    params = build_params(
        line=line,
        user_id=user_id,
        message=message,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
    )
    problems = message_validate(params)
    if problems:
        raise SendRefused(problems)
    blocking = limit_blocks(portal=portal, line_code=line.code, user_id=user_id)
    if blocking is not None:
        raise SendRefused([FieldError("USER_MESSAGE_LIMIT", "USER_ID", limit_message(blocking))])
    delivery = Delivery.objects.create(
        portal=portal,
        line=line,
        user_id=user_id,
        recipient_name=recipient_name[:200],
        author_user_id=author_user_id,
        kind=kind,
        message=message,
        attach=attach or None,
        keyboard=keyboard or None,
        url_preview=url_preview,
    )
    delivery = delivery_send(delivery_id=delivery.pk, interactive=True)
    audit_record(
        portal=portal,
        action=f"message.{kind}",
        actor_user_id=author_user_id,
        target=f"user {user_id}",
        details={"delivery": delivery.pk, "line": line.code, "status": delivery.status},
    )
    return delivery


def delivery_claim(*, delivery_id: int) -> bool:
    """Move a queued delivery to `sending`; True only for the one caller that did."""
    return (
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SENDING, claimed_at=timezone.now(), attempts=F("attempts") + 1
        )
        == 1
    )


@dataclass(frozen=True)
class Outcome:
    """What happened to one attempt: a final status, or `queued` with an optional wait."""

    status: str
    code: str = ""
    message: str = ""
    retry_after: float | None = None


# Where the ATTACH and KEYBOARD of a delivery live when it does not hold them itself: a campaign
# keeps one copy for all its recipients. The app that creates such deliveries registers a lookup
# (messaging never imports it); a lookup answers None for deliveries that are not its own.
PayloadLookup = Callable[[Delivery], "tuple[Any, Any] | None"]
_payload_lookups: list[PayloadLookup] = []


def delivery_payload_lookup(lookup: PayloadLookup) -> PayloadLookup:
    """Register where deliveries of another app keep their ATTACH and KEYBOARD."""
    if lookup not in _payload_lookups:
        _payload_lookups.append(lookup)
    return lookup


def delivery_payload(delivery: Delivery) -> tuple[Any, Any]:
    """The `(ATTACH, KEYBOARD)` a delivery was sent with, wherever they are kept."""
    if delivery.attach is not None or delivery.keyboard is not None:
        return delivery.attach, delivery.keyboard
    if delivery.kind != Delivery.Kind.CAMPAIGN or not delivery.message:
        return None, None  # a single message without them, or contents erased at uninstall
    for lookup in _payload_lookups:
        found = lookup(delivery)
        if found is not None:
            return found
    return None, None


def outcome_of(exc: BaseException | None) -> Outcome:
    """Classify one attempt's result into the Delivery state machine."""
    if exc is None:
        return Outcome(Delivery.Status.SENT)
    if isinstance(exc, errors.RetryLater):
        # Provably not executed (refused before sending, or by the rate/time limiter).
        return Outcome(Delivery.Status.QUEUED, exc.code, str(exc.description), exc.retry_after)
    if isinstance(exc, errors.Rejected):
        code = payload.canonical_error_code(exc.code)
        status = (
            Delivery.Status.LIMITED if code == "USER_MESSAGE_LIMIT" else Delivery.Status.REJECTED
        )
        return Outcome(status, code, str(exc.description))
    if isinstance(exc, PortalUnavailable | PortalError):
        # No request for this message was made: the portal cannot be called at all.
        return Outcome(Delivery.Status.QUEUED, exc.code, exc.message)
    if isinstance(exc, errors.Unknown):
        return Outcome(Delivery.Status.UNKNOWN, exc.code, str(exc.description))
    if isinstance(exc, errors.AuthExpired):
        return Outcome(Delivery.Status.QUEUED, exc.code, str(exc.description))
    raise exc


def _ledger_blocks(delivery: Delivery, now: datetime) -> bool:
    """Whether our ledger row for this delivery's line and recipient blocks at `now`.

    Unlike `limit_blocks` this ignores NFR: it asks what our row says, not whether to send.
    """
    entry = limit_entry(
        portal=delivery.portal, line_code=delivery.line.code, user_id=delivery.user_id
    )
    return entry is not None and entry.blocks(now)


def delivery_record(*, delivery: Delivery, outcome: Outcome, now: datetime | None = None) -> None:
    """Write an attempt's outcome; a success or a limit also updates the weekly ledger."""
    now = now or timezone.now()
    with transaction.atomic():
        fields: dict[str, Any] = {
            "status": outcome.status,
            "error_code": outcome.code[:60],
            "error_message": outcome.message[:500],
        }
        if outcome.status in Delivery.FINAL:
            fields["finished_at"] = now
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(**fields)
        if outcome.status == Delivery.Status.SENT:
            limit_record(
                portal=delivery.portal,
                line_code=delivery.line.code,
                user_id=delivery.user_id,
                sent_at=now,
                source=LimitEntry.Source.APP,
            )
        elif outcome.status == Delivery.Status.LIMITED and not _ledger_blocks(delivery, now):
            # The server knows of a send we do not (we have no row, or ours is over a week old):
            # date it now, so the next eligible moment shown is at most 7 days away. A row of
            # ours that still blocks already tells the truth and is kept.
            limit_record(
                portal=delivery.portal,
                line_code=delivery.line.code,
                user_id=delivery.user_id,
                sent_at=now,
                source=LimitEntry.Source.SERVER,
            )
    for key, value in fields.items():
        setattr(delivery, key, value)


def deliveries_record(
    *,
    portal: Portal,
    line_code: str,
    results: Sequence[tuple[int, int, Outcome]],
    now: datetime | None = None,
) -> None:
    """Write the outcomes of many attempts on one line at once (a campaign's batch).

    `results` holds `(delivery_id, user_id, outcome)`. The rules are those of `delivery_record`
    (only rows still `sending` change; a success writes the ledger; a limit we did not predict
    writes or re-dates a `server` ledger row), but the cost is one UPDATE per distinct outcome
    plus at most three ledger statements, whatever the number of results.
    """
    now = now or timezone.now()
    groups: dict[tuple[str, str, str], list[int]] = {}
    sent: list[int] = []
    limited: list[int] = []
    for delivery_id, user_id, outcome in results:
        key = (outcome.status, outcome.code[:60], outcome.message[:500])
        groups.setdefault(key, []).append(delivery_id)
        if outcome.status == Delivery.Status.SENT:
            sent.append(user_id)
        elif outcome.status == Delivery.Status.LIMITED:
            limited.append(user_id)
    with transaction.atomic():
        for (status, code, message), ids in groups.items():
            fields: dict[str, Any] = {
                "status": status,
                "error_code": code,
                "error_message": message,
            }
            if status in Delivery.FINAL:
                fields["finished_at"] = now
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING).update(**fields)
        if sent:
            LimitEntry.objects.bulk_create(
                [
                    LimitEntry(
                        portal=portal,
                        line_code=line_code,
                        user_id=user_id,
                        sent_at=now,
                        source=LimitEntry.Source.APP,
                    )
                    for user_id in sent
                ],
                update_conflicts=True,
                unique_fields=["portal", "line_code", "user_id"],
                update_fields=["sent_at", "source"],
            )
        if limited:
            # The server knows of a send we do not. A row of ours that no longer blocks (over a
            # week old) is re-dated now; a row that still blocks already tells the truth.
            LimitEntry.objects.filter(
                portal=portal,
                line_code=line_code,
                user_id__in=limited,
                sent_at__lte=now - WEEKLY_LIMIT,
            ).update(sent_at=now, source=LimitEntry.Source.SERVER)
            # Where we had no row at all, one dated now.
            LimitEntry.objects.bulk_create(
                [
                    LimitEntry(
                        portal=portal,
                        line_code=line_code,
                        user_id=user_id,
                        sent_at=now,
                        source=LimitEntry.Source.SERVER,
                    )
                    for user_id in limited
                ],
                ignore_conflicts=True,
            )


def delivery_send(*, delivery_id: int, interactive: bool) -> Delivery:
    """Claim one queued delivery and send it; returns the delivery as it ended up.

    If the pacer has no token now, the delivery stays `queued` and is handed to a worker with
    that countdown (messaging.tasks.delivery_send_later).
    """
    delivery = Delivery.objects.select_related("portal", "line").get(pk=delivery_id)
    wait = pacer.pacer_acquire(portal=delivery.portal, interactive=interactive, method=METHOD)
    if wait > 0:
        _send_later(delivery.pk, wait)
        return delivery
    if not delivery_claim(delivery_id=delivery_id):
        delivery.refresh_from_db()
        return delivery
    delivery.status = Delivery.Status.SENDING
    failure: BaseException | None = None
    try:
        result = portal_call(
            delivery.portal,
            client.network_message_add,
            code=delivery.line.code,
            user_id=delivery.user_id,
            message=delivery.message,
            attach=delivery.attach,
            keyboard=delivery.keyboard,
            url_preview=delivery.url_preview,
            # Older portals refuse every keyboard without a top-level BOT_ID (spec §5.6); the
            # line's network bot id satisfies them, and newer ones only use it for COMMAND
            # buttons, which our policy never lets through. Unverified on a live portal.
            bot_id=delivery.line.bot_id if delivery.keyboard else None,
        )
        pacer.pacer_record(portal=delivery.portal, method=METHOD, call_time=result.time)
    except (errors.BitrixError, PortalError) as exc:
        failure = exc
    outcome = outcome_of(failure)
    if isinstance(failure, PortalError) and interactive:
        # Nobody will come back for a single message while the portal cannot be called: say
        # "not sent" now (nothing reached Bitrix) instead of leaving it queued indefinitely.
        outcome = Outcome(Delivery.Status.REJECTED, outcome.code, outcome.message)
    delivery_record(delivery=delivery, outcome=outcome)
    if outcome.status == Delivery.Status.QUEUED and not isinstance(failure, PortalError):
        _send_later(delivery.pk, outcome.retry_after or 2.0)
    return delivery


def _send_later(delivery_id: int, countdown: float) -> None:
    from b24app.messaging import tasks

    transaction.on_commit(
        lambda: tasks.delivery_send_later.apply_async((delivery_id,), countdown=countdown)
    )


def line_join(*, portal: Portal, code: str, name: str = "") -> Line:
    """Save a line by its 32-character CODE and join it (`imopenlines.network.join`).

    The line is saved whatever the answer, with the join state shown to the admin, since a line
    not joined answers NOT_FOUND to every message.
    """
    line, _created = Line.objects.get_or_create(portal=portal, code=code, defaults={"name": name})
    if name and line.name != name:
        line.name = name
    try:
        bot_id = portal_call(portal, client.network_join, code=code)
    except errors.Rejected as exc:
        line.join_status = {
            "NOT_FOUND": Line.JoinStatus.NOT_FOUND,
            "INACTIVE": Line.JoinStatus.INACTIVE,
        }.get(exc.code, Line.JoinStatus.FAILED)
        line.join_error = f"{exc.code}: {exc.description}"[:300]
    except (errors.BitrixError, PortalError) as exc:
        line.join_status = Line.JoinStatus.FAILED
        line.join_error = getattr(exc, "code", type(exc).__name__)
    else:
        line.bot_id = bot_id
        line.join_status = Line.JoinStatus.JOINED
        line.join_error = ""
        line.joined_at = timezone.now()
    line.save()
    return line


def messaging_on_uninstall(*, portal: Portal, clean: bool) -> None:
    """Erase the portal's personal data in messaging; with `clean`, delete all of its data.

    Always: every delivery loses its recipient's name and its content (MESSAGE, ATTACH and
    KEYBOARD may name or picture the recipient: a campaign's personalised text, an ATTACH USER
    block with a name and an avatar, a greeting typed by hand), and drafts, each one user's
    unsent form with a recipient picked, are deleted. What is kept names people only by Bitrix24
    user id: the outcomes, and the weekly ledger, which a reinstall needs because the server's
    own limit outlives the uninstall (spec §5.7); templates and lines are the portal's settings.

    With `clean`: templates, deliveries, drafts, lines and the ledger are all deleted. This runs
    inside the uninstall transaction after the campaigns receiver (portals.signals), so no
    campaign still protects a line.
    """
    Draft.objects.filter(portal=portal).delete()
    if clean:
        Template.objects.filter(portal=portal).delete()
        Delivery.objects.filter(portal=portal).delete()  # before lines: Delivery.line PROTECTs
        LimitEntry.objects.filter(portal=portal).delete()
        Line.objects.filter(portal=portal).delete()
        return
    Delivery.objects.filter(portal=portal).update(
        recipient_name="", message="", attach=None, keyboard=None
    )


# --- Composer support: the ledger as shown before sending, drafts, templates, history ---------


class MessagingError(Exception):
    """A composer request the user must correct (shown inline next to its field)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LimitStatus:
    """What our weekly-limit ledger says about one (portal, line, recipient), right now."""

    exempt: bool
    entry: LimitEntry | None
    blocked: bool

    @property
    def sent_at(self) -> datetime | None:
        return self.entry.sent_at if self.entry else None

    @property
    def next_allowed_at(self) -> datetime | None:
        return self.entry.next_allowed_at if self.entry else None


def limit_status(
    *, portal: Portal, line_code: str, user_id: int, now: datetime | None = None
) -> LimitStatus:
    """The ledger row for this recipient on this line and whether it blocks a send now.

    NFR portals have no weekly limit (spec §5.7): they are reported as exempt and never blocked,
    the same rule `limit_blocks` applies when sending.
    """
    if portal.nfr:
        return LimitStatus(exempt=True, entry=None, blocked=False)
    entry = limit_entry(portal=portal, line_code=line_code, user_id=user_id)
    blocked = entry is not None and entry.blocks(now or timezone.now())
    return LimitStatus(exempt=False, entry=entry, blocked=blocked)


#: A draft is the composer's raw form data; anything larger is a paste gone wrong.
DRAFT_MAX_CHARS = 200_000


def draft_get(*, portal: Portal, user_id: int) -> Draft | None:
    """The user's autosaved composer state on this portal, if any."""
    return Draft.objects.filter(portal=portal, user_id=user_id).first()


def draft_save(*, portal: Portal, user_id: int, data: Mapping[str, str]) -> Draft:
    """Autosave the composer's unsent form data (one draft per user and portal).

    The draft keeps exactly what was typed, invalid values included, so nothing is lost; it is
    not a message and is never validated. Raises MessagingError when it is unreasonably large.
    """
    clean = {str(key): str(value) for key, value in data.items()}
    if sum(len(key) + len(value) for key, value in clean.items()) > DRAFT_MAX_CHARS:
        raise MessagingError("DRAFT_TOO_LARGE", _("The draft is too large to autosave."))
    draft, _created = Draft.objects.update_or_create(
        portal=portal, user_id=user_id, defaults={"data": clean}
    )
    return draft


def draft_delete(*, portal: Portal, user_id: int) -> None:
    """Forget the user's draft (after a send, or when they start over)."""
    Draft.objects.filter(portal=portal, user_id=user_id).delete()


class TemplateRefused(SendRefused):
    """The template's message would be refused; each error belongs next to its field."""


def template_save(
    *,
    portal: Portal,
    name: str,
    message: str,
    attach: Any = None,
    keyboard: Any = None,
    url_preview: bool = True,
    created_by: int | None = None,
) -> Template:
    """Save a reusable message for the whole portal; the same name replaces the old one.

    Only a message that could be sent is saved (text, ATTACH and KEYBOARD pass the same checks
    as `message_send`), stored as Bitrix structures so campaigns can reuse it as it is.
    """
    name = " ".join(name.split())[:200]
    if not name:
        raise TemplateRefused([FieldError("NAME_EMPTY", "NAME", _("Give the template a name."))])
    params = {"MESSAGE": message, "URL_PREVIEW": "Y" if url_preview else "N"}
    if attach:
        params["ATTACH"] = attach
    if keyboard:
        params["KEYBOARD"] = keyboard
    problems = [
        problem
        for problem in message_validate(params)
        if problem.field.split(".")[0].split("[")[0] in ("MESSAGE", "ATTACH", "KEYBOARD")
    ]
    if problems:
        raise TemplateRefused(problems)
    data = {
        "message": message,
        "attach": attach or None,
        "keyboard": keyboard or None,
        "url_preview": url_preview,
    }
    with transaction.atomic():
        template = Template.objects.filter(portal=portal, name=name).first()
        if template is None:
            template = Template(portal=portal, name=name, created_by=created_by)
        template.data = data
        template.save()
    return template


def template_delete(*, template: Template) -> None:
    """Remove a template (the caller has scoped it to the frame's portal)."""
    template.delete()


def deliveries_for(
    *,
    portal: Portal,
    status: str = "",
    line: Line | None = None,
    user_id: int | None = None,
    recipient: str = "",
    kind: str = "",
) -> QuerySet[Delivery]:
    """The portal's deliveries, newest first, narrowed by the history page's filters.

    `recipient` matches the stored recipient name (case-insensitive substring).
    """
    deliveries = Delivery.objects.filter(portal=portal).select_related("line")
    if status:
        deliveries = deliveries.filter(status=status)
    if line is not None:
        deliveries = deliveries.filter(line=line)
    if user_id is not None:
        deliveries = deliveries.filter(user_id=user_id)
    if recipient:
        deliveries = deliveries.filter(recipient_name__icontains=recipient)
    if kind:
        deliveries = deliveries.filter(kind=kind)
    return deliveries.order_by("-created_at", "-pk")
