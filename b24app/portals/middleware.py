"""Request-size limit: refuse oversized bodies with 413 before anything reads them.

Django on its own answers an oversized form with a generic 400 (and only once a view reads
it). Here the limit is checked up front, with or without a Content-Length header: a chunked
body without one is read up to the limit and refused as soon as it goes past. A view can
raise its own limit with `@body_limit(bytes)` (e.g. CSV uploads).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _

V = TypeVar("V", bound=Callable[..., Any])


def body_limit(limit: int) -> Callable[[V], V]:
    """Let this view accept request bodies up to `limit` bytes."""

    def decorator(view: V) -> V:
        view.b24_body_limit = limit  # type: ignore[attr-defined]
        return view

    return decorator


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    language = "ru" if str(request.GET.get("LANG", "")).startswith("ru") else None
    with translation.override(language or translation.get_language() or "en"):
        message = _("The request is too large (the limit is %(size)s KB).") % {
            "size": limit // 1000
        }
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class BodyLimitMiddleware:
    """Answer 413 for request bodies over the view's limit (default: B24_BODY_LIMIT)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        limit = getattr(view, "b24_body_limit", None) or settings.B24_BODY_LIMIT
        length = request.META.get("CONTENT_LENGTH")
        if length:
            try:
                if int(length) > limit:
                    return _too_large(request, limit)
            except ValueError:
                return HttpResponse(_("Bad Content-Length"), status=400)
            return None
        stream = request.META.get("wsgi.input")
        if stream is None or not request.META.get("wsgi.input_terminated"):
            return None  # without a length or a terminated stream Django reads no body at all
        # Chunked body of unknown size: read at most limit + 1 bytes, then hand Django the rest.
        data = stream.read(limit + 1)
        if len(data) > limit:
            return _too_large(request, limit)
        request.META["CONTENT_LENGTH"] = str(len(data))
        request._stream = io.BytesIO(data)
        request.META["wsgi.input"] = request._stream
        return None
