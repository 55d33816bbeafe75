"""Bitrix24 REST client: one session factory and one typed function per method we use.

Every function takes a :class:`Connection` (the portal's REST base and an access token) and
returns a value from :mod:`b24app.bitrix.replies`; every failure is raised as one of the
four kinds in :mod:`b24app.bitrix.errors`. Nothing here reads Django settings or touches
the database: callers pass everything in, and the portals service refreshes tokens.

Conventions (spec §3):

- Calls are ``POST <endpoint><method>`` with a JSON body. The token travels only as
  ``auth`` inside that body, never in the URL (URLs end up in access logs and exception
  messages) and never in a header.
- A POST that may have reached Bitrix is never repeated automatically; urllib3 only retries
  failures to connect.

Docs: https://apidocs.bitrix24.com/settings/how-to-call-rest-api/general-principles.html
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from b24app.bitrix import errors, replies

T = TypeVar("T")
S = TypeVar("S", bound=requests.Session)

CONNECT_TIMEOUT_S = 5.0
# Bitrix cuts a request off after 60 s (spec §3.1); a message send normally takes < 1 s.
READ_TIMEOUT_S = 30.0
BATCH_LIMIT = 50
MESSAGE_ADD = "imopenlines.network.message.add"

Attach = Mapping[str, Any] | Sequence[Mapping[str, Any]]
Keyboard = Mapping[str, Any] | Sequence[Mapping[str, Any]]

_METHOD_RE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("b24app")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"b24app/{version}"


USER_AGENT = _user_agent()


@dataclass(frozen=True)
class Connection:
    """Where and as whom to call: the client REST base and an access token.

    ``endpoint`` is the portal's ``client_endpoint``, e.g. ``https://portal.bitrix24.com/rest/``
    (or the OAuth server's ``server_endpoint`` for a trusted ``app.info``).
    """

    endpoint: str
    access_token: str = field(repr=False)

    def url(self, method: str) -> str:
        """The URL of one REST method under this endpoint (no token in it)."""
        if not _METHOD_RE.fullmatch(method):
            raise ValueError(f"not a Bitrix method name: {method!r}")
        return self.endpoint.rstrip("/") + "/" + method


class _DefaultTimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default timeout when the caller gives none.

    ``requests`` has no session-wide timeout, and a request without one can hang forever.
    """

    def __init__(self, timeout: tuple[float, float], max_retries: Retry) -> None:
        super().__init__(max_retries=max_retries)
        self.default_timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request``, with the default timeout unless one was given."""
        return super().send(
            request,
            stream=stream,
            timeout=self.default_timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def connect_retry() -> Retry:
    """Retry only failures to connect (refused, DNS, connect timeout): those never sent.

    ``read=0`` and ``status=0`` mean that once a request went out it is never repeated,
    whatever the verb (``allowed_methods=None``): a repeated message send could deliver
    twice. ``other=0`` covers everything else urllib3 might consider retrying.
    """
    return Retry(
        total=None,
        connect=2,
        read=0,
        status=0,
        other=0,
        redirect=0,
        allowed_methods=None,
        backoff_factor=0.5,
        raise_on_status=False,
    )


def configure_session(
    session: S,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    user_agent: str = USER_AGENT,
) -> S:
    """Give an existing session our timeout, User-Agent and connect-only retries.

    Used by :func:`make_session` and by the OAuth code for its ``OAuth2Session``.
    """
    adapter = _DefaultTimeoutAdapter((connect_timeout, read_timeout), connect_retry())
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = "application/json"
    return session


def make_session(
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    user_agent: str = USER_AGENT,
) -> requests.Session:
    """Build the HTTP session for REST calls.

    A plain ``requests.Session`` rather than an ``OAuth2Session``: the latter would put the
    token in an ``Authorization`` header, and Bitrix wants it as ``auth`` in the body.
    """
    return configure_session(
        requests.Session(),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent=user_agent,
    )


_local = threading.local()


def default_session() -> requests.Session:
    """This thread's shared session (sessions are not safe to share between threads).

    Keyed by process id too: a session inherited through a fork (Celery prefork) would share
    its pooled sockets with the parent.
    """
    cached: tuple[int, requests.Session] | None = getattr(_local, "session", None)
    if cached is None or cached[0] != os.getpid():
        cached = (os.getpid(), make_session())
        _local.session = cached
    return cached[1]


def call(
    conn: Connection,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    is_write: bool = False,
    session: requests.Session | None = None,
) -> tuple[Any, replies.CallTime | None, int | None, int | None]:
    """Call one REST method; return ``(result, time, total, next)`` or raise a BitrixError.

    ``is_write`` marks calls that must not run twice: their ambiguous failures (timeout
    after sending, 5xx, garbled reply) become ``Unknown`` instead of ``RetryLater``.
    """
    url = conn.url(method)
    payload = {**(params or {}), "auth": conn.access_token}
    http = session if session is not None else default_session()
    try:
        response = http.post(
            url,
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            # A moved portal answers 302 (spec §3.1); requests would follow it as a GET
            # without the body, i.e. without the token. Surface it as Rejected instead.
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise errors.from_transport(exc, is_write=is_write) from exc
    failure = errors.classify(response.status_code, response.content, is_write=is_write)
    if failure is not None:
        raise failure
    data = errors.parse_json(response.content)  # a JSON object, or classify would have said
    if "result" not in data:
        raise errors.malformed(f"{method} reply has no result", is_write=is_write)
    return (
        data["result"],
        replies.CallTime.from_json(data.get("time")),
        replies.as_int(data.get("total")),
        replies.as_int(data.get("next")),
    )


def _object(result: Any, method: str) -> Mapping[str, Any]:
    if not isinstance(result, Mapping):
        raise errors.malformed(f"{method} result is not an object", is_write=False)
    return result


def _items(result: Any) -> list[Mapping[str, Any]]:
    values = result if isinstance(result, list) else list(replies.as_map(result).values())
    return [item for item in values if isinstance(item, Mapping)]


def app_info(conn: Connection, *, session: requests.Session | None = None) -> replies.AppInfo:
    """``app.info``: the app, its install state and licence for this token.

    Call it against the OAuth server's ``server_endpoint`` for an answer the frame POST
    cannot forge (spec §5.9).
    """
    # https://apidocs.bitrix24.com/api-reference/common/system/app-info.html
    result, _, _, _ = call(conn, "app.info", session=session)
    return replies.AppInfo.from_json(_object(result, "app.info"))


def profile(conn: Connection, *, session: requests.Session | None = None) -> replies.Profile:
    """``profile``: who owns this token and whether they are an admin."""
    # https://apidocs.bitrix24.com/api-reference/common/users/profile.html
    result, _, _, _ = call(conn, "profile", session=session)
    return replies.Profile.from_json(_object(result, "profile"))


def user_current(conn: Connection, *, session: requests.Session | None = None) -> replies.User:
    """``user.current``: the token owner as a user record."""
    # https://apidocs.bitrix24.com/api-reference/user/user-current.html
    result, _, _, _ = call(conn, "user.current", session=session)
    return replies.User.from_json(_object(result, "user.current"))


def _user_page(result: Any, total: int | None, next_: int | None) -> replies.Page[replies.User]:
    return replies.Page(
        items=tuple(replies.User.from_json(item) for item in _items(result)),
        total=total,
        next=next_,
    )


def user_get(
    conn: Connection,
    *,
    filter: Mapping[str, Any] | None = None,
    sort: str | None = None,
    order: str | None = None,
    start: int = 0,
    session: requests.Session | None = None,
) -> replies.Page[replies.User]:
    """``user.get``: one page (50) of users matching ``filter`` (e.g. ``{"ACTIVE": True}``)."""
    # https://apidocs.bitrix24.com/api-reference/user/user-get.html
    params: dict[str, Any] = {"start": start}
    if filter:
        params["FILTER"] = dict(filter)
    if sort is not None:
        params["sort"] = sort
    if order is not None:
        params["order"] = order
    result, _, total, next_ = call(conn, "user.get", params, session=session)
    return _user_page(result, total, next_)


def user_search(
    conn: Connection,
    *,
    find: str,
    start: int = 0,
    session: requests.Session | None = None,
) -> replies.Page[replies.User]:
    """``user.search``: one page of users whose name, position or department match ``find``."""
    # https://apidocs.bitrix24.com/api-reference/user/user-search.html
    params = {"FILTER": {"FIND": find}, "start": start}
    result, _, total, next_ = call(conn, "user.search", params, session=session)
    return _user_page(result, total, next_)


def department_get(
    conn: Connection,
    *,
    start: int = 0,
    session: requests.Session | None = None,
    **filters: Any,
) -> replies.Page[replies.Department]:
    """``department.get``: one page of departments.

    ``filters`` are passed through: ``ID``, ``NAME``, ``PARENT``, ``UF_HEAD``, ``sort``, ``order``.
    """
    # https://apidocs.bitrix24.com/api-reference/departments/department-get.html
    result, _, total, next_ = call(
        conn, "department.get", {**filters, "start": start}, session=session
    )
    return replies.Page(
        items=tuple(replies.Department.from_json(item) for item in _items(result)),
        total=total,
        next=next_,
    )


def iter_pages(fn: Callable[..., replies.Page[T]], *args: Any, **kwargs: Any) -> Iterator[T]:
    """Yield every item of a list method, following ``next`` from page to page.

    ``iter_pages(client.user_get, conn, filter={"ACTIVE": True})``. Stops if Bitrix ever
    hands back a ``next`` that does not move forward.
    """
    start = int(kwargs.pop("start", 0))
    while True:
        page = fn(*args, start=start, **kwargs)
        yield from page.items
        if page.next is None or page.next <= start:
            return
        start = page.next


def event_bind(
    conn: Connection,
    *,
    event: str,
    handler: str,
    session: requests.Session | None = None,
) -> bool:
    """``event.bind``: True when bound now, False when this handler was already bound.

    Bitrix refuses a duplicate with ``ERROR_HANDLER_ALREADY_EXIST`` ("Handler already
    exists!"), which for us is success: binding is idempotent, so it is not a write.
    """
    # https://apidocs.bitrix24.com/api-reference/events/event-bind.html
    try:
        call(conn, "event.bind", {"event": event, "handler": handler}, session=session)
    except errors.Rejected as exc:
        if exc.code == "ERROR_HANDLER_ALREADY_EXIST":
            return False
        raise
    return True


def event_get(
    conn: Connection, *, session: requests.Session | None = None
) -> tuple[replies.EventHandler, ...]:
    """``event.get``: the handlers this app has bound on the portal."""
    # https://apidocs.bitrix24.com/api-reference/events/event-get.html
    result, _, _, _ = call(conn, "event.get", session=session)
    return tuple(replies.EventHandler.from_json(item) for item in _items(result))


def event_unbind(
    conn: Connection,
    *,
    event: str,
    handler: str,
    session: requests.Session | None = None,
) -> int:
    """``event.unbind``: remove a handler; returns how many bindings were removed."""
    # https://apidocs.bitrix24.com/api-reference/events/event-unbind.html
    result, _, _, _ = call(
        conn, "event.unbind", {"event": event, "handler": handler}, session=session
    )
    if isinstance(result, Mapping):
        return replies.as_int(result.get("count"), 0) or 0
    return replies.as_int(result, 0) or 0


def network_join(conn: Connection, *, code: str, session: requests.Session | None = None) -> int:
    """``imopenlines.network.join``: connect the open line ``code``; returns its bot id.

    Joining twice returns the same bot id, so it is safe to repeat (not a write).
    """
    # https://apidocs.bitrix24.com/api-reference/imopenlines/openlines/imopenlines-network-join.html
    result, _, _, _ = call(conn, "imopenlines.network.join", {"CODE": code}, session=session)
    bot_id = replies.as_int(result)
    if bot_id is None:
        raise errors.malformed("imopenlines.network.join did not return a bot id", is_write=False)
    return bot_id


def _message_params(
    *,
    code: str,
    user_id: int,
    message: str,
    attach: Attach | None,
    keyboard: Keyboard | None,
    url_preview: bool,
    bot_id: int | None,
) -> dict[str, Any]:
    if isinstance(keyboard, str | bytes):
        # This method does not JSON-decode a KEYBOARD string: it always ends in
        # KEYBOARD_ERROR (spec §5.6). Refuse it before spending the request.
        raise TypeError("KEYBOARD must be a mapping or a list of buttons, not a string")
    params: dict[str, Any] = {
        "CODE": code,
        "USER_ID": user_id,
        "MESSAGE": message,
        # Only the exact value "N" turns previews off (spec §5.2).
        "URL_PREVIEW": "Y" if url_preview else "N",
    }
    if attach is not None:
        params["ATTACH"] = attach
    if keyboard is not None:
        params["KEYBOARD"] = keyboard
    if bot_id is not None:
        # Undocumented; older keyboard code refuses every keyboard without it (spec §5.6).
        params["BOT_ID"] = bot_id
    return params


def network_message_add(
    conn: Connection,
    *,
    code: str,
    user_id: int,
    message: str,
    attach: Attach | None = None,
    keyboard: Keyboard | None = None,
    url_preview: bool = True,
    bot_id: int | None = None,
    session: requests.Session | None = None,
) -> replies.SendResult:
    """``imopenlines.network.message.add``: send one message from the open line ``code``.

    A write: a timeout or 5xx after sending raises ``Unknown``, never ``RetryLater``, because
    Bitrix may have delivered it (and counted it against the weekly per-user limit).
    ``attach``/``keyboard`` are the structures from ``messaging.payload``; omitted when None.
    """
    # https://apidocs.bitrix24.com/api-reference/imopenlines/openlines/imopenlines-network-message-add.html
    params = _message_params(
        code=code,
        user_id=user_id,
        message=message,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
        bot_id=bot_id,
    )
    _, time, _, _ = call(conn, MESSAGE_ADD, params, is_write=True, session=session)
    return replies.SendResult(time=time)


def network_message_add_command(
    *,
    code: str,
    user_id: int,
    message: str,
    attach: Attach | None = None,
    keyboard: Keyboard | None = None,
    url_preview: bool = True,
    bot_id: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The same message as :func:`network_message_add`, as a ``batch`` command.

    :func:`batch` encodes ATTACH and KEYBOARD as PHP bracket fields; a KEYBOARD JSON string
    would fail inside a batch (spec §3.4).
    """
    # https://apidocs.bitrix24.com/api-reference/imopenlines/openlines/imopenlines-network-message-add.html
    return MESSAGE_ADD, _message_params(
        code=code,
        user_id=user_id,
        message=message,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
        bot_id=bot_id,
    )


def _php_scalar(value: Any) -> str:
    if isinstance(value, bool):
        # PHP would see "1"/"" and Bitrix usually wants "Y"/"N": make the caller choose.
        raise TypeError("pass booleans to Bitrix as 'Y'/'N' (or 1/0) explicitly")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} in a query string")


def _php_key(key: Any, *, top_level: bool) -> str:
    text = str(key)
    # parse_str turns "a[]" into an append and splits on brackets, and it renames top-level
    # names containing " " or "." (to "_"): such keys cannot make the round trip.
    if not text or "[" in text or "]" in text or (top_level and (" " in text or "." in text)):
        raise ValueError(f"key {text!r} would not survive PHP parse_str")
    return quote(text, safe="")


def _php_pairs(name: str, value: Any, out: list[str]) -> None:
    if value is None:
        return  # like PHP's http_build_query: null values are left out
    if isinstance(value, Mapping):
        items: Iterator[tuple[Any, Any]] = iter(value.items())
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        out.append(f"{name}={quote(_php_scalar(value), safe='')}")
        return
    for key, item in items:
        _php_pairs(f"{name}[{_php_key(key, top_level=False)}]", item, out)


def php_query(params: Mapping[str, Any]) -> str:
    """Encode ``params`` as a PHP-style query string (``ATTACH[BLOCKS][0][MESSAGE]=x``).

    This is what a batch sub-call carries after ``method?``: Bitrix decodes it with PHP
    ``parse_str`` (spec §3.4), so every reserved character (``&``, ``=``, ``+``, ``%``, ``#``,
    spaces, non-ASCII) is percent-encoded in keys and values, lists become ``[0]``, ``[1]``...,
    and ``None`` is dropped. Booleans are refused (see :func:`_php_scalar`); empty lists and
    maps vanish, as with ``http_build_query``. We write this ourselves because no kept
    Python library produces PHP bracket nesting.
    """
    out: list[str] = []
    for key, value in params.items():
        _php_pairs(_php_key(key, top_level=True), value, out)
    return "&".join(out)


def _sub_error(entry: Any, *, is_write: bool) -> errors.BitrixError:
    if isinstance(entry, Mapping) and entry.get("error"):
        code = str(entry["error"])
        description = str(entry.get("error_description") or "")
    else:
        code, description = "UNKNOWN_SUB_ERROR", replies.as_str(entry)
    return errors.classify_code(code, description, status=None, is_write=is_write)


def batch(
    conn: Connection,
    commands: Mapping[str, tuple[str, Mapping[str, Any]]],
    *,
    halt: bool = False,
    is_write: bool = False,
    session: requests.Session | None = None,
) -> replies.BatchResult:
    """``batch``: up to 50 calls in one request (one request for the rate limiter).

    ``commands`` maps a key of our choosing to ``(method, params)``. The batch itself
    succeeds even when sub-calls fail; each failed key lands in ``errors`` classified like a
    whole reply (``QUERY_LIMIT_EXCEEDED`` → ``RetryLater``, ``USER_MESSAGE_LIMIT`` →
    ``Rejected``...). A failure of the whole request raises as for :func:`call`.
    """
    # https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html
    if not commands:
        raise ValueError("batch needs at least one command")
    if len(commands) > BATCH_LIMIT:
        # Bitrix would run the first 50 and refuse the rest one by one (spec §3.4).
        raise ValueError(f"batch takes at most {BATCH_LIMIT} commands, got {len(commands)}")
    cmd: dict[str, str] = {}
    for key, (method, params) in commands.items():
        if not key:
            raise ValueError("batch command keys must be non-empty")
        conn.url(method)  # validates the method name
        query = php_query(params)
        cmd[key] = f"{method}?{query}" if query else method
    # halt is cast with PHP (bool) on the server: 0/1 are unambiguous (spec §3.4).
    params = {"halt": 1 if halt else 0, "cmd": cmd}
    result, time, _, _ = call(conn, "batch", params, is_write=is_write, session=session)
    if not isinstance(result, Mapping):
        raise errors.malformed("batch result is not an object", is_write=is_write)
    body = result
    times = {
        key: parsed
        for key, raw in replies.as_map(body.get("result_time")).items()
        if (parsed := replies.CallTime.from_json(raw)) is not None
    }
    return replies.BatchResult(
        results=replies.as_map(body.get("result")),
        errors={
            key: _sub_error(entry, is_write=is_write)
            for key, entry in replies.as_map(body.get("result_error")).items()
        },
        times=times,
        time=time,
        totals={
            key: number
            for key, raw in replies.as_map(body.get("result_total")).items()
            if (number := replies.as_int(raw)) is not None
        },
        nexts={
            key: number
            for key, raw in replies.as_map(body.get("result_next")).items()
            if (number := replies.as_int(raw)) is not None
        },
    )
