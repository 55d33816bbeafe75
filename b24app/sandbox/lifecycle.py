"""The app's life on a portal: install, installFinish, uninstall, version bump, and the frame POST.

The faux portal's buttons and the control API (used by `sandbox_install` and tests) call the same
functions, so the headless flow is the browser flow minus the browser. Callers hold the lock.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from b24app.sandbox import events
from b24app.sandbox.directory import User
from b24app.sandbox.state import APP_STATUS, Portal, Sandbox

__all__ = [
    "InstallError",
    "begin_install",
    "bump_version",
    "finish_install",
    "frame_form",
    "install_url",
    "handler_url",
    "uninstall",
]

INSTALL_PATH = "/b24/install/"
HANDLER_PATH = "/b24/app/"
CALLBACK_PATH = "/b24/oauth/callback/"


class InstallError(ValueError):
    """The lifecycle step is not possible in the portal's current state or for this user."""


def install_url(sandbox: Sandbox) -> str:
    """The app's installer URL (what the version card calls "Application installer URL")."""
    return sandbox.app_url + INSTALL_PATH


def handler_url(sandbox: Sandbox) -> str:
    """The app's main page URL ("Application Link")."""
    return sandbox.app_url + HANDLER_PATH


def callback_url(sandbox: Sandbox) -> str:
    """Where /oauth/authorize/ sends the browser back (the app card's redirect URL)."""
    return sandbox.app_url + CALLBACK_PATH


def _require_admin(user: User) -> None:
    if not user.admin:
        raise InstallError("only an administrator can do this")


def begin_install(sandbox: Sandbox, portal: Portal, user: User) -> None:
    """An admin pressed Install: the app is registered (tokens work) but not installed yet."""
    _require_admin(user)
    if portal.app_state == "installed":
        raise InstallError("the app is already installed; uninstall it first")
    if portal.app_state == "none":
        portal.application_token = secrets.token_hex(16)
        portal.first_run = True
    portal.app_state = "installing"
    portal.install_user = user.id
    sandbox.dirty = True


def finish_install(
    sandbox: Sandbox, dispatcher: events.EventDispatcher, portal: Portal, user: User
) -> int:
    """The frame called installFinish: installed; ONAPPINSTALL queued (returns handler count)."""
    if portal.app_state != "installing":
        raise InstallError("the app is not being installed")
    _require_admin(user)
    portal.app_state = "installed"
    sandbox.dirty = True
    tokens = sandbox.issue_tokens(portal, user.id)
    return dispatcher.send(
        portal, "ONAPPINSTALL", events.install_payload(sandbox, portal, tokens, user.lang)
    )


def uninstall(
    sandbox: Sandbox, dispatcher: events.EventDispatcher, portal: Portal, user: User, *, clean: bool
) -> int:
    """Remove the app: ONAPPUNINSTALL to bound handlers, then every token and handler is gone."""
    _require_admin(user)
    if portal.app_state == "none":
        raise InstallError("the app is not installed")
    sent = 0
    if portal.installed:
        sent = dispatcher.send(
            portal, "ONAPPUNINSTALL", events.uninstall_payload(sandbox, portal, user.lang, clean)
        )
    sandbox.revoke_portal_tokens(portal)
    portal.handlers = []
    portal.app_state = "none"
    portal.application_token = ""
    if clean:
        portal.app_options = {}
        portal.user_options = {}
    sandbox.dirty = True
    return sent


def bump_version(
    sandbox: Sandbox, dispatcher: events.EventDispatcher, portal: Portal, user: User
) -> int:
    """A new app version reached the portal: ONAPPUPDATE with a new application_token."""
    _require_admin(user)
    if not portal.installed:
        raise InstallError("the app is not installed")
    previous = portal.version
    portal.version += 1
    portal.application_token = secrets.token_hex(16)
    sandbox.dirty = True
    tokens = sandbox.issue_tokens(portal, user.id)
    return dispatcher.send(
        portal, "ONAPPUPDATE", events.update_payload(sandbox, portal, tokens, user.lang, previous)
    )


def frame_form(sandbox: Sandbox, portal: Portal, user: User) -> dict[str, Any]:
    """The form the portal posts into the app's iframe (spec §1.2), plus the getInitData answer.

    The installer URL while installing, the handler URL once installed. Fresh tokens for `user`
    and a fresh APP_SID on every render, as Bitrix does.
    """
    if portal.app_state == "none":
        raise InstallError("the app is not installed")
    installing = portal.app_state == "installing"
    app_sid = secrets.token_hex(16)
    tokens = sandbox.issue_tokens(portal, user.id)
    query = urlencode(
        {"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": user.lang, "APP_SID": app_sid}
    )
    base = install_url(sandbox) if installing else handler_url(sandbox)
    fields: dict[str, str] = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": str(tokens["expires_in"]),
        "REFRESH_ID": tokens["refresh_token"],
    }
    old_portal = bool(sandbox.setting(portal, "old_portal"))
    if not old_portal:
        fields["SERVER_ENDPOINT"] = sandbox.server_endpoint
    fields["member_id"] = portal.member_id
    fields["status"] = APP_STATUS
    fields["PLACEMENT"] = "DEFAULT"
    # PLACEMENT_OPTIONS is emitted only when non-empty, so never for DEFAULT (spec §1.2).
    if not old_portal:
        fields["APPLICATION_TOKEN"] = portal.application_token
        fields["APPLICATION_SCOPE"] = tokens["scope"]
    init = {
        "DOMAIN": portal.domain,
        "PROTOCOL": "0",
        "PATH": "/rest/",
        "LANG": user.lang,
        "MEMBER_ID": portal.member_id,
        "IS_ADMIN": user.admin,
        "AUTH_ID": tokens["access_token"],
        "REFRESH_ID": tokens["refresh_token"],
        "AUTH_EXPIRES": str(tokens["expires_in"]),
        "APP_OPTIONS": dict(portal.app_options),
        "USER_OPTIONS": dict(portal.user_options.get(str(user.id), {})),
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": {},
        "INSTALL": installing,
        "FIRST_RUN": portal.first_run,
    }
    return {
        "url": f"{base}?{query}",
        "fields": fields,
        "app_sid": app_sid,
        # The iframe's name pairs the frame with the parent: "<DOMAIN>|<1 or 0>|<APP_SID>".
        "target": f"{portal.domain}|0|{app_sid}",
        "install": installing,
        "init": init,
        "app_origin": sandbox.app_origin,
    }
