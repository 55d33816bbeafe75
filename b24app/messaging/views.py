"""Composer and history views, inside the Bitrix24 frame.

Every view is a `frame_view`: the signed frame token names the portal and user, and every query
below is scoped to `request.frame.portal` (another portal's ids answer 404). A view reads the
posted composer through `forms.Composer`, calls one service, and renders one named partial of
`messaging/compose.html` (the partial name, the element id and the hx-target are the same
word). Errors are shown inline at status 200, since htmx 2 does not swap 4xx answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from b24app.bitrix import client, errors
from b24app.messaging import forms, payload, services
from b24app.messaging import render as chat
from b24app.messaging.forms import Composer, Issue
from b24app.messaging.models import Delivery, Line, Template
from b24app.portals import error_texts
from b24app.portals.frame import FrameRequest, frame_view
from b24app.portals.services import PortalError, portal_call

log = logging.getLogger(__name__)

COMPOSE = "messaging/compose.html"
HISTORY = "messaging/history.html"
DELIVERY = "messaging/delivery.html"
PAGE_SIZE = 25
SEARCH_RESULTS = 20
# A fixed ten-digit ID when measuring an ATTACH: the server puts the current unix time there.
_MEASURE_NOW = 1_700_000_000


def admin_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`frame_view` for Bitrix24 administrators only (the admin flag comes from `profile`)."""
    decorated: Callable[..., HttpResponse] = frame_view(admin=True)(view)
    return decorated


# --- lookups and shared context ------------------------------------------------------------


def _posted(request: FrameRequest) -> dict[str, str]:
    return request.POST.dict()


def _composer(request: FrameRequest, data: Mapping[str, Any] | None = None) -> Composer:
    return Composer(_posted(request) if data is None else data, portal=request.frame.portal)


def _page_partial(request: FrameRequest, template: str) -> str:
    """The whole page, or only its `app-page` region for htmx navigation inside the app."""
    return f"{template}#app-page" if request.htmx else template


@dataclass(frozen=True)
class Meter:
    """One live size meter: `ATTACH 12.4 of 30.0 KB`."""

    name: str
    size: int
    limit: int

    @property
    def kilobytes(self) -> str:
        return f"{self.size / 1000:.1f}"

    @property
    def limit_kilobytes(self) -> str:
        return f"{self.limit / 1000:.1f}"

    @property
    def percent(self) -> int:
        return min(100, round(self.size * 100 / self.limit))

    @property
    def state(self) -> str:
        if self.size >= self.limit:
            return "over"
        return "near" if self.size >= self.limit * 0.8 else "ok"


def _preview_context(request: FrameRequest, composer: Composer) -> dict[str, Any]:
    """The chat-like preview, size meters and live problems of the current composer state."""
    portal = request.frame.portal
    message = composer.message_text()
    attach = payload.parse_attach(
        composer.attach_value(partial=True), _MEASURE_NOW, random_color=lambda: "#000000"
    )
    keyboard = payload.parse_keyboard(composer.keyboard_value(partial=True))
    html = chat.render_message(
        message=message,
        attach=attach,
        keyboard=keyboard,
        sent_at=timezone.now(),
        base_url=portal.origin,
    )
    problems = composer.check_content(place=False)
    return {
        "preview_html": html,
        "preview_empty": not (message.strip() or attach or keyboard),
        "preview_mobile": composer.form.value("preview_width") == "mobile",
        "meters": [
            Meter("ATTACH", payload.attach_size(attach, "bytes") if attach else 0, _limit()),
            Meter("KEYBOARD", payload.attach_size(keyboard, "bytes") if keyboard else 0, _limit()),
        ],
        "problems": [(composer.describe(p.field), str(p.message)) for p in problems],
        "fields_invalid": not composer.builders_valid,
    }


def _limit() -> int:
    return payload.POLICY_SIZE_LIMIT


def _recipient_context(request: FrameRequest, composer: Composer) -> dict[str, Any]:
    """The weekly-limit ledger for the chosen recipient and for the author (test sends)."""
    portal = request.frame.portal
    line = composer.form.chosen_line
    user_id = composer.form.value("user_id")
    ledger = None
    test_ledger = None
    if line is not None:
        if user_id:
            ledger = services.limit_status(portal=portal, line_code=line.code, user_id=user_id)
        test_ledger = services.limit_status(
            portal=portal, line_code=line.code, user_id=request.frame.user_id
        )
    return {"ledger": ledger, "test_ledger": test_ledger, "chosen_line": line}


def _context(request: FrameRequest, composer: Composer, **extra: Any) -> dict[str, Any]:
    portal = request.frame.portal
    context: dict[str, Any] = {
        "frame": request.frame,
        "frame_token": request.frame.token(),
        "composer": composer,
        "form": composer.form,
        "attach": composer.attach,
        "keyboard": composer.keyboard,
        "lines": list(Line.objects.filter(portal=portal)),
        "templates": list(Template.objects.filter(portal=portal)),
        "block_kinds": [(kind, cls.label) for kind, cls in forms.BLOCK_FORMS.items()],
        "line_form": forms.LineForm(),
        "template_form": forms.TemplateForm(),
    }
    context.update(_recipient_context(request, composer))
    context.update(extra)
    return context


def _render(
    request: FrameRequest, partial: str | None, composer: Composer, **extra: Any
) -> HttpResponse:
    template = f"{COMPOSE}#{partial}" if partial else COMPOSE
    context = _context(request, composer, **extra)
    if partial in (None, "app-page", "composer", "preview"):
        context.update(_preview_context(request, composer))
    return render(request, template, context)


def _builder_changed(response: HttpResponse) -> HttpResponse:
    # The preview and the draft autosave listen for this to refresh after a builder action. After
    # the settle, so that they post the builder as swapped in, not as it was before the action.
    trigger_client_event(response, "builder-changed", after="settle")
    return response


# --- the composer page ---------------------------------------------------------------------


@frame_view
@require_http_methods(["GET", "POST"])
def compose(request: FrameRequest) -> HttpResponse:
    """The composer, filled from the user's draft when there is one."""
    draft = services.draft_get(portal=request.frame.portal, user_id=request.frame.user_id)
    data = dict(draft.data) if draft else {"url_preview": "on"}
    line = str(data.get("line") or "")
    if not (line.isdigit() and Line.objects.filter(portal=request.frame.portal, pk=line).exists()):
        # No line yet, or the draft's line was deleted since: start from the usual choice.
        data.pop("line", None)
        data.update(_default_line(request))
    composer = _composer(request, data)
    partial = "app-page" if request.htmx else None
    return _render(request, partial, composer, draft_restored=draft is not None)


def _default_line(request: FrameRequest) -> dict[str, str]:
    """Preselect the only joined line, the usual case."""
    joined = Line.objects.filter(
        portal=request.frame.portal, join_status=Line.JoinStatus.JOINED
    ).values_list("pk", flat=True)[:2]
    ids = list(joined)
    return {"line": str(ids[0])} if len(ids) == 1 else {}


@frame_view
@require_POST
def preview(request: FrameRequest) -> HttpResponse:
    """The live preview and size meters, re-rendered as the user types.

    Runs on every keystroke pause, so it renders the preview region alone from its own small
    context (no lines, templates or ledger lookups: the region shows none of them).
    """
    data = _posted(request)
    data.pop("line", None)  # the preview shows no line: spare the lookup
    context = _preview_context(request, _composer(request, data))
    return render(request, f"{COMPOSE}#preview", context)


@frame_view
@require_POST
def attach(request: FrameRequest) -> HttpResponse:
    """Apply one attachment-builder action (add, move, remove, import...) to the unsaved data."""
    composer = _composer(request)
    action = forms.read_action(request.POST)
    if action is not None:
        composer.attach.apply(action)
        if action.name == "import_attach" and not composer.attach.json_issues:
            composer.check_content(sections=("ATTACH",))
    return _builder_changed(_render(request, "attach-builder", composer))


@frame_view
@require_POST
def keyboard(request: FrameRequest) -> HttpResponse:
    """Apply one keyboard-builder action to the unsaved buttons."""
    composer = _composer(request)
    action = forms.read_action(request.POST)
    if action is not None:
        composer.keyboard.apply(action)
        if action.name == "import_keyboard" and not composer.keyboard.json_issues:
            composer.check_content(sections=("KEYBOARD",))
    return _builder_changed(_render(request, "keyboard-builder", composer))


# --- recipient and line --------------------------------------------------------------------


@frame_view
@require_POST
def recipient(request: FrameRequest) -> HttpResponse:
    """Set or clear the recipient and show what the weekly-limit ledger says about them."""
    data = _posted(request)
    pick = forms.RecipientPickForm(data)
    if "clear_recipient" in data:
        data.update(user_id="", recipient_name="")
    elif pick.is_valid() and pick.cleaned_data.get("pick_user_id"):
        data.update(
            user_id=str(pick.cleaned_data["pick_user_id"]),
            recipient_name=pick.cleaned_data.get("pick_name") or "",
        )
    return _render(request, "recipient", _composer(request, data))


@frame_view
@require_GET
def recipient_search(request: FrameRequest) -> HttpResponse:
    """Find portal users by name (`user.search`) for the recipient field."""
    query = forms.RecipientSearchForm(request.GET).query()
    users: list[Any] = []
    failure = ""
    if len(query) >= 2:
        try:
            page = portal_call(request.frame.portal, client.user_search, find=query)
        except (errors.BitrixError, PortalError) as exc:
            log.info("user.search failed: %s", type(exc).__name__)
            failure = _("Bitrix24 did not answer the search; try again, or use the picker.")
        else:
            users = [user for user in page.items if user.active][:SEARCH_RESULTS]
    return render(
        request,
        f"{COMPOSE}#recipient-results",
        {"query": query, "users": users, "search_failure": failure, "searched": len(query) >= 2},
    )


@admin_view
@require_POST
def lines(request: FrameRequest) -> HttpResponse:
    """An admin saves an open line by its CODE; the app joins it and shows how that went."""
    data = _posted(request)
    line_form = forms.LineForm(data)
    joined: Line | None = None
    if line_form.is_valid():
        joined = services.line_join(
            portal=request.frame.portal,
            code=line_form.cleaned_data["line_code"],
            name=line_form.cleaned_data.get("line_name") or "",
        )
        data["line"] = str(joined.pk)
        line_form = forms.LineForm()
    return _render(
        request, "lines", _composer(request, data), line_form=line_form, line_result=joined
    )


@admin_view
@require_POST
def line_join(request: FrameRequest, line_id: int) -> HttpResponse:
    """Try joining a saved line again (after it was activated on the owner's side)."""
    line = get_object_or_404(Line, pk=line_id, portal=request.frame.portal)
    joined = services.line_join(portal=request.frame.portal, code=line.code)
    data = _posted(request)
    data["line"] = str(joined.pk)
    return _render(request, "lines", _composer(request, data), line_result=joined)


# --- sending -------------------------------------------------------------------------------


def _limit_issue(request: FrameRequest, line: Line, user_id: int) -> Issue:
    status = services.limit_status(
        portal=request.frame.portal, line_code=line.code, user_id=user_id
    )
    return Issue(
        error_texts.error_label("USER_MESSAGE_LIMIT"),
        code="USER_MESSAGE_LIMIT",
        until=status.next_allowed_at,
    )


def _refusal_issue(
    request: FrameRequest, code: str, message: str, line: Line, user_id: int
) -> tuple[str, Issue]:
    """Where a refusal belongs in the form and what to say there."""
    code = payload.canonical_error_code(code) if code else code
    if code == "USER_MESSAGE_LIMIT":
        return "USER_ID", _limit_issue(request, line, user_id)
    field = services.FIELD_OF_CODE.get(code, "")
    text = error_texts.error_label(code)
    if message and not error_texts.is_known(code):
        text = f"{text} {message}"  # Bitrix's own words say more than the generic sentence
    if not field:
        text = _("Bitrix24 refused the message: %(reason)s") % {"reason": text}
    return field, Issue(text, code=code)


def _pending_unknown(request: FrameRequest, composer: Composer, user_id: int) -> Delivery | None:
    """A delivery of the same message whose outcome is unknown, unless the user confirmed."""
    data = composer.form.cleaned_data
    pending = data.get("unknown_delivery")
    if not pending or data.get("confirm_resend"):
        return None
    return Delivery.objects.filter(
        pk=pending,
        portal=request.frame.portal,
        status=Delivery.Status.UNKNOWN,
        line=data.get("line"),
        user_id=user_id,
    ).first()


@frame_view
@require_POST
def send(request: FrameRequest) -> HttpResponse:
    """Send the message (or a test to the author) with `message_send`; refusals go inline."""
    data = _posted(request)
    test = "send_test" in data
    composer = _composer(request, data)
    if not composer.check_ready(test=test):
        return _not_sent(request, composer)

    cleaned = composer.form.cleaned_data
    line: Line = cleaned["line"]
    user_id = request.frame.user_id if test else int(cleaned["user_id"])
    pending = _pending_unknown(request, composer, user_id)
    if pending is not None:
        composer.general.append(
            Issue(
                _(
                    "The last attempt may have been delivered. Check it first, or tick "
                    "“send it again anyway”."
                ),
                code="UNKNOWN",
            )
        )
        return _render(request, "composer", composer, unknown=pending)

    try:
        delivery = services.message_send(
            portal=request.frame.portal,
            line=line,
            user_id=user_id,
            message=composer.message_text(),
            attach=composer.attach_value(),
            keyboard=composer.keyboard_value(),
            url_preview=composer.url_preview(),
            author_user_id=request.frame.user_id,
            kind=Delivery.Kind.TEST if test else Delivery.Kind.SINGLE,
            recipient_name=request.frame.user_name if test else cleaned["recipient_name"] or "",
        )
    except services.SendRefused as exc:
        for error in exc.errors:
            if error.code == "USER_MESSAGE_LIMIT":
                issue = _limit_issue(request, line, user_id)
            else:
                issue = Issue(error.message, code=error.code)
            composer.add_problem(error.field, issue, test=test)
        return _not_sent(request, composer)
    return _after_send(request, composer, delivery, data, test=test)


def _not_sent(request: FrameRequest, composer: Composer) -> HttpResponse:
    """The composer with its errors in place, and a word next to Send that nothing went out."""
    if not composer.general:
        composer.general.append(
            Issue(_("Not sent: fix what is marked in red, then send again."), code="NOT_SENT")
        )
    return _render(request, "composer", composer)


def _after_send(
    request: FrameRequest,
    composer: Composer,
    delivery: Delivery,
    data: dict[str, str],
    *,
    test: bool,
) -> HttpResponse:
    status = delivery.status
    who = delivery.recipient_name or f"#{delivery.user_id}"
    if status in (Delivery.Status.LIMITED, Delivery.Status.REJECTED):
        field, issue = _refusal_issue(
            request, delivery.error_code, delivery.error_message, delivery.line, delivery.user_id
        )
        composer.add_problem(field, issue, test=test)
        return _not_sent(request, composer)
    if status == Delivery.Status.UNKNOWN:
        kept = _composer(request, {**data, "unknown_delivery": str(delivery.pk)})
        return _render(request, "composer", kept, unknown=delivery)
    if status == Delivery.Status.SENT:
        toast = (
            _("Test sent to you. Look for it in your Bitrix24 chats.")
            if test
            else _("Message sent to %(who)s.") % {"who": who}
        )
        kind = "success"
    elif not _portal_connected(request):
        composer.general.append(
            Issue(
                _(
                    "Bitrix24 stopped accepting the app's connection, so the message waits in "
                    "the queue. An administrator must open the app to reconnect it."
                ),
                code=delivery.error_code,
            )
        )
        return _render(request, "composer", composer)
    else:
        toast = _("Bitrix24 is busy right now: the message is queued and will be sent shortly.")
        kind = "info"
    if test:
        return _render(request, "composer", composer, toast=toast, toast_kind=kind)
    services.draft_delete(portal=request.frame.portal, user_id=request.frame.user_id)
    cleared = _composer(request, forms.content_keys_removed({"line": data.get("line", "")}))
    return _render(request, "composer", cleared, toast=toast, toast_kind=kind, sent=delivery)


def _portal_connected(request: FrameRequest) -> bool:
    portal = request.frame.portal
    portal.refresh_from_db(fields=["status"])
    return portal.is_active


# --- drafts and templates ------------------------------------------------------------------


@frame_view
@require_POST
def draft(request: FrameRequest) -> HttpResponse:
    """Autosave what the user typed (debounced by the page)."""
    saved_at = None
    failure = ""
    try:
        saved = services.draft_save(
            portal=request.frame.portal,
            user_id=request.frame.user_id,
            data=forms.draft_data(request.POST),
        )
        saved_at = saved.updated_at
    except services.MessagingError as exc:
        failure = exc.message
    return render(
        request, f"{COMPOSE}#draft-status", {"draft_saved_at": saved_at, "draft_failure": failure}
    )


@frame_view
@require_POST
def reset(request: FrameRequest) -> HttpResponse:
    """Start over: forget the draft and clear the message (the line stays chosen)."""
    services.draft_delete(portal=request.frame.portal, user_id=request.frame.user_id)
    data = forms.content_keys_removed({"line": request.POST.get("line", "")})
    return _render(request, "composer", _composer(request, data))


@frame_view
@require_POST
def template_save(request: FrameRequest) -> HttpResponse:
    """Save the current message as a template for the whole portal."""
    composer = _composer(request)
    template_form = forms.TemplateForm(_posted(request))
    saved: Template | None = None
    if not composer.builders_valid:
        template_form.add_issue(
            "__all__", Issue(_("Fix the marked fields in the builders first."), code="FIELDS")
        )
    elif template_form.is_valid():
        try:
            saved = services.template_save(
                portal=request.frame.portal,
                name=template_form.cleaned_data.get("save_as") or "",
                message=composer.message_text(),
                attach=composer.attach_value(),
                keyboard=composer.keyboard_value(),
                url_preview=composer.url_preview(),
                created_by=request.frame.user_id,
            )
        except services.TemplateRefused as exc:
            for error in exc.errors:
                where = "" if error.field == "NAME" else f"{composer.describe(error.field)}: "
                template_form.add_issue("__all__", Issue(where + error.message, code=error.code))
    if saved is not None:
        template_form = forms.TemplateForm()
    return _render(
        request, "templates", composer, template_form=template_form, template_saved=saved
    )


@frame_view
@require_POST
def template_load(request: FrameRequest, template_id: int) -> HttpResponse:
    """Replace the message, attachment and keyboard with a template's (recipient and line stay)."""
    template = get_object_or_404(Template, pk=template_id, portal=request.frame.portal)
    stored = template.data if isinstance(template.data, dict) else {}
    data = forms.content_keys_removed(request.POST)
    data.pop("url_preview")  # the template says whether previews are on
    data.update(
        forms.data_from_bitrix(
            message=str(stored.get("message") or ""),
            attach=stored.get("attach"),
            keyboard=stored.get("keyboard"),
            url_preview=bool(stored.get("url_preview", True)),
        )
    )
    toast = _("Template “%(name)s” loaded.") % {"name": template.name}
    return _builder_changed(
        _render(request, "composer", _composer(request, data), toast=toast, toast_kind="success")
    )


@frame_view
@require_POST
def template_delete(request: FrameRequest, template_id: int) -> HttpResponse:
    """Delete one of the portal's templates."""
    template = get_object_or_404(Template, pk=template_id, portal=request.frame.portal)
    services.template_delete(template=template)
    return _render(request, "templates", _composer(request))


# --- history -------------------------------------------------------------------------------


@frame_view
@require_GET
def history(request: FrameRequest) -> HttpResponse:
    """The portal's deliveries, newest first, filterable and paginated."""
    portal = request.frame.portal
    filters = forms.HistoryFilterForm(request.GET, portal=portal)
    deliveries = services.deliveries_for(portal=portal, **filters.filters())
    page = Paginator(deliveries, PAGE_SIZE).get_page(filters.page_number())
    if request.htmx.target == "history-table":
        template = f"{HISTORY}#history-table"
    else:
        template = _page_partial(request, HISTORY)
    return render(
        request,
        template,
        {
            "frame": request.frame,
            "frame_token": request.frame.token(),
            "filters": filters,
            "page": page,
        },
    )


@frame_view
@require_GET
def delivery(request: FrameRequest, delivery_id: int) -> HttpResponse:
    """One delivery: its message as sent, its outcome and what that outcome means."""
    portal = request.frame.portal
    found = get_object_or_404(
        Delivery.objects.select_related("line"), pk=delivery_id, portal=portal
    )
    attach, keyboard = services.delivery_payload(found)
    return render(
        request,
        _page_partial(request, DELIVERY),
        {
            "frame": request.frame,
            "frame_token": request.frame.token(),
            "delivery": found,
            "message_html": chat.render_message(
                message=found.message,
                attach=attach,
                keyboard=keyboard,
                sent_at=found.finished_at or found.created_at,
                base_url=portal.origin,
            ),
        },
    )
