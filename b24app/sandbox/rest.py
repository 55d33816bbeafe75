"""A faux portal's REST methods, the `batch` runner and the response envelope (spec §3, §5, §8).

Callers hold `Sandbox.lock` for the whole call. Request-level concerns (faults, the leaky bucket,
token lookup, CORS, parsing) live in `web.py`; this module starts once the caller is known.

Spec choices, where the spec is unsure (each is marked [INF] there):
- `user.get` returns inactive users too unless `ACTIVE` is filtered (the docs do not say).
- Every executed call (success or method error) is charged `op_cost_ms` against its own method.
- `event.bind` refuses non-admins only for `event_type=offline` or an `auth_type` (spec §8); a
  missing or non-http(s) handler is `ERROR_ARGUMENT` (code not documented).
- A nested `batch` or, with `batch_send` off, a message sub-call gets
  `ERROR_BATCH_METHOD_NOT_ALLOWED` in `result_error` (spec §3.4 calls the nested-batch code [INF]).
- `WRONG_AUTH_TYPE` (§5.3 #1) never happens: the sandbox has no cookie-session REST auth.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from b24app.messaging import payload
from b24app.sandbox import limits, phpquery
from b24app.sandbox.directory import User
from b24app.sandbox.state import (
    APP_ID,
    APP_STATUS,
    BOT_ID_BASE,
    PUBLISHED_LINES,
    AccessToken,
    Portal,
    Sandbox,
    iso_seconds,
)

__all__ = [
    "BATCH_MAX",
    "Call",
    "Outcome",
    "RestError",
    "execute",
    "method_exists",
    "normalise_method",
]

BATCH_MAX = 50
PAGE = 50
MESSAGE_ADD = "imopenlines.network.message.add"

# Events event.bind accepts. The platform knows many more; these cover the app lifecycle and a
# few common ones so that a typo is refused as the real server would.
KNOWN_EVENTS = frozenset(
    {
        "ONAPPINSTALL",
        "ONAPPUNINSTALL",
        "ONAPPUPDATE",
        "ONAPPTEST",
        "ONAPPPAYMENT",
        "ONSUBSCRIPTIONRENEW",
        "ONUSERADD",
        "ONIMCONNECTORMESSAGEADD",
        "ONIMBOTMESSAGEADD",
    }
)


class RestError(Exception):
    """A REST failure: `{"error": code, "error_description": description}` with an HTTP status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return {"error": self.code, "error_description": self.description}


@dataclass
class Call:
    """One method call by a known user of a portal."""

    sandbox: Sandbox
    portal: Portal
    token: AccessToken
    user: User
    params: dict[str, Any]

    def param(self, name: str, default: Any = None) -> Any:
        """A parameter by case-insensitive name."""
        return _ci_get(self.params, name, default)


@dataclass
class Outcome:
    """A method's result plus paging."""

    result: Any
    total: int | None = None
    next: int | None = None


def _ci_get(params: Mapping[str, Any], name: str, default: Any = None) -> Any:
    if name in params:
        return params[name]
    wanted = name.upper()
    for key, value in params.items():
        if str(key).upper() == wanted:
            return value
    return default


def normalise_method(name: str) -> str:
    """Lower-case the method name and strip a `.json` suffix (spec §3.1)."""
    name = name.strip().strip("/").lower()
    return name[: -len(".json")] if name.endswith(".json") else name


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().upper() in ("Y", "TRUE", "1", "YES")
    return bool(value)


def _values(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


# --- list helpers -------------------------------------------------------------------------

_OPERATORS = (">=", "<=", "!=", "!%", "!", "%", "=", ">", "<", "@")
_RESERVED = {
    "FILTER",
    "SORT",
    "ORDER",
    "START",
    "ADMIN_MODE",
    "AUTH",
    "ACCESS_TOKEN",
    "FIND",
    "SELECT",
}


def _split_op(key: str) -> tuple[str, str]:
    for op in _OPERATORS:
        if key.startswith(op):
            return op, key[len(op) :]
    return "", key


def _matcher(op: str, wanted: Any) -> Callable[[Any], bool]:
    """A predicate for one filter: a field value against a Bitrix-style operator and value(s)."""
    negate = op.startswith("!")
    op = op.lstrip("!")
    candidates = _values(wanted)
    bools = {_truthy(w) for w in candidates}
    ints = {_int(w, -1) for w in candidates}
    texts = {str(w).casefold() for w in candidates}
    limit = _int(candidates[0], 0) if candidates else 0

    def match(actual: Any) -> bool:
        if isinstance(actual, bool):
            hit = actual in bools
        elif isinstance(actual, list):  # UF_DEPARTMENT
            hit = any(item in ints for item in actual)
        elif isinstance(actual, int):
            if op == ">":
                hit = actual > limit
            elif op == "<":
                hit = actual < limit
            elif op == ">=":
                hit = actual >= limit
            elif op == "<=":
                hit = actual <= limit
            else:
                hit = actual in ints
        elif op == "%":
            value = str(actual).casefold()
            hit = any(text in value for text in texts)
        else:
            hit = str(actual).casefold() in texts
        return hit != negate

    return match


def _filters(call: Call) -> list[tuple[str, str, Any]]:
    """Filter triples `(operator, FIELD, value)` from FILTER and from flat top-level fields."""
    pairs: list[tuple[str, Any]] = []
    raw = call.param("FILTER")
    if isinstance(raw, Mapping):
        pairs.extend((str(k), v) for k, v in raw.items())
    # user.get also takes filter fields at the top level ("flat" filters).
    pairs.extend((str(k), v) for k, v in call.params.items() if not isinstance(v, Mapping))
    result = []
    for key, value in pairs:
        op, field = _split_op(key.upper())
        if field not in _RESERVED:
            result.append((op, field, value))
    return result


def _page(call: Call, rows: list[Any]) -> Outcome:
    start = _int(call.param("START", 0), 0)
    if start == -1:  # counting switched off (spec §3.5)
        return Outcome([dict(row) for row in rows[:PAGE]])
    start = max(start, 0)
    page = [dict(row) for row in rows[start : start + PAGE]]
    more = start + PAGE < len(rows)
    return Outcome(page, total=len(rows), next=start + PAGE if more else None)


def _sort(call: Call, rows: list[dict[str, Any]], default: str) -> list[dict[str, Any]]:
    sort = call.param("SORT") or call.param("by") or default
    order = call.param("ORDER") or "ASC"
    if isinstance(sort, Mapping):  # {"NAME": "DESC"}
        sort, order = next(iter(sort.items()), (default, "ASC"))
    field = str(sort).upper()
    descending = str(order).upper() == "DESC"
    if field == default == "ID" and not descending:
        return rows  # the directory is kept in ID order already

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(field)
        if field == "ID" or isinstance(value, int):
            return (0, _int(value))
        return (1, str(value or "").casefold())

    return sorted(rows, key=key, reverse=descending)


# --- methods ------------------------------------------------------------------------------


def app_info(call: Call) -> Outcome:
    """`app.info` (spec §5.9): INSTALLED stays false until the frame calls installFinish."""
    portal = call.portal
    return Outcome(
        {
            "ID": APP_ID,
            "CODE": call.sandbox.client_id,
            "VERSION": portal.version,
            "STATUS": APP_STATUS,
            "INSTALLED": portal.installed,
            "PAYMENT_EXPIRED": "Y" if call.sandbox.setting(portal, "payment_required") else "N",
            "DAYS": None,
            "LANGUAGE_ID": call.user.lang,
            "LICENSE": "en_project",
            "LICENSE_TYPE": "project",
            "LICENSE_FAMILY": "project",
        }
    )


def profile(call: Call) -> Outcome:
    """`profile`: who the token belongs to and whether they are an admin."""
    user = call.user
    return Outcome(
        {
            "ID": str(user.id),
            "ADMIN": user.admin,
            "NAME": user.name,
            "LAST_NAME": user.last_name,
            "PERSONAL_GENDER": user.gender,
            "PERSONAL_PHOTO": "",
            "TIME_ZONE": "",
            "TIME_ZONE_OFFSET": 0,
        }
    )


def user_current(call: Call) -> Outcome:
    """`user.current`: the token owner's full row."""
    return Outcome(call.user.as_rest())


def _user_rows(call: Call, find: str | None) -> list[dict[str, Any]]:
    terms = find.casefold().split() if find else []
    checks: list[tuple[str, Callable[[Any], bool]]] = []
    for op, field, value in _filters(call):
        if field in ("NAME_SEARCH", "FIND"):
            terms += str(value).casefold().split()
        else:
            checks.append((field, _matcher(op, value)))
    rows = []
    for user in call.portal.directory.users.values():
        row = user.rest_row
        if terms:
            hay = " ".join(
                [user.name, user.last_name, user.second_name, user.email, user.position]
            ).casefold()
            if not all(term in hay for term in terms):
                continue
        if all(
            check(user.id if field == "ID" else row[field])
            for field, check in checks
            if field == "ID" or field in row
        ):
            rows.append(row)
    return _sort(call, rows, "ID")


def user_get(call: Call) -> Outcome:
    """`user.get`: FILTER (or flat filter fields), SORT/ORDER, 50 per page."""
    return _page(call, _user_rows(call, None))


def user_search(call: Call) -> Outcome:
    """`user.search`: like user.get plus FIND over names, e-mail and position."""
    find = call.param("FIND")
    raw = call.param("FILTER")
    if find is None and isinstance(raw, Mapping):
        find = _ci_get(raw, "FIND")
    return _page(call, _user_rows(call, str(find) if find else None))


def department_get(call: Call) -> Outcome:
    """`department.get`: filter by ID, NAME, PARENT, UF_HEAD, SORT; 50 per page."""
    checks = [(field, _matcher(op, value)) for op, field, value in _filters(call)]
    rows = []
    for dept in call.portal.directory.departments.values():
        row = dept.as_rest()
        values: dict[str, Any] = {
            "ID": dept.id,
            "NAME": dept.name,
            "PARENT": dept.parent,
            "UF_HEAD": dept.head,
            "SORT": dept.sort,
        }
        if all(field not in values or check(values[field]) for field, check in checks):
            rows.append(row)
    return _page(call, _sort(call, rows, "SORT"))


def _event_name(call: Call) -> str:
    event = str(call.param("EVENT") or "").strip().upper()
    if event not in KNOWN_EVENTS:
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found")
    return event


def event_bind(call: Call) -> Outcome:
    """`event.bind`: remember a handler; duplicates give ERROR_HANDLER_ALREADY_EXIST."""
    event = _event_name(call)
    handler = str(call.param("HANDLER") or "").strip()
    if not handler:
        raise RestError("ERROR_ARGUMENT", "Handler URL is required")
    if not re.match(r"^https?://[^/\s]+", handler):
        raise RestError("ERROR_ARGUMENT", "Handler URL is invalid")
    auth_type = _int(call.param("AUTH_TYPE", 0), 0)
    offline = str(call.param("EVENT_TYPE") or "online").lower() == "offline"
    if (offline or auth_type) and not call.user.admin:
        raise RestError("ACCESS_DENIED", "Access denied! Administrator authorization required", 403)
    for bound in call.portal.handlers:
        if (bound["event"], bound["handler"], bound["auth_type"]) == (
            event,
            handler,
            str(auth_type),
        ):
            raise RestError("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
    call.portal.handlers.append(
        {"event": event, "handler": handler, "auth_type": str(auth_type), "offline": int(offline)}
    )
    call.sandbox.dirty = True
    return Outcome(True)


def event_get(call: Call) -> Outcome:
    """`event.get`: the app's bound handlers on this portal."""
    return Outcome([dict(h) for h in call.portal.handlers])


def event_unbind(call: Call) -> Outcome:
    """`event.unbind`: remove matching handlers; result `{"count": n}`."""
    event = _event_name(call)
    handler = str(call.param("HANDLER") or "").strip()
    auth_type = call.param("AUTH_TYPE")
    keep, count = [], 0
    for bound in call.portal.handlers:
        match = (
            bound["event"] == event
            and (not handler or bound["handler"] == handler)
            and (auth_type is None or bound["auth_type"] == str(_int(auth_type)))
        )
        if match:
            count += 1
        else:
            keep.append(bound)
    call.portal.handlers = keep
    call.sandbox.dirty = True
    return Outcome({"count": count})


def scope(call: Call) -> Outcome:
    """`scope`: the scopes granted to the token."""
    return Outcome([s for s in call.token.scope.split(",") if s])


def network_join(call: Call) -> Outcome:
    """`imopenlines.network.join` (spec §5.8): the network bot id, the same one on repeats."""
    code = call.param("CODE")
    if not isinstance(code, str) or len(code) != 32:
        raise RestError("CODE", "You entered an invalid code")
    if code not in PUBLISHED_LINES:
        raise RestError("NOT_FOUND", "Line not found")
    if not PUBLISHED_LINES[code]:
        raise RestError("INACTIVE", "Openline is inactive")
    lines = call.portal.lines
    if code not in lines:
        lines[code] = BOT_ID_BASE + len(lines) + 1
        call.sandbox.dirty = True
    return Outcome(lines[code])


def network_message_add(call: Call) -> Outcome:
    """`imopenlines.network.message.add`: payload's server rules, then #12, then store it."""
    sandbox, portal = call.sandbox, call.portal
    verdict = payload.server_accept(
        call.params,
        line_joined=lambda code: code in portal.lines,
        limit_reached=lambda code, user_id: sandbox.limit_reached(portal, code, user_id),
        now=int(sandbox.now()),
        size_rule=sandbox.setting(portal, "size_rule"),
    )
    if isinstance(verdict, payload.ServerRefusal):
        raise RestError(verdict.code, verdict.description, verdict.status)
    # §5.3 #12: the message cannot be created for an unknown or inactive user.
    recipient = sandbox.user(portal, verdict.user_id)
    if recipient is None or not recipient.active:
        raise RestError("WRONG_REQUEST", "Message isn't added")
    sandbox.record_delivery(
        portal,
        code=verdict.code,
        user_id=verdict.user_id,
        message=verdict.message,
        attach=verdict.attach,
        keyboard=verdict.keyboard,
        url_preview=verdict.url_preview,
    )
    return Outcome(True)


_Handler = Callable[[Call], Outcome]
METHODS: dict[str, tuple[str, _Handler]] = {
    "app.info": ("basic", app_info),
    "profile": ("basic", profile),
    "scope": ("basic", scope),
    "user.current": ("basic", user_current),
    "user.get": ("user", user_get),
    "user.search": ("user", user_search),
    "department.get": ("department", department_get),
    "event.bind": ("basic", event_bind),
    "event.get": ("basic", event_get),
    "event.unbind": ("basic", event_unbind),
    "imopenlines.network.join": ("imopenlines", network_join),
    MESSAGE_ADD: ("imopenlines", network_message_add),
}


def method_exists(method: str) -> bool:
    """Known method name (normalised), including `batch`."""
    return method == "batch" or method in METHODS


def time_block(sandbox: Sandbox, start: float, operating: float, reset_at: int) -> dict[str, Any]:
    """The `time` object of a reply (spec §3.2)."""
    finish = sandbox.now()
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": finish - start,
        "date_start": iso_seconds(start),
        "date_finish": iso_seconds(finish),
        "operating_reset_at": reset_at,
        "operating": operating,
    }


def _check_scope(token: AccessToken, needed: str) -> None:
    if needed != "basic" and needed not in token.scope.split(","):
        raise RestError(
            "insufficient_scope",
            "The request requires higher privileges than provided by the access token",
            401,
        )


def execute(
    sandbox: Sandbox, portal: Portal, token: AccessToken, method: str, params: dict[str, Any]
) -> tuple[Outcome, dict[str, Any]]:
    """Run one (non-batch) method with the scope and execution-budget checks; result and time."""
    entry = METHODS.get(method)
    if entry is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    needed, handler = entry
    _check_scope(token, needed)
    user = sandbox.user(portal, token.user_id)
    if user is None:
        raise RestError("authorization_error", "Unable to authorize user", 401)
    window = float(sandbox.setting(portal, "op_window_s"))
    start = sandbox.now()
    if limits.operating_blocked(
        portal,
        method,
        now=start,
        window=window,
        budget=float(sandbox.setting(portal, "op_budget_s")),
    ):
        raise RestError(
            "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit", 429
        )
    try:
        outcome = handler(Call(sandbox, portal, token, user, params))
    finally:
        limits.operating_charge(
            portal,
            method,
            now=start,
            window=window,
            cost_ms=float(sandbox.setting(portal, "op_cost_ms")),
        )
    operating, reset_at = limits.operating_state(portal, method, now=sandbox.now(), window=window)
    return outcome, time_block(sandbox, start, operating, reset_at)


_RESULT_REF = re.compile(r"\$result\[([^\]]*)\]((?:\[[^\]]*\])*)")


def _resolve(ref_key: str, path: str, results: Mapping[str, Any]) -> Any:
    value: Any = results.get(ref_key)
    for part in re.findall(r"\[([^\]]*)\]", path):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _substitute(value: Any, results: Mapping[str, Any]) -> Any:
    """Replace `$result[key][field]` references with earlier sub-call results (spec §3.4)."""
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if not isinstance(value, str) or "$result[" not in value:
        return value
    whole = _RESULT_REF.fullmatch(value)
    if whole:
        return _resolve(whole.group(1), whole.group(2), results)
    return _RESULT_REF.sub(lambda m: str(_resolve(m.group(1), m.group(2), results) or ""), value)


def batch_has_message(params: Mapping[str, Any]) -> bool:
    """The batch's commands include a message send (used to aim the drop faults)."""
    cmd = _ci_get(params, "cmd")
    commands = cmd.values() if isinstance(cmd, Mapping) else cmd if isinstance(cmd, list) else []
    return any(
        isinstance(c, str) and normalise_method(c.split("?", 1)[0]) == MESSAGE_ADD for c in commands
    )


def run_batch(
    sandbox: Sandbox, portal: Portal, token: AccessToken, params: Mapping[str, Any]
) -> dict[str, Any]:
    """`batch` (spec §3.4): ≤ 50 sub-calls with the outer auth, errors collected per key."""
    halt = phpquery.php_bool(_ci_get(params, "halt", 0))
    cmd = _ci_get(params, "cmd")
    items: list[tuple[Any, Any]]
    if isinstance(cmd, Mapping):
        items = list(cmd.items())
    elif isinstance(cmd, list):
        items = list(enumerate(cmd))
    else:
        items = []
    results: dict[Any, Any] = {}
    errors: dict[Any, Any] = {}
    totals: dict[Any, Any] = {}
    nexts: dict[Any, Any] = {}
    times: dict[Any, Any] = {}
    for position, (key, command) in enumerate(items):
        if position >= BATCH_MAX:
            errors[key] = RestError(
                "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"
            ).body()
            if halt:
                break
            continue
        if not isinstance(command, str):
            continue  # newer servers skip non-string commands silently
        name, _, query = command.partition("?")
        method = normalise_method(name)
        try:
            if method == "batch" or (
                method == MESSAGE_ADD and not sandbox.setting(portal, "batch_send")
            ):
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage"
                )
            sub_params = _substitute(
                phpquery.parse_str(query), {str(k): v for k, v in results.items()}
            )
            outcome, timing = execute(sandbox, portal, token, method, sub_params)
        except RestError as exc:
            errors[key] = exc.body()
            if halt:
                break
            continue
        results[key] = outcome.result
        times[key] = timing
        if outcome.total is not None:
            totals[key] = outcome.total
        if outcome.next is not None:
            nexts[key] = outcome.next
    return {
        "result": phpquery.php_json_map(results),
        "result_error": phpquery.php_json_map(errors),
        "result_total": phpquery.php_json_map(totals),
        "result_next": phpquery.php_json_map(nexts),
        "result_time": phpquery.php_json_map(times),
    }
