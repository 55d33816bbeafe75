"""The sandbox's whole world in memory: portals, tokens, limits, deliveries, behind one lock.

Everything that changes goes through `Sandbox` while holding `Sandbox.lock`; the HTTP layer never
touches the dataclasses without it. Times are the sandbox clock (`Sandbox.now()`: wall time plus
an offset the control API moves), so tests can jump a week ahead without waiting.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from b24app.sandbox.directory import Directory, User, build_directory

__all__ = [
    "APP_SCOPE",
    "INACTIVE_LINE_CODE",
    "LINE_CODE",
    "LINE_CODE_2",
    "PUBLISHED_LINES",
    "SETTING_DEFAULTS",
    "AccessToken",
    "Portal",
    "RefreshToken",
    "Sandbox",
    "SettingsError",
]

# Bitrix24.Network open lines the sandbox knows as "published" (spec §5.8). Any portal may join
# the active ones; joining the inactive one answers INACTIVE. Exactly 32 characters each, since
# the server checks the length only (§5.2).
LINE_CODE = "b24appsandboxline000000000000001"
LINE_CODE_2 = "b24appsandboxline000000000000002"
INACTIVE_LINE_CODE = "b24appsandboxinactive00000000001"
PUBLISHED_LINES: dict[str, bool] = {LINE_CODE: True, LINE_CODE_2: True, INACTIVE_LINE_CODE: False}

APP_SCOPE = "imopenlines,user,department"
APP_STATUS = "L"  # a local app (spec §1.1); app.info and every token reply carry it
APP_ID = 7
WEEK_S = 7 * 24 * 3600
CODE_TTL_S = 30
# Current docs give refresh tokens 180 days (spec §2.2); the sandbox enforces that figure.
REFRESH_TTL_S = 180 * 24 * 3600
BOT_ID_BASE = 1000

# Settings the control API may change, globally or per portal, with their defaults. Counters
# ending in `_next` fire on the next K matching calls and count down.
SETTING_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0.0,  # added to every REST and OAuth request
    "error_rate": 0.0,  # share of REST requests answered 500 before doing anything
    "error_next": 0,
    "drop_before_rate": 0.0,  # message-storing requests dropped before anything is stored
    "drop_before_next": 0,
    "drop_after_rate": 0.0,  # ... dropped after the message was stored and counted
    "drop_after_next": 0,
    "portal_deleted": False,
    "payment_required": False,
    "nfr": False,
    "batch_send": True,
    "rate": 2.0,
    "burst": 50,
    "op_cost_ms": 5.0,
    "op_budget_s": 480.0,
    "op_window_s": 600.0,
    "token_ttl": 3600,
    "old_portal": False,  # frame POST without SERVER_ENDPOINT/APPLICATION_TOKEN/APPLICATION_SCOPE
    "scope": APP_SCOPE,
    "event_delay_ms": 500.0,
    "size_rule": "chars",
}
_COUNTERS = ("error_next", "drop_before_next", "drop_after_next")
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


class SettingsError(ValueError):
    """A control request named an unknown setting or gave it a value of the wrong type."""


def _token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(32))


def member_id_for(index: int) -> str:
    """The stable member_id (32 hex) of portal number `index`: the same on every run."""
    return hashlib.md5(f"b24app-sandbox-portal-{index}".encode(), usedforsecurity=False).hexdigest()


def coerce_setting(key: str, value: Any) -> Any:
    """Check one setting against its default's type and return it converted."""
    if key not in SETTING_DEFAULTS:
        raise SettingsError(f"unknown setting {key!r}")
    default = SETTING_DEFAULTS[key]
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "y", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if key.endswith("_rate") and not 0.0 <= number <= 1.0:
                raise SettingsError(f"{key} must be within 0..1")
            return number
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"bad value for {key}: {value!r}") from exc
    if key == "size_rule" and value not in ("chars", "bytes"):
        raise SettingsError("size_rule must be 'chars' or 'bytes'")
    return str(value)


@dataclass
class AccessToken:
    """An issued access token."""

    token: str
    portal: int
    user_id: int
    expires: int
    scope: str


@dataclass
class RefreshToken:
    """An issued refresh token; single use."""

    token: str
    portal: int
    user_id: int
    issued: float
    used: bool = False


@dataclass
class AuthCode:
    """An authorization code from /oauth/authorize/; lives 30 s, single use."""

    code: str
    portal: int
    user_id: int
    expires: float


@dataclass
class Portal:
    """One faux Bitrix24 portal and the app's life on it."""

    index: int
    port: int
    host: str
    directory: Directory
    overrides: dict[str, Any] = field(default_factory=dict)
    app_state: str = "none"  # none | installing | installed
    application_token: str = ""
    version: int = 1
    install_user: int = 0
    first_run: bool = True
    lines: dict[str, int] = field(default_factory=dict)  # joined CODE -> network bot id
    handlers: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, float] = field(default_factory=dict)  # "CODE:USER_ID" -> last send time
    app_options: dict[str, Any] = field(default_factory=dict)
    user_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    bucket_level: float = 0.0
    bucket_at: float = 0.0
    # method -> list of [bucket start, charged microseconds]
    operating: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def member_id(self) -> str:
        """Stable portal id."""
        return member_id_for(self.index)

    @property
    def domain(self) -> str:
        """`DOMAIN` as the portal reports it: host and port, no scheme."""
        return f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """`http://<DOMAIN>`; the sandbox serves plain HTTP (PROTOCOL=0)."""
        return f"http://{self.domain}"

    @property
    def client_endpoint(self) -> str:
        """The portal's REST base."""
        return f"{self.origin}/rest/"

    @property
    def installed(self) -> bool:
        """The app finished installing here."""
        return self.app_state == "installed"


class Sandbox:
    """The state of the hub and all portals, plus the operations on it."""

    def __init__(
        self,
        *,
        base_port: int = 8100,
        portals: int = 1,
        users: int = 300,
        app_url: str = "http://127.0.0.1:8000",
        client_id: str = "local.b24app.sandbox",
        client_secret: str = "sandbox-client-secret-0123456789",  # noqa: S107 - .env.example value
        settings: dict[str, Any] | None = None,
        state_file: Path | None = None,
        host: str = "localhost",
    ) -> None:
        self.lock = threading.RLock()
        self.base_port = base_port
        self.host = host
        self.app_url = app_url.rstrip("/")
        self.initial_app_url = self.app_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.user_count = users
        self.state_file = state_file
        self.initial_settings = {k: coerce_setting(k, v) for k, v in (settings or {}).items()}
        self.settings: dict[str, Any] = {**SETTING_DEFAULTS, **self.initial_settings}
        self.clock_offset = 0.0
        self.portals: dict[int, Portal] = {}
        for index in range(1, portals + 1):
            self.portals[index] = Portal(
                index=index,
                port=base_port + index,
                host=host,
                directory=build_directory(index, users),
            )
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.event_log: list[dict[str, Any]] = []
        self.delivery_seq = 0
        self.dirty = False

    # --- clock and settings ----------------------------------------------------------------

    def now(self) -> float:
        """Sandbox time: wall clock plus the control API's offset."""
        return time.time() + self.clock_offset

    @property
    def hub_domain(self) -> str:
        """Host and port of the hub (the OAuth server)."""
        return f"{self.host}:{self.base_port}"

    @property
    def hub_url(self) -> str:
        """Base URL of the hub."""
        return f"http://{self.hub_domain}"

    @property
    def server_endpoint(self) -> str:
        """The OAuth server's REST base given to the app as SERVER_ENDPOINT."""
        return f"{self.hub_url}/rest/"

    @property
    def app_origin(self) -> str:
        """Scheme, host and port of the app, for CORS and postMessage checks."""
        scheme, _, rest = self.app_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def setting(self, portal: Portal | None, key: str) -> Any:
        """The effective value of a setting: the portal's override, else the global one."""
        if portal is not None and key in portal.overrides:
            return portal.overrides[key]
        return self.settings[key]

    def take_counter(self, portal: Portal, key: str) -> bool:
        """Consume one unit of a `*_next` fault counter; True when it fired."""
        holder = portal.overrides if portal.overrides.get(key, 0) > 0 else self.settings
        if holder.get(key, 0) > 0:
            holder[key] -= 1
            return True
        return False

    def apply_settings(self, values: dict[str, Any], portal: Portal | None) -> None:
        """Set (coerced) settings globally or as overrides of one portal."""
        coerced = {k: coerce_setting(k, v) for k, v in values.items()}
        target = portal.overrides if portal is not None else self.settings
        target.update(coerced)

    def snapshot(self) -> dict[str, Any]:
        """What GET /_sandbox/control shows."""
        now = self.now()
        return {
            "now": now,
            "now_iso": iso(now),
            "clock_offset_s": self.clock_offset,
            "hub_url": self.hub_url,
            "server_endpoint": self.server_endpoint,
            "app_url": self.app_url,
            "client_id": self.client_id,
            "lines": {code: {"active": active} for code, active in PUBLISHED_LINES.items()},
            "global": dict(self.settings),
            "portals": {
                str(p.index): {
                    "url": p.origin,
                    "domain": p.domain,
                    "member_id": p.member_id,
                    "app_state": p.app_state,
                    "version": p.version,
                    "application_token": p.application_token,
                    "lines": dict(p.lines),
                    "handlers": list(p.handlers),
                    "overrides": dict(p.overrides),
                    "users": len(p.directory.users),
                }
                for p in self.portals.values()
            },
            "deliveries": len(self.deliveries),
        }

    def reset(self) -> None:
        """Back to a fresh start: no installs, tokens, deliveries or faults; no clock offset."""
        self.settings = {**SETTING_DEFAULTS, **self.initial_settings}
        self.clock_offset = 0.0
        self.app_url = self.initial_app_url
        for index, old in list(self.portals.items()):
            self.portals[index] = Portal(
                index=index, port=old.port, host=old.host, directory=old.directory
            )
        self.access.clear()
        self.refresh.clear()
        self.codes.clear()
        self.deliveries.clear()
        self.event_log.clear()
        self.delivery_seq = 0
        self.dirty = True

    # --- portals and users ---------------------------------------------------------------

    def portal(self, index: int) -> Portal:
        """Portal number `index`; KeyError when there is none."""
        return self.portals[index]

    def portal_by_member(self, member_id: str) -> Portal | None:
        """The portal with that member_id, or None."""
        for portal in self.portals.values():
            if portal.member_id == member_id:
                return portal
        return None

    # --- tokens --------------------------------------------------------------------------

    def issue_tokens(self, portal: Portal, user_id: int) -> dict[str, Any]:
        """A fresh access/refresh pair for a user, as the OAuth server's JSON (spec §2.2)."""
        now = self.now()
        ttl = int(self.setting(portal, "token_ttl"))
        scope = str(self.setting(portal, "scope"))
        access = AccessToken(_token(), portal.index, user_id, int(now) + ttl, scope)
        refresh = RefreshToken(_token(), portal.index, user_id, now)
        self.access[access.token] = access
        self.refresh[refresh.token] = refresh
        self.dirty = True
        return {
            "access_token": access.token,
            "expires": access.expires,
            "expires_in": ttl,
            "scope": scope,
            "domain": self.hub_domain,
            "server_endpoint": self.server_endpoint,
            "status": APP_STATUS,
            "client_endpoint": portal.client_endpoint,
            "member_id": portal.member_id,
            "user_id": user_id,
            "refresh_token": refresh.token,
        }

    def revoke_portal_tokens(self, portal: Portal) -> None:
        """Uninstall: every token and code of the portal stops working."""
        for store in (self.access, self.refresh, self.codes):
            for key in [k for k, v in store.items() if v.portal == portal.index]:
                del store[key]
        self.dirty = True

    def expire_tokens(self, portal: Portal | None) -> int:
        """Force expiry of current access tokens (all portals when `portal` is None)."""
        cutoff = int(self.now()) - 1
        count = 0
        for token in self.access.values():
            if (portal is None or token.portal == portal.index) and token.expires > cutoff:
                token.expires = cutoff
                count += 1
        self.dirty = True
        return count

    # --- deliveries ----------------------------------------------------------------------

    def record_delivery(
        self,
        portal: Portal,
        *,
        code: str,
        user_id: int,
        message: str,
        attach: Any,
        keyboard: Any,
        url_preview: bool,
    ) -> dict[str, Any]:
        """Store a delivered message and write its weekly-ledger row (spec §5.7)."""
        # Round to the microsecond first, so `ts` and `delivered_at` compare equal in filters.
        now = datetime.fromtimestamp(self.now(), tz=UTC).timestamp()
        self.delivery_seq += 1
        delivery = {
            "id": self.delivery_seq,
            "member_id": portal.member_id,
            "CODE": code,
            "USER_ID": user_id,
            "MESSAGE": message,
            "ATTACH": attach,
            "KEYBOARD": keyboard,
            "URL_PREVIEW": "Y" if url_preview else "N",
            "delivered_at": iso(now),
            "ts": now,
        }
        self.deliveries.append(delivery)
        portal.ledger[f"{code}:{user_id}"] = now
        self.dirty = True
        return delivery

    def limit_reached(self, portal: Portal, code: str, user_id: int) -> bool:
        """A message went from this line to this user less than 7×24 h ago (unless NFR)."""
        if self.setting(portal, "nfr"):
            return False
        sent = portal.ledger.get(f"{code}:{user_id}")
        return sent is not None and sent > self.now() - WEEK_S

    def user(self, portal: Portal, user_id: int) -> User | None:
        """A user of the portal's directory."""
        return portal.directory.user(user_id)

    # --- persistence ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything worth keeping across a restart (settings and faults are not kept)."""
        return {
            "version": 1,
            "portals": {
                str(p.index): {
                    "app_state": p.app_state,
                    "application_token": p.application_token,
                    "version": p.version,
                    "install_user": p.install_user,
                    "first_run": p.first_run,
                    "lines": p.lines,
                    "handlers": p.handlers,
                    "ledger": p.ledger,
                    "app_options": p.app_options,
                    "user_options": p.user_options,
                }
                for p in self.portals.values()
            },
            "access": [asdict(t) for t in self.access.values()],
            "refresh": [asdict(t) for t in self.refresh.values()],
            "deliveries": self.deliveries,
            "delivery_seq": self.delivery_seq,
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore what `dump` wrote; portals that no longer exist are skipped."""
        for key, saved in data.get("portals", {}).items():
            portal = self.portals.get(int(key))
            if portal is None:
                continue
            for name in (
                "app_state",
                "application_token",
                "version",
                "install_user",
                "first_run",
                "lines",
                "handlers",
                "ledger",
                "app_options",
                "user_options",
            ):
                if name in saved:
                    setattr(portal, name, saved[name])
        for raw in data.get("access", []):
            if int(raw["portal"]) in self.portals:
                self.access[raw["token"]] = AccessToken(**raw)
        for raw in data.get("refresh", []):
            if int(raw["portal"]) in self.portals:
                self.refresh[raw["token"]] = RefreshToken(**raw)
        self.deliveries = list(data.get("deliveries", []))
        self.delivery_seq = int(data.get("delivery_seq", len(self.deliveries)))

    def save(self) -> None:
        """Write the state file atomically if anything changed since the last save."""
        if self.state_file is None:
            return
        with self.lock:
            if not self.dirty:
                return
            payload = json.dumps(self.dump(), ensure_ascii=False)
            self.dirty = False
        directory = self.state_file.parent
        fd, tmp = tempfile.mkstemp(prefix=".sandbox-state-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
        os.replace(tmp, self.state_file)

    def restore(self) -> bool:
        """Load the state file when there is one; True if something was loaded."""
        if self.state_file is None or not self.state_file.exists():
            return False
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        with self.lock:
            self.load(data)
        return True


def iso(ts: float) -> str:
    """ISO 8601 in UTC with microseconds, e.g. `2026-11-25T12:00:00.123456+00:00`."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")


def iso_seconds(ts: float) -> str:
    """ISO 8601 to the second with offset, as Bitrix's `date_start`/`date_finish`."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
