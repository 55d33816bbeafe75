"""Message payloads for `imopenlines.network.message.add`: rules, policy and builders.

Pure module: no ORM, no HTTP, and no Django beyond lazy translations. Three layers:

1. The Bitrix server's own rules (spec §5.2-§5.7), reproduced closely enough that the local
   sandbox portal imports this module and answers exactly like a real portal would:
   `server_accept`, `parse_attach`, `parse_keyboard`, `attach_size`.
2. The app's stricter policy on top (`validate_params`): 30 000-byte caps measured with the
   older byte-counting rule, link-only keyboards, and nothing that any server version would
   silently drop. Whatever it accepts, every server version accepts.
3. Typed, frozen builder objects for the composer (`Attach`, blocks, `Keyboard`, buttons,
   `Payload`) with `to_bitrix()` / `from_bitrix()`.

Server behaviour is described from the PHP source (`Rest::networkMessageAdd`,
`CIMMessageParamAttach`, `Im\\Bot\\Keyboard`, newest release) as summarised in the spec; where
PHP's loose typing matters (`isset`, `empty`, `intval`, `==` against a literal) the helpers
below reproduce it, because the sandbox must refuse and accept exactly what a portal does.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "ATTACH_SIZE_LIMIT",
    "POLICY_SIZE_LIMIT",
    "SERVER_ERRORS",
    "ServerMessage",
    "ServerRefusal",
    "attach_size",
    "canonical_error_code",
    "parse_attach",
    "parse_keyboard",
    "server_accept",
    "server_refusal",
]

SizeRule: TypeAlias = Literal["chars", "bytes"]

#: The server refuses a normalised ATTACH whose JSON is this long or longer (spec §5.5).
ATTACH_SIZE_LIMIT = 60_000
#: The app's own cap for ATTACH and KEYBOARD, in bytes under the older rule (RU docs' "30 KB").
POLICY_SIZE_LIMIT = 30_000

#: error -> error_description, exactly as the server words them (spec §5.3).
SERVER_ERRORS: dict[str, str] = {
    "WRONG_AUTH_TYPE": "Access for this method not allowed by session authorization.",
    "CODE": "You entered an invalid code",
    "IMBOT_ERROR": "Module IMBOT is not installed",
    "NOT_FOUND": "Line not found",
    "USER_ID_EMPTY": "User ID can't be empty",
    "USER_MESSAGE_LIMIT": "You cant send more than one message per week to each user.",
    "MESSAGE_EMPTY": "Message can't be empty",
    "ATTACH_OVERSIZE": "You have exceeded the maximum allowable size of attach",
    "ATTACH_ERROR": "Incorrect attach params",
    "KEYBOARD_ERROR": "Incorrect keyboard params",
    "WRONG_REQUEST": "Message isn't added",
}

# Older names seen on the old RU method page (seed) -> the codes the server really sends.
_LEGACY_CODES = {"CODE_ERROR": "CODE"}

# ---------------------------------------------------------------------------------------------
# Layer 1: the server's rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRefusal:
    """What the portal answers instead of `{"result": true}`."""

    code: str
    description: str
    status: int = 400


@dataclass(frozen=True)
class ServerMessage:
    """A message the portal accepted, with ATTACH and KEYBOARD as the server stores them."""

    code: str
    user_id: int
    message: str
    attach: dict[str, Any] | None
    keyboard: dict[str, Any] | None
    url_preview: bool


def server_refusal(code: str) -> ServerRefusal:
    """The refusal for a known server error code, with its exact description and status."""
    status = 403 if code == "WRONG_AUTH_TYPE" else 400
    return ServerRefusal(code=code, description=SERVER_ERRORS[code], status=status)


def canonical_error_code(code: str) -> str:
    """Map an error code from a reply (or from old docs) onto the code the app works with.

    The seed's `CODE_ERROR` becomes `CODE`; `KEYBOARD_OVERSIZE` (seed only, never sent by the
    server) stays as the app's own keyboard-cap code. Stray whitespace and case are ignored
    (the seed table spells `ATTACH_ERROR ` with a trailing space).
    """
    cleaned = code.strip().upper()
    return _LEGACY_CODES.get(cleaned, cleaned)


# --- PHP semantics ----------------------------------------------------------------------------

# PHP's trim() strips only these, not every Unicode space.
_PHP_TRIM = " \t\n\r\0\x0b"
# preg_replace('/\R/u', ' ', ...): any line-break sequence, CRLF counted once.
_NEWLINE_RE = re.compile("\r\n|[\n\x0b\x0c\r\x85\u2028\u2029]")
# The server's URL test: preg_match('#^(?:/|https?://)#', ...), case-sensitive.
_URL_RE = re.compile(r"(?:/|https?://)")
# The server's colour test: #RGB or #RRGGBB.
_COLOR_RE = re.compile(r"#[a-fA-F0-9]{3}(?:[a-fA-F0-9]{3})?")
# A numeric prefix as PHP's (int) cast reads it from a string.
_NUMERIC_PREFIX_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")
# Array keys PHP turns into integers.
_INT_KEY_RE = re.compile(r"0|-?[1-9][0-9]*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 256


def _phpify(value: Any, depth: int = 0) -> Any:
    """Turn decoded request data into the shape PHP sees.

    A PHP array is both a list and a map: form-encoded `A[0]=x&A[1]=y` and JSON `{"0": x}`
    both arrive as integer-keyed arrays, so a dict whose keys are all integers is read as a
    list in key order. Types JSON cannot carry become null.
    """
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        items = [(_php_key(k), _phpify(v, depth + 1)) for k, v in value.items()]
        if all(isinstance(k, int) for k, _v in items):
            return [v for _k, v in items]
        return {str(k): v for k, v in items}
    if isinstance(value, list | tuple):
        return [_phpify(v, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return None


def _php_key(key: Any) -> int | str:
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    text = str(key)
    return int(text) if _INT_KEY_RE.fullmatch(text) else text


def _isset(container: Any, key: str) -> bool:
    return isinstance(container, dict) and container.get(key) is not None


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, dict) else None


def _empty(value: Any) -> bool:
    """PHP empty(): null, false, 0, 0.0, "", "0" and empty arrays."""
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list | dict):
        return not value
    return False


def _eq(value: Any, literal: str) -> bool:
    """PHP 8 `$value == 'LITERAL'` for a non-numeric, non-empty literal.

    Only an equal string or `true` (the literal is truthy) compares equal.
    """
    return value is True or (isinstance(value, str) and value == literal)


def _in(value: Any, literals: Iterable[str]) -> bool:
    """PHP in_array() with loose comparison against non-numeric literals."""
    return any(_eq(value, lit) for lit in literals)


def _php_str(value: Any) -> str:
    """String conversion as trim()/preg_replace() apply it to their argument."""
    if isinstance(value, str):
        return value
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float_str(value)
    # An array: PHP 8 throws a TypeError, PHP 7 returned null; both leave nothing usable.
    return ""


def _php_float_str(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    text = f"{value:.14G}"
    if "E" in text:
        mantissa, exponent = text.split("E")
        if "." not in mantissa:
            mantissa += ".0"
        sign = exponent[0]
        text = f"{mantissa}E{sign}{int(exponent[1:])}"
    return text


def _trim(value: Any) -> str:
    return _php_str(value).strip(_PHP_TRIM)


def _no_newlines(text: str) -> str:
    return _NEWLINE_RE.sub(" ", text)


def _intval(value: Any) -> int:
    """PHP (int) / intval()."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _wrap64(value)
    if isinstance(value, float):
        return _wrap64(int(value)) if math.isfinite(value) else 0
    if isinstance(value, str):
        match = _NUMERIC_PREFIX_RE.match(value)
        if not match:
            return 0
        number = match.group(1)
        if re.fullmatch(r"[+-]?\d+", number):
            return max(_INT64_MIN, min(_INT64_MAX, int(number)))
        as_float = float(number)
        if math.isinf(as_float):
            return _INT64_MAX if as_float > 0 else _INT64_MIN
        return max(_INT64_MIN, min(_INT64_MAX, int(as_float)))
    if isinstance(value, list | dict):
        return 1 if value else 0
    return 0


def _wrap64(number: int) -> int:
    return (number - _INT64_MIN) % 2**64 + _INT64_MIN


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and _URL_RE.match(value) is not None


def _is_color(value: Any) -> bool:
    return isinstance(value, str) and _COLOR_RE.fullmatch(value) is not None


def _html_escape(text: str) -> str:
    """htmlspecialcharsbx() with its default ENT_COMPAT: single quotes stay."""
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _foreach(value: Any) -> list[Any]:
    """The values PHP's foreach visits; a scalar yields none (PHP only warns)."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return []


# --- lenient decoding of JSON strings (CUtil::JsObjectToPhp) ---------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _strict_json(text: str) -> tuple[bool, Any]:
    """json_decode($text, true): (ok, value). NaN/Infinity and deep nesting fail as in PHP."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _decode_js(text: str) -> Any:
    """Decode an ATTACH string the way Bitrix does: JSON first, then a JS-object-literal parser.

    The fallback accepts unquoted keys, single-quoted strings, bare words and trailing commas.
    Anything it cannot read gives None (the server then answers ATTACH_ERROR).
    """
    ok, value = _strict_json(text)
    if ok and value is not None:
        return value
    return _JsLiteralParser(text).parse()


class _JsLiteralParser:
    _STOP = frozenset(",:]}")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Any:
        self._skip()
        if self.pos >= len(self.text) or self.text[self.pos] not in "{[":
            return None
        try:
            value = self._value(0)
        except (ValueError, IndexError, RecursionError):
            return None
        self._skip()
        return value if self.pos == len(self.text) else None

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("too deep")
        self._skip()
        char = self.text[self.pos]
        if char == "{":
            return self._object(depth)
        if char == "[":
            return self._array(depth)
        if char in "\"'":
            return self._string()
        return self._bare()

    def _object(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self._skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return result
            key = self._string() if self.text[self.pos] in "\"'" else self._bare_word()
            self._skip()
            if self.text[self.pos] != ":":
                raise ValueError("colon expected")
            self.pos += 1
            result[str(key)] = self._value(depth + 1)
            self._separator("}")

    def _array(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        while True:
            self._skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return result
            result.append(self._value(depth + 1))
            self._separator("]")

    def _separator(self, closer: str) -> None:
        self._skip()
        char = self.text[self.pos]
        if char == ",":
            self.pos += 1
        elif char != closer:
            raise ValueError("separator expected")

    def _string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while True:
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                escaped = self.text[self.pos]
                if escaped == "u":
                    out.append(chr(int(self.text[self.pos + 1 : self.pos + 5], 16)))
                    self.pos += 4
                else:
                    out.append(
                        {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(
                            escaped, escaped
                        )
                    )
            else:
                out.append(char)
            self.pos += 1

    def _bare_word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in self._STOP:
            self.pos += 1
        word = self.text[start : self.pos].strip()
        if not word:
            raise ValueError("empty word")
        return word

    def _bare(self) -> Any:
        word = self._bare_word()
        if word == "true":
            return True
        if word == "false":
            return False
        if word == "null":
            return None
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        try:
            return float(word)
        except ValueError:
            return word


# --- ATTACH normalisation (CIMMessageParamAttach::GetAttachByJson) ----------------------------


def _random_color() -> str:
    return f"#{random.randrange(0x1000000):06x}"


def parse_attach(
    value: Any, now: int | None = None, *, random_color: Callable[[], str] | None = None
) -> dict[str, Any] | None:
    """Normalise ATTACH like the server; None when nothing usable is left (ATTACH_ERROR).

    `value` is an object (full form), a list of blocks (short form) or a JSON string of either.
    The result is `{"ID": now, "BLOCKS": [...], "DESCRIPTION": "...", "COLOR"?: "..."}`: the
    caller's ID is ignored, blocks and fields failing their rules are dropped, defaults filled.
    `random_color` replaces an invalid COLOR (the server picks a random one).
    """
    data = _phpify(value)
    if isinstance(data, str):
        data = _phpify(_decode_js(data))
    if not isinstance(data, dict | list):
        return None

    color: Any = "CHAT"  # the server's marker for "no colour of its own"
    if isinstance(data, dict) and _isset(data, "BLOCKS"):
        blocks = data["BLOCKS"]
        if _isset(data, "COLOR"):
            color = data["COLOR"]
    else:
        blocks = data

    result: dict[str, Any] = {
        "ID": int(time.time()) if now is None else now,
        "BLOCKS": [],
        "DESCRIPTION": "",
    }
    if _eq(color, "TRANSPARENT"):
        result["COLOR"] = "transparent"
    elif not _eq(color, "CHAT"):
        result["COLOR"] = color if _is_color(color) else (random_color or _random_color)()

    for block in _foreach(blocks):
        _add_block(result, block)
    return result if result["BLOCKS"] else None


def _add_block(result: dict[str, Any], data: Any) -> None:
    # Dispatch by the first known key present, in the server's order; other keys are ignored.
    blocks: list[dict[str, Any]] = result["BLOCKS"]
    if _isset(data, "USER"):
        for item in _one_or_many(data["USER"]):
            _append(blocks, "USER", _server_user(item), wrap=True)
    elif _isset(data, "LINK"):
        for item in _one_or_many(data["LINK"]):
            _append(blocks, "LINK", _server_link(item), wrap=True)
    elif _isset(data, "RICH_LINK"):
        for item in _one_or_many(data["RICH_LINK"]):
            _append(blocks, "RICH_LINK", _server_rich_link(item), wrap=True)
    elif _isset(data, "MESSAGE"):
        message = data["MESSAGE"]
        as_description = False
        if isinstance(message, dict) and _isset(message, "TEXT"):
            as_description = message.get("AS_DESCRIPTION") == "Y"
            message = message["TEXT"]
        text = _server_message_text(message)
        if text is not None:
            if as_description:
                result["DESCRIPTION"] = text
            blocks.append({"MESSAGE": text})
    elif _isset(data, "GRID"):
        _append(blocks, "GRID", _server_grid(data["GRID"]))
    elif _isset(data, "IMAGE"):
        _append(blocks, "IMAGE", _server_items(data["IMAGE"], _server_image))
    elif _isset(data, "FILE"):
        _append(blocks, "FILE", _server_items(data["FILE"], _server_file))
    elif _isset(data, "DELIMITER"):
        blocks.append({"DELIMITER": _server_delimiter(data["DELIMITER"])})


def _append(blocks: list[dict[str, Any]], kind: str, body: Any, *, wrap: bool = False) -> None:
    if body:
        blocks.append({kind: [body] if wrap else body})


def _one_or_many(value: Any) -> list[Any]:
    # USER, LINK and RICH_LINK: a list of objects becomes one block per object.
    return value if isinstance(value, list) else [value]


def _server_message_text(message: Any) -> str | None:
    if isinstance(message, list | dict):
        return None
    text = _trim(message)
    return text.replace("#BR#", "[BR]") if text != "" else None


def _network_id(value: Any) -> str:
    text = _php_str(value)
    return _html_escape(text[:1]) + str(_intval(text[1:]))


def _entity_link(params: dict[str, Any], out: dict[str, Any]) -> bool:
    """LINK / RICH_LINK: an entity id with NAME, or a valid LINK; fills the id field."""
    has_name = _isset(params, "NAME")
    if _isset(params, "NETWORK_ID") and has_name:
        out["NETWORK_ID"] = _network_id(params["NETWORK_ID"])
    elif _isset(params, "USER_ID") and _intval(params["USER_ID"]) > 0 and has_name:
        out["USER_ID"] = _intval(params["USER_ID"])
    elif _isset(params, "CHAT_ID") and _intval(params["CHAT_ID"]) > 0 and has_name:
        out["CHAT_ID"] = _intval(params["CHAT_ID"])
    elif not _is_url(_get(params, "LINK")):
        return False
    return True


def _server_link(params: Any) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    out: dict[str, Any] = {}
    if not _entity_link(params, out):
        return None
    if _isset(params, "NAME"):
        out["NAME"] = _no_newlines(_trim(params["NAME"]))
    if _isset(params, "LINK"):
        out["LINK"] = params["LINK"]
    if _isset(params, "DESC"):
        out["DESC"] = params["DESC"]
    if _isset(params, "HTML"):
        out["HTML"] = params["HTML"]
    elif _is_url(params.get("PREVIEW")):
        out["PREVIEW"] = params["PREVIEW"]
        _copy_positive(params, out, "WIDTH", "HEIGHT")
    return out


def _server_rich_link(params: Any) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    out: dict[str, Any] = {}
    if not _entity_link(params, out):
        return None
    if _isset(params, "NAME"):
        out["NAME"] = _no_newlines(_trim(params["NAME"]))
    if _isset(params, "LINK"):
        out["LINK"] = params["LINK"]
    for key in ("DESC", "HTML"):
        if _isset(params, key):
            out[key] = _no_newlines(_trim(params[key]))
    if _is_url(params.get("PREVIEW")):
        out["PREVIEW"] = params["PREVIEW"]
    elif _is_url(params.get("EXTRA_IMAGE")):
        out["EXTRA_IMAGE"] = params["EXTRA_IMAGE"]
    return out


def _server_user(params: Any) -> dict[str, Any] | None:
    if not _isset(params, "NAME") or _trim(params["NAME"]) == "":
        return None
    out: dict[str, Any] = {"NAME": _no_newlines(_php_str(params["NAME"])), "AVATAR_TYPE": "USER"}
    if _isset(params, "NETWORK_ID"):
        out["NETWORK_ID"] = _network_id(params["NETWORK_ID"])
    elif _isset(params, "USER_ID") and _intval(params["USER_ID"]) > 0:
        out["USER_ID"] = _intval(params["USER_ID"])
    elif _isset(params, "CHAT_ID") and _intval(params["CHAT_ID"]) > 0:
        out["CHAT_ID"] = _intval(params["CHAT_ID"])
        out["AVATAR_TYPE"] = "CHAT"
    elif _isset(params, "BOT_ID") and _intval(params["BOT_ID"]) > 0:
        out["BOT_ID"] = _intval(params["BOT_ID"])
        out["AVATAR_TYPE"] = "BOT"
    elif _is_url(params.get("LINK")):
        out["LINK"] = params["LINK"]
    if _is_url(params.get("AVATAR")):
        out["AVATAR"] = params["AVATAR"]
    if _isset(params, "AVATAR_TYPE") and _in(params["AVATAR_TYPE"], ("CHAT", "USER", "BOT")):
        out["AVATAR_TYPE"] = params["AVATAR_TYPE"]
    return out


def _server_grid(value: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for grid in _foreach(value):
        if not isinstance(grid, dict):
            continue
        display = grid.get("DISPLAY")
        if not _eq(display, "LINE"):
            name, val = grid.get("NAME"), grid.get("VALUE")
            if (name is None and val is None) or (_trim(name) == "" and _trim(val) == ""):
                continue
        out: dict[str, Any] = {}
        if display is not None and _in(
            display, ("BLOCK", "LINE", "CARD", "ROW", "COLUMN", "TABLE")
        ):
            if _eq(display, "COLUMN"):
                display = "ROW"
            if _eq(display, "CARD"):
                display = "LINE"
            out["DISPLAY"] = display
        else:
            out["DISPLAY"] = "BLOCK"
        out["NAME"] = _no_newlines(_trim(grid.get("NAME")))
        out["VALUE"] = _trim(grid.get("VALUE")).replace("#BR#", "[BR]")
        if _is_color(grid.get("COLOR")):
            out["COLOR"] = grid["COLOR"]
        _copy_positive(grid, out, "WIDTH", "HEIGHT", "USER_ID", "CHAT_ID")
        if _is_url(grid.get("LINK")):
            out["LINK"] = grid["LINK"]
        items.append(out)
    return items


def _server_items(
    value: Any, convert: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    # IMAGE and FILE: one object is wrapped into a list; a scalar yields nothing.
    candidates = [value] if isinstance(value, dict) else _foreach(value)
    items = []
    for item in candidates:
        if isinstance(item, dict) and _is_url(item.get("LINK")):
            converted = convert(item)
            if converted is not None:
                items.append(converted)
    return items


def _server_image(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _isset(item, "NAME") and _trim(item["NAME"]) != "":
        out["NAME"] = _trim(item["NAME"])  # no newline replacement for images in the source
    out["LINK"] = item["LINK"]
    _copy_positive(item, out, "WIDTH", "HEIGHT")
    if _is_url(item.get("PREVIEW")):
        out["PREVIEW"] = item["PREVIEW"]
    return out


def _server_file(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"LINK": item["LINK"]}
    if _isset(item, "NAME") and _trim(item["NAME"]) != "":
        out["NAME"] = _no_newlines(_trim(item["NAME"]))
    _copy_positive(item, out, "SIZE")
    return out


def _server_delimiter(params: Any) -> dict[str, Any]:
    size = _intval(params["SIZE"]) if _isset(params, "SIZE") else 0
    out: dict[str, Any] = {"SIZE": size if size > 0 else 200}
    if _is_color(_get(params, "COLOR")):
        out["COLOR"] = params["COLOR"]
    return out


def _copy_positive(source: dict[str, Any], out: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if _isset(source, key) and _intval(source[key]) > 0:
            out[key] = _intval(source[key])


# --- KEYBOARD normalisation (Im\Bot\Keyboard::getKeyboardByJson, newest release) -------------

_COLOR_FIELDS = ("BG_COLOR", "TEXT_COLOR", "OFF_BG_COLOR", "OFF_TEXT_COLOR")
_ACTIONS = ("PUT", "SEND", "COPY", "CALL", "DIALOG", "LIVECHAT", "HELP")


def parse_keyboard(value: Any, bot_id: Any = None) -> dict[str, Any] | None:
    """Normalise KEYBOARD like the server; None when no button is left (KEYBOARD_ERROR).

    `value` is `{"BUTTONS": [...]}` or a bare list of buttons. A string is NOT decoded by this
    method (spec §5.6): it becomes the BUTTONS value and yields no button. `bot_id` is the
    request's top-level BOT_ID, which the method copies over any BOT_ID inside the keyboard;
    only with it > 0 can COMMAND buttons survive. Returns `{"BUTTONS": [...]}`.
    """
    data = _phpify(value)
    if _empty(data):
        return None
    keyboard = (
        dict(data) if isinstance(data, dict) and _isset(data, "BUTTONS") else {"BUTTONS": data}
    )
    owner = _intval(bot_id)
    colors = keyboard.get("COLORS")
    defaults = {
        k: colors[k] for k in _COLOR_FIELDS if isinstance(colors, dict) and _is_color(colors.get(k))
    }
    vote = _isset(keyboard, "VOTE") and _eq(keyboard["VOTE"], "Y")

    buttons: list[dict[str, Any]] = []
    for button in _foreach(keyboard["BUTTONS"]):
        if _isset(button, "TYPE") and _eq(button["TYPE"], "NEWLINE"):
            buttons.append({"TYPE": "NEWLINE"})
        elif _isset(button, "FUNCTION"):
            continue  # JS-callback buttons are dropped unless enabled internally
        else:
            normalised = _server_button(button, owner, defaults, vote)
            if normalised is not None:
                buttons.append(normalised)
    return {"BUTTONS": buttons} if buttons else None


def _server_button(
    params: Any, owner: int, defaults: dict[str, Any], vote: bool
) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    text = params.get("TEXT")
    if _empty(text) or not isinstance(text, str) or _trim(text) == "":
        return None
    out: dict[str, Any] = {"BOT_ID": owner, "TYPE": "BUTTON"}
    # Exactly one action, by priority LINK > (FUNCTION) > APP_ID > ACTION > COMMAND.
    link, app_id, action = params.get("LINK"), params.get("APP_ID"), params.get("ACTION")
    command = params.get("COMMAND")
    if isinstance(link, str) and not _empty(link) and _is_url(link):
        out["LINK"] = _html_escape(link)
    elif not _empty(app_id):
        out["APP_ID"] = _intval(app_id)
        app_params = params.get("APP_PARAMS")
        if isinstance(app_params, str) and _trim(app_params) != "":
            out["APP_PARAMS"] = app_params
    elif (
        isinstance(action, str)
        and action in _ACTIONS
        and not isinstance(params.get("ACTION_VALUE"), list | dict)
        and _trim(params.get("ACTION_VALUE")) != ""
    ):
        out["ACTION"] = action
        out["ACTION_VALUE"] = params["ACTION_VALUE"]
    elif owner > 0 and not _empty(command) and isinstance(command, str) and _trim(command) != "":
        out["COMMAND"] = command[1:] if command.startswith("/") else command
        command_params = params.get("COMMAND_PARAMS")
        out["COMMAND_PARAMS"] = (
            command_params
            if not _empty(command_params)
            and isinstance(command_params, str)
            and _trim(command_params) != ""
            else ""
        )
    else:
        return None
    out["TEXT"] = _trim(text)
    out["VOTE"] = "Y" if vote else "N"
    out["BLOCK"] = "Y" if params.get("BLOCK") == "Y" else "N"
    out["WAIT"] = "N"
    context = params.get("CONTEXT")
    out["CONTEXT"] = context if _in(context, ("MOBILE", "DESKTOP")) else "ALL"
    out["DISABLED"] = "Y" if params.get("DISABLED") == "Y" else "N"
    display = params.get("DISPLAY")
    out["DISPLAY"] = display if _in(display, ("BLOCK", "LINE")) else "BLOCK"
    _copy_positive(params, out, "WIDTH")
    for key in _COLOR_FIELDS:
        if _is_color(params.get(key)):
            out[key] = params[key]
        elif key in defaults:
            out[key] = defaults[key]
    return out


# --- size --------------------------------------------------------------------------------------


def attach_size(normalised: Any, rule: SizeRule) -> int:
    """Length of the server's JSON for a normalised ATTACH (or KEYBOARD), per spec §5.5.

    "chars" (current server): characters of json_encode with JSON_UNESCAPED_UNICODE, where `/`
    is still escaped. "bytes" (older server): bytes of Bitrix's default encoding, which escapes
    every non-ASCII character as \\uXXXX and <, >, &, ', " as \\u003C-style sequences.
    """
    return len(_php_json(normalised, unicode=rule == "chars", hex_specials=rule == "bytes"))


_SHORT_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _php_json(value: Any, *, unicode: bool, hex_specials: bool) -> str:
    parts: list[str] = []
    _php_json_into(value, parts, unicode=unicode, hex_specials=hex_specials, depth=0)
    return "".join(parts)


def _php_json_into(
    value: Any, parts: list[str], *, unicode: bool, hex_specials: bool, depth: int
) -> None:
    if depth > _MAX_DEPTH * 2 or value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(repr(value) if math.isfinite(value) else "0")
    elif isinstance(value, str):
        parts.append(_php_json_string(value, unicode=unicode, hex_specials=hex_specials))
    elif isinstance(value, dict) and value:
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(",")
            parts.append(_php_json_string(str(key), unicode=unicode, hex_specials=hex_specials))
            parts.append(":")
            _php_json_into(item, parts, unicode=unicode, hex_specials=hex_specials, depth=depth + 1)
        parts.append("}")
    elif isinstance(value, dict | list | tuple):
        parts.append("[")  # an empty PHP array is a list
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _php_json_into(item, parts, unicode=unicode, hex_specials=hex_specials, depth=depth + 1)
        parts.append("]")
    else:
        parts.append("null")


def _php_json_string(text: str, *, unicode: bool, hex_specials: bool) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append("\\u0022" if hex_specials else '\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "/":
            out.append("\\/")
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif hex_specials and char in "<>&'":
            out.append(f"\\u{code:04X}")
        elif code < 0x80 or (unicode and code not in (0x2028, 0x2029)):
            out.append(char)
        elif code > 0xFFFF:
            high, low = divmod(code - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


# --- the method ----------------------------------------------------------------------------------


def _server_code(value: Any, rule: SizeRule) -> str | None:
    """CODE as the server reads it, or None when the length check fails (check #2)."""
    if value is None or isinstance(value, list | dict):
        return None
    code = _php_str(value)
    # The current source counts characters (mb_strlen), the older one bytes (strlen).
    length = len(code) if rule == "chars" else len(code.encode("utf-8", "surrogatepass"))
    return code if length == 32 else None


def _server_message(value: Any) -> str:
    return "" if isinstance(value, list | dict) else _trim(value)


def server_accept(
    params: Mapping[str, Any],
    *,
    line_joined: Callable[[str], bool],
    limit_reached: Callable[[str, int], bool],
    now: int | None = None,
    size_rule: SizeRule = "chars",
    random_color: Callable[[], str] | None = None,
) -> ServerMessage | ServerRefusal:
    """Run the method's checks in the server's order (spec §5.3) and normalise the payload.

    Checks #1 (session auth), #3 (imbot module) and #12 (message creation) belong to the
    caller. `line_joined(code)` answers #4/#5 (FDC code, or no network bot for CODE);
    `limit_reached(code, user_id)` answers #7 (§5.7). `size_rule` picks the current ("chars")
    or older ("bytes") server; the older one also counts CODE in bytes.
    """
    upper = {str(key).upper(): _phpify(val) for key, val in params.items()}

    code = _server_code(upper.get("CODE"), size_rule)
    if code is None:
        return server_refusal("CODE")
    if not line_joined(code):
        return server_refusal("NOT_FOUND")
    user_id = _intval(upper.get("USER_ID"))
    if user_id == 0:
        return server_refusal("USER_ID_EMPTY")
    if limit_reached(code, user_id):
        return server_refusal("USER_MESSAGE_LIMIT")
    message = _server_message(upper.get("MESSAGE"))
    if message == "":
        return server_refusal("MESSAGE_EMPTY")

    attach = None
    if not _empty(upper.get("ATTACH")):
        attach = parse_attach(upper["ATTACH"], now, random_color=random_color)
        if attach is None:
            return server_refusal("ATTACH_ERROR")
        if attach_size(attach, size_rule) >= ATTACH_SIZE_LIMIT:
            return server_refusal("ATTACH_OVERSIZE")

    keyboard = None
    if not _empty(upper.get("KEYBOARD")):
        keyboard = parse_keyboard(upper["KEYBOARD"], upper.get("BOT_ID"))
        if keyboard is None:
            return server_refusal("KEYBOARD_ERROR")

    # `== 'N'` in PHP: the string N, or a JSON true (true == 'N' is true there).
    url_preview = not _eq(upper.get("URL_PREVIEW"), "N")
    return ServerMessage(
        code=code,
        user_id=user_id,
        message=message,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
    )
