"""The signed frame token: who is using the app inside a Bitrix24 iframe.

Browsers block or partition cookies in a cross-site iframe, so Django's session and CSRF cookie
cannot work inside Bitrix24. Instead, the entry view (which Bitrix POSTs into) issues a signed,
short-lived token naming the portal, the user, their admin flag and language. Every htmx request
carries it in the `X-Frame-Token` header (`hx-headers` on `<body>`), every plain form in a hidden
`frame_token` field, and each response hands back a renewed one. A custom header or a value kept
out of cookies cannot be forged from another site, so the token is also the CSRF proof.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, overload

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from b24app.portals.models import Portal

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

log = logging.getLogger(__name__)

HEADER = "X-Frame-Token"
FIELD = "frame_token"
_SALT = "b24app.portals.frame"


@dataclass(frozen=True)
class FrameContext:
    """The portal and user a frame request serves, taken from a verified frame token."""

    portal: Portal
    user_id: int
    admin: bool
    language: str
    user_name: str = ""

    def token(self) -> str:
        return issue_token(
            portal=self.portal,
            user_id=self.user_id,
            admin=self.admin,
            language=self.language,
            user_name=self.user_name,
        )


class FrameRequest(HttpRequest):
    """Type of a request that passed `frame_view`."""

    frame: FrameContext
    htmx: HtmxDetails


def issue_token(
    *, portal: Portal, user_id: int, admin: bool, language: str, user_name: str = ""
) -> str:
    """A signed token for this portal and user; it expires after B24_FRAME_TOKEN_MAX_AGE."""
    payload = {
        "p": portal.pk,
        "m": portal.member_id,
        "u": user_id,
        "a": admin,
        "l": language,
        "n": user_name,
    }
    return signing.dumps(payload, salt=_SALT, compress=True)


class FrameTokenError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_token(token: str) -> FrameContext:
    """Verify a frame token and load its portal, or raise FrameTokenError (401 or 403)."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.B24_FRAME_TOKEN_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise FrameTokenError(401, _("Your session in the app has expired.")) from exc
    except signing.BadSignature as exc:
        raise FrameTokenError(403, _("This request did not come from the app.")) from exc
    try:
        # get(), not first(): no ORDER BY to compile on a request every view makes.
        portal: Portal | None = Portal.objects.get(pk=data.get("p"), member_id=data.get("m"))
    except (Portal.DoesNotExist, ValueError, TypeError):
        portal = None
    if portal is None or portal.status == Portal.Status.UNINSTALLED:
        raise FrameTokenError(403, _("The app is not installed on this Bitrix24."))
    language = data.get("l") if data.get("l") in ("en", "ru") else "en"
    return FrameContext(
        portal=portal,
        user_id=int(data.get("u") or 0),
        admin=bool(data.get("a")),
        language=language,
        user_name=str(data.get("n") or ""),
    )


def allow_framing(response: HttpResponseBase, portal: Portal) -> None:
    """Let only this portal's pages frame the response (and no X-Frame-Options)."""
    allow_framing_by(response, portal.origin)


def allow_framing_by(response: HttpResponseBase, origin: str) -> None:
    """Let only `origin` (a checked portal origin, see hosts.portal_origin) frame the response."""
    response._csp_replace = {"frame-ancestors": [origin]}  # type: ignore[attr-defined]
    response.xframe_options_exempt = True  # type: ignore[attr-defined]


def finish_frame_response(response: HttpResponseBase, frame: FrameContext) -> HttpResponseBase:
    """Renew the frame token on the response and allow the portal to frame it."""
    response[HEADER] = frame.token()
    allow_framing(response, frame.portal)
    return response


V = TypeVar("V", bound=Callable[..., HttpResponseBase])


@overload
def frame_view(view: V, *, admin: bool = False) -> V: ...


@overload
def frame_view(view: None = None, *, admin: bool = False) -> Callable[[V], V]: ...


def frame_view(view: V | None = None, *, admin: bool = False) -> Any:
    """Require a valid frame token; put its FrameContext on `request.frame`.

    `admin=True` also requires Bitrix24 admin rights (taken from `profile.ADMIN` at entry,
    never from anything the browser says). Failures answer a plain 401/403 with a short text.
    """

    def decorator(func: V) -> V:
        @csrf_exempt  # the frame token is the CSRF proof (see the module docstring)
        @xframe_options_exempt
        @wraps(func)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            token = request.headers.get(HEADER) or request.POST.get(FIELD, "")
            if not token:
                return _refuse(403, _("Open the app from your Bitrix24."))
            try:
                frame = read_token(token)
            except FrameTokenError as exc:
                return _refuse(exc.status, exc.message, expired=exc.status == 401)
            if admin and not frame.admin:
                return _refuse(403, _("Only Bitrix24 administrators can do this."))
            request.frame = frame  # type: ignore[attr-defined]
            with translation.override(frame.language):
                response = func(request, *args, **kwargs)
            return finish_frame_response(response, frame)

        return wrapped  # type: ignore[return-value]

    if view is not None:
        return decorator(view)
    return decorator


def _refuse(status: int, message: str, *, expired: bool = False) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    if expired:
        response["X-Frame-Expired"] = "1"
    return response
