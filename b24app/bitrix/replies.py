"""Typed values returned by the Bitrix client, so callers never index raw reply dicts.

Bitrix is loose with types: ``ID`` arrives as ``"1"``, ``ACTIVE`` as ``true`` or ``"Y"``,
empty maps as ``[]``, and fields come and go between portal versions. Every ``from_*``
parser here accepts those variants and falls back to an empty value instead of raising,
except for identifiers, without which the object is meaningless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from b24app.bitrix import errors
from b24app.bitrix.errors import BitrixError

T = TypeVar("T")


def as_int(value: Any, default: int | None = None) -> int | None:
    """``"42"``, ``42`` or ``42.0`` → 42; anything else → ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def as_float(value: Any) -> float | None:
    """Numbers and numeric strings → float; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_bool(value: Any) -> bool:
    """Bitrix booleans: ``true``, ``"Y"``, ``"1"``, ``1`` are true; the rest false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().upper() in {"Y", "YES", "TRUE", "1"}
    return False


def as_str(value: Any) -> str:
    """Strings stay, numbers are printed, null and structures become ``""``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def as_map(value: Any) -> dict[str, Any]:
    """A PHP array as a dict with string keys.

    PHP serialises an empty array as ``[]`` and a list-like one (keys 0..n-1) as a JSON list,
    so ``{"0": x, "1": y}`` can come back as ``[x, y]``.
    """
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _required_id(data: Mapping[str, Any], key: str = "ID") -> int:
    value = as_int(data.get(key))
    if value is None:
        raise errors.malformed(f"reply item without a numeric {key}", is_write=False)
    return value


@dataclass(frozen=True)
class CallTime:
    """The ``time`` block of a reply; ``operating`` feeds the execution-time pacer."""

    start: float
    finish: float
    duration: float
    processing: float
    operating: float | None = None
    operating_reset_at: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> CallTime | None:
        """Parse ``time`` (or a ``result_time`` entry); None when absent or not an object."""
        if not isinstance(data, Mapping):
            return None
        start = as_float(data.get("start")) or 0.0
        finish = as_float(data.get("finish")) or start
        duration = as_float(data.get("duration"))
        return cls(
            start=start,
            finish=finish,
            duration=duration if duration is not None else max(0.0, finish - start),
            processing=as_float(data.get("processing")) or 0.0,
            operating=as_float(data.get("operating")),
            operating_reset_at=as_int(data.get("operating_reset_at")),
        )


@dataclass(frozen=True)
class AppInfo:
    """``app.info``: which app this token belongs to and whether it is installed and paid."""

    id: int
    code: str
    version: str
    status: str
    installed: bool
    payment_expired: bool
    language_id: str
    license: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppInfo:
        """Parse the ``result`` object of ``app.info``."""
        return cls(
            id=as_int(data.get("ID"), 0) or 0,
            code=as_str(data.get("CODE")),
            # VERSION is an int in app.info but a "1.0.0" string in ONAPPINSTALL: keep text.
            version=as_str(data.get("VERSION")),
            status=as_str(data.get("STATUS")),
            installed=as_bool(data.get("INSTALLED")),
            payment_expired=as_bool(data.get("PAYMENT_EXPIRED")),
            language_id=as_str(data.get("LANGUAGE_ID")),
            license=as_str(data.get("LICENSE")),
        )


@dataclass(frozen=True)
class Profile:
    """``profile``: the token owner, and whether they are a portal admin."""

    id: int
    admin: bool
    name: str
    last_name: str
    time_zone: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        """Parse the ``result`` object of ``profile``."""
        return cls(
            id=_required_id(data),
            admin=as_bool(data.get("ADMIN")),
            name=as_str(data.get("NAME")),
            last_name=as_str(data.get("LAST_NAME")),
            time_zone=as_str(data.get("TIME_ZONE")),
        )


@dataclass(frozen=True)
class User:
    """One user from ``user.get``, ``user.search`` or ``user.current``."""

    id: int
    active: bool
    name: str
    last_name: str
    email: str
    work_position: str
    departments: tuple[int, ...]
    user_type: str

    @property
    def full_name(self) -> str:
        """Name and last name, as Bitrix shows them; empty when the user has neither."""
        return " ".join(part for part in (self.name, self.last_name) if part)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> User:
        """Parse one user object."""
        raw_departments = data.get("UF_DEPARTMENT")
        if not isinstance(raw_departments, list):
            raw_departments = [raw_departments] if raw_departments not in (None, "", False) else []
        departments = tuple(d for d in (as_int(v) for v in raw_departments) if d is not None)
        return cls(
            id=_required_id(data),
            # user.current may omit ACTIVE: the token owner is active by definition.
            active=as_bool(data.get("ACTIVE", True)),
            name=as_str(data.get("NAME")),
            last_name=as_str(data.get("LAST_NAME")),
            email=as_str(data.get("EMAIL")),
            work_position=as_str(data.get("WORK_POSITION")),
            departments=departments,
            user_type=as_str(data.get("USER_TYPE")),
        )


@dataclass(frozen=True)
class Department:
    """One department from ``department.get``; ``parent`` is None for the root."""

    id: int
    name: str
    parent: int | None
    sort: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Department:
        """Parse one department object."""
        parent = as_int(data.get("PARENT"))
        return cls(
            id=_required_id(data),
            name=as_str(data.get("NAME")),
            parent=parent or None,
            sort=as_int(data.get("SORT"), 0) or 0,
        )


@dataclass(frozen=True)
class EventHandler:
    """One bound handler from ``event.get``."""

    event: str
    handler: str
    auth_type: int | None
    offline: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventHandler:
        """Parse one ``event.get`` item (``auth_type`` arrives as a string)."""
        return cls(
            event=as_str(data.get("event")),
            handler=as_str(data.get("handler")),
            auth_type=as_int(data.get("auth_type")),
            offline=as_bool(data.get("offline")),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list method; ``next`` is the ``start`` of the following page, if any."""

    items: tuple[T, ...]
    total: int | None
    next: int | None


@dataclass(frozen=True)
class SendResult:
    """The outcome of a successful ``imopenlines.network.message.add``."""

    time: CallTime | None


@dataclass(frozen=True)
class BatchResult:
    """The outcome of a ``batch``: each command key lands in ``results`` or ``errors``.

    With ``halt`` set, commands after the first failure appear in neither.
    """

    results: dict[str, Any]
    errors: dict[str, BitrixError]
    times: dict[str, CallTime]
    time: CallTime | None
    totals: dict[str, int] = field(default_factory=dict)
    nexts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenSet:
    """An OAuth token pair with everything Bitrix sent along with it.

    ``domain`` is whatever the sender called ``domain``: the OAuth server's host in a token
    reply (``oauth.bitrix.info``), the portal's host in an event payload. The portal is
    always in ``client_endpoint``.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: str
    member_id: str
    client_endpoint: str
    server_endpoint: str
    domain: str
    user_id: int | None
    status: str

    def is_fresh(self, now: datetime, *, margin: timedelta = timedelta(seconds=60)) -> bool:
        """True while the access token stays valid for at least ``margin``."""
        return now + margin < self.expires_at

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, now: datetime | None = None) -> TokenSet:
        """Parse an OAuth token reply or the ``auth`` block of an event (values may be text).

        ``expires_at`` comes from ``expires`` (unix time) when present, else from
        ``now + expires_in`` (default one hour, the documented lifetime).
        """
        access_token = as_str(data.get("access_token"))
        if not access_token:
            raise errors.malformed("token reply without access_token", is_write=True)
        current = now if now is not None else datetime.now(UTC)
        expires = as_float(data.get("expires"))
        if expires is not None and expires > 0:
            expires_at = datetime.fromtimestamp(expires, UTC)
        else:
            expires_in = as_float(data.get("expires_in"))
            expires_at = current + timedelta(seconds=expires_in if expires_in else 3600)
        return cls(
            access_token=access_token,
            refresh_token=as_str(data.get("refresh_token")),
            expires_at=expires_at,
            scope=as_str(data.get("scope")),
            member_id=as_str(data.get("member_id")),
            client_endpoint=as_str(data.get("client_endpoint")),
            server_endpoint=as_str(data.get("server_endpoint")),
            domain=as_str(data.get("domain")),
            user_id=as_int(data.get("user_id")),
            status=as_str(data.get("status")),
        )
