"""Portal views: the three endpoints Bitrix24 calls, and the app's home inside the frame.

Bitrix24 POSTs into our iframe from the portal's origin and POSTs events server-to-server, so
`install`, `events` and `entry` are the only views exempt from both Django's CSRF check and the
frame token (each says why below). Everything else inside the frame is a `frame_view`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.decorators import ratelimit

from b24app.bitrix import errors
from b24app.portals import admin_forms, forms, frame, hosts, services
from b24app.portals.frame import FrameRequest, frame_view
from b24app.portals.models import AuditEntry

log = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def rate_limited(request: HttpRequest, exception: Exception) -> HttpResponse:
    """What a caller over B24_PUBLIC_RATE gets (django-ratelimit's RATELIMIT_VIEW)."""
    posted = forms.merged_frame_data(request.GET, request.POST)
    with translation.override(_post_language(posted)):
        return _refusal(429, _("Too many requests; try again in a minute."), posted)


def _post_language(data: Any) -> str:
    """The language Bitrix24 asks for (`LANG`): Russian for `ru`, English otherwise."""
    return "ru" if str(data.get("LANG") or "").lower().startswith("ru") else "en"


def _public_rate(group: str, request: HttpRequest) -> str:
    return str(settings.B24_PUBLIC_RATE)


_View = TypeVar("_View", bound=Callable[..., HttpResponse])


def public_rate_limit(view: _View) -> _View:
    """Limit a public endpoint to B24_PUBLIC_RATE requests per address (django-ratelimit)."""
    return cast(_View, ratelimit(key="ip", rate=_public_rate, block=True)(view))


def _refusal(status: int, message: str, posted: dict[str, str] | None = None) -> HttpResponse:
    """A plain-text refusal. When the request names a portal on the allow-list (Bitrix24 opening
    install or entry in its frame), that portal may frame it, so the user reads the refusal
    instead of a blocked frame; any other caller keeps X-Frame-Options DENY."""
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    if posted and posted.get("DOMAIN"):
        try:
            origin = hosts.portal_origin(str(posted["DOMAIN"]), https=posted.get("PROTOCOL") != "0")
        except hosts.HostNotAllowed:
            return response
        frame.allow_framing_by(response, origin)
    return response


def _render_frame(
    request: HttpRequest, template: str, ctx: frame.FrameContext, extra: dict[str, object]
) -> HttpResponse:
    with translation.override(ctx.language):
        response = render(request, template, {"frame": ctx, "frame_token": ctx.token(), **extra})
    frame.finish_frame_response(response, ctx)
    return response


# Exempt from CSRF and the frame token: Bitrix24 submits this form from the portal's origin into
# our iframe during installation; no token of ours can exist yet. The POST is trusted only after
# Bitrix's OAuth server confirms its tokens (services.portal_install).
@csrf_exempt
@require_POST
@public_rate_limit
def install(request: HttpRequest) -> HttpResponse:
    posted = forms.merged_frame_data(request.GET, request.POST)
    with translation.override(_post_language(posted)):  # refusals below in Bitrix's LANG
        return _install(request, posted)


def _install(request: HttpRequest, posted: dict[str, str]) -> HttpResponse:
    form = forms.InstallForm(posted)
    if not form.is_valid():
        return _refusal(
            400,
            _("Malformed install request: %(errors)s") % {"errors": form.error_text()},
            posted,
        )
    data = form.cleaned_data
    try:
        result = services.portal_install(
            member_id=data["member_id"],
            domain=data["DOMAIN"],
            https=form.https,
            language=data.get("LANG") or "en",
            auth_id=data["AUTH_ID"],
            refresh_id=data["REFRESH_ID"],
            server_endpoint=data.get("SERVER_ENDPOINT") or "",
            application_token=data.get("APPLICATION_TOKEN") or "",
        )
    except services.PortalError as exc:
        log.warning("install refused: %s", exc.code)
        return _refusal(exc.status, exc.message, posted)
    except errors.BitrixError as exc:
        log.warning("install failed talking to Bitrix24: %s", type(exc).__name__)
        return _refusal(502, _("Bitrix24 did not answer; please try installing again."), posted)
    return _render_frame(
        request,
        "portals/install.html",
        result.frame,
        {"events_bound": result.events_bound, "app_sid": data.get("APP_SID") or ""},
    )


# Exempt from CSRF and the frame token: Bitrix24 POSTs events server-to-server. Each event is
# checked against the portal's application_token (and token-carrying events against the OAuth
# server) in services.portal_event_receive.
@csrf_exempt
@require_POST
@public_rate_limit
def events(request: HttpRequest) -> HttpResponse:
    event = request.POST.get("event", "")
    auth = forms.nested(request.POST, "auth")
    data = forms.nested(request.POST, "data")
    if not event or not auth:
        return JsonResponse(
            {"error": "MALFORMED", "message": "event and auth are required"}, status=400
        )
    try:
        outcome = services.portal_event_receive(
            event=event, data=data, auth=auth, ts=request.POST.get("ts", "")
        )
    except services.PortalError as exc:
        log.warning("event %s refused: %s", event[:40], exc.code)
        return JsonResponse({"error": exc.code, "message": exc.message}, status=exc.status)
    except errors.BitrixError as exc:
        log.warning("event %s: Bitrix24 unreachable (%s)", event[:40], type(exc).__name__)
        return JsonResponse({"error": "UPSTREAM", "message": "Bitrix24 did not answer"}, status=502)
    return JsonResponse({"result": outcome})


# Exempt from CSRF and the frame token: this is the app page Bitrix24 opens by POSTing the
# opener's AUTH_ID into the iframe; it is where the frame token is issued, after `profile`
# confirms the user with Bitrix24 (services.portal_enter).
@csrf_exempt
@require_POST
@public_rate_limit
def entry(request: HttpRequest) -> HttpResponse:
    posted = forms.merged_frame_data(request.GET, request.POST)
    with translation.override(_post_language(posted)):  # refusals below in Bitrix's LANG
        return _entry(request, posted)


def _entry(request: HttpRequest, posted: dict[str, str]) -> HttpResponse:
    form = forms.FramePostForm(posted)
    if not form.is_valid():
        return _refusal(
            400, _("Malformed app request: %(errors)s") % {"errors": form.error_text()}, posted
        )
    data = form.cleaned_data
    try:
        ctx = services.portal_enter(
            member_id=data["member_id"],
            domain=data["DOMAIN"],
            https=form.https,
            language=data.get("LANG") or "en",
            auth_id=data["AUTH_ID"],
            refresh_id=data.get("REFRESH_ID") or "",
            application_token=data.get("APPLICATION_TOKEN") or "",
        )
    except services.PortalError as exc:
        log.info("entry refused: %s", exc.code)
        return _refusal(exc.status, exc.message, posted)
    if request.headers.get("X-Frame-Reenter") == "1":
        # The frame's token expired: its page asked the portal for a fresh AUTH_ID
        # (refreshAuth) and trades it here for a new frame token, keeping the page and draft.
        response = JsonResponse({"frame_token": ctx.token()})
        frame.finish_frame_response(response, ctx)
        return response
    return _render_frame(request, "portals/home.html", ctx, {"app_sid": data.get("APP_SID") or ""})


@frame_view
def home(request: FrameRequest) -> HttpResponse:
    return render(
        request,
        "portals/home.html",
        {"frame": request.frame, "frame_token": request.frame.token()},
    )


# --- Admin pages inside the frame ---------------------------------------------------------------

AUDIT_PAGE_SIZE = 50


def _page(request: FrameRequest, template: str) -> str:
    """The whole page, or only its `app-page` region for htmx navigation inside the app."""
    return f"{template}#app-page" if request.htmx else template


@frame_view(admin=True)
def portal_status(request: FrameRequest) -> HttpResponse:
    """Connection and token health, pacing, and (loaded from their apps) lines and campaigns."""
    health = services.portal_health(portal=request.frame.portal)
    return render(
        request,
        _page(request, "portals/status.html"),
        {
            "frame": request.frame,
            "frame_token": request.frame.token(),
            "health": health,
            "active": "status",
        },
    )


@frame_view(admin=True)
def portal_settings(request: FrameRequest) -> HttpResponse:
    """NFR licence and plan limits."""
    portal = request.frame.portal
    saved = False
    if request.method == "POST":
        form = admin_forms.PortalSettingsForm(request.POST)
        if form.is_valid():
            services.portal_settings_update(
                portal=portal,
                nfr=form.cleaned_data["nfr"],
                rate=form.cleaned_data["rate"],
                burst=form.cleaned_data["burst"],
                actor_user_id=request.frame.user_id,
                actor_name=request.frame.user_name,
            )
            saved = True
            form = admin_forms.PortalSettingsForm.for_portal(portal)
    else:
        form = admin_forms.PortalSettingsForm.for_portal(portal)
    return render(
        request,
        _page(request, "portals/settings.html"),
        {
            "frame": request.frame,
            "frame_token": request.frame.token(),
            "form": form,
            "saved": saved,
            "active": "settings",
        },
    )


@frame_view(admin=True)
@require_GET
def audit_log(request: FrameRequest) -> HttpResponse:
    """Who did what on this portal, newest first."""
    entries = AuditEntry.objects.filter(portal=request.frame.portal)
    action = request.GET.get("action", "")
    if action:
        entries = entries.filter(action__startswith=action[:60])
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    actions = (
        AuditEntry.objects.filter(portal=request.frame.portal)
        .values_list("action", flat=True)
        .distinct()
        .order_by("action")
    )
    return render(
        request,
        _page(request, "portals/audit.html"),
        {
            "frame": request.frame,
            "frame_token": request.frame.token(),
            "page": page,
            "action": action,
            "actions": list(actions),
            "active": "audit",
        },
    )
