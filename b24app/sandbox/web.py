"""HTTP front of the sandbox: a WSGI app for the hub (OAuth server, control API) and per portal.

Werkzeug's request/response objects, Django templates for the HTML pages. A fault that "drops the
connection" shuts the socket down without writing a byte, so the client sees the connection close
with no response; werkzeug then fails to write and treats it as a client disconnect.

The sandbox serves plain HTTP (PROTOCOL=0). Real cloud portals refuse REST over HTTP with
`INVALID_REQUEST "Https required"`; the sandbox deliberately never sends that error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.template.loader import render_to_string
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from b24app.messaging import render
from b24app.sandbox import lifecycle, limits, phpquery, rest
from b24app.sandbox.directory import User
from b24app.sandbox.events import EventDispatcher
from b24app.sandbox.rest import RestError
from b24app.sandbox.state import (
    APP_ID,
    CODE_TTL_S,
    PUBLISHED_LINES,
    REFRESH_TTL_S,
    AccessToken,
    AuthCode,
    Portal,
    Sandbox,
    SettingsError,
)

__all__ = ["DropConnection", "SandboxWeb"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# name -> (path under static/, content type); read from disk on each request (no caching).
_STATIC_FILES = {
    "portal.css": ("sandbox/portal.css", "text/css"),
    "portal.js": ("sandbox/portal.js", "text/javascript"),
    "chat.css": ("css/chat.css", "text/css"),
}


class DropConnection(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Close the client's connection without sending any response."""


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json"
    )


def _rest_error(exc: RestError) -> Response:
    return _json(exc.body(), exc.status)


def _oauth_error(code: str, description: str, status: int) -> Response:
    return _json({"error": code, "error_description": description}, status)


def _html(template: str, context: dict[str, Any], status: int = 200) -> Response:
    return Response(render_to_string(template, context), status=status, mimetype="text/html")


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def request_params(request: Request) -> dict[str, Any]:
    """Query string plus body, PHP style: JSON, urlencoded and multipart bodies all work.

    An unreadable JSON body counts as empty, as PHP would see no parameters in it.
    """
    params = phpquery.parse_str(request.query_string.decode("utf-8", "replace"))
    if request.method not in ("POST", "PUT"):
        return params
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict):
            params.update(body)
    elif request.mimetype == "multipart/form-data":
        form: MultiDict[str, str] = request.form
        params.update(phpquery.parse_pairs(form.items(multi=True)))
    else:
        params.update(phpquery.parse_str(request.get_data(as_text=True)))
    return params


def _take_token(request: Request, params: dict[str, Any]) -> str:
    """The access token: a Bearer header first, then `auth`, then `access_token` (spec §3.1)."""
    header = request.headers.get("Authorization", "")
    auth = params.pop("auth", None)
    access = params.pop("access_token", None)
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    for value in (auth, access):
        if isinstance(value, str) and value:
            return value
    return ""


class SandboxWeb:
    """Builds the WSGI apps; shares one `Sandbox` and one `EventDispatcher`."""

    def __init__(self, sandbox: Sandbox, dispatcher: EventDispatcher) -> None:
        self.sandbox = sandbox
        self.dispatcher = dispatcher
        self.random = random.Random()
        self.hub_map = Map(
            [
                Rule("/", endpoint="hub_index"),
                Rule("/oauth/token/", endpoint="oauth_token"),
                Rule("/oauth/token", endpoint="oauth_token"),
                Rule("/rest/<path:method>", endpoint="hub_rest"),
                Rule("/_sandbox/control", endpoint="control"),
                Rule("/_sandbox/reset", endpoint="reset"),
                Rule("/_sandbox/deliveries", endpoint="deliveries"),
                Rule("/_sandbox/events", endpoint="event_log"),
                Rule("/_sandbox/static/<name>", endpoint="static"),
            ],
            strict_slashes=False,
        )
        self.portal_map = Map(
            [
                Rule("/", endpoint="portal_home"),
                Rule("/marketplace/app/<int:app_id>/", endpoint="app_page"),
                Rule("/company/", endpoint="employees"),
                Rule("/oauth/authorize/", endpoint="authorize"),
                Rule("/rest/<path:method>", endpoint="portal_rest"),
                Rule("/_sandbox/inbox/", endpoint="inbox"),
                Rule("/_sandbox/inbox/<int:user_id>", endpoint="inbox"),
                Rule("/_sandbox/switch-user", endpoint="switch_user"),
                Rule("/_sandbox/portal/<action>", endpoint="portal_action"),
                Rule("/_sandbox/frame/<action>", endpoint="frame_action"),
                Rule("/_sandbox/directory.json", endpoint="directory_json"),
                Rule("/_sandbox/deliveries", endpoint="deliveries"),
                Rule("/_sandbox/static/<name>", endpoint="static"),
            ],
            strict_slashes=False,
        )

    # --- WSGI plumbing -------------------------------------------------------------------

    def hub_app(self) -> WSGIApp:
        """The WSGI app of the hub (base port)."""
        return self._wsgi(self.hub_map, None)

    def portal_app(self, index: int) -> WSGIApp:
        """The WSGI app of portal number `index`."""
        return self._wsgi(self.portal_map, index)

    def _wsgi(self, url_map: Map, portal_index: int | None) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = Request(environ)
            try:
                endpoint, matched = url_map.bind_to_environ(environ).match()
                args = dict(matched)
                handler = getattr(self, f"view_{endpoint}")
                if portal_index is not None:
                    args["portal"] = self.sandbox.portal(portal_index)
                response: Response = handler(request, **args)
            except DropConnection:
                sock = environ.get("werkzeug.socket")
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                start_response("500 Dropped", [])
                return []
            except HTTPException as exc:
                response = exc.get_response(environ)
            body: Iterable[bytes] = response(environ, start_response)
            return body

        return app

    def _latency(self, portal: Portal | None) -> None:
        delay = float(self.sandbox.setting(portal, "latency_ms"))
        if delay > 0:
            time.sleep(delay / 1000)

    def _cors(self, request: Request, response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and origin == self.sandbox.app_origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
            response.headers["Access-Control-Max-Age"] = "600"
            response.headers["Vary"] = "Origin"
        return response

    # --- hub -----------------------------------------------------------------------------

    def view_hub_index(self, request: Request) -> Response:
        """Index page: the portals, the line codes, and where to look."""
        with self.sandbox.lock:
            snap = self.sandbox.snapshot()
        return _html("sandbox/hub_index.html", {"snap": snap, "sandbox": self.sandbox})

    def view_oauth_token(self, request: Request) -> Response:
        """`/oauth/token/`: authorization_code and refresh_token grants (spec §2, §8)."""
        self._latency(None)
        params = request_params(request)
        sb = self.sandbox

        def text(name: str) -> str:
            value = params.get(name)
            return value.strip() if isinstance(value, str) else ""

        grant, client_id, secret = text("grant_type"), text("client_id"), text("client_secret")
        if not grant or not client_id:
            return _oauth_error("invalid_request", "Required parameters are missing", 400)
        with sb.lock:
            if client_id != sb.client_id or secret != sb.client_secret:
                return _oauth_error("invalid_client", "Invalid client credentials", 401)
            now = sb.now()
            if grant == "authorization_code":
                code = text("code")
                if not code:
                    return _oauth_error("invalid_request", "Code is missing", 400)
                found: AuthCode | None = sb.codes.pop(code, None)
                if found is None or found.expires <= now:
                    return _oauth_error("invalid_grant", "Invalid authorization code", 400)
                portal, user_id = sb.portal(found.portal), found.user_id
            elif grant == "refresh_token":
                value = text("refresh_token")
                if not value:
                    return _oauth_error("invalid_request", "Refresh token is missing", 400)
                old = sb.refresh.get(value)
                if old is None or old.used or old.issued + REFRESH_TTL_S <= now:
                    return _oauth_error("invalid_grant", "Invalid refresh token", 400)
                # Single use: the rotated token is dead from now on (spec §2.2).
                old.used = True
                sb.dirty = True
                portal, user_id = sb.portal(old.portal), old.user_id
            else:
                return _oauth_error("invalid_request", "Unsupported grant_type", 400)
            if sb.setting(portal, "payment_required"):
                return _oauth_error("PAYMENT_REQUIRED", "Payment required", 402)
            return _json(sb.issue_tokens(portal, user_id))

    def _authenticate(self, portal: Portal | None, token: str) -> AccessToken:
        if not token:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        found = self.sandbox.access.get(token)
        if found is None or (portal is not None and found.portal != portal.index):
            raise RestError("invalid_token", "The access token provided is invalid", 401)
        if found.expires <= self.sandbox.now():
            raise RestError("expired_token", "The access token provided has expired", 401)
        return found

    def view_hub_rest(self, request: Request, method: str) -> Response:
        """The OAuth server's REST base: `app.info` only, answered for the token's portal."""
        if request.method == "OPTIONS":
            return self._cors(request, Response(status=204))
        self._latency(None)
        params = request_params(request)
        token = _take_token(request, params)
        name = rest.normalise_method(method)
        sb = self.sandbox
        try:
            with sb.lock:
                access = self._authenticate(None, token)
                if name != "app.info":
                    raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
                portal = sb.portal(access.portal)
                outcome, timing = rest.execute(sb, portal, access, name, params)
            return self._cors(request, _json({"result": outcome.result, "time": timing}))
        except RestError as exc:
            return self._cors(request, _rest_error(exc))

    def _require_loopback(self, request: Request) -> None:
        if not _is_loopback(request.remote_addr):
            raise NotFound()

    def view_control(self, request: Request) -> Response:
        """GET: the settings and state; POST: change settings, move the clock, run actions."""
        self._require_loopback(request)
        if request.method != "POST":
            with self.sandbox.lock:
                return _json(self.sandbox.snapshot())
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return _json({"ok": False, "error": "body must be JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"ok": False, "error": "body must be a JSON object"}, 400)
        try:
            return _json(self.control(body))
        except (SettingsError, lifecycle.InstallError, KeyError, LookupError) as exc:
            return _json({"ok": False, "error": str(exc)}, 400)

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply one control request (see the module docs of `b24app.sandbox`)."""
        sb = self.sandbox
        body = dict(body)
        reply: dict[str, Any] = {"ok": True}
        with sb.lock:
            portal = sb.portal(int(body.pop("portal"))) if body.get("portal") else None
            body.pop("portal", None)
            action = body.pop("action", None)
            user_id = int(body.pop("user", 1))
            clean = bool(body.pop("clean", False))
            install_if_needed = bool(body.pop("install_if_needed", False))
            if "app_url" in body:
                sb.app_url = str(body.pop("app_url")).rstrip("/")
            if "clock_offset_s" in body:
                sb.clock_offset = float(body.pop("clock_offset_s"))
            if "advance_s" in body:
                sb.clock_offset += float(body.pop("advance_s"))
            if body.pop("expire_tokens", False):
                reply["expired"] = sb.expire_tokens(portal)
            if body.pop("reset_limits", False):
                for p in [portal] if portal else list(sb.portals.values()):
                    p.bucket_level, p.operating = 0.0, {}
            sb.apply_settings(body, portal)
            if action:
                if portal is None:
                    portal = sb.portal(1)
                reply.update(self._action(action, portal, user_id, clean, install_if_needed))
            reply["state"] = sb.snapshot()
        return reply

    def _action(
        self, action: str, portal: Portal, user_id: int, clean: bool, install_if_needed: bool
    ) -> dict[str, Any]:
        sb = self.sandbox
        user = sb.user(portal, user_id)
        if user is None:
            raise LookupError(f"no user {user_id} on portal {portal.index}")
        if action == "issue_token":
            if portal.app_state == "none":
                if not install_if_needed:
                    raise lifecycle.InstallError(
                        f"the app is not installed on portal {portal.index}; run sandbox_install"
                    )
                admin = sb.user(portal, 1)
                assert admin is not None
                lifecycle.begin_install(sb, portal, admin)
                lifecycle.finish_install(sb, self.dispatcher, portal, admin)
            return {"token": sb.issue_tokens(portal, user.id)}
        if action == "begin_install":
            lifecycle.begin_install(sb, portal, user)
            return {"form": lifecycle.frame_form(sb, portal, user)}
        if action == "install_finish":
            return {"events_queued": lifecycle.finish_install(sb, self.dispatcher, portal, user)}
        if action == "install":
            lifecycle.begin_install(sb, portal, user)
            return {"events_queued": lifecycle.finish_install(sb, self.dispatcher, portal, user)}
        if action == "uninstall":
            return {
                "events_queued": lifecycle.uninstall(sb, self.dispatcher, portal, user, clean=clean)
            }
        if action == "bump_version":
            return {"events_queued": lifecycle.bump_version(sb, self.dispatcher, portal, user)}
        if action == "frame_form":
            return {"form": lifecycle.frame_form(sb, portal, user)}
        raise lifecycle.InstallError(f"unknown action {action!r}")

    def view_reset(self, request: Request) -> Response:
        """POST: back to a fresh sandbox (directory kept)."""
        self._require_loopback(request)
        if request.method != "POST":
            return _json({"ok": False, "error": "POST only"}, 405)
        self.dispatcher.clear()
        with self.sandbox.lock:
            self.sandbox.reset()
            return _json({"ok": True, "state": self.sandbox.snapshot()})

    def view_deliveries(self, request: Request, portal: Portal | None = None) -> Response:
        """Delivered messages, oldest first; `?member_id=`, `?since=<ISO 8601>`, `?after_id=`."""
        member_id = request.args.get("member_id") or (portal.member_id if portal else None)
        since_raw = request.args.get("since")
        after_id = int(request.args.get("after_id", "0") or 0)
        user_id = request.args.get("user_id")
        since = None
        if since_raw:
            try:
                since = datetime.fromisoformat(since_raw.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return _json({"error": "since must be ISO 8601"}, 400)
        with self.sandbox.lock:
            rows = [
                {k: v for k, v in d.items() if k != "ts"}
                for d in self.sandbox.deliveries
                if (member_id is None or d["member_id"] == member_id)
                and (since is None or d["ts"] > since)
                and d["id"] > after_id
                and (user_id is None or str(d["USER_ID"]) == user_id)
            ]
        return _json(rows)

    def view_event_log(self, request: Request) -> Response:
        """Every event POST attempted, with the handler's HTTP status."""
        with self.sandbox.lock:
            return _json(list(self.sandbox.event_log))

    def view_static(self, request: Request, name: str, portal: Portal | None = None) -> Response:
        """The portal's CSS/JS and the team's chat CSS."""
        entry = _STATIC_FILES.get(name)
        if entry is None:
            raise NotFound()
        path, mimetype = Path(settings.BASE_DIR) / "static" / entry[0], entry[1]
        if not path.exists():
            raise NotFound()
        response = Response(path.read_bytes(), mimetype=mimetype)
        response.headers["Cache-Control"] = "no-cache"
        return response

    # --- portal: REST --------------------------------------------------------------------

    def view_portal_rest(self, request: Request, method: str, portal: Portal) -> Response:
        """`/rest/<method>[.json]`: faults, limits, auth, then the method (spec §3, §4, §8)."""
        if request.method == "OPTIONS":
            return self._cors(request, Response(status=204))
        self._latency(portal)
        params = request_params(request)
        token = _take_token(request, params)
        name = rest.normalise_method(method)
        sb = self.sandbox
        drop_after = False
        try:
            with sb.lock:
                body = self._rest_call(portal, token, name, params)
                if self._stores(name, params) and self._fires(portal, "drop_after"):
                    drop_after = True
        except RestError as exc:
            return self._cors(request, _rest_error(exc))
        if drop_after:
            raise DropConnection()
        return self._cors(request, _json(body))

    @staticmethod
    def _stores(method: str, params: dict[str, Any]) -> bool:
        return method == rest.MESSAGE_ADD or (method == "batch" and rest.batch_has_message(params))

    def _fires(self, portal: Portal, fault: str) -> bool:
        sb = self.sandbox
        if sb.take_counter(portal, f"{fault}_next"):
            return True
        rate = float(sb.setting(portal, f"{fault}_rate"))
        return rate > 0 and self.random.random() < rate

    def _rest_call(
        self, portal: Portal, token: str, name: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        sb = self.sandbox
        if self._fires(portal, "error"):
            raise RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
        if sb.setting(portal, "portal_deleted"):
            raise RestError("PORTAL_DELETED", "Portal was deleted", 403)
        if not limits.bucket_take(
            portal,
            now=sb.now(),
            rate=float(sb.setting(portal, "rate")),
            burst=int(sb.setting(portal, "burst")),
        ):
            raise RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
        access = self._authenticate(portal, token)
        if sb.setting(portal, "payment_required"):
            raise RestError("PAYMENT_REQUIRED", "Payment required", 402)
        if not rest.method_exists(name):
            raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        if self._stores(name, params) and self._fires(portal, "drop_before"):
            raise DropConnection()
        if name == "batch":
            start = sb.now()
            result = rest.run_batch(sb, portal, access, params)
            # The outer batch is not counted in `operating` (spec §3.4).
            window = float(sb.setting(portal, "op_window_s"))
            return {"result": result, "time": rest.time_block(sb, start, 0, int(start + window))}
        outcome, timing = rest.execute(sb, portal, access, name, params)
        body: dict[str, Any] = {"result": outcome.result}
        if outcome.next is not None:
            body["next"] = outcome.next
        if outcome.total is not None:
            body["total"] = outcome.total
        body["time"] = timing
        return body

    # --- portal: pages -------------------------------------------------------------------

    @staticmethod
    def _cookie_name(portal: Portal) -> str:
        # Cookies ignore ports, so each portal on localhost needs its own name.
        return f"b24sandbox_user_{portal.port}"

    def _current_user(self, request: Request, portal: Portal) -> User:
        raw = request.cookies.get(self._cookie_name(portal), "1")
        user = portal.directory.user(int(raw)) if raw.isdigit() else None
        if user is None or not user.active:
            user = portal.directory.users[1]
        return user

    def _same_origin(self, request: Request, portal: Portal) -> None:
        origin = request.headers.get("Origin")
        if request.method != "POST" or (origin is not None and origin != portal.origin):
            raise NotFound()

    def _page_context(self, request: Request, portal: Portal, **extra: Any) -> dict[str, Any]:
        user = self._current_user(request, portal)
        switchable = [u for u in list(portal.directory.users.values())[:40] if u.active]
        return {
            "portal": portal,
            "user": user,
            "switchable": switchable,
            "sandbox": self.sandbox,
            "path": request.path,
            **extra,
        }

    def view_portal_home(self, request: Request, portal: Portal) -> Response:
        """The portal's start page with the app's status and admin buttons."""
        with self.sandbox.lock:
            context = self._page_context(request, portal, lines=PUBLISHED_LINES)
            return _html("sandbox/portal_home.html", context)

    def view_app_page(self, request: Request, app_id: int, portal: Portal) -> Response:
        """The app's page: installer or handler in an iframe opened by a form POST (spec §1.2)."""
        sb = self.sandbox
        with sb.lock:
            user = self._current_user(request, portal)
            form = None
            if portal.installed or (portal.app_state == "installing" and user.admin):
                form = lifecycle.frame_form(sb, portal, user)
            context = self._page_context(
                request, portal, form=form, form_json=json.dumps(form) if form else ""
            )
            return _html("sandbox/app_page.html", context)

    def view_employees(self, request: Request, portal: Portal) -> Response:
        """The company directory, 50 per page."""
        start = max(0, int(request.args.get("start", "0") or 0))
        with self.sandbox.lock:
            users = list(portal.directory.users.values())
            page = users[start : start + 50]
            depts = portal.directory.departments
            rows = [
                (u, ", ".join(depts[d].name for d in u.departments if d in depts)) for u in page
            ]
            context = self._page_context(
                request,
                portal,
                rows=rows,
                departments=sorted(depts.values(), key=lambda d: d.sort),
                prev=start - 50 if start else None,
                next=start + 50 if start + 50 < len(users) else None,
                total=len(users),
            )
            return _html("sandbox/employees.html", context)

    def view_authorize(self, request: Request, portal: Portal) -> Response:
        """`/oauth/authorize/`: 302 back to the app with a 30-second code, or an error page."""
        sb = self.sandbox
        with sb.lock:
            user = self._current_user(request, portal)
            context = self._page_context(request, portal)
            if request.args.get("client_id") != sb.client_id:
                context["error"] = "Application not found"
                return _html("sandbox/authorize_error.html", context)
            if not portal.installed:
                context["error"] = "The application is not installed on this portal"
                return _html("sandbox/authorize_error.html", context)
            code = "".join(self.random.choice("abcdef0123456789") for _ in range(32))
            sb.codes[code] = AuthCode(code, portal.index, user.id, sb.now() + CODE_TTL_S)
            query = {
                "code": code,
                "state": request.args.get("state", ""),
                "domain": portal.domain,
                "member_id": portal.member_id,
                "scope": sb.setting(portal, "scope"),
                "server_domain": sb.hub_domain,
            }
            location = f"{lifecycle.callback_url(sb)}?{urlencode(query)}"
        return Response(status=302, headers={"Location": location})

    def view_inbox(self, request: Request, portal: Portal, user_id: int | None = None) -> Response:
        """A user's chats with the network lines, each message drawn like the Bitrix chat."""
        sb = self.sandbox
        with sb.lock:
            viewer = self._current_user(request, portal)
            owner = portal.directory.user(user_id or viewer.id)
            if owner is None:
                raise NotFound()
            mine = [
                d
                for d in sb.deliveries
                if d["member_id"] == portal.member_id and d["USER_ID"] == owner.id
            ]
            context = self._page_context(request, portal, owner=owner)
        chats: dict[str, list[dict[str, Any]]] = {}
        for delivery in mine:
            chats.setdefault(delivery["CODE"], []).append(delivery)
        line = request.args.get("line") or (mine[-1]["CODE"] if mine else None)
        messages = []
        for delivery in chats.get(line or "", []):
            sent_at = datetime.fromtimestamp(delivery["ts"], tz=UTC)
            messages.append(
                {
                    "html": render.render_message(
                        message=delivery["MESSAGE"],
                        attach=delivery["ATTACH"],
                        keyboard=delivery["KEYBOARD"],
                        sent_at=sent_at,
                        base_url=portal.origin,
                    ),
                    "delivery": delivery,
                }
            )
        context.update(
            chats=[(code, len(items), items[-1]["delivered_at"]) for code, items in chats.items()],
            line=line,
            messages=messages,
        )
        return _html("sandbox/inbox.html", context)

    def view_switch_user(self, request: Request, portal: Portal) -> Response:
        """Switch the portal's current user (a cookie on the portal's own origin)."""
        self._same_origin(request, portal)
        user_id = request.form.get("user_id", "1")
        target = request.form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        response = Response(status=303, headers={"Location": target})
        if user_id.isdigit() and portal.directory.user(int(user_id)):
            response.set_cookie(self._cookie_name(portal), user_id, samesite="Lax", httponly=True)
        return response

    def view_portal_action(self, request: Request, action: str, portal: Portal) -> Response:
        """The portal's admin buttons: install, uninstall (with "clean"), bump version."""
        self._same_origin(request, portal)
        sb = self.sandbox
        try:
            with sb.lock:
                user = self._current_user(request, portal)
                if action == "install":
                    lifecycle.begin_install(sb, portal, user)
                    return Response(status=303, headers={"Location": f"/marketplace/app/{APP_ID}/"})
                if action == "uninstall":
                    clean = request.form.get("clean") in ("1", "on", "Y")
                    lifecycle.uninstall(sb, self.dispatcher, portal, user, clean=clean)
                elif action == "bump":
                    lifecycle.bump_version(sb, self.dispatcher, portal, user)
                else:
                    raise NotFound()
        except lifecycle.InstallError as exc:
            with sb.lock:
                context = self._page_context(request, portal, error=str(exc))
            return _html("sandbox/authorize_error.html", context, status=400)
        return Response(status=303, headers={"Location": "/"})

    def view_frame_action(self, request: Request, action: str, portal: Portal) -> Response:
        """Same-origin helpers behind the parent side of the frame protocol (spec §6.2)."""
        self._same_origin(request, portal)
        sb = self.sandbox
        try:
            payload = json.loads(request.get_data() or b"{}")
        except ValueError:
            payload = {}
        with sb.lock:
            user = self._current_user(request, portal)
            try:
                if action == "install-finish":
                    queued = lifecycle.finish_install(sb, self.dispatcher, portal, user)
                    return _json({"ok": True, "events_queued": queued})
                if portal.app_state == "none":
                    return _json({"ok": False, "error": "the app is not installed"}, 400)
                if action == "refresh-auth":
                    tokens = sb.issue_tokens(portal, user.id)
                    return _json(
                        {
                            "AUTH_ID": tokens["access_token"],
                            "REFRESH_ID": tokens["refresh_token"],
                            "AUTH_EXPIRES": str(tokens["expires_in"]),
                        }
                    )
                if action == "first-run":
                    portal.first_run = False
                    sb.dirty = True
                    return _json({"ok": True})
                if action in ("app-option", "user-option") and isinstance(payload, dict):
                    options = payload.get("options") or {}
                    if isinstance(options, dict):
                        target = (
                            portal.app_options
                            if action == "app-option"
                            else (portal.user_options.setdefault(str(user.id), {}))
                        )
                        target.update(options)
                        sb.dirty = True
                    return _json({"ok": True})
            except lifecycle.InstallError as exc:
                return _json({"ok": False, "error": str(exc)}, 400)
        raise NotFound()

    def view_directory_json(self, request: Request, portal: Portal) -> Response:
        """Active employees for the selectUser picker; `?q=` filters by name, e-mail, position."""
        terms = (request.args.get("q") or "").casefold().split()
        rows = []
        with self.sandbox.lock:
            depts = portal.directory.departments
            for user in portal.directory.users.values():
                if not user.active or user.user_type != "employee":
                    continue
                hay = f"{user.name} {user.last_name} {user.email} {user.position}".casefold()
                if all(t in hay for t in terms):
                    rows.append(
                        {
                            "id": str(user.id),
                            "name": user.full_name,
                            "photo": "",
                            "position": user.position,
                            "department": ", ".join(
                                depts[d].name for d in user.departments if d in depts
                            ),
                            "url": f"/company/personal/user/{user.id}/",
                            "sub": False,
                            "sup": False,
                        }
                    )
                if len(rows) >= 50:
                    break
        return _json(rows)
