"""Friendly, translated sentences for Bitrix24 error codes, for people to read.

One table for the whole app: the composer, campaign pages, the admin status page and the install
and entry refusals all explain a Bitrix24 error with `error_text(code)` and show the code beside
it (`error_label(code)` does both: "The open line is inactive (INACTIVE)."). Bitrix's own
`error_description` stays what the logs and the raw reply show; it is English only and often
cryptic ("Message isn't added"), so it is never the main text on a page.

Covered: the OAuth server's errors (spec §2.3), the REST system errors (§3.3), every error of
`imopenlines.network.message.add` and `imopenlines.network.join` (§5.3, §5.8) including the
names the old documentation used (`CODE_ERROR`, `KEYBOARD_OVERSIZE`), the synthetic codes of
`b24app.bitrix.errors` (`NETWORK`, `MALFORMED_REPLY`, `HTTP_<status>` …) and the app's own codes
that reach a page (`AUTH_FAILED`, `UNINSTALLED`, `RETRIES_EXHAUSTED` …). Any other code gets a
generic sentence, so a page never shows a bare code.

`b24app.bitrix` stays free of Django translations; this module is where its codes meet words.
"""

from __future__ import annotations

import re

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

__all__ = ["ERROR_TEXTS", "code_of", "error_label", "error_text", "is_known"]

#: code -> friendly sentence. Keys are spelt exactly as Bitrix sends them: OAuth codes are lower
#: case, and `invalid_request` (OAuth) is not `INVALID_REQUEST` (REST over plain HTTP).
ERROR_TEXTS: dict[str, Promise] = {
    # --- OAuth server (spec §2.3) ---------------------------------------------------------
    "invalid_request": _("The Bitrix24 authorization server refused a malformed request."),
    "invalid_client": _(
        "Bitrix24 does not recognise the app: it is not installed on this Bitrix24, or the "
        "app's credentials are wrong."
    ),
    "invalid_grant": _(
        "Bitrix24 no longer accepts the app's access. To reconnect it, an administrator must "
        "open the app again or reinstall it."
    ),
    "invalid_scope": _(
        "The app asked for a permission that is not in its Bitrix24 Market listing."
    ),
    "insufficient_scope": _(
        "The app lacks a permission it needs. Reinstall the app to grant that permission."
    ),
    "PAYMENT_REQUIRED": _(
        "The app's trial or paid period has ended. Renew the subscription in Bitrix24 Market."
    ),
    # --- REST system errors (spec §3.3) ---------------------------------------------------
    "expired_token": _("The app's access token has expired; the app renews it by itself."),
    "invalid_token": _("Bitrix24 did not accept the app's access token; it may have been revoked."),
    "NO_AUTH_FOUND": _("The request reached Bitrix24 without authorization data."),
    "METHOD_CONFIRM_WAITING": _(
        "This method is waiting for a Bitrix24 administrator to confirm it."
    ),
    "METHOD_CONFIRM_DENIED": _("A Bitrix24 administrator did not allow this method."),
    "ACCESS_DENIED": _("REST API is available only on commercial Bitrix24 plans."),
    "INVALID_CREDENTIALS": _("Bitrix24 refused the request's credentials."),
    "user_access_error": _(
        "This user has no access to the app. An administrator can grant it in the app "
        "settings in Bitrix24."
    ),
    "WRONG_AUTH_TYPE": _("This method cannot be called with the portal's session sign-in."),
    "ERROR_METHOD_NOT_FOUND": _(
        "Bitrix24 does not know this method: the module it belongs to may be missing."
    ),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": _("The manifest is not available."),
    "INVALID_REQUEST": _("Bitrix24 accepts REST requests over HTTPS only."),
    "ERROR_BATCH_LENGTH_EXCEEDED": _(
        "Too many commands in one batch request: at most 50 are allowed."
    ),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": _("This method cannot be called inside a batch request."),
    "OPERATION_TIME_LIMIT": _(
        "Bitrix24 has paused this method for a while: its execution time limit is used up. "
        "The app will try again later."
    ),
    "QUERY_LIMIT_EXCEEDED": _(
        "Too many requests to Bitrix24 at once. The app will try again shortly."
    ),
    "OVERLOAD_LIMIT": _(
        "Bitrix24 support has blocked REST API access for this Bitrix24 because of overload."
    ),
    "INTERNAL_SERVER_ERROR": _("An internal error occurred in Bitrix24. Try again later."),
    "ERROR_UNEXPECTED_ANSWER": _("Bitrix24 returned an unexpected response. Try again later."),
    "PORTAL_DELETED": _("This Bitrix24 has been deleted or closed."),
    "APPLICATION_NOT_FOUND": _("The app is not installed on this Bitrix24 or is turned off."),
    "CONNECTION_ERROR": _(
        "Bitrix24 could not reach its authorization server. The app will try again."
    ),
    "authorization_error": _("Bitrix24 could not sign the user in."),
    # --- imopenlines.network.message.add and .join (spec §5.3, §5.8) ---------------------
    "CODE": _("The open line code is not valid: it must be 32 characters long."),
    "IMBOT_ERROR": _("The chat bots module (imbot) is not installed on this Bitrix24."),
    "NOT_FOUND": _(
        "The open line was not found or is not joined on this Bitrix24. An administrator can "
        "join it again."
    ),
    "INACTIVE": _("The open line is inactive: its owner must turn it on."),
    "USER_ID_EMPTY": _("No recipient is chosen."),
    "USER_MESSAGE_LIMIT": _(
        "This person was already messaged from this open line in the last 7 days: Bitrix24 "
        "allows one message a week."
    ),
    "MESSAGE_EMPTY": _("The message text is empty."),
    "ATTACH_OVERSIZE": _("The attachment is too large."),
    "ATTACH_ERROR": _("Bitrix24 could not read the attachment."),
    "KEYBOARD_ERROR": _(
        "Bitrix24 could not read the keyboard: it needs at least one valid link button."
    ),
    "KEYBOARD_OVERSIZE": _("The keyboard is too large."),
    "WRONG_REQUEST": _(
        "Bitrix24 did not add the message: the recipient may not exist or may be inactive."
    ),
    # --- b24app.bitrix's own codes for failures without a Bitrix error ---------------------
    "NETWORK": _("Bitrix24 could not be reached."),
    "MALFORMED_REPLY": _("Bitrix24 sent a reply the app could not read."),
    "INVALID_URL": _("The Bitrix24 address is not valid."),
    # --- the app's codes that reach a page --------------------------------------------------
    "AUTH_FAILED": _(
        "Bitrix24 stopped accepting the app's connection. An administrator must open the "
        "app to reconnect it."
    ),
    "UNINSTALLED": _("The app was uninstalled from this Bitrix24."),
    "NOT_INSTALLED": _("The app is not installed on this Bitrix24."),
    "RETRIES_EXHAUSTED": _(
        "Bitrix24 kept refusing the messages for now because of its rate or time limits."
    ),
    "LINE_NOT_JOINED": _("The open line could not be joined on this Bitrix24."),
    "INVALID_SNAPSHOT": _("The message cannot be sent as it is."),
}

# Names from older documentation that mean the same as a current code.
_ALIASES = {"CODE_ERROR": "CODE"}

_GENERIC = _("Bitrix24 returned an error.")

_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _known(code: str) -> str | None:
    """The table key for `code`: exact, then an old alias, then ignoring case and spaces."""
    if code in ERROR_TEXTS:
        return code
    cleaned = code.strip()
    cleaned = _ALIASES.get(cleaned.upper(), cleaned)
    if cleaned in ERROR_TEXTS:
        return cleaned
    folded = [key for key in ERROR_TEXTS if key.lower() == cleaned.lower()]
    return folded[0] if len(folded) == 1 else None


def is_known(code: str) -> bool:
    """True when `code` has its own sentence (otherwise `error_text` is the generic one)."""
    return _known(code or "") is not None


def error_text(code: str) -> str:
    """The friendly sentence for a Bitrix24 error code, in the active language."""
    key = _known(code or "")
    return str(ERROR_TEXTS[key]) if key is not None else str(_GENERIC)


def error_label(code: str) -> str:
    """`error_text` with the code beside it: "The open line is inactive (INACTIVE)."."""
    text = error_text(code)
    code = (code or "").strip()
    if not code:
        return text
    if text.endswith("."):
        return f"{text[:-1]} ({code})."
    return f"{text} ({code})"


def code_of(stored: str) -> str:
    """The code at the start of a stored error such as "NOT_FOUND: Line not found"."""
    match = _CODE_RE.match((stored or "").strip())
    return match.group(0) if match else ""
