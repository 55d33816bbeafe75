"""A Bitrix24 stand-in at the HTTP edge (via `responses`) for unit tests of the app.

It keeps just enough state to make the app's token rules testable: access tokens that expire,
refresh tokens that are single-use, app.info at the OAuth server, profile and event.bind on the
portal. The full emulator for end-to-end tests is the sandbox (b24app/sandbox).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

OAUTH = "https://oauth.bitrix.info"
CLIENT_ID = "local.b24app.sandbox"
CLIENT_SECRET = "sandbox-client-secret-0123456789"


@dataclass
class FakePortal:
    member_id: str
    domain: str
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    bound: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class FakeBitrix:
    rsps: responses.RequestsMock
    portals: dict[str, FakePortal] = field(default_factory=dict)
    access: dict[str, tuple[str, int, float]] = field(
        default_factory=dict
    )  # token -> member, user, exp
    refresh: dict[str, tuple[str, int]] = field(default_factory=dict)  # live refresh tokens
    spent: set[str] = field(default_factory=set)
    refresh_count: int = 0
    invalid_grant_count: int = 0
    app_code: str = CLIENT_ID
    installed: bool = False  # app.info's INSTALLED: false until installFinish (spec §1.3)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refresh_delay: float = 0.0

    def add_portal(
        self, member_id: str = "a223c6b3710f85df22e9377d6c4f7553", domain: str = "acme.bitrix24.com"
    ) -> FakePortal:
        portal = FakePortal(member_id=member_id, domain=domain)
        portal.users[1] = {"ID": 1, "ADMIN": True, "NAME": "Anna", "LAST_NAME": "Admin"}
        portal.users[7] = {"ID": 7, "ADMIN": False, "NAME": "Ivan", "LAST_NAME": "Manager"}
        self.portals[member_id] = portal
        self.rsps.add_callback(
            responses.POST,
            f"https://{domain}/rest/profile",
            callback=lambda req: self._rest(req, portal, "profile"),
        )
        self.rsps.add_callback(
            responses.POST,
            f"https://{domain}/rest/event.bind",
            callback=lambda req: self._rest(req, portal, "event.bind"),
        )
        return portal

    def issue(self, member_id: str, user_id: int = 1, ttl: float = 3600) -> tuple[str, str]:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        with self.lock:
            self.access[access] = (member_id, user_id, time.time() + ttl)
            self.refresh[refresh] = (member_id, user_id)
        return access, refresh

    def expire_all(self) -> None:
        with self.lock:
            for token, (member, user, _exp) in list(self.access.items()):
                self.access[token] = (member, user, 0.0)

    # --- handlers ---
    def _auth(self, req: Any) -> tuple[str, int] | tuple[None, tuple[int, dict[str, str], str]]:
        body = json.loads(req.body or b"{}")
        token = body.get("auth", "")
        with self.lock:
            found = self.access.get(token)
        if not found:
            return None, (
                401,
                {},
                json.dumps(
                    {
                        "error": "invalid_token",
                        "error_description": "The access token provided is invalid",
                    }
                ),
            )
        member, user, exp = found
        if exp <= time.time():
            return None, (
                401,
                {},
                json.dumps(
                    {
                        "error": "expired_token",
                        "error_description": "The access token provided has expired",
                    }
                ),
            )
        return member, user

    def _rest(self, req: Any, portal: FakePortal, method: str) -> tuple[int, dict[str, str], str]:
        member, user = self._auth(req)
        if member is None:
            return user  # type: ignore[return-value]
        if member != portal.member_id:
            return (
                401,
                {},
                json.dumps({"error": "invalid_token", "error_description": "wrong portal"}),
            )
        body = json.loads(req.body or b"{}")
        self.calls.append((method, body))
        if method == "profile":
            result: Any = portal.users[int(user)]
        elif method == "event.bind":
            key = (body.get("event", "").upper(), body.get("handler", ""))
            if key in portal.bound:
                return (
                    400,
                    {},
                    json.dumps(
                        {
                            "error": "ERROR_HANDLER_ALREADY_EXIST",
                            "error_description": "Handler already exists!",
                        }
                    ),
                )
            portal.bound.add(key)
            result = True
        else:  # pragma: no cover
            raise AssertionError(method)
        return (
            200,
            {},
            json.dumps(
                {
                    "result": result,
                    "time": {
                        "start": 1,
                        "finish": 1.01,
                        "duration": 0.01,
                        "processing": 0.01,
                        "operating": 0.01,
                        "operating_reset_at": 1,
                    },
                }
            ),
        )

    def _app_info(self, req: Any) -> tuple[int, dict[str, str], str]:
        member, user = self._auth(req)
        if member is None:
            return user  # type: ignore[return-value]
        return (
            200,
            {},
            json.dumps(
                {
                    "result": {
                        "ID": 5,
                        "CODE": self.app_code,
                        "VERSION": 1,
                        "STATUS": "L",
                        "INSTALLED": self.installed,
                        "PAYMENT_EXPIRED": "N",
                        "DAYS": None,
                        "LANGUAGE_ID": "en",
                        "LICENSE": "en_project",
                    }
                }
            ),
        )

    def _token(self, req: Any) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(req.url).query).items()}
        if req.body:
            body = req.body.decode() if isinstance(req.body, bytes) else req.body
            query.update({k: v[0] for k, v in parse_qs(body).items()})
        if query.get("client_id") != CLIENT_ID or query.get("client_secret") != CLIENT_SECRET:
            return (
                401,
                {},
                json.dumps({"error": "invalid_client", "error_description": "bad client"}),
            )
        if self.refresh_delay:
            time.sleep(self.refresh_delay)
        with self.lock:
            token = query.get("refresh_token", "")
            owner = self.refresh.pop(token, None)
            if owner is None:
                self.invalid_grant_count += 1
                return (
                    400,
                    {},
                    json.dumps(
                        {"error": "invalid_grant", "error_description": "Invalid refresh token"}
                    ),
                )
            self.spent.add(token)
            self.refresh_count += 1
        member, user = owner
        access, refresh = self.issue(member, user)
        domain = self.portals[member].domain
        return (
            200,
            {},
            json.dumps(
                {
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires": int(time.time()) + 3600,
                    "expires_in": 3600,
                    "scope": "imopenlines,user,department",
                    "domain": "oauth.bitrix.info",
                    "server_endpoint": f"{OAUTH}/rest/",
                    "client_endpoint": f"https://{domain}/rest/",
                    "member_id": member,
                    "user_id": user,
                    "status": "L",
                }
            ),
        )


def start_fake_bitrix() -> FakeBitrix:
    rsps = responses.RequestsMock(assert_all_requests_are_fired=False)
    rsps.start()
    fake = FakeBitrix(rsps=rsps)
    rsps.add_callback(responses.POST, f"{OAUTH}/rest/app.info", callback=fake._app_info)
    for method in (responses.GET, responses.POST):
        rsps.add_callback(method, f"{OAUTH}/oauth/token/", callback=fake._token)
    return fake
