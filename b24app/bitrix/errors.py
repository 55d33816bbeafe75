"""The four ways a Bitrix24 call can fail, and the table that sorts replies into them.

Every failure of a REST or OAuth call becomes exactly one of:

``RetryLater``
    Bitrix provably did not execute the call; repeating it later is safe.
``AuthExpired``
    The access token was refused in a way a refresh can fix (refresh once, repeat the call,
    and mark the portal if the refresh fails too).
``Rejected``
    Bitrix answered with an error and nothing will change by repeating the same request.
    ``portal_fatal`` says whether the portal itself is gone or unpaid.
``Unknown``
    A write that may or may not have executed. Never repeat it automatically: for
    ``imopenlines.network.message.add`` a repeat could deliver a message twice.

Mapping (first matching row wins; "write" is the caller's ``is_write`` flag)::

    transport / HTTP status       error code                          kind
    ----------------------------  ----------------------------------  ---------------------------
    refused, DNS, connect timeout -                                   RetryLater (never sent)
    proxy unreachable             -                                   RetryLater (never sent)
    read timeout, reset after     -                                   Unknown on a write,
      the request went out, TLS                                       RetryLater on a read
    malformed endpoint URL        -                                   Rejected (INVALID_URL)
    any                           QUERY_LIMIT_EXCEEDED  (503)         RetryLater
    any                           OPERATION_TIME_LIMIT  (429)         RetryLater, retry_after from
                                                                      time.operating_reset_at
    any                           CONNECTION_ERROR      (401)         RetryLater (portal could not
                                                                      reach the OAuth server)
    any                           expired_token, invalid_token,       AuthExpired
                                  NO_AUTH_FOUND         (401)
    any                           PORTAL_DELETED (403),               Rejected, portal_fatal
                                  PAYMENT_REQUIRED (402),
                                  APPLICATION_NOT_FOUND (401)
    2xx / 3xx / 4xx               any other code (USER_MESSAGE_LIMIT,  Rejected
                                  ATTACH_OVERSIZE, insufficient_scope,
                                  ACCESS_DENIED, invalid_grant,
                                  invalid_client, OVERLOAD_LIMIT,
                                  ERROR_HANDLER_ALREADY_EXIST,
                                  CODE_ERROR, KEYBOARD_OVERSIZE ...)
    5xx                           any other code (INTERNAL_SERVER_    Unknown on a write,
                                  ERROR, ERROR_UNEXPECTED_ANSWER ...) RetryLater on a read
    2xx                           reply not JSON                      Unknown on a write,
                                                                      RetryLater on a read
    3xx                           reply not JSON                      Rejected (HTTP_3xx; e.g. the
                                                                      portal moved, spec 3.1)
    408, 429                      reply not JSON                      RetryLater
    other 4xx                     reply not JSON                      Rejected (HTTP_4xx)
    5xx                           reply not JSON (proxy error page)   Unknown on a write,
                                                                      RetryLater on a read
    batch sub-call (no status)    as above by code; unknown codes     Rejected (status None)

Codes are kept exactly as Bitrix sent them (older pages name ``CODE_ERROR`` and
``KEYBOARD_OVERSIZE``; the current server says ``CODE``); canonicalising them is the
caller's business.

Decisions where the spec (§3.3, §2.3) leaves room, resolved here:

- Codes are matched before statuses, because Bitrix moved several codes between statuses
  across versions (``PORTAL_DELETED`` 500 → 403, ``insufficient_scope`` 403 → 401).
- ``OVERLOAD_LIMIT`` is a manual block by Bitrix support: the call did not run, but
  retrying on a backoff schedule will not lift it, so it is ``Rejected``.
- ``insufficient_scope`` and ``user_access_error`` come with 401 but no refresh gives the
  token more scope or the user more rights, so they are ``Rejected``, not ``AuthExpired``.
- ``CONNECTION_ERROR`` (the portal could not reach the OAuth server to check the token) is
  raised before the method runs and is transient: ``RetryLater``.
- ``APPLICATION_NOT_FOUND`` (app removed or deactivated on the portal) is portal-fatal like
  ``PORTAL_DELETED``; ``invalid_client`` is not, since a wrong client secret in our own
  configuration would otherwise condemn every portal at once.
- TLS errors count as "may have been sent": urllib3 reports an EOF while reading the reply
  as an SSL error too, so only connect-phase failures are provably unsent.
- An ``error`` key in a 200 reply (``placement.bind`` errors) is an error like any other.
- ``QUERY_LIMIT_EXCEEDED`` gives no hint of when the bucket drains, so ``retry_after`` is None
  and the caller backs off (the pacer knows the drain rate).

Docs: https://apidocs.bitrix24.com/api-reference/ (system errors are listed on every method
page); OAuth errors: https://apidocs.bitrix24.com/settings/oauth/index.html
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)

# A refresh of the access token can cure these.
AUTH_CODES = frozenset({"expired_token", "invalid_token", "NO_AUTH_FOUND"})

# The call did not run and will run once the limiter lets it through.
RETRY_CODES = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "CONNECTION_ERROR"})

# The portal is gone, unpaid, or no longer has the app: stop all work for it.
PORTAL_FATAL_CODES = frozenset({"PORTAL_DELETED", "PAYMENT_REQUIRED", "APPLICATION_NOT_FOUND"})


class BitrixError(Exception):
    """Base of every error raised by ``b24app.bitrix``.

    ``code`` is Bitrix's ``error`` value (or a synthetic ``HTTP_<status>`` / ``NETWORK`` /
    ``UNKNOWN``), ``description`` its ``error_description``. ``status`` is the HTTP status of
    the reply that carried the error, or None (network failures, batch sub-calls).
    """

    code: str
    description: str
    status: int | None

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code


class RetryLater(BitrixError):
    """Bitrix provably did not execute the call; it may be repeated after ``retry_after`` s."""

    def __init__(
        self,
        code: str,
        description: str,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(code, description, retry_after, status)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.status = status


class AuthExpired(BitrixError):
    """The token was refused in a way a refresh can fix."""

    def __init__(self, code: str, description: str, status: int | None = 401) -> None:
        super().__init__(code, description, status)
        self.code = code
        self.description = description
        self.status = status


class Rejected(BitrixError):
    """Bitrix refused the call; repeating the same request will not help."""

    def __init__(self, code: str, description: str, status: int | None) -> None:
        super().__init__(code, description, status)
        self.code = code
        self.description = description
        self.status = status

    @property
    def portal_fatal(self) -> bool:
        """True when the portal itself is unusable (deleted, unpaid, app removed)."""
        return self.code in PORTAL_FATAL_CODES


class Unknown(BitrixError):
    """A write that may have executed: do not repeat it blindly."""

    def __init__(self, description: str, code: str = "UNKNOWN", status: int | None = None) -> None:
        super().__init__(description, code, status)
        self.code = code
        self.description = description
        self.status = status


def parse_json(body: bytes | str) -> Any:
    """Parse a reply body as JSON (bad UTF-8 replaced), or return None when it is not JSON."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        return json.loads(text)
    except ValueError:
        return None


def _operating_reset_at(data: Any) -> float | None:
    """Find ``time.operating_reset_at`` (or a top-level one) in an error reply, if any."""
    if not isinstance(data, dict):
        return None
    candidates: list[Any] = [data.get("operating_reset_at")]
    if isinstance(data.get("time"), dict):
        candidates.insert(0, data["time"].get("operating_reset_at"))
    for value in candidates:
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def classify_code(
    code: str,
    description: str,
    *,
    status: int | None,
    is_write: bool,
    operating_reset_at: float | None = None,
    now: float | None = None,
) -> BitrixError:
    """Turn one Bitrix ``{error, error_description}`` pair into its kind.

    Used for whole replies (through :func:`classify`) and for ``result_error`` entries of a
    batch, which have no HTTP status of their own (``status=None``).
    """
    if code in RETRY_CODES:
        retry_after = None
        if code == "OPERATION_TIME_LIMIT" and operating_reset_at is not None:
            current = time.time() if now is None else now
            retry_after = max(0.0, operating_reset_at - current)
        return RetryLater(code, description, retry_after, status)
    if code in AUTH_CODES:
        return AuthExpired(code, description, status)
    if code in PORTAL_FATAL_CODES:
        return Rejected(code, description, status)
    if status is not None and status >= 500:
        return _server_failure(code, description, status, is_write=is_write)
    return Rejected(code, description, status)


def _server_failure(code: str, description: str, status: int, *, is_write: bool) -> BitrixError:
    # A 5xx says nothing about whether the method ran before the server failed.
    if is_write:
        return Unknown(description or f"HTTP {status}", code, status)
    return RetryLater(code, description, None, status)


def classify(
    status: int, body: bytes | str, *, is_write: bool, now: float | None = None
) -> BitrixError | None:
    """Classify a reply from Bitrix; None means it is a success that can be read as JSON.

    Never raises: an HTML error page or an empty body is classified by its status.
    ``now`` (unix seconds) is only used to turn ``operating_reset_at`` into ``retry_after``.
    """
    data = parse_json(body)
    if isinstance(data, dict) and data.get("error"):
        return classify_code(
            str(data["error"]),
            str(data.get("error_description") or ""),
            status=status,
            is_write=is_write,
            operating_reset_at=_operating_reset_at(data),
            now=now,
        )
    if 200 <= status < 300:
        if isinstance(data, dict):
            return None
        return malformed(f"HTTP {status} reply is not a JSON object", is_write=is_write)
    code = f"HTTP_{status}"
    description = f"HTTP {status} without a Bitrix error body"
    if status in (408, 429):
        return RetryLater(code, description, None, status)
    if status >= 500:
        return _server_failure(code, description, status, is_write=is_write)
    return Rejected(code, description, status)


def malformed(description: str, *, is_write: bool) -> BitrixError:
    """A success status whose body cannot be understood."""
    if is_write:
        return Unknown(description, "MALFORMED_REPLY")
    return RetryLater("MALFORMED_REPLY", description)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (requests puts urllib3's error in ``args[0]``) and why."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 20:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, MaxRetryError) and current.reason is not None:
            stack.append(current.reason)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        if current.__cause__ is not None:
            stack.append(current.__cause__)
        if current.__context__ is not None:
            stack.append(current.__context__)
    return seen


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never left this machine.

    Connection refused, DNS failure and connect timeout happen before a byte of the request
    is written (urllib3 raises ``NewConnectionError``/``NameResolutionError``, both kinds of
    ``ConnectTimeoutError``), as does failing to reach a proxy. A read timeout or a reset
    while waiting for the reply happens after the request went out. TLS errors are *not*
    counted as unsent: urllib3 reports an EOF while reading the reply as ``SSLError`` too.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    causes = _causes(exc)
    if isinstance(exc, requests.ReadTimeout) or any(
        isinstance(c, ReadTimeoutError | ProtocolError) for c in causes
    ):
        return False
    return any(isinstance(c, ConnectTimeoutError | ProxyError) for c in causes)


def from_transport(exc: requests.RequestException, *, is_write: bool) -> BitrixError:
    """Map a ``requests`` exception (no reply was read) to one of the four kinds.

    The message names only the exception type: urllib3's own message repeats the URL, and
    the OAuth URL carries the client secret in its query string.
    """
    name = type(exc).__name__
    if isinstance(exc, ValueError):
        # InvalidURL, MissingSchema, InvalidSchema...: a configuration error, never sent,
        # and repeating it changes nothing.
        return Rejected("INVALID_URL", f"{name}: bad endpoint URL", None)
    if never_sent(exc):
        return RetryLater("NETWORK", f"{name}: request not sent")
    if is_write:
        return Unknown(f"{name}: no reply after the request was sent", "NETWORK")
    return RetryLater("NETWORK", f"{name}: no reply to a read")
