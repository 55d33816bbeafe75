"""Fixtures for the composer: a portal, frame tokens, and Bitrix stubbed at the HTTP edge.

`bitrix` answers the methods the composer calls (`imopenlines.network.join`,
`imopenlines.network.message.add`, `user.search`) through `responses`, deciding sends with the
server rules of `messaging.payload.server_accept`, so a view test sees what a portal would say.
Tests can force an answer (`bitrix.next_send = "timeout"`, `("error", "NOT_FOUND")`...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from b24app.messaging import payload
from b24app.messaging.models import Line
from b24app.portals import frame
from b24app.portals.models import Portal
from tests.fakes import CLIENT_ID, CLIENT_SECRET, OAUTH, FakeBitrix, start_fake_bitrix

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
DOMAIN = "acme.bitrix24.com"
OTHER_MEMBER_ID = "b334d7c4821f96e0a33f8488e7d8a664"
OTHER_DOMAIN = "other.bitrix24.com"
CODE = "ab515f5d85a8b844d484f6ea75a2e494"
OTHER_CODE = "cd515f5d85a8b844d484f6ea75a2e494"


@pytest.fixture(autouse=True)
def _app_settings(settings: Any) -> None:
    settings.B24_CLIENT_ID = CLIENT_ID
    settings.B24_CLIENT_SECRET = CLIENT_SECRET
    settings.B24_APP_URL = "https://app.example.com"
    settings.B24_OAUTH_HOSTS = ["oauth.bitrix.info"]
    settings.B24_PORTAL_HOSTS = ["*.bitrix24.*"]
    settings.B24_SANDBOX = False
    settings.B24_PACER_REDIS_URL = ""


_TIME = {
    "start": 1,
    "finish": 1.01,
    "duration": 0.01,
    "processing": 0.01,
    "operating": 0.01,
    "operating_reset_at": 1,
}


@dataclass
class MessagingBitrix:
    """The messaging side of a fake portal: joined lines, a weekly ledger, a user directory."""

    fake: FakeBitrix
    domain: str
    joinable: dict[str, str] = field(default_factory=dict)  # code -> "" | NOT_FOUND | INACTIVE
    joined: set[str] = field(default_factory=set)
    users: list[dict[str, Any]] = field(default_factory=list)
    ledger: set[tuple[str, int]] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    next_send: Any = None  # None, "timeout", "500", ("error", CODE) or ("retry", CODE)
    search_fails: bool = False

    def register(self) -> None:
        rest = f"https://{self.domain}/rest/"
        self.fake.rsps.add_callback(
            responses.POST, rest + "imopenlines.network.join", callback=self._join
        )
        self.fake.rsps.add_callback(
            responses.POST, rest + "imopenlines.network.message.add", callback=self._send
        )
        self.fake.rsps.add_callback(responses.POST, rest + "user.search", callback=self._search)

    @staticmethod
    def _ok(result: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps({"result": result, "time": _TIME})

    @staticmethod
    def _error(code: str, status: int = 400) -> tuple[int, dict[str, str], str]:
        description = payload.SERVER_ERRORS.get(code, code)
        return status, {}, json.dumps({"error": code, "error_description": description})

    def _join(self, request: Any) -> tuple[int, dict[str, str], str]:
        code = json.loads(request.body).get("CODE", "")
        state = self.joinable.get(code, "NOT_FOUND")
        if state:
            return self._error(state)
        self.joined.add(code)
        return self._ok(100 + len(self.joined))

    def _send(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        forced, self.next_send = self.next_send, None
        if forced == "timeout":
            raise requests.exceptions.ReadTimeout("read timed out")
        if forced == "500":
            return 500, {}, "<html>Internal Server Error</html>"
        if isinstance(forced, tuple):
            code = forced[1]
            return self._error(code, 503 if code == "QUERY_LIMIT_EXCEEDED" else 400)
        verdict = payload.server_accept(
            body,
            line_joined=lambda code: code in self.joined,
            limit_reached=lambda code, user: (code, user) in self.ledger,
        )
        if isinstance(verdict, payload.ServerRefusal):
            return self._error(verdict.code, verdict.status)
        self.ledger.add((verdict.code, verdict.user_id))
        self.sent.append(body)
        return self._ok(True)

    def _search(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.search_fails:
            return 500, {}, "oops"
        find = str(json.loads(request.body).get("FILTER", {}).get("FIND", "")).lower()
        found = [u for u in self.users if find in f"{u['NAME']} {u.get('LAST_NAME', '')}".lower()]
        return 200, {}, json.dumps({"result": found, "total": len(found), "time": _TIME})


@pytest.fixture
def fake_bitrix() -> Iterator[FakeBitrix]:
    fake = start_fake_bitrix()
    fake.add_portal(MEMBER_ID, DOMAIN)
    fake.add_portal(OTHER_MEMBER_ID, OTHER_DOMAIN)
    yield fake
    fake.rsps.stop()
    fake.rsps.reset()


@pytest.fixture
def bitrix(fake_bitrix: FakeBitrix) -> MessagingBitrix:
    stub = MessagingBitrix(fake=fake_bitrix, domain=DOMAIN)
    stub.joinable = {CODE: "", OTHER_CODE: ""}
    stub.joined = {CODE}
    stub.users = [
        {
            "ID": "7",
            "ACTIVE": True,
            "NAME": "Ivan",
            "LAST_NAME": "Manager",
            "WORK_POSITION": "Sales",
        },
        {"ID": "9", "ACTIVE": True, "NAME": "Irina", "LAST_NAME": 'O\'Brien "Ira"'},
        {"ID": "11", "ACTIVE": False, "NAME": "Ivo", "LAST_NAME": "Gone"},
    ]
    stub.register()
    return stub


@pytest.fixture
def make_portal(fake_bitrix: FakeBitrix) -> Callable[..., Portal]:
    def make(member_id: str = MEMBER_ID, domain: str = DOMAIN, **overrides: Any) -> Portal:
        access, refresh = fake_bitrix.issue(member_id, 1)
        fields: dict[str, Any] = {
            "member_id": member_id,
            "domain": domain,
            "client_endpoint": f"https://{domain}/rest/",
            "server_endpoint": f"{OAUTH}/rest/",
            "access_token": access,
            "refresh_token": refresh,
            "expires_at": timezone.now() + timedelta(hours=1),
            "token_refreshed_at": timezone.now(),
            "installed_at": timezone.now(),
        }
        fields.update(overrides)
        return Portal.objects.create(**fields)

    return make


@pytest.fixture
def portal(make_portal: Callable[..., Portal], bitrix: MessagingBitrix) -> Portal:
    return make_portal()


@pytest.fixture
def line(portal: Portal) -> Line:
    return Line.objects.create(
        portal=portal, code=CODE, name="Support", bot_id=101, join_status=Line.JoinStatus.JOINED
    )


class App:
    """The composer as the browser drives it: htmx requests carrying the frame token."""

    def __init__(self, client: Client, portal: Portal, *, user_id: int, admin: bool) -> None:
        self.client = client
        self.portal = portal
        self.user_id = user_id
        self.token = frame.issue_token(
            portal=portal, user_id=user_id, admin=admin, language="en", user_name="Anna Admin"
        )

    def headers(self, target: str | None, htmx: bool) -> dict[str, str]:
        headers = {"HTTP_X_FRAME_TOKEN": self.token}
        if htmx:
            headers["HTTP_HX_REQUEST"] = "true"
            if target:
                headers["HTTP_HX_TARGET"] = target
        return headers

    def post(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        target: str | None = None,
        htmx: bool = True,
        args: tuple[Any, ...] = (),
    ) -> Any:
        return self.client.post(
            reverse(f"messaging:{name}", args=args), data or {}, **self.headers(target, htmx)
        )

    def get(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        target: str | None = None,
        htmx: bool = True,
        args: tuple[Any, ...] = (),
    ) -> Any:
        return self.client.get(
            reverse(f"messaging:{name}", args=args), data or {}, **self.headers(target, htmx)
        )


@pytest.fixture
def app(client: Client, portal: Portal) -> App:
    """A support manager (user 7, not an admin) inside the frame."""
    return App(client, portal, user_id=7, admin=False)


@pytest.fixture
def admin_app(client: Client, portal: Portal) -> App:
    return App(client, portal, user_id=1, admin=True)


def compose_data(line: Line | None = None, **overrides: Any) -> dict[str, Any]:
    """A complete, valid composer post: text, a one-block attachment, a one-button keyboard."""
    data: dict[str, Any] = {
        "line": str(line.pk) if line else "",
        "user_id": "9",
        "recipient_name": "Irina",
        "message": "Hello [b]there[/b]",
        "url_preview": "on",
        "attach-0-kind": "LINK",
        "attach-0-link": "https://example.com/changelog",
        "attach-0-name": "Changelog",
        "kb-0-kind": "button",
        "kb-0-text": "Open",
        "kb-0-link": "https://example.com",
        "kb-0-display": "LINE",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}
