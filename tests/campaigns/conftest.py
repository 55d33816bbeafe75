"""Factories for campaign tests, and a Bitrix24 stand-in for the methods campaigns use.

`messenger` extends the shared `FakeBitrix` (tokens, OAuth refresh) with `batch`, `user.get`,
`department.get`, `imopenlines.network.join` and `imopenlines.network.message.add`, all at the
HTTP edge through `responses`, with a directory, a weekly ledger, an inbox and fault switches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import responses
from django.core.cache import cache
from django.utils import timezone

from b24app.campaigns import audience as aud
from b24app.campaigns.models import Campaign, Recipient
from b24app.messaging.models import Line
from b24app.portals.models import Portal
from b24app.sandbox import phpquery
from tests.fakes import CLIENT_ID, CLIENT_SECRET, OAUTH, FakeBitrix, start_fake_bitrix

MEMBER_ID = "c0ffee00c0ffee00c0ffee00c0ffee00"
DOMAIN = "acme.bitrix24.com"
LINE_CODE = "0123456789abcdef0123456789abcdef"
WEEK = 7 * 24 * 3600
Reply = tuple[int, dict[str, str], str]


def _ok(result: Any, **extra: Any) -> Reply:
    body = {
        "result": result,
        **extra,
        "time": {
            "start": 1.0,
            "finish": 1.01,
            "duration": 0.01,
            "processing": 0.01,
            "operating": 0.05,
            "operating_reset_at": int(time.time()) + 600,
        },
    }
    return 200, {}, json.dumps(body)


def _err(status: int, code: str, description: str = "") -> Reply:
    return status, {}, json.dumps({"error": code, "error_description": description or code})


class MethodError(Exception):
    def __init__(self, code: str, description: str = "", status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.description = description or code
        self.status = status


@dataclass
class Messenger:
    """The portal's side: who exists, what was delivered, and which faults to play."""

    fake: FakeBitrix
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    departments: dict[int, int | None] = field(default_factory=dict)
    department_names: dict[int, str] = field(default_factory=dict)
    department_error: str = ""
    ledger: dict[int, float] = field(default_factory=dict)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    nfr: bool = False
    joined: bool = True
    # Faults: a sub-call error for given users, or for every message sub-call.
    user_errors: dict[int, str] = field(default_factory=dict)
    message_error: str = ""
    # The whole batch answers this (status, code) without running anything.
    batch_reply: tuple[int, str] | None = None
    # The whole batch runs, then the reply is lost (HTTP 500): an `unknown` outcome.
    lose_reply_after_run: bool = False
    batch_refuses_messages: bool = False
    # Called once a batch has run and before its reply leaves: what happens meanwhile.
    while_replying: Callable[[], None] | None = None
    requests: list[str] = field(default_factory=list)

    def add_users(self, count: int, start: int = 1, **fields: Any) -> list[int]:
        ids = list(range(start, start + count))
        for uid in ids:
            row = {
                "ID": str(uid),
                "ACTIVE": True,
                "NAME": f"Name{uid}",
                "LAST_NAME": f"Last{uid}",
                "EMAIL": f"u{uid}@example.com",
                "UF_DEPARTMENT": [1],
                "USER_TYPE": "employee",
            }
            row.update(fields)
            self.users[uid] = row
        return ids

    def set_time_zone(self, zone: str) -> None:
        """`profile.TIME_ZONE` of the app's token ("" when its user keeps the portal default)."""
        self.fake.portals[MEMBER_ID].users[1]["TIME_ZONE"] = zone

    @property
    def profile_calls(self) -> int:
        return sum(1 for method, _body in self.fake.calls if method == "profile")

    @property
    def sent_users(self) -> list[int]:
        return [int(m["USER_ID"]) for m in self.inbox]

    # --- methods -------------------------------------------------------------------------
    def message_add(self, params: dict[str, Any]) -> Any:
        if self.message_error:
            raise MethodError(self.message_error)
        code = str(params.get("CODE", ""))
        if len(code) != 32:
            raise MethodError("CODE", "You entered an invalid code")
        if not self.joined:
            raise MethodError("NOT_FOUND", "Line not found")
        uid = int(str(params.get("USER_ID") or 0) or 0)
        if uid in self.user_errors:
            raise MethodError(self.user_errors[uid])
        if not uid:
            raise MethodError("USER_ID_EMPTY")
        sent = self.ledger.get(uid)
        if not self.nfr and sent is not None and sent > time.time() - WEEK:
            raise MethodError("USER_MESSAGE_LIMIT", "You cant send more than one message per week")
        if not str(params.get("MESSAGE", "")).strip():
            raise MethodError("MESSAGE_EMPTY")
        user = self.users.get(uid)
        if user is None or not user["ACTIVE"]:
            raise MethodError("WRONG_REQUEST", "Message isn't added")
        self.ledger[uid] = time.time()
        self.inbox.append(dict(params))
        return True

    def user_get(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int | None]:
        flt = params.get("FILTER") or {}
        rows = []
        for uid in sorted(self.users):
            user = self.users[uid]
            ok = True
            for key, wanted in flt.items():
                values = (
                    list(wanted.values())
                    if isinstance(wanted, dict)
                    else (wanted if isinstance(wanted, list) else [wanted])
                )
                values = [str(v).lower() for v in values]
                if key == "ID":
                    ok = str(uid) in values
                elif key == "ACTIVE":
                    ok = str(user["ACTIVE"]).lower() in values or (user["ACTIVE"] and "y" in values)
                elif key == "USER_TYPE":
                    ok = user["USER_TYPE"] in values
                elif key == "UF_DEPARTMENT":
                    ok = any(str(d) in values for d in user["UF_DEPARTMENT"])
                if not ok:
                    break
            if ok:
                rows.append(user)
        start = int(params.get("start") or 0)
        page = rows[start : start + 50]
        more = start + 50 < len(rows)
        return page, len(rows), start + 50 if more else None

    def department_get(
        self, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int, int | None]:
        if self.department_error:
            raise MethodError(self.department_error, status=401)
        rows = [
            {
                "ID": str(d),
                "NAME": self.department_names.get(d, f"D{d}"),
                **({"PARENT": str(p)} if p else {}),
            }
            for d, p in sorted(self.departments.items())
        ]
        start = int(params.get("start") or 0)
        more = start + 50 < len(rows)
        return rows[start : start + 50], len(rows), start + 50 if more else None

    def run(self, method: str, params: dict[str, Any]) -> tuple[Any, int | None, int | None]:
        if method == "imopenlines.network.message.add":
            return self.message_add(params), None, None
        if method == "user.get":
            return self.user_get(params)
        if method == "department.get":
            return self.department_get(params)
        if method == "imopenlines.network.join":
            self.joined = True
            return 1001, None, None
        raise MethodError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)

    # --- HTTP ----------------------------------------------------------------------------
    def handle(self, request: Any, method: str) -> Reply:
        member, user = self.fake._auth(request)
        if member is None:
            return user  # type: ignore[return-value]
        body = json.loads(request.body or b"{}")
        self.requests.append(method)
        if method == "batch":
            return self.batch(body)
        try:
            result, total, next_ = self.run(method, body)
        except MethodError as exc:
            return _err(exc.status, exc.code, exc.description)
        extra: dict[str, Any] = {}
        if total is not None:
            extra["total"] = total
        if next_ is not None:
            extra["next"] = next_
        return _ok(result, **extra)

    def batch(self, body: dict[str, Any]) -> Reply:
        if self.batch_reply is not None:
            return _err(self.batch_reply[0], self.batch_reply[1])
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, command in (body.get("cmd") or {}).items():
            name, _, query = command.partition("?")
            params = phpquery.parse_str(query)
            if "ATTACH" in params and isinstance(params["ATTACH"], str):
                params["ATTACH"] = json.loads(unquote(params["ATTACH"]))
            if name == "imopenlines.network.message.add" and self.batch_refuses_messages:
                errors[key] = {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "Method is not allowed for batch usage",
                }
                continue
            try:
                result, total, next_ = self.run(name, params)
            except MethodError as exc:
                errors[key] = {"error": exc.code, "error_description": exc.description}
                continue
            results[key] = result
            times[key] = {
                "start": 1.0,
                "finish": 1.01,
                "duration": 0.01,
                "processing": 0.01,
                "operating": 0.05,
                "operating_reset_at": int(time.time()) + 600,
            }
            if total is not None:
                totals[key] = total
            if next_ is not None:
                nexts[key] = next_
        if self.while_replying is not None:
            hook, self.while_replying = self.while_replying, None
            hook()
        if self.lose_reply_after_run:
            return 500, {}, "<html>502 Bad Gateway</html>"
        return _ok(
            {
                "result": results or [],
                "result_error": errors or [],
                "result_total": totals or [],
                "result_next": nexts or [],
                "result_time": times or [],
            }
        )


@pytest.fixture(autouse=True)
def _app_settings(settings: Any) -> None:
    settings.B24_CLIENT_ID = CLIENT_ID
    settings.B24_CLIENT_SECRET = CLIENT_SECRET
    settings.B24_APP_URL = "https://app.example.com"
    settings.B24_OAUTH_HOSTS = ["oauth.bitrix.info"]
    settings.B24_PORTAL_HOSTS = ["*.bitrix24.*"]
    settings.B24_PACER_REDIS_URL = ""
    settings.B24_REQUEST_TIMEOUT = 5.0
    cache.clear()  # portal ids repeat between tests; cached answers (time zone) must not


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    fake = start_fake_bitrix()
    fake.add_portal(MEMBER_ID, DOMAIN)
    state = Messenger(fake=fake)
    for method in (
        "batch",
        "user.get",
        "department.get",
        "imopenlines.network.join",
        "imopenlines.network.message.add",
    ):
        fake.rsps.add_callback(
            responses.POST,
            f"https://{DOMAIN}/rest/{method}",
            callback=lambda req, m=method: state.handle(req, m),
        )
    yield state
    fake.rsps.stop()
    fake.rsps.reset()


@pytest.fixture
def portal(messenger: Messenger) -> Portal:
    access, refresh = messenger.fake.issue(MEMBER_ID, 1)
    return Portal.objects.create(
        member_id=MEMBER_ID,
        domain=DOMAIN,
        client_endpoint=f"https://{DOMAIN}/rest/",
        server_endpoint=f"{OAUTH}/rest/",
        access_token=access,
        refresh_token=refresh,
        expires_at=timezone.now() + timedelta(hours=1),
        token_refreshed_at=timezone.now(),
        installed_at=timezone.now(),
        # Fast pacing unless a test is about pacing.
        rate=50.0,
        burst=500,
    )


@pytest.fixture
def line(portal: Portal) -> Line:
    return Line.objects.create(
        portal=portal,
        code=LINE_CODE,
        name="Support",
        bot_id=1001,
        join_status=Line.JoinStatus.JOINED,
        joined_at=timezone.now(),
    )


@pytest.fixture
def make_campaign(portal: Portal, line: Line) -> Callable[..., Campaign]:
    """A campaign with recipients already resolved (status READY), or in any status given."""

    def make(user_ids: list[int] | None = None, **fields: Any) -> Campaign:
        ids = user_ids if user_ids is not None else [1, 2, 3]
        values: dict[str, Any] = {
            "portal": portal,
            "line": line,
            "line_code": line.code,
            "name": "Spring news",
            "message": "Hello {NAME}!",
            "audience": aud.Audience("users", tuple(ids)).to_json(),
            "status": Campaign.Status.READY,
            "time_zone": "UTC",
        }
        values.update(fields)
        campaign = Campaign.objects.create(**values)
        Recipient.objects.bulk_create(
            [
                Recipient(campaign=campaign, user_id=uid, name=f"Name{uid}", last_name=f"Last{uid}")
                for uid in ids
            ],
            batch_size=500,
        )
        return campaign

    return make
